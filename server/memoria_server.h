#ifndef MEMORIA_SERVER_MEMORIA_SERVER_H_
#define MEMORIA_SERVER_MEMORIA_SERVER_H_

#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "engine/model/model.h"
#include "memstore/compiler.h"
#include "memstore/memory_store.h"
#include "server/metrics/metrics_registry.h"
#include "server/metrics/server_metrics.h"
#include "server/scheduler/scheduler.h"
#include "server/serving_state.h"

namespace grpc {
class Server;
}

namespace memoria {

class GenerationService;
class MemoryAdminService;
class HttpServer;

struct ServerOptions {
  std::string model_path;   // required
  std::string store_path;   // empty: no explicit memory
  std::string host = "127.0.0.1";
  int grpc_port = 50051;    // 0: ephemeral
  int http_port = 8080;     // 0: ephemeral; -1: no HTTP
  std::string admin_token;  // empty: admin RPCs open
  std::string tls_cert;     // PEM files; both or neither
  std::string tls_key;
  int max_message_bytes = 16 << 20;
  ModelOptions model;
  CompilerOptions compiler;
  MemoryStoreOptions store;
  SchedulerOptions scheduler;
  absl::Duration drain_timeout = absl::Seconds(30);
  // Held between binding the ports and loading, so tests and operators can watch the
  // NOT_SERVING phase of a load that is otherwise too quick to see.
  absl::Duration load_delay = absl::ZeroDuration();
};

// The whole server: gRPC (Generation, MemoryAdmin, health, reflection) and HTTP (/metrics,
// OpenAI-compatible routes) front ends over one scheduler, model and memory store.
// Start binds the ports at once and serves health as NOT_SERVING; Load brings the model and
// store up and flips health to SERVING.
class MemoriaServer {
 public:
  static absl::StatusOr<std::unique_ptr<MemoriaServer>> Start(const ServerOptions& options);
  ~MemoriaServer();

  absl::Status Load();
  // Health to NOT_SERVING, no new requests, running streams drained (up to drain_timeout),
  // then the front ends stop.
  void Shutdown();

  int grpc_port() const { return grpc_port_; }
  int http_port() const { return http_port_; }
  const ServerOptions& options() const { return options_; }

 private:
  explicit MemoriaServer(const ServerOptions& options);
  void SetHealth(bool serving);

  ServerOptions options_;
  MetricsRegistry registry_;
  ServerMetrics metrics_;
  ServingState state_;
  std::unique_ptr<Model> model_;
  std::optional<MemoryCompiler> compiler_;
  std::unique_ptr<MemoryStore> store_;
  std::unique_ptr<Scheduler> scheduler_;
  std::unique_ptr<GenerationService> generation_service_;
  std::unique_ptr<MemoryAdminService> admin_service_;
  std::unique_ptr<grpc::Server> grpc_server_;
  std::unique_ptr<HttpServer> http_server_;
  int grpc_port_ = 0;
  int http_port_ = 0;
};

}  // namespace memoria

#endif  // MEMORIA_SERVER_MEMORIA_SERVER_H_
