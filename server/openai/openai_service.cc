#include "server/openai/openai_service.h"

#include <memory>
#include <utility>
#include <variant>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "server/openai/openai_protocol.h"
#include "server/request_log.h"
#include "server/scheduler/prompt.h"

namespace memoria {
namespace {

// How often a waiting handler looks at its client between events.
constexpr absl::Duration kPollInterval = absl::Milliseconds(20);

HttpResponse JsonResponse(int status, std::string body) {
  HttpResponse response;
  response.status = status;
  response.content_type = "application/json";
  response.body = std::move(body);
  return response;
}

HttpResponse Error(const absl::Status& status) {
  return JsonResponse(HttpStatusFor(status), OpenAiErrorJson(status));
}

absl::StatusOr<std::vector<int32_t>> Tokenize(const Model& model, const OpenAiPrompt& prompt) {
  if (const auto* text = std::get_if<std::string>(&prompt)) return PromptFromText(model, *text);
  if (const auto* ids = std::get_if<std::vector<int32_t>>(&prompt)) {
    return PromptFromIds(model, *ids);
  }
  return PromptFromChat(model, std::get<std::vector<ChatMessage>>(prompt));
}

class OpenAiService {
 public:
  OpenAiService(const OpenAiServiceOptions& options, ServingState* state)
      : options_(options), state_(state), created_(absl::ToUnixSeconds(absl::Now())) {}

  HttpResponse Generate(const HttpRequest& http, OpenAiEndpoint endpoint) const;
  HttpResponse Models() const {
    if (!state_->IsReady()) return Error(NotServing());
    return JsonResponse(200, OpenAiModelsJson(options_.model_name, created_));
  }

 private:
  static absl::Status NotServing() {
    return absl::UnavailableError("the server is not serving (loading or shutting down)");
  }

  const OpenAiServiceOptions options_;
  ServingState* const state_;
  const int64_t created_;
};

HttpResponse OpenAiService::Generate(const HttpRequest& http, OpenAiEndpoint endpoint) const {
  if (!state_->IsReady()) return Error(NotServing());
  ServerMetrics& metrics = *state_->metrics;
  const Model& model = *state_->model;
  const bool chat = endpoint == OpenAiEndpoint::kChatCompletions;

  absl::StatusOr<OpenAiRequest> parsed = ParseOpenAiRequest(endpoint, http.body);
  absl::StatusOr<std::vector<int32_t>> prompt =
      parsed.ok() ? Tokenize(model, parsed->prompt) : parsed.status();
  if (!prompt.ok()) {
    metrics.requests_invalid->Increment();
    return Error(prompt.status());
  }
  GenerationRequest generation = std::move(parsed->generation);
  generation.prompt = *std::move(prompt);
  generation.id = NewRequestId();
  if (!parsed->max_tokens_given) {
    generation.max_tokens =
        chat ? options_.default_chat_max_tokens : options_.default_completion_max_tokens;
  }
  const std::string request_id = generation.id;
  absl::StatusOr<std::shared_ptr<GenerationStream>> submitted =
      state_->scheduler->Submit(std::move(generation));
  if (!submitted.ok()) {
    if (submitted.status().code() == absl::StatusCode::kInvalidArgument) {
      metrics.requests_invalid->Increment();
    }
    LogEvent("openai_refused", {{"request_id", request_id},
                                {"error", submitted.status().ToString()}});
    return Error(submitted.status());
  }
  std::shared_ptr<GenerationStream> stream = *std::move(submitted);

  const Tokenizer* tokenizer = &model.tokenizer();
  auto builder = std::make_shared<OpenAiResponseBuilder>(OpenAiResponseBuilder::Options{
      .endpoint = endpoint,
      .id = absl::StrCat(chat ? "chatcmpl-" : "cmpl-", request_id),
      .model = options_.model_name,
      .created = absl::ToUnixSeconds(absl::Now()),
      .logprobs = parsed->logprobs,
      .include_usage = parsed->include_usage,
      .token_piece = [tokenizer](int32_t id) { return tokenizer->TokenToPiece(id, true); },
  });

  if (!parsed->stream) {
    for (;;) {
      GenerationEvent event;
      if (!stream->Next(&event, kPollInterval)) continue;
      builder->Collect(event);
      if (!event.finish.has_value()) continue;
      if (!event.finish->status.ok()) {
        LogEvent("openai_failed", {{"request_id", request_id},
                                   {"error", event.finish->status.ToString()}});
        return Error(event.finish->status);
      }
      return JsonResponse(200, builder->Response());
    }
  }

  HttpResponse response;
  response.content_type = "text/event-stream";
  response.headers = {{"Cache-Control", "no-cache"}, {"X-Accel-Buffering", "no"}};
  response.stream = [stream, builder, request_id](HttpChunkWriter& writer) {
    for (;;) {
      if (!writer.Connected()) {
        stream->Cancel();
        LogEvent("openai_cancelled", {{"request_id", request_id}});
        return;
      }
      GenerationEvent event;
      if (!stream->Next(&event, kPollInterval)) continue;
      const bool done = event.finish.has_value();
      const std::string frames = builder->StreamFrames(event);
      if (!frames.empty() && !writer.Write(frames)) {
        if (!done) stream->Cancel();
        LogEvent("openai_cancelled", {{"request_id", request_id}});
        return;
      }
      if (done) return;
    }
  };
  return response;
}

}  // namespace

std::vector<HttpRoute> OpenAiRoutes(const OpenAiServiceOptions& options, ServingState* state) {
  auto service = std::make_shared<OpenAiService>(options, state);
  return {
      {"POST", "/v1/completions",
       [service](const HttpRequest& r) {
         return service->Generate(r, OpenAiEndpoint::kCompletions);
       }},
      {"POST", "/v1/chat/completions",
       [service](const HttpRequest& r) {
         return service->Generate(r, OpenAiEndpoint::kChatCompletions);
       }},
      {"GET", "/v1/models", [service](const HttpRequest&) { return service->Models(); }},
  };
}

}  // namespace memoria
