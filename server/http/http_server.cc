// The one file that includes cpp-httplib: its header is large, and Debian builds it as a shared
// library whose ABI depends on the CPPHTTPLIB_* defines the build passes here.
#include "server/http/http_server.h"

#include <httplib.h>

#include <cctype>
#include <cerrno>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace memoria {
namespace {

const char* StatusText(int status) {
  switch (status) {
    case 400: return "bad request";
    case 404: return "no such path";
    case 405: return "method not allowed on this path";
    case 413: return "request body too large";
    case 414: return "request URI too long";
    default: return status >= 500 ? "internal server error" : "request rejected";
  }
}

// The OpenAI-style error body every error found before a handler gets, so clients parse one
// shape.
std::string ErrorBody(int status, const char* type) {
  return absl::StrCat("{\"error\":{\"message\":\"", StatusText(status), "\",\"type\":\"", type,
                      "\",\"param\":null,\"code\":null}}");
}

std::string Lowercase(std::string text) {
  for (char& c : text) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return text;
}

class SinkWriter : public HttpChunkWriter {
 public:
  SinkWriter(httplib::DataSink& sink, const std::atomic<bool>& stopping)
      : sink_(sink), stopping_(stopping) {}

  bool Write(std::string_view data) override {
    if (stopping_.load(std::memory_order_acquire)) return false;
    if (data.empty()) return Connected();  // an empty chunk would end the body
    return sink_.write(data.data(), data.size());
  }

  bool Connected() override {
    return !stopping_.load(std::memory_order_acquire) && sink_.is_writable();
  }

 private:
  httplib::DataSink& sink_;
  const std::atomic<bool>& stopping_;
};

void SplitSeconds(absl::Duration d, time_t* sec, time_t* usec) {
  const int64_t micros = absl::ToInt64Microseconds(d);
  *sec = static_cast<time_t>(micros / 1000000);
  *usec = static_cast<time_t>(micros % 1000000);
}

}  // namespace

HttpServer::HttpServer(std::string host, std::vector<HttpRoute> routes)
    : host_(std::move(host)) {
  for (HttpRoute& route : routes) {
    routes_[route.path][route.method] = std::move(route.handler);
  }
}

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::Start(const HttpServerOptions& options,
                                                              std::vector<HttpRoute> routes) {
  if (options.port < 0 || options.port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("HTTP port out of range: ", options.port));
  }
  if (options.threads < 1) {
    return absl::InvalidArgumentError("HTTP server needs at least one thread");
  }
  std::unique_ptr<HttpServer> server(new HttpServer(options.host, std::move(routes)));
  auto http = std::make_unique<httplib::Server>();
  const size_t threads = static_cast<size_t>(options.threads);
  http->new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  http->set_payload_max_length(options.max_body_bytes);
  time_t sec = 0;
  time_t usec = 0;
  SplitSeconds(options.read_timeout, &sec, &usec);
  http->set_read_timeout(sec, usec);
  SplitSeconds(options.write_timeout, &sec, &usec);
  http->set_write_timeout(sec, usec);
  // An idle keep-alive connection holds a thread and delays Stop() by up to this long.
  http->set_keep_alive_timeout(2);
  http->set_keep_alive_max_count(1000);
  http->set_tcp_nodelay(true);  // SSE chunks are small and latency-bound
  // httplib's default also sets SO_REUSEPORT, which lets a second server bind the same port and
  // silently take half the connections. SO_REUSEADDR alone still allows a quick restart.
  http->set_socket_options([](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  });

  HttpServer* self = server.get();
  auto dispatch = [self](const httplib::Request& request, httplib::Response& response) {
    self->Dispatch(request, response);
  };
  http->Get(".*", dispatch);
  http->Post(".*", dispatch);
  http->Put(".*", dispatch);
  http->Patch(".*", dispatch);
  http->Delete(".*", dispatch);
  http->Options(".*", dispatch);
  // httplib's own errors (413 body too large, 400 malformed) come with an empty body.
  http->set_error_handler(httplib::Server::HandlerWithResponse(
      [](const httplib::Request&, httplib::Response& response) {
    if (!response.body.empty() || response.is_chunked_content_provider_) {
      return httplib::Server::HandlerResponse::Unhandled;
    }
    response.set_content(ErrorBody(response.status, "invalid_request_error"),
                         "application/json");
    return httplib::Server::HandlerResponse::Handled;
  }));

  errno = 0;
  const int port = options.port == 0 ? http->bind_to_any_port(options.host)
                                     : (http->bind_to_port(options.host, options.port)
                                            ? options.port
                                            : -1);
  if (port < 0) {
    const int error = errno;
    return absl::UnavailableError(absl::StrCat("cannot listen on ", options.host, ":",
                                               options.port,
                                               error != 0 ? absl::StrCat(": ", std::strerror(error))
                                                          : std::string()));
  }
  server->port_ = port;
  httplib::Server* raw = http.get();
  server->server_ = std::move(http);
  auto listen_returned = std::make_shared<std::atomic<bool>>(false);
  server->listen_thread_ = std::thread([raw, listen_returned] {
    // Returns when Stop() closes the socket; its result only says whether that happened.
    raw->listen_after_bind();
    listen_returned->store(true, std::memory_order_release);
  });
  // httplib's stop() does nothing until the listen loop runs, so a Stop() right after Start()
  // must not get ahead of it.
  while (!raw->is_running() && !listen_returned->load(std::memory_order_acquire)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  if (!raw->is_running() && listen_returned->load(std::memory_order_acquire)) {
    return absl::UnavailableError(
        absl::StrCat("HTTP server on ", options.host, ":", port, " stopped at once"));
  }
  return server;
}

HttpServer::~HttpServer() { Stop(); }

void HttpServer::Stop() {
  if (stopping_.exchange(true, std::memory_order_acq_rel)) {
    if (listen_thread_.joinable()) listen_thread_.join();
    return;
  }
  if (server_ != nullptr) server_->stop();
  // The listen loop shuts its thread pool down (waiting for handlers in flight) before returning.
  if (listen_thread_.joinable()) listen_thread_.join();
}

void HttpServer::Dispatch(const httplib::Request& request, httplib::Response& response) {
  auto path = routes_.find(request.path);
  if (path == routes_.end()) {
    response.status = 404;
    response.set_content(ErrorBody(404, "not_found_error"), "application/json");
    return;
  }
  const std::string method = request.method == "HEAD" ? "GET" : request.method;
  auto route = path->second.find(method);
  if (route == path->second.end()) {
    std::string allow;
    for (const auto& [name, handler] : path->second) {
      absl::StrAppend(&allow, allow.empty() ? "" : ", ", name);
    }
    response.status = 405;
    response.set_header("Allow", allow);
    response.set_content(ErrorBody(405, "invalid_request_error"), "application/json");
    return;
  }

  HttpRequest http_request;
  http_request.method = request.method;
  http_request.path = request.path;
  for (const auto& [name, value] : request.params) http_request.query[name] = value;
  for (const auto& [name, value] : request.headers) {
    http_request.headers[Lowercase(name)] = value;
  }
  http_request.body = request.body;

  HttpResponse reply = route->second(http_request);
  response.status = reply.status;
  for (const auto& [name, value] : reply.headers) response.set_header(name, value);
  if (!reply.stream) {
    response.set_content(std::move(reply.body), reply.content_type.c_str());
    return;
  }
  // httplib copies the provider, so the move-only parts of the stream live behind a shared_ptr.
  auto stream = std::make_shared<std::function<void(HttpChunkWriter&)>>(std::move(reply.stream));
  response.set_chunked_content_provider(
      reply.content_type, [this, stream](size_t /*offset*/, httplib::DataSink& sink) {
        SinkWriter writer(sink, stopping_);
        (*stream)(writer);
        sink.done();
        return true;
      });
}

}  // namespace memoria
