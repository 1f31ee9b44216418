// memoria::Client against a real memoria-server process (random-weight model, RocksDB store in a
// temp dir): every call, the gRPC -> absl code mapping, credentials and deadlines.
#include "client/lib/client.h"

#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/server/server_process.h"
#include "tests/test_support.h"

namespace memoria {
namespace {

using HealthStatus = grpc::health::v1::HealthCheckResponse;

class ClientTest : public testing::ClientServerTest {
 protected:
  static std::unique_ptr<Client> Connect(ClientOptions options) {
    absl::StatusOr<std::unique_ptr<Client>> client =
        Client::Connect(server_->grpc_target(), options);
    EXPECT_TRUE(client.ok()) << client.status();
    return client.ok() ? *std::move(client) : nullptr;
  }
  static std::unique_ptr<Client> Admin() {
    ClientOptions options;
    options.admin_token = kToken;
    return Connect(options);
  }

  static v1::IngestDocumentRequest Document(const std::string& id, const std::string& text) {
    v1::IngestDocumentRequest d;
    d.set_id(id);
    d.set_collection("client_test");
    d.set_title(id);
    d.set_text(text);
    d.set_metadata("{\"source\":\"client_test\"}");
    return d;
  }

};

TEST_F(ClientTest, HealthIsServingForTheServerAndItsServices) {
  std::unique_ptr<Client> client = Connect({});
  for (const char* service : {"", "memoria.v1.Generation", "memoria.v1.MemoryAdmin"}) {
    absl::StatusOr<HealthStatus::ServingStatus> status = client->Health(service);
    ASSERT_TRUE(status.ok()) << service << ": " << status.status();
    EXPECT_EQ(*status, HealthStatus::SERVING) << service;
  }
  EXPECT_EQ(client->Health("no.such.Service").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(ClientTest, IngestGetListDeleteRoundTrip) {
  std::unique_ptr<Client> admin = Admin();
  absl::StatusOr<v1::IngestDocumentResponse> ingested =
      admin->IngestDocument(Document("round-trip", "Ada Lovelace wrote the first program."));
  ASSERT_TRUE(ingested.ok()) << ingested.status();
  EXPECT_EQ(ingested->document().id(), "round-trip");
  EXPECT_GE(ingested->document().reference_ids_size(), 1);
  EXPECT_GT(ingested->document().memory_bytes(), 0);

  absl::StatusOr<v1::DocumentInfo> got = admin->GetDocument("round-trip");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->collection(), "client_test");
  EXPECT_EQ(got->metadata(), "{\"source\":\"client_test\"}");
  EXPECT_EQ(got->reference_ids_size(), ingested->document().reference_ids_size());

  v1::ListDocumentsRequest list;
  list.set_collection("client_test");
  absl::StatusOr<v1::ListDocumentsResponse> listed = admin->ListDocuments(list);
  ASSERT_TRUE(listed.ok()) << listed.status();
  bool found = false;
  for (const v1::DocumentInfo& d : listed->documents()) found |= d.id() == "round-trip";
  EXPECT_TRUE(found);

  absl::StatusOr<v1::StatsResponse> stats = admin->Stats();
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_GE(stats->documents(), 1);
  EXPECT_GE(stats->references(), 1);

  ASSERT_TRUE(admin->DeleteDocument("round-trip").ok());
  EXPECT_EQ(admin->GetDocument("round-trip").status().code(), absl::StatusCode::kNotFound);
  absl::Status again = admin->DeleteDocument("round-trip");
  EXPECT_EQ(again.code(), absl::StatusCode::kNotFound);
  EXPECT_NE(again.message().find("DeleteDocument: "), std::string::npos) << again;
}

TEST_F(ClientTest, IngestDocumentsStreamsLazilyAndReportsEachInOrder) {
  std::vector<v1::IngestDocumentRequest> documents = {
      Document("bulk-1", "Grace Hopper built the first compiler."),
      Document("", "A document without an id is rejected on its own."),
      Document("bulk-3", "Alan Turing described the universal machine.")};
  size_t next = 0;
  absl::StatusOr<v1::IngestDocumentsResponse> response =
      Admin()->IngestDocuments([&](v1::IngestDocumentRequest* d) {
        if (next == documents.size()) return false;
        *d = documents[next++];
        return true;
      });
  ASSERT_TRUE(response.ok()) << response.status();
  ASSERT_EQ(response->results_size(), 3);
  EXPECT_EQ(response->succeeded(), 2);
  EXPECT_EQ(response->failed(), 1);
  EXPECT_EQ(response->results(0).code(), 0);
  EXPECT_EQ(response->results(0).document().id(), "bulk-1");
  EXPECT_EQ(response->results(1).code(), static_cast<int>(absl::StatusCode::kInvalidArgument));
  EXPECT_EQ(response->results(2).code(), 0);
  EXPECT_EQ(response->results(2).document().id(), "bulk-3");
}

TEST_F(ClientTest, AdminCallsWithoutTheTokenAreUnauthenticated) {
  std::unique_ptr<Client> anonymous = Connect({});
  EXPECT_EQ(anonymous->Stats().status().code(), absl::StatusCode::kUnauthenticated);
  ClientOptions wrong;
  wrong.admin_token = "not-the-token";
  EXPECT_EQ(Connect(wrong)->IngestDocument(Document("x", "text")).status().code(),
            absl::StatusCode::kUnauthenticated);
}

TEST_F(ClientTest, GenerateStreamsTextThenFinishesWithCitations) {
  ASSERT_TRUE(Admin()->IngestDocument(Document("cited", "Explicit memory is cited.")).ok());
  v1::GenerateRequest request;
  request.set_prompt("What is explicit memory?");
  request.mutable_sampling()->set_max_tokens(12);
  request.mutable_sampling()->set_ignore_eos(true);
  request.mutable_memory()->add_collections("client_test");

  std::vector<v1::GenerateResponse> responses;
  absl::Status status = Connect({})->Generate(
      request, [&](const v1::GenerateResponse& r) { responses.push_back(r); });
  ASSERT_TRUE(status.ok()) << status;
  ASSERT_FALSE(responses.empty());
  EXPECT_FALSE(responses.front().request_id().empty());
  const v1::GenerateResponse& last = responses.back();
  ASSERT_TRUE(last.has_finished());
  EXPECT_EQ(last.finished().reason(), v1::FINISH_REASON_LENGTH);
  EXPECT_EQ(last.finished().usage().completion_tokens(), 12);
  bool cited = false;
  for (size_t i = 0; i < responses.size(); ++i) {
    EXPECT_EQ(responses[i].has_finished(), i + 1 == responses.size()) << i;
    for (const v1::Citation& c : responses[i].retrieval().references()) {
      cited |= c.document_id() == "cited";
    }
  }
  EXPECT_TRUE(cited);
}

TEST_F(ClientTest, GenerateErrorsKeepTheServersCode) {
  v1::GenerateRequest empty;
  empty.set_prompt("");
  absl::Status status = Connect({})->Generate(empty, [](const v1::GenerateResponse&) {});
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_NE(status.message().find("Generate: "), std::string::npos) << status;
}

TEST_F(ClientTest, TokenizeAndModelInfo) {
  std::unique_ptr<Client> client = Connect({});
  v1::TokenizeRequest request;
  request.set_text("Hello world");
  absl::StatusOr<v1::TokenizeResponse> tokens = client->Tokenize(request);
  ASSERT_TRUE(tokens.ok()) << tokens.status();
  EXPECT_GE(tokens->ids_size(), 2);
  EXPECT_EQ(tokens->pieces_size(), tokens->ids_size());

  absl::StatusOr<v1::ModelInfoResponse> info = client->ModelInfo();
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->architecture(), "llama");
  EXPECT_EQ(info->n_layers(), 2);
  EXPECT_EQ(info->n_embd(), 64);
  EXPECT_TRUE(info->memory_enabled());
}

TEST_F(ClientTest, ExpiredDeadlineIsDeadlineExceeded) {
  ClientOptions options;
  options.deadline = absl::Nanoseconds(1);  // past before the call leaves the process
  v1::GenerateRequest request;
  request.set_prompt("never generated");
  absl::Status status = Connect(options)->Generate(request, [](const v1::GenerateResponse&) {});
  EXPECT_EQ(status.code(), absl::StatusCode::kDeadlineExceeded) << status;
}

TEST(ClientConnectTest, UnreachableServerIsUnavailable) {
  // Port 1 on loopback: nothing listens there, so the connection is refused at once.
  absl::StatusOr<std::unique_ptr<Client>> client = Client::Connect("127.0.0.1:1", {});
  ASSERT_TRUE(client.ok()) << client.status();
  EXPECT_EQ((*client)->Stats().status().code(), absl::StatusCode::kUnavailable);
}

TEST(ClientConnectTest, BadOptionsAreRejected) {
  EXPECT_EQ(Client::Connect("", {}).status().code(), absl::StatusCode::kInvalidArgument);
  ClientOptions roots_without_tls;
  roots_without_tls.tls_root_certs = "-----BEGIN CERTIFICATE-----";
  EXPECT_EQ(Client::Connect("127.0.0.1:1", roots_without_tls).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace memoria
