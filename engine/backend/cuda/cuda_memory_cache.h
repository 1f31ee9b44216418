#ifndef MEMORIA_ENGINE_BACKEND_CUDA_CUDA_MEMORY_CACHE_H_
#define MEMORIA_ENGINE_BACKEND_CUDA_CUDA_MEMORY_CACHE_H_

#include <cstddef>
#include <cstdint>
#include <list>
#include <memory>
#include <vector>

#include <cuda_runtime.h>

#include "absl/container/flat_hash_map.h"
#include "engine/backend/cuda/cuda_plan.h"
#include "engine/model/memory.h"

namespace memoria::cuda {

// Device copies of the memory entries a batch attends to. MemoryEntries point to host memory;
// attention needs them on the device. Entries of a memory page (nonzero page_id, a stable id:
// same id, same contents) stay in a cache of whole pages bounded in bytes and evicted least
// recently used first, so the references a sequence keeps for many steps cross the bus once.
// Entries without a page_id are uploaded for every step.
//
// Uploads go through pinned staging memory on the cache's own stream, layer by layer, each layer
// closing with an event: attention of layer l waits only for layer l's entries, so the copies of
// later layers overlap the compute of earlier ones.
//
// A step: BeginStep, AddView for each sequence with memory, Upload; then WaitForLayer before
// reading a layer's entries. The host must have waited for the previous step's device work
// before BeginStep (staging and the per-step buffer are reused). Not thread-safe.
class CudaMemoryCache {
 public:
  CudaMemoryCache(int32_t n_layers, int32_t n_kv_heads, int32_t head_dim, size_t budget_bytes);
  ~CudaMemoryCache();
  CudaMemoryCache(const CudaMemoryCache&) = delete;
  CudaMemoryCache& operator=(const CudaMemoryCache&) = delete;

  void BeginStep();
  // Appends n_layers x n_kv_heads heads (one per (layer, KV head)) and their chunks for `view`.
  // Chunk pointers of entries uploaded this step are filled in by Upload.
  void AddView(const MemoryView& view, std::vector<PlanMemoryHead>* heads, std::vector<PlanMemoryChunk>* chunks);
  // Starts the step's copies and completes `chunks`. Returns whether anything is being uploaded.
  bool Upload(std::vector<PlanMemoryChunk>* chunks);
  // Makes `stream` wait for this step's copies of `layer`.
  void WaitForLayer(int32_t layer, cudaStream_t stream) const;
  // Waits for all copies (before the host reuses staging).
  void Synchronize() const;

  // Largest rotary position of this step's entries (for the cos/sin table).
  int32_t max_position() const { return max_position_; }
  size_t cached_bytes() const { return cached_bytes_; }
  int64_t page_hits() const { return page_hits_; }
  int64_t page_misses() const { return page_misses_; }

 private:
  struct PageChunk {
    int32_t layer, kv_head, count, f16;
    size_t keys, values;  // byte offsets in the page
    int64_t positions;    // byte offset, or -1 when the entries had none
  };
  struct Page {
    uint64_t id = 0;
    char* device = nullptr;
    size_t bytes = 0;
    std::vector<PageChunk> chunks;  // in (layer, KV head) order, as MemoryView lists them
    std::vector<size_t> layer_begin, layer_end;  // byte range of each layer's chunks
    int32_t max_position = 0;
    int64_t last_step = -1;
    std::list<Page*>::iterator lru;
    // host sources, for a page created this step
    std::vector<const MemoryEntries*> sources;
  };
  // An entry uploaded for this step only, and the plan chunk that points at it.
  struct Transient {
    const MemoryEntries* entries;
    int32_t layer;
    size_t chunk_index;
  };

  Page* CreatePage(uint64_t id, const MemoryView& view);
  size_t EntryBytes(int32_t count, bool f16, bool positions, size_t* keys, size_t* values, int64_t* pos) const;
  void Evict();

  const int32_t n_layers_, n_kv_heads_, head_dim_;
  const size_t budget_bytes_;
  cudaStream_t stream_ = nullptr;
  std::vector<cudaEvent_t> layer_ready_;
  std::vector<bool> layer_pending_;

  absl::flat_hash_map<uint64_t, std::unique_ptr<Page>> pages_;
  std::list<Page*> lru_;  // most recently used first
  size_t cached_bytes_ = 0;
  int64_t step_ = 0;

  // this step
  std::vector<Page*> new_pages_;
  std::vector<Transient> transients_;
  int32_t max_position_ = 0;

  char* staging_ = nullptr;  // pinned
  size_t staging_bytes_ = 0;
  char* transient_device_ = nullptr;
  size_t transient_device_bytes_ = 0;
  int64_t page_hits_ = 0, page_misses_ = 0;
};

}  // namespace memoria::cuda

#endif  // MEMORIA_ENGINE_BACKEND_CUDA_CUDA_MEMORY_CACHE_H_
