#include "server/http/http_server.h"

#include <arpa/inet.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"

namespace memoria {
namespace {

// A raw client socket, for what httplib::Client hides: reading part of a stream, then hanging up.
class RawClient {
 public:
  explicit RawClient(int port) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(static_cast<uint16_t>(port));
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = connect(fd_, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0;
  }
  ~RawClient() { Close(); }

  bool connected() const { return connected_; }
  void Send(const std::string& data) {
    ASSERT_EQ(send(fd_, data.data(), data.size(), 0), static_cast<ssize_t>(data.size()));
  }
  // Reads until `marker` has arrived (or the peer closes); returns all read so far.
  std::string ReadUntil(const std::string& marker) {
    char buf[4096];
    while (received_.find(marker) == std::string::npos) {
      const ssize_t n = recv(fd_, buf, sizeof(buf), 0);
      if (n <= 0) break;
      received_.append(buf, static_cast<size_t>(n));
    }
    return received_;
  }
  void Close() {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
  bool connected_ = false;
  std::string received_;
};

HttpRoute Route(std::string method, std::string path, HttpHandler handler) {
  return HttpRoute{std::move(method), std::move(path), std::move(handler)};
}

std::unique_ptr<HttpServer> StartOrDie(std::vector<HttpRoute> routes,
                                       HttpServerOptions options = {}) {
  absl::StatusOr<std::unique_ptr<HttpServer>> server =
      HttpServer::Start(options, std::move(routes));
  EXPECT_TRUE(server.ok()) << server.status();
  return server.ok() ? std::move(*server) : nullptr;
}

TEST(HttpServerTest, ServesPlainRoutesOnAnEphemeralPort) {
  auto server = StartOrDie({
      Route("GET", "/hello",
            [](const HttpRequest& request) {
              HttpResponse response;
              response.body =
                  "hello " + (request.query.count("name") ? request.query.at("name") : "");
              response.headers.push_back({"X-Test", "1"});
              return response;
            }),
      Route("POST", "/echo",
            [](const HttpRequest& request) {
              HttpResponse response;
              response.status = 201;
              response.content_type = "application/json";
              response.body = request.body + "|" + request.headers.at("x-custom");  // lower-cased
              return response;
            }),
  });
  ASSERT_NE(server, nullptr);
  EXPECT_GT(server->port(), 0);
  httplib::Client client("127.0.0.1", server->port());

  auto get = client.Get("/hello?name=you");
  ASSERT_TRUE(get);
  EXPECT_EQ(get->status, 200);
  EXPECT_EQ(get->body, "hello you");
  EXPECT_EQ(get->get_header_value("X-Test"), "1");

  auto post = client.Post("/echo", {{"X-Custom", "abc"}}, "{\"a\":1}", "application/json");
  ASSERT_TRUE(post);
  EXPECT_EQ(post->status, 201);
  EXPECT_EQ(post->body, "{\"a\":1}|abc");
  EXPECT_EQ(post->get_header_value("Content-Type"), "application/json");
}

TEST(HttpServerTest, UnknownPathIs404AndWrongMethodIs405WithJsonErrors) {
  auto server = StartOrDie(
      {Route("POST", "/v1/completions", [](const HttpRequest&) { return HttpResponse{}; })});
  ASSERT_NE(server, nullptr);
  httplib::Client client("127.0.0.1", server->port());

  auto missing = client.Get("/nope");
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->status, 404);
  EXPECT_NE(missing->body.find("\"error\""), std::string::npos) << missing->body;

  auto wrong = client.Get("/v1/completions");
  ASSERT_TRUE(wrong);
  EXPECT_EQ(wrong->status, 405);
  EXPECT_EQ(wrong->get_header_value("Allow"), "POST");
  EXPECT_NE(wrong->body.find("\"error\""), std::string::npos) << wrong->body;
}

TEST(HttpServerTest, OversizedBodyIs413) {
  HttpServerOptions options;
  options.max_body_bytes = 1024;
  bool called = false;
  auto server = StartOrDie({Route("POST", "/in",
                                  [&called](const HttpRequest&) {
                                    called = true;
                                    return HttpResponse{};
                                  })},
                           options);
  ASSERT_NE(server, nullptr);
  httplib::Client client("127.0.0.1", server->port());
  auto result = client.Post("/in", std::string(4096, 'x'), "text/plain");
  ASSERT_TRUE(result);
  EXPECT_EQ(result->status, 413);
  EXPECT_NE(result->body.find("\"error\""), std::string::npos) << result->body;
  EXPECT_FALSE(called);
}

TEST(HttpServerTest, BindingAPortInUseIsUnavailable) {
  auto first = StartOrDie({});
  ASSERT_NE(first, nullptr);
  HttpServerOptions options;
  options.port = first->port();
  absl::StatusOr<std::unique_ptr<HttpServer>> second = HttpServer::Start(options, {});
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable) << second.status();

  options.host = "no-such-host.invalid";
  options.port = 0;
  EXPECT_EQ(HttpServer::Start(options, {}).status().code(), absl::StatusCode::kUnavailable);
}

TEST(HttpServerTest, StreamsChunks) {
  auto server = StartOrDie({Route("GET", "/events", [](const HttpRequest&) {
    HttpResponse response;
    response.content_type = "text/event-stream";
    response.stream = [](HttpChunkWriter& writer) {
      for (int i = 0; i < 3; ++i) {
        if (!writer.Write("data: " + std::to_string(i) + "\n\n")) return;
      }
      writer.Write("data: [DONE]\n\n");
    };
    return response;
  })});
  ASSERT_NE(server, nullptr);
  httplib::Client client("127.0.0.1", server->port());
  std::vector<std::string> pieces;
  auto result = client.Get("/events", [&](const char* data, size_t n) {
    pieces.emplace_back(data, n);
    return true;
  });
  ASSERT_TRUE(result);
  EXPECT_EQ(result->status, 200);
  EXPECT_EQ(result->get_header_value("Content-Type"), "text/event-stream");
  EXPECT_EQ(result->get_header_value("Transfer-Encoding"), "chunked");
  std::string all;
  for (const std::string& piece : pieces) all += piece;
  EXPECT_EQ(all, "data: 0\n\ndata: 1\n\ndata: 2\n\ndata: [DONE]\n\n");
}

// The stream sees the client hang up without writing (a generation between tokens must notice
// a dead client before its next token).
TEST(HttpServerTest, StreamNoticesClientDisconnect) {
  absl::Notification noticed;
  auto server = StartOrDie({Route("GET", "/events", [&noticed](const HttpRequest&) {
    HttpResponse response;
    response.content_type = "text/event-stream";
    response.stream = [&noticed](HttpChunkWriter& writer) {
      writer.Write("data: first\n\n");
      while (writer.Connected()) std::this_thread::sleep_for(std::chrono::milliseconds(5));
      noticed.Notify();
    };
    return response;
  })});
  ASSERT_NE(server, nullptr);
  RawClient client(server->port());
  ASSERT_TRUE(client.connected());
  client.Send("GET /events HTTP/1.1\r\nHost: localhost\r\n\r\n");
  EXPECT_NE(client.ReadUntil("data: first").find("data: first"), std::string::npos);
  client.Close();
  noticed.WaitForNotification();  // hangs (and the test times out) if the close goes unnoticed
}

TEST(HttpServerTest, StopEndsRunningStreams) {
  absl::Notification streaming;
  std::atomic<bool> stream_returned{false};
  auto server = StartOrDie({Route("GET", "/events", [&](const HttpRequest&) {
    HttpResponse response;
    response.content_type = "text/event-stream";
    response.stream = [&](HttpChunkWriter& writer) {
      writer.Write("data: first\n\n");
      streaming.Notify();
      while (writer.Connected()) std::this_thread::sleep_for(std::chrono::milliseconds(5));
      EXPECT_FALSE(writer.Write("data: late\n\n"));
      stream_returned = true;
    };
    return response;
  })});
  ASSERT_NE(server, nullptr);
  RawClient client(server->port());
  client.Send("GET /events HTTP/1.1\r\nHost: localhost\r\n\r\n");
  streaming.WaitForNotification();
  server->Stop();  // returns only once the stream has given up
  EXPECT_TRUE(stream_returned);
  server->Stop();  // idempotent
  EXPECT_FALSE(RawClient(server->port()).connected());
}

TEST(HttpServerTest, HandlersRunConcurrently) {
  constexpr int kClients = 4;
  std::mutex mu;
  std::condition_variable cv;
  int arrived = 0;
  HttpServerOptions options;
  options.threads = kClients;
  // Each request waits for all the others: served one at a time, this would never finish.
  auto server = StartOrDie({Route("GET", "/barrier",
                                  [&](const HttpRequest&) {
                                    std::unique_lock<std::mutex> lock(mu);
                                    ++arrived;
                                    cv.notify_all();
                                    cv.wait(lock, [&] { return arrived == kClients; });
                                    HttpResponse response;
                                    response.body = "ok";
                                    return response;
                                  })},
                           options);
  ASSERT_NE(server, nullptr);
  std::vector<std::thread> clients;
  std::atomic<int> ok{0};
  for (int i = 0; i < kClients; ++i) {
    clients.emplace_back([&] {
      httplib::Client client("127.0.0.1", server->port());
      auto result = client.Get("/barrier");
      if (result && result->status == 200 && result->body == "ok") ++ok;
    });
  }
  for (std::thread& thread : clients) thread.join();
  EXPECT_EQ(ok, kClients);
}

}  // namespace
}  // namespace memoria
