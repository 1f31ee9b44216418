#ifndef MEMORIA_MEMSTORE_MEMORY_BLOB_H_
#define MEMORIA_MEMSTORE_MEMORY_BLOB_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/model/memory.h"
#include "memstore/codec.h"

namespace memoria {

// The memory of one reference before encoding: for each memory layer and KV head, the kept
// tokens' positions (within the reference, BOS = 0), keys (before RoPE) and values.
struct ReferenceKv {
  int32_t head_dim = 0;
  int32_t n_kv_heads = 0;
  std::vector<int32_t> layers;  // the memory layers, ascending
  struct Head {
    std::vector<int32_t> positions;  // count
    std::vector<float> keys;         // count x head_dim
    std::vector<float> values;       // count x head_dim
  };
  std::vector<Head> heads;  // [layer index in `layers` * n_kv_heads + kv_head]
  const Head& At(size_t layer_index, int32_t kv_head) const {
    return heads[layer_index * n_kv_heads + kv_head];
  }
};

// Serialized, compressed ReferenceKv: the value stored in RocksDB's memories column family.
// Layout in docs/memory_blob.md; ends with a CRC32C of everything before it.
std::string EncodeMemoryBlob(const ReferenceKv& memory, const VectorCodec& codec);

// A decoded memory, ready for attention: f32 arrays the engine reads in place (MemoryEntries
// point into it). Immutable; shared by every sequence that retrieved the reference.
class MemoryPage {
 public:
  // Validates everything (magic, version, codec, shape against the expectations, counts, sizes,
  // checksum); DataLoss naming the problem for a corrupt or truncated blob.
  static absl::StatusOr<std::shared_ptr<const MemoryPage>> Decode(std::string_view blob,
                                                                  const VectorCodec& codec,
                                                                  int32_t n_kv_heads,
                                                                  int32_t head_dim);

  const ReferenceKv& memory() const { return memory_; }
  size_t bytes() const;  // memory held, for the page cache's budget
  // The entries of one (model layer, KV head), or count 0 when the layer holds none.
  MemoryEntries Entries(int32_t layer, int32_t kv_head) const;

 private:
  MemoryPage();
  ReferenceKv memory_;
  uint64_t serial_;  // unique per decoded page in this process (never 0)
};

// Adds every layer and head of `page` to `view` and keeps the page alive with it.
void AddToView(const std::shared_ptr<const MemoryPage>& page, MemoryView* view);

}  // namespace memoria

#endif  // MEMORIA_MEMSTORE_MEMORY_BLOB_H_
