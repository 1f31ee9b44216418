#include "engine/backend/cuda/cuda_memory_cache.h"

#include <algorithm>
#include <cstring>

#include "engine/backend/cuda/cuda_check.h"

namespace memoria::cuda {
namespace {

constexpr size_t kAlign = 16;
size_t AlignUp(size_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

}  // namespace

CudaMemoryCache::CudaMemoryCache(int32_t n_layers, int32_t n_kv_heads, int32_t head_dim, size_t budget_bytes)
    : n_layers_(n_layers), n_kv_heads_(n_kv_heads), head_dim_(head_dim), budget_bytes_(budget_bytes) {
  MEMORIA_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  layer_ready_.resize(n_layers);
  layer_pending_.assign(n_layers, false);
  for (cudaEvent_t& e : layer_ready_) MEMORIA_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
}

CudaMemoryCache::~CudaMemoryCache() {
  cudaStreamSynchronize(stream_);
  for (auto& [id, page] : pages_) cudaFree(page->device);
  cudaFree(transient_device_);
  cudaFreeHost(staging_);
  for (cudaEvent_t e : layer_ready_) cudaEventDestroy(e);
  cudaStreamDestroy(stream_);
}

size_t CudaMemoryCache::EntryBytes(int32_t count, bool f16, bool positions, size_t* keys, size_t* values,
                                   int64_t* pos) const {
  const size_t rows = static_cast<size_t>(count) * head_dim_ * (f16 ? 2 : 4);
  *keys = 0;
  *values = AlignUp(rows);
  *pos = positions ? static_cast<int64_t>(*values + AlignUp(rows)) : -1;
  return AlignUp(rows) * 2 + (positions ? AlignUp(static_cast<size_t>(count) * 4) : 0);
}

void CudaMemoryCache::BeginStep() {
  ++step_;
  new_pages_.clear();
  transients_.clear();
  layer_pending_.assign(n_layers_, false);
  max_position_ = 0;
}

CudaMemoryCache::Page* CudaMemoryCache::CreatePage(uint64_t id, const MemoryView& view) {
  auto page = std::make_unique<Page>();
  Page* p = page.get();
  p->id = id;
  p->layer_begin.assign(n_layers_, 0);
  p->layer_end.assign(n_layers_, 0);
  size_t at = 0;
  for (int32_t l = 0; l < n_layers_; ++l) {
    p->layer_begin[l] = at;
    for (int32_t g = 0; g < n_kv_heads_; ++g) {
      for (const MemoryEntries& e : view.Entries(l, g)) {
        if (e.page_id != id || e.count == 0) continue;  // AddView skips empty entries too
        PageChunk c{l, g, e.count, e.type == GgmlType::kF16 ? 1 : 0, 0, 0, -1};
        const size_t bytes = EntryBytes(e.count, c.f16, e.positions != nullptr, &c.keys, &c.values, &c.positions);
        c.keys += at;
        c.values += at;
        if (c.positions >= 0) c.positions += static_cast<int64_t>(at);
        for (int32_t m = 0; e.positions != nullptr && m < e.count; ++m) {
          p->max_position = std::max(p->max_position, e.positions[m]);
        }
        at += bytes;
        p->chunks.push_back(c);
        p->sources.push_back(&e);
      }
    }
    p->layer_end[l] = at;
  }
  p->bytes = at;
  p->last_step = step_;
  MEMORIA_CUDA_CHECK(cudaMallocAsync(reinterpret_cast<void**>(&p->device), std::max<size_t>(at, 1), stream_));
  lru_.push_front(p);
  p->lru = lru_.begin();
  cached_bytes_ += at;
  new_pages_.push_back(p);
  pages_[id] = std::move(page);
  ++page_misses_;
  return p;
}

void CudaMemoryCache::AddView(const MemoryView& view, std::vector<PlanMemoryHead>* heads,
                              std::vector<PlanMemoryChunk>* chunks) {
  // The view's pages, each with a cursor: a page's chunks come in the order the view lists them.
  struct Use {
    uint64_t id;
    Page* page;
    size_t cursor;
  };
  std::vector<Use> uses;
  auto use_of = [&](uint64_t id) -> Use& {
    for (Use& u : uses) {
      if (u.id == id) return u;
    }
    Page* page = nullptr;
    if (auto it = pages_.find(id); it != pages_.end()) {
      page = it->second.get();
      if (page->last_step != step_) ++page_hits_;
    } else {
      page = CreatePage(id, view);
    }
    page->last_step = step_;
    lru_.splice(lru_.begin(), lru_, page->lru);
    max_position_ = std::max(max_position_, page->max_position);
    uses.push_back({id, page, 0});
    return uses.back();
  };

  for (int32_t l = 0; l < n_layers_; ++l) {
    for (int32_t g = 0; g < n_kv_heads_; ++g) {
      PlanMemoryHead head{static_cast<int32_t>(chunks->size()), 0, 0};
      for (const MemoryEntries& e : view.Entries(l, g)) {
        if (e.count == 0) continue;
        PlanMemoryChunk chunk{nullptr, nullptr, nullptr, e.count, e.type == GgmlType::kF16 ? 1 : 0};
        const PageChunk* cached = nullptr;
        if (e.page_id != 0) {
          Use& u = use_of(e.page_id);
          if (u.cursor < u.page->chunks.size()) {
            const PageChunk& c = u.page->chunks[u.cursor];
            // A page id names fixed contents; a mismatch means the caller broke that promise, so
            // these entries travel uncached rather than wrongly.
            if (c.layer == l && c.kv_head == g && c.count == e.count && c.f16 == chunk.f16 &&
                (c.positions >= 0 || e.positions == nullptr)) {
              cached = &c;
              ++u.cursor;
            }
          }
          if (cached != nullptr) {
            chunk.keys = u.page->device + cached->keys;
            chunk.values = u.page->device + cached->values;
            chunk.positions =
                cached->positions >= 0 ? reinterpret_cast<const int32_t*>(u.page->device + cached->positions) : nullptr;
          }
        }
        if (cached == nullptr) {
          transients_.push_back({&e, l, chunks->size()});
          for (int32_t m = 0; e.positions != nullptr && m < e.count; ++m) {
            max_position_ = std::max(max_position_, e.positions[m]);
          }
        }
        chunks->push_back(chunk);
        ++head.n_chunks;
        head.n_entries += e.count;
      }
      heads->push_back(head);
    }
  }
}

bool CudaMemoryCache::Upload(std::vector<PlanMemoryChunk>* chunks) {
  // Staging mirrors the device: new pages one after another, then the step's transient entries
  // laid out layer by layer in their own device buffer.
  size_t pages_bytes = 0;
  for (const Page* p : new_pages_) pages_bytes += AlignUp(p->bytes);
  std::vector<size_t> transient_at(transients_.size());
  std::vector<size_t> transient_layer_begin(n_layers_ + 1, 0);
  size_t transient_bytes = 0;
  {
    std::vector<size_t> order(transients_.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::stable_sort(order.begin(), order.end(),
                     [&](size_t a, size_t b) { return transients_[a].layer < transients_[b].layer; });
    int32_t layer = 0;
    for (size_t i : order) {
      while (layer < transients_[i].layer) transient_layer_begin[++layer] = transient_bytes;
      transient_at[i] = transient_bytes;
      size_t k, v;
      int64_t pos;
      const MemoryEntries& e = *transients_[i].entries;
      transient_bytes += EntryBytes(e.count, e.type == GgmlType::kF16, e.positions != nullptr, &k, &v, &pos);
    }
    while (layer < n_layers_) transient_layer_begin[++layer] = transient_bytes;
  }
  if (pages_bytes + transient_bytes == 0) return false;

  if (staging_bytes_ < pages_bytes + transient_bytes) {
    MEMORIA_CUDA_CHECK(cudaFreeHost(staging_));
    staging_bytes_ = std::max(pages_bytes + transient_bytes, 2 * staging_bytes_);
    MEMORIA_CUDA_CHECK(cudaMallocHost(reinterpret_cast<void**>(&staging_), staging_bytes_));
  }
  if (transient_device_bytes_ < transient_bytes) {
    if (transient_device_ != nullptr) MEMORIA_CUDA_CHECK(cudaFreeAsync(transient_device_, stream_));
    transient_device_bytes_ = std::max(transient_bytes, 2 * transient_device_bytes_);
    MEMORIA_CUDA_CHECK(cudaMallocAsync(reinterpret_cast<void**>(&transient_device_), transient_device_bytes_, stream_));
  }

  auto stage = [&](const MemoryEntries& e, char* dst, size_t keys, size_t values, int64_t positions) {
    const size_t rows = static_cast<size_t>(e.count) * head_dim_ * (e.type == GgmlType::kF16 ? 2 : 4);
    std::memcpy(dst + keys, e.keys, rows);
    std::memcpy(dst + values, e.values, rows);
    if (positions >= 0) std::memcpy(dst + positions, e.positions, static_cast<size_t>(e.count) * 4);
  };
  std::vector<size_t> page_staging(new_pages_.size());
  size_t at = 0;
  for (size_t i = 0; i < new_pages_.size(); ++i) {
    Page* p = new_pages_[i];
    page_staging[i] = at;
    for (size_t c = 0; c < p->chunks.size(); ++c) {
      const PageChunk& pc = p->chunks[c];
      stage(*p->sources[c], staging_ + at, pc.keys, pc.values, pc.positions);
    }
    p->sources.clear();
    at += AlignUp(p->bytes);
  }
  char* transient_staging = staging_ + at;
  for (size_t i = 0; i < transients_.size(); ++i) {
    const MemoryEntries& e = *transients_[i].entries;
    size_t k, v;
    int64_t pos;
    EntryBytes(e.count, e.type == GgmlType::kF16, e.positions != nullptr, &k, &v, &pos);
    k += transient_at[i];
    v += transient_at[i];
    if (pos >= 0) pos += static_cast<int64_t>(transient_at[i]);
    stage(e, transient_staging, k, v, pos);
    PlanMemoryChunk& chunk = (*chunks)[transients_[i].chunk_index];
    chunk.keys = transient_device_ + k;
    chunk.values = transient_device_ + v;
    chunk.positions = pos >= 0 ? reinterpret_cast<const int32_t*>(transient_device_ + pos) : nullptr;
  }

  for (int32_t l = 0; l < n_layers_; ++l) {
    bool any = false;
    for (size_t i = 0; i < new_pages_.size(); ++i) {
      const Page* p = new_pages_[i];
      const size_t b = p->layer_begin[l], e = p->layer_end[l];
      if (e == b) continue;
      MEMORIA_CUDA_CHECK(
          cudaMemcpyAsync(p->device + b, staging_ + page_staging[i] + b, e - b, cudaMemcpyHostToDevice, stream_));
      any = true;
    }
    const size_t b = transient_layer_begin[l], e = transient_layer_begin[l + 1];
    if (e > b) {
      MEMORIA_CUDA_CHECK(cudaMemcpyAsync(transient_device_ + b, transient_staging + b, e - b,
                                         cudaMemcpyHostToDevice, stream_));
      any = true;
    }
    if (any) {
      MEMORIA_CUDA_CHECK(cudaEventRecord(layer_ready_[l], stream_));
      layer_pending_[l] = true;
    }
  }
  Evict();
  return true;
}

void CudaMemoryCache::Evict() {
  // Pages this step uses stay even over budget: the step needs them.
  while (cached_bytes_ > budget_bytes_ && !lru_.empty() && lru_.back()->last_step != step_) {
    Page* p = lru_.back();
    lru_.pop_back();
    cached_bytes_ -= p->bytes;
    // Stream-ordered after this step's copies; earlier steps' readers finished (BeginStep contract).
    MEMORIA_CUDA_CHECK(cudaFreeAsync(p->device, stream_));
    pages_.erase(p->id);
  }
}

void CudaMemoryCache::WaitForLayer(int32_t layer, cudaStream_t stream) const {
  if (layer < n_layers_ && layer_pending_[layer]) MEMORIA_CUDA_CHECK(cudaStreamWaitEvent(stream, layer_ready_[layer]));
}

void CudaMemoryCache::Synchronize() const { MEMORIA_CUDA_CHECK(cudaStreamSynchronize(stream_)); }

}  // namespace memoria::cuda
