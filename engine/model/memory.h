#ifndef MEMORIA_ENGINE_MODEL_MEMORY_H_
#define MEMORIA_ENGINE_MODEL_MEMORY_H_

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "engine/gguf/ggml_type.h"

namespace memoria {

// How memory keys (stored before RoPE) are rotated when a query attends to them.
enum class MemoryRotation {
  // Keys rotated with their own stored positions (Memory3 "parallel": every reference spans
  // positions 0..n-1); queries as usual.
  kStoredPositions,
  // No rotation on either side: the pre-RoPE query meets the pre-RoPE key, so the score does not
  // depend on where the query is (KBLaM-style knowledge entries).
  kNone,
};

// The entries of one reference for one (layer, KV head): `count` keys and values of head_dim
// elements each, rows contiguous, type kF32 or kF16. Points into a memory page owned elsewhere.
struct MemoryEntries {
  int32_t count = 0;
  GgmlType type = GgmlType::kF32;
  const void* keys = nullptr;       // count x head_dim, before RoPE
  const void* values = nullptr;     // count x head_dim
  const int32_t* positions = nullptr;  // count rotary positions (kStoredPositions)
  uint64_t page_id = 0;  // unique per (memory page, layer, head) for device-side caches; 0 = none
};

// Everything a sequence attends to besides its own tokens: for each memory layer and KV head, the
// entries of every retrieved reference, all in one softmax with the sequence's causal context.
// Memory entries attend to nothing and are never written to the KV cache. Immutable once built and
// shared (std::shared_ptr<const MemoryView>) between the scheduler and the engine; `keep_alive`
// holds the pages the pointers refer to.
class MemoryView {
 public:
  MemoryView(int32_t n_layers, int32_t n_kv_heads, MemoryRotation rotation);

  void Add(int32_t layer, int32_t kv_head, const MemoryEntries& entries);
  void KeepAlive(std::shared_ptr<const void> page) { keep_alive_.push_back(std::move(page)); }

  std::span<const MemoryEntries> Entries(int32_t layer, int32_t kv_head) const;
  bool HasLayer(int32_t layer) const;  // any entries in this layer
  MemoryRotation rotation() const { return rotation_; }
  int32_t n_layers() const { return n_layers_; }
  int32_t n_kv_heads() const { return n_kv_heads_; }
  int64_t TotalEntries() const;

 private:
  int32_t n_layers_;
  int32_t n_kv_heads_;
  MemoryRotation rotation_;
  std::vector<std::vector<MemoryEntries>> entries_;  // [layer * n_kv_heads + kv_head]
  std::vector<std::shared_ptr<const void>> keep_alive_;
};

}  // namespace memoria

#endif  // MEMORIA_ENGINE_MODEL_MEMORY_H_
