// Whole forward passes (Model on small random models) on the CUDA backend against the CPU
// backend: every weight type, greedy generation, prefill vs decode, batches, memory entries,
// introspection and CUDA graphs.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <memory>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include "engine/model/model.h"
#include "engine/quant/fp16.h"
#include "tests/cuda/cuda_test_util.h"
#include "tests/model/model_test_util.h"

namespace memoria::testing {
namespace {

constexpr char kVocab[] = "ggml-vocab-llama-spm.gguf";

RandomModelOptions Small(const std::string& arch, GgmlType type) {
  RandomModelOptions o;
  o.arch = arch;
  o.n_layers = 3;
  o.n_embd = 256;  // k-quants need rows that are multiples of 256
  o.n_heads = 8;
  o.n_kv_heads = 2;
  o.n_ff = 512;
  o.type = type;
  o.seed = 17;
  return o;
}

ModelOptions Options(DeviceKind device, GgmlType kv_type) {
  ModelOptions o;
  o.backend.device = device;
  o.backend.n_threads = 2;
  o.kv_type = kv_type;
  o.kv_page_size = 16;
  o.kv_cache_tokens = 4096;
  o.max_batch_tokens = 256;
  return o;
}

std::vector<int32_t> Tokens(int n, int32_t n_vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int32_t> t(n);
  for (int32_t& x : t) x = 3 + static_cast<int32_t>(rng() % (n_vocab - 3));
  return t;
}

// Both backends on one model file.
struct Pair {
  std::unique_ptr<Model> cpu, cuda;
};

Pair Load(const std::string& path, GgmlType kv_type) {
  Pair p;
  auto cpu = Model::Load(Options(DeviceKind::kCpu, kv_type), path);
  auto cuda = Model::Load(Options(DeviceKind::kCuda, kv_type), path);
  EXPECT_TRUE(cpu.ok()) << cpu.status();
  EXPECT_TRUE(cuda.ok()) << cuda.status();
  if (cpu.ok()) p.cpu = std::move(*cpu);
  if (cuda.ok()) p.cuda = std::move(*cuda);
  return p;
}

// Logits of every token of one fresh sequence.
ForwardOutput Prefill(Model& m, const std::vector<int32_t>& tokens, int32_t first_position = 0,
                      std::shared_ptr<const MemoryView> memory = nullptr) {
  auto seq = m.CreateSequence(first_position);
  EXPECT_TRUE(seq.ok());
  if (memory != nullptr) {
    EXPECT_TRUE(m.SetMemory(*seq, memory).ok());
  }
  SequenceInput in{*seq, tokens, true};
  ForwardOutput out;
  absl::Status st = m.Forward(std::span<const SequenceInput>(&in, 1), &out);
  EXPECT_TRUE(st.ok()) << st;
  m.DestroySequence(*seq);
  return out;
}

struct TypeCase {
  const char* name;
  GgmlType type;
  GgmlType kv_type;
  double tolerance;  // max |logit diff| / max |CPU logit|
};

// The CPU rounds activations to the weights' dot type (f16, bf16, Q8_0, Q8_K) and queries to
// the cache type; the GPU reads f32 activations in the GEMV: the difference is the CPU's rounding.
const TypeCase kTypes[] = {
    {"f32", GgmlType::kF32, GgmlType::kF32, 1e-4},     {"f16", GgmlType::kF16, GgmlType::kF16, 2e-2},
    {"bf16", GgmlType::kBF16, GgmlType::kF16, 3e-2},   {"q8_0", GgmlType::kQ8_0, GgmlType::kF16, 3e-2},
    {"q4_0", GgmlType::kQ4_0, GgmlType::kF16, 6e-2},   {"q4_k", GgmlType::kQ4_K, GgmlType::kF16, 6e-2},
    {"q6_k", GgmlType::kQ6_K, GgmlType::kF16, 4e-2},
};

void PrintTo(const TypeCase& c, std::ostream* os) { *os << c.name; }

class CudaForwardTest : public ::testing::TestWithParam<std::tuple<std::string, TypeCase>> {};

TEST_P(CudaForwardTest, AllPositionsMatchCpu) {
  MEMORIA_REQUIRE_CUDA();
  const auto& [arch, tc] = GetParam();
  std::string path = SmallModel("cuda_" + arch + "_" + tc.name, kVocab, Small(arch, tc.type));
  if (path.empty()) GTEST_SKIP() << "../shared/vocab not found; skipping";
  Pair m = Load(path, tc.kv_type);
  ASSERT_TRUE(m.cpu && m.cuda);
  const int32_t n_vocab = m.cpu->config().n_vocab;
  // 40 tokens: prefill GEMMs (cuBLAS) and, below, single-token GEMVs.
  std::vector<int32_t> tokens = Tokens(40, n_vocab, 3);
  ForwardOutput a = Prefill(*m.cuda, tokens), b = Prefill(*m.cpu, tokens);
  for (size_t i = 0; i < tokens.size(); ++i) {
    EXPECT_LT(RelativeMaxError(a.Logits(0, i), b.Logits(0, i), n_vocab), tc.tolerance) << "position " << i;
  }
  std::vector<int32_t> one = {tokens[0]};
  ForwardOutput c = Prefill(*m.cuda, one), d = Prefill(*m.cpu, one);
  EXPECT_LT(RelativeMaxError(c.Logits(0), d.Logits(0), n_vocab), tc.tolerance) << "one token";
}

INSTANTIATE_TEST_SUITE_P(Types, CudaForwardTest,
                         ::testing::Combine(::testing::Values("llama", "qwen2"), ::testing::ValuesIn(kTypes)),
                         [](const auto& info) {
                           return std::get<0>(info.param) + "_" + std::string(std::get<1>(info.param).name);
                         });

TEST(CudaModelTest, TiedEmbeddingsRopeFreqsAndFarPositions) {
  MEMORIA_REQUIRE_CUDA();
  RandomModelOptions o = Small("llama", GgmlType::kF32);
  o.tied_embeddings = true;
  o.rope_freqs = true;
  std::string path = SmallModel("cuda_tied_ropefreqs", kVocab, o);
  if (path.empty()) GTEST_SKIP() << "../shared/vocab not found; skipping";
  Pair m = Load(path, GgmlType::kF32);
  ASSERT_TRUE(m.cpu && m.cuda);
  std::vector<int32_t> tokens = Tokens(9, m.cpu->config().n_vocab, 5);
  ForwardOutput a = Prefill(*m.cuda, tokens, 3000), b = Prefill(*m.cpu, tokens, 3000);
  for (size_t i = 0; i < tokens.size(); ++i) {
    EXPECT_LT(RelativeMaxError(a.Logits(0, i), b.Logits(0, i), m.cpu->config().n_vocab), 1e-4) << i;
  }
}

// Greedy decoding of `n` tokens after `prompt`, one step per token.
std::vector<int32_t> Greedy(Model& m, const std::vector<int32_t>& prompt, int n) {
  auto seq = m.CreateSequence();
  EXPECT_TRUE(seq.ok());
  ForwardOutput out;
  SequenceInput in{*seq, prompt};
  EXPECT_TRUE(m.Forward(std::span<const SequenceInput>(&in, 1), &out).ok());
  std::vector<int32_t> generated;
  for (int i = 0; i < n; ++i) {
    int32_t t = ArgMax(out.Logits(0), out.n_vocab);
    generated.push_back(t);
    SequenceInput step{*seq, std::span<const int32_t>(&generated.back(), 1)};
    EXPECT_TRUE(m.Forward(std::span<const SequenceInput>(&step, 1), &out).ok());
  }
  m.DestroySequence(*seq);
  return generated;
}

TEST(CudaModelTest, GreedyOutputsAgreeOver32Tokens) {
  MEMORIA_REQUIRE_CUDA();
  std::string path = SmallModel("cuda_greedy_f32", kVocab, Small("llama", GgmlType::kF32));
  if (path.empty()) GTEST_SKIP() << "../shared/vocab not found; skipping";
  Pair m = Load(path, GgmlType::kF32);
  ASSERT_TRUE(m.cpu && m.cuda);
  std::vector<int32_t> prompt = Tokens(8, m.cpu->config().n_vocab, 9);
  EXPECT_EQ(Greedy(*m.cuda, prompt, 32), Greedy(*m.cpu, prompt, 32));
}

// With f16 weights the two backends round differently (the CPU's activations to f16), so a
// random model's near-ties may pick differently: both follow the CPU's tokens, and the GPU's
// choice must be the CPU's best within the logits' tolerance at every step.
TEST(CudaModelTest, F16GreedyChoicesAreCpuChoicesOrNearTies) {
  MEMORIA_REQUIRE_CUDA();
  std::string path = SmallModel("cuda_greedy_f16", kVocab, Small("llama", GgmlType::kF16));
  if (path.empty()) GTEST_SKIP() << "../shared/vocab not found; skipping";
  Pair m = Load(path, GgmlType::kF16);
  ASSERT_TRUE(m.cpu && m.cuda);
  const int32_t n_vocab = m.cpu->config().n_vocab;
  std::vector<int32_t> tokens = Tokens(8, n_vocab, 9);
  SequenceId a = *m.cuda->CreateSequence(), b = *m.cpu->CreateSequence();
  ForwardOutput oa, ob;
  int same = 0;
  for (int step = 0; step <= 32; ++step) {
    std::span<const int32_t> in(step == 0 ? tokens.data() : &tokens.back(), step == 0 ? tokens.size() : 1);
    SequenceInput ia{a, in}, ib{b, in};
    ASSERT_TRUE(m.cuda->Forward(std::span<const SequenceInput>(&ia, 1), &oa).ok());
    ASSERT_TRUE(m.cpu->Forward(std::span<const SequenceInput>(&ib, 1), &ob).ok());
    const float* ref = ob.Logits(0);
    const int32_t ours = ArgMax(oa.Logits(0), n_vocab), best = ArgMax(ref, n_vocab);
    float max_abs = 0;
    for (int32_t v = 0; v < n_vocab; ++v) max_abs = std::max(max_abs, std::fabs(ref[v]));
    EXPECT_LE(ref[best] - ref[ours], 4e-2 * max_abs) << "step " << step;
    same += ours == best;
    tokens.push_back(best);
  }
  EXPECT_GE(same, 30);
}

TEST(CudaModelTest, PrefillEqualsTokenByTokenDecode) {
  MEMORIA_REQUIRE_CUDA();
  std::string path = SmallModel("cuda_llama_f16", kVocab, Small("llama", GgmlType::kF16));
  if (path.empty()) GTEST_SKIP() << "../shared/vocab not found; skipping";
  auto model = Model::Load(Options(DeviceKind::kCuda, GgmlType::kF32), path);
  ASSERT_TRUE(model.ok());
  Model& m = **model;
  std::vector<int32_t> tokens = Tokens(30, m.config().n_vocab, 11);
  ForwardOutput whole = Prefill(m, tokens);
  auto seq = m.CreateSequence();
  ForwardOutput step;
  for (size_t i = 0; i < tokens.size(); ++i) {
    SequenceInput in{*seq, std::span<const int32_t>(&tokens[i], 1)};
    ASSERT_TRUE(m.Forward(std::span<const SequenceInput>(&in, 1), &step).ok());
    // Prefill GEMMs round activations to f16, decode GEMVs do not: half-precision agreement.
    EXPECT_LT(RelativeMaxError(step.Logits(0), whole.Logits(0, i), m.config().n_vocab), 2e-2) << i;
  }
}

TEST(CudaModelTest, BatchedSequencesMatchCpuAndGraphsMatchEagerLaunches) {
  MEMORIA_REQUIRE_CUDA();
  std::string path = SmallModel("cuda_qwen2_f32", kVocab, Small("qwen2", GgmlType::kF32));
  if (path.empty()) GTEST_SKIP() << "../shared/vocab not found; skipping";
  Pair m = Load(path, GgmlType::kF32);
  ASSERT_TRUE(m.cpu && m.cuda);
  ModelOptions eager_options = Options(DeviceKind::kCuda, GgmlType::kF32);
  eager_options.backend.cuda_graphs = false;
  auto eager = Model::Load(eager_options, path);
  ASSERT_TRUE(eager.ok());
  const int32_t n_vocab = m.cpu->config().n_vocab;
  // Four sequences with different prompt lengths, then decoding together (and one joining late).
  std::vector<Model*> models = {m.cpu.get(), m.cuda.get(), eager->get()};
  std::vector<std::vector<SequenceId>> seqs(3);
  std::vector<ForwardOutput> outs(3);
  std::vector<std::vector<int32_t>> prompts;
  for (int s = 0; s < 4; ++s) prompts.push_back(Tokens(3 + 7 * s, n_vocab, 20 + s));
  for (int i = 0; i < 3; ++i) {
    std::vector<SequenceInput> inputs;
    for (int s = 0; s < 4; ++s) {
      seqs[i].push_back(*models[i]->CreateSequence());
      inputs.push_back({seqs[i][s], prompts[s]});
    }
    ASSERT_TRUE(models[i]->Forward(inputs, &outs[i]).ok());
  }
  std::vector<int32_t> next(4);
  for (int step = 0; step < 20; ++step) {
    for (int s = 0; s < 4; ++s) next[s] = ArgMax(outs[0].Logits(s), n_vocab);
    const int active = step < 10 ? 3 : 4;
    for (int i = 0; i < 3; ++i) {
      std::vector<SequenceInput> inputs;
      for (int s = 0; s < active; ++s) inputs.push_back({seqs[i][s], std::span<const int32_t>(&next[s], 1)});
      ASSERT_TRUE(models[i]->Forward(inputs, &outs[i]).ok());
    }
    for (int s = 0; s < active; ++s) {
      EXPECT_LT(RelativeMaxError(outs[1].Logits(s), outs[0].Logits(s), n_vocab), 1e-4) << step << " " << s;
      // A graph replays the very kernels the eager path launches.
      EXPECT_LT(RelativeMaxError(outs[1].Logits(s), outs[2].Logits(s), n_vocab), 1e-6) << step << " " << s;
    }
  }
  auto& cuda = dynamic_cast<CudaBackend&>(m.cuda->backend());
  auto& no_graphs = dynamic_cast<CudaBackend&>((*eager)->backend());
  EXPECT_GT(cuda.graph_launches(), 15);
  EXPECT_LE(cuda.graph_captures(), 6);  // one per batch size and key-split bucket
  EXPECT_EQ(no_graphs.graph_launches(), 0);
}

// ---- memory entries ----

// A view over introspected K/V of `tokens` (every token, or a per-head sparse subset).
struct OwnedView {
  std::vector<std::shared_ptr<std::vector<uint8_t>>> buffers;
  std::shared_ptr<MemoryView> view;
};

OwnedView MakeView(const ModelConfig& c, const IntrospectionResult& r, const std::vector<int32_t>& layers,
                   MemoryRotation rotation, bool f16, bool sparse, uint64_t page_id, uint32_t seed) {
  OwnedView o;
  o.view = std::make_shared<MemoryView>(c.n_layers, c.n_kv_heads, rotation);
  std::mt19937 rng(seed);
  const int32_t hd = c.head_dim, n_kv = c.n_kv_heads;
  for (int32_t l : layers) {
    const IntrospectionResult::Layer& lr = r.layers[l];
    const int32_t n_tokens = static_cast<int32_t>(lr.keys.size() / (n_kv * hd));
    for (int32_t g = 0; g < n_kv; ++g) {
      std::vector<int32_t> keep;
      for (int32_t j = sparse ? 1 : 0; j < n_tokens; ++j) {
        if (!sparse || rng() % (2 + g) == 0) keep.push_back(j);
      }
      const size_t elem = f16 ? 2 : 4, rows = keep.size() * hd;
      auto buf = std::make_shared<std::vector<uint8_t>>(2 * rows * elem + keep.size() * 4);
      int32_t* positions = reinterpret_cast<int32_t*>(buf->data() + 2 * rows * elem);
      for (size_t i = 0; i < keep.size(); ++i) {
        for (int32_t d = 0; d < hd; ++d) {
          const float k = lr.keys[(static_cast<size_t>(keep[i]) * n_kv + g) * hd + d];
          const float v = lr.values[(static_cast<size_t>(keep[i]) * n_kv + g) * hd + d];
          if (f16) {
            reinterpret_cast<uint16_t*>(buf->data())[i * hd + d] = Fp32ToFp16(k);
            reinterpret_cast<uint16_t*>(buf->data())[rows + i * hd + d] = Fp32ToFp16(v);
          } else {
            reinterpret_cast<float*>(buf->data())[i * hd + d] = k;
            reinterpret_cast<float*>(buf->data())[rows + i * hd + d] = v;
          }
        }
        positions[i] = keep[i];
      }
      MemoryEntries e;
      e.count = static_cast<int32_t>(keep.size());
      e.type = f16 ? GgmlType::kF16 : GgmlType::kF32;
      e.keys = buf->data();
      e.values = buf->data() + rows * elem;
      e.positions = positions;
      e.page_id = page_id;
      o.view->Add(l, g, e);
      o.buffers.push_back(buf);
    }
  }
  return o;
}

IntrospectionResult Encode(Model& m, const std::vector<int32_t>& tokens, bool mass) {
  IntrospectionRequest req;
  for (int32_t l = 0; l < m.config().n_layers; ++l) req.kv_layers.push_back(l);
  req.attention_mass = mass;
  auto seq = m.CreateSequence();
  IntrospectionResult r;
  absl::Status st = m.Introspect(*seq, tokens, req, &r, nullptr);
  EXPECT_TRUE(st.ok()) << st;
  m.DestroySequence(*seq);
  return r;
}

class CudaMemoryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    MEMORIA_REQUIRE_CUDA();
    path_ = SmallModel("cuda_memory_llama_f32", kVocab, Small("llama", GgmlType::kF32));
    if (path_.empty()) GTEST_SKIP() << "../shared/vocab not found; skipping";
    m_ = Load(path_, GgmlType::kF32);
    ASSERT_TRUE(m_.cpu && m_.cuda);
    c_ = m_.cpu->config();
  }
  std::string path_;
  Pair m_;
  ModelConfig c_;
};

// MEMORY.md's equivalence on the GPU: dense memory of [BOS] + reference in every layer, prompt
// from position n+1, equals the reference written before the prompt.
TEST_F(CudaMemoryTest, DenseMemoryEqualsPrefixInContext) {
  Model& m = *m_.cuda;
  std::vector<int32_t> reference = Tokens(40, c_.n_vocab, 1), prompt = Tokens(12, c_.n_vocab, 2);
  std::vector<int32_t> encoded = {m.tokenizer().bos()};
  encoded.insert(encoded.end(), reference.begin(), reference.end());
  IntrospectionResult r = Encode(m, encoded, false);
  std::vector<int32_t> all_layers;
  for (int32_t l = 0; l < c_.n_layers; ++l) all_layers.push_back(l);
  for (bool f16 : {false, true}) {
    OwnedView v = MakeView(c_, r, all_layers, MemoryRotation::kStoredPositions, f16, false, f16 ? 7 : 0, 0);
    ForwardOutput with = Prefill(m, prompt, static_cast<int32_t>(reference.size()) + 1, v.view);
    std::vector<int32_t> full = encoded;
    full.insert(full.end(), prompt.begin(), prompt.end());
    ForwardOutput plain = Prefill(m, full);
    for (size_t i = 0; i < prompt.size(); ++i) {
      EXPECT_LT(RelativeMaxError(with.Logits(0, i), plain.Logits(0, encoded.size() + i), c_.n_vocab),
                f16 ? 2e-2 : 1e-4)
          << "f16 " << f16 << " position " << i;
    }
  }
}

// Sparse per-head memories (different counts per head, two references, memory layers the first
// half), both rotations, through prefill and decode steps: the GPU against the CPU.
TEST_F(CudaMemoryTest, SparseMemoryBothRotationsMatchCpu) {
  std::vector<int32_t> ref_a = {m_.cpu->tokenizer().bos()}, ref_b = ref_a;
  for (int32_t t : Tokens(20, c_.n_vocab, 3)) ref_a.push_back(t);
  for (int32_t t : Tokens(15, c_.n_vocab, 4)) ref_b.push_back(t);
  IntrospectionResult ra = Encode(*m_.cpu, ref_a, false), rb = Encode(*m_.cpu, ref_b, false);
  for (MemoryRotation rotation : {MemoryRotation::kStoredPositions, MemoryRotation::kNone}) {
    OwnedView a = MakeView(c_, ra, {0}, rotation, true, true, 11, 5);
    OwnedView b = MakeView(c_, rb, {0}, rotation, false, true, 0, 6);
    auto view = std::make_shared<MemoryView>(c_.n_layers, c_.n_kv_heads, rotation);
    for (int32_t g = 0; g < c_.n_kv_heads; ++g) {
      for (const OwnedView* o : {&a, &b}) {
        for (const MemoryEntries& e : o->view->Entries(0, g)) view->Add(0, g, e);
      }
    }
    std::vector<int32_t> prompt = Tokens(10, c_.n_vocab, 7);
    std::vector<Model*> models = {m_.cpu.get(), m_.cuda.get()};
    std::vector<SequenceId> seqs;
    std::vector<ForwardOutput> outs(2);
    for (int i = 0; i < 2; ++i) {
      seqs.push_back(*models[i]->CreateSequence(21));
      ASSERT_TRUE(models[i]->SetMemory(seqs[i], view).ok());
      SequenceInput in{seqs[i], prompt, true};
      ASSERT_TRUE(models[i]->Forward(std::span<const SequenceInput>(&in, 1), &outs[i]).ok());
    }
    for (size_t t = 0; t < prompt.size(); ++t) {
      EXPECT_LT(RelativeMaxError(outs[1].Logits(0, t), outs[0].Logits(0, t), c_.n_vocab), 1e-4) << t;
    }
    for (int step = 0; step < 6; ++step) {
      int32_t next = ArgMax(outs[0].Logits(0, step == 0 ? prompt.size() - 1 : 0), c_.n_vocab);
      for (int i = 0; i < 2; ++i) {
        SequenceInput in{seqs[i], std::span<const int32_t>(&next, 1)};
        ASSERT_TRUE(models[i]->Forward(std::span<const SequenceInput>(&in, 1), &outs[i]).ok());
      }
      EXPECT_LT(RelativeMaxError(outs[1].Logits(0), outs[0].Logits(0), c_.n_vocab), 1e-4) << "decode " << step;
    }
    for (int i = 0; i < 2; ++i) models[i]->DestroySequence(seqs[i]);
  }
}

TEST_F(CudaMemoryTest, IntrospectionKvAndMassMatchCpu) {
  std::vector<int32_t> tokens = Tokens(33, c_.n_vocab, 8);
  IntrospectionResult a = Encode(*m_.cuda, tokens, true), b = Encode(*m_.cpu, tokens, true);
  ASSERT_EQ(a.layers.size(), b.layers.size());
  for (size_t l = 0; l < a.layers.size(); ++l) {
    EXPECT_LT(RelativeL2(a.layers[l].keys.data(), b.layers[l].keys.data(), b.layers[l].keys.size()), 1e-5) << l;
    EXPECT_LT(RelativeL2(a.layers[l].values.data(), b.layers[l].values.data(), b.layers[l].values.size()), 1e-5)
        << l;
    ASSERT_EQ(a.layers[l].mass.size(), b.layers[l].mass.size());
    EXPECT_LT(RelativeL2(a.layers[l].mass.data(), b.layers[l].mass.data(), b.layers[l].mass.size()), 1e-5) << l;
  }
}

}  // namespace
}  // namespace memoria::testing
