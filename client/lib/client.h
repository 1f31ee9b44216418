#ifndef MEMORIA_CLIENT_LIB_CLIENT_H_
#define MEMORIA_CLIENT_LIB_CLIENT_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "memoria/v1/generation.grpc.pb.h"
#include "memoria/v1/memory_admin.grpc.pb.h"

namespace memoria {

struct ClientOptions {
  // Sent as "authorization: Bearer <token>" on every call. The server checks it on MemoryAdmin
  // calls when it was started with an admin token; empty sends nothing.
  std::string admin_token;

  // Connect with TLS. The server's certificate is checked against `tls_root_certs` (PEM text,
  // not a path), or the system's roots when that is empty.
  bool tls = false;
  std::string tls_root_certs;

  // Limit for each call, streams included (a Generate stream must finish within it). Past it a
  // call fails with DEADLINE_EXCEEDED and the server cancels its work.
  absl::Duration deadline = absl::InfiniteDuration();
};

// A connection to one memoria-server over gRPC: generation, the memory store's admin calls and
// the standard health check. Calls block the calling thread; one Client may be used by several
// threads at once (a gRPC channel multiplexes calls).
//
// Errors are absl::Status with the gRPC code carried over unchanged (the two code spaces are
// the same numbers), and the message prefixed with the call's name.
class Client {
 public:
  // `target` is a gRPC target: "HOST:PORT", "dns:///host:port", "unix:/path". The connection is
  // made lazily: an unreachable server shows as UNAVAILABLE on the first call, not here.
  static absl::StatusOr<std::unique_ptr<Client>> Connect(const std::string& target,
                                                         const ClientOptions& options);

  // Streams a completion. `on_response` sees every message in order on the calling thread: text
  // deltas, retrievals (citations), and last the one carrying `finished`. The returned status is
  // the stream's: OK after `finished`, else why it failed (possibly after some messages).
  absl::Status Generate(const v1::GenerateRequest& request,
                        const std::function<void(const v1::GenerateResponse&)>& on_response);

  absl::StatusOr<v1::TokenizeResponse> Tokenize(const v1::TokenizeRequest& request);
  absl::StatusOr<v1::ModelInfoResponse> ModelInfo();

  // Memory store administration (MemoryAdmin).
  absl::StatusOr<v1::IngestDocumentResponse> IngestDocument(
      const v1::IngestDocumentRequest& document);
  // Bulk ingest over one stream. `next` fills the next document and returns true, or returns
  // false when there are no more; documents are read lazily, so a large corpus need not be in
  // memory. Each document succeeds or fails on its own: see the per-document results.
  absl::StatusOr<v1::IngestDocumentsResponse> IngestDocuments(
      const std::function<bool(v1::IngestDocumentRequest*)>& next);
  absl::Status DeleteDocument(const std::string& id);
  absl::StatusOr<v1::DocumentInfo> GetDocument(const std::string& id);
  // One page; pass the previous page's next_page_token to continue.
  absl::StatusOr<v1::ListDocumentsResponse> ListDocuments(
      const v1::ListDocumentsRequest& request);
  absl::StatusOr<v1::StatsResponse> Stats();

  // grpc.health.v1.Health/Check. `service` empty asks about the server as a whole; otherwise a
  // full service name such as "memoria.v1.Generation". NOT_FOUND when the server does not know
  // the service.
  absl::StatusOr<grpc::health::v1::HealthCheckResponse::ServingStatus> Health(
      const std::string& service);

  const std::string& target() const { return target_; }

 private:
  Client(std::string target, ClientOptions options, std::shared_ptr<grpc::Channel> channel);

  // A context for one call: deadline and credentials metadata.
  std::unique_ptr<grpc::ClientContext> NewContext() const;

  const std::string target_;
  const ClientOptions options_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Generation::Stub> generation_;
  std::unique_ptr<v1::MemoryAdmin::Stub> admin_;
  std::unique_ptr<grpc::health::v1::Health::Stub> health_;
};

// The absl::Status for a gRPC status; `call` names the call in the message ("Generate: ...").
absl::Status FromGrpcStatus(const grpc::Status& status, const std::string& call);

}  // namespace memoria

#endif  // MEMORIA_CLIENT_LIB_CLIENT_H_
