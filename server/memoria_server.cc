#include "server/memoria_server.h"

#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "engine/util/status_macros.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server.h"
#include "grpcpp/server_builder.h"
#include "memstore/fingerprint.h"
#include "server/grpc/generation_service.h"
#include "server/grpc/memory_admin_service.h"
#include "server/http/http_front_end.h"
#include "server/http/http_server.h"
#include "server/request_log.h"

namespace memoria {
namespace {

constexpr const char* kServiceNames[] = {"", "memoria.v1.Generation", "memoria.v1.MemoryAdmin"};

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

MemoriaServer::MemoriaServer(const ServerOptions& options)
    : options_(options), metrics_(&registry_) {
  state_.metrics = &metrics_;
  state_.admin_token = options.admin_token;
}

MemoriaServer::~MemoriaServer() { Shutdown(); }

absl::StatusOr<std::unique_ptr<MemoriaServer>> MemoriaServer::Start(const ServerOptions& options) {
  if (options.model_path.empty()) return absl::InvalidArgumentError("--model is required");
  if (options.tls_cert.empty() != options.tls_key.empty()) {
    return absl::InvalidArgumentError("--tls-cert and --tls-key go together");
  }
  std::unique_ptr<MemoriaServer> server(new MemoriaServer(options));

  std::shared_ptr<grpc::ServerCredentials> credentials;
  if (!options.tls_cert.empty()) {
    grpc::SslServerCredentialsOptions ssl;
    MEMORIA_ASSIGN_OR_RETURN(std::string cert, ReadFile(options.tls_cert));
    MEMORIA_ASSIGN_OR_RETURN(std::string key, ReadFile(options.tls_key));
    ssl.pem_key_cert_pairs.push_back({key, cert});
    credentials = grpc::SslServerCredentials(ssl);
  } else {
    credentials = grpc::InsecureServerCredentials();
  }
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  server->generation_service_ = std::make_unique<GenerationService>(&server->state_);
  server->admin_service_ = std::make_unique<MemoryAdminService>(&server->state_);
  grpc::ServerBuilder builder;
  builder.AddListeningPort(absl::StrCat(options.host, ":", options.grpc_port), credentials,
                           &server->grpc_port_);
  builder.SetMaxReceiveMessageSize(options.max_message_bytes);
  builder.RegisterService(server->generation_service_.get());
  builder.RegisterService(server->admin_service_.get());
  server->grpc_server_ = builder.BuildAndStart();
  if (server->grpc_server_ == nullptr || server->grpc_port_ == 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen for gRPC on ", options.host, ":", options.grpc_port));
  }
  server->SetHealth(false);
  if (options.http_port >= 0) {
    HttpFrontEndOptions http;
    http.server.host = options.host;
    http.server.port = options.http_port;
    http.openai.model_name = std::filesystem::path(options.model_path).stem().string();
    MEMORIA_ASSIGN_OR_RETURN(server->http_server_,
                             StartHttpFrontEnd(http, &server->state_, &server->registry_));
    server->http_port_ = server->http_server_->port();
  }
  LogEvent("listening", {{"grpc", absl::StrCat(options.host, ":", server->grpc_port_)},
                         {"http", absl::StrCat(options.host, ":", server->http_port_)}});
  return server;
}

void MemoriaServer::SetHealth(bool serving) {
  grpc::HealthCheckServiceInterface* health = grpc_server_->GetHealthCheckService();
  for (const char* name : kServiceNames) health->SetServingStatus(name, serving);
}

absl::Status MemoriaServer::Load() {
  if (options_.load_delay > absl::ZeroDuration()) absl::SleepFor(options_.load_delay);
  MEMORIA_ASSIGN_OR_RETURN(model_, Model::Load(options_.model, options_.model_path));
  LogEvent("model_loaded", {{"path", options_.model_path},
                            {"device", model_->backend().Describe()},
                            {"kv_pages", absl::StrCat(model_->total_kv_pages())}});
  if (!options_.store_path.empty()) {
    MEMORIA_ASSIGN_OR_RETURN(MemoryCompiler compiler,
                             MemoryCompiler::Create(model_.get(), options_.compiler));
    compiler_.emplace(std::move(compiler));
    MemoryStoreOptions store_options = options_.store;
    store_options.codec.dim = model_->config().head_dim;
    store_options.retrieval_dim = compiler_->retrieval_dim();
    const ModelFingerprint fingerprint = FingerprintOf(*model_);
    MEMORIA_ASSIGN_OR_RETURN(store_,
                             MemoryStore::Open(store_options, options_.store_path, fingerprint));
    state_.model_description = fingerprint.ToString();
    state_.compiler = &compiler_->options();
    MemoryStore* store = store_.get();
    registry_.AddCallback("memoria_store_documents", "Documents in the memory store.",
                          [store] { return static_cast<double>(store->Stats().documents); });
    registry_.AddCallback("memoria_store_references", "References in the memory store.",
                          [store] { return static_cast<double>(store->Stats().references); });
    registry_.AddCallback("memoria_store_memory_bytes", "Encoded memory bytes in the store.",
                          [store] { return static_cast<double>(store->Stats().memory_bytes); });
    registry_.AddCallback(
        "memoria_page_cache_hits_total", "Memory page loads served by the page cache.",
        [store] { return static_cast<double>(store->Stats().page_cache_hits); }, true);
    registry_.AddCallback(
        "memoria_page_cache_misses_total", "Memory page loads that read RocksDB.",
        [store] { return static_cast<double>(store->Stats().page_cache_misses); }, true);
    LogEvent("store_opened", {{"path", options_.store_path},
                              {"documents", absl::StrCat(store_->Stats().documents)}});
  }
  scheduler_ = std::make_unique<Scheduler>(model_.get(), compiler_ ? &*compiler_ : nullptr,
                                           store_.get(), options_.scheduler, &metrics_);
  state_.model = model_.get();
  state_.store = store_.get();
  state_.scheduler = scheduler_.get();
  state_.ready.store(true, std::memory_order_release);
  SetHealth(true);
  return absl::OkStatus();
}

void MemoriaServer::Shutdown() {
  if (grpc_server_ == nullptr) return;
  SetHealth(false);
  if (scheduler_ != nullptr) scheduler_->Drain(options_.drain_timeout);
  // After the drain, so HTTP streams end with their finish; then /healthz answers 503.
  state_.ready.store(false, std::memory_order_release);
  if (http_server_ != nullptr) http_server_->Stop();
  grpc_server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
  grpc_server_->Wait();
  grpc_server_.reset();
  LogEvent("stopped", {});
}

}  // namespace memoria
