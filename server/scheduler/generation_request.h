#ifndef MEMORIA_SERVER_SCHEDULER_GENERATION_REQUEST_H_
#define MEMORIA_SERVER_SCHEDULER_GENERATION_REQUEST_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "engine/sampling/sampler.h"

namespace memoria {

// A retrieval score gap that keeps every reference (cosine scores differ by at most 2).
inline constexpr float kNoScoreGap = 2.0f;

// What a request asks of explicit memory (shared/MEMORY.md, "Using memories").
struct MemoryRequest {
  bool enabled = true;                   // ignored when the server has no store
  std::vector<std::string> collections;  // empty: all
  int32_t references = 5;                // top-M per retrieval
  int32_t retrieve_every = 64;           // generated tokens between retrievals
  // Retrieval score floor, and how far below the best reference's score a reference may be;
  // unset: the scheduler's defaults (SchedulerOptions).
  std::optional<float> min_score;
  std::optional<float> score_gap;
};

// One generation, front-end independent (gRPC and the OpenAI endpoint both build these).
struct GenerationRequest {
  std::string id;                // for logs and the stream's first message
  std::vector<int32_t> prompt;   // token ids, BOS / template already applied
  int32_t max_tokens = 128;
  SamplingParams sampling;
  std::vector<std::string> stop_strings;
  std::vector<int32_t> stop_tokens;
  bool ignore_eos = false;
  MemoryRequest memory;
};

// A cited reference of one retrieval.
struct Citation {
  std::string document_id;
  uint64_t reference_id = 0;
  float score = 0.0f;
};

struct RetrievalEvent {
  int32_t generated_tokens = 0;  // tokens generated when it ran
  std::vector<Citation> references;
  double latency_ms = 0;
};

enum class FinishReason { kLength, kStop };

struct FinishEvent {
  absl::Status status;  // not OK: the request failed (the code says why)
  FinishReason reason = FinishReason::kLength;
  int32_t prompt_tokens = 0;
  int32_t completion_tokens = 0;
  double queue_ms = 0;
  double ttft_ms = 0;
  double decode_tokens_per_second = 0;
  double total_ms = 0;
};

// What the scheduler streams back. One event may carry a retrieval, tokens with their text, and
// the finish; the finish comes last and once. The members' {} initializers let an event name only
// what it carries (GenerationEvent{.finish = ...}) without -Wmissing-field-initializers.
struct GenerationEvent {
  std::optional<RetrievalEvent> retrieval{};
  std::vector<SampledToken> tokens{};
  std::string text{};  // whole UTF-8 characters, stop strings held back
  std::optional<FinishEvent> finish{};
};

}  // namespace memoria

#endif  // MEMORIA_SERVER_SCHEDULER_GENERATION_REQUEST_H_
