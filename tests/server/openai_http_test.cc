// The HTTP front end end to end: a real random model, the real scheduler and the HTTP server on an
// ephemeral port, driven by an HTTP client.
#include <arpa/inet.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "server/http/http_front_end.h"
#include "server/scheduler/scheduler.h"
#include "tests/model/model_test_util.h"

namespace memoria {
namespace {

using Json = nlohmann::json;

class OpenAiHttpTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string path =
        testing::SmallModel("openai_http_llama", "ggml-vocab-llama-spm.gguf", RandomModelOptions{});
    if (path.empty()) GTEST_SKIP() << "../shared/vocab absent (set MEMORIA_SHARED_DIR); skipping";
    absl::StatusOr<std::unique_ptr<Model>> model = Model::Load(ModelOptions{}, path);
    ASSERT_TRUE(model.ok()) << model.status();
    model_ = *std::move(model);
    metrics_ = std::make_unique<ServerMetrics>(&registry_);
    scheduler_ = std::make_unique<Scheduler>(model_.get(), nullptr, nullptr, SchedulerOptions{},
                                             metrics_.get());
    state_.model = model_.get();
    state_.scheduler = scheduler_.get();
    state_.metrics = metrics_.get();
    HttpFrontEndOptions options;
    options.openai.model_name = "tiny";
    absl::StatusOr<std::unique_ptr<HttpServer>> server =
        StartHttpFrontEnd(options, &state_, &registry_);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    client_ = std::make_unique<httplib::Client>("127.0.0.1", server_->port());
  }

  void TearDown() override {
    if (scheduler_ != nullptr) scheduler_->Drain(absl::Seconds(5));
    if (server_ != nullptr) server_->Stop();
  }

  void Ready() { state_.ready.store(true, std::memory_order_release); }

  httplib::Result Post(const std::string& path, const Json& body) {
    return client_->Post(path.c_str(), body.dump(), "application/json");
  }

  MetricsRegistry registry_;
  std::unique_ptr<ServerMetrics> metrics_;
  std::unique_ptr<Model> model_;
  std::unique_ptr<Scheduler> scheduler_;
  ServingState state_;
  std::unique_ptr<HttpServer> server_;
  std::unique_ptr<httplib::Client> client_;
};

// JSON payloads of an SSE body; "[DONE]" stays a string.
std::vector<Json> SseFrames(const std::string& body) {
  std::vector<Json> frames;
  size_t pos = 0;
  while ((pos = body.find("data: ", pos)) != std::string::npos) {
    const size_t end = body.find("\n\n", pos);
    const std::string payload = body.substr(pos + 6, end - pos - 6);
    frames.push_back(payload == "[DONE]" ? Json("[DONE]") : Json::parse(payload));
    pos = end;
  }
  return frames;
}

TEST_F(OpenAiHttpTest, HealthAndRoutesWaitForReadiness) {
  auto health = client_->Get("/healthz");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 503);
  auto early = Post("/v1/completions", {{"prompt", "Hello"}});
  ASSERT_TRUE(early);
  EXPECT_EQ(early->status, 503);
  EXPECT_EQ(Json::parse(early->body)["error"]["type"], "service_unavailable_error");

  Ready();
  health = client_->Get("/healthz");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
  auto models = client_->Get("/v1/models");
  ASSERT_TRUE(models);
  EXPECT_EQ(Json::parse(models->body)["data"][0]["id"], "tiny");
  auto metrics = client_->Get("/metrics");
  ASSERT_TRUE(metrics);
  EXPECT_EQ(metrics->status, 200);
  EXPECT_NE(metrics->get_header_value("Content-Type").find("version=0.0.4"), std::string::npos);
  EXPECT_NE(metrics->body.find("# TYPE memoria_requests_total counter"), std::string::npos);
}

TEST_F(OpenAiHttpTest, StreamedAndWholeCompletionsGiveTheSameGreedyText) {
  Ready();
  const Json request = {{"model", "whatever"}, {"prompt", "The capital of France is"},
                        {"max_tokens", 6},     {"temperature", 0},
                        {"ignore_eos", true}};
  auto whole = Post("/v1/completions", request);
  ASSERT_TRUE(whole);
  ASSERT_EQ(whole->status, 200) << whole->body;
  const Json response = Json::parse(whole->body);
  EXPECT_EQ(response["object"], "text_completion");
  EXPECT_EQ(response["model"], "tiny");
  EXPECT_EQ(response["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(response["usage"]["completion_tokens"], 6);
  EXPECT_GT(response["usage"]["prompt_tokens"], 0);

  Json streamed_request = request;
  streamed_request["stream"] = true;
  streamed_request["stream_options"] = {{"include_usage", true}};
  auto streamed = Post("/v1/completions", streamed_request);
  ASSERT_TRUE(streamed);
  ASSERT_EQ(streamed->status, 200) << streamed->body;
  EXPECT_EQ(streamed->get_header_value("Content-Type"), "text/event-stream");
  const std::vector<Json> frames = SseFrames(streamed->body);
  ASSERT_GE(frames.size(), 3u) << streamed->body;
  std::string text;
  for (const Json& frame : frames) {
    if (frame.is_object() && !frame["choices"].empty()) text += frame["choices"][0]["text"];
  }
  EXPECT_EQ(text, response["choices"][0]["text"]);
  EXPECT_EQ(frames[frames.size() - 3]["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(frames[frames.size() - 2]["usage"]["completion_tokens"], 6);
  EXPECT_EQ(frames.back(), "[DONE]");
  EXPECT_EQ(metrics_->requests_ok->value(), 2);
}

TEST_F(OpenAiHttpTest, BadRequestsGetOpenAiErrors) {
  Ready();
  auto bad_json = client_->Post("/v1/completions", "{oops", "application/json");
  ASSERT_TRUE(bad_json);
  EXPECT_EQ(bad_json->status, 400);
  EXPECT_EQ(Json::parse(bad_json->body)["error"]["type"], "invalid_request_error");

  auto two = Post("/v1/completions", {{"prompt", "x"}, {"n", 2}});
  ASSERT_TRUE(two);
  EXPECT_EQ(two->status, 400);

  auto out_of_vocab = Post("/v1/completions", {{"prompt", {1, 99999999}}});
  ASSERT_TRUE(out_of_vocab);
  EXPECT_EQ(out_of_vocab->status, 400) << out_of_vocab->body;

  // The random model's vocabulary comes without a chat template.
  auto chat = Post("/v1/chat/completions",
                   {{"messages", {{{"role", "user"}, {"content", "Hi"}}}}, {"stream", true}});
  ASSERT_TRUE(chat);
  EXPECT_EQ(chat->status, 400);
  EXPECT_NE(Json::parse(chat->body)["error"]["message"].get<std::string>().find("template"),
            std::string::npos)
      << chat->body;
  EXPECT_EQ(metrics_->requests_invalid->value(), 4);
}

// A streaming client that hangs up cancels its generation instead of leaving it to run to
// max_tokens.
TEST_F(OpenAiHttpTest, StreamingClientDisconnectCancelsTheGeneration) {
  Ready();
  const Json request = {{"prompt", "Once upon a time"},
                        {"max_tokens", 4000},
                        {"ignore_eos", true},
                        {"stream", true}};
  const std::string body = request.dump();
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(server_->port()));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
  const std::string http = "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: "
                           "application/json\r\nContent-Length: " +
                           std::to_string(body.size()) + "\r\n\r\n" + body;
  ASSERT_EQ(send(fd, http.data(), http.size(), 0), static_cast<ssize_t>(http.size()));
  std::string received;
  char buf[4096];
  while (received.find("data: ") == std::string::npos) {
    const ssize_t n = recv(fd, buf, sizeof(buf), 0);
    ASSERT_GT(n, 0);
    received.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  // No deadline here: if the cancel never comes, the test's ctest timeout reports it.
  while (metrics_->requests_cancelled->value() + metrics_->requests_ok->value() < 1) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(metrics_->requests_cancelled->value(), 1);
  EXPECT_EQ(metrics_->requests_ok->value(), 0);
}

}  // namespace
}  // namespace memoria
