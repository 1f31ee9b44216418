#ifndef MEMORIA_ENGINE_MODEL_KV_PAGE_POOL_H_
#define MEMORIA_ENGINE_MODEL_KV_PAGE_POOL_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"

namespace memoria {

// Hands out the KV cache's fixed-size pages to sequences. A sequence's page table is a plain
// vector of page indices; sequences of any length share one pool without fragmentation.
class KvPagePool {
 public:
  KvPagePool(int32_t n_pages, int32_t page_size);

  int32_t page_size() const { return page_size_; }
  int32_t total_pages() const { return static_cast<int32_t>(n_pages_); }
  int32_t free_pages() const { return static_cast<int32_t>(free_.size()); }
  // Pages a table needs to hold n_slots token slots.
  int32_t PagesFor(int32_t n_slots) const { return (n_slots + page_size_ - 1) / page_size_; }

  // Grows `table` to cover n_slots slots. ResourceExhausted, with `table` unchanged, when the pool
  // has too few free pages.
  absl::Status Reserve(int32_t n_slots, std::vector<int32_t>* table);
  // Returns every page of `table` to the pool and clears it.
  void Release(std::vector<int32_t>* table);

 private:
  int32_t n_pages_;
  int32_t page_size_;
  std::vector<int32_t> free_;  // a stack: recently freed pages are reused first (warm in cache)
};

}  // namespace memoria

#endif  // MEMORIA_ENGINE_MODEL_KV_PAGE_POOL_H_
