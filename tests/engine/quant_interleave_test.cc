#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "engine/gguf/ggml_type.h"
#include "engine/quant/blocks.h"
#include "engine/quant/gemm.h"
#include "engine/quant/interleave.h"
#include "engine/quant/quant.h"
#include "gtest/gtest.h"
#include "tests/engine/kernel_test_util.h"

namespace memoria {
namespace {

constexpr float kUntouched = 12345.0f;

const GgmlType kInterleavedTypes[] = {GgmlType::kQ8_0, GgmlType::kQ4_K, GgmlType::kQ6_K};

// A matrix in row layout and interleaved, and activations in the interleaved kernels' format.
struct Problem {
  GgmlType type;
  int64_t rows, k, nb;
  size_t row_bytes, x_row_bytes;
  std::vector<uint8_t> w, w_interleaved, xq;
  std::vector<float> w_deq, x_deq;  // what the kernels multiply, as floats

  Problem(GgmlType t, int64_t rows_in, int64_t k_in, int64_t nb_in, uint32_t seed)
      : type(t), rows(rows_in), k(k_in), nb(nb_in) {
    std::mt19937 rng(seed);
    row_bytes = GgmlRowBytes(type, k);
    x_row_bytes = InterleavedActivationRowBytes(type, k);
    w.resize(rows * row_bytes);
    w_deq.resize(rows * k);
    for (int64_t r = 0; r < rows; ++r) {
      const std::vector<float> row = Gaussian(k, &rng);
      QuantizeRow(type, row.data(), w.data() + r * row_bytes, k);
      DequantizeRow(type, w.data() + r * row_bytes, w_deq.data() + r * k, k);
    }
    w_interleaved.assign(w.size(), 0xee);
    InterleaveRows(type, w.data(), rows, k, w_interleaved.data());
    xq.resize(nb * x_row_bytes);
    x_deq.resize(nb * k);
    for (int64_t b = 0; b < nb; ++b) {
      const std::vector<float> x = Gaussian(k, &rng);
      ConvertInterleavedActivationRow(type, x.data(), xq.data() + b * x_row_bytes, k);
      const std::vector<float> d =
          DequantizeActivation(DotTypeFor(type), xq.data() + b * x_row_bytes, k);
      std::copy(d.begin(), d.end(), x_deq.begin() + b * k);
    }
  }

  std::vector<float> Run(int64_t r0, int64_t r1, int64_t ldy) const {
    std::vector<float> y(nb * ldy, kUntouched);
    GemmInterleavedRows(type, w_interleaved.data(), rows, k, r0, r1, xq.data(), x_row_bytes, nb,
                        y.data(), ldy);
    return y;
  }
};

// Rows of one block, of an odd and of an even number of blocks (GroupBlockParts in blocks.h
// stores odd-index blocks rotated).
std::vector<int64_t> KsFor(GgmlType type) {
  if (type == GgmlType::kQ8_0) return {32, 96, 1024, 1056};
  return {256, 512, 768};
}

TEST(InterleaveTest, DeinterleavingRestoresEveryRowByteForByte) {
  for (GgmlType type : kInterleavedTypes) {
    for (int64_t rows : {5, 16, 37}) {  // all tail, one whole group, two groups and a tail
      for (int64_t k : KsFor(type)) {
        const Problem p(type, rows, k, 1, static_cast<uint32_t>(rows * k));
        std::vector<uint8_t> row(p.row_bytes);
        for (int64_t r = 0; r < rows; ++r) {
          DeinterleaveRow(type, p.w_interleaved.data(), rows, r, k, row.data());
          ASSERT_TRUE(std::equal(row.begin(), row.end(), p.w.begin() + r * p.row_bytes))
              << TraitsOf(type).name << " rows=" << rows << " k=" << k << " r=" << r;
        }
      }
    }
  }
}

TEST(InterleaveTest, ActivationRowIsQ8_0FollowedByBlockSums) {
  const int64_t k = 96;
  std::vector<float> x(k);
  for (int64_t i = 0; i < k; ++i) x[i] = 0.25f * static_cast<float>(i % 9) - 1.0f;
  std::vector<uint8_t> got(InterleavedActivationRowBytes(GgmlType::kQ8_0, k));
  ConvertInterleavedActivationRow(GgmlType::kQ8_0, x.data(), got.data(), k);
  std::vector<uint8_t> q8(GgmlRowBytes(GgmlType::kQ8_0, k));
  ConvertActivationRow(GgmlType::kQ8_0, x.data(), q8.data(), k);
  ASSERT_EQ(got.size(), q8.size() + 3 * sizeof(int32_t));
  EXPECT_TRUE(std::equal(q8.begin(), q8.end(), got.begin()));
  for (int b = 0; b < 3; ++b) {
    int32_t expected = 0;
    for (int i = 0; i < 32; ++i) expected += static_cast<int8_t>(q8[b * 34 + 2 + i]);
    int32_t sum;
    std::memcpy(&sum, got.data() + q8.size() + b * sizeof(int32_t), sizeof sum);
    EXPECT_EQ(sum, expected) << "block " << b;
  }
}

using InterleavedGemmTest = TypeAndIsaTest;

// Every output against a double-precision dot product of what the kernel multiplies (only float
// rounding may differ), and nothing written outside [r0, r1).
TEST_P(InterleavedGemmTest, MatchesReferenceForShapesAndRanges) {
  struct Shape {
    int64_t rows, nb, r0, r1, ldy_extra;
  };
  // Decode and batches around the 4-row activation tiles and the 64-row chunk; ranges of whole
  // groups, the tail alone, groups plus tail; decode with enough groups for every stream count
  // (Q8_0 reads 4 streams at once, k-quants 2) plus leftover groups.
  const Shape shapes[] = {{16, 1, 0, 16, 0},  {37, 1, 0, 37, 3}, {37, 3, 16, 37, 0},
                          {37, 4, 0, 16, 1},  {48, 5, 16, 32, 0}, {5, 2, 0, 5, 0},
                          {32, 70, 0, 32, 2}, {21, 9, 16, 21, 0}, {80, 1, 0, 80, 0},
                          {140, 1, 16, 140, 1}};
  uint32_t seed = 1;
  for (int64_t k : KsFor(type())) {
    for (const Shape& s : shapes) {
      SCOPED_TRACE(::testing::Message() << "k=" << k << " rows=" << s.rows << " nb=" << s.nb
                                        << " r=[" << s.r0 << "," << s.r1 << ")");
      const Problem p(type(), s.rows, k, s.nb, seed++);
      const int64_t ldy = s.rows + s.ldy_extra;
      const std::vector<float> y = p.Run(s.r0, s.r1, ldy);
      for (int64_t b = 0; b < s.nb; ++b) {
        for (int64_t r = 0; r < ldy; ++r) {
          const float got = y[b * ldy + r];
          if (r < s.r0 || r >= s.r1) {
            ASSERT_EQ(got, kUntouched) << "wrote outside [r0, r1) at b=" << b << " r=" << r;
            continue;
          }
          double exact = 0, magnitude = 0;
          for (int64_t i = 0; i < k; ++i) {
            const double t = static_cast<double>(p.w_deq[r * k + i]) * p.x_deq[b * k + i];
            exact += t;
            magnitude += std::fabs(t);
          }
          ASSERT_NEAR(got, exact, 5e-5 * magnitude + 1e-30) << "b=" << b << " r=" << r;
        }
      }
    }
  }
}

TEST_P(InterleavedGemmTest, ZeroWeightsGiveZero) {
  Problem p(type(), 32, 256, 3, 5);
  std::vector<float> zeros(p.k, 0.0f);
  for (int64_t r = 0; r < p.rows; ++r) {
    QuantizeRow(type(), zeros.data(), p.w.data() + r * p.row_bytes, p.k);
  }
  InterleaveRows(type(), p.w.data(), p.rows, p.k, p.w_interleaved.data());
  for (float v : p.Run(0, 32, 32)) EXPECT_EQ(v, 0.0f);
}

TEST_P(InterleavedGemmTest, RepacksOnlyWhereTheKernelsAreFaster) {
  EXPECT_EQ(PrefersInterleavedRows(type()), isa() != CpuIsa::kScalar);
  for (GgmlType t : {GgmlType::kF32, GgmlType::kF16, GgmlType::kBF16, GgmlType::kQ4_0}) {
    EXPECT_FALSE(PrefersInterleavedRows(t)) << TraitsOf(t).name;
  }
}

INSTANTIATE_TEST_SUITE_P(
    TypesAndIsas, InterleavedGemmTest,
    ::testing::Combine(::testing::ValuesIn(kInterleavedTypes),
                       ::testing::Values(CpuIsa::kScalar, CpuIsa::kAvx2, CpuIsa::kAvx512)),
    [](const ::testing::TestParamInfo<std::tuple<GgmlType, CpuIsa>>& info) {
      return std::string(TraitsOf(std::get<0>(info.param)).name) + "_" +
             CpuIsaName(std::get<1>(info.param));
    });

}  // namespace
}  // namespace memoria
