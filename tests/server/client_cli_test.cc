// The `memoria` CLI's server commands, run as a child process against a real memoria-server:
// what they print, and that failures exit non-zero with the gRPC code in the message.
#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/server/server_process.h"
#include "tests/test_support.h"

namespace memoria {
namespace {

namespace fs = std::filesystem;

struct CliResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string ShellQuote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

class ClientCliTest : public testing::ClientServerTest {
 protected:
  void SetUp() override {
    ClientServerTest::SetUp();
    if (IsSkipped()) return;
    dir_ = testing::TempDir(::testing::UnitTest::GetInstance()->current_test_info()->name());
  }

  // Runs `memoria COMMAND ARGS... --server SERVER` (default: the test server) with
  // MEMORIA_ADMIN_TOKEN unset.
  CliResult Run(const std::string& command, const std::vector<std::string>& args,
                std::string server = "") {
    if (server.empty()) server = server_->grpc_target();
    std::string line = "env -u MEMORIA_ADMIN_TOKEN " + ShellQuote(testing::CliPath()) + " " +
                       command;
    for (const std::string& a : args) line += " " + ShellQuote(a);
    line += " --server " + ShellQuote(server);
    const std::string out = dir_ + "/stdout", err = dir_ + "/stderr";
    line += " >" + ShellQuote(out) + " 2>" + ShellQuote(err) + " </dev/null";
    const int status = std::system(line.c_str());
    CliResult r;
    r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    r.out = ReadAll(out);
    r.err = ReadAll(err);
    return r;
  }

  void WriteFile(const std::string& relative, const std::string& text) {
    fs::path p = fs::path(dir_) / "docs" / relative;
    fs::create_directories(p.parent_path());
    std::ofstream(p) << text;
  }
  std::string DocsDir() const { return dir_ + "/docs"; }

  std::string dir_;
};

TEST_F(ClientCliTest, IngestDirectoryNamesDocumentsByRelativePath) {
  WriteFile("ada.txt", "Ada Lovelace wrote the first program.");
  WriteFile("people/grace.txt", "Grace Hopper built the first compiler.");
  WriteFile(".hidden.txt", "Hidden files are skipped.");
  CliResult r = Run("ingest", {DocsDir(), "--collection", "cli_dir", "--token", kToken});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("ok      ada.txt"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("ok      people/grace.txt"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("hidden"), std::string::npos) << r.out;
  EXPECT_NE(r.err.find("ingested 2 documents"), std::string::npos) << r.err;

  CliResult list = Run("list", {"--collection", "cli_dir", "--token", kToken});
  ASSERT_EQ(list.exit_code, 0) << list.err;
  EXPECT_NE(list.out.find("ada.txt"), std::string::npos) << list.out;
  EXPECT_NE(list.out.find("people/grace.txt"), std::string::npos) << list.out;
  EXPECT_NE(list.err.find("2 documents"), std::string::npos) << list.err;

  CliResult get = Run("get", {"people/grace.txt", "--token", kToken});
  ASSERT_EQ(get.exit_code, 0) << get.err;
  EXPECT_NE(get.out.find("collection: cli_dir"), std::string::npos) << get.out;
}

TEST_F(ClientCliTest, IngestFileUsesItsNameOrTheGivenId) {
  WriteFile("notes/single.txt", "One file on its own.");
  CliResult by_name = Run("ingest", {DocsDir() + "/notes/single.txt", "--token", kToken});
  ASSERT_EQ(by_name.exit_code, 0) << by_name.out << by_name.err;
  EXPECT_NE(by_name.out.find("ok      single.txt"), std::string::npos) << by_name.out;

  CliResult by_id =
      Run("ingest", {DocsDir() + "/notes/single.txt", "--id", "custom-id", "--token", kToken});
  ASSERT_EQ(by_id.exit_code, 0) << by_id.out << by_id.err;
  EXPECT_NE(by_id.out.find("ok      custom-id"), std::string::npos) << by_id.out;

  WriteFile("notes/other.txt", "Another.");
  CliResult two_with_id = Run("ingest", {DocsDir() + "/notes", "--id", "x", "--token", kToken});
  EXPECT_EQ(two_with_id.exit_code, 1);
  EXPECT_NE(two_with_id.err.find("--id needs exactly one file"), std::string::npos)
      << two_with_id.err;
}

TEST_F(ClientCliTest, AdminCommandsWithoutTokenFailUnauthenticated) {
  WriteFile("a.txt", "text");
  CliResult ingest = Run("ingest", {DocsDir()});
  EXPECT_EQ(ingest.exit_code, 1);
  EXPECT_NE(ingest.out.find("FAILED  a.txt  UNAUTHENTICATED"), std::string::npos) << ingest.out;
  EXPECT_NE(ingest.err.find("memoria ingest: UNAUTHENTICATED"), std::string::npos) << ingest.err;

  CliResult stats = Run("stats", {});
  EXPECT_EQ(stats.exit_code, 1);
  EXPECT_NE(stats.err.find("memoria stats: UNAUTHENTICATED"), std::string::npos) << stats.err;
}

TEST_F(ClientCliTest, GenerateStreamsTextAndCitesTheDocument) {
  WriteFile("memory.txt", "Explicit memory stores documents as sparse key-value pairs.");
  ASSERT_EQ(Run("ingest", {DocsDir(), "--collection", "cli_gen", "--token", kToken}).exit_code,
            0);
  CliResult r = Run("generate", {"--prompt", "What is explicit memory?", "-n", "8",
                                 "--ignore-eos", "--collection", "cli_gen"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("\ncitations:\n  [memory.txt] score "), std::string::npos) << r.out;
  EXPECT_NE(r.err.find("finish: length; prompt "), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("completion 8 tokens"), std::string::npos) << r.err;

  CliResult no_memory = Run("generate", {"--prompt", "Hi", "-n", "4", "--no-memory"});
  ASSERT_EQ(no_memory.exit_code, 0) << no_memory.err;
  EXPECT_EQ(no_memory.out.find("citations:"), std::string::npos) << no_memory.out;
}

TEST_F(ClientCliTest, GenerateJsonPrintsOneMessagePerLine) {
  CliResult r = Run("generate", {"--prompt", "Hi", "-n", "3", "--ignore-eos", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::vector<std::string> lines;
  std::istringstream in(r.out);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  ASSERT_GE(lines.size(), 2u) << r.out;
  for (const std::string& line : lines) {
    EXPECT_EQ(line.front(), '{') << line;
    EXPECT_EQ(line.back(), '}') << line;
  }
  EXPECT_NE(lines.front().find("\"requestId\""), std::string::npos) << lines.front();
  EXPECT_NE(lines.back().find("\"finished\""), std::string::npos) << lines.back();
  EXPECT_NE(lines.back().find("\"completionTokens\":3"), std::string::npos) << lines.back();
}

TEST_F(ClientCliTest, GenerateBadRequestExitsNonZeroWithTheCode) {
  CliResult r = Run("generate", {"--prompt", "Hi", "--top-p", "7"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("memoria generate: INVALID_ARGUMENT: Generate: "), std::string::npos)
      << r.err;
}

TEST_F(ClientCliTest, DeleteThenDeleteAgainIsNotFound) {
  WriteFile("gone.txt", "Soon deleted.");
  ASSERT_EQ(Run("ingest", {DocsDir(), "--token", kToken}).exit_code, 0);
  CliResult first = Run("delete", {"gone.txt", "--token", kToken});
  ASSERT_EQ(first.exit_code, 0) << first.err;
  EXPECT_EQ(first.out, "deleted gone.txt\n");
  CliResult second = Run("delete", {"gone.txt", "--token", kToken});
  EXPECT_EQ(second.exit_code, 1);
  EXPECT_NE(second.err.find("memoria delete: NOT_FOUND"), std::string::npos) << second.err;
}

TEST_F(ClientCliTest, StatsAndHealth) {
  CliResult stats = Run("stats", {"--token", kToken});
  ASSERT_EQ(stats.exit_code, 0) << stats.err;
  EXPECT_NE(stats.out.find("documents: "), std::string::npos) << stats.out;
  EXPECT_NE(stats.out.find("codec: "), std::string::npos) << stats.out;

  CliResult health = Run("health", {});
  EXPECT_EQ(health.exit_code, 0) << health.err;
  EXPECT_EQ(health.out, "SERVING\n");
  CliResult service = Run("health", {"--service", "memoria.v1.Generation"});
  EXPECT_EQ(service.exit_code, 0) << service.err;
  CliResult unknown = Run("health", {"--service", "no.such.Service"});
  EXPECT_EQ(unknown.exit_code, 1);
  EXPECT_NE(unknown.err.find("NOT_FOUND"), std::string::npos) << unknown.err;
}

TEST_F(ClientCliTest, UnreachableServerFailsUnavailable) {
  // Port 1 on loopback: nothing listens there, so the connection is refused at once.
  CliResult r = Run("stats", {"--timeout", "10"}, "127.0.0.1:1");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("memoria stats: UNAVAILABLE"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace memoria
