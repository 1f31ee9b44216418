// Each operation of the CUDA backend against exact math or the CPU backend (the reference), on
// random data. Tolerances are relative L2 errors: f32 paths ~1e-6, f16 operands ~1e-3.
#include <algorithm>
#include <cstring>
#include <map>
#include <tuple>
#include <memory>
#include <numeric>
#include <random>
#include <vector>

#include "engine/backend/cpu/cpu_backend.h"
#include "engine/backend/cuda/cuda_backend.h"
#include "engine/quant/fp16.h"
#include "engine/quant/quant.h"
#include "tests/cuda/cuda_test_util.h"

namespace memoria::testing {
namespace {

std::vector<float> Random(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-scale, scale);
  std::vector<float> v(n);
  for (float& x : v) x = u(rng);
  return v;
}

// A weight in a GGUF type, as the file would hold it, with its exact dequantized values.
struct HostWeight {
  GgmlType type;
  int64_t rows, cols;
  std::vector<uint8_t> bytes;
  std::vector<float> values;  // dequantized, rows x cols
  GgufTensorInfo Info() const {
    GgufTensorInfo info;
    info.name = "w";
    info.type = type;
    info.dims = {cols, rows};
    info.size_bytes = bytes.size();
    info.data = bytes.data();
    return info;
  }
};

HostWeight MakeWeight(GgmlType type, int64_t rows, int64_t cols, uint32_t seed) {
  HostWeight w{type, rows, cols, {}, {}};
  std::vector<float> x = Random(static_cast<size_t>(rows * cols), seed);
  const size_t row_bytes = GgmlRowBytes(type, cols);
  w.bytes.resize(row_bytes * rows);
  w.values.resize(x.size());
  for (int64_t r = 0; r < rows; ++r) {
    QuantizeRow(type, &x[r * cols], w.bytes.data() + r * row_bytes, cols);
    DequantizeRow(type, w.bytes.data() + r * row_bytes, &w.values[r * cols], cols);
  }
  return w;
}

class CudaKernelsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    MEMORIA_REQUIRE_CUDA();
    cpu_ = std::make_unique<CpuBackend>(2, false);
    auto cuda = CudaBackend::Create(0, CudaBackendSettings());
    ASSERT_TRUE(cuda.ok()) << cuda.status();
    cuda_ = std::move(*cuda);
  }

  // The same f32 rows on both backends.
  struct Pair {
    Tensor cpu, cuda;
  };
  Pair Alloc(CudaBackend* cuda, int64_t rows, int64_t cols, const std::vector<float>* init = nullptr) {
    Pair p;
    p.cpu = *cpu_->Allocate(GgmlType::kF32, rows, cols);
    p.cuda = *cuda->Allocate(GgmlType::kF32, rows, cols);
    if (init != nullptr) {
      std::memcpy(p.cpu.data, init->data(), init->size() * 4);
      EXPECT_EQ(cudaMemcpy(p.cuda.data, init->data(), init->size() * 4, cudaMemcpyHostToDevice), cudaSuccess);
    }
    return p;
  }
  Pair Alloc(int64_t rows, int64_t cols, const std::vector<float>* init = nullptr) {
    return Alloc(cuda_.get(), rows, cols, init);
  }
  static std::vector<float> Read(Backend* b, const Tensor& t, int64_t n) {
    std::vector<float> out(static_cast<size_t>(n * t.cols));
    b->CopyToHost(t, 0, n, out.data());
    return out;
  }
  // Max relative L2 error of the first n rows, CUDA against CPU.
  double Compare(const Pair& p, int64_t n) {
    std::vector<float> a = Read(cuda_.get(), p.cuda, n), b = Read(cpu_.get(), p.cpu, n);
    EXPECT_TRUE(AllFinite(a.data(), a.size()));
    return RelativeL2(a.data(), b.data(), a.size());
  }

  std::unique_ptr<CpuBackend> cpu_;
  std::unique_ptr<CudaBackend> cuda_;
};

// ---- matrix products ----

TEST_F(CudaKernelsTest, MatMulEveryTypeBothWeightModesGemvAndGemm) {
  const int64_t rows = 100, cols = 512;  // rows not a multiple of the GEMV's 8 rows per block
  for (bool keep_quantized : {true, false}) {
    CudaBackendSettings settings;
    settings.keep_quantized = keep_quantized;
    auto backend = CudaBackend::Create(0, settings);
    ASSERT_TRUE(backend.ok());
    CudaBackend& cuda = **backend;
    for (GgmlType type : {GgmlType::kF32, GgmlType::kF16, GgmlType::kBF16, GgmlType::kQ8_0, GgmlType::kQ4_0,
                          GgmlType::kQ4_K, GgmlType::kQ6_K}) {
      HostWeight hw = MakeWeight(type, rows, cols, 11);
      auto w = cuda.UploadWeight(hw.Info());
      ASSERT_TRUE(w.ok()) << w.status();
      for (int64_t n : {1, 3, 8, 40}) {
        std::vector<float> x = Random(static_cast<size_t>(n * cols), 12 + n);
        Tensor xt = *cuda.Allocate(GgmlType::kF32, n, cols), yt = *cuda.Allocate(GgmlType::kF32, n, rows);
        ASSERT_EQ(cudaMemcpy(xt.data, x.data(), x.size() * 4, cudaMemcpyHostToDevice), cudaSuccess);
        cuda.MatMul(*w, xt, n, &yt);
        std::vector<float> y = Read(&cuda, yt, n), ref(y.size());
        for (int64_t b = 0; b < n; ++b) {
          for (int64_t r = 0; r < rows; ++r) {
            double s = 0;
            for (int64_t k = 0; k < cols; ++k) s += static_cast<double>(hw.values[r * cols + k]) * x[b * cols + k];
            ref[b * rows + r] = static_cast<float>(s);
          }
        }
        // The GEMV reads f32 activations; GEMMs and f16-converted weights round to half.
        const bool exact_weights = type == GgmlType::kF32 || (keep_quantized && (type == GgmlType::kQ8_0 ||
                                                                                  type == GgmlType::kQ4_0)) ||
                                   type == GgmlType::kF16 || type == GgmlType::kBF16;
        double tolerance = n <= cuda::kMaxGemvRows && exact_weights ? 1e-5 : 2e-3;
        if (type == GgmlType::kBF16 && n > cuda::kMaxGemvRows) tolerance = 1e-2;
        if (type == GgmlType::kF32) tolerance = 1e-5;
        EXPECT_LT(RelativeL2(y.data(), ref.data(), y.size()), tolerance)
            << TraitsOf(type).name << " n=" << n << " keep_quantized=" << keep_quantized;
      }
    }
  }
}

TEST_F(CudaKernelsTest, EmbedEveryType) {
  const int64_t vocab = 50, cols = 256;
  const std::vector<int32_t> ids = {0, 49, 7, 7, 23};
  for (GgmlType type : {GgmlType::kF32, GgmlType::kF16, GgmlType::kBF16, GgmlType::kQ8_0, GgmlType::kQ4_0,
                        GgmlType::kQ4_K, GgmlType::kQ6_K}) {
    HostWeight hw = MakeWeight(type, vocab, cols, 3);
    auto table = cuda_->UploadWeight(hw.Info());
    ASSERT_TRUE(table.ok());
    Tensor out = *cuda_->Allocate(GgmlType::kF32, ids.size(), cols);
    cuda_->Embed(*table, ids, &out);
    std::vector<float> got = Read(cuda_.get(), out, ids.size()), ref;
    for (int32_t id : ids) ref.insert(ref.end(), &hw.values[id * cols], &hw.values[(id + 1) * cols]);
    const bool via_f16 = type == GgmlType::kQ4_K || type == GgmlType::kQ6_K;
    EXPECT_LT(RelativeL2(got.data(), ref.data(), ref.size()), via_f16 ? 1e-3 : 1e-7) << TraitsOf(type).name;
  }
}

// ---- row-wise operations ----

TEST_F(CudaKernelsTest, RowOperationsMatchCpu) {
  const int64_t n = 7, cols = 384;
  std::vector<float> a = Random(n * cols, 1), b = Random(n * cols, 2, 3.0f), w = Random(cols, 3);
  Pair x = Alloc(n, cols, &a), y = Alloc(n, cols, &b), out = Alloc(n, cols);
  Tensor weight_cpu = *cpu_->Allocate(GgmlType::kF32, 1, cols), weight_cuda = *cuda_->Allocate(GgmlType::kF32, 1, cols);
  std::memcpy(weight_cpu.data, w.data(), cols * 4);
  ASSERT_EQ(cudaMemcpy(weight_cuda.data, w.data(), cols * 4, cudaMemcpyHostToDevice), cudaSuccess);

  cpu_->RmsNorm(x.cpu, weight_cpu, 1e-5f, n, &out.cpu);
  cuda_->RmsNorm(x.cuda, weight_cuda, 1e-5f, n, &out.cuda);
  EXPECT_LT(Compare(out, n), 1e-6) << "RmsNorm";
  cpu_->RmsNorm(x.cpu, weight_cpu, 1e-5f, n, &x.cpu);  // in place, as the output head does
  cuda_->RmsNorm(x.cuda, weight_cuda, 1e-5f, n, &x.cuda);
  EXPECT_LT(Compare(x, n), 1e-6) << "RmsNorm in place";

  cpu_->AddBias(weight_cpu, n, &y.cpu);
  cuda_->AddBias(weight_cuda, n, &y.cuda);
  EXPECT_LT(Compare(y, n), 1e-7) << "AddBias";
  cpu_->Add(x.cpu, n, &y.cpu);
  cuda_->Add(x.cuda, n, &y.cuda);
  EXPECT_LT(Compare(y, n), 1e-7) << "Add";
  cpu_->SwiGlu(y.cpu, x.cpu, n, &out.cpu);
  cuda_->SwiGlu(y.cuda, x.cuda, n, &out.cuda);
  EXPECT_LT(Compare(out, n), 1e-6) << "SwiGlu";
  cpu_->SwiGlu(y.cpu, x.cpu, n, &y.cpu);  // in place, as the FFN does
  cuda_->SwiGlu(y.cuda, x.cuda, n, &y.cuda);
  EXPECT_LT(Compare(y, n), 1e-6) << "SwiGlu in place";
  cpu_->Copy(x.cpu, n - 2, &out.cpu);
  cuda_->Copy(x.cuda, n - 2, &out.cuda);
  EXPECT_LT(Compare(out, n), 1e-7) << "Copy";
  const std::vector<int32_t> rows = {6, 0, 3};
  cpu_->GatherRows(y.cpu, rows, &out.cpu);
  cuda_->GatherRows(y.cuda, rows, &out.cuda);
  EXPECT_LT(Compare(out, n), 1e-7) << "GatherRows";
}

// ---- rotary embeddings ----

TEST_F(CudaKernelsTest, RopeNormalAndNeoxWithFactorsAndScale) {
  for (RopeStyle style : {RopeStyle::kNormal, RopeStyle::kNeox}) {
    auto backend = CudaBackend::Create(0, CudaBackendSettings());
    ASSERT_TRUE(backend.ok());
    cpu_ = std::make_unique<CpuBackend>(2, false);
    KvCacheConfig kv{1, 2, 64, 16, 8, GgmlType::kF16};
    RopeConfig rope;
    rope.style = style;
    rope.n_dims = 48;  // partial rotation: the last 16 dimensions stay as they are
    rope.head_dim = 64;
    rope.freq_base = 500000.0f;
    rope.freq_scale = 0.5f;
    for (int i = 0; i < rope.n_dims / 2; ++i) rope.freq_factors.push_back(1.0f + i % 5);
    ASSERT_TRUE(cpu_->InitKvCache(kv, rope).ok());
    ASSERT_TRUE((*backend)->InitKvCache(kv, rope).ok());
    const std::vector<int32_t> pages = {0};
    BatchPlan plan;
    plan.positions = {0, 5, 4095, 9000};  // beyond the first cos/sin table
    plan.sequences.push_back({pages, 0, 0, 4, nullptr});
    cpu_->PrepareBatch(plan);
    (*backend)->PrepareBatch(plan);
    std::vector<float> a = Random(4 * 4 * 64, 9);
    Pair x = Alloc(backend->get(), 4, 4 * 64, &a);
    cpu_->Rope(&x.cpu);
    (*backend)->Rope(&x.cuda);
    std::vector<float> got = Read(backend->get(), x.cuda, 4), ref = Read(cpu_.get(), x.cpu, 4);
    EXPECT_LT(RelativeL2(got.data(), ref.data(), ref.size()), 1e-6);
  }
}

// ---- attention ----

// Memory entries owned by a test, and the view over them.
struct TestMemory {
  std::vector<std::shared_ptr<std::vector<uint8_t>>> buffers;
  std::shared_ptr<MemoryView> view;
};

// `refs` references per (layer 0, KV head), head g of reference r keeping 3 + (r + 2g) % 5
// entries (counts differ per head), positions within [0, 40).
TestMemory MakeMemory(int32_t n_layers, int32_t n_kv, int32_t hd, MemoryRotation rotation, bool f16, int refs,
                      uint64_t first_page_id, uint32_t seed) {
  TestMemory m;
  m.view = std::make_shared<MemoryView>(n_layers, n_kv, rotation);
  std::mt19937 rng(seed);
  for (int r = 0; r < refs; ++r) {
    for (int32_t g = 0; g < n_kv; ++g) {
      const int32_t count = 3 + (r + 2 * g) % 5;
      const size_t elem = f16 ? 2 : 4;
      auto buf = std::make_shared<std::vector<uint8_t>>(2 * count * hd * elem + count * 4);
      std::vector<float> kv = Random(2 * count * hd, rng());
      for (size_t i = 0; i < kv.size(); ++i) {
        if (f16) {
          reinterpret_cast<uint16_t*>(buf->data())[i] = Fp32ToFp16(kv[i]);
        } else {
          reinterpret_cast<float*>(buf->data())[i] = kv[i];
        }
      }
      int32_t* positions = reinterpret_cast<int32_t*>(buf->data() + 2 * count * hd * elem);
      for (int32_t i = 0; i < count; ++i) positions[i] = static_cast<int32_t>(rng() % 40);
      MemoryEntries e;
      e.count = count;
      e.type = f16 ? GgmlType::kF16 : GgmlType::kF32;
      e.keys = buf->data();
      e.values = buf->data() + count * hd * elem;
      e.positions = positions;
      e.page_id = first_page_id == 0 ? 0 : first_page_id + r;
      m.view->Add(0, g, e);
      m.buffers.push_back(buf);
    }
  }
  return m;
}

class CudaAttentionTest : public CudaKernelsTest, public ::testing::WithParamInterface<GgmlType> {
 protected:
  static constexpr int32_t kHeads = 8, kKvHeads = 2, kHeadDim = 64, kPageSize = 16, kPages = 256;

  void SetUp() override {
    CudaKernelsTest::SetUp();
    if (IsSkipped()) return;
    kv_ = {2, kKvHeads, kHeadDim, kPageSize, kPages, GetParam()};
    rope_.n_dims = kHeadDim;
    rope_.head_dim = kHeadDim;
    ASSERT_TRUE(cpu_->InitKvCache(kv_, rope_).ok());
    ASSERT_TRUE(cuda_->InitKvCache(kv_, rope_).ok());
    // Pages handed out in a shuffled order, as a pool does after some churn.
    std::vector<int32_t> all(kPages);
    std::iota(all.begin(), all.end(), 0);
    std::shuffle(all.begin(), all.end(), std::mt19937(4));
    for (int s = 0; s < 4; ++s) pages_[s].assign(all.begin() + s * 64, all.begin() + (s + 1) * 64);
  }

  // One pass of attention over `seqs` (index, new tokens) on both backends with fresh random
  // q/k/v; returns the relative error of the outputs (and of mass, when asked).
  double Step(const std::vector<std::pair<int, int>>& seqs, uint32_t seed, double* mass_error = nullptr) {
    BatchPlan plan;
    int32_t rows = 0;
    for (auto [s, n] : seqs) {
      plan.sequences.push_back({pages_[s], cached_[s], rows, n, memory_[s]});
      for (int i = 0; i < n; ++i) plan.positions.push_back(cached_[s] + i);
      rows += n;
    }
    std::vector<float> q = Random(rows * kHeads * kHeadDim, seed), q_pre = Random(rows * kHeads * kHeadDim, seed + 1),
                       k = Random(rows * kKvHeads * kHeadDim, seed + 2),
                       v = Random(rows * kKvHeads * kHeadDim, seed + 3);
    // Tensors are reused for equal row counts: the same shapes at the same addresses are what
    // lets decode steps run as CUDA graphs.
    if (tensors_.find(rows) == tensors_.end()) {
      tensors_[rows] = {Alloc(rows, kHeads * kHeadDim), Alloc(rows, kHeads * kHeadDim),
                        Alloc(rows, kKvHeads * kHeadDim), Alloc(rows, kKvHeads * kHeadDim),
                        Alloc(rows, kHeads * kHeadDim)};
    }
    auto& [tq, tq_pre, tk, tv, out] = tensors_[rows];
    for (auto [t, data] : {std::pair{&tq, &q}, std::pair{&tq_pre, &q_pre}, std::pair{&tk, &k}, std::pair{&tv, &v}}) {
      std::memcpy(t->cpu.data, data->data(), data->size() * 4);
      EXPECT_EQ(cudaMemcpy(t->cuda.data, data->data(), data->size() * 4, cudaMemcpyHostToDevice), cudaSuccess);
    }
    std::vector<float> mass_cpu, mass_cuda;
    if (mass_error != nullptr) {
      mass_cpu.resize(kKvHeads * rows);
      mass_cuda.resize(kKvHeads * rows);
    }
    for (Backend* b : {static_cast<Backend*>(cpu_.get()), static_cast<Backend*>(cuda_.get())}) {
      const bool is_cpu = b == cpu_.get();
      b->PrepareBatch(plan);
      b->Attention(0, is_cpu ? tq.cpu : tq.cuda, is_cpu ? &tq_pre.cpu : &tq_pre.cuda, is_cpu ? tk.cpu : tk.cuda,
                   is_cpu ? tv.cpu : tv.cuda, is_cpu ? &out.cpu : &out.cuda,
                   mass_error == nullptr ? nullptr : (is_cpu ? mass_cpu.data() : mass_cuda.data()));
    }
    for (auto [s, n] : seqs) cached_[s] += n;
    if (mass_error != nullptr) *mass_error = RelativeL2(mass_cuda.data(), mass_cpu.data(), mass_cpu.size());
    return Compare(out, rows);
  }

  double Tolerance() const { return kv_.type == GgmlType::kF16 ? 3e-3 : 1e-5; }

  KvCacheConfig kv_;
  RopeConfig rope_;
  std::map<int32_t, std::tuple<Pair, Pair, Pair, Pair, Pair>> tensors_;  // q, q_pre, k, v, out by rows
  std::vector<int32_t> pages_[4];
  int32_t cached_[4] = {0, 0, 0, 0};
  const MemoryView* memory_[4] = {nullptr, nullptr, nullptr, nullptr};
};

TEST_P(CudaAttentionTest, PrefillDecodeAndMixedBatches) {
  EXPECT_LT(Step({{0, 37}, {1, 5}}, 1), Tolerance()) << "two prefills";
  EXPECT_LT(Step({{0, 1}, {1, 1}, {2, 9}}, 2), Tolerance()) << "decodes beside a prefill";
  for (int i = 0; i < 3; ++i) EXPECT_LT(Step({{0, 1}, {1, 1}, {2, 1}}, 10 + i), Tolerance()) << "decode " << i;
}

TEST_P(CudaAttentionTest, SplitKeysForLongContexts) {
  for (int i = 0; i < 4; ++i) ASSERT_LT(Step({{0, 250}}, 20 + i), Tolerance()) << "prefill chunk " << i;
  // One row, two KV heads: the keys are split over many blocks and combined.
  for (int i = 0; i < 3; ++i) EXPECT_LT(Step({{0, 1}}, 30 + i), Tolerance()) << "decode " << i;
  EXPECT_LT(Step({{0, 1}, {1, 3}}, 40), Tolerance()) << "long and short together";
}

TEST_P(CudaAttentionTest, MemoryEntriesBothRotationsCachedAndUncached) {
  // f16 entries of cached pages (rotated at stored positions), f32 entries uploaded every step
  // (position-free), and a sequence without memory, in one batch.
  TestMemory stored = MakeMemory(2, kKvHeads, kHeadDim, MemoryRotation::kStoredPositions, true, 5, 100, 1);
  TestMemory free = MakeMemory(2, kKvHeads, kHeadDim, MemoryRotation::kNone, false, 3, 0, 2);
  memory_[0] = stored.view.get();
  memory_[1] = free.view.get();
  EXPECT_LT(Step({{0, 12}, {1, 6}, {2, 4}}, 50), Tolerance()) << "prefill with memory";
  for (int i = 0; i < 4; ++i) {
    EXPECT_LT(Step({{0, 1}, {1, 1}, {2, 1}}, 60 + i), Tolerance()) << "decode with memory " << i;
  }
  EXPECT_EQ(cuda_->memory_cache()->page_misses(), 5);  // each stored page crossed the bus once
  EXPECT_GE(cuda_->memory_cache()->page_hits(), 5 * 4);
  // Only cached pages, one view shared by two sequences: the decode steps become graphs.
  memory_[1] = nullptr;
  memory_[2] = stored.view.get();
  for (int i = 0; i < 3; ++i) EXPECT_LT(Step({{0, 1}, {2, 1}}, 70 + i), Tolerance()) << "graph step " << i;
  EXPECT_GT(cuda_->graph_launches(), 0);
}

TEST_P(CudaAttentionTest, SmallCacheBudgetEvictsAndStaysCorrect) {
  CudaBackendSettings settings;
  settings.memory_cache_bytes = 1;  // every page is evicted as soon as a step no longer uses it
  auto small = CudaBackend::Create(0, settings);
  ASSERT_TRUE(small.ok());
  cuda_ = std::move(*small);
  tensors_.clear();  // they belonged to the backend just replaced
  ASSERT_TRUE(cuda_->InitKvCache(kv_, rope_).ok());
  TestMemory a = MakeMemory(2, kKvHeads, kHeadDim, MemoryRotation::kStoredPositions, true, 5, 1000, 3);
  TestMemory b = MakeMemory(2, kKvHeads, kHeadDim, MemoryRotation::kStoredPositions, false, 5, 2000, 4);
  EXPECT_LT(Step({{0, 8}}, 80), Tolerance());
  for (int i = 0; i < 6; ++i) {
    memory_[0] = (i % 2 == 0 ? a : b).view.get();
    EXPECT_LT(Step({{0, 1}}, 81 + i), Tolerance()) << "step " << i;
  }
  EXPECT_EQ(cuda_->memory_cache()->page_misses(), 30);
}

TEST_P(CudaAttentionTest, AttentionMassMatchesCpu) {
  TestMemory stored = MakeMemory(2, kKvHeads, kHeadDim, MemoryRotation::kStoredPositions, false, 2, 0, 5);
  EXPECT_LT(Step({{0, 10}}, 90), Tolerance());
  memory_[0] = stored.view.get();
  double mass_error = 1;
  EXPECT_LT(Step({{0, 21}}, 91, &mass_error), Tolerance());
  EXPECT_LT(mass_error, Tolerance());
}

INSTANTIATE_TEST_SUITE_P(KvTypes, CudaAttentionTest, ::testing::Values(GgmlType::kF16, GgmlType::kF32),
                         [](const ::testing::TestParamInfo<GgmlType>& info) {
                           return std::string(TraitsOf(info.param).name);
                         });

}  // namespace
}  // namespace memoria::testing
