#include "memstore/page_cache.h"

#include <utility>

namespace memoria {

std::shared_ptr<const MemoryPage> PageCache::Lookup(uint64_t reference_id) {
  absl::MutexLock lock(&mu_);
  auto found = by_id_.find(reference_id);
  if (found == by_id_.end()) {
    ++misses_;
    return nullptr;
  }
  ++hits_;
  lru_.splice(lru_.begin(), lru_, found->second);
  return found->second->page;
}

void PageCache::Insert(uint64_t reference_id, std::shared_ptr<const MemoryPage> page) {
  const size_t bytes = page->bytes();
  absl::MutexLock lock(&mu_);
  if (auto found = by_id_.find(reference_id); found != by_id_.end()) EraseLocked(found->second);
  if (bytes > capacity_bytes_) return;
  lru_.push_front(Entry{reference_id, std::move(page), bytes});
  by_id_[reference_id] = lru_.begin();
  bytes_ += bytes;
  while (bytes_ > capacity_bytes_) EraseLocked(std::prev(lru_.end()));
}

void PageCache::Erase(uint64_t reference_id) {
  absl::MutexLock lock(&mu_);
  if (auto found = by_id_.find(reference_id); found != by_id_.end()) EraseLocked(found->second);
}

PageCache::Counters PageCache::counters() const {
  absl::MutexLock lock(&mu_);
  return Counters{hits_, misses_, static_cast<int64_t>(bytes_),
                  static_cast<int64_t>(lru_.size())};
}

void PageCache::EraseLocked(Lru::iterator it) {
  bytes_ -= it->bytes;
  by_id_.erase(it->reference_id);
  lru_.erase(it);
}

}  // namespace memoria
