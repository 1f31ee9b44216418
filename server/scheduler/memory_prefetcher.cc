#include "server/scheduler/memory_prefetcher.h"

#include <chrono>
#include <utility>

#include "memstore/memory_blob.h"

namespace memoria {

MemoryPrefetcher::MemoryPrefetcher(MemoryStore* store, const ModelConfig& config, int n_threads,
                                   std::function<void()> on_ready)
    : store_(store),
      n_layers_(config.n_layers),
      n_kv_heads_(config.n_kv_heads),
      on_ready_(std::move(on_ready)) {
  for (int i = 0; i < n_threads; ++i) threads_.emplace_back([this] { Worker(); });
}

MemoryPrefetcher::~MemoryPrefetcher() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (std::thread& t : threads_) t.join();
}

std::shared_ptr<PendingRetrieval> MemoryPrefetcher::Start(std::vector<float> query,
                                                          const MemoryRequest& request) {
  auto result = std::make_shared<PendingRetrieval>();
  {
    std::lock_guard<std::mutex> lock(mu_);
    jobs_.push_back(Job{std::move(query), request, result});
  }
  cv_.notify_one();
  return result;
}

void MemoryPrefetcher::Worker() {
  for (;;) {
    Job job;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || !jobs_.empty(); });
      if (jobs_.empty()) return;
      job = std::move(jobs_.front());
      jobs_.pop_front();
    }
    Run(job);
    job.result->done.store(true, std::memory_order_release);
    if (on_ready_) on_ready_();
  }
}

void MemoryPrefetcher::Run(Job& job) {
  const auto t0 = std::chrono::steady_clock::now();
  PendingRetrieval& out = *job.result;
  absl::StatusOr<std::vector<RetrievedReference>> hits =
      store_->Retrieve(job.query, job.request.references, job.request.collections,
                       job.request.min_score.value_or(0.0f));
  if (!hits.ok()) {
    out.status = hits.status();
    return;
  }
  if (!hits->empty()) {  // best first: drop those too far below the best (look-alikes)
    const float lowest = hits->front().score - job.request.score_gap.value_or(kNoScoreGap);
    while (hits->back().score < lowest) hits->pop_back();
  }
  if (!hits->empty()) {
    std::vector<uint64_t> ids;
    for (const RetrievedReference& h : *hits) ids.push_back(h.reference_id);
    absl::StatusOr<std::vector<std::shared_ptr<const MemoryPage>>> pages = store_->Load(ids);
    if (!pages.ok()) {
      out.status = pages.status();
      return;
    }
    auto view = std::make_shared<MemoryView>(n_layers_, n_kv_heads_,
                                             MemoryRotation::kStoredPositions);
    for (const auto& page : *pages) AddToView(page, view.get());
    out.view = std::move(view);
    for (const RetrievedReference& h : *hits) {
      out.citations.push_back(Citation{h.document_id, h.reference_id, h.score});
    }
  }
  out.latency_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace memoria
