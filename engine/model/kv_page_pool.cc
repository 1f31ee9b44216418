#include "engine/model/kv_page_pool.h"

#include "absl/strings/str_cat.h"

namespace memoria {

KvPagePool::KvPagePool(int32_t n_pages, int32_t page_size) : n_pages_(n_pages), page_size_(page_size) {
  free_.reserve(n_pages);
  for (int32_t p = n_pages - 1; p >= 0; --p) free_.push_back(p);
}

absl::Status KvPagePool::Reserve(int32_t n_slots, std::vector<int32_t>* table) {
  const int32_t needed = PagesFor(n_slots) - static_cast<int32_t>(table->size());
  if (needed <= 0) return absl::OkStatus();
  if (needed > free_pages()) {
    return absl::ResourceExhaustedError(absl::StrCat("kv cache: ", needed, " more pages needed, ",
                                                     free_pages(), " of ", n_pages_, " free"));
  }
  for (int32_t i = 0; i < needed; ++i) {
    table->push_back(free_.back());
    free_.pop_back();
  }
  return absl::OkStatus();
}

void KvPagePool::Release(std::vector<int32_t>* table) {
  for (auto it = table->rbegin(); it != table->rend(); ++it) free_.push_back(*it);
  table->clear();
}

}  // namespace memoria
