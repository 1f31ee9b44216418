// shared/MEMORY.md's equivalence through the whole memory pipeline: compile (dense, all layers)
// -> encode (fp16 codec) -> decode -> attend, against the reference's tokens in the context.
#include <algorithm>
#include <memory>
#include <string>

#include "engine/model/model.h"
#include "engine/model/random_model.h"
#include "gtest/gtest.h"
#include "memstore/codec.h"
#include "memstore/compiler.h"
#include "memstore/memory_blob.h"
#include "tests/model/model_test_util.h"

namespace memoria::testing {
namespace {

class PipelineEquivalenceTest : public ::testing::TestWithParam<std::string> {};

TEST_P(PipelineEquivalenceTest, DenseFp16MemoryEqualsReferenceInContext) {
  const std::string path = SmallModel("pipeline_" + GetParam(), "ggml-vocab-llama-spm.gguf",
                                      TinyMemoryModel(GetParam(), 5));
  if (path.empty()) GTEST_SKIP() << "../shared/vocab not found; skipping";
  ModelOptions mo;
  mo.kv_type = GgmlType::kF32;
  mo.max_batch_tokens = 256;
  mo.kv_cache_tokens = 1024;
  mo.backend.n_threads = 2;
  auto model = Model::Load(mo, path);
  ASSERT_TRUE(model.ok()) << model.status();
  Model& m = **model;
  const ModelConfig& c = m.config();

  // Compile: dense, every layer a memory layer, one reference holding the whole text.
  const std::string text = "The lighthouse keeper of Varnholt logged every passing ship in a green book.";
  CompilerOptions co;
  co.dense = true;
  co.reference_tokens = 128;
  for (int32_t l = 0; l < c.n_layers; ++l) co.memory_layers.push_back(l);
  auto compiler = MemoryCompiler::Create(&m, co);
  ASSERT_TRUE(compiler.ok()) << compiler.status();
  auto refs = compiler->Compile(text);
  ASSERT_TRUE(refs.ok()) << refs.status();
  ASSERT_EQ(refs->size(), 1u);

  // Store format round trip with the fp16 codec.
  CodecOptions codec_options;
  codec_options.kind = CodecKind::kF16;
  codec_options.dim = c.head_dim;
  auto codec = VectorCodec::Create(codec_options);
  ASSERT_TRUE(codec.ok()) << codec.status();
  const std::string blob = EncodeMemoryBlob(refs->front().memory, **codec);
  auto page = MemoryPage::Decode(blob, **codec, c.n_kv_heads, c.head_dim);
  ASSERT_TRUE(page.ok()) << page.status();
  auto view = std::make_shared<MemoryView>(c.n_layers, c.n_kv_heads, MemoryRotation::kStoredPositions);
  AddToView(*page, view.get());

  // Generate with the memory (context from position n + 1) and with [BOS] + reference in context.
  const std::vector<int32_t> ref_tokens = m.tokenizer().Encode(text, false, false);
  const int32_t n = static_cast<int32_t>(ref_tokens.size());
  const std::vector<int32_t> prompt = m.tokenizer().Encode(" Which book did the keeper use?", false, false);
  auto with = m.CreateSequence(n + 1);
  ASSERT_TRUE(with.ok());
  ASSERT_TRUE(m.SetMemory(*with, view).ok());
  std::vector<int32_t> full = {m.tokenizer().bos()};
  full.insert(full.end(), ref_tokens.begin(), ref_tokens.end());
  full.insert(full.end(), prompt.begin(), prompt.end());
  auto plain = m.CreateSequence(0);
  ForwardOutput a, b;
  SequenceInput in_a{*with, prompt, true}, in_b{*plain, full, true};
  ASSERT_TRUE(m.Forward(std::span<const SequenceInput>(&in_a, 1), &a).ok());
  ASSERT_TRUE(m.Forward(std::span<const SequenceInput>(&in_b, 1), &b).ok());
  for (size_t i = 0; i < prompt.size(); ++i) {
    // fp16 rounding of K/V is the only difference.
    EXPECT_LT(RelativeMaxError(a.Logits(0, i), b.Logits(0, n + 1 + i), c.n_vocab), 1e-2) << i;
  }
  // Greedy generation agrees for 16 tokens.
  for (int step = 0; step < 16; ++step) {
    const float* la = a.Logits(0, step == 0 ? prompt.size() - 1 : 0);
    const float* lb = b.Logits(0, step == 0 ? full.size() - 1 : 0);
    int32_t ta = static_cast<int32_t>(std::max_element(la, la + c.n_vocab) - la);
    int32_t tb = static_cast<int32_t>(std::max_element(lb, lb + c.n_vocab) - lb);
    ASSERT_EQ(ta, tb) << "step " << step;
    SequenceInput x{*with, std::span<const int32_t>(&ta, 1)}, y{*plain, std::span<const int32_t>(&tb, 1)};
    ASSERT_TRUE(m.Forward(std::span<const SequenceInput>(&x, 1), &a).ok());
    ASSERT_TRUE(m.Forward(std::span<const SequenceInput>(&y, 1), &b).ok());
  }
  m.DestroySequence(*with);
  m.DestroySequence(*plain);
}

INSTANTIATE_TEST_SUITE_P(Archs, PipelineEquivalenceTest, ::testing::Values("llama", "qwen2"));

}  // namespace
}  // namespace memoria::testing
