// client/python/memoria_example.py against a real memoria-server: it must ingest its document,
// stream a completion and print the document among the citations. Skips, saying why, when
// Debian's python3-grpcio / python3-protobuf or protoc's Python gRPC plugin are missing.
#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>

#include "gtest/gtest.h"
#include "tests/server/server_process.h"
#include "tests/test_support.h"

namespace memoria {
namespace {

namespace fs = std::filesystem;

// Debian's interpreter: python3-grpcio installs there, not into a pyenv or venv found on PATH.
constexpr char kPython[] = "/usr/bin/python3";

int Shell(const std::string& line) {
  const int status = std::system(line.c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

class PythonExampleTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (Shell(std::string(kPython) + " -c 'import grpc, google.protobuf' 2>/dev/null") != 0) {
      GTEST_SKIP() << kPython << " cannot import grpc and google.protobuf "
                   << "(apt-get install python3-grpcio python3-protobuf); skipping";
    }
    if (Shell("command -v protoc grpc_python_plugin >/dev/null") != 0) {
      GTEST_SKIP() << "protoc or grpc_python_plugin not on PATH "
                   << "(apt-get install protobuf-compiler protobuf-compiler-grpc); skipping";
    }
    const std::string model = testing::ClientTestModel();
    if (model.empty()) GTEST_SKIP() << "../shared/vocab not found; skipping";
    dir_ = testing::TempDir(::testing::UnitTest::GetInstance()->current_test_info()->name());
    absl::StatusOr<std::unique_ptr<testing::ServerProcess>> server =
        testing::ServerProcess::Start(
            {"--model", model, "--store", dir_ + "/store", "--admin-token", "py-token"});
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
  }

  // Runs the example with `flags`, MEMORIA_ADMIN_TOKEN unset; its exit code, output in out_/err_.
  int RunExample(const std::string& flags) {
    // tests/server/ -> the repository root.
    const fs::path script = fs::path(__FILE__).parent_path().parent_path().parent_path() /
                            "client" / "python" / "memoria_example.py";
    const std::string out = dir_ + "/stdout", err = dir_ + "/stderr";
    const int code = Shell("env -u MEMORIA_ADMIN_TOKEN " + std::string(kPython) + " '" +
                           script.string() + "' --server " + server_->grpc_target() + " " +
                           flags + " >'" + out + "' 2>'" + err + "'");
    out_ = ReadAll(out);
    err_ = ReadAll(err);
    return code;
  }

  std::string dir_;
  std::unique_ptr<testing::ServerProcess> server_;
  std::string out_, err_;
};

TEST_F(PythonExampleTest, IngestsGeneratesAndPrintsCitations) {
  ASSERT_EQ(RunExample("--token py-token --document-id py-doc --max-tokens 6"), 0)
      << out_ << err_;
  EXPECT_NE(err_.find("ingested py-doc: "), std::string::npos) << err_;
  EXPECT_NE(out_.find("citations:\n"), std::string::npos) << out_;
  EXPECT_NE(out_.find("  [py-doc] score "), std::string::npos) << out_;
  EXPECT_NE(err_.find("finish: FINISH_REASON_"), std::string::npos) << err_;
}

TEST_F(PythonExampleTest, MissingTokenExitsNonZeroWithTheCode) {
  EXPECT_EQ(RunExample("--max-tokens 4"), 1) << out_ << err_;
  EXPECT_NE(err_.find("memoria_example: UNAUTHENTICATED"), std::string::npos) << err_;
}

}  // namespace
}  // namespace memoria
