#include "engine/model/memory.h"

#include <cassert>

namespace memoria {

MemoryView::MemoryView(int32_t n_layers, int32_t n_kv_heads, MemoryRotation rotation)
    : n_layers_(n_layers),
      n_kv_heads_(n_kv_heads),
      rotation_(rotation),
      entries_(static_cast<size_t>(n_layers) * n_kv_heads) {}

void MemoryView::Add(int32_t layer, int32_t kv_head, const MemoryEntries& entries) {
  assert(layer >= 0 && layer < n_layers_ && kv_head >= 0 && kv_head < n_kv_heads_);
  if (entries.count > 0) entries_[static_cast<size_t>(layer) * n_kv_heads_ + kv_head].push_back(entries);
}

std::span<const MemoryEntries> MemoryView::Entries(int32_t layer, int32_t kv_head) const {
  if (layer < 0 || layer >= n_layers_) return {};
  return entries_[static_cast<size_t>(layer) * n_kv_heads_ + kv_head];
}

bool MemoryView::HasLayer(int32_t layer) const {
  if (layer < 0 || layer >= n_layers_) return false;
  for (int32_t g = 0; g < n_kv_heads_; ++g) {
    if (!entries_[static_cast<size_t>(layer) * n_kv_heads_ + g].empty()) return true;
  }
  return false;
}

int64_t MemoryView::TotalEntries() const {
  int64_t n = 0;
  for (const auto& list : entries_) {
    for (const MemoryEntries& e : list) n += e.count;
  }
  return n;
}

}  // namespace memoria
