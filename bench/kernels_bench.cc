// Google Benchmark of the GemmRows kernels: bytes of weights streamed per second for every weight
// type and kernel path, at decode (nb = 1) and batch (nb = 32) sizes, single-threaded, and the
// decode case on the engine's thread pool with 2 threads. ReadBandwidth gives the memory-bandwidth
// bound the decode numbers should approach.
//   kernels_bench --benchmark_filter='nb:1/'
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <new>
#include <random>
#include <string>
#include <vector>

#include "bench/read_bandwidth.h"
#include "engine/gguf/ggml_type.h"
#include "engine/quant/gemm.h"
#include "engine/quant/interleave.h"
#include "engine/quant/quant.h"
#include "engine/util/huge_pages.h"
#include "engine/util/row_split.h"
#include "engine/util/thread_pool.h"

namespace memoria {
namespace {

// Weights on huge pages (AllocateHugePages), as CpuBackend places them: on 4 KiB pages the
// hardware prefetchers stop at every page boundary, and a large std::vector starts 16 bytes past
// a line, which splits every 64-byte load in two. Both hide what the engine sees.
template <class T>
struct HugePageAllocator {
  using value_type = T;
  HugePageAllocator() = default;
  template <class U>
  HugePageAllocator(const HugePageAllocator<U>&) {}
  T* allocate(size_t n) {
    void* p = AllocateHugePages(n * sizeof(T));
    if (p == nullptr) throw std::bad_alloc();
    return static_cast<T*>(p);
  }
  void deallocate(T* p, size_t) { std::free(p); }
  bool operator==(const HugePageAllocator&) const = default;
};
using WeightBytes = std::vector<uint8_t, HugePageAllocator<uint8_t>>;

// A rows x k weight matrix. Kernel speed does not depend on the values, so a few quantized
// random rows are repeated to keep setup fast for matrices larger than L3.
WeightBytes MakeWeights(GgmlType type, int64_t rows, int64_t k, size_t* row_bytes) {
  constexpr int64_t kDistinctRows = 16;
  *row_bytes = GgmlRowBytes(type, k);
  WeightBytes w(rows * *row_bytes);
  std::mt19937 rng(1);
  std::normal_distribution<float> dist;
  std::vector<float> row(k);
  for (int64_t r = 0; r < std::min(rows, kDistinctRows); ++r) {
    for (float& v : row) v = dist(rng);
    QuantizeRow(type, row.data(), w.data() + r * *row_bytes, k);
  }
  for (int64_t r = kDistinctRows; r < rows; ++r) {
    std::copy_n(w.data() + (r % kDistinctRows) * *row_bytes, *row_bytes, w.data() + r * *row_bytes);
  }
  return w;
}

// Row length of the decode cases' matrices.
constexpr int64_t kDecodeK = 4096;

// Decode from DRAM: a k = kDecodeK matrix with as many rows (a multiple of 16) as fill 512 MiB, the
// probe's buffer. A matrix a few times the size of L3 is not enough: Zen 3's 32 MiB L3 keeps part
// of it from one pass to the next, and at 32768 rows (75 MiB in Q4_K) interleaved Q4_K decode read
// 1.2x what the probe read (2 threads), at 131072 rows (288 MiB) 0.9x.
int64_t DramRows(GgmlType type) {
  return static_cast<int64_t>((size_t{512} << 20) / GgmlRowBytes(type, kDecodeK)) / 16 * 16;
}

void BM_GemmRows(benchmark::State& state, GgmlType type, CpuIsa isa, int64_t rows, int64_t k,
                 int64_t nb) {
  SetCpuIsaForTesting(isa);
  size_t w_row_bytes;
  const WeightBytes w = MakeWeights(type, rows, k, &w_row_bytes);
  const GgmlType dot_type = DotTypeFor(type);
  const size_t x_row_bytes = GgmlRowBytes(dot_type, k);
  std::vector<uint8_t> xq(nb * x_row_bytes);
  std::mt19937 rng(2);
  std::normal_distribution<float> dist;
  std::vector<float> x(k);
  for (int64_t b = 0; b < nb; ++b) {
    for (float& v : x) v = dist(rng);
    ConvertActivationRow(dot_type, x.data(), xq.data() + b * x_row_bytes, k);
  }
  std::vector<float> y(nb * rows);
  for (auto _ : state) {
    GemmRows(type, w.data(), w_row_bytes, k, 0, rows, xq.data(), x_row_bytes, nb, y.data(), rows);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(w.size()));
  state.counters["GFLOP/s"] =
      benchmark::Counter(static_cast<double>(state.iterations()) * 2.0 * rows * k * nb * 1e-9,
                         benchmark::Counter::kIsRate);
  SetCpuIsaForTesting(DetectedCpuIsa());
}

// Decode (nb = 1) on the engine's thread pool, rows split into blocks as CpuBackend::MatMul
// splits them (RowSplit). `interleaved`: the weights repacked as the CPU backend repacks them
// where PrefersInterleavedRows (engine/quant/interleave.h). With DramRows(type) rows the matrix
// comes from DRAM: the multi-threaded rate to compare with ReadBandwidth at the same thread
// count. With 64 rows it stays in L2 (at most 280 KB): the kernel's compute rate, which a change
// to its instruction count moves even where the DRAM rate (and a noisy neighbour) hides it. 256
// rows (up to 1.1 MB) stay in Zen 4's 1 MiB L2 but partly come from L3 on Zen 3 (512 KiB L2).
void BM_GemmRowsPool(benchmark::State& state, GgmlType type, bool interleaved, int n_threads,
                     int64_t rows) {
  size_t w_row_bytes;
  WeightBytes w = MakeWeights(type, rows, kDecodeK, &w_row_bytes);
  const GgmlType dot_type = DotTypeFor(type);
  const size_t x_row_bytes = interleaved ? InterleavedActivationRowBytes(type, kDecodeK)
                                         : GgmlRowBytes(dot_type, kDecodeK);
  std::vector<uint8_t> xq(x_row_bytes);
  std::vector<float> x(kDecodeK, 0.5f);
  if (interleaved) {
    const WeightBytes row_major = w;
    InterleaveRows(type, row_major.data(), rows, kDecodeK, w.data());
    ConvertInterleavedActivationRow(type, x.data(), xq.data(), kDecodeK);
  } else {
    ConvertActivationRow(dot_type, x.data(), xq.data(), kDecodeK);
  }
  std::vector<float> y(rows);
  ThreadPool pool(n_threads);
  const RowSplit split(rows, n_threads, 16);
  for (auto _ : state) {
    pool.Run(split.n_tasks(), [&](int64_t b) {
      const int64_t r0 = split.begin(b);
      const int64_t r1 = split.end(b);
      if (interleaved) {
        GemmInterleavedRows(type, w.data(), rows, kDecodeK, r0, r1, xq.data(), x_row_bytes, 1,
                            y.data(), rows);
      } else {
        GemmRows(type, w.data(), w_row_bytes, kDecodeK, r0, r1, xq.data(), x_row_bytes, 1, y.data(),
                 rows);
      }
    });
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(w.size()));
}

// The read-bandwidth bound (ReadBandwidthProbe) with N threads: the bound for an N-thread decode.
void BM_ReadBandwidth(benchmark::State& state, int n_threads) {
  ReadBandwidthProbe probe(n_threads);
  for (auto _ : state) state.SetIterationTime(probe.bytes() / probe.Measure(1));
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(probe.bytes()));
}

void RegisterAll() {
  const GgmlType types[] = {GgmlType::kF32,  GgmlType::kF16,  GgmlType::kBF16, GgmlType::kQ8_0,
                            GgmlType::kQ4_0, GgmlType::kQ4_K, GgmlType::kQ6_K};
  for (int i = 0; i <= static_cast<int>(DetectedCpuIsa()); ++i) {
    const CpuIsa isa = static_cast<CpuIsa>(i);
    for (GgmlType type : types) {
      for (int64_t nb : {1, 32}) {
        const std::string name = std::string("GemmRows/") + std::string(TraitsOf(type).name) + "/" +
                                 CpuIsaName(isa) + "/nb:" + std::to_string(nb) + "/2048x2048";
        benchmark::RegisterBenchmark(name.c_str(), BM_GemmRows, type, isa, 2048, 2048, nb);
      }
      // Decode from DRAM: the number to compare with ReadBandwidth.
      const std::string big = std::string("GemmRows/") + std::string(TraitsOf(type).name) + "/" +
                              CpuIsaName(isa) + "/nb:1/512MiB";
      benchmark::RegisterBenchmark(big.c_str(), BM_GemmRows, type, isa, DramRows(type), kDecodeK,
                                   1);
    }
  }
  for (GgmlType type : {GgmlType::kQ8_0, GgmlType::kQ4_K, GgmlType::kQ6_K}) {
    for (bool interleaved : {false, true}) {
      if (interleaved && !PrefersInterleavedRows(type)) continue;
      const std::string prefix = std::string("GemmRowsPool/") +
                                 std::string(TraitsOf(type).name) + (interleaved ? "x16" : "");
      for (int n_threads : {1, 2}) {
        const std::string name = prefix + "/nb:1/512MiB/threads:" + std::to_string(n_threads);
        benchmark::RegisterBenchmark(name.c_str(), BM_GemmRowsPool, type, interleaved, n_threads,
                                     DramRows(type))
            ->UseRealTime();
      }
      for (int64_t cached_rows : {64, 256}) {
        const std::string cached =
            prefix + "/nb:1/" + std::to_string(cached_rows) + "x4096/threads:1";
        benchmark::RegisterBenchmark(cached.c_str(), BM_GemmRowsPool, type, interleaved, 1,
                                     cached_rows)
            ->UseRealTime();
      }
    }
  }
  for (int n_threads : {1, 2}) {
    const std::string name = "ReadBandwidth/512MiB/threads:" + std::to_string(n_threads);
    benchmark::RegisterBenchmark(name.c_str(), BM_ReadBandwidth, n_threads)->UseManualTime();
  }
}

}  // namespace
}  // namespace memoria

int main(int argc, char** argv) {
  memoria::RegisterAll();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
