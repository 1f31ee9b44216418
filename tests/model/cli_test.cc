// The memoria tool end to end: make-model, tokenize, run (ids, logits dump, chat), errors.
#include <cstdio>
#include <cstdint>
#include <fstream>
#include <string>

#include <sys/wait.h>

#include "gtest/gtest.h"
#include "tests/test_support.h"

namespace memoria::testing {
namespace {

struct Result {
  int status = -1;
  std::string output;  // stdout and stderr
};

Result RunCli(const std::string& args) {
  Result r;
  std::string cmd = CliPath() + " " + args + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.output.append(buf, n);
  r.status = pclose(p);
  return r;
}

class CliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    vocab_ = VocabPath("ggml-vocab-llama-bpe.gguf");
    if (vocab_.empty()) GTEST_SKIP() << "../shared/vocab not found; skipping";
    dir_ = TempDir("cli");
    model_ = dir_ + "/m.gguf";
    Result r = RunCli("make-model --vocab " + vocab_ +
                      " --arch qwen2 --layers 2 --dim 64 --heads 4 --kv-heads 2 --ff 128 --type q8_0 -o " +
                      model_);
    ASSERT_EQ(r.status, 0) << r.output;
  }
  std::string vocab_, dir_, model_;
};

TEST_F(CliTest, TokenizePrintsIds) {
  Result r = RunCli("tokenize --model " + model_ + " --text 'Hello world'");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(r.output, "128000 9906 1917\n");  // BOS, "Hello", " world" in the Llama 3 vocabulary
}

TEST_F(CliTest, RunPrintsIdsAndDumpsLogits) {
  const std::string logits = dir_ + "/logits.f32";
  Result r = RunCli("run --model " + model_ + " --prompt 'Hello world' -n 8 --print-ids --dump-logits " + logits);
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("prompt: 128000 9906 1917\n"), std::string::npos) << r.output;
  size_t gen = r.output.find("gen:");
  ASSERT_NE(gen, std::string::npos) << r.output;
  int count = 0;
  for (size_t i = gen + 4; i < r.output.size() && r.output[i] != '\n'; ++i) {
    if (r.output[i] == ' ') ++count;
  }
  EXPECT_GE(count, 1);
  std::ifstream f(logits, std::ios::binary | std::ios::ate);
  EXPECT_EQ(static_cast<int64_t>(f.tellg()), 128256 * 4);  // vocab-size float32 values
  // Greedy is deterministic: the same command prints the same ids.
  Result again = RunCli("run --model " + model_ + " --prompt 'Hello world' -n 8 --print-ids");
  EXPECT_EQ(again.output.substr(gen, again.output.find('\n', gen) - gen),
            r.output.substr(gen, r.output.find('\n', gen) - gen));
}

TEST_F(CliTest, RunStreamsTextWithSampling) {
  Result r = RunCli("run --model " + model_ + " --prompt 'Once upon a time' -n 12 --temp 0.8 --top-k 40 --top-p 0.9 --seed 5");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("generated"), std::string::npos) << r.output;
}

TEST_F(CliTest, BadInputGivesClearErrors) {
  Result r = RunCli("run --model " + dir_ + "/missing.gguf --prompt hi");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("missing.gguf"), std::string::npos) << r.output;
  r = RunCli("run --model " + model_ + " --prompt hi --temp -1");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("temperature"), std::string::npos) << r.output;
  r = RunCli("run --model " + model_ + " --prompt hi -n x");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("-n"), std::string::npos) << r.output;
  r = RunCli("run --model " + model_ + " --prompt hi --chat");  // random model: no chat template
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("chat_template"), std::string::npos) << r.output;
  r = RunCli("frobnicate");
  EXPECT_EQ(WEXITSTATUS(r.status), 2);
  r = RunCli("make-model --vocab " + vocab_ + " --heads 3 --dim 64 -o " + dir_ + "/bad.gguf");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("head"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace memoria::testing
