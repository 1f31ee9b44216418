#include "engine/tokenizer/tokenizer.h"

#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "engine/gguf/gguf_file.h"
#include "engine/gguf/gguf_writer.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/test_support.h"

namespace memoria {
namespace {

using ::testing::Each;
using ::testing::ElementsAre;
using ::testing::Lt;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Loads a tokenizer; the GgufFile is kept alive beside it for the test's duration.
struct Loaded {
  std::unique_ptr<GgufFile> file;
  std::unique_ptr<Tokenizer> tokenizer;
};

Loaded Load(const std::string& path) {
  Loaded loaded;
  absl::StatusOr<std::unique_ptr<GgufFile>> file = GgufFile::Open(path);
  EXPECT_TRUE(file.ok()) << file.status();
  if (!file.ok()) return loaded;
  loaded.file = *std::move(file);
  absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer = Tokenizer::FromGguf(*loaded.file);
  EXPECT_TRUE(tokenizer.ok()) << tokenizer.status();
  if (tokenizer.ok()) loaded.tokenizer = *std::move(tokenizer);
  return loaded;
}

// The test vectors llama.cpp's test-tokenizer-0 checks: .inp holds the texts separated by
// "\n__ggml_vocab_test__\n", .out one line of ids per text. Encoded with add_special=false,
// parse_special=false, as that test does.
void CheckVocabVectors(const std::string& vocab_name) {
  const std::string path = testing::VocabPath(vocab_name);
  const Loaded loaded = Load(path);
  ASSERT_NE(loaded.tokenizer, nullptr);

  const std::string raw = ReadFile(path + ".inp");
  const std::string separator = "\n__ggml_vocab_test__\n";
  std::vector<std::string> texts;
  for (size_t pos = 0; pos < raw.size();) {
    const size_t next = raw.find(separator, pos);
    if (next == std::string::npos) {
      texts.push_back(raw.substr(pos));
      break;
    }
    texts.push_back(raw.substr(pos, next - pos));
    pos = next + separator.size();
  }
  std::vector<std::vector<TokenId>> expected;
  std::istringstream out(ReadFile(path + ".out"));
  for (std::string line; std::getline(out, line);) {
    std::istringstream ids(line);
    std::vector<TokenId>& row = expected.emplace_back();
    for (TokenId id; ids >> id;) row.push_back(id);
  }
  ASSERT_EQ(texts.size(), expected.size());
  ASSERT_GT(texts.size(), 40u);
  for (size_t i = 0; i < texts.size(); ++i) {
    EXPECT_EQ(loaded.tokenizer->Encode(texts[i], /*add_special=*/false, /*parse_special=*/false),
              expected[i])
        << vocab_name << " vector " << i << ": '" << texts[i] << "'";
  }
}

TEST(TokenizerVocabTest, LlamaSpmMatchesLlamaCpp) {
  MEMORIA_REQUIRE_SHARED(path, "ggml-vocab-llama-spm.gguf");
  CheckVocabVectors("ggml-vocab-llama-spm.gguf");
}

TEST(TokenizerVocabTest, LlamaBpeMatchesLlamaCpp) {
  MEMORIA_REQUIRE_SHARED(path, "ggml-vocab-llama-bpe.gguf");
  CheckVocabVectors("ggml-vocab-llama-bpe.gguf");
}

TEST(TokenizerVocabTest, Gpt2MatchesLlamaCpp) {
  MEMORIA_REQUIRE_SHARED(path, "ggml-vocab-gpt-2.gguf");
  CheckVocabVectors("ggml-vocab-gpt-2.gguf");
}

const char* const kRoundTripTexts[] = {
    "Hello world",
    " leading space and trailing space ",
    "  two leading spaces",
    "tabs\tand\nnewlines\r\n\n  indented",
    "Äpfel, Birnen & Öl — 50 € / 3½ kg",
    "нещо на Български, Ελληνικά, עברית, العربية",
    "我想在apple工作1314151天～ 日本語のテキスト",
    "emoji 🦙🚀 😶‍🌫️ ✅ mixed",
    "code: for (int i = 0; i < n; ++i) { x += y[i]; }",
    "I'm sure they'll've DONE it's 'quoted' We'Ve",
    "3.14159 1,000,000 0x1F",
    "<|begin_of_text|> <s> look like special tokens but are plain text here",
    "\xF0\x9F\xA6\x99\xF0\x9F\xA6\x99\xF0\x9F\xA6\x99",
};

class TokenizerRoundTripTest : public ::testing::TestWithParam<const char*> {};

TEST_P(TokenizerRoundTripTest, DecodeInvertsEncode) {
  MEMORIA_REQUIRE_SHARED(path, GetParam());
  const Loaded loaded = Load(path);
  ASSERT_NE(loaded.tokenizer, nullptr);
  const Tokenizer& tok = *loaded.tokenizer;
  for (const char* text : kRoundTripTexts) {
    // SentencePiece turns "<s>" inside plain text into the control token (its merges reach it),
    // which does not decode without `special`; decode with it so the text comes back.
    const std::vector<TokenId> ids =
        tok.Encode(text, /*add_special=*/false, /*parse_special=*/false);
    EXPECT_EQ(tok.Decode(ids, /*special=*/true), text) << GetParam();
    // With BOS added, decoding without special tokens gives the same text.
    const std::vector<TokenId> with_bos =
        tok.Encode(text, /*add_special=*/true, /*parse_special=*/false);
    if (std::string(text).find("<s>") == std::string::npos) {
      EXPECT_EQ(tok.Decode(with_bos, /*special=*/false), text) << GetParam();
    }
  }
}

INSTANTIATE_TEST_SUITE_P(AllVocabs, TokenizerRoundTripTest,
                         ::testing::Values("ggml-vocab-llama-spm.gguf", "ggml-vocab-llama-bpe.gguf",
                                           "ggml-vocab-gpt-2.gguf"));

TEST(TokenizerSpecialTest, Llama3ChatTokensParsedOnlyWhenAsked) {
  MEMORIA_REQUIRE_SHARED(path, "ggml-vocab-llama-bpe.gguf");
  const Loaded loaded = Load(path);
  ASSERT_NE(loaded.tokenizer, nullptr);
  const Tokenizer& tok = *loaded.tokenizer;
  const std::string prompt = "<|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|>";

  const std::vector<TokenId> parsed =
      tok.Encode(prompt, /*add_special=*/true, /*parse_special=*/true);
  ASSERT_GE(parsed.size(), 6u);
  EXPECT_EQ(parsed.front(), 128000);  // BOS
  EXPECT_EQ(parsed[1], tok.FindToken("<|start_header_id|>"));
  EXPECT_EQ(parsed.back(), tok.FindToken("<|eot_id|>"));
  EXPECT_EQ(tok.Decode(parsed, /*special=*/true), "<|begin_of_text|>" + prompt);
  EXPECT_EQ(tok.Decode(parsed, /*special=*/false), "user\n\nHi!");

  const std::vector<TokenId> plain =
      tok.Encode(prompt, /*add_special=*/false, /*parse_special=*/false);
  EXPECT_THAT(plain, Each(Lt(128000)));
  EXPECT_EQ(tok.Decode(plain, /*special=*/false), prompt);
}

TEST(TokenizerSpecialTest, SpmSpecialTokensAndSpacePrefix) {
  MEMORIA_REQUIRE_SHARED(path, "ggml-vocab-llama-spm.gguf");
  const Loaded loaded = Load(path);
  ASSERT_NE(loaded.tokenizer, nullptr);
  const Tokenizer& tok = *loaded.tokenizer;
  // Text after a special token gets the SentencePiece space prefix, like the start of input.
  EXPECT_THAT(tok.Encode("<s>Hello</s>", false, true), ElementsAre(1, 15043, 2));
  EXPECT_THAT(tok.Encode("Hello", false, false), ElementsAre(15043));
  EXPECT_THAT(tok.Encode(" Hello", false, false), ElementsAre(29871, 15043));
}

TEST(TokenizerBosTest, AddSpecialFollowsVocabularyFlags) {
  MEMORIA_REQUIRE_SHARED(spm_path, "ggml-vocab-llama-spm.gguf");
  MEMORIA_REQUIRE_SHARED(bpe_path, "ggml-vocab-llama-bpe.gguf");
  MEMORIA_REQUIRE_SHARED(gpt2_path, "ggml-vocab-gpt-2.gguf");

  const Loaded spm = Load(spm_path);
  ASSERT_NE(spm.tokenizer, nullptr);
  EXPECT_EQ(spm.tokenizer->bos(), 1);
  EXPECT_EQ(spm.tokenizer->eos(), 2);
  EXPECT_TRUE(spm.tokenizer->add_bos());
  EXPECT_FALSE(spm.tokenizer->add_eos());
  EXPECT_THAT(spm.tokenizer->Encode("Hello", true, false), ElementsAre(1, 15043));
  EXPECT_THAT(spm.tokenizer->Encode("", true, false), ElementsAre(1));
  EXPECT_THAT(spm.tokenizer->Encode("", false, false), ::testing::IsEmpty());
  EXPECT_EQ(spm.tokenizer->Decode({1, 15043}, false), "Hello");
  EXPECT_EQ(spm.tokenizer->Decode({1, 15043}, true), "<s>Hello");

  // Llama 3 adds BOS by default (the file has no add_bos_token key).
  const Loaded bpe = Load(bpe_path);
  ASSERT_NE(bpe.tokenizer, nullptr);
  EXPECT_TRUE(bpe.tokenizer->add_bos());
  EXPECT_THAT(bpe.tokenizer->Encode("Hello", true, false), ElementsAre(128000, 9906));

  // GPT-2 does not.
  const Loaded gpt2 = Load(gpt2_path);
  ASSERT_NE(gpt2.tokenizer, nullptr);
  EXPECT_FALSE(gpt2.tokenizer->add_bos());
  EXPECT_EQ(gpt2.tokenizer->bos(), 50256);
  EXPECT_EQ(gpt2.tokenizer->Encode("Hello", true, false),
            gpt2.tokenizer->Encode("Hello", false, false));
}

TEST(TokenizerEndOfGenerationTest, KnowsEosAndEot) {
  MEMORIA_REQUIRE_SHARED(spm_path, "ggml-vocab-llama-spm.gguf");
  MEMORIA_REQUIRE_SHARED(bpe_path, "ggml-vocab-llama-bpe.gguf");
  MEMORIA_REQUIRE_SHARED(gpt2_path, "ggml-vocab-gpt-2.gguf");
  const Loaded spm = Load(spm_path);
  const Loaded bpe = Load(bpe_path);
  const Loaded gpt2 = Load(gpt2_path);
  ASSERT_NE(spm.tokenizer, nullptr);
  ASSERT_NE(bpe.tokenizer, nullptr);
  ASSERT_NE(gpt2.tokenizer, nullptr);

  EXPECT_TRUE(spm.tokenizer->IsEndOfGeneration(2));
  EXPECT_FALSE(spm.tokenizer->IsEndOfGeneration(1));
  EXPECT_FALSE(spm.tokenizer->IsEndOfGeneration(15043));

  EXPECT_TRUE(bpe.tokenizer->IsEndOfGeneration(128001));  // <|end_of_text|>
  EXPECT_TRUE(bpe.tokenizer->IsEndOfGeneration(128009));  // <|eot_id|>
  EXPECT_FALSE(bpe.tokenizer->IsEndOfGeneration(128000));
  EXPECT_FALSE(bpe.tokenizer->IsEndOfGeneration(128006));  // <|start_header_id|>

  EXPECT_TRUE(gpt2.tokenizer->IsEndOfGeneration(50256));
  EXPECT_FALSE(gpt2.tokenizer->IsEndOfGeneration(11));
}

TEST(TokenizerDecodeTest, ByteFallbackTokens) {
  MEMORIA_REQUIRE_SHARED(path, "ggml-vocab-llama-spm.gguf");
  const Loaded loaded = Load(path);
  ASSERT_NE(loaded.tokenizer, nullptr);
  const Tokenizer& tok = *loaded.tokenizer;
  // <0x41> is id 3 + 0x41.
  EXPECT_EQ(tok.TokenText(3 + 0x41), "<0x41>");
  EXPECT_EQ(tok.TokenToPiece(3 + 0x41, false), "A");
  EXPECT_EQ(tok.TokenToPiece(3 + 0x0A, false), "\n");
  // U+1F999 (🦙) is not in the vocabulary: four byte tokens.
  const std::vector<TokenId> llama = tok.Encode("\xF0\x9F\xA6\x99", false, false);
  EXPECT_THAT(llama, ElementsAre(29871, 243, 162, 169, 156));
  EXPECT_EQ(tok.Decode({243, 162, 169, 156}, false), "\xF0\x9F\xA6\x99");
  EXPECT_EQ(tok.Decode(llama, false), "\xF0\x9F\xA6\x99");
  // Control and unknown tokens only render with `special`.
  EXPECT_EQ(tok.TokenToPiece(0, false), "");
  EXPECT_EQ(tok.TokenToPiece(0, true), "<unk>");
  EXPECT_EQ(tok.TokenToPiece(-1, true), "");
  EXPECT_EQ(tok.TokenToPiece(tok.vocab_size(), true), "");
}

TEST(StreamingDecoderTest, HoldsBackSplitCharacters) {
  MEMORIA_REQUIRE_SHARED(path, "ggml-vocab-llama-spm.gguf");
  const Loaded loaded = Load(path);
  ASSERT_NE(loaded.tokenizer, nullptr);
  const Tokenizer& tok = *loaded.tokenizer;
  const std::string text = "this is \xF0\x9F\xA6\x99.cpp and Äpfel";
  const std::vector<TokenId> ids = tok.Encode(text, /*add_special=*/true, false);

  StreamingDecoder decoder(tok);
  std::string streamed;
  for (const TokenId id : ids) {
    const std::string delta = decoder.Push(id);
    // Every delta is whole characters: it never ends inside a multi-byte sequence.
    if (!delta.empty()) {
      const unsigned char last = delta.back();
      EXPECT_TRUE(last < 0x80 || (last & 0xC0) == 0x80) << "delta ends in a lead byte";
    }
    streamed += delta;
  }
  streamed += decoder.Flush();
  EXPECT_EQ(streamed, text);
  EXPECT_EQ(streamed, tok.Decode(ids, false));
}

TEST(StreamingDecoderTest, GeneratedTokensKeepTheirLeadingSpace) {
  MEMORIA_REQUIRE_SHARED(path, "ggml-vocab-llama-spm.gguf");
  const Loaded loaded = Load(path);
  ASSERT_NE(loaded.tokenizer, nullptr);
  // A continuation of a prompt: "\u2581Hello" (15043) is " Hello" when generated...
  StreamingDecoder continuation(*loaded.tokenizer);
  EXPECT_EQ(continuation.Push(15043), " Hello");
  EXPECT_EQ(continuation.Push(15043), " Hello");
  // ...but right after a leading BOS it is the start of the text, as Decode has it.
  StreamingDecoder whole(*loaded.tokenizer);
  EXPECT_EQ(whole.Push(1), "");
  EXPECT_EQ(whole.Push(15043), "Hello");
  EXPECT_EQ(whole.Push(15043), " Hello");
}

TEST(StreamingDecoderTest, EmitsCharacterOnlyWhenComplete) {
  MEMORIA_REQUIRE_SHARED(path, "ggml-vocab-gpt-2.gguf");
  const Loaded loaded = Load(path);
  ASSERT_NE(loaded.tokenizer, nullptr);
  const Tokenizer& tok = *loaded.tokenizer;
  // GPT-2 spells 🦙 with byte tokens: find them by their byte-level text.
  const std::vector<TokenId> ids = tok.Encode("\xF0\x9F\xA6\x99", false, false);
  ASSERT_GE(ids.size(), 2u);
  StreamingDecoder decoder(tok);
  for (size_t i = 0; i + 1 < ids.size(); ++i) EXPECT_EQ(decoder.Push(ids[i]), "");
  EXPECT_EQ(decoder.Push(ids.back()), "\xF0\x9F\xA6\x99");
  EXPECT_EQ(decoder.Flush(), "");

  // An unfinished character left at the end comes out of Flush as U+FFFD.
  StreamingDecoder truncated(tok);
  EXPECT_EQ(truncated.Push(ids[0]), "");
  EXPECT_EQ(truncated.Flush(), "\xEF\xBF\xBD");
}

// A small SentencePiece vocabulary written on the fly, for behaviour the real files lack.
std::string WriteTinySpm(const std::string& name, bool with_user_defined) {
  GgufWriter writer;
  std::vector<std::string> tokens = {"<unk>", "<s>", "</s>"};
  std::vector<float> scores = {0, 0, 0};
  std::vector<int32_t> types = {2, 3, 3};
  for (int b = 0; b < 256; ++b) {
    char hex[8];
    std::snprintf(hex, sizeof(hex), "<0x%02X>", b);
    tokens.push_back(hex);
    scores.push_back(0);
    types.push_back(6);
  }
  const std::vector<std::pair<std::string, float>> pieces = {{"\xE2\x96\x81", -1},
                                                             {"a", -2},
                                                             {"b", -2},
                                                             {"\xE2\x96\x81"
                                                              "a",
                                                              -3},
                                                             {"ab", -4},
                                                             {"\xE2\x96\x81"
                                                              "ab",
                                                              -5},
                                                             {"<|im_end|>", 0}};
  for (const auto& [text, score] : pieces) {
    tokens.push_back(text);
    scores.push_back(score);
    types.push_back(1);
  }
  if (with_user_defined) {
    tokens.push_back("<tool>");
    scores.push_back(0);
    types.push_back(4);
  }
  writer.SetString("tokenizer.ggml.model", "llama");
  writer.SetStringArray("tokenizer.ggml.tokens", tokens);
  writer.SetFloat32Array("tokenizer.ggml.scores", scores);
  writer.SetInt32Array("tokenizer.ggml.token_type", types);
  writer.SetBool("tokenizer.ggml.add_space_prefix", true);
  const std::string path = testing::TempDir("tokenizer") + "/" + name;
  EXPECT_TRUE(writer.WriteFile(path).ok());
  return path;
}

TEST(TokenizerSyntheticTest, UserDefinedTokensSplitEvenWithoutParseSpecial) {
  const Loaded loaded = Load(WriteTinySpm("user_defined.gguf", /*with_user_defined=*/true));
  ASSERT_NE(loaded.tokenizer, nullptr);
  const Tokenizer& tok = *loaded.tokenizer;
  const TokenId tool = tok.FindToken("<tool>");
  const TokenId space_ab = tok.FindToken(
      "\xE2\x96\x81"
      "ab");
  ASSERT_GE(tool, 0);
  ASSERT_GE(space_ab, 0);
  EXPECT_THAT(tok.Encode("ab<tool>ab", false, false), ElementsAre(space_ab, tool, space_ab));
  EXPECT_EQ(tok.Decode(tok.Encode("ab<tool>ab", false, false), false), "ab<tool> ab");
  // A character outside the vocabulary falls back to bytes.
  EXPECT_THAT(tok.Encode("\xC3\xA9", false, false),
              ElementsAre(tok.FindToken("\xE2\x96\x81"), 3 + 0xC3, 3 + 0xA9));
  // <|im_end|> is typed normal in the file but ends generation and acts as a control token.
  const TokenId im_end = tok.FindToken("<|im_end|>");
  EXPECT_TRUE(tok.IsEndOfGeneration(im_end));
  EXPECT_EQ(tok.TokenToPiece(im_end, false), "");
  EXPECT_THAT(tok.Encode("<|im_end|>", false, true), ElementsAre(im_end));
}

TEST(TokenizerSyntheticTest, RejectsBadMetadata) {
  GgufWriter writer;
  writer.SetString("tokenizer.ggml.model", "bert");
  writer.SetStringArray("tokenizer.ggml.tokens", {"a", "b"});
  const std::string dir = testing::TempDir("tokenizer_bad");
  ASSERT_TRUE(writer.WriteFile(dir + "/bert.gguf").ok());
  absl::StatusOr<std::unique_ptr<GgufFile>> file = GgufFile::Open(dir + "/bert.gguf");
  ASSERT_TRUE(file.ok());
  EXPECT_EQ(Tokenizer::FromGguf(**file).status().code(), absl::StatusCode::kInvalidArgument);

  GgufWriter no_merges;
  no_merges.SetString("tokenizer.ggml.model", "gpt2");
  no_merges.SetString("tokenizer.ggml.pre", "gpt-2");
  no_merges.SetStringArray("tokenizer.ggml.tokens", {"a", "b"});
  ASSERT_TRUE(no_merges.WriteFile(dir + "/no_merges.gguf").ok());
  file = GgufFile::Open(dir + "/no_merges.gguf");
  ASSERT_TRUE(file.ok());
  EXPECT_FALSE(Tokenizer::FromGguf(**file).ok());

  GgufWriter duplicate;
  duplicate.SetString("tokenizer.ggml.model", "llama");
  duplicate.SetStringArray("tokenizer.ggml.tokens", {"<unk>", "<s>", "</s>", "a", "a"});
  ASSERT_TRUE(duplicate.WriteFile(dir + "/duplicate.gguf").ok());
  file = GgufFile::Open(dir + "/duplicate.gguf");
  ASSERT_TRUE(file.ok());
  EXPECT_EQ(Tokenizer::FromGguf(**file).status().code(), absl::StatusCode::kInvalidArgument);

  GgufWriter missing_bos;
  missing_bos.SetString("tokenizer.ggml.model", "gpt2");
  missing_bos.SetString("tokenizer.ggml.pre", "gpt-2");
  missing_bos.SetStringArray("tokenizer.ggml.tokens", {"a", "b"});
  missing_bos.SetStringArray("tokenizer.ggml.merges", {"a b"});
  missing_bos.SetBool("tokenizer.ggml.add_bos_token", true);
  ASSERT_TRUE(missing_bos.WriteFile(dir + "/missing_bos.gguf").ok());
  file = GgufFile::Open(dir + "/missing_bos.gguf");
  ASSERT_TRUE(file.ok());
  EXPECT_EQ(Tokenizer::FromGguf(**file).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace memoria
