#include <string>
#include <vector>

#include "engine/tokenizer/pre_tokenizer.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace memoria {
namespace {

using ::testing::ElementsAre;

std::vector<std::string> Split(std::string_view name, std::string_view text) {
  absl::StatusOr<PreTokenizer> pre = PreTokenizer::ForName(name);
  EXPECT_TRUE(pre.ok()) << pre.status();
  return pre.ok() ? pre->Split(text) : std::vector<std::string>{};
}

// Expected splits come from running llama.cpp's regexes with a real regex engine.

TEST(PreTokenizerTest, Gpt2) {
  EXPECT_THAT(Split("gpt-2", "Hello world's  end\n"),
              ElementsAre("Hello", " world", "'s", " ", " end", "\n"));
  // Contractions are case-sensitive; a space run gives its last space to the next word.
  EXPECT_THAT(Split("gpt-2", "I'M 3.14 ok?!  "),
              ElementsAre("I", "'", "M", " 3", ".", "14", " ok", "?!", "  "));
  // Only a plain space is taken as a word's leading space, not a tab or NBSP.
  EXPECT_THAT(Split("gpt-2", "\t tab\u00a0nbsp"), ElementsAre("\t", " tab", "\u00a0", "nbsp"));
}

TEST(PreTokenizerTest, Llama3) {
  EXPECT_THAT(Split("llama-bpe", "I'VE 12345 apples!!\n\n  x"),
              ElementsAre("I", "'VE", " ", "123", "45", " apples", "!!\n\n", " ", " x"));
  EXPECT_THAT(Split("llama3", "Hello, y'all! \xF0\x9F\x98\x81 ?\xE6\x88\x91\xE6\x83\xB3"),
              ElementsAre("Hello", ",", " y", "'all", "!", " \xF0\x9F\x98\x81", " ?",
                          "\xE6\x88\x91\xE6\x83\xB3"));
  EXPECT_THAT(Split("llama3", "  \n\n  end"), ElementsAre("  \n\n", " ", " end"));
}

TEST(PreTokenizerTest, Qwen2SplitsDigitsOneByOne) {
  EXPECT_THAT(Split("qwen2", "abc 12345"), ElementsAre("abc", " ", "1", "2", "3", "4", "5"));
  EXPECT_THAT(Split("qwen2", "x\r\n\r\ny"), ElementsAre("x", "\r\n\r\n", "y"));
}

TEST(PreTokenizerTest, Falcon) {
  EXPECT_THAT(Split("falcon", "a+b=3141592 (ok)"),
              ElementsAre("a", "+", "b", "=", "314", "159", "2", " ", "(", "ok", ")"));
  EXPECT_THAT(Split("falcon", "don't `x`"), ElementsAre("don", "'", "t", " ", "`", "x", "`"));
}

TEST(PreTokenizerTest, Default) {
  EXPECT_THAT(Split("default", "x=12345;"), ElementsAre("x", "=", "123", "45", ";"));
  EXPECT_THAT(Split("default", "a, b"), ElementsAre("a", ",", " b"));
}

TEST(PreTokenizerTest, DeepseekLlm) {
  // Each regex re-splits the pieces of the one before: the punctuation class covers a-z too, so
  // it cuts "mega" away from the Greek letter.
  EXPECT_THAT(Split("deepseek-llm", "Hello, \xE4\xB8\x96\xE7\x95\x8C 123 \xCE\xA9mega  "),
              ElementsAre("Hello", ",", " ", "\xE4\xB8\x96\xE7\x95\x8C", " ", "123", " \xCE\xA9",
                          "mega", "  "));
  EXPECT_THAT(Split("deepseek-llm", "line1\nline2"), ElementsAre("line", "1", "\n", "line", "2"));
}

TEST(PreTokenizerTest, DeepseekCoderAndStarcoder) {
  EXPECT_THAT(Split("deepseek-coder", "def f(x): return 42"),
              ElementsAre("def", " f", "(", "x", "):", " return", " ", "4", "2"));
  EXPECT_THAT(Split("starcoder", "v1.25 is"), ElementsAre("v", "1", ".", "2", "5", " is"));
  EXPECT_THAT(Split("starcoder", "x = 100"), ElementsAre("x", " =", " ", "1", "0", "0"));
}

TEST(PreTokenizerTest, InvalidUtf8BecomesReplacementCharacter) {
  EXPECT_THAT(Split("gpt-2",
                    "a\xFF"
                    "b"),
              ElementsAre("a", "\xEF\xBF\xBD", "b"));
  EXPECT_THAT(Split("llama3", "\xE2\x82"), ElementsAre("\xEF\xBF\xBD\xEF\xBF\xBD"));
}

TEST(PreTokenizerTest, EmptyTextHasNoWords) { EXPECT_TRUE(Split("llama3", "").empty()); }

TEST(PreTokenizerTest, LongInputsAreLinear) {
  // Long whitespace runs: a matcher retried at every start of the run would be quadratic.
  const std::string text = std::string(200000, ' ') + "x" + std::string(200000, '\n');
  for (const char* name : {"gpt-2", "llama3", "qwen2", "deepseek-llm", "falcon", "default"}) {
    size_t total = 0;
    for (const std::string& word : Split(name, text)) total += word.size();
    EXPECT_EQ(total, text.size()) << name;
  }
}

TEST(PreTokenizerTest, UnknownNameIsAnError) {
  EXPECT_EQ(PreTokenizer::ForName("no-such-pre").status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace memoria
