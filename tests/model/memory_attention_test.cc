// Attention over memory entries (shared/MEMORY.md) and the introspection pass that produces them.
#include <cstring>
#include <memory>
#include <random>
#include <vector>

#include "engine/model/model.h"
#include "engine/quant/fp16.h"
#include "gtest/gtest.h"
#include "tests/model/model_test_util.h"
#include "tests/reference/reference_model.h"

namespace memoria::testing {
namespace {

// Memory entries built in a test: owns the arrays a MemoryView points into.
struct OwnedEntries {
  std::vector<float> keys, values;
  std::vector<uint16_t> keys_f16, values_f16;
  std::vector<int32_t> positions;
};

class MemoryAttentionTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    path_ = SmallModel("memory_" + GetParam(), "ggml-vocab-llama-spm.gguf",
                       TinyMemoryModel(GetParam(), 21));
    if (path_.empty()) GTEST_SKIP() << "../shared/vocab not found; skipping";
    ModelOptions mo;
    mo.kv_type = GgmlType::kF32;
    mo.kv_page_size = 8;
    mo.kv_cache_tokens = 2048;
    mo.max_batch_tokens = 256;
    mo.backend.n_threads = 2;
    auto m = Model::Load(mo, path_);
    ASSERT_TRUE(m.ok()) << m.status();
    model_ = std::move(*m);
    c_ = model_->config();
  }

  std::vector<int32_t> Tokens(int n, uint32_t seed) {
    std::mt19937 rng(seed);
    std::vector<int32_t> t(n);
    for (int32_t& x : t) x = 3 + static_cast<int32_t>(rng() % (c_.n_vocab - 3));
    return t;
  }

  IntrospectionResult Encode(const std::vector<int32_t>& tokens, bool mass) {
    IntrospectionRequest req;
    for (int32_t l = 0; l < c_.n_layers; ++l) req.kv_layers.push_back(l);
    req.attention_mass = mass;
    for (int32_t l = 0; l <= c_.n_layers; ++l) req.hidden_layers.push_back(l);
    auto seq = model_->CreateSequence();
    EXPECT_TRUE(seq.ok());
    IntrospectionResult r;
    absl::Status st = model_->Introspect(*seq, tokens, req, &r, nullptr);
    EXPECT_TRUE(st.ok()) << st;
    model_->DestroySequence(*seq);
    return r;
  }

  // A view over the given tokens' K/V (all of them, or `keep[l][g]` token indices) of `layers`.
  std::shared_ptr<const MemoryView> MakeView(const IntrospectionResult& r,
                                             const std::vector<int32_t>& layers,
                                             const std::vector<std::vector<std::vector<int32_t>>>& keep,
                                             MemoryRotation rotation, bool f16) {
    auto view = std::make_shared<MemoryView>(c_.n_layers, c_.n_kv_heads, rotation);
    const int32_t hd = c_.head_dim, n_kv = c_.n_kv_heads;
    for (int32_t l : layers) {
      const IntrospectionResult::Layer& lr = r.layers[l];
      for (int32_t g = 0; g < n_kv; ++g) {
        auto owned = std::make_shared<OwnedEntries>();
        for (int32_t j : keep[l][g]) {
          const float* k = &lr.keys[(static_cast<size_t>(j) * n_kv + g) * hd];
          const float* v = &lr.values[(static_cast<size_t>(j) * n_kv + g) * hd];
          owned->keys.insert(owned->keys.end(), k, k + hd);
          owned->values.insert(owned->values.end(), v, v + hd);
          owned->positions.push_back(j);
        }
        MemoryEntries e;
        e.count = static_cast<int32_t>(owned->positions.size());
        e.positions = owned->positions.data();
        if (f16) {
          for (float x : owned->keys) owned->keys_f16.push_back(Fp32ToFp16(x));
          for (float x : owned->values) owned->values_f16.push_back(Fp32ToFp16(x));
          e.type = GgmlType::kF16;
          e.keys = owned->keys_f16.data();
          e.values = owned->values_f16.data();
        } else {
          e.keys = owned->keys.data();
          e.values = owned->values.data();
        }
        view->Add(l, g, e);
        view->KeepAlive(owned);
      }
    }
    return view;
  }

  std::vector<std::vector<std::vector<int32_t>>> AllTokens(int32_t n) {
    std::vector<int32_t> all(n);
    for (int32_t j = 0; j < n; ++j) all[j] = j;
    return std::vector<std::vector<std::vector<int32_t>>>(
        c_.n_layers, std::vector<std::vector<int32_t>>(c_.n_kv_heads, all));
  }

  std::string path_;
  std::unique_ptr<Model> model_;
  ModelConfig c_;
};

// MEMORY.md's equivalence: dense memory of [BOS] + reference at positions 0..n in every layer,
// prompt from position n+1, equals the reference's tokens written before the prompt.
void CheckEquivalence(Model& model, const std::vector<int32_t>& reference,
                      const std::vector<int32_t>& prompt, std::shared_ptr<const MemoryView> view,
                      double tolerance) {
  const int32_t n_vocab = model.config().n_vocab;
  const int32_t n = static_cast<int32_t>(reference.size());
  // with memory
  auto with = model.CreateSequence(n + 1);
  ASSERT_TRUE(with.ok());
  ASSERT_TRUE(model.SetMemory(*with, view).ok());
  ForwardOutput mem_out;
  SequenceInput in{*with, prompt, true};
  ASSERT_TRUE(model.Forward(std::span<const SequenceInput>(&in, 1), &mem_out).ok());
  // as a prefix
  std::vector<int32_t> full = {model.tokenizer().bos()};
  full.insert(full.end(), reference.begin(), reference.end());
  full.insert(full.end(), prompt.begin(), prompt.end());
  auto plain = model.CreateSequence(0);
  ForwardOutput ctx_out;
  SequenceInput pin{*plain, full, true};
  ASSERT_TRUE(model.Forward(std::span<const SequenceInput>(&pin, 1), &ctx_out).ok());
  for (size_t i = 0; i < prompt.size(); ++i) {
    EXPECT_LT(RelativeMaxError(mem_out.Logits(0, i), ctx_out.Logits(0, n + 1 + i), n_vocab), tolerance)
        << "prompt position " << i;
  }
  // and a few greedy decode steps agree too
  int32_t a = ArgMax(mem_out.Logits(0, prompt.size() - 1), n_vocab);
  int32_t b = ArgMax(ctx_out.Logits(0, full.size() - 1), n_vocab);
  for (int step = 0; step < 8; ++step) {
    ASSERT_EQ(a, b) << "decode step " << step;
    SequenceInput x{*with, std::span<const int32_t>(&a, 1)};
    SequenceInput y{*plain, std::span<const int32_t>(&b, 1)};
    ASSERT_TRUE(model.Forward(std::span<const SequenceInput>(&x, 1), &mem_out).ok());
    ASSERT_TRUE(model.Forward(std::span<const SequenceInput>(&y, 1), &ctx_out).ok());
    EXPECT_LT(RelativeMaxError(mem_out.Logits(0), ctx_out.Logits(0), n_vocab), tolerance);
    a = ArgMax(mem_out.Logits(0), n_vocab);
    b = ArgMax(ctx_out.Logits(0), n_vocab);
  }
  model.DestroySequence(*with);
  model.DestroySequence(*plain);
}

TEST_P(MemoryAttentionTest, DenseMemoryEqualsPrefixInContext) {
  std::vector<int32_t> reference = Tokens(40, 1);
  std::vector<int32_t> prompt = Tokens(12, 2);
  std::vector<int32_t> encoded = {model_->tokenizer().bos()};
  encoded.insert(encoded.end(), reference.begin(), reference.end());
  IntrospectionResult r = Encode(encoded, false);
  std::vector<int32_t> layers;
  for (int32_t l = 0; l < c_.n_layers; ++l) layers.push_back(l);
  auto all = AllTokens(static_cast<int32_t>(encoded.size()));
  CheckEquivalence(*model_, reference, prompt,
                   MakeView(r, layers, all, MemoryRotation::kStoredPositions, false), 1e-4);
  // fp16 entries (the fp16 codec) agree within half-precision rounding.
  CheckEquivalence(*model_, reference, prompt,
                   MakeView(r, layers, all, MemoryRotation::kStoredPositions, true), 2e-2);
}

TEST_P(MemoryAttentionTest, SparsePerHeadMemoryMatchesReference) {
  auto ref = ReferenceModel::Load(path_);
  ASSERT_TRUE(ref.ok()) << ref.status();
  // Two references encoded separately; different heads keep different tokens and counts;
  // memory layers are the first half.
  std::vector<int32_t> ref_a = {model_->tokenizer().bos()}, ref_b = ref_a;
  for (int32_t t : Tokens(20, 3)) ref_a.push_back(t);
  for (int32_t t : Tokens(15, 4)) ref_b.push_back(t);
  IntrospectionResult ra = Encode(ref_a, false), rb = Encode(ref_b, false);
  const std::vector<int32_t> memory_layers = {0, 1};
  std::mt19937 rng(5);
  for (MemoryRotation rotation : {MemoryRotation::kStoredPositions, MemoryRotation::kNone}) {
    std::vector<std::vector<std::vector<int32_t>>> keep_a(c_.n_layers,
                                                          std::vector<std::vector<int32_t>>(c_.n_kv_heads));
    auto keep_b = keep_a;
    ReferenceMemory rm(c_.n_layers, c_.n_kv_heads, rotation);
    rm.layers = memory_layers;
    for (int32_t l : memory_layers) {
      for (int32_t g = 0; g < c_.n_kv_heads; ++g) {
        for (int32_t j = 1; j < static_cast<int32_t>(ref_a.size()); ++j) if (rng() % 3 == 0) keep_a[l][g].push_back(j);
        for (int32_t j = 1; j < static_cast<int32_t>(ref_b.size()); ++j) if (rng() % 4 == 0) keep_b[l][g].push_back(j);
        for (auto [r, keep] : {std::pair{&ra, &keep_a}, std::pair{&rb, &keep_b}}) {
          for (int32_t j : (*keep)[l][g]) {
            const size_t off = (static_cast<size_t>(j) * c_.n_kv_heads + g) * c_.head_dim;
            ReferenceMemoryEntry e;
            e.key.assign(&r->layers[l].keys[off], &r->layers[l].keys[off] + c_.head_dim);
            e.value.assign(&r->layers[l].values[off], &r->layers[l].values[off] + c_.head_dim);
            e.position = j;
            rm.entries[l][g].push_back(std::move(e));
          }
        }
      }
    }
    auto view_a = MakeView(ra, memory_layers, keep_a, rotation, false);
    auto view_b = MakeView(rb, memory_layers, keep_b, rotation, false);
    // One view holding both references' entries.
    auto both = std::make_shared<MemoryView>(c_.n_layers, c_.n_kv_heads, rotation);
    for (int32_t l : memory_layers) {
      for (int32_t g = 0; g < c_.n_kv_heads; ++g) {
        for (const auto& e : view_a->Entries(l, g)) both->Add(l, g, e);
        for (const auto& e : view_b->Entries(l, g)) both->Add(l, g, e);
      }
    }
    both->KeepAlive(view_a);
    both->KeepAlive(view_b);

    std::vector<int32_t> prompt = Tokens(9, 6);
    const int32_t first_position = 128;  // the Memory3 "parallel" default: context after R
    auto want = (*ref)->Forward(prompt, first_position, &rm, nullptr);
    auto seq = model_->CreateSequence(first_position);
    ASSERT_TRUE(model_->SetMemory(*seq, both).ok());
    ForwardOutput out;
    SequenceInput in{*seq, prompt, true};
    ASSERT_TRUE(model_->Forward(std::span<const SequenceInput>(&in, 1), &out).ok());
    for (size_t i = 0; i < prompt.size(); ++i) {
      EXPECT_LT(RelativeMaxError(out.Logits(0, i), want[i].data(), c_.n_vocab), 1e-4)
          << "rotation " << static_cast<int>(rotation) << " position " << i;
    }
    // Decode steps (one query row: the flash-decoding path, memory in its first chunk).
    for (int32_t token : Tokens(3, 7)) {
      prompt.push_back(token);
      SequenceInput step{*seq, std::span<const int32_t>(&prompt.back(), 1)};
      ASSERT_TRUE(model_->Forward(std::span<const SequenceInput>(&step, 1), &out).ok());
      want = (*ref)->Forward(prompt, first_position, &rm, nullptr);
      EXPECT_LT(RelativeMaxError(out.Logits(0), want.back().data(), c_.n_vocab), 1e-4)
          << "rotation " << static_cast<int>(rotation) << " decode position " << prompt.size() - 1;
    }
    model_->DestroySequence(*seq);
  }
}

TEST_P(MemoryAttentionTest, IntrospectionMatchesReferenceTrace) {
  auto ref = ReferenceModel::Load(path_);
  ASSERT_TRUE(ref.ok()) << ref.status();
  std::vector<int32_t> tokens = {model_->tokenizer().bos()};
  for (int32_t t : Tokens(30, 7)) tokens.push_back(t);
  ReferenceTrace trace;
  (*ref)->Forward(tokens, 0, nullptr, &trace);
  IntrospectionResult r = Encode(tokens, true);
  const int32_t n = static_cast<int32_t>(tokens.size()), hd = c_.head_dim, n_kv = c_.n_kv_heads;
  ASSERT_EQ(r.layers.size(), static_cast<size_t>(c_.n_layers));
  for (int32_t l = 0; l < c_.n_layers; ++l) {
    const auto& lr = r.layers[l];
    EXPECT_EQ(lr.layer, l);
    for (int32_t j = 0; j < n; ++j) {
      for (int32_t g = 0; g < n_kv; ++g) {
        for (int32_t d = 0; d < hd; ++d) {
          ASSERT_NEAR(lr.keys[(j * n_kv + g) * hd + d], trace.k_pre_rope[l][j][g][d], 1e-4);
          ASSERT_NEAR(lr.values[(j * n_kv + g) * hd + d], trace.v[l][j][g][d], 1e-4);
        }
        EXPECT_NEAR(lr.mass[g * n + j], trace.mass[l][g][j], 1e-3 * (1 + trace.mass[l][g][j]))
            << "layer " << l << " head " << g << " token " << j;
      }
    }
    // Every query spreads weight 1 per head: the mass of a group sums to queries x group size.
    for (int32_t g = 0; g < n_kv; ++g) {
      double sum = 0;
      for (int32_t j = 0; j < n; ++j) sum += lr.mass[g * n + j];
      EXPECT_NEAR(sum, static_cast<double>(n) * (c_.n_heads / n_kv), 1e-2);
    }
  }
  ASSERT_EQ(r.hidden.size(), static_cast<size_t>(c_.n_layers + 1));
  for (const auto& h : r.hidden) {
    for (int32_t j = 0; j < n; ++j) {
      EXPECT_LT(RelativeMaxError(&h.states[static_cast<size_t>(j) * c_.n_embd],
                                 trace.hidden[h.layer][j].data(), c_.n_embd),
                1e-4);
    }
  }
}

TEST_P(MemoryAttentionTest, IntrospectionWithoutLogitsStopsEarlyWithTheSameRecords) {
  std::vector<int32_t> tokens = {model_->tokenizer().bos()};
  for (int32_t t : Tokens(12, 8)) tokens.push_back(t);
  IntrospectionRequest req;
  req.kv_layers = {0};
  req.attention_mass = true;
  req.hidden_layers = {2};
  IntrospectionResult full, early;
  auto a = model_->CreateSequence();
  ASSERT_TRUE(model_->Introspect(*a, tokens, req, &full, nullptr).ok());
  req.logits = false;
  auto b = model_->CreateSequence();
  ASSERT_TRUE(model_->Introspect(*b, tokens, req, &early, nullptr).ok());
  EXPECT_EQ(full.layers[0].keys, early.layers[0].keys);
  EXPECT_EQ(full.layers[0].mass, early.layers[0].mass);
  EXPECT_EQ(full.hidden[0].states, early.hidden[0].states);
  ForwardOutput out;
  EXPECT_EQ(model_->Introspect(*b, tokens, req, &early, &out).code(), absl::StatusCode::kInvalidArgument);
  model_->DestroySequence(*a);
  model_->DestroySequence(*b);
}

TEST_P(MemoryAttentionTest, MisshapenMemoryIsRefused) {
  auto seq = model_->CreateSequence();
  auto wrong = std::make_shared<MemoryView>(c_.n_layers + 1, c_.n_kv_heads, MemoryRotation::kNone);
  absl::Status st = model_->SetMemory(*seq, wrong);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("layers"), std::string::npos) << st;
  EXPECT_EQ(model_->SetMemory(999999, nullptr).code(), absl::StatusCode::kNotFound);
  model_->DestroySequence(*seq);
}

INSTANTIATE_TEST_SUITE_P(Archs, MemoryAttentionTest, ::testing::Values("llama", "qwen2"));

}  // namespace
}  // namespace memoria::testing
