#ifndef MEMORIA_TESTS_SERVER_SERVER_PROCESS_H_
#define MEMORIA_TESTS_SERVER_SERVER_PROCESS_H_

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "gtest/gtest.h"

namespace memoria::testing {

// A real memoria-server child process on 127.0.0.1 with ephemeral ports. Start returns once the
// server printed its ready line (or failed); the destructor kills it if it still runs. Its
// stderr (structured logs) goes to a file, printed when a test wants to see it.
class ServerProcess {
 public:
  // `args` are passed after --host 127.0.0.1 --grpc-port 0 --http-port 0.
  static absl::StatusOr<std::unique_ptr<ServerProcess>> Start(const std::vector<std::string>& args,
                                                              bool wait_ready = true);
  ~ServerProcess();

  // Waits for the ready line (Start with wait_ready = false returns after "listening").
  absl::Status WaitReady();
  int grpc_port() const { return grpc_port_; }
  int http_port() const { return http_port_; }
  std::string grpc_target() const;
  pid_t pid() const { return pid_; }
  // SIGTERM, then waits; the exit status (or -signal).
  int Terminate();
  void Kill();  // SIGKILL and reap
  bool Running();
  std::string Log() const;  // stderr so far

 private:
  ServerProcess() = default;
  // Reads stdout lines until one starts with `prefix`; false at EOF or after 120 s.
  bool ReadLineStartingWith(const std::string& prefix, std::string* line);

  pid_t pid_ = -1;
  int stdout_fd_ = -1;
  std::string buffer_;
  std::string log_path_;
  int grpc_port_ = 0;
  int http_port_ = 0;
};

// Path of the memoria-server binary built with the tests.
std::string ServerPath();

// The small random model the client tests serve (llama-spm vocabulary, 2 layers, 64 dims, tied
// embeddings: an 8 MiB file, written once per test process); "" when ../shared is absent.
std::string ClientTestModel();

// A test suite that shares one memoria-server on ClientTestModel(), with a temp store and the
// admin token kToken; each test skips when ../shared is absent.
class ClientServerTest : public ::testing::Test {
 protected:
  static constexpr char kToken[] = "client-test-token";
  static void SetUpTestSuite();
  static void TearDownTestSuite();
  void SetUp() override;

  static ServerProcess* server_;
};

}  // namespace memoria::testing

#endif  // MEMORIA_TESTS_SERVER_SERVER_PROCESS_H_
