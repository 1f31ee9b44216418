// The one file that includes nlohmann/json: every OpenAI JSON shape is read or written here.
#include "server/openai/openai_protocol.h"

#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "engine/util/status_macros.h"

namespace memoria {
namespace {

using Json = nlohmann::json;

// Token pieces can be partial UTF-8 (byte tokens); the wire format wants valid UTF-8.
std::string Dump(const Json& json) {
  return json.dump(-1, ' ', false, Json::error_handler_t::replace);
}

absl::Status FieldError(std::string_view field, std::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(std::string(field), " ", std::string(what)));
}

// Reads the optional fields of one JSON object. Absent and null fields leave the output as it
// is; a wrong type or range is INVALID_ARGUMENT naming the field (with its parent's prefix).
class FieldReader {
 public:
  FieldReader(const Json& object, std::string prefix)
      : object_(object), prefix_(std::move(prefix)) {}

  const Json* Find(const char* name) const {
    auto it = object_.find(name);
    return it == object_.end() || it->is_null() ? nullptr : &*it;
  }
  std::string Name(const char* name) const { return prefix_ + name; }

  absl::Status Bool(const char* name, bool* out) const {
    const Json* v = Find(name);
    if (v == nullptr) return absl::OkStatus();
    if (!v->is_boolean()) return FieldError(Name(name), "must be a boolean");
    *out = v->get<bool>();
    return absl::OkStatus();
  }

  absl::Status Int(const char* name, int64_t min, int64_t max, int32_t* out,
                   bool* given = nullptr) const {
    const Json* v = Find(name);
    if (v == nullptr) return absl::OkStatus();
    if (!v->is_number_integer()) return FieldError(Name(name), "must be an integer");
    const bool too_big = v->is_number_unsigned() && v->get<uint64_t>() > static_cast<uint64_t>(max);
    const int64_t value = too_big ? max : v->get<int64_t>();
    if (too_big || value < min || value > max) {
      return FieldError(Name(name), absl::StrCat("must be in [", min, ", ", max, "]"));
    }
    *out = static_cast<int32_t>(value);
    if (given != nullptr) *given = true;
    return absl::OkStatus();
  }

  absl::Status Number(const char* name, double min, double max, float* out) const {
    std::optional<float> value;
    MEMORIA_RETURN_IF_ERROR(Number(name, min, max, &value));
    if (value) *out = *value;
    return absl::OkStatus();
  }
  // The same for a field whose absence means "the server's default".
  absl::Status Number(const char* name, double min, double max, std::optional<float>* out) const {
    const Json* v = Find(name);
    if (v == nullptr) return absl::OkStatus();
    if (!v->is_number()) return FieldError(Name(name), "must be a number");
    const double value = v->get<double>();
    if (!(value >= min && value <= max)) {
      return FieldError(Name(name), absl::StrCat("must be in [", min, ", ", max, "]"));
    }
    *out = static_cast<float>(value);
    return absl::OkStatus();
  }

  // A string or (when `single` is false or not) an array of strings; empty strings rejected.
  absl::Status Strings(const char* name, std::vector<std::string>* out) const {
    const Json* v = Find(name);
    if (v == nullptr) return absl::OkStatus();
    if (v->is_string()) {
      if (v->get_ref<const std::string&>().empty()) {
        return FieldError(Name(name), "must not be empty");
      }
      out->push_back(v->get<std::string>());
      return absl::OkStatus();
    }
    if (!v->is_array()) return FieldError(Name(name), "must be a string or an array of strings");
    for (const Json& item : *v) {
      if (!item.is_string() || item.get_ref<const std::string&>().empty()) {
        return FieldError(Name(name), "must hold non-empty strings");
      }
      out->push_back(item.get<std::string>());
    }
    return absl::OkStatus();
  }

  absl::Status Ints(const char* name, std::vector<int32_t>* out) const {
    const Json* v = Find(name);
    if (v == nullptr) return absl::OkStatus();
    if (!v->is_array()) return FieldError(Name(name), "must be an array of integers");
    for (const Json& item : *v) {
      if (!item.is_number_integer() || item.get<int64_t>() < 0 ||
          item.get<int64_t>() > std::numeric_limits<int32_t>::max()) {
        return FieldError(Name(name), "must hold token ids (non-negative integers)");
      }
      out->push_back(item.get<int32_t>());
    }
    return absl::OkStatus();
  }

 private:
  const Json& object_;
  const std::string prefix_;
};

// A token id array, or nullopt when `v` is not an array of integers.
std::optional<std::vector<int32_t>> TokenIds(const Json& v) {
  if (!v.is_array()) return std::nullopt;
  std::vector<int32_t> ids;
  for (const Json& item : v) {
    if (!item.is_number_integer()) return std::nullopt;
    const int64_t id = item.get<int64_t>();
    // Out-of-vocabulary ids are the tokenizer's call; the sign and width are ours.
    if (id < 0 || id > std::numeric_limits<int32_t>::max()) return std::nullopt;
    ids.push_back(static_cast<int32_t>(id));
  }
  return ids;
}

// prompt: a string, token ids, or an array holding exactly one of either.
absl::StatusOr<OpenAiPrompt> ParseCompletionPrompt(const Json* prompt) {
  if (prompt == nullptr) return FieldError("prompt", "is required");
  if (prompt->is_string()) return OpenAiPrompt(prompt->get<std::string>());
  if (!prompt->is_array()) {
    return FieldError("prompt",
                      "must be a string, an array of token ids, or an array of one of them");
  }
  if (prompt->empty()) return FieldError("prompt", "must not be empty");
  if (std::optional<std::vector<int32_t>> ids = TokenIds(*prompt)) return OpenAiPrompt(*ids);
  if (prompt->size() > 1) {
    return FieldError("prompt", "holds several prompts; send one per request");
  }
  const Json& only = (*prompt)[0];
  if (only.is_string()) return OpenAiPrompt(only.get<std::string>());
  if (std::optional<std::vector<int32_t>> ids = TokenIds(only)) return OpenAiPrompt(*ids);
  return FieldError("prompt",
                    "must be a string, an array of token ids, or an array of one of them");
}

// messages: [{role, content}] where content is a string or text parts.
absl::StatusOr<OpenAiPrompt> ParseChatMessages(const Json* messages) {
  if (messages == nullptr) return FieldError("messages", "is required");
  if (!messages->is_array() || messages->empty()) {
    return FieldError("messages", "must be a non-empty array");
  }
  std::vector<ChatMessage> out;
  for (size_t i = 0; i < messages->size(); ++i) {
    const Json& m = (*messages)[i];
    const std::string name = absl::StrCat("messages[", i, "]");
    if (!m.is_object()) return FieldError(name, "must be an object");
    auto role = m.find("role");
    if (role == m.end() || !role->is_string())
      return FieldError(name + ".role", "must be a string");
    ChatMessage message;
    message.role = role->get<std::string>();
    auto content = m.find("content");
    if (content == m.end() || content->is_null()) {
      // An assistant turn that only called tools has no content.
    } else if (content->is_string()) {
      message.content = content->get<std::string>();
    } else if (content->is_array()) {
      for (const Json& part : *content) {
        auto type = part.is_object() ? part.find("type") : part.end();
        auto text = part.is_object() ? part.find("text") : part.end();
        if (type == part.end() || *type != "text" || text == part.end() || !text->is_string()) {
          return FieldError(name + ".content", "parts must be {\"type\": \"text\", \"text\": ...}");
        }
        message.content += text->get<std::string>();
      }
    } else {
      return FieldError(name + ".content", "must be a string or an array of text parts");
    }
    out.push_back(std::move(message));
  }
  return OpenAiPrompt(std::move(out));
}

absl::Status ParseMemory(const FieldReader& body, MemoryRequest* memory) {
  const Json* m = body.Find("memory");
  if (m == nullptr) return absl::OkStatus();
  if (!m->is_object()) return FieldError("memory", "must be an object");
  FieldReader r(*m, "memory.");
  MEMORIA_RETURN_IF_ERROR(r.Bool("enabled", &memory->enabled));
  MEMORIA_RETURN_IF_ERROR(r.Strings("collections", &memory->collections));
  MEMORIA_RETURN_IF_ERROR(r.Int("references", 0, 64, &memory->references));
  MEMORIA_RETURN_IF_ERROR(
      r.Int("retrieve_every", 1, std::numeric_limits<int32_t>::max(), &memory->retrieve_every));
  MEMORIA_RETURN_IF_ERROR(r.Number("min_score", -1.0, 1.0, &memory->min_score));
  return r.Number("score_gap", 0.0, 2.0, &memory->score_gap);
}

absl::Status RejectUnsupported(const FieldReader& r, OpenAiEndpoint endpoint) {
  int32_t n = 1;
  MEMORIA_RETURN_IF_ERROR(r.Int("n", 1, 1, &n));
  if (const Json* v = r.Find("logit_bias"); v != nullptr && !(v->is_object() && v->empty())) {
    return FieldError("logit_bias", "is not supported");
  }
  if (const Json* v = r.Find("tools"); v != nullptr && !(v->is_array() && v->empty())) {
    return FieldError("tools", "are not supported");
  }
  if (endpoint == OpenAiEndpoint::kCompletions) {
    bool echo = false;
    MEMORIA_RETURN_IF_ERROR(r.Bool("echo", &echo));
    if (echo) return FieldError("echo", "is not supported");
    int32_t best_of = 1;
    MEMORIA_RETURN_IF_ERROR(r.Int("best_of", 1, 1, &best_of));
    if (const Json* v = r.Find("suffix");
        v != nullptr && !(v->is_string() && v->get_ref<const std::string&>().empty())) {
      return FieldError("suffix", "is not supported");
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<OpenAiRequest> ParseObject(OpenAiEndpoint endpoint, const Json& body) {
  if (!body.is_object())
    return absl::InvalidArgumentError("the request body must be a JSON object");
  FieldReader r(body, "");
  MEMORIA_RETURN_IF_ERROR(RejectUnsupported(r, endpoint));
  OpenAiRequest out;
  out.endpoint = endpoint;
  const bool chat = endpoint == OpenAiEndpoint::kChatCompletions;
  MEMORIA_ASSIGN_OR_RETURN(out.prompt, chat ? ParseChatMessages(r.Find("messages"))
                                            : ParseCompletionPrompt(r.Find("prompt")));
  if (const Json* model = r.Find("model"); model != nullptr && !model->is_string()) {
    return FieldError("model", "must be a string");
  }

  GenerationRequest& g = out.generation;
  constexpr int64_t kMaxInt = std::numeric_limits<int32_t>::max();
  MEMORIA_RETURN_IF_ERROR(r.Int("max_tokens", 1, kMaxInt, &g.max_tokens, &out.max_tokens_given));
  if (chat) {
    // The newer name wins when both are sent.
    MEMORIA_RETURN_IF_ERROR(
        r.Int("max_completion_tokens", 1, kMaxInt, &g.max_tokens, &out.max_tokens_given));
  }
  SamplingParams& s = g.sampling;
  // OpenAI's default temperature is 1; a client that wants greedy decoding sends 0.
  s.temperature = 1.0f;
  MEMORIA_RETURN_IF_ERROR(r.Number("temperature", 0.0, 2.0, &s.temperature));
  MEMORIA_RETURN_IF_ERROR(r.Number("top_p", 0.0, 1.0, &s.top_p));
  MEMORIA_RETURN_IF_ERROR(r.Number("frequency_penalty", -2.0, 2.0, &s.frequency_penalty));
  MEMORIA_RETURN_IF_ERROR(r.Number("presence_penalty", -2.0, 2.0, &s.presence_penalty));
  MEMORIA_RETURN_IF_ERROR(r.Int("top_k", 0, kMaxInt, &s.top_k));
  MEMORIA_RETURN_IF_ERROR(r.Number("min_p", 0.0, 1.0, &s.min_p));
  MEMORIA_RETURN_IF_ERROR(r.Number("repetition_penalty", 0.0, 100.0, &s.repetition_penalty));
  if (s.repetition_penalty == 0.0f) return FieldError("repetition_penalty", "must be positive");
  if (const Json* seed = r.Find("seed"); seed != nullptr) {
    if (!seed->is_number_integer()) return FieldError("seed", "must be an integer");
    // Negative seeds are valid for OpenAI; any 64 bits make a seed.
    s.seed = seed->is_number_unsigned() ? seed->get<uint64_t>()
                                        : static_cast<uint64_t>(seed->get<int64_t>());
  }
  MEMORIA_RETURN_IF_ERROR(r.Strings("stop", &g.stop_strings));
  MEMORIA_RETURN_IF_ERROR(r.Ints("stop_token_ids", &g.stop_tokens));
  MEMORIA_RETURN_IF_ERROR(r.Bool("ignore_eos", &g.ignore_eos));

  // logprobs: an integer (top-n) for completions, a boolean plus top_logprobs for chat.
  if (chat) {
    MEMORIA_RETURN_IF_ERROR(r.Bool("logprobs", &out.logprobs));
    MEMORIA_RETURN_IF_ERROR(r.Int("top_logprobs", 0, 20, &s.top_logprobs));
    if (s.top_logprobs > 0 && !out.logprobs) {
      return FieldError("top_logprobs", "needs logprobs: true");
    }
  } else {
    MEMORIA_RETURN_IF_ERROR(r.Int("logprobs", 0, 20, &s.top_logprobs, &out.logprobs));
  }
  s.logprobs = out.logprobs;

  MEMORIA_RETURN_IF_ERROR(r.Bool("stream", &out.stream));
  if (const Json* options = r.Find("stream_options"); options != nullptr) {
    if (!options->is_object()) return FieldError("stream_options", "must be an object");
    if (!out.stream) return FieldError("stream_options", "needs stream: true");
    MEMORIA_RETURN_IF_ERROR(
        FieldReader(*options, "stream_options.").Bool("include_usage", &out.include_usage));
  }
  MEMORIA_RETURN_IF_ERROR(ParseMemory(r, &g.memory));
  return out;
}

const char* FinishReasonName(FinishReason reason) {
  return reason == FinishReason::kStop ? "stop" : "length";
}

Json Usage(const FinishEvent& finish) {
  return {{"prompt_tokens", finish.prompt_tokens},
          {"completion_tokens", finish.completion_tokens},
          {"total_tokens", finish.prompt_tokens + finish.completion_tokens}};
}

Json Timings(const FinishEvent& finish) {
  return {{"queue_ms", finish.queue_ms},
          {"ttft_ms", finish.ttft_ms},
          {"decode_tokens_per_second", finish.decode_tokens_per_second},
          {"total_ms", finish.total_ms}};
}

Json References(const RetrievalEvent& retrieval) {
  Json references = Json::array();
  for (const Citation& c : retrieval.references) {
    references.push_back(
        {{"document_id", c.document_id}, {"reference_id", c.reference_id}, {"score", c.score}});
  }
  return references;
}

Json Retrieval(const RetrievalEvent& retrieval) {
  return {{"generated_tokens", retrieval.generated_tokens},
          {"latency_ms", retrieval.latency_ms},
          {"references", References(retrieval)}};
}

Json Bytes(const std::string& piece) {
  Json bytes = Json::array();
  for (unsigned char c : piece) bytes.push_back(static_cast<int>(c));
  return bytes;
}

// Completions: parallel arrays; offsets count bytes of the pieces, from `*text_offset` on.
Json CompletionLogprobs(const std::vector<SampledToken>& tokens, const TokenPieceFn& piece,
                        size_t* text_offset) {
  Json out = {{"tokens", Json::array()},
              {"token_logprobs", Json::array()},
              {"top_logprobs", Json::array()},
              {"text_offset", Json::array()}};
  for (const SampledToken& t : tokens) {
    const std::string text = piece(t.id);
    out["tokens"].push_back(text);
    out["token_logprobs"].push_back(t.logprob);
    out["text_offset"].push_back(*text_offset);
    *text_offset += text.size();
    Json top = Json::object();
    for (const auto& [id, logprob] : t.top) top[piece(id)] = logprob;
    out["top_logprobs"].push_back(std::move(top));
  }
  return out;
}

// Chat: one entry per token with its bytes and alternatives.
Json ChatLogprobs(const std::vector<SampledToken>& tokens, const TokenPieceFn& piece) {
  Json content = Json::array();
  for (const SampledToken& t : tokens) {
    const std::string text = piece(t.id);
    Json top = Json::array();
    for (const auto& [id, logprob] : t.top) {
      const std::string alt = piece(id);
      top.push_back({{"token", alt}, {"logprob", logprob}, {"bytes", Bytes(alt)}});
    }
    content.push_back(
        {{"token", text}, {"logprob", t.logprob}, {"bytes", Bytes(text)}, {"top_logprobs", top}});
  }
  return {{"content", std::move(content)}};
}

std::string Frame(const Json& json) { return absl::StrCat("data: ", Dump(json), "\n\n"); }

constexpr const char* kDoneFrame = "data: [DONE]\n\n";

const char* ErrorType(int http_status) {
  switch (http_status) {
    case 400:
      return "invalid_request_error";
    case 401:
      return "authentication_error";
    case 403:
      return "permission_error";
    case 404:
      return "not_found_error";
    case 429:
      return "rate_limit_error";
    case 503:
      return "service_unavailable_error";
    case 504:
      return "timeout_error";
    default:
      return "server_error";
  }
}

Json ErrorObject(const absl::Status& status) {
  return {{"error",
           {{"message", std::string(status.message())},
            {"type", ErrorType(HttpStatusFor(status))},
            {"param", nullptr},
            {"code", absl::StatusCodeToString(status.code())}}}};
}

}  // namespace

absl::StatusOr<OpenAiRequest> ParseOpenAiRequest(OpenAiEndpoint endpoint, std::string_view body) {
  Json json = Json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded()) return absl::InvalidArgumentError("the request body is not valid JSON");
  try {
    return ParseObject(endpoint, json);
  } catch (const Json::exception& e) {
    // The checks above test every type before reading it; this is the net under them.
    return absl::InvalidArgumentError(absl::StrCat("malformed request: ", e.what()));
  }
}

OpenAiResponseBuilder::OpenAiResponseBuilder(Options options) : options_(std::move(options)) {}

std::string OpenAiResponseBuilder::Chunk(const GenerationEvent& event, bool with_finish) {
  const bool chat = options_.endpoint == OpenAiEndpoint::kChatCompletions;
  Json choice = {{"index", 0}};
  if (chat) {
    Json delta = Json::object();
    if (!role_sent_) delta["role"] = "assistant";
    if (!with_finish) delta["content"] = event.text;
    choice["delta"] = std::move(delta);
  } else {
    choice["text"] = with_finish ? std::string() : event.text;
  }
  choice["logprobs"] = nullptr;
  if (options_.logprobs && !with_finish && !event.tokens.empty()) {
    choice["logprobs"] =
        chat ? ChatLogprobs(event.tokens, options_.token_piece)
             : CompletionLogprobs(event.tokens, options_.token_piece, &stream_text_offset_);
  }
  choice["finish_reason"] =
      with_finish ? Json(FinishReasonName(event.finish->reason)) : Json(nullptr);
  Json chunk = {{"id", options_.id},
                {"object", chat ? "chat.completion.chunk" : "text_completion"},
                {"created", options_.created},
                {"model", options_.model},
                {"choices", Json::array({std::move(choice)})}};
  if (options_.include_usage) chunk["usage"] = nullptr;
  if (!with_finish && event.retrieval.has_value()) {
    chunk["memoria"] = Retrieval(*event.retrieval);
  }
  if (with_finish) chunk["memoria"] = {{"timings", Timings(*event.finish)}};
  return Frame(chunk);
}

std::string OpenAiResponseBuilder::StreamFrames(const GenerationEvent& event) {
  std::string frames;
  const bool failed = event.finish.has_value() && !event.finish->status.ok();
  const bool has_content = !event.text.empty() || (options_.logprobs && !event.tokens.empty()) ||
                           event.retrieval.has_value();
  if (has_content ||
      (!role_sent_ && !failed && options_.endpoint == OpenAiEndpoint::kChatCompletions)) {
    frames += Chunk(event, /*with_finish=*/false);
    role_sent_ = true;
  }
  if (!event.finish.has_value()) return frames;
  if (failed) {
    frames += Frame(ErrorObject(event.finish->status));
  } else {
    frames += Chunk(event, /*with_finish=*/true);
    if (options_.include_usage) {
      frames += Frame({{"id", options_.id},
                       {"object", options_.endpoint == OpenAiEndpoint::kChatCompletions
                                      ? "chat.completion.chunk"
                                      : "text_completion"},
                       {"created", options_.created},
                       {"model", options_.model},
                       {"choices", Json::array()},
                       {"usage", Usage(*event.finish)}});
    }
  }
  frames += kDoneFrame;
  return frames;
}

void OpenAiResponseBuilder::Collect(const GenerationEvent& event) {
  text_ += event.text;
  tokens_.insert(tokens_.end(), event.tokens.begin(), event.tokens.end());
  if (event.retrieval.has_value()) retrievals_.push_back(*event.retrieval);
  if (event.finish.has_value()) finish_ = event.finish;
}

std::string OpenAiResponseBuilder::Response() const {
  const bool chat = options_.endpoint == OpenAiEndpoint::kChatCompletions;
  const FinishEvent finish = finish_.value_or(FinishEvent{});
  Json choice = {{"index", 0}};
  if (chat) {
    choice["message"] = {{"role", "assistant"}, {"content", text_}};
  } else {
    choice["text"] = text_;
  }
  choice["logprobs"] = nullptr;
  if (options_.logprobs) {
    size_t offset = 0;
    choice["logprobs"] = chat ? ChatLogprobs(tokens_, options_.token_piece)
                              : CompletionLogprobs(tokens_, options_.token_piece, &offset);
  }
  choice["finish_reason"] = FinishReasonName(finish.reason);
  Json retrievals = Json::array();
  for (const RetrievalEvent& r : retrievals_) retrievals.push_back(Retrieval(r));
  const Json response = {{"id", options_.id},
                         {"object", chat ? "chat.completion" : "text_completion"},
                         {"created", options_.created},
                         {"model", options_.model},
                         {"choices", Json::array({std::move(choice)})},
                         {"usage", Usage(finish)},
                         {"memoria", {{"retrievals", retrievals}, {"timings", Timings(finish)}}}};
  return Dump(response);
}

int HttpStatusFor(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kOk:
      return 200;
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kOutOfRange:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kAlreadyExists:
      return 400;
    case absl::StatusCode::kUnauthenticated:
      return 401;
    case absl::StatusCode::kPermissionDenied:
      return 403;
    case absl::StatusCode::kNotFound:
      return 404;
    case absl::StatusCode::kResourceExhausted:
      return 429;
    case absl::StatusCode::kCancelled:
      return 499;  // the client went away (nginx's code)
    case absl::StatusCode::kUnimplemented:
      return 501;
    case absl::StatusCode::kUnavailable:
      return 503;
    case absl::StatusCode::kDeadlineExceeded:
      return 504;
    default:
      return 500;
  }
}

std::string OpenAiErrorJson(const absl::Status& status) { return Dump(ErrorObject(status)); }

std::string OpenAiModelsJson(const std::string& model, int64_t created) {
  return Dump({{"object", "list"},
               {"data", Json::array({{{"id", model},
                                      {"object", "model"},
                                      {"created", created},
                                      {"owned_by", "memoria"}}})}});
}

}  // namespace memoria
