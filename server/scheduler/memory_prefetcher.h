#ifndef MEMORIA_SERVER_SCHEDULER_MEMORY_PREFETCHER_H_
#define MEMORIA_SERVER_SCHEDULER_MEMORY_PREFETCHER_H_

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "engine/model/model_config.h"
#include "memstore/memory_store.h"
#include "server/scheduler/generation_request.h"

namespace memoria {

// One retrieval in flight. The prefetcher fills it and then sets `done`; the compute thread
// polls `done` and only then reads the rest.
struct PendingRetrieval {
  std::atomic<bool> done{false};
  absl::Status status;
  std::vector<Citation> citations;
  std::shared_ptr<const MemoryView> view;  // null when nothing was retrieved
  double latency_ms = 0;
};

// Searches the store and loads the chosen references' memory pages (page cache, then RocksDB)
// on its own threads, so the compute thread never waits on storage: it hands over a query
// vector, keeps stepping the batch, and picks the view up when ready.
class MemoryPrefetcher {
 public:
  // `on_ready` runs on a prefetch thread after each retrieval completes (wakes the compute
  // thread).
  MemoryPrefetcher(MemoryStore* store, const ModelConfig& config, int n_threads,
                   std::function<void()> on_ready);
  ~MemoryPrefetcher();  // finishes queued retrievals, then joins

  std::shared_ptr<PendingRetrieval> Start(std::vector<float> query, const MemoryRequest& request);

 private:
  struct Job {
    std::vector<float> query;
    MemoryRequest request;
    std::shared_ptr<PendingRetrieval> result;
  };
  void Worker();
  void Run(Job& job);

  MemoryStore* const store_;
  const int32_t n_layers_;
  const int32_t n_kv_heads_;
  std::function<void()> on_ready_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job> jobs_;  // guarded by mu_
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace memoria

#endif  // MEMORIA_SERVER_SCHEDULER_MEMORY_PREFETCHER_H_
