// The engine's forward pass against the independent scalar reference (tests/reference).
#include <algorithm>
#include <cmath>
#include <memory>
#include <random>
#include <vector>

#include "engine/model/model.h"
#include "gtest/gtest.h"
#include "tests/model/model_test_util.h"
#include "tests/reference/reference_model.h"

namespace memoria::testing {
namespace {

struct TypeCase {
  const char* name;
  GgmlType type;
  bool q4_k_m;
  double tolerance;  // max |logit diff| / max |reference logit|
};

// f32 weights with an f32 KV cache compute the same math as the reference in another order;
// other types also round activations (to f16/bf16/Q8) before the dot products.
const TypeCase kTypes[] = {
    {"f32", GgmlType::kF32, false, 1e-4},   {"f16", GgmlType::kF16, false, 2e-2},
    {"bf16", GgmlType::kBF16, false, 3e-2}, {"q8_0", GgmlType::kQ8_0, false, 3e-2},
    {"q4_0", GgmlType::kQ4_0, false, 6e-2}, {"q4_k", GgmlType::kQ4_K, false, 6e-2},
    {"q6_k", GgmlType::kQ6_K, false, 4e-2}, {"q4_k_m", GgmlType::kQ4_K, true, 6e-2},
};

RandomModelOptions SmallOptions(const std::string& arch, GgmlType type, bool q4_k_m) {
  RandomModelOptions o;
  o.arch = arch;
  o.n_layers = 2;
  o.n_embd = 256;  // k-quants need rows that are multiples of 256
  o.n_heads = 4;
  o.n_kv_heads = 2;
  o.n_ff = 512;
  o.type = type;
  o.mixed_q4_k_m = q4_k_m;
  o.seed = 7;
  return o;
}

std::vector<int32_t> RandomTokens(int n, int32_t n_vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int32_t> t(n);
  for (int32_t& x : t) x = 1 + static_cast<int32_t>(rng() % (n_vocab - 1));
  return t;
}

ModelOptions F32KvOptions() {
  ModelOptions o;
  o.kv_type = GgmlType::kF32;
  o.kv_page_size = 4;  // several pages even for short prompts
  o.kv_cache_tokens = 1024;
  o.max_batch_tokens = 64;
  o.backend.n_threads = 2;
  return o;
}

class ForwardVsReferenceTest : public ::testing::TestWithParam<std::tuple<std::string, TypeCase>> {};

TEST_P(ForwardVsReferenceTest, AllPositionsMatch) {
  const auto& [arch, tc] = GetParam();
  std::string path = SmallModel(arch + "_" + tc.name, "ggml-vocab-llama-spm.gguf",
                                SmallOptions(arch, tc.type, tc.q4_k_m));
  if (path.empty()) GTEST_SKIP() << "../shared/vocab not found; skipping";
  auto ref = ReferenceModel::Load(path);
  ASSERT_TRUE(ref.ok()) << ref.status();
  auto model = Model::Load(F32KvOptions(), path);
  ASSERT_TRUE(model.ok()) << model.status();

  const int32_t n_vocab = (*model)->config().n_vocab;
  std::vector<int32_t> tokens = RandomTokens(23, n_vocab, 3);
  auto want = (*ref)->Forward(tokens, 0, nullptr, nullptr);

  auto seq = (*model)->CreateSequence();
  ASSERT_TRUE(seq.ok());
  SequenceInput in{*seq, tokens, /*all_logits=*/true};
  ForwardOutput out;
  ASSERT_TRUE((*model)->Forward(std::span<const SequenceInput>(&in, 1), &out).ok());
  for (size_t i = 0; i < tokens.size(); ++i) {
    const float* got = out.Logits(0, i);
    const float* ref_logits = want[i].data();
    EXPECT_LT(RelativeMaxError(got, ref_logits, n_vocab), tc.tolerance)
        << arch << " " << tc.name << " position " << i;
    // The argmax may differ only on a near-tie: the engine's choice must be within the logit
    // tolerance of the best in the reference.
    const int32_t ours = ArgMax(got, n_vocab), best = ArgMax(ref_logits, n_vocab);
    float max_abs = 0;
    for (int32_t v = 0; v < n_vocab; ++v) max_abs = std::max(max_abs, std::fabs(ref_logits[v]));
    EXPECT_LE(ref_logits[best] - ref_logits[ours], 2 * tc.tolerance * max_abs)
        << arch << " " << tc.name << " position " << i << ": argmax " << ours << " vs " << best;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Types, ForwardVsReferenceTest,
    ::testing::Combine(::testing::Values("llama", "qwen2"), ::testing::ValuesIn(kTypes)),
    [](const auto& info) {
      return std::get<0>(info.param) + "_" + std::string(std::get<1>(info.param).name);
    });

// The CPU backend repacks copied weights (interleaved rows, q/k/v and gate/up stacked); in place
// it computes on the file's row layout. Both are the same model.
TEST(ForwardTest, WeightsInPlaceAndRepackedGiveTheSameLogits) {
  for (const TypeCase& tc : {kTypes[3], kTypes[7]}) {  // q8_0, q4_k_m (types differ per tensor)
    RandomModelOptions o = SmallOptions("llama", tc.type, tc.q4_k_m);
    o.tied_embeddings = true;
    std::string path =
        SmallModel(std::string("llama_tied_") + tc.name, "ggml-vocab-llama-spm.gguf", o);
    if (path.empty()) GTEST_SKIP() << "../shared/vocab not found; skipping";
    std::vector<std::vector<float>> logits;
    for (bool in_place : {false, true}) {
      ModelOptions options = F32KvOptions();
      options.backend.weights_in_place = in_place;
      auto model = Model::Load(options, path);
      ASSERT_TRUE(model.ok()) << model.status();
      const int32_t n_vocab = (*model)->config().n_vocab;
      std::vector<int32_t> tokens = RandomTokens(11, n_vocab, 4);
      auto seq = (*model)->CreateSequence();
      ASSERT_TRUE(seq.ok());
      SequenceInput in{*seq, tokens};
      ForwardOutput out;
      ASSERT_TRUE((*model)->Forward(std::span<const SequenceInput>(&in, 1), &out).ok());
      logits.emplace_back(out.Logits(0), out.Logits(0) + n_vocab);
    }
    // Only the kernels' float summation order differs (activations are quantized alike), but a
    // rounding flip in one activation quantization moves later logits by ~1e-3.
    EXPECT_LT(RelativeMaxError(logits[0].data(), logits[1].data(), logits[0].size()), 1e-2)
        << tc.name;
  }
}

TEST(ForwardTest, TiedEmbeddingsAndRopeFreqsMatchReference) {
  RandomModelOptions o = SmallOptions("llama", GgmlType::kF32, false);
  o.tied_embeddings = true;
  o.rope_freqs = true;
  std::string path = SmallModel("llama_tied_ropefreqs", "ggml-vocab-llama-bpe.gguf", o);
  if (path.empty()) GTEST_SKIP() << "../shared/vocab not found; skipping";
  auto ref = ReferenceModel::Load(path);
  ASSERT_TRUE(ref.ok()) << ref.status();
  auto model = Model::Load(F32KvOptions(), path);
  ASSERT_TRUE(model.ok()) << model.status();
  ASSERT_TRUE((*model)->config().tied_embeddings);
  ASSERT_TRUE((*model)->config().has_rope_freqs);
  const int32_t n_vocab = (*model)->config().n_vocab;
  // Positions far out, where Llama 3 frequency factors matter.
  std::vector<int32_t> tokens = RandomTokens(9, n_vocab, 5);
  auto want = (*ref)->Forward(tokens, 3000, nullptr, nullptr);
  auto seq = (*model)->CreateSequence(3000);
  ASSERT_TRUE(seq.ok());
  SequenceInput in{*seq, tokens, true};
  ForwardOutput out;
  ASSERT_TRUE((*model)->Forward(std::span<const SequenceInput>(&in, 1), &out).ok());
  for (size_t i = 0; i < tokens.size(); ++i) {
    EXPECT_LT(RelativeMaxError(out.Logits(0, i), want[i].data(), n_vocab), 1e-4) << i;
  }
}

}  // namespace
}  // namespace memoria::testing
