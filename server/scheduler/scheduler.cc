#include "server/scheduler/scheduler.h"

#include <algorithm>
#include <chrono>
#include <future>
#include <utility>

#include "absl/strings/str_cat.h"
#include "engine/model/completion.h"
#include "engine/util/status_macros.h"

namespace memoria {
namespace {

using Clock = std::chrono::steady_clock;

double MillisBetween(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

int32_t PagesFor(int32_t tokens, int32_t page_size) {
  return (tokens + page_size - 1) / page_size;
}

}  // namespace

struct Scheduler::Sequence {
  GenerationRequest request;
  std::shared_ptr<GenerationStream> stream;
  Clock::time_point accepted;
  Clock::time_point admitted;
  Clock::time_point first_token;
  Clock::time_point last_token;

  SequenceId id = -1;            // the model's sequence once admitted
  int32_t reserved_pages = 0;    // KV pages set aside for prompt + max_tokens
  std::unique_ptr<Completion> completion;
  int32_t prefilled = 0;         // prompt tokens in the KV cache
  int32_t pending_token = -1;    // sampled, not yet fed back
  bool use_memory = false;
  std::shared_ptr<PendingRetrieval> retrieval;  // in flight
  double query_ms = 0;           // the query-vector pass of the retrieval in flight
  int32_t generated = 0;
  int32_t next_retrieval_at = 0; // generated-token count that triggers the next retrieval
  bool done = false;

  bool prefilling() const { return prefilled < static_cast<int32_t>(request.prompt.size()); }
};

struct Scheduler::CompileJob {
  std::string text;
  std::promise<absl::StatusOr<std::vector<CompiledReference>>> result;
};

Scheduler::Scheduler(Model* model, MemoryCompiler* compiler, MemoryStore* store,
                     const SchedulerOptions& options, ServerMetrics* metrics)
    : model_(model),
      compiler_(compiler),
      store_(store),
      options_(options),
      metrics_(metrics),
      context_length_(model->config().context_length) {
  sequence_pages_ = model_->total_kv_pages();
  if (has_memory()) {
    memory_span_ = compiler_->options().reference_tokens;
    // Compile and query passes borrow a reference's worth of pages between steps.
    sequence_pages_ -= PagesFor(memory_span_ + 1, model_->kv_page_size());
    prefetcher_ = std::make_unique<MemoryPrefetcher>(store_, model_->config(), 2,
                                                     [this] { work_cv_.notify_one(); });
  }
  metrics_->kv_pages_total->Set(model_->total_kv_pages());
  compute_thread_ = std::thread([this] { ComputeLoop(); });
}

Scheduler::~Scheduler() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    for (auto& seq : waiting_) seq->stream->Cancel();
  }
  work_cv_.notify_all();
  compute_thread_.join();
  prefetcher_.reset();  // after the compute thread: it no longer polls retrievals
}

absl::Status Scheduler::ValidateRequest(const GenerationRequest& request) const {
  if (request.prompt.empty()) return absl::InvalidArgumentError("the prompt has no tokens");
  const int32_t n_vocab = model_->config().n_vocab;
  for (int32_t t : request.prompt) {
    if (t < 0 || t >= n_vocab) {
      return absl::InvalidArgumentError(
          absl::StrCat("prompt token ", t, " is outside the vocabulary [0, ", n_vocab, ")"));
    }
  }
  if (request.max_tokens < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_tokens must be at least 1, got ", request.max_tokens));
  }
  MEMORIA_RETURN_IF_ERROR(ValidateSamplingParams(request.sampling));
  const bool memory = request.memory.enabled && has_memory();
  const int32_t span = FirstPosition(request);
  const auto prompt = static_cast<int32_t>(request.prompt.size());
  if (span + prompt >= context_length_) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the prompt has ", prompt, " tokens; the context holds ", context_length_ - span - 1,
        memory ? " with memory (the references' span takes the first positions)" : ""));
  }
  if (memory) {
    const MemoryRequest& m = request.memory;
    if (m.references < 0 || m.references > 64) {
      return absl::InvalidArgumentError(
          absl::StrCat("memory.references must be in [0, 64], got ", m.references));
    }
    if (m.retrieve_every < 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("memory.retrieve_every must be at least 1, got ", m.retrieve_every));
    }
    if (!(*m.min_score >= -1.0f && *m.min_score <= 1.0f)) {
      return absl::InvalidArgumentError("memory.min_score must be in [-1, 1]");
    }
    if (!(*m.score_gap >= 0.0f && *m.score_gap <= kNoScoreGap)) {
      return absl::InvalidArgumentError("memory.score_gap must be in [0, 2]");
    }
    for (const std::string& c : m.collections) {
      if (c.empty()) return absl::InvalidArgumentError("memory.collections has an empty name");
      absl::StatusOr<ListPage> page = store_->List(c, "", 1);
      if (!page.ok()) return page.status();
      if (page->documents.empty()) {
        return absl::InvalidArgumentError(absl::StrCat("unknown collection '", c, "'"));
      }
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<GenerationStream>> Scheduler::Submit(GenerationRequest request) {
  if (!request.memory.min_score) request.memory.min_score = default_min_score();
  if (!request.memory.score_gap) request.memory.score_gap = default_score_gap();
  MEMORIA_RETURN_IF_ERROR(ValidateRequest(request));
  auto seq = std::make_unique<Sequence>();
  seq->use_memory = request.memory.enabled && has_memory() && request.memory.references > 0;
  // Generation stops at the context's end: max_tokens shrinks to what is left.
  const auto prompt = static_cast<int32_t>(request.prompt.size());
  request.max_tokens =
      std::min(request.max_tokens, context_length_ - FirstPosition(request) - prompt);
  const int32_t page_size = model_->kv_page_size();
  seq->reserved_pages = PagesFor(prompt + request.max_tokens, page_size);
  if (seq->reserved_pages > sequence_pages_) {
    return absl::InvalidArgumentError(absl::StrCat(
        "prompt + max_tokens = ", prompt + request.max_tokens,
        " tokens do not fit the KV cache (", sequence_pages_ * page_size,
        " slots); lower max_tokens"));
  }
  seq->request = std::move(request);
  seq->stream = std::make_shared<GenerationStream>();
  seq->accepted = Clock::now();
  std::shared_ptr<GenerationStream> stream = seq->stream;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (draining_ || stopping_) return absl::UnavailableError("the server is shutting down");
    if (static_cast<int32_t>(waiting_.size()) >= options_.max_queue) {
      metrics_->requests_rejected->Increment();
      return absl::ResourceExhaustedError(absl::StrCat(
          "the request queue is full (", options_.max_queue, " waiting); retry later"));
    }
    waiting_.push_back(std::move(seq));
    ++in_flight_;
    metrics_->queue_depth->Set(static_cast<double>(waiting_.size()));
  }
  work_cv_.notify_one();
  return stream;
}

absl::StatusOr<std::vector<CompiledReference>> Scheduler::Compile(std::string text) {
  if (compiler_ == nullptr) return absl::FailedPreconditionError("the server has no memory store");
  auto job = std::make_shared<CompileJob>();
  job->text = std::move(text);
  auto result = job->result.get_future();
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return absl::UnavailableError("the server is shutting down");
    compile_jobs_.push_back(job);
  }
  work_cv_.notify_one();
  return result.get();
}

void Scheduler::Drain(absl::Duration timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  draining_ = true;
  if (idle_cv_.wait_for(lock, absl::ToChronoNanoseconds(timeout), [&] { return in_flight_ == 0; })) {
    return;
  }
  // Out of time: the compute thread retires everything left at its next step.
  cancel_all_.store(true, std::memory_order_release);
  work_cv_.notify_one();
  idle_cv_.wait(lock, [&] { return in_flight_ == 0; });
}

void Scheduler::ComputeLoop() {
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      auto has_work = [&] {
        return stopping_ || !waiting_.empty() || !compile_jobs_.empty() || !running_.empty();
      };
      work_cv_.wait(lock, has_work);
      if (stopping_) break;
    }
    RunCompileJob();
    if (!Step()) {
      // Every running sequence waits on a retrieval: sleep until a prefetch completes.
      std::unique_lock<std::mutex> lock(mu_);
      work_cv_.wait_for(lock, std::chrono::milliseconds(2));
    }
  }
  // Shutdown: fail what is left so no stream waits forever.
  for (auto& seq : running_) {
    Finish(*seq, absl::UnavailableError("the server is shutting down"), FinishReason::kLength);
  }
  running_.clear();
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& seq : waiting_) {
    seq->stream->Push(GenerationEvent{.finish = FinishEvent{
                                          .status = absl::UnavailableError("the server is shutting down")}});
  }
  waiting_.clear();
  for (auto& job : compile_jobs_) job->result.set_value(absl::UnavailableError("shutting down"));
  compile_jobs_.clear();
}

void Scheduler::RunCompileJob() {
  std::shared_ptr<CompileJob> job;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (compile_jobs_.empty()) return;
    job = std::move(compile_jobs_.front());
    compile_jobs_.pop_front();
  }
  job->result.set_value(compiler_->Compile(job->text));
}

void Scheduler::Admit() {
  int32_t reserved = 0;
  for (const auto& seq : running_) reserved += seq->reserved_pages;
  std::vector<std::unique_ptr<Sequence>> admitted;
  {
    std::lock_guard<std::mutex> lock(mu_);
    // Cancelled while waiting: leave the queue now.
    for (auto it = waiting_.begin(); it != waiting_.end();) {
      if ((*it)->stream->cancelled() || cancel_all_.load(std::memory_order_acquire)) {
        admitted.push_back(std::move(*it));  // finished below, outside the queue
        it = waiting_.erase(it);
      } else {
        ++it;
      }
    }
    // FIFO: the head waits for room rather than being overtaken.
    while (!waiting_.empty() &&
           static_cast<int32_t>(running_.size() + admitted.size()) < options_.max_running &&
           reserved + waiting_.front()->reserved_pages <= sequence_pages_) {
      reserved += waiting_.front()->reserved_pages;
      admitted.push_back(std::move(waiting_.front()));
      waiting_.pop_front();
    }
    metrics_->queue_depth->Set(static_cast<double>(waiting_.size()));
  }
  const auto now = Clock::now();
  for (auto& seq : admitted) {
    if (seq->stream->cancelled() || cancel_all_.load(std::memory_order_acquire)) {
      metrics_->requests_cancelled->Increment();
      Finish(*seq, absl::CancelledError("cancelled while queued"), FinishReason::kLength);
      continue;
    }
    seq->admitted = now;
    metrics_->queue_seconds->Observe(MillisBetween(seq->accepted, now) / 1000.0);
    const GenerationRequest& r = seq->request;
    absl::StatusOr<SequenceId> id = model_->CreateSequence(FirstPosition(r));
    if (!id.ok()) {
      metrics_->requests_failed->Increment();
      Finish(*seq, id.status(), FinishReason::kLength);
      continue;
    }
    seq->id = *id;
    CompletionOptions co{r.max_tokens, r.sampling, r.stop_strings, r.stop_tokens, !r.ignore_eos};
    seq->completion = std::make_unique<Completion>(model_->tokenizer(), model_->config().n_vocab,
                                                   co, r.prompt);
    if (seq->use_memory) StartRetrieval(*seq);
    running_.push_back(std::move(seq));
  }
  metrics_->running_sequences->Set(static_cast<double>(running_.size()));
}

void Scheduler::StartRetrieval(Sequence& seq) {
  // Query: the last R tokens of prompt + generated text, without the prompt's BOS (the
  // compiler adds its own, as when the references were encoded).
  std::vector<int32_t> text = seq.request.prompt;
  const std::vector<int32_t>& generated = seq.completion->tokens();
  text.insert(text.end(), generated.begin(), generated.end());
  size_t first = 0;
  const int32_t bos = model_->tokenizer().bos();
  if (!text.empty() && bos >= 0 && text[0] == bos) first = 1;
  const size_t n = std::min(text.size() - first, static_cast<size_t>(memory_span_));
  std::span<const int32_t> query(text.data() + text.size() - n, n);
  const auto t0 = Clock::now();
  absl::StatusOr<std::vector<float>> vector = compiler_->QueryVector(query);
  seq.query_ms = MillisBetween(t0, Clock::now());
  seq.next_retrieval_at = seq.generated + seq.request.memory.retrieve_every;
  if (!vector.ok()) {
    auto failed = std::make_shared<PendingRetrieval>();
    failed->status = vector.status();
    failed->done.store(true);
    seq.retrieval = std::move(failed);
    return;
  }
  seq.retrieval = prefetcher_->Start(*std::move(vector), seq.request.memory);
}

void Scheduler::Emit(Sequence& seq, GenerationEvent event) { seq.stream->Push(std::move(event)); }

void Scheduler::Finish(Sequence& seq, absl::Status status, FinishReason reason) {
  if (seq.done) return;
  seq.done = true;
  if (seq.id >= 0) {
    model_->DestroySequence(seq.id);
    seq.id = -1;
  }
  const auto now = Clock::now();
  FinishEvent finish;
  finish.status = std::move(status);
  finish.reason = reason;
  finish.prompt_tokens = static_cast<int32_t>(seq.request.prompt.size());
  finish.completion_tokens = seq.generated;
  finish.total_ms = MillisBetween(seq.accepted, now);
  if (seq.admitted != Clock::time_point{}) {
    finish.queue_ms = MillisBetween(seq.accepted, seq.admitted);
  } else {
    finish.queue_ms = finish.total_ms;
  }
  if (seq.generated > 0) {
    finish.ttft_ms = MillisBetween(seq.accepted, seq.first_token);
    const double decode_s = MillisBetween(seq.first_token, seq.last_token) / 1000.0;
    if (seq.generated > 1 && decode_s > 0) {
      finish.decode_tokens_per_second = (seq.generated - 1) / decode_s;
    }
  }
  if (finish.status.ok()) metrics_->requests_ok->Increment();
  Emit(seq, GenerationEvent{.finish = std::move(finish)});
  std::lock_guard<std::mutex> lock(mu_);
  if (--in_flight_ == 0) idle_cv_.notify_all();
}

bool Scheduler::Step() {
  Admit();

  // Retire cancelled sequences and apply finished retrievals.
  for (auto& seq : running_) {
    if (seq->stream->cancelled() || cancel_all_.load(std::memory_order_acquire)) {
      metrics_->requests_cancelled->Increment();
      Finish(*seq, absl::CancelledError("cancelled"), FinishReason::kLength);
      continue;
    }
    if (seq->retrieval && seq->retrieval->done.load(std::memory_order_acquire)) {
      PendingRetrieval& r = *seq->retrieval;
      if (!r.status.ok()) {
        metrics_->requests_failed->Increment();
        Finish(*seq, r.status, FinishReason::kLength);
        continue;
      }
      if (absl::Status s = model_->SetMemory(seq->id, r.view); !s.ok()) {
        metrics_->requests_failed->Increment();
        Finish(*seq, s, FinishReason::kLength);
        continue;
      }
      const double latency_ms = seq->query_ms + r.latency_ms;
      metrics_->retrievals->Increment();
      metrics_->retrieval_seconds->Observe(latency_ms / 1000.0);
      Emit(*seq, GenerationEvent{.retrieval = RetrievalEvent{seq->generated,
                                                             std::move(r.citations), latency_ms}});
      seq->retrieval.reset();
    }
  }
  std::erase_if(running_, [](const auto& seq) { return seq->done; });

  // The batch: one token for every decoding sequence, then prompt chunks in admission order
  // while the step's token budget lasts.
  std::vector<SequenceInput> inputs;
  std::vector<Sequence*> owners;
  int32_t budget = std::min(options_.step_token_budget, model_->options().max_batch_tokens);
  for (auto& seq : running_) {
    if (seq->retrieval || seq->prefilling() || budget == 0) continue;
    inputs.push_back(SequenceInput{seq->id, std::span<const int32_t>(&seq->pending_token, 1)});
    owners.push_back(seq.get());
    --budget;
  }
  for (auto& seq : running_) {
    if (seq->retrieval || !seq->prefilling() || budget == 0) continue;
    const auto left = static_cast<int32_t>(seq->request.prompt.size()) - seq->prefilled;
    const int32_t n = std::min({left, options_.prefill_chunk, budget});
    inputs.push_back(SequenceInput{
        seq->id, std::span<const int32_t>(seq->request.prompt.data() + seq->prefilled, n)});
    owners.push_back(seq.get());
    budget -= n;
  }
  metrics_->running_sequences->Set(static_cast<double>(running_.size()));
  if (inputs.empty()) return false;

  int32_t rows = 0;
  for (const SequenceInput& in : inputs) rows += static_cast<int32_t>(in.tokens.size());
  metrics_->batch_tokens->Observe(rows);
  metrics_->batch_sequences->Observe(static_cast<double>(inputs.size()));
  if (absl::Status s = model_->Forward(inputs, &output_); !s.ok()) {
    // Nothing was appended; the pass as a whole failed, so do its sequences.
    for (Sequence* seq : owners) {
      metrics_->requests_failed->Increment();
      Finish(*seq, s, FinishReason::kLength);
    }
    std::erase_if(running_, [](const auto& seq) { return seq->done; });
    return true;
  }
  metrics_->kv_pages_used->Set(model_->total_kv_pages() - model_->free_kv_pages());

  const auto now = Clock::now();
  for (size_t i = 0; i < owners.size(); ++i) {
    Sequence& seq = *owners[i];
    if (seq.prefilling()) {
      seq.prefilled += static_cast<int32_t>(inputs[i].tokens.size());
      metrics_->prompt_tokens->Increment(static_cast<double>(inputs[i].tokens.size()));
      if (seq.prefilling()) continue;  // more chunks to go; no token yet
    }
    Completion::Step step = seq.completion->Next(output_.Logits(i));
    ++seq.generated;
    metrics_->generated_tokens->Increment();
    if (seq.generated == 1) {
      seq.first_token = now;
      metrics_->ttft_seconds->Observe(MillisBetween(seq.accepted, now) / 1000.0);
    } else {
      metrics_->inter_token_seconds->Observe(MillisBetween(seq.last_token, now) / 1000.0);
    }
    seq.last_token = now;
    GenerationEvent event;
    event.text = std::move(step.text);
    event.tokens.push_back(std::move(step.token));
    Emit(seq, std::move(event));
    if (step.finished) {
      Finish(seq, absl::OkStatus(), step.stopped ? FinishReason::kStop : FinishReason::kLength);
      continue;
    }
    seq.pending_token = seq.completion->tokens().back();
    if (seq.use_memory && seq.generated >= seq.next_retrieval_at) StartRetrieval(seq);
  }
  std::erase_if(running_, [](const auto& seq) { return seq->done; });
  metrics_->running_sequences->Set(static_cast<double>(running_.size()));
  return true;
}

}  // namespace memoria
