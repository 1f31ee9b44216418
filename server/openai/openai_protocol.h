#ifndef MEMORIA_SERVER_OPENAI_OPENAI_PROTOCOL_H_
#define MEMORIA_SERVER_OPENAI_OPENAI_PROTOCOL_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/chat/chat_template.h"
#include "server/scheduler/generation_request.h"

namespace memoria {

// The OpenAI wire format (JSON) to and from Memoria's GenerationRequest and GenerationEvent.
// Pure functions: no model, no scheduler, so every mapping is tested without either.

enum class OpenAiEndpoint {
  kCompletions,      // POST /v1/completions
  kChatCompletions,  // POST /v1/chat/completions
};

// The prompt as the client sent it; tokenized later against the model (server/scheduler/prompt.h).
using OpenAiPrompt = std::variant<std::string,               // text
                                  std::vector<int32_t>,      // token ids
                                  std::vector<ChatMessage>>;  // chat messages

struct OpenAiRequest {
  OpenAiEndpoint endpoint = OpenAiEndpoint::kCompletions;
  OpenAiPrompt prompt;
  // Everything but the prompt tokens and the id. max_tokens is meaningful only when
  // max_tokens_given: the default depends on the prompt's length (OpenAiService decides).
  GenerationRequest generation;
  bool max_tokens_given = false;
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage: a last chunk with the usage
  // Report each token's logprob (and generation.sampling.top_logprobs alternatives).
  bool logprobs = false;
};

// Parses a request body. INVALID_ARGUMENT names the offending field (as OpenAI's `param`):
// malformed JSON, a wrong type, n != 1, more than one prompt, out-of-range values. Unknown fields
// are ignored (clients send many); fields that would change the output in unsupported ways
// (echo, suffix, best_of > 1, logit_bias, tools) are rejected rather than ignored. Memoria's
// extras: `memory` {enabled, collections, references, retrieve_every, min_score, score_gap}, top_k, min_p,
// repetition_penalty, ignore_eos, stop_token_ids.
absl::StatusOr<OpenAiRequest> ParseOpenAiRequest(OpenAiEndpoint endpoint, std::string_view body);

// The bytes a token id stands for (the model's tokenizer), used for logprobs.
using TokenPieceFn = std::function<std::string(int32_t)>;

// Turns one request's GenerationEvents into OpenAI responses: SSE frames when streaming, one JSON
// object otherwise. Not thread-safe; one per request.
class OpenAiResponseBuilder {
 public:
  struct Options {
    OpenAiEndpoint endpoint = OpenAiEndpoint::kCompletions;
    std::string id;     // "cmpl-..." or "chatcmpl-..."
    std::string model;  // the served model's name
    int64_t created = 0;  // Unix seconds
    bool logprobs = false;
    bool include_usage = false;
    TokenPieceFn token_piece = nullptr;  // required when logprobs
  };
  explicit OpenAiResponseBuilder(Options options);

  // Streaming: the SSE frames ("data: {...}\n\n") for one event, possibly none. A chat stream's
  // first frame carries the assistant role. A retrieval adds `memoria.references` to the chunk.
  // The finish event adds the chunk with finish_reason, then the usage chunk when asked, then
  // "data: [DONE]". A finish with a failed status gives an error frame and "data: [DONE]".
  std::string StreamFrames(const GenerationEvent& event);

  // Not streaming: collect every event, then Response() once the finish has been collected.
  void Collect(const GenerationEvent& event);
  // The whole completion object. Retrievals go into `memoria.retrievals`, timings into
  // `memoria.timings`.
  std::string Response() const;

 private:
  // One chunk: the event's content, or (with_finish) the closing chunk with finish_reason.
  std::string Chunk(const GenerationEvent& event, bool with_finish);

  Options options_;
  // Streaming.
  bool role_sent_ = false;
  size_t stream_text_offset_ = 0;  // completions logprobs: bytes of the pieces streamed so far
  // Collected for Response().
  std::string text_;
  std::vector<SampledToken> tokens_;
  std::vector<RetrievalEvent> retrievals_;
  std::optional<FinishEvent> finish_;
};

// The HTTP status OpenAI clients expect for a Status: 400 bad input, 404 not found, 429 queue
// full, 503 not ready or draining, 504 deadline, 500 otherwise.
int HttpStatusFor(const absl::Status& status);
// {"error": {"message", "type", "param", "code"}}.
std::string OpenAiErrorJson(const absl::Status& status);
// GET /v1/models: a list with the one served model.
std::string OpenAiModelsJson(const std::string& model, int64_t created);

}  // namespace memoria

#endif  // MEMORIA_SERVER_OPENAI_OPENAI_PROTOCOL_H_
