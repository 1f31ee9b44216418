// memoria-server: gRPC + HTTP inference server with explicit memory. See README.md for flags.
#include <csignal>
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/cli/flags.h"
#include "engine/util/status_macros.h"
#include "memstore/codec.h"
#include "server/memoria_server.h"

namespace memoria {
namespace {

constexpr char kUsage[] = R"(usage: memoria-server --model M.gguf [--store DIR] [options]

  --model PATH            GGUF model (required)
  --store DIR             memory store (RocksDB + FAISS); without it, no explicit memory
  --host ADDR             listen address (default 127.0.0.1; 0.0.0.0 for all)
  --grpc-port N           gRPC port (default 50051; 0 = ephemeral)
  --http-port N           HTTP port for /metrics and the OpenAI API (default 8080; 0 = ephemeral;
                          -1 = off)
  --admin-token T         require 'authorization: Bearer T' on MemoryAdmin calls
                          (default: $MEMORIA_ADMIN_TOKEN)
  --tls-cert F --tls-key F  serve gRPC over TLS with this PEM certificate chain and key
  --device cpu|cuda|auto  compute device (default auto: cuda when a GPU is visible)
  --threads N             CPU threads (default: all)
  --kv-cache-tokens N     KV cache slots shared by all sequences (default: 4 x context, <= 32768)
  --max-batch-tokens N    token rows per forward pass (default 512)
  --max-queue N           waiting requests before RESOURCE_EXHAUSTED (default 256)
  --max-running N         sequences decoding together (default 64)
  --prefill-chunk N       prompt tokens per sequence per step (default 256)
  --reference-tokens N    tokens per reference (default 128)
  --kept-tokens N         memory entries kept per layer and KV head (default 8)
  --min-score F           retrieval score floor of requests that set none (default 0)
  --score-gap F           requests that set none keep references scoring within F of the best
                          (default: the model's memoria.retrieval.score_gap, else 2 = all)
  --dense                 keep every token of a reference
  --codec NAME            f32, f16, int8 (default), int4, pq — fixed when the store is created
  --page-cache-mb N       decoded memory pages kept in RAM (default 256)
  --drain-seconds N       on SIGTERM, wait this long for running streams (default 30)
  --load-delay-ms N       wait before loading (shows the NOT_SERVING phase to probes and tests)
)";

absl::StatusOr<ServerOptions> ParseOptions(const std::vector<std::string>& args) {
  MEMORIA_ASSIGN_OR_RETURN(
      cli::Flags flags,
      cli::Flags::Parse(args,
                        {"--model", "--store", "--host", "--grpc-port", "--http-port",
                         "--admin-token", "--tls-cert", "--tls-key", "--device", "--threads",
                         "--kv-cache-tokens", "--max-batch-tokens", "--max-queue",
                         "--max-running", "--prefill-chunk", "--reference-tokens",
                         "--kept-tokens", "--min-score", "--score-gap", "--codec", "--page-cache-mb", "--drain-seconds",
                         "--load-delay-ms"},
                        {"--dense", "--help"}));
  if (flags.Has("--help")) return absl::CancelledError(kUsage);
  ServerOptions o;
  MEMORIA_ASSIGN_OR_RETURN(o.model_path, flags.Required("--model"));
  o.store_path = flags.String("--store");
  o.host = flags.String("--host", o.host);
  MEMORIA_ASSIGN_OR_RETURN(int64_t grpc_port, flags.Int("--grpc-port", o.grpc_port));
  MEMORIA_ASSIGN_OR_RETURN(int64_t http_port, flags.Int("--http-port", o.http_port));
  if (grpc_port < 0 || grpc_port > 65535 || http_port < -1 || http_port > 65535) {
    return absl::InvalidArgumentError("ports must be in [0, 65535] (--http-port -1: off)");
  }
  o.grpc_port = static_cast<int>(grpc_port);
  o.http_port = static_cast<int>(http_port);
  const char* env_token = std::getenv("MEMORIA_ADMIN_TOKEN");
  o.admin_token = flags.String("--admin-token", env_token != nullptr ? env_token : "");
  o.tls_cert = flags.String("--tls-cert");
  o.tls_key = flags.String("--tls-key");
  MEMORIA_ASSIGN_OR_RETURN(o.model.backend.device, ParseDeviceKind(flags.String("--device", "auto")));
  MEMORIA_ASSIGN_OR_RETURN(int64_t threads, flags.Int("--threads", 0));
  o.model.backend.n_threads = static_cast<int32_t>(threads);
  MEMORIA_ASSIGN_OR_RETURN(int64_t kv, flags.Int("--kv-cache-tokens", 0));
  o.model.kv_cache_tokens = static_cast<int32_t>(kv);
  MEMORIA_ASSIGN_OR_RETURN(int64_t batch, flags.Int("--max-batch-tokens", 512));
  o.model.max_batch_tokens = static_cast<int32_t>(batch);
  o.scheduler.step_token_budget = o.model.max_batch_tokens;
  MEMORIA_ASSIGN_OR_RETURN(int64_t queue, flags.Int("--max-queue", o.scheduler.max_queue));
  MEMORIA_ASSIGN_OR_RETURN(int64_t running, flags.Int("--max-running", o.scheduler.max_running));
  MEMORIA_ASSIGN_OR_RETURN(int64_t chunk, flags.Int("--prefill-chunk", o.scheduler.prefill_chunk));
  if (queue < 0 || running < 1 || chunk < 1) {
    return absl::InvalidArgumentError(
        "--max-queue must be >= 0, --max-running and --prefill-chunk >= 1");
  }
  o.scheduler.max_queue = static_cast<int32_t>(queue);
  o.scheduler.max_running = static_cast<int32_t>(running);
  o.scheduler.prefill_chunk = static_cast<int32_t>(chunk);
  MEMORIA_ASSIGN_OR_RETURN(int64_t ref, flags.Int("--reference-tokens", 128));
  MEMORIA_ASSIGN_OR_RETURN(int64_t kept, flags.Int("--kept-tokens", 8));
  o.compiler.reference_tokens = static_cast<int32_t>(ref);
  o.compiler.kept_tokens = static_cast<int32_t>(kept);
  o.compiler.dense = flags.Has("--dense");
  if (flags.Has("--min-score")) {
    MEMORIA_ASSIGN_OR_RETURN(double min_score, flags.Double("--min-score", 0));
    if (!(min_score >= -1 && min_score <= 1)) {
      return absl::InvalidArgumentError("--min-score must be in [-1, 1]");
    }
    o.scheduler.min_score = static_cast<float>(min_score);
  }
  if (flags.Has("--score-gap")) {
    MEMORIA_ASSIGN_OR_RETURN(double gap, flags.Double("--score-gap", 2));
    if (!(gap >= 0 && gap <= 2)) return absl::InvalidArgumentError("--score-gap must be in [0, 2]");
    o.scheduler.score_gap = static_cast<float>(gap);
  }
  MEMORIA_ASSIGN_OR_RETURN(o.store.codec.kind, ParseCodec(flags.String("--codec", "int8")));
  MEMORIA_ASSIGN_OR_RETURN(int64_t cache_mb, flags.Int("--page-cache-mb", 256));
  if (cache_mb < 0) return absl::InvalidArgumentError("--page-cache-mb must be >= 0");
  o.store.page_cache_bytes = static_cast<size_t>(cache_mb) << 20;
  MEMORIA_ASSIGN_OR_RETURN(int64_t drain, flags.Int("--drain-seconds", 30));
  o.drain_timeout = absl::Seconds(drain);
  MEMORIA_ASSIGN_OR_RETURN(int64_t delay, flags.Int("--load-delay-ms", 0));
  o.load_delay = absl::Milliseconds(delay);
  return o;
}

int Main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  absl::StatusOr<ServerOptions> options = ParseOptions(args);
  if (!options.ok()) {
    if (options.status().code() == absl::StatusCode::kCancelled) {
      std::cout << options.status().message();
      return 0;
    }
    std::cerr << "memoria-server: " << options.status().message() << "\n" << kUsage;
    return 2;
  }
  // SIGTERM / SIGINT are taken synchronously by this thread; every thread started below
  // inherits the blocked mask, so none of them is interrupted by a signal.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  absl::StatusOr<std::unique_ptr<MemoriaServer>> server = MemoriaServer::Start(*options);
  if (!server.ok()) {
    std::cerr << "memoria-server: " << server.status().message() << "\n";
    return 1;
  }
  std::cout << "memoria-server: listening grpc=" << options->host << ":" << (*server)->grpc_port()
            << " http=" << options->host << ":" << (*server)->http_port() << std::endl;
  if (absl::Status s = (*server)->Load(); !s.ok()) {
    std::cerr << "memoria-server: " << s.message() << "\n";
    return 1;
  }
  std::cout << "memoria-server: ready grpc=" << options->host << ":" << (*server)->grpc_port()
            << " http=" << options->host << ":" << (*server)->http_port() << std::endl;
  int signal = 0;
  sigwait(&signals, &signal);
  std::cerr << "memoria-server: " << (signal == SIGTERM ? "SIGTERM" : "SIGINT")
            << ", draining\n";
  (*server)->Shutdown();
  return 0;
}

}  // namespace
}  // namespace memoria

int main(int argc, char** argv) { return memoria::Main(argc, argv); }
