#ifndef MEMORIA_ENGINE_QUANT_QUANT_H_
#define MEMORIA_ENGINE_QUANT_QUANT_H_

#include <cstdint>

#include "engine/gguf/ggml_type.h"

namespace memoria {

// Types the engine computes with: F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q6_K.
bool IsComputeType(GgmlType type);

// Row conversions. n must be a multiple of the type's block size (callers validate shapes).
// Dequantization is bit-exact as the GGUF format defines it.
void DequantizeRow(GgmlType type, const void* src, float* dst, int64_t n);
// Reference quantizers (used to write models and to quantize activations); any compute type and Q8_K.
void QuantizeRow(GgmlType type, const float* src, void* dst, int64_t n);

}  // namespace memoria

#endif  // MEMORIA_ENGINE_QUANT_QUANT_H_
