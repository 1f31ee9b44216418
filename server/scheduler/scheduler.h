#ifndef MEMORIA_SERVER_SCHEDULER_SCHEDULER_H_
#define MEMORIA_SERVER_SCHEDULER_SCHEDULER_H_

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "engine/model/model.h"
#include "memstore/compiler.h"
#include "memstore/memory_store.h"
#include "server/metrics/server_metrics.h"
#include "server/scheduler/generation_stream.h"
#include "server/scheduler/memory_prefetcher.h"

namespace memoria {

struct SchedulerOptions {
  int32_t max_queue = 256;     // waiting requests; beyond it Submit gives RESOURCE_EXHAUSTED
  int32_t max_running = 64;    // sequences in the running batch
  // Token rows per forward pass (decodes first, then prefill chunks); at most the model's
  // max_batch_tokens.
  int32_t step_token_budget = 512;
  // Most prompt tokens one sequence prefills per step, so a long prompt cannot starve decodes.
  int32_t prefill_chunk = 256;
  // The retrieval floor of requests that set none; unset: 0.
  std::optional<float> min_score;
  // The retrieval score gap of requests that set none; unset: the model's calibrated one
  // (ModelConfig::retrieval_score_gap), else kNoScoreGap.
  std::optional<float> score_gap;
};

// Continuous batching over one Model, driven by one compute thread (vLLM/Orca style): every step
// admits waiting requests in FIFO order while KV pages, batch slots and the step's token budget
// last, runs one forward pass over all running sequences' next tokens (a decode token each, plus
// prompt chunks), samples, streams, and retires finished or cancelled sequences at once.
//
// Explicit memory (shared/MEMORY.md): a request's first retrieval and every `retrieve_every`
// tokens after are split: the query vector is one short pass on the compute thread, then the
// search and the page loads run on the prefetcher's threads while the batch keeps stepping; the
// sequence rejoins the batch when its pages are ready, so attention never waits on storage.
//
// Document compiles (ingest) also need the model: they run on the compute thread between steps,
// one document per step.
class Scheduler {
 public:
  // model and metrics are required; compiler and store may be null (no memory).
  Scheduler(Model* model, MemoryCompiler* compiler, MemoryStore* store,
            const SchedulerOptions& options, ServerMetrics* metrics);
  ~Scheduler();  // cancels what is left and joins the compute thread

  // Validates and queues a request. INVALID_ARGUMENT names a bad field (empty prompt, prompt or
  // prompt + max_tokens beyond the context, sampling parameters, unknown collection),
  // RESOURCE_EXHAUSTED when the queue is full, UNAVAILABLE while draining.
  absl::StatusOr<std::shared_ptr<GenerationStream>> Submit(GenerationRequest request);

  // Compiles a document's text into references on the compute thread; blocks the caller.
  absl::StatusOr<std::vector<CompiledReference>> Compile(std::string text);

  // Stops accepting requests and waits up to `timeout` for queued and running ones to finish;
  // what is left is then cancelled. The compute thread keeps running (for Compile) until
  // destruction.
  void Drain(absl::Duration timeout);

  int32_t context_length() const { return context_length_; }
  bool has_memory() const { return store_ != nullptr && compiler_ != nullptr; }
  // The retrieval floor and score gap of a request that sets none.
  float default_min_score() const { return options_.min_score.value_or(0.0f); }
  float default_score_gap() const {
    return options_.score_gap.value_or(model_->config().retrieval_score_gap.value_or(kNoScoreGap));
  }

 private:
  struct Sequence;
  struct CompileJob;

  void ComputeLoop();
  // One scheduling step; false when there was nothing to do.
  bool Step();
  void Admit();
  void StartRetrieval(Sequence& seq);
  void Emit(Sequence& seq, GenerationEvent event);
  void Finish(Sequence& seq, absl::Status status, FinishReason reason);
  void RunCompileJob();
  absl::Status ValidateRequest(const GenerationRequest& request) const;
  // Rotary position of the request's first token: after the references' span when it uses
  // memory (shared/MEMORY.md "parallel" positions).
  int32_t FirstPosition(const GenerationRequest& request) const {
    return request.memory.enabled && has_memory() ? memory_span_ : 0;
  }

  Model* const model_;
  MemoryCompiler* const compiler_;
  MemoryStore* const store_;
  const SchedulerOptions options_;
  ServerMetrics* const metrics_;
  int32_t context_length_ = 0;
  int32_t memory_span_ = 0;  // first rotary position of a sequence's own tokens (R with memory)
  int32_t sequence_pages_ = 0;  // KV pages sequences may reserve (the rest serve compiles)

  std::unique_ptr<MemoryPrefetcher> prefetcher_;

  std::mutex mu_;
  std::condition_variable work_cv_;
  std::condition_variable idle_cv_;
  std::deque<std::unique_ptr<Sequence>> waiting_;  // guarded by mu_
  std::deque<std::shared_ptr<CompileJob>> compile_jobs_;  // guarded by mu_
  bool draining_ = false;   // guarded by mu_
  bool stopping_ = false;   // guarded by mu_
  std::atomic<bool> cancel_all_{false};  // Drain ran out of time
  int32_t in_flight_ = 0;   // waiting + running, guarded by mu_

  // Compute thread only.
  std::vector<std::unique_ptr<Sequence>> running_;
  ForwardOutput output_;
  std::thread compute_thread_;
};

}  // namespace memoria

#endif  // MEMORIA_SERVER_SCHEDULER_SCHEDULER_H_
