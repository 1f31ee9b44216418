#ifndef MEMORIA_SERVER_HTTP_HTTP_SERVER_H_
#define MEMORIA_SERVER_HTTP_HTTP_SERVER_H_

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace httplib {
class Server;
struct Request;
struct Response;
}  // namespace httplib

namespace memoria {

struct HttpRequest {
  std::string method;  // "GET", "POST", ...
  std::string path;    // without the query string
  std::map<std::string, std::string> query;
  std::map<std::string, std::string> headers;  // names lower-cased; a repeated header keeps one
  std::string body;
};

// The body of a streamed response. Used only on the thread running the stream callback.
class HttpChunkWriter {
 public:
  virtual ~HttpChunkWriter() = default;
  // Sends `data` as one chunk now. False once the client is gone, a write timed out or the server
  // is stopping: the stream should stop (and give up the work it was streaming).
  virtual bool Write(std::string_view data) = 0;
  // False when the client has closed its connection or the server is stopping. Cheap enough to
  // poll between writes (one non-blocking peek at the socket).
  virtual bool Connected() = 0;
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::vector<std::pair<std::string, std::string>> headers;  // extra headers
  std::string body;
  // When set, the body is streamed with chunked transfer encoding: the status and headers go
  // out, then `stream` runs once on the serving thread and writes the body; `body` is ignored.
  // The status cannot change once streaming starts, so report failures found before it in
  // `status`, and failures during it in-band.
  std::function<void(HttpChunkWriter&)> stream;
};

// Runs on one of the server's threads; many run at once.
using HttpHandler = std::function<HttpResponse(const HttpRequest&)>;

struct HttpRoute {
  std::string method;  // "GET" (also serves HEAD) or "POST"
  std::string path;    // matched exactly
  HttpHandler handler;
};

struct HttpServerOptions {
  std::string host = "127.0.0.1";
  // 0: an ephemeral port; port() tells which.
  int port = 0;
  // Connections served at once. A streamed generation holds its thread until it ends, so this
  // bounds concurrent streaming clients; further connections wait in an unbounded queue. Idle
  // threads cost only their stacks.
  int threads = 128;
  // Larger request bodies get 413 without reaching a handler.
  size_t max_body_bytes = 16 << 20;
  // A client slower than this to send a request, or to take a written chunk, is dropped.
  absl::Duration read_timeout = absl::Seconds(30);
  absl::Duration write_timeout = absl::Seconds(30);
};

// An HTTP/1.1 server (cpp-httplib underneath) with exact-path routes. Unknown paths get 404,
// known paths with another method 405, both with a JSON error body. Handlers run concurrently
// on a pool of options.threads threads.
class HttpServer {
 public:
  // Binds host:port and starts serving before returning. UNAVAILABLE when the address cannot be
  // bound (in use, not permitted, not resolvable).
  static absl::StatusOr<std::unique_ptr<HttpServer>> Start(const HttpServerOptions& options,
                                                           std::vector<HttpRoute> routes);
  ~HttpServer();  // Stop()

  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  const std::string& host() const { return host_; }
  int port() const { return port_; }

  // Closes the listening socket, tells running streams to end (their writers report
  // disconnected), and waits for the handlers in flight to return. Plain handlers are waited for,
  // not interrupted: drain long work before calling it. Idempotent.
  void Stop();

 private:
  HttpServer(std::string host, std::vector<HttpRoute> routes);
  // Routes one request (a catch-all httplib handler calls it for every method).
  void Dispatch(const httplib::Request& request, httplib::Response& response);

  // Constant after Start.
  const std::string host_;
  int port_ = 0;
  std::map<std::string, std::map<std::string, HttpHandler>> routes_;  // path -> method ->
  std::unique_ptr<httplib::Server> server_;
  std::thread listen_thread_;

  std::atomic<bool> stopping_{false};
};

}  // namespace memoria

#endif  // MEMORIA_SERVER_HTTP_HTTP_SERVER_H_
