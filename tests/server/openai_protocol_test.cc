#include "server/openai/openai_protocol.h"

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace memoria {
namespace {

using Json = nlohmann::json;

OpenAiRequest ParseOk(OpenAiEndpoint endpoint, const std::string& body) {
  absl::StatusOr<OpenAiRequest> parsed = ParseOpenAiRequest(endpoint, body);
  EXPECT_TRUE(parsed.ok()) << parsed.status() << " for " << body;
  return parsed.ok() ? *std::move(parsed) : OpenAiRequest{};
}

// The status message of a rejected body; fails the test if it was accepted.
std::string Rejection(OpenAiEndpoint endpoint, const std::string& body) {
  absl::StatusOr<OpenAiRequest> parsed = ParseOpenAiRequest(endpoint, body);
  EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument) << body;
  return std::string(parsed.status().message());
}

constexpr OpenAiEndpoint kCompletions = OpenAiEndpoint::kCompletions;
constexpr OpenAiEndpoint kChat = OpenAiEndpoint::kChatCompletions;

TEST(OpenAiParseTest, CompletionPromptForms) {
  EXPECT_EQ(std::get<std::string>(ParseOk(kCompletions, R"({"prompt": "Hi"})").prompt), "Hi");
  EXPECT_EQ(std::get<std::string>(ParseOk(kCompletions, R"({"prompt": ["Hi"]})").prompt), "Hi");
  EXPECT_EQ(
      std::get<std::vector<int32_t>>(ParseOk(kCompletions, R"({"prompt": [1, 2, 3]})").prompt),
      (std::vector<int32_t>{1, 2, 3}));
  EXPECT_EQ(std::get<std::vector<int32_t>>(ParseOk(kCompletions, R"({"prompt": [[4, 5]]})").prompt),
            (std::vector<int32_t>{4, 5}));

  EXPECT_NE(Rejection(kCompletions, R"({"prompt": ["a", "b"]})").find("one per request"),
            std::string::npos);
  EXPECT_NE(Rejection(kCompletions, R"({"model": "m"})").find("prompt"), std::string::npos);
  Rejection(kCompletions, R"({"prompt": []})");
  Rejection(kCompletions, R"({"prompt": [-1]})");
  Rejection(kCompletions, R"({"prompt": 7})");
  Rejection(kCompletions, R"({"prompt": [{"x": 1}]})");
}

TEST(OpenAiParseTest, CompletionFieldsMapToTheGenerationRequest) {
  const OpenAiRequest r = ParseOk(kCompletions, R"({
      "model": "anything", "prompt": "Hi", "max_tokens": 7, "temperature": 0.5, "top_p": 0.9,
      "stop": "\n", "seed": -1, "frequency_penalty": 0.25, "presence_penalty": -0.5,
      "logprobs": 3, "stream": true, "stream_options": {"include_usage": true},
      "top_k": 40, "min_p": 0.05, "repetition_penalty": 1.1, "ignore_eos": true,
      "stop_token_ids": [2, 3], "user": "ignored", "unknown_field": {"x": 1},
      "memory": {"enabled": false, "collections": ["wiki"], "references": 8,
                 "retrieve_every": 32, "min_score": 0.2, "score_gap": 0.1}})");
  const GenerationRequest& g = r.generation;
  EXPECT_TRUE(r.max_tokens_given);
  EXPECT_EQ(g.max_tokens, 7);
  EXPECT_FLOAT_EQ(g.sampling.temperature, 0.5f);
  EXPECT_FLOAT_EQ(g.sampling.top_p, 0.9f);
  EXPECT_EQ(g.stop_strings, (std::vector<std::string>{"\n"}));
  EXPECT_EQ(g.sampling.seed, ~uint64_t{0});
  EXPECT_FLOAT_EQ(g.sampling.frequency_penalty, 0.25f);
  EXPECT_FLOAT_EQ(g.sampling.presence_penalty, -0.5f);
  EXPECT_TRUE(r.logprobs);
  EXPECT_EQ(g.sampling.top_logprobs, 3);
  EXPECT_TRUE(r.stream);
  EXPECT_TRUE(r.include_usage);
  EXPECT_EQ(g.sampling.top_k, 40);
  EXPECT_FLOAT_EQ(g.sampling.min_p, 0.05f);
  EXPECT_FLOAT_EQ(g.sampling.repetition_penalty, 1.1f);
  EXPECT_TRUE(g.ignore_eos);
  EXPECT_EQ(g.stop_tokens, (std::vector<int32_t>{2, 3}));
  EXPECT_FALSE(g.memory.enabled);
  EXPECT_EQ(g.memory.collections, (std::vector<std::string>{"wiki"}));
  EXPECT_EQ(g.memory.references, 8);
  EXPECT_EQ(g.memory.retrieve_every, 32);
  ASSERT_TRUE(g.memory.min_score.has_value());
  EXPECT_FLOAT_EQ(*g.memory.min_score, 0.2f);
  ASSERT_TRUE(g.memory.score_gap.has_value());
  EXPECT_FLOAT_EQ(*g.memory.score_gap, 0.1f);
}

TEST(OpenAiParseTest, DefaultsFollowOpenAi) {
  const OpenAiRequest r = ParseOk(kCompletions, R"({"prompt": "Hi", "temperature": null,
                                                    "stop": null, "logprobs": null})");
  EXPECT_FALSE(r.max_tokens_given);
  EXPECT_FLOAT_EQ(r.generation.sampling.temperature, 1.0f);  // OpenAI's default, not greedy
  EXPECT_FALSE(r.stream);
  EXPECT_FALSE(r.logprobs);
  EXPECT_TRUE(r.generation.stop_strings.empty());
  EXPECT_TRUE(r.generation.memory.enabled);
  EXPECT_FALSE(r.generation.memory.min_score.has_value());  // the scheduler's defaults apply
  EXPECT_FALSE(r.generation.memory.score_gap.has_value());
  EXPECT_EQ(ParseOk(kCompletions, R"({"prompt": "Hi", "logprobs": 0})").logprobs, true);
}

TEST(OpenAiParseTest, ChatMessagesAndChatOnlyFields) {
  const OpenAiRequest r = ParseOk(kChat, R"({
      "messages": [{"role": "system", "content": "Be brief."},
                   {"role": "user", "content": [{"type": "text", "text": "Hel"},
                                                {"type": "text", "text": "lo"}]},
                   {"role": "assistant", "content": null}],
      "max_tokens": 5, "max_completion_tokens": 9, "logprobs": true, "top_logprobs": 2,
      "stop": ["a", "b"]})");
  const auto& messages = std::get<std::vector<ChatMessage>>(r.prompt);
  ASSERT_EQ(messages.size(), 3u);
  EXPECT_EQ(messages[0].role, "system");
  EXPECT_EQ(messages[0].content, "Be brief.");
  EXPECT_EQ(messages[1].content, "Hello");
  EXPECT_EQ(messages[2].content, "");
  EXPECT_EQ(r.generation.max_tokens, 9);  // max_completion_tokens wins
  EXPECT_TRUE(r.logprobs);
  EXPECT_EQ(r.generation.sampling.top_logprobs, 2);
  EXPECT_EQ(r.generation.stop_strings, (std::vector<std::string>{"a", "b"}));

  EXPECT_NE(Rejection(kChat, R"({"messages": [{"role": "user", "content": "x"}],
                                 "top_logprobs": 2})")
                .find("logprobs"),
            std::string::npos);
  EXPECT_NE(Rejection(kChat, R"({"messages": []})").find("messages"), std::string::npos);
  EXPECT_NE(Rejection(kChat, R"({"messages": [{"content": "x"}]})").find("messages[0].role"),
            std::string::npos);
  Rejection(kChat, R"({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]})");
  Rejection(kChat, R"({"prompt": "chat needs messages"})");
}

TEST(OpenAiParseTest, RejectsWhatItCannotHonour) {
  const std::string base = R"("prompt": "Hi")";
  for (const char* extra : {R"("n": 2)", R"("echo": true)", R"("best_of": 3)", R"("suffix": "x")",
                            R"("logit_bias": {"5": 10})"}) {
    Rejection(kCompletions, "{" + base + ", " + extra + "}");
  }
  // Their harmless values pass.
  ParseOk(kCompletions, "{" + base + R"(, "n": 1, "echo": false, "best_of": 1, "suffix": "",
                                          "logit_bias": {}})");
  Rejection(kChat, R"({"messages": [{"role": "user", "content": "x"}],
                       "tools": [{"type": "function"}]})");
}

TEST(OpenAiParseTest, NamesTheBadField) {
  struct Case {
    const char* body;
    const char* field;
  };
  for (const Case& c : std::vector<Case>{
           {R"({"prompt": "x", "max_tokens": 0})", "max_tokens"},
           {R"({"prompt": "x", "max_tokens": 1.5})", "max_tokens"},
           {R"({"prompt": "x", "max_tokens": 99999999999})", "max_tokens"},
           {R"({"prompt": "x", "temperature": "hot"})", "temperature"},
           {R"({"prompt": "x", "temperature": 3})", "temperature"},
           {R"({"prompt": "x", "top_p": 1.5})", "top_p"},
           {R"({"prompt": "x", "stop": ""})", "stop"},
           {R"({"prompt": "x", "stop": [1]})", "stop"},
           {R"({"prompt": "x", "seed": 1.5})", "seed"},
           {R"({"prompt": "x", "logprobs": 21})", "logprobs"},
           {R"({"prompt": "x", "stream": "yes"})", "stream"},
           {R"({"prompt": "x", "stream_options": {"include_usage": true}})", "stream_options"},
           {R"({"prompt": "x", "memory": {"references": 65}})", "memory.references"},
           {R"({"prompt": "x", "memory": {"collections": "wiki", "retrieve_every": 0}})",
            "memory.retrieve_every"},
           {R"({"prompt": "x", "memory": true})", "memory"},
           {R"({"prompt": "x", "repetition_penalty": 0})", "repetition_penalty"},
           {R"({"prompt": "x", "model": 3})", "model"},
       }) {
    EXPECT_NE(Rejection(kCompletions, c.body).find(c.field), std::string::npos)
        << c.body << " should name " << c.field;
  }
  EXPECT_NE(Rejection(kCompletions, "{not json").find("JSON"), std::string::npos);
  EXPECT_NE(Rejection(kCompletions, "[1, 2]").find("object"), std::string::npos);
}

// Splits SSE frames into their JSON payloads; "[DONE]" stays a string.
std::vector<Json> Frames(const std::string& sse) {
  std::vector<Json> out;
  size_t pos = 0;
  while (pos < sse.size()) {
    EXPECT_EQ(sse.compare(pos, 6, "data: "), 0) << sse.substr(pos);
    const size_t end = sse.find("\n\n", pos);
    EXPECT_NE(end, std::string::npos);
    const std::string payload = sse.substr(pos + 6, end - pos - 6);
    out.push_back(payload == "[DONE]" ? Json("[DONE]") : Json::parse(payload));
    pos = end + 2;
  }
  return out;
}

std::string Piece(int32_t id) { return "t" + std::to_string(id); }

GenerationEvent TextEvent(std::string text, std::vector<SampledToken> tokens = {}) {
  GenerationEvent event;
  event.text = std::move(text);
  event.tokens = std::move(tokens);
  return event;
}

GenerationEvent FinishEventOf(FinishReason reason, absl::Status status = absl::OkStatus()) {
  GenerationEvent event;
  event.finish = FinishEvent{};
  event.finish->status = std::move(status);
  event.finish->reason = reason;
  event.finish->prompt_tokens = 4;
  event.finish->completion_tokens = 3;
  event.finish->ttft_ms = 12.5;
  return event;
}

TEST(OpenAiResponseTest, ChatStreamFrames) {
  OpenAiResponseBuilder builder(
      {.endpoint = kChat, .id = "chatcmpl-1", .model = "m", .created = 100, .include_usage = true});
  GenerationEvent first = TextEvent("Hel");
  first.retrieval = RetrievalEvent{0, {{"doc-a", 7, 0.75f}}, 1.5};
  std::string sse = builder.StreamFrames(first);
  sse += builder.StreamFrames(TextEvent("lo"));
  sse += builder.StreamFrames(FinishEventOf(FinishReason::kStop));
  const std::vector<Json> frames = Frames(sse);
  ASSERT_EQ(frames.size(), 5u) << sse;

  EXPECT_EQ(frames[0]["object"], "chat.completion.chunk");
  EXPECT_EQ(frames[0]["id"], "chatcmpl-1");
  EXPECT_EQ(frames[0]["created"], 100);
  EXPECT_EQ(frames[0]["model"], "m");
  EXPECT_EQ(frames[0]["choices"][0]["delta"]["role"], "assistant");
  EXPECT_EQ(frames[0]["choices"][0]["delta"]["content"], "Hel");
  EXPECT_TRUE(frames[0]["choices"][0]["finish_reason"].is_null());
  EXPECT_TRUE(frames[0]["usage"].is_null());
  const Json& refs = frames[0]["memoria"]["references"];
  ASSERT_EQ(refs.size(), 1u);
  EXPECT_EQ(refs[0]["document_id"], "doc-a");
  EXPECT_EQ(refs[0]["reference_id"], 7);
  EXPECT_FLOAT_EQ(refs[0]["score"].get<float>(), 0.75f);

  EXPECT_FALSE(frames[1]["choices"][0]["delta"].contains("role"));
  EXPECT_EQ(frames[1]["choices"][0]["delta"]["content"], "lo");
  EXPECT_FALSE(frames[1].contains("memoria"));

  EXPECT_EQ(frames[2]["choices"][0]["delta"], Json::object());
  EXPECT_EQ(frames[2]["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(frames[2]["memoria"]["timings"]["ttft_ms"], 12.5);

  EXPECT_TRUE(frames[3]["choices"].empty());
  EXPECT_EQ(frames[3]["usage"]["prompt_tokens"], 4);
  EXPECT_EQ(frames[3]["usage"]["completion_tokens"], 3);
  EXPECT_EQ(frames[3]["usage"]["total_tokens"], 7);
  EXPECT_EQ(frames[4], "[DONE]");
}

TEST(OpenAiResponseTest, ChatStreamSendsTheRoleEvenBeforeAnyText) {
  OpenAiResponseBuilder builder({.endpoint = kChat, .id = "c", .model = "m"});
  const std::vector<Json> frames =
      Frames(builder.StreamFrames(FinishEventOf(FinishReason::kLength)));
  ASSERT_EQ(frames.size(), 3u);
  EXPECT_EQ(frames[0]["choices"][0]["delta"]["role"], "assistant");
  EXPECT_EQ(frames[1]["choices"][0]["finish_reason"], "length");
  EXPECT_FALSE(frames[1].contains("usage"));  // not asked for
  EXPECT_EQ(frames[2], "[DONE]");
}

TEST(OpenAiResponseTest, CompletionStreamLogprobsCarryOffsetsAcrossChunks) {
  OpenAiResponseBuilder builder({.endpoint = kCompletions,
                                 .id = "cmpl-1",
                                 .model = "m",
                                 .logprobs = true,
                                 .token_piece = Piece});
  SampledToken a{.id = 5, .logprob = -0.5f, .top = {{5, -0.5f}, {9, -1.5f}}};
  SampledToken b{.id = 12, .logprob = -0.25f, .top = {{12, -0.25f}, {3, -2.0f}}};
  std::string sse = builder.StreamFrames(TextEvent("t5", {a}));
  sse += builder.StreamFrames(TextEvent("t12", {b}));
  const std::vector<Json> frames = Frames(sse);
  ASSERT_EQ(frames.size(), 2u);
  EXPECT_EQ(frames[0]["object"], "text_completion");
  EXPECT_EQ(frames[0]["choices"][0]["text"], "t5");
  const Json& lp0 = frames[0]["choices"][0]["logprobs"];
  EXPECT_EQ(lp0["tokens"], Json::array({"t5"}));
  EXPECT_EQ(lp0["token_logprobs"], Json::array({-0.5}));
  EXPECT_EQ(lp0["top_logprobs"][0]["t9"], -1.5);
  EXPECT_EQ(lp0["text_offset"], Json::array({0}));
  EXPECT_EQ(frames[1]["choices"][0]["logprobs"]["text_offset"], Json::array({2}));
}

TEST(OpenAiResponseTest, FailedFinishStreamsAnErrorThenDone) {
  OpenAiResponseBuilder builder({.endpoint = kChat, .id = "c", .model = "m"});
  builder.StreamFrames(TextEvent("partial"));
  const std::vector<Json> frames = Frames(builder.StreamFrames(
      FinishEventOf(FinishReason::kLength, absl::UnavailableError("the server is shutting down"))));
  ASSERT_EQ(frames.size(), 2u);
  EXPECT_EQ(frames[0]["error"]["message"], "the server is shutting down");
  EXPECT_EQ(frames[0]["error"]["type"], "service_unavailable_error");
  EXPECT_EQ(frames[1], "[DONE]");
}

TEST(OpenAiResponseTest, ChatResponseCollectsEverything) {
  OpenAiResponseBuilder builder({.endpoint = kChat,
                                 .id = "chatcmpl-9",
                                 .model = "m",
                                 .created = 5,
                                 .logprobs = true,
                                 .token_piece = Piece});
  GenerationEvent first = TextEvent("Hi", {{.id = 1, .logprob = -0.1f, .top = {}}});
  first.retrieval = RetrievalEvent{0, {{"d", 1, 0.5f}, {"e", 2, 0.25f}}, 3.0};
  builder.Collect(first);
  builder.Collect(TextEvent(" there", {{.id = 2, .logprob = -0.2f, .top = {{2, -0.2f}}}}));
  builder.Collect(FinishEventOf(FinishReason::kStop));
  const Json response = Json::parse(builder.Response());
  EXPECT_EQ(response["object"], "chat.completion");
  EXPECT_EQ(response["id"], "chatcmpl-9");
  const Json& choice = response["choices"][0];
  EXPECT_EQ(choice["message"]["role"], "assistant");
  EXPECT_EQ(choice["message"]["content"], "Hi there");
  EXPECT_EQ(choice["finish_reason"], "stop");
  const Json& content = choice["logprobs"]["content"];
  ASSERT_EQ(content.size(), 2u);
  EXPECT_EQ(content[0]["token"], "t1");
  EXPECT_EQ(content[0]["bytes"], Json::array({'t', '1'}));
  EXPECT_EQ(content[1]["top_logprobs"][0]["token"], "t2");
  EXPECT_EQ(response["usage"]["total_tokens"], 7);
  ASSERT_EQ(response["memoria"]["retrievals"].size(), 1u);
  EXPECT_EQ(response["memoria"]["retrievals"][0]["references"].size(), 2u);
}

TEST(OpenAiResponseTest, CompletionResponseWithoutLogprobs) {
  OpenAiResponseBuilder builder({.endpoint = kCompletions, .id = "cmpl-2", .model = "m"});
  builder.Collect(TextEvent("abc", {{.id = 1, .logprob = -0.1f, .top = {}}}));
  builder.Collect(FinishEventOf(FinishReason::kLength));
  const Json response = Json::parse(builder.Response());
  EXPECT_EQ(response["object"], "text_completion");
  EXPECT_EQ(response["choices"][0]["text"], "abc");
  EXPECT_TRUE(response["choices"][0]["logprobs"].is_null());
  EXPECT_EQ(response["choices"][0]["finish_reason"], "length");
}

TEST(OpenAiResponseTest, InvalidUtf8PiecesAreReplacedNotThrown) {
  OpenAiResponseBuilder builder(
      {.endpoint = kChat, .id = "c", .model = "m", .logprobs = true, .token_piece = [](int32_t) {
         return std::string("\xE2\x82");
       }});
  builder.Collect(TextEvent("", {{.id = 1, .logprob = -0.1f, .top = {}}}));
  builder.Collect(FinishEventOf(FinishReason::kStop));
  const Json response = Json::parse(builder.Response());
  // The bytes keep what the text cannot.
  EXPECT_EQ(response["choices"][0]["logprobs"]["content"][0]["bytes"], Json::array({0xE2, 0x82}));
}

TEST(OpenAiErrorTest, StatusCodesAndBody) {
  EXPECT_EQ(HttpStatusFor(absl::InvalidArgumentError("x")), 400);
  EXPECT_EQ(HttpStatusFor(absl::NotFoundError("x")), 404);
  EXPECT_EQ(HttpStatusFor(absl::ResourceExhaustedError("x")), 429);
  EXPECT_EQ(HttpStatusFor(absl::UnavailableError("x")), 503);
  EXPECT_EQ(HttpStatusFor(absl::InternalError("x")), 500);
  EXPECT_EQ(HttpStatusFor(absl::DeadlineExceededError("x")), 504);
  const Json error = Json::parse(OpenAiErrorJson(absl::ResourceExhaustedError("queue \"full\"")));
  EXPECT_EQ(error["error"]["message"], "queue \"full\"");
  EXPECT_EQ(error["error"]["type"], "rate_limit_error");
  EXPECT_EQ(error["error"]["code"], "RESOURCE_EXHAUSTED");
  EXPECT_TRUE(error["error"]["param"].is_null());
}

TEST(OpenAiModelsTest, ListsTheServedModel) {
  const Json models = Json::parse(OpenAiModelsJson("llama-tiny", 42));
  EXPECT_EQ(models["object"], "list");
  ASSERT_EQ(models["data"].size(), 1u);
  EXPECT_EQ(models["data"][0]["id"], "llama-tiny");
  EXPECT_EQ(models["data"][0]["object"], "model");
  EXPECT_EQ(models["data"][0]["created"], 42);
}

}  // namespace
}  // namespace memoria
