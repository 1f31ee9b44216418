// Self-consistency of the scalar reference forward pass: the properties the math guarantees
// (memory equivalence, attention mass totals, relative positions, causality), checked on small
// random models of each supported shape.
#include "tests/reference/reference_model.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "engine/gguf/gguf_file.h"
#include "engine/model/random_model.h"
#include "engine/quant/quant.h"
#include "gtest/gtest.h"
#include "tests/test_support.h"

namespace memoria::testing {
namespace {

struct Variant {
  const char* name;
  const char* arch;
  bool rope_freqs;
  bool tied;
};

const Variant kVariants[] = {
    {"llama", "llama", false, false},
    {"qwen2", "qwen2", false, false},
    {"llama_rope_freqs", "llama", true, false},
    {"qwen2_tied", "qwen2", false, true},
};

// Arbitrary in-vocabulary tokens (the model is random; only ids matter).
const std::vector<int32_t> kReference = {450, 4996, 17354, 1701, 29916, 12500, 975};
const std::vector<int32_t> kPrompt = {278, 17366, 11203, 29889, 3118};

// Per row, the largest logit difference is within `rel` of the row's largest logit.
void ExpectLogitsNear(const std::vector<std::vector<float>>& got,
                      const std::vector<std::vector<float>>& want, double rel,
                      const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_EQ(got[i].size(), want[i].size()) << what;
    double max_abs = 0, max_diff = 0;
    for (size_t v = 0; v < got[i].size(); ++v) {
      max_abs = std::max(max_abs, std::abs(static_cast<double>(want[i][v])));
      max_diff = std::max(max_diff, std::abs(static_cast<double>(got[i][v]) - want[i][v]));
    }
    EXPECT_LE(max_diff, rel * max_abs) << what << " row " << i;
  }
}

double MaxDiff(const std::vector<std::vector<float>>& a, const std::vector<std::vector<float>>& b) {
  double d = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    for (size_t v = 0; v < a[i].size(); ++v) {
      d = std::max(d, std::abs(static_cast<double>(a[i][v]) - b[i][v]));
    }
  }
  return d;
}

template <typename T>
std::vector<T> Concat(std::vector<T> a, const std::vector<T>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

class ReferenceModelTest : public ::testing::TestWithParam<Variant> {
 protected:
  void SetUp() override {
    vocab_path_ = VocabPath("ggml-vocab-llama-spm.gguf");
    if (vocab_path_.empty()) {
      GTEST_SKIP() << "../shared/vocab/ggml-vocab-llama-spm.gguf not found (set "
                      "MEMORIA_SHARED_DIR); skipping";
    }
    const Variant& v = GetParam();
    RandomModelOptions o;
    o.vocab_path = vocab_path_;
    o.arch = v.arch;
    o.n_layers = 2;
    o.n_embd = 64;
    o.n_heads = 4;
    o.n_kv_heads = 2;
    o.n_ff = 128;
    o.rope_freqs = v.rope_freqs;
    o.tied_embeddings = v.tied;
    o.seed = 7;
    path_ = TempDir(std::string("reference_") + v.name) + "/model.gguf";
    ASSERT_TRUE(WriteRandomModel(o, path_).ok());
    absl::StatusOr<std::unique_ptr<ReferenceModel>> m = ReferenceModel::Load(path_);
    ASSERT_TRUE(m.ok()) << m.status();
    model_ = std::move(*m);
    std::unique_ptr<GgufFile> vocab = *GgufFile::Open(vocab_path_);
    bos_ = static_cast<int32_t>(*vocab->GetInt("tokenizer.ggml.bos_token_id"));
  }

  const ModelConfig& config() const { return model_->config(); }

  // The dense memory of `reference` (MEMORY.md): BOS + tokens encoded at positions 0..n, every
  // position's pre-RoPE key and value in every layer.
  ReferenceMemory DenseMemory(const std::vector<int32_t>& reference, MemoryRotation rotation) {
    ReferenceTrace trace;
    model_->Forward(Concat({bos_}, reference), 0, nullptr, &trace);
    ReferenceMemory memory(config().n_layers, config().n_kv_heads, rotation);
    for (int l = 0; l < config().n_layers; ++l) {
      memory.layers.push_back(l);
      for (int g = 0; g < config().n_kv_heads; ++g) {
        for (size_t j = 0; j < trace.k_pre_rope[l].size(); ++j) {
          memory.entries[l][g].push_back(
              {trace.k_pre_rope[l][j][g], trace.v[l][j][g], static_cast<int32_t>(j)});
        }
      }
    }
    return memory;
  }

  std::string vocab_path_;
  std::string path_;
  std::unique_ptr<ReferenceModel> model_;
  int32_t bos_ = 1;
};

TEST_P(ReferenceModelTest, LoadsTheConfig) {
  EXPECT_EQ(config().n_layers, 2);
  EXPECT_EQ(config().n_embd, 64);
  EXPECT_EQ(config().head_dim, 16);
  EXPECT_EQ(config().n_vocab, 32000);
  EXPECT_EQ(config().tied_embeddings, GetParam().tied);
  EXPECT_EQ(config().has_rope_freqs, GetParam().rope_freqs);
}

// MEMORY.md's equivalence: a dense reference as memory in all layers, the prompt starting at
// position n + 1, gives the logits of [BOS] + reference + prompt.
TEST_P(ReferenceModelTest, DenseMemoryEqualsPrefix) {
  const int32_t n = static_cast<int32_t>(kReference.size());
  ReferenceMemory memory = DenseMemory(kReference, MemoryRotation::kStoredPositions);
  std::vector<std::vector<float>> with_memory = model_->Forward(kPrompt, n + 1, &memory, nullptr);
  std::vector<std::vector<float>> full =
      model_->Forward(Concat(Concat({bos_}, kReference), kPrompt), 0, nullptr, nullptr);
  std::vector<std::vector<float>> prompt_rows(full.begin() + n + 1, full.end());
  ExpectLogitsNear(with_memory, prompt_rows, 1e-4, "memory vs prefix");

  // The memory matters: without it the logits are far off.
  std::vector<std::vector<float>> alone = model_->Forward(kPrompt, n + 1, nullptr, nullptr);
  EXPECT_GT(MaxDiff(alone, prompt_rows), 1e-2);
}

// Memory entries of layers not listed as memory layers are never read.
TEST_P(ReferenceModelTest, OnlyMemoryLayersReadMemory) {
  ReferenceMemory memory = DenseMemory(kReference, MemoryRotation::kStoredPositions);
  memory.layers = {};
  std::vector<std::vector<float>> ignored = model_->Forward(kPrompt, 3, &memory, nullptr);
  std::vector<std::vector<float>> alone = model_->Forward(kPrompt, 3, nullptr, nullptr);
  EXPECT_EQ(ignored, alone);
  memory.layers = {1};
  std::vector<std::vector<float>> last_only = model_->Forward(kPrompt, 3, &memory, nullptr);
  EXPECT_GT(MaxDiff(last_only, alone), 1e-3);
}

TEST_P(ReferenceModelTest, MassSumsToQueriesTimesGroupSize) {
  const std::vector<int32_t> tokens = Concat({bos_}, kReference);
  const double n = static_cast<double>(tokens.size());
  const double group = config().n_heads / config().n_kv_heads;
  ReferenceTrace trace;
  model_->Forward(tokens, 0, nullptr, &trace);
  ASSERT_EQ(trace.mass.size(), 2u);
  for (int l = 0; l < config().n_layers; ++l) {
    ASSERT_EQ(trace.mass[l].size(), 2u);
    for (int g = 0; g < config().n_kv_heads; ++g) {
      ASSERT_EQ(trace.mass[l][g].size(), tokens.size());
      double total = 0;
      for (double m : trace.mass[l][g]) {
        EXPECT_GT(m, 0);
        total += m;
      }
      EXPECT_NEAR(total, n * group, 1e-9) << "layer " << l << " kv head " << g;
      // Token j is seen by n - j queries of each of the group's heads, each weight at most 1.
      for (size_t j = 0; j < tokens.size(); ++j) {
        EXPECT_LE(trace.mass[l][g][j], (n - j) * group + 1e-9);
      }
    }
  }

  // With memory, part of every softmax goes to the memory entries.
  ReferenceMemory memory = DenseMemory(kReference, MemoryRotation::kStoredPositions);
  model_->Forward(kPrompt, 20, &memory, &trace);
  for (int l = 0; l < config().n_layers; ++l) {
    for (int g = 0; g < config().n_kv_heads; ++g) {
      double total = 0;
      for (double m : trace.mass[l][g]) total += m;
      EXPECT_LT(total, kPrompt.size() * group - 1e-6);
    }
  }
}

TEST_P(ReferenceModelTest, NoRotationDiffersAndIgnoresPosition) {
  const int32_t n = static_cast<int32_t>(kReference.size());
  ReferenceMemory stored = DenseMemory(kReference, MemoryRotation::kStoredPositions);
  ReferenceMemory none = DenseMemory(kReference, MemoryRotation::kNone);
  std::vector<std::vector<float>> a = model_->Forward(kPrompt, n + 1, &stored, nullptr);
  std::vector<std::vector<float>> b = model_->Forward(kPrompt, n + 1, &none, nullptr);
  EXPECT_GT(MaxDiff(a, b), 1e-3);

  // kNone scores do not depend on the query's position and the context's only on relative ones,
  // so moving the whole prompt changes nothing; stored positions are absolute, so it does.
  std::vector<std::vector<float>> b_far = model_->Forward(kPrompt, n + 500, &none, nullptr);
  ExpectLogitsNear(b_far, b, 1e-4, "kNone moved");
  std::vector<std::vector<float>> a_far = model_->Forward(kPrompt, n + 500, &stored, nullptr);
  EXPECT_GT(MaxDiff(a_far, a), 1e-3);
}

// Without memory only relative positions matter.
TEST_P(ReferenceModelTest, ShiftingAllPositionsKeepsLogits) {
  const std::vector<int32_t> tokens = Concat({bos_}, kPrompt);
  std::vector<std::vector<float>> at0 = model_->Forward(tokens, 0, nullptr, nullptr);
  std::vector<std::vector<float>> at1000 = model_->Forward(tokens, 1000, nullptr, nullptr);
  ExpectLogitsNear(at1000, at0, 1e-4, "shifted");
}

TEST_P(ReferenceModelTest, IsCausal) {
  const std::vector<int32_t> tokens = Concat({bos_}, kPrompt);
  std::vector<std::vector<float>> all = model_->Forward(tokens, 0, nullptr, nullptr);
  std::vector<int32_t> prefix(tokens.begin(), tokens.begin() + 3);
  std::vector<std::vector<float>> first = model_->Forward(prefix, 0, nullptr, nullptr);
  ASSERT_EQ(first.size(), 3u);
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ(first[i], all[i]) << i;
  // A different later token changes nothing before it and something after it.
  std::vector<int32_t> other = tokens;
  other[3] = 100;
  std::vector<std::vector<float>> changed = model_->Forward(other, 0, nullptr, nullptr);
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ(changed[i], all[i]) << i;
  EXPECT_NE(changed[3], all[3]);
  EXPECT_NE(changed[4], all[4]);
}

TEST_P(ReferenceModelTest, TraceShapesAndEmbeddings) {
  const std::vector<int32_t> tokens = Concat({bos_}, kPrompt);
  ReferenceTrace trace;
  std::vector<std::vector<float>> logits = model_->Forward(tokens, 0, nullptr, &trace);
  ASSERT_EQ(logits.size(), tokens.size());
  for (const auto& row : logits) ASSERT_EQ(row.size(), 32000u);
  ASSERT_EQ(trace.hidden.size(), 3u);  // entering layers 0, 1, and after layer 1
  ASSERT_EQ(trace.k_pre_rope.size(), 2u);
  ASSERT_EQ(trace.v.size(), 2u);
  for (int l = 0; l < 2; ++l) {
    ASSERT_EQ(trace.k_pre_rope[l].size(), tokens.size());
    ASSERT_EQ(trace.k_pre_rope[l][0].size(), 2u);
    ASSERT_EQ(trace.k_pre_rope[l][0][1].size(), 16u);
    ASSERT_EQ(trace.v[l][4][1].size(), 16u);
  }
  // hidden[0] is the embedding row, read here straight from the file.
  std::unique_ptr<GgufFile> f = *GgufFile::Open(path_);
  const GgufTensorInfo* embd = f->FindTensor("token_embd.weight");
  ASSERT_NE(embd, nullptr);
  const size_t row_bytes = GgmlRowBytes(embd->type, 64);
  for (size_t i = 0; i < tokens.size(); ++i) {
    std::vector<float> row(64);
    DequantizeRow(embd->type, embd->data + tokens[i] * row_bytes, row.data(), 64);
    EXPECT_EQ(trace.hidden[0][i], row) << i;
    EXPECT_NE(trace.hidden[2][i], trace.hidden[1][i]) << i;
  }
  // Logits are finite and not degenerate.
  for (const auto& row : logits) {
    double lo = row[0], hi = row[0];
    for (float x : row) {
      ASSERT_TRUE(std::isfinite(x));
      lo = std::min<double>(lo, x);
      hi = std::max<double>(hi, x);
    }
    EXPECT_GT(hi - lo, 1.0);
  }
}

INSTANTIATE_TEST_SUITE_P(Variants, ReferenceModelTest, ::testing::ValuesIn(kVariants),
                         [](const auto& info) { return std::string(info.param.name); });

TEST(ReferenceModelLoadTest, RejectsAFileWithoutAModel) {
  const std::string vocab = VocabPath("ggml-vocab-llama-spm.gguf");
  if (vocab.empty()) GTEST_SKIP() << "../shared/vocab not found; skipping";
  EXPECT_FALSE(ReferenceModel::Load(vocab).ok());
  EXPECT_FALSE(ReferenceModel::Load("/nonexistent/model.gguf").ok());
}

}  // namespace
}  // namespace memoria::testing
