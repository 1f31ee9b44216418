#include "tests/server/server_process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "tests/model/model_test_util.h"
#include "tests/test_support.h"

namespace memoria::testing {
namespace {

// "grpc=127.0.0.1:PORT" -> PORT
int PortAfter(const std::string& line, const std::string& key) {
  const size_t at = line.find(key + "=");
  if (at == std::string::npos) return 0;
  const size_t colon = line.find(':', at);
  const size_t end = line.find_first_of(" \n", colon);
  int port = 0;
  if (!absl::SimpleAtoi(line.substr(colon + 1, end - colon - 1), &port)) return 0;
  return port;
}

}  // namespace

std::string ServerPath() { return MEMORIA_SERVER_PATH; }

std::string ClientTestModel() {
  RandomModelOptions o;
  o.n_layers = 2;
  o.n_embd = 64;
  o.n_ff = 128;
  o.tied_embeddings = true;
  return SmallModel("client_llama", "ggml-vocab-llama-spm.gguf", o);
}

absl::StatusOr<std::unique_ptr<ServerProcess>> ServerProcess::Start(
    const std::vector<std::string>& args, bool wait_ready) {
  std::unique_ptr<ServerProcess> p(new ServerProcess());
  p->log_path_ = TempDir("server-log") + "/stderr.log";
  int out[2];
  if (pipe(out) != 0) return absl::InternalError("pipe failed");
  std::vector<std::string> argv = {ServerPath(), "--host", "127.0.0.1", "--grpc-port", "0",
                                   "--http-port", "0"};
  argv.insert(argv.end(), args.begin(), args.end());
  const pid_t pid = fork();
  if (pid < 0) return absl::InternalError("fork failed");
  if (pid == 0) {
    dup2(out[1], STDOUT_FILENO);
    const int err = open(p->log_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (err >= 0) dup2(err, STDERR_FILENO);
    close(out[0]);
    close(out[1]);
    std::vector<char*> c_args;
    for (std::string& a : argv) c_args.push_back(a.data());
    c_args.push_back(nullptr);
    execv(c_args[0], c_args.data());
    _exit(127);
  }
  close(out[1]);
  p->pid_ = pid;
  p->stdout_fd_ = out[0];
  if (wait_ready) {
    if (absl::Status s = p->WaitReady(); !s.ok()) return s;
  } else {
    std::string line;
    if (!p->ReadLineStartingWith("memoria-server: listening", &line)) {
      return absl::UnavailableError(absl::StrCat("memoria-server did not listen; log:\n", p->Log()));
    }
    p->grpc_port_ = PortAfter(line, "grpc");
  }
  return p;
}

absl::Status ServerProcess::WaitReady() {
  std::string line;
  if (!ReadLineStartingWith("memoria-server: ready", &line)) {
    return absl::UnavailableError(absl::StrCat("memoria-server did not become ready; log:\n", Log()));
  }
  grpc_port_ = PortAfter(line, "grpc");
  http_port_ = PortAfter(line, "http");
  return absl::OkStatus();
}

bool ServerProcess::ReadLineStartingWith(const std::string& prefix, std::string* line) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  for (;;) {
    size_t nl;
    while ((nl = buffer_.find('\n')) != std::string::npos) {
      *line = buffer_.substr(0, nl);
      buffer_.erase(0, nl + 1);
      if (line->rfind(prefix, 0) == 0) return true;
    }
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    pollfd pfd{stdout_fd_, POLLIN, 0};
    if (poll(&pfd, 1, static_cast<int>(left.count())) <= 0) return false;
    char chunk[4096];
    const ssize_t n = read(stdout_fd_, chunk, sizeof chunk);
    if (n <= 0) return false;
    buffer_.append(chunk, static_cast<size_t>(n));
  }
}

std::string ServerProcess::grpc_target() const { return absl::StrCat("127.0.0.1:", grpc_port_); }

int ServerProcess::Terminate() {
  if (pid_ < 0) return 0;
  kill(pid_, SIGTERM);
  int status = 0;
  waitpid(pid_, &status, 0);
  pid_ = -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
}

void ServerProcess::Kill() {
  if (pid_ < 0) return;
  kill(pid_, SIGKILL);
  waitpid(pid_, nullptr, 0);
  pid_ = -1;
}

bool ServerProcess::Running() {
  if (pid_ < 0) return false;
  int status = 0;
  if (waitpid(pid_, &status, WNOHANG) == pid_) {
    pid_ = -1;
    return false;
  }
  return true;
}

std::string ServerProcess::Log() const {
  std::ifstream in(log_path_);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

ServerProcess::~ServerProcess() {
  Kill();
  if (stdout_fd_ >= 0) close(stdout_fd_);
}

ServerProcess* ClientServerTest::server_ = nullptr;

void ClientServerTest::SetUpTestSuite() {
  const std::string model = ClientTestModel();
  if (model.empty()) return;
  const std::string suite = ::testing::UnitTest::GetInstance()->current_test_suite()->name();
  absl::StatusOr<std::unique_ptr<ServerProcess>> server = ServerProcess::Start(
      {"--model", model, "--store", TempDir(suite + "_store"), "--admin-token", kToken});
  ASSERT_TRUE(server.ok()) << server.status();
  server_ = server->release();
}

void ClientServerTest::TearDownTestSuite() {
  delete server_;
  server_ = nullptr;
}

void ClientServerTest::SetUp() {
  if (server_ == nullptr) GTEST_SKIP() << "../shared/vocab not found (or the server failed); skipping";
}

}  // namespace memoria::testing
