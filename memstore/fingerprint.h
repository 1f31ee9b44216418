#ifndef MEMORIA_MEMSTORE_FINGERPRINT_H_
#define MEMORIA_MEMSTORE_FINGERPRINT_H_

#include "engine/model/model.h"
#include "memstore/memory_store.h"

namespace memoria {

// The fingerprint of a loaded model: architecture and shapes, and a hash of every tensor's
// bytes (so a re-quantized or fine-tuned file with the same shapes is told apart). Reads all
// weights once (~0.1 s per GB).
ModelFingerprint FingerprintOf(const Model& model);

}  // namespace memoria

#endif  // MEMORIA_MEMSTORE_FINGERPRINT_H_
