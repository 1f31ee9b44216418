#ifndef MEMORIA_MEMSTORE_PAGE_CACHE_H_
#define MEMORIA_MEMSTORE_PAGE_CACHE_H_

#include <cstddef>
#include <cstdint>
#include <list>
#include <memory>
#include <unordered_map>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "memstore/memory_blob.h"

namespace memoria {

// A least-recently-used cache of decoded memory pages by reference id, bounded by the pages'
// bytes(). Thread-safe. Pages are shared: an evicted page stays alive for as long as a caller
// (a MemoryView) still holds it, so the bound is on what the cache itself keeps alive.
class PageCache {
 public:
  struct Counters {
    int64_t hits = 0;
    int64_t misses = 0;
    int64_t bytes = 0;    // bytes of the pages the cache holds now
    int64_t entries = 0;
  };

  explicit PageCache(size_t capacity_bytes) : capacity_bytes_(capacity_bytes) {}
  PageCache(const PageCache&) = delete;
  PageCache& operator=(const PageCache&) = delete;

  // The cached page and marks it most recently used, or nullptr; counts a hit or a miss.
  std::shared_ptr<const MemoryPage> Lookup(uint64_t reference_id);
  // Caches `page` (replacing any page of that id), then evicts least recently used pages until
  // the cache fits its capacity. A page larger than the whole capacity is not cached.
  void Insert(uint64_t reference_id, std::shared_ptr<const MemoryPage> page);
  // Drops the page of a deleted or replaced reference, if cached.
  void Erase(uint64_t reference_id);
  Counters counters() const;

 private:
  struct Entry {
    uint64_t reference_id;
    std::shared_ptr<const MemoryPage> page;
    size_t bytes;
  };
  using Lru = std::list<Entry>;  // front = most recently used

  void EraseLocked(Lru::iterator it) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const size_t capacity_bytes_;

  mutable absl::Mutex mu_;
  Lru lru_ ABSL_GUARDED_BY(mu_);
  std::unordered_map<uint64_t, Lru::iterator> by_id_ ABSL_GUARDED_BY(mu_);
  size_t bytes_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t hits_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t misses_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace memoria

#endif  // MEMORIA_MEMSTORE_PAGE_CACHE_H_
