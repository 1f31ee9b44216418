// MemoryCompiler: references, selection by attention mass, retrieval vectors (shared/MEMORY.md).
#include <algorithm>
#include <cmath>
#include <set>
#include <string>

#include "engine/model/model.h"
#include "engine/model/random_model.h"
#include "gtest/gtest.h"
#include "memstore/compiler.h"
#include "memstore/fingerprint.h"
#include "tests/model/model_test_util.h"

namespace memoria::testing {
namespace {

constexpr char kText[] =
    "Ada Lovelace was born in London in 1815. She wrote the first published algorithm for "
    "Charles Babbage's Analytical Engine, and she saw that such a machine could do more than "
    "arithmetic. The island of Varnholt exports blue copper and its capital is Meridel. "
    "The Zephyr 9 phone weighs 143 grams and ships with a graphite case.";

class CompilerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string path =
        SmallModel("compiler", "ggml-vocab-llama-spm.gguf", TinyMemoryModel());
    if (path.empty()) GTEST_SKIP() << "../shared/vocab not found; skipping";
    ModelOptions mo;
    mo.kv_type = GgmlType::kF32;
    mo.max_batch_tokens = 256;
    mo.kv_cache_tokens = 1024;
    mo.backend.n_threads = 2;
    auto m = Model::Load(mo, path);
    ASSERT_TRUE(m.ok()) << m.status();
    model_ = std::move(*m);
  }
  std::unique_ptr<Model> model_;
};

TEST_F(CompilerTest, SplitsIntoReferencesOfRTokens) {
  CompilerOptions o;
  o.reference_tokens = 16;
  auto compiler = MemoryCompiler::Create(model_.get(), o);
  ASSERT_TRUE(compiler.ok()) << compiler.status();
  auto refs = compiler->Compile(kText);
  ASSERT_TRUE(refs.ok()) << refs.status();
  const int32_t n = static_cast<int32_t>(model_->tokenizer().Encode(kText, false, false).size());
  ASSERT_EQ(refs->size(), static_cast<size_t>((n + 15) / 16));
  int32_t expect_begin = 0;
  for (const CompiledReference& r : *refs) {
    EXPECT_EQ(r.token_begin, expect_begin);
    EXPECT_LE(r.token_end - r.token_begin, 16);
    EXPECT_FALSE(r.text.empty());
    expect_begin = r.token_end;
  }
  EXPECT_EQ(expect_begin, n);
  EXPECT_LT(refs->back().token_end - refs->back().token_begin, 16) << "the tail is its own reference";
}

TEST_F(CompilerTest, SparseKeepsKPerHeadNeverBosAndTheIntrospectedKv) {
  CompilerOptions o;
  o.reference_tokens = 32;
  o.kept_tokens = 5;
  auto compiler = MemoryCompiler::Create(model_.get(), o);
  ASSERT_TRUE(compiler.ok());
  auto refs = compiler->Compile(kText);
  ASSERT_TRUE(refs.ok());
  const ModelConfig& c = model_->config();
  const CompiledReference& r = refs->front();
  ASSERT_EQ(r.memory.layers, (std::vector<int32_t>{0, 1}));  // default: the first half
  // The same pass, by hand.
  std::vector<int32_t> input = {model_->tokenizer().bos()};
  auto tokens = model_->tokenizer().Encode(kText, false, false);
  input.insert(input.end(), tokens.begin(), tokens.begin() + 32);
  IntrospectionRequest req;
  req.kv_layers = {0, 1};
  auto seq = model_->CreateSequence();
  IntrospectionResult trace;
  ASSERT_TRUE(model_->Introspect(*seq, input, req, &trace, nullptr).ok());
  model_->DestroySequence(*seq);
  std::set<std::vector<int32_t>> distinct;
  for (size_t li = 0; li < 2; ++li) {
    for (int32_t g = 0; g < c.n_kv_heads; ++g) {
      const ReferenceKv::Head& h = r.memory.At(li, g);
      ASSERT_EQ(h.positions.size(), 5u);
      EXPECT_TRUE(std::is_sorted(h.positions.begin(), h.positions.end()));
      EXPECT_GT(h.positions.front(), 0) << "BOS (position 0) is never kept";
      distinct.insert(h.positions);
      for (size_t e = 0; e < h.positions.size(); ++e) {
        const int32_t j = h.positions[e];
        for (int32_t d = 0; d < c.head_dim; ++d) {
          EXPECT_EQ(h.keys[e * c.head_dim + d], trace.layers[li].keys[(j * c.n_kv_heads + g) * c.head_dim + d]);
          EXPECT_EQ(h.values[e * c.head_dim + d], trace.layers[li].values[(j * c.n_kv_heads + g) * c.head_dim + d]);
        }
      }
    }
  }
  EXPECT_GT(distinct.size(), 1u) << "heads choose their own tokens";
}

TEST_F(CompilerTest, PerQueryMassFavoursLaterTokensThanTheSum) {
  CompilerOptions o;
  o.reference_tokens = 64;
  o.kept_tokens = 6;
  o.mass_rule = MassRule::kSum;
  auto sum = MemoryCompiler::Create(model_.get(), o);
  o.mass_rule = MassRule::kPerQuery;
  auto per_query = MemoryCompiler::Create(model_.get(), o);
  auto a = sum->Compile(kText), b = per_query->Compile(kText);
  ASSERT_TRUE(a.ok() && b.ok());
  double mean_a = 0, mean_b = 0;
  int n = 0;
  for (size_t i = 0; i < a->front().memory.heads.size(); ++i) {
    for (int32_t p : a->front().memory.heads[i].positions) mean_a += p;
    for (int32_t p : b->front().memory.heads[i].positions) mean_b += p;
    n += static_cast<int>(a->front().memory.heads[i].positions.size());
  }
  EXPECT_GT(mean_b / n, mean_a / n) << "unnormalized mass keeps early tokens (causal bias)";
}

TEST_F(CompilerTest, DenseKeepsEveryTokenWithBos) {
  CompilerOptions o;
  o.reference_tokens = 20;
  o.dense = true;
  o.memory_layers = {0, 1, 2, 3};
  auto compiler = MemoryCompiler::Create(model_.get(), o);
  auto refs = compiler->Compile(kText);
  ASSERT_TRUE(refs.ok());
  for (const ReferenceKv::Head& h : refs->front().memory.heads) {
    ASSERT_EQ(h.positions.size(), 21u);
    for (int32_t j = 0; j <= 20; ++j) EXPECT_EQ(h.positions[j], j);
  }
}

TEST_F(CompilerTest, WholeDocumentModeCarriesContext) {
  CompilerOptions o;
  o.reference_tokens = 16;
  o.kept_tokens = 4;
  auto alone = MemoryCompiler::Create(model_.get(), o);
  o.whole_document = true;
  auto whole = MemoryCompiler::Create(model_.get(), o);
  auto a = alone->Compile(kText), b = whole->Compile(kText);
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_EQ(a->size(), b->size());
  // The first reference sees the same tokens either way in layer 0's keys (layer 0 keys depend
  // only on the token); later references' vectors differ because they saw the document before.
  EXPECT_NE(a->back().vector, b->back().vector);
  for (const CompiledReference& r : *b) {
    for (const ReferenceKv::Head& h : r.memory.heads) {
      for (int32_t p : h.positions) {
        EXPECT_GE(p, 1);
        EXPECT_LE(p, r.token_end - r.token_begin);
      }
    }
  }
}

TEST_F(CompilerTest, RetrievalVectorsAreNormalizedAndQueriesUseTheSameRecipe) {
  CompilerOptions o;
  o.reference_tokens = 32;
  auto compiler = MemoryCompiler::Create(model_.get(), o);
  auto refs = compiler->Compile(kText);
  ASSERT_TRUE(refs.ok());
  for (const CompiledReference& r : *refs) {
    double norm = 0;
    for (float v : r.vector) norm += v * v;
    EXPECT_NEAR(norm, 1.0, 1e-5);
    EXPECT_EQ(static_cast<int32_t>(r.vector.size()), compiler->retrieval_dim());
  }
  auto tokens = model_->tokenizer().Encode(kText, false, false);
  auto q = compiler->QueryVector(std::span<const int32_t>(tokens).subspan(0, 32));
  ASSERT_TRUE(q.ok());
  double dot = 0;
  for (size_t i = 0; i < q->size(); ++i) dot += (*q)[i] * refs->front().vector[i];
  EXPECT_NEAR(dot, 1.0, 1e-5);
}

TEST_F(CompilerTest, BadOptionsAndInputAreRefused) {
  CompilerOptions o;
  o.memory_layers = {7};
  EXPECT_EQ(MemoryCompiler::Create(model_.get(), o).status().code(), absl::StatusCode::kInvalidArgument);
  o = CompilerOptions();
  o.reference_tokens = 100000;
  EXPECT_EQ(MemoryCompiler::Create(model_.get(), o).status().code(), absl::StatusCode::kInvalidArgument);
  auto compiler = MemoryCompiler::Create(model_.get(), CompilerOptions());
  EXPECT_EQ(compiler->Compile("").status().code(), absl::StatusCode::kInvalidArgument);
  // A document longer than one encoding pass cannot be encoded whole.
  CompilerOptions whole;
  whole.whole_document = true;
  auto w = MemoryCompiler::Create(model_.get(), whole);
  std::string long_text;
  for (int i = 0; i < 100; ++i) long_text += "The quick brown fox jumps over the lazy dog. ";
  EXPECT_EQ(w->Compile(long_text).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(CompilerTest, FingerprintTellsModelsApart) {
  ModelFingerprint a = FingerprintOf(*model_);
  ModelFingerprint b = FingerprintOf(*model_);
  EXPECT_EQ(a, b);
  EXPECT_EQ(a.n_layers, 4);
  EXPECT_EQ(a.head_dim, 16);
  // Same shapes, other weights.
  const std::string path = SmallModel("compiler_other", "ggml-vocab-llama-spm.gguf",
                                      TinyMemoryModel("llama", 99));
  auto other = Model::Load(ModelOptions(), path);
  ASSERT_TRUE(other.ok());
  ModelFingerprint c = FingerprintOf(**other);
  EXPECT_EQ(a.description, c.description);
  EXPECT_NE(a.tensor_hash, c.tensor_hash);
  EXPECT_FALSE(a == c);
}

}  // namespace
}  // namespace memoria::testing
