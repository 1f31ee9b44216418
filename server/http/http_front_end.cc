#include "server/http/http_front_end.h"

#include <utility>
#include <vector>

namespace memoria {

absl::StatusOr<std::unique_ptr<HttpServer>> StartHttpFrontEnd(const HttpFrontEndOptions& options,
                                                              ServingState* state,
                                                              const MetricsRegistry* registry) {
  std::vector<HttpRoute> routes = OpenAiRoutes(options.openai, state);
  routes.push_back({"GET", "/metrics", [registry](const HttpRequest&) {
                      HttpResponse response;
                      response.content_type = "text/plain; version=0.0.4; charset=utf-8";
                      response.body = registry->Render();
                      return response;
                    }});
  routes.push_back({"GET", "/healthz", [state](const HttpRequest&) {
                      HttpResponse response;
                      const bool ready = state->IsReady();
                      response.status = ready ? 200 : 503;
                      response.body = ready ? "ok\n" : "not serving\n";
                      return response;
                    }});
  return HttpServer::Start(options.server, std::move(routes));
}

}  // namespace memoria
