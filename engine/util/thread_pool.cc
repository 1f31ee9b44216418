#include "engine/util/thread_pool.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace memoria {
namespace {

inline void CpuRelax() {
#if defined(__x86_64__)
  _mm_pause();
#endif
}

// Iterations a worker spins waiting for the next run before it sleeps (~tens of microseconds):
// long enough to bridge the gaps between the operations of one forward pass.
constexpr int kSpinIterations = 1 << 12;
// While waiting, yield the core every so often: when the machine is oversubscribed the thread
// we wait for may need it.
constexpr int kYieldEvery = 256;

}  // namespace

int DefaultThreadCount() {
  unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : static_cast<int>(n);
}

ThreadPool::ThreadPool(int n_threads) {
  for (int i = 1; i < n_threads; ++i) workers_.emplace_back([this] { WorkerLoop(); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_.store(true, std::memory_order_release);
    generation_.fetch_add(1, std::memory_order_acq_rel);
  }
  wake_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::DrainTasks() {
  for (;;) {
    int64_t task = next_task_.fetch_add(1, std::memory_order_relaxed);
    if (task >= n_tasks_) return;
    (*fn_)(task);
  }
}

void ThreadPool::Run(int64_t n_tasks, absl::FunctionRef<void(int64_t task)> fn) {
  if (n_tasks <= 0) return;
  if (workers_.empty() || n_tasks == 1) {
    for (int64_t t = 0; t < n_tasks; ++t) fn(t);
    return;
  }
  fn_ = &fn;
  n_tasks_ = n_tasks;
  next_task_.store(0, std::memory_order_relaxed);
  busy_workers_.store(static_cast<int>(workers_.size()), std::memory_order_relaxed);
  {
    // The lock orders this bump against a worker that is about to sleep, so none misses it.
    std::lock_guard<std::mutex> lock(mu_);
    generation_.fetch_add(1, std::memory_order_release);
  }
  wake_.notify_all();
  DrainTasks();
  for (int spin = 1; busy_workers_.load(std::memory_order_acquire) != 0; ++spin) {
    CpuRelax();
    if (spin % kYieldEvery == 0) std::this_thread::yield();
  }
  fn_ = nullptr;
}

void ThreadPool::WorkerLoop() {
  uint64_t seen = 0;
  for (;;) {
    uint64_t gen = generation_.load(std::memory_order_acquire);
    for (int spin = 1; gen == seen && spin <= kSpinIterations; ++spin) {
      CpuRelax();
      if (spin % kYieldEvery == 0) std::this_thread::yield();
      gen = generation_.load(std::memory_order_acquire);
    }
    if (gen == seen) {
      std::unique_lock<std::mutex> lock(mu_);
      wake_.wait(lock, [&] { return generation_.load(std::memory_order_acquire) != seen; });
      gen = generation_.load(std::memory_order_acquire);
    }
    seen = gen;
    if (stop_.load(std::memory_order_acquire)) return;
    DrainTasks();
    busy_workers_.fetch_sub(1, std::memory_order_acq_rel);
  }
}

}  // namespace memoria
