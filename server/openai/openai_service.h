#ifndef MEMORIA_SERVER_OPENAI_OPENAI_SERVICE_H_
#define MEMORIA_SERVER_OPENAI_OPENAI_SERVICE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "server/http/http_server.h"
#include "server/serving_state.h"

namespace memoria {

struct OpenAiServiceOptions {
  // The name /v1/models lists and responses carry in `model`. Requests may name any model: the
  // server has one, and clients often send a name of their own.
  std::string model_name = "memoria";
  // max_tokens when a request sends none. OpenAI's completions default to 16. Chat has no limit
  // there but the context; here every request reserves KV pages for prompt + max_tokens up front,
  // so an unbounded default would let one chat hold the cache. The scheduler also caps it at the
  // context left.
  int32_t default_completion_max_tokens = 16;
  int32_t default_chat_max_tokens = 1024;
};

// The OpenAI-compatible routes: POST /v1/completions, POST /v1/chat/completions (both streaming
// SSE when asked) and GET /v1/models. Requests are answered 503 until state->IsReady(). A
// streaming client that disconnects cancels its generation; a non-streaming one cannot be
// noticed (cpp-httplib hides the socket from plain handlers) and its generation runs to the end.
// The routes keep what they need alive; `state` must outlive the server serving them.
std::vector<HttpRoute> OpenAiRoutes(const OpenAiServiceOptions& options, ServingState* state);

}  // namespace memoria

#endif  // MEMORIA_SERVER_OPENAI_OPENAI_SERVICE_H_
