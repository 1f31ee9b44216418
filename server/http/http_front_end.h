#ifndef MEMORIA_SERVER_HTTP_HTTP_FRONT_END_H_
#define MEMORIA_SERVER_HTTP_HTTP_FRONT_END_H_

#include <memory>

#include "absl/status/statusor.h"
#include "server/http/http_server.h"
#include "server/metrics/metrics_registry.h"
#include "server/openai/openai_service.h"
#include "server/serving_state.h"

namespace memoria {

struct HttpFrontEndOptions {
  HttpServerOptions server;  // host, port (0: ephemeral), threads, limits
  OpenAiServiceOptions openai;
};

// The server's HTTP port: GET /metrics (Prometheus text 0.0.4 from `registry`), GET /healthz
// (200 once state->IsReady(), 503 before and after), and the OpenAI routes (openai_service.h).
// It can start before the model loads. `state` and `registry` must outlive the returned server;
// stop it (HttpServer::Stop) after draining the scheduler, so streams end with their finish.
absl::StatusOr<std::unique_ptr<HttpServer>> StartHttpFrontEnd(const HttpFrontEndOptions& options,
                                                              ServingState* state,
                                                              const MetricsRegistry* registry);

}  // namespace memoria

#endif  // MEMORIA_SERVER_HTTP_HTTP_FRONT_END_H_
