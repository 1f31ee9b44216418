// The real memoria-server, end to end over gRPC: a generated model, a temp store, ephemeral ports.
#include <atomic>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/lib/client.h"
#include "engine/model/random_model.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include <httplib.h>
#include "tests/server/prometheus_text.h"
#include "tests/server/server_process.h"
#include "tests/test_support.h"

namespace memoria {
namespace {

using ::memoria::testing::ServerProcess;
using ::memoria::testing::TempDir;
using ServingStatus = grpc::health::v1::HealthCheckResponse::ServingStatus;

constexpr char kAdminToken[] = "e2e-secret";

// One random-weight model for the whole binary (llama-bpe tokenizer from shared/).
std::string TestModel() {
  static const std::string path = [] {
    const std::string vocab = testing::VocabPath("ggml-vocab-llama-bpe.gguf");
    if (vocab.empty()) return std::string();
    RandomModelOptions o;
    o.vocab_path = vocab;
    o.n_layers = 4;
    o.n_embd = 128;
    o.n_heads = 4;
    o.n_kv_heads = 2;
    o.n_ff = 256;
    o.type = GgmlType::kF16;
    o.context_length = 2048;
    std::string p = TempDir("e2e-model") + "/model.gguf";
    absl::Status s = WriteRandomModel(o, p);
    EXPECT_TRUE(s.ok()) << s;
    return p;
  }();
  return path;
}

#define REQUIRE_MODEL(var)                                                                    \
  const std::string var = TestModel();                                                        \
  if (var.empty()) GTEST_SKIP() << "../shared/vocab/ggml-vocab-llama-bpe.gguf not found; skipping"

struct Completion {
  absl::Status status;
  std::string text;
  std::vector<int32_t> ids;
  std::vector<v1::Retrieval> retrievals;
  v1::Finished finished;
  int messages = 0;
};

Completion Generate(Client& client, v1::GenerateRequest request) {
  Completion c;
  request.mutable_sampling()->set_return_token_ids(true);
  c.status = client.Generate(request, [&](const v1::GenerateResponse& r) {
    ++c.messages;
    c.text += r.text();
    for (const auto& t : r.tokens()) c.ids.push_back(t.id());
    if (r.has_retrieval()) c.retrievals.push_back(r.retrieval());
    if (r.has_finished()) c.finished = r.finished();
  });
  return c;
}

v1::GenerateRequest Prompt(const std::string& text, int max_tokens, bool memory = false) {
  v1::GenerateRequest r;
  r.set_prompt(text);
  r.mutable_sampling()->set_max_tokens(max_tokens);
  r.mutable_memory()->set_enabled(memory);
  return r;
}

std::unique_ptr<Client> Connect(const ServerProcess& server, const std::string& token = "") {
  ClientOptions o;
  o.admin_token = token;
  o.deadline = absl::Seconds(120);
  auto client = Client::Connect(server.grpc_target(), o);
  EXPECT_TRUE(client.ok()) << client.status();
  return *std::move(client);
}

const char* const kFacts[] = {
    "Zorvia is a small island nation. Its capital city is Blenmark, founded in 1702 by sailors.",
    "The Quillon 9 is a camera made by Hastor Optics. It weighs 410 grams and costs 899 dollars.",
    "Mirela Oskan is a chemist from Tavrin who discovered the element vorium in 1931.",
};

class ServerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const std::string model = TestModel();
    if (model.empty()) return;
    auto server = ServerProcess::Start({"--model", model, "--store", TempDir("e2e-store"),
                                        "--admin-token", kAdminToken, "--threads", "2"});
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = server->release();
  }
  static void TearDownTestSuite() {
    if (server_ != nullptr) {
      EXPECT_EQ(server_->Terminate(), 0);
    }
    delete server_;
    server_ = nullptr;
  }
  void SetUp() override {
    if (server_ == nullptr) GTEST_SKIP() << "../shared/vocab/ggml-vocab-llama-bpe.gguf not found";
    client_ = Connect(*server_, kAdminToken);
  }
  // /metrics, parsed.
  static testing::Exposition Scrape() {
    httplib::Client http("127.0.0.1", server_->http_port());
    auto response = http.Get("/metrics");
    EXPECT_TRUE(response) << "no answer from /metrics";
    if (!response) return {};
    EXPECT_EQ(response->status, 200);
    return testing::ParsePrometheusText(response->body);
  }

  // /metrics once no sequence runs (the scheduler retires a cancelled one at its next step).
  static testing::Exposition ScrapeOnceIdle() {
    testing::Exposition metrics;
    for (int i = 0; i < 100; ++i) {
      metrics = Scrape();
      if (metrics.samples["memoria_running_sequences"] == 0) break;
      absl::SleepFor(absl::Milliseconds(20));
    }
    return metrics;
  }

  void TearDown() override {
    if (server_ != nullptr) {
      ASSERT_TRUE(server_->Running()) << "the server died:\n" << server_->Log();
    }
  }

  static ServerProcess* server_;
  std::unique_ptr<Client> client_;
};

ServerProcess* ServerTest::server_ = nullptr;

TEST_F(ServerTest, GeneratesAStreamWithUsageAndTimings) {
  Completion c = Generate(*client_, Prompt("Explicit memory is", 12));
  ASSERT_TRUE(c.status.ok()) << c.status;
  EXPECT_EQ(c.ids.size(), 12u);
  EXPECT_EQ(c.finished.reason(), v1::FINISH_REASON_LENGTH);
  EXPECT_EQ(c.finished.usage().completion_tokens(), 12);
  EXPECT_GT(c.finished.usage().prompt_tokens(), 1);
  EXPECT_GT(c.finished.timings().ttft_ms(), 0);
  EXPECT_GE(c.finished.timings().total_ms(), c.finished.timings().ttft_ms());
  EXPECT_GT(c.messages, 1);
}

TEST_F(ServerTest, TokenizeAndModelInfo) {
  v1::TokenizeRequest t;
  t.set_text("Hello world");
  auto tokens = client_->Tokenize(t);
  ASSERT_TRUE(tokens.ok()) << tokens.status();
  EXPECT_EQ(tokens->ids_size(), 2);  // llama-bpe: "Hello", " world"
  auto info = client_->ModelInfo();
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->n_layers(), 4);
  EXPECT_TRUE(info->memory_enabled());
  EXPECT_EQ(info->kept_tokens(), 8);
}

TEST_F(ServerTest, IngestGenerateWithCitationsDeleteListStats) {
  for (int i = 0; i < 3; ++i) {
    v1::IngestDocumentRequest doc;
    doc.set_id(absl::StrCat("fact-", i));
    doc.set_collection("facts");
    doc.set_text(kFacts[i]);
    auto r = client_->IngestDocument(doc);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->document().reference_ids_size(), 1);
  }
  // The prompt is document 1's text: its retrieval vector is the query's, so it ranks first.
  v1::GenerateRequest request = Prompt(kFacts[1], 8, /*memory=*/true);
  request.mutable_memory()->add_collections("facts");
  request.mutable_memory()->set_references(2);
  Completion c = Generate(*client_, request);
  ASSERT_TRUE(c.status.ok()) << c.status;
  ASSERT_EQ(c.retrievals.size(), 1u);
  ASSERT_EQ(c.retrievals[0].references_size(), 2);
  EXPECT_EQ(c.retrievals[0].references(0).document_id(), "fact-1");
  EXPECT_NEAR(c.retrievals[0].references(0).score(), 1.0, 1e-3);

  auto list = client_->ListDocuments([] {
    v1::ListDocumentsRequest r;
    r.set_collection("facts");
    return r;
  }());
  ASSERT_TRUE(list.ok()) << list.status();
  EXPECT_EQ(list->documents_size(), 3);
  auto stats = client_->Stats();
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_GE(stats->documents(), 3);
  EXPECT_EQ(stats->codec(), "int8");

  ASSERT_TRUE(client_->DeleteDocument("fact-1").ok());
  EXPECT_EQ(client_->GetDocument("fact-1").status().code(), absl::StatusCode::kNotFound);
  c = Generate(*client_, request);
  ASSERT_TRUE(c.status.ok()) << c.status;
  ASSERT_EQ(c.retrievals.size(), 1u);
  for (const auto& ref : c.retrievals[0].references()) EXPECT_NE(ref.document_id(), "fact-1");
}

TEST_F(ServerTest, RetrievesAgainEveryNTokens) {
  v1::IngestDocumentRequest doc;
  doc.set_id("again");
  doc.set_text(kFacts[0]);
  ASSERT_TRUE(client_->IngestDocument(doc).ok());
  v1::GenerateRequest request = Prompt("Where is Blenmark?", 10, true);
  request.mutable_memory()->set_retrieve_every(4);
  Completion c = Generate(*client_, request);
  ASSERT_TRUE(c.status.ok()) << c.status;
  // At the start and after 4 and 8 tokens.
  ASSERT_EQ(c.retrievals.size(), 3u);
  EXPECT_EQ(c.retrievals[0].generated_tokens(), 0);
  EXPECT_EQ(c.retrievals[1].generated_tokens(), 4);
  EXPECT_EQ(c.retrievals[2].generated_tokens(), 8);
}

TEST_F(ServerTest, AdminWithoutTokenIsRefused) {
  auto anonymous = Connect(*server_);
  v1::IngestDocumentRequest doc;
  doc.set_id("x");
  doc.set_text("some text");
  EXPECT_EQ(anonymous->IngestDocument(doc).status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(anonymous->Stats().status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(anonymous->DeleteDocument("fact-0").code(), absl::StatusCode::kUnauthenticated);
  auto wrong = Connect(*server_, "not-the-token");
  EXPECT_EQ(wrong->Stats().status().code(), absl::StatusCode::kUnauthenticated);
  // Generation is not an admin call.
  EXPECT_TRUE(Generate(*anonymous, Prompt("hi", 2)).status.ok());
}

TEST_F(ServerTest, HealthIsServing) {
  for (const char* service : {"", "memoria.v1.Generation", "memoria.v1.MemoryAdmin"}) {
    auto status = client_->Health(service);
    ASSERT_TRUE(status.ok()) << status.status();
    EXPECT_EQ(*status, grpc::health::v1::HealthCheckResponse::SERVING) << service;
  }
}

TEST_F(ServerTest, BadInputGetsItsCodeAndTheServerStaysUp) {
  struct Case {
    const char* name;
    v1::GenerateRequest request;
  };
  std::vector<Case> cases;
  cases.push_back({"no input", v1::GenerateRequest()});
  cases.push_back({"empty prompt", Prompt("", 4)});
  {
    v1::GenerateRequest r;
    r.mutable_token_ids();  // empty list
    cases.push_back({"empty token ids", r});
  }
  {
    v1::GenerateRequest r;
    r.mutable_token_ids()->add_ids(-5);
    cases.push_back({"token id out of range", r});
  }
  {
    std::string long_text;
    for (int i = 0; i < 1500; ++i) absl::StrAppend(&long_text, "word", i, " ");
    cases.push_back({"prompt longer than the context", Prompt(long_text, 4)});
  }
  {
    auto r = Prompt("hi", 4);
    r.mutable_sampling()->set_temperature(-1);
    cases.push_back({"negative temperature", r});
  }
  {
    auto r = Prompt("hi", 4);
    r.mutable_sampling()->set_top_p(1.5);
    cases.push_back({"top_p above 1", r});
  }
  {
    auto r = Prompt("hi", -3);
    cases.push_back({"negative max_tokens", r});
  }
  {
    auto r = Prompt("hi", 4, true);
    r.mutable_memory()->add_collections("no-such-collection");
    cases.push_back({"unknown collection", r});
  }
  {
    auto r = Prompt("hi", 4, true);
    r.mutable_memory()->set_retrieve_every(0);
    cases.push_back({"retrieve_every 0", r});
  }
  {
    auto r = Prompt("hi", 4, true);
    r.mutable_memory()->set_score_gap(3);
    cases.push_back({"score_gap 3", r});
  }
  {
    auto r = Prompt("hi", 4, true);
    r.mutable_memory()->set_min_score(-2);
    cases.push_back({"min_score -2", r});
  }
  {
    v1::GenerateRequest r;
    v1::ChatMessage* m = r.mutable_chat()->add_messages();
    m->set_role("wizard");
    m->set_content("hello");
    cases.push_back({"bad chat role", r});
  }
  // The C++ client serializes invalid UTF-8 in a string field as is (logging a warning); the
  // server must answer it like any bad prompt.
  cases.push_back({"invalid UTF-8", Prompt("caf\xc3 \xff", 4)});
  for (const Case& c : cases) {
    Completion out = Generate(*client_, c.request);
    EXPECT_EQ(out.status.code(), absl::StatusCode::kInvalidArgument) << c.name << ": " << out.status;
    EXPECT_FALSE(out.status.message().empty()) << c.name;
  }
  v1::IngestDocumentRequest empty_id;
  empty_id.set_text("text");
  EXPECT_EQ(client_->IngestDocument(empty_id).status().code(), absl::StatusCode::kInvalidArgument);
  v1::IngestDocumentRequest empty_text;
  empty_text.set_id("empty");
  EXPECT_EQ(client_->IngestDocument(empty_text).status().code(),
            absl::StatusCode::kInvalidArgument);
  v1::IngestDocumentRequest bad_utf8;
  bad_utf8.set_id("bad-utf8");
  bad_utf8.set_text("\xc0\xaf overlong slash");
  EXPECT_EQ(client_->IngestDocument(bad_utf8).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(client_->DeleteDocument("never-there").code(), absl::StatusCode::kNotFound);
  v1::ListDocumentsRequest bad_page;
  bad_page.set_page_size(100000);
  EXPECT_EQ(client_->ListDocuments(bad_page).status().code(), absl::StatusCode::kInvalidArgument);
  // Oversized message: gRPC refuses it before any handler runs.
  v1::IngestDocumentRequest huge;
  huge.set_id("huge");
  huge.set_text(std::string(17 << 20, 'x'));
  EXPECT_EQ(client_->IngestDocument(huge).status().code(), absl::StatusCode::kResourceExhausted);

  Completion ok = Generate(*client_, Prompt("still alive?", 3));
  EXPECT_TRUE(ok.status.ok()) << ok.status;
}

TEST_F(ServerTest, ConcurrentStreamsMatchRunningAlone) {
  constexpr int kStreams = 32;
  const std::vector<std::string> prompts = {"The river", "Once upon a time", "Paris is",
                                            "1, 2, 3,", "In the beginning", "Memory"};
  std::vector<std::vector<int32_t>> alone(prompts.size());
  for (size_t i = 0; i < prompts.size(); ++i) {
    Completion c = Generate(*client_, Prompt(prompts[i], 16));
    ASSERT_TRUE(c.status.ok()) << c.status;
    alone[i] = c.ids;
  }
  std::vector<Completion> together(kStreams);
  std::vector<std::thread> threads;
  for (int s = 0; s < kStreams; ++s) {
    threads.emplace_back([&, s] {
      together[s] = Generate(*client_, Prompt(prompts[s % prompts.size()], 16));
    });
  }
  for (std::thread& t : threads) t.join();
  for (int s = 0; s < kStreams; ++s) {
    ASSERT_TRUE(together[s].status.ok()) << s << ": " << together[s].status;
    EXPECT_EQ(together[s].ids, alone[s % prompts.size()]) << "stream " << s;
  }
}

TEST_F(ServerTest, MetricsExposeRequestsLatenciesAndTheStore) {
  ASSERT_TRUE(Generate(*client_, Prompt("count me", 4)).status.ok());
  testing::Exposition m = Scrape();
  EXPECT_GE(m.samples["memoria_requests_total{outcome=\"ok\"}"], 1);
  EXPECT_GE(m.samples["memoria_generated_tokens_total"], 4);
  EXPECT_GE(m.samples["memoria_time_to_first_token_seconds_count"], 1);
  EXPECT_GE(m.samples["memoria_inter_token_seconds_count"], 3);
  EXPECT_GT(m.samples["memoria_kv_pages_total"], 0);
  EXPECT_EQ(m.type["memoria_time_to_first_token_seconds"], "histogram");
  for (const char* name : {"memoria_queue_depth", "memoria_running_sequences",
                           "memoria_batch_tokens_count", "memoria_retrieval_seconds_count",
                           "memoria_store_documents", "memoria_store_references",
                           "memoria_store_memory_bytes", "memoria_page_cache_hits_total",
                           "memoria_page_cache_misses_total", "memoria_ingested_documents_total"}) {
    EXPECT_EQ(m.samples.count(name), 1u) << name;
  }
}

TEST_F(ServerTest, DeadlineEndsTheStreamAndFreesTheSlot) {
  ClientOptions hurried;
  hurried.deadline = absl::Milliseconds(300);
  auto client = Client::Connect(server_->grpc_target(), hurried);
  ASSERT_TRUE(client.ok());
  v1::GenerateRequest request = Prompt("A story without end", 1500);
  request.mutable_sampling()->set_ignore_eos(true);
  Completion c = Generate(**client, request);
  EXPECT_EQ(c.status.code(), absl::StatusCode::kDeadlineExceeded) << c.status;
  testing::Exposition metrics = ScrapeOnceIdle();
  EXPECT_EQ(metrics.samples["memoria_running_sequences"], 0);
}

TEST_F(ServerTest, OpenAiCompletionStreamsOverSseWithCitations) {
  v1::IngestDocumentRequest doc;
  doc.set_id("openai-doc");
  doc.set_collection("openai");
  doc.set_text(kFacts[2]);
  ASSERT_TRUE(client_->IngestDocument(doc).ok());
  httplib::Client http("127.0.0.1", server_->http_port());
  const std::string body = absl::StrCat(
      R"({"model": "any", "prompt": ")", kFacts[2],
      R"(", "max_tokens": 6, "temperature": 0, "stream": true,
          "memory": {"collections": ["openai"], "references": 1}})");
  std::string streamed;
  auto response = http.Post("/v1/completions", body, "application/json");
  ASSERT_TRUE(response);
  ASSERT_EQ(response->status, 200) << response->body;
  EXPECT_NE(response->get_header_value("Content-Type").find("text/event-stream"), std::string::npos);
  const std::string& sse = response->body;
  EXPECT_EQ(sse.rfind("data: [DONE]\n\n"), sse.size() - 14) << sse;
  EXPECT_NE(sse.find("\"openai-doc\""), std::string::npos) << "no citation in " << sse;
  EXPECT_NE(sse.find("\"finish_reason\":\"length\""), std::string::npos) << sse;
}

TEST_F(ServerTest, CancelMidStreamEndsTheCall) {
  auto channel = grpc::CreateChannel(server_->grpc_target(), grpc::InsecureChannelCredentials());
  auto stub = v1::Generation::NewStub(channel);
  grpc::ClientContext context;
  v1::GenerateRequest request = Prompt("Tell me a long story", 1000);
  request.mutable_sampling()->set_ignore_eos(true);
  auto reader = stub->Generate(&context, request);
  v1::GenerateResponse response;
  ASSERT_TRUE(reader->Read(&response));
  context.TryCancel();
  while (reader->Read(&response)) {
  }
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  // Within a step the scheduler retires the sequence and frees its KV pages.
  testing::Exposition metrics = ScrapeOnceIdle();
  EXPECT_EQ(metrics.samples["memoria_running_sequences"], 0);
  EXPECT_GE(metrics.samples["memoria_requests_total{outcome=\"cancelled\"}"], 1);
  // The slot is free again: a new request completes.
  EXPECT_TRUE(Generate(*client_, Prompt("next", 2)).status.ok());
}

TEST(ServerLifecycleTest, HealthIsNotServingWhileLoadingAndSigtermDrains) {
  REQUIRE_MODEL(model);
  auto server = ServerProcess::Start({"--model", model, "--load-delay-ms", "1500"},
                                     /*wait_ready=*/false);
  ASSERT_TRUE(server.ok()) << server.status();
  auto client = Connect(**server);
  auto loading = client->Health("memoria.v1.Generation");
  ASSERT_TRUE(loading.ok()) << loading.status();
  EXPECT_EQ(*loading, grpc::health::v1::HealthCheckResponse::NOT_SERVING);
  EXPECT_EQ(Generate(*client, Prompt("hi", 2)).status.code(), absl::StatusCode::kUnavailable);
  ASSERT_TRUE((*server)->WaitReady().ok());
  auto ready = client->Health("memoria.v1.Generation");
  ASSERT_TRUE(ready.ok());
  EXPECT_EQ(*ready, grpc::health::v1::HealthCheckResponse::SERVING);
  // Without a store, admin calls say so.
  EXPECT_EQ(client->Stats().status().code(), absl::StatusCode::kFailedPrecondition);

  // SIGTERM while a stream runs: the stream completes, then the process exits 0.
  Completion running;
  std::thread stream([&] { running = Generate(*client, Prompt("drain me", 40)); });
  absl::SleepFor(absl::Milliseconds(100));
  EXPECT_EQ((*server)->Terminate(), 0);
  stream.join();
  EXPECT_TRUE(running.status.ok()) << running.status;
  EXPECT_EQ(running.ids.size(), 40u);
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST(ServerLifecycleTest, ServesGrpcOverTls) {
  REQUIRE_MODEL(model);
  const std::string dir = TempDir("tls");
  const std::string cert = dir + "/cert.pem", key = dir + "/key.pem";
  const std::string openssl = absl::StrCat(
      "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost ",
      "-addext subjectAltName=IP:127.0.0.1,DNS:localhost -keyout ", key, " -out ", cert,
      " >/dev/null 2>&1");
  if (std::system(openssl.c_str()) != 0) GTEST_SKIP() << "openssl cannot make a test certificate";
  auto server = ServerProcess::Start({"--model", model, "--tls-cert", cert, "--tls-key", key});
  ASSERT_TRUE(server.ok()) << server.status();
  ClientOptions tls;
  tls.tls = true;
  tls.tls_root_certs = ReadAll(cert);
  tls.deadline = absl::Seconds(30);
  auto secure = Client::Connect((*server)->grpc_target(), tls);
  ASSERT_TRUE(secure.ok());
  Completion c = Generate(**secure, Prompt("over TLS", 3));
  EXPECT_TRUE(c.status.ok()) << c.status;
  EXPECT_EQ(c.ids.size(), 3u);
  // A plaintext client cannot talk to it.
  ClientOptions plain;
  plain.deadline = absl::Seconds(5);
  auto insecure = Client::Connect((*server)->grpc_target(), plain);
  ASSERT_TRUE(insecure.ok());
  EXPECT_FALSE(Generate(**insecure, Prompt("plain", 1)).status.ok());
}

TEST(ServerLifecycleTest, QueueOverflowIsResourceExhausted) {
  REQUIRE_MODEL(model);
  auto server = ServerProcess::Start(
      {"--model", model, "--max-running", "1", "--max-queue", "1", "--threads", "1"});
  ASSERT_TRUE(server.ok()) << server.status();
  auto client = Connect(**server);
  constexpr int kRequests = 6;
  std::vector<Completion> results(kRequests);
  std::vector<std::thread> threads;
  for (int i = 0; i < kRequests; ++i) {
    threads.emplace_back([&, i] {
      auto r = Prompt("overflow", 200);
      r.mutable_sampling()->set_ignore_eos(true);
      results[i] = Generate(*client, r);
    });
  }
  for (std::thread& t : threads) t.join();
  int ok = 0, exhausted = 0;
  for (const Completion& c : results) {
    if (c.status.ok()) ++ok;
    if (c.status.code() == absl::StatusCode::kResourceExhausted) ++exhausted;
  }
  // At least the first one runs; with one slot and one queue place, some are refused at once.
  EXPECT_GE(ok, 1);
  EXPECT_GE(exhausted, 1);
  EXPECT_EQ(ok + exhausted, kRequests);
  EXPECT_TRUE(Generate(*client, Prompt("after", 2)).status.ok());
}

}  // namespace
}  // namespace memoria
