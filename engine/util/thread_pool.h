#ifndef MEMORIA_ENGINE_UTIL_THREAD_POOL_H_
#define MEMORIA_ENGINE_UTIL_THREAD_POOL_H_

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/functional/function_ref.h"

namespace memoria {

// A fixed set of worker threads for data-parallel kernels. Run() hands out task indices through
// an atomic counter, so uneven tasks balance themselves, and the calling thread works too.
// Workers spin briefly between runs before sleeping: a decode step issues hundreds of short
// parallel regions, and waking sleeping threads for each would cost more than the work.
// Run() may be called from one thread at a time (the engine's compute thread).
class ThreadPool {
 public:
  explicit ThreadPool(int n_threads);  // total threads including the caller; >= 1
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return static_cast<int>(workers_.size()) + 1; }

  // Calls fn(task) once for every task in [0, n_tasks) and returns when all calls have returned.
  void Run(int64_t n_tasks, absl::FunctionRef<void(int64_t task)> fn);

 private:
  void WorkerLoop();
  void DrainTasks();

  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable wake_;
  // Published by Run() before the generation bump (release) and read after it (acquire).
  absl::FunctionRef<void(int64_t)>* fn_ = nullptr;
  int64_t n_tasks_ = 0;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int64_t> next_task_{0};
  std::atomic<int> busy_workers_{0};
  std::atomic<bool> stop_{false};
};

// Number of threads to use when the caller asks for 0: the physical-core guess (all hardware threads).
int DefaultThreadCount();

}  // namespace memoria

#endif  // MEMORIA_ENGINE_UTIL_THREAD_POOL_H_
