#include "engine/model/random_model.h"

#include <cmath>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <memory>
#include <numbers>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "engine/gguf/gguf_file.h"
#include "engine/quant/quant.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/test_support.h"

namespace memoria {
namespace {

using ::testing::HasSubstr;

constexpr int64_t kSpmVocab = 32000;  // tokens in ggml-vocab-llama-spm.gguf

RandomModelOptions SmallOptions(const std::string& vocab, const std::string& arch, GgmlType type) {
  RandomModelOptions o;
  o.vocab_path = vocab;
  o.arch = arch;
  o.n_layers = 2;
  o.n_embd = 64;
  o.n_heads = 4;
  o.n_kv_heads = 2;
  o.n_ff = 128;
  o.context_length = 2048;
  o.type = type;
  return o;
}

std::unique_ptr<GgufFile> WriteAndOpen(const RandomModelOptions& o, const std::string& path) {
  absl::Status s = WriteRandomModel(o, path);
  EXPECT_TRUE(s.ok()) << s;
  if (!s.ok()) return nullptr;
  absl::StatusOr<std::unique_ptr<GgufFile>> f = GgufFile::Open(path);
  EXPECT_TRUE(f.ok()) << f.status();
  return f.ok() ? std::move(*f) : nullptr;
}

std::string ReadBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

std::vector<float> Dequantize(const GgufTensorInfo& t) {
  const int64_t row_len = t.dims[0];
  const size_t row_bytes = GgmlRowBytes(t.type, row_len);
  std::vector<float> out(t.NumElements());
  for (int64_t r = 0; r < t.Rows(); ++r) {
    DequantizeRow(t.type, t.data + r * row_bytes, out.data() + r * row_len, row_len);
  }
  return out;
}

void MeanStd(const std::vector<float>& v, double* mean, double* std) {
  double s = 0, ss = 0;
  for (float x : v) s += x;
  *mean = s / v.size();
  for (float x : v) ss += (x - *mean) * (x - *mean);
  *std = std::sqrt(ss / v.size());
}

// Expected tensors of a model: name -> dims (the types are checked separately).
std::map<std::string, std::vector<int64_t>> ExpectedShapes(const RandomModelOptions& o) {
  const int64_t hd = o.n_embd / o.n_heads, q = o.n_heads * hd, kv = o.n_kv_heads * hd;
  std::map<std::string, std::vector<int64_t>> m;
  m["token_embd.weight"] = {o.n_embd, kSpmVocab};
  m["output_norm.weight"] = {o.n_embd};
  if (!o.tied_embeddings) m["output.weight"] = {o.n_embd, kSpmVocab};
  if (o.rope_freqs) m["rope_freqs.weight"] = {hd / 2};
  for (int l = 0; l < o.n_layers; ++l) {
    const std::string p = absl::StrCat("blk.", l, ".");
    m[p + "attn_norm.weight"] = {o.n_embd};
    m[p + "attn_q.weight"] = {o.n_embd, q};
    m[p + "attn_k.weight"] = {o.n_embd, kv};
    m[p + "attn_v.weight"] = {o.n_embd, kv};
    if (o.arch == "qwen2") {
      m[p + "attn_q.bias"] = {q};
      m[p + "attn_k.bias"] = {kv};
      m[p + "attn_v.bias"] = {kv};
    }
    m[p + "attn_output.weight"] = {q, o.n_embd};
    m[p + "ffn_norm.weight"] = {o.n_embd};
    m[p + "ffn_gate.weight"] = {o.n_embd, o.n_ff};
    m[p + "ffn_up.weight"] = {o.n_embd, o.n_ff};
    m[p + "ffn_down.weight"] = {o.n_ff, o.n_embd};
  }
  return m;
}

void ExpectShapes(const GgufFile& f, const RandomModelOptions& o) {
  std::map<std::string, std::vector<int64_t>> want = ExpectedShapes(o);
  std::map<std::string, std::vector<int64_t>> got;
  for (const GgufTensorInfo& t : f.tensors()) got[t.name] = t.dims;
  EXPECT_EQ(got, want);
  for (const GgufTensorInfo& t : f.tensors()) {
    if (t.dims.size() == 1) {
      EXPECT_EQ(t.type, GgmlType::kF32) << t.name;
    }
  }
}

struct TypeCase {
  const char* name;
  GgmlType type;
  uint32_t file_type;  // llama.cpp's LLAMA_FTYPE
  bool mixed_q4_k_m = false;
};

class RandomModelTypeTest
    : public ::testing::TestWithParam<std::tuple<std::string, TypeCase>> {};

TEST_P(RandomModelTypeTest, WritesLlamaCppMetadataAndTensors) {
  MEMORIA_REQUIRE_SHARED(vocab_path, "ggml-vocab-llama-spm.gguf");
  const auto& [arch, tc] = GetParam();
  RandomModelOptions o = SmallOptions(vocab_path, arch, tc.type);
  o.mixed_q4_k_m = tc.mixed_q4_k_m;
  const std::string path = ::memoria::testing::TempDir("random_type") + "/m.gguf";
  std::unique_ptr<GgufFile> f = WriteAndOpen(o, path);
  ASSERT_NE(f, nullptr);

  const std::string a = arch + ".";
  EXPECT_EQ(*f->GetString("general.architecture"), arch);
  EXPECT_TRUE(f->Has("general.name"));
  EXPECT_EQ(*f->GetInt("general.file_type"), static_cast<int64_t>(tc.file_type));
  EXPECT_EQ(*f->GetInt(a + "context_length"), 2048);
  EXPECT_EQ(*f->GetInt(a + "embedding_length"), 64);
  EXPECT_EQ(*f->GetInt(a + "block_count"), 2);
  EXPECT_EQ(*f->GetInt(a + "feed_forward_length"), 128);
  EXPECT_EQ(*f->GetInt(a + "attention.head_count"), 4);
  EXPECT_EQ(*f->GetInt(a + "attention.head_count_kv"), 2);
  EXPECT_EQ(*f->GetInt(a + "rope.dimension_count"), 16);
  EXPECT_EQ(*f->GetInt(a + "vocab_size"), kSpmVocab);
  EXPECT_FLOAT_EQ(*f->GetFloat(a + "attention.layer_norm_rms_epsilon"),
                  arch == "qwen2" ? 1e-6f : 1e-5f);
  EXPECT_FLOAT_EQ(*f->GetFloat(a + "rope.freq_base"), arch == "qwen2" ? 1e6f : 1e4f);
  ExpectShapes(*f, o);

  // Every matrix is in the requested type, except k-quants (the q4_k_m mix included) whose
  // 256-element super-block does not divide these 64/128-element rows: those fall back to Q8_0.
  const bool k_quant = tc.type == GgmlType::kQ4_K || tc.type == GgmlType::kQ6_K;
  const GgmlType matrix_type = k_quant ? GgmlType::kQ8_0 : tc.type;
  for (const GgufTensorInfo& t : f->tensors()) {
    if (t.dims.size() == 2) {
      EXPECT_EQ(t.type, matrix_type) << t.name;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    AllTypes, RandomModelTypeTest,
    ::testing::Combine(::testing::Values("llama", "qwen2"),
                       ::testing::Values(TypeCase{"f32", GgmlType::kF32, 0},
                                         TypeCase{"f16", GgmlType::kF16, 1},
                                         TypeCase{"bf16", GgmlType::kBF16, 32},
                                         TypeCase{"q8_0", GgmlType::kQ8_0, 7},
                                         TypeCase{"q4_0", GgmlType::kQ4_0, 2},
                                         TypeCase{"q4_k", GgmlType::kQ4_K, 14},
                                         TypeCase{"q6_k", GgmlType::kQ6_K, 18},
                                         TypeCase{"q4_k_m", GgmlType::kQ4_K, 15, true})),
    [](const auto& info) {
      return std::get<0>(info.param) + "_" + std::get<1>(info.param).name;
    });

TEST(RandomModelTest, CopiesEveryTokenizerKey) {
  MEMORIA_REQUIRE_SHARED(vocab_path, "ggml-vocab-llama-spm.gguf");
  const std::string path = ::memoria::testing::TempDir("random_tok") + "/m.gguf";
  std::unique_ptr<GgufFile> f = WriteAndOpen(SmallOptions(vocab_path, "llama", GgmlType::kF32), path);
  ASSERT_NE(f, nullptr);
  std::unique_ptr<GgufFile> vocab = *GgufFile::Open(vocab_path);
  int copied = 0;
  for (const auto& [key, value] : vocab->metadata()) {
    if (!absl::StartsWith(key, "tokenizer.")) continue;
    const GgufValue* got = f->Find(key);
    ASSERT_NE(got, nullptr) << key;
    EXPECT_EQ(got->type, value.type) << key;
    EXPECT_EQ(got->elem_type, value.elem_type) << key;
    EXPECT_EQ(got->integer, value.integer) << key;
    EXPECT_EQ(got->real, value.real) << key;
    EXPECT_EQ(got->str, value.str) << key;
    EXPECT_EQ(got->ints, value.ints) << key;
    EXPECT_EQ(got->reals, value.reals) << key;
    EXPECT_EQ(got->strings, value.strings) << key;
    ++copied;
  }
  EXPECT_GE(copied, 5);  // model, tokens, scores, token_type, bos/eos ids at least
  for (const auto& [key, value] : f->metadata()) {
    if (absl::StartsWith(key, "tokenizer.")) {
      EXPECT_TRUE(vocab->Has(key)) << key;
    }
  }
}

TEST(RandomModelTest, KQuantsWhereRowsAllowThem) {
  MEMORIA_REQUIRE_SHARED(vocab_path, "ggml-vocab-llama-spm.gguf");
  RandomModelOptions o = SmallOptions(vocab_path, "llama", GgmlType::kQ6_K);
  o.n_embd = 256;
  o.n_ff = 384;  // ffn_down rows of 384 are not a multiple of 256: Q8_0
  const std::string path = ::memoria::testing::TempDir("random_kq") + "/m.gguf";
  std::unique_ptr<GgufFile> f = WriteAndOpen(o, path);
  ASSERT_NE(f, nullptr);
  ExpectShapes(*f, o);
  for (const GgufTensorInfo& t : f->tensors()) {
    if (t.dims.size() != 2) continue;
    const GgmlType want = absl::EndsWith(t.name, "ffn_down.weight") ? GgmlType::kQ8_0 : GgmlType::kQ6_K;
    EXPECT_EQ(t.type, want) << t.name;
  }
}

TEST(RandomModelTest, Q4KMMixesQ6KLikeLlamaCpp) {
  MEMORIA_REQUIRE_SHARED(vocab_path, "ggml-vocab-llama-spm.gguf");
  RandomModelOptions o = SmallOptions(vocab_path, "llama", GgmlType::kQ4_K);
  o.mixed_q4_k_m = true;
  o.n_layers = 8;
  o.n_embd = 256;
  o.n_heads = 8;
  o.n_ff = 256;
  const std::string path = ::memoria::testing::TempDir("random_q4km") + "/m.gguf";
  std::unique_ptr<GgufFile> f = WriteAndOpen(o, path);
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(*f->GetInt("general.file_type"), 15);  // MOSTLY_Q4_K_M
  ExpectShapes(*f, o);
  // use_more_bits for 8 layers: first eighth (0), last eighth (7), and (i - 1) % 3 == 2 (3, 6).
  const std::set<int> more_bits = {0, 3, 6, 7};
  EXPECT_EQ(f->FindTensor("output.weight")->type, GgmlType::kQ6_K);
  EXPECT_EQ(f->FindTensor("token_embd.weight")->type, GgmlType::kQ4_K);
  for (int l = 0; l < o.n_layers; ++l) {
    const std::string p = absl::StrCat("blk.", l, ".");
    const GgmlType mixed = more_bits.count(l) ? GgmlType::kQ6_K : GgmlType::kQ4_K;
    EXPECT_EQ(f->FindTensor(p + "attn_v.weight")->type, mixed) << l;
    EXPECT_EQ(f->FindTensor(p + "ffn_down.weight")->type, mixed) << l;
    for (const char* name : {"attn_q.weight", "attn_k.weight", "attn_output.weight",
                             "ffn_gate.weight", "ffn_up.weight"}) {
      EXPECT_EQ(f->FindTensor(p + name)->type, GgmlType::kQ4_K) << p << name;
    }
  }
}

TEST(RandomModelTest, TiedEmbeddingsOmitOutput) {
  MEMORIA_REQUIRE_SHARED(vocab_path, "ggml-vocab-llama-spm.gguf");
  RandomModelOptions o = SmallOptions(vocab_path, "qwen2", GgmlType::kF16);
  o.tied_embeddings = true;
  const std::string path = ::memoria::testing::TempDir("random_tied") + "/m.gguf";
  std::unique_ptr<GgufFile> f = WriteAndOpen(o, path);
  ASSERT_NE(f, nullptr);
  ExpectShapes(*f, o);
  EXPECT_EQ(f->FindTensor("output.weight"), nullptr);
}

TEST(RandomModelTest, RopeFreqsAreLlama3Factors) {
  MEMORIA_REQUIRE_SHARED(vocab_path, "ggml-vocab-llama-spm.gguf");
  RandomModelOptions o = SmallOptions(vocab_path, "llama", GgmlType::kF32);
  o.rope_freqs = true;
  o.n_embd = 128;
  o.n_heads = 2;
  o.n_kv_heads = 1;  // head_dim 64, as Llama 3.2 1B
  const std::string path = ::memoria::testing::TempDir("random_rope") + "/m.gguf";
  std::unique_ptr<GgufFile> f = WriteAndOpen(o, path);
  ASSERT_NE(f, nullptr);
  ExpectShapes(*f, o);
  EXPECT_FLOAT_EQ(*f->GetFloat("llama.rope.freq_base"), 500000.0f);
  const GgufTensorInfo* t = f->FindTensor("rope_freqs.weight");
  ASSERT_NE(t, nullptr);
  ASSERT_EQ(t->type, GgmlType::kF32);
  std::vector<float> factors = Dequantize(*t);
  ASSERT_EQ(factors.size(), 32u);
  // Wavelength 2*pi*500000^(2i/64): below 2048 (i <= 9) factor 1, above 8192 (i >= 13) factor 8,
  // strictly between in the blend.
  for (int i = 0; i < 32; ++i) {
    const double wavelen = 2 * std::numbers::pi * std::pow(500000.0, 2.0 * i / 64);
    if (wavelen < 2048) {
      EXPECT_FLOAT_EQ(factors[i], 1.0f) << i;
    } else if (wavelen > 8192) {
      EXPECT_FLOAT_EQ(factors[i], 8.0f) << i;
    } else {
      EXPECT_GT(factors[i], 1.0f) << i;
      EXPECT_LT(factors[i], 8.0f) << i;
      // 1 / factor is linear in 8192 / wavelen between the two ends.
      const double smooth = (8192 / wavelen - 1) / 3;
      EXPECT_NEAR(1 / factors[i], (1 - smooth) / 8 + smooth, 1e-6) << i;
    }
    if (i > 0) {
      EXPECT_GE(factors[i], factors[i - 1]);
    }
  }
  EXPECT_EQ(factors[0], 1.0f);
  EXPECT_EQ(factors[31], 8.0f);
}

TEST(RandomModelTest, SameSeedSameBytesOtherSeedOtherBytes) {
  MEMORIA_REQUIRE_SHARED(vocab_path, "ggml-vocab-llama-spm.gguf");
  const std::string dir = ::memoria::testing::TempDir("random_seed");
  RandomModelOptions o = SmallOptions(vocab_path, "qwen2", GgmlType::kQ8_0);
  ASSERT_TRUE(WriteRandomModel(o, dir + "/a.gguf").ok());
  ASSERT_TRUE(WriteRandomModel(o, dir + "/b.gguf").ok());
  o.seed = 2;
  ASSERT_TRUE(WriteRandomModel(o, dir + "/c.gguf").ok());
  const std::string a = ReadBytes(dir + "/a.gguf"), b = ReadBytes(dir + "/b.gguf");
  const std::string c = ReadBytes(dir + "/c.gguf");
  ASSERT_GT(a.size(), 1000000u);
  EXPECT_TRUE(a == b);
  ASSERT_EQ(a.size(), c.size());
  EXPECT_FALSE(a == c);

  // Every tensor differs between seeds, not just some.
  std::unique_ptr<GgufFile> fa = *GgufFile::Open(dir + "/a.gguf");
  std::unique_ptr<GgufFile> fc = *GgufFile::Open(dir + "/c.gguf");
  for (const GgufTensorInfo& t : fa->tensors()) {
    const GgufTensorInfo* u = fc->FindTensor(t.name);
    ASSERT_NE(u, nullptr);
    EXPECT_NE(std::string(reinterpret_cast<const char*>(t.data), t.size_bytes),
              std::string(reinterpret_cast<const char*>(u->data), u->size_bytes))
        << t.name;
  }
}

TEST(RandomModelTest, WeightScalesMatchThePeerScript) {
  MEMORIA_REQUIRE_SHARED(vocab_path, "ggml-vocab-llama-spm.gguf");
  const std::string dir = ::memoria::testing::TempDir("random_scales");
  RandomModelOptions o = SmallOptions(vocab_path, "qwen2", GgmlType::kF32);
  std::unique_ptr<GgufFile> f = WriteAndOpen(o, dir + "/f32.gguf");
  ASSERT_NE(f, nullptr);
  struct Want {
    const char* name;
    double mean, std;
  };
  const Want wants[] = {
      {"token_embd.weight", 0, 0.5},          {"output.weight", 0, 1 / 8.0},
      {"blk.0.attn_q.weight", 0, 1 / 8.0},    {"blk.1.attn_output.weight", 0, 1 / 8.0},
      {"blk.0.ffn_down.weight", 0, 1 / std::sqrt(128.0)},
      {"blk.1.attn_norm.weight", 1, 0.1},     {"output_norm.weight", 1, 0.1},
      {"blk.0.attn_k.bias", 0, 0.1},
  };
  for (const Want& w : wants) {
    const GgufTensorInfo* t = f->FindTensor(w.name);
    ASSERT_NE(t, nullptr) << w.name;
    double mean, std;
    MeanStd(Dequantize(*t), &mean, &std);
    // Loose bounds: the small tensors have 32 elements.
    const double n = static_cast<double>(t->NumElements());
    EXPECT_NEAR(mean, w.mean, 5 * w.std / std::sqrt(n)) << w.name;
    EXPECT_NEAR(std, w.std, w.std * 6 / std::sqrt(n)) << w.name;
  }

  // The same seed draws the same floats whatever the type: a Q8_0 file holds the F32 weights
  // up to Q8_0 rounding.
  o.type = GgmlType::kQ8_0;
  std::unique_ptr<GgufFile> q = WriteAndOpen(o, dir + "/q8.gguf");
  ASSERT_NE(q, nullptr);
  for (const GgufTensorInfo& t : f->tensors()) {
    std::vector<float> exact = Dequantize(t);
    std::vector<float> rounded = Dequantize(*q->FindTensor(t.name));
    ASSERT_EQ(exact.size(), rounded.size());
    double max_abs = 0, max_err = 0;
    for (size_t i = 0; i < exact.size(); ++i) {
      max_abs = std::max(max_abs, std::abs(static_cast<double>(exact[i])));
      max_err = std::max(max_err, std::abs(static_cast<double>(exact[i]) - rounded[i]));
    }
    EXPECT_LE(max_err, max_abs / 127 + 1e-6) << t.name;
  }
}

TEST(RandomModelTest, BadOptionsNameTheField) {
  MEMORIA_REQUIRE_SHARED(vocab_path, "ggml-vocab-llama-spm.gguf");
  const std::string path = ::memoria::testing::TempDir("random_bad") + "/m.gguf";
  struct Case {
    const char* field;
    std::function<void(RandomModelOptions&)> mutate;
  };
  const Case cases[] = {
      {"arch", [](RandomModelOptions& o) { o.arch = "gpt2"; }},
      {"n_layers", [](RandomModelOptions& o) { o.n_layers = 0; }},
      {"n_embd", [](RandomModelOptions& o) { o.n_embd = -64; }},
      {"n_heads", [](RandomModelOptions& o) { o.n_heads = 0; }},
      {"n_kv_heads", [](RandomModelOptions& o) { o.n_kv_heads = 0; }},
      {"n_ff", [](RandomModelOptions& o) { o.n_ff = 0; }},
      {"context_length", [](RandomModelOptions& o) { o.context_length = 0; }},
      {"n_heads", [](RandomModelOptions& o) { o.n_heads = 5; }},      // 64 % 5 != 0
      {"n_kv_heads", [](RandomModelOptions& o) { o.n_kv_heads = 3; }},  // 4 % 3 != 0
      {"n_heads", [](RandomModelOptions& o) {  // head dim 3
         o.n_embd = 12;
         o.n_heads = 4;
       }},
      {"type", [](RandomModelOptions& o) { o.type = GgmlType::kQ5_1; }},
      {"type", [](RandomModelOptions& o) { o.type = GgmlType::kI32; }},
      {"mixed_q4_k_m", [](RandomModelOptions& o) { o.mixed_q4_k_m = true; }},  // type is q8_0
      {"n_embd", [](RandomModelOptions& o) {  // not a multiple of the Q8_0 block
         o.n_embd = 48;
         o.n_heads = 4;
       }},
      {"n_ff", [](RandomModelOptions& o) { o.n_ff = 100; }},
      {"vocab_path", [](RandomModelOptions& o) { o.vocab_path = "/nonexistent/vocab.gguf"; }},
  };
  for (const Case& c : cases) {
    RandomModelOptions o = SmallOptions(vocab_path, "llama", GgmlType::kQ8_0);
    c.mutate(o);
    absl::Status s = WriteRandomModel(o, path);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << c.field << ": " << s;
    EXPECT_THAT(s.message(), HasSubstr(c.field)) << s;
  }
  // F32 models take any sizes the attention shape allows.
  RandomModelOptions o = SmallOptions(vocab_path, "llama", GgmlType::kF32);
  o.n_embd = 48;
  o.n_ff = 100;
  EXPECT_TRUE(WriteRandomModel(o, path).ok());
}

}  // namespace
}  // namespace memoria
