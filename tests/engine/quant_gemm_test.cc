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
#include "engine/quant/fp16.h"
#include "engine/quant/gemm.h"
#include "engine/quant/quant.h"
#include "gtest/gtest.h"
#include "tests/engine/kernel_test_util.h"

namespace memoria {
namespace {

constexpr float kUntouched = 12345.0f;

// A weight matrix and a batch of activations, with the dequantized values a reference needs.
struct Problem {
  GgmlType type;
  int64_t rows, k, nb;
  size_t w_row_bytes, x_row_bytes;
  std::vector<uint8_t> w, xq;
  std::vector<float> x;      // float activations, nb x k
  std::vector<float> w_deq;  // rows x k
  std::vector<float> x_deq;  // nb x k, what the kernel multiplies with

  Problem(GgmlType t, int64_t rows_in, int64_t k_in, int64_t nb_in, uint32_t seed, size_t pad)
      : type(t), rows(rows_in), k(k_in), nb(nb_in) {
    std::mt19937 rng(seed);
    const GgmlType dot_type = DotTypeFor(type);
    w_row_bytes = GgmlRowBytes(type, k) + pad;
    x_row_bytes = GgmlRowBytes(dot_type, k) + pad;
    w.assign(rows * w_row_bytes, 0xee);
    xq.assign(nb * x_row_bytes, 0xee);
    w_deq.resize(rows * k);
    for (int64_t r = 0; r < rows; ++r) {
      const std::vector<float> row = Gaussian(k, &rng);
      QuantizeRow(type, row.data(), w.data() + r * w_row_bytes, k);
      DequantizeRow(type, w.data() + r * w_row_bytes, w_deq.data() + r * k, k);
    }
    x = Gaussian(nb * k, &rng);
    x_deq.resize(nb * k);
    for (int64_t b = 0; b < nb; ++b) {
      ConvertActivationRow(dot_type, x.data() + b * k, xq.data() + b * x_row_bytes, k);
      const std::vector<float> d = DequantizeActivation(dot_type, xq.data() + b * x_row_bytes, k);
      std::copy(d.begin(), d.end(), x_deq.begin() + b * k);
    }
  }

  std::vector<float> Run(int64_t r0, int64_t r1, int64_t ldy) const {
    std::vector<float> y(nb * ldy, kUntouched);
    GemmRows(type, w.data(), w_row_bytes, k, r0, r1, xq.data(), x_row_bytes, nb, y.data(), ldy);
    return y;
  }
};

// How far the result may be from the dot product with the float activations, relative to
// ||w|| * ||x||: what converting the activations to the dot type costs (Cauchy-Schwarz bound).
double FloatActivationTolerance(GgmlType type) {
  switch (DotTypeFor(type)) {
    case GgmlType::kF32:
      return 1e-5;
    case GgmlType::kF16:
      return 1e-3;
    case GgmlType::kBF16:
      return 5e-3;
    default:  // 8-bit activations: at most half a step of amax / 127 per element
      return 2e-2;
  }
}

// Checks every output against two double-precision references: the exact dot product of what
// the kernel multiplies (dequantized weights and activations; only float rounding may differ)
// and the dot product with the original float activations.
void CheckAgainstReference(const Problem& p, const std::vector<float>& y, int64_t r0, int64_t r1,
                           int64_t ldy) {
  const double tol = FloatActivationTolerance(p.type);
  for (int64_t b = 0; b < p.nb; ++b) {
    for (int64_t r = 0; r < ldy; ++r) {
      const float got = y[b * ldy + r];
      if (r < r0 || r >= r1) {
        ASSERT_EQ(got, kUntouched) << "wrote outside rows [r0, r1) at b=" << b << " r=" << r;
        continue;
      }
      double exact = 0, magnitude = 0, approx = 0, w_norm = 0, x_norm = 0;
      for (int64_t i = 0; i < p.k; ++i) {
        const double w = p.w_deq[r * p.k + i], xd = p.x_deq[b * p.k + i], x = p.x[b * p.k + i];
        exact += w * xd;
        magnitude += std::fabs(w * xd);
        approx += w * x;
        w_norm += w * w;
        x_norm += x * x;
      }
      ASSERT_NEAR(got, exact, 5e-5 * magnitude + 1e-30) << "b=" << b << " r=" << r;
      ASSERT_NEAR(got, approx, tol * std::sqrt(w_norm * x_norm)) << "b=" << b << " r=" << r;
    }
  }
}

std::vector<int64_t> KsFor(GgmlType type) {
  switch (type) {
    case GgmlType::kF32:
    case GgmlType::kF16:
    case GgmlType::kBF16:
      return {1, 7, 16, 33, 100, 512};
    case GgmlType::kQ8_0:
    case GgmlType::kQ4_0:
      return {32, 96, 256, 1056};  // odd block counts leave a single block after the pairs
    default:
      return {256, 768, 2048};
  }
}

const GgmlType kWeightTypes[] = {GgmlType::kF32,  GgmlType::kF16,  GgmlType::kBF16, GgmlType::kQ8_0,
                                 GgmlType::kQ4_0, GgmlType::kQ4_K, GgmlType::kQ6_K};

using GemmTest = TypeAndIsaTest;

TEST_P(GemmTest, MatchesReferenceForShapesRangesAndStrides) {
  struct Shape {
    int64_t rows, nb, r0, r1, ldy_extra;
  };
  // Decode (nb = 1) and batches around the 4-row tiles and the 64-row batch chunk, row ranges that
  // do not start at 0 or fill whole tiles, and output strides wider than the row count.
  const Shape shapes[] = {{1, 1, 0, 1, 0},   {5, 1, 0, 5, 1},  {13, 1, 2, 11, 0},
                          {16, 3, 0, 16, 2}, {7, 4, 1, 7, 0},  {9, 5, 0, 9, 3},
                          {6, 33, 0, 6, 1},  {5, 70, 1, 4, 0}, {4, 2, 0, 4, 0}};
  uint32_t seed = 1;
  for (int64_t k : KsFor(type())) {
    for (const Shape& s : shapes) {
      SCOPED_TRACE(::testing::Message() << "k=" << k << " rows=" << s.rows << " nb=" << s.nb
                                        << " r=[" << s.r0 << "," << s.r1 << ")");
      const Problem p(type(), s.rows, k, s.nb, seed, (seed % 2) * 64);
      ++seed;
      const int64_t ldy = s.rows + s.ldy_extra;
      CheckAgainstReference(p, p.Run(s.r0, s.r1, ldy), s.r0, s.r1, ldy);
      if (HasFatalFailure()) return;
    }
  }
}

TEST_P(GemmTest, AgreesWithScalarPath) {
  const int64_t k = KsFor(type()).back();
  const Problem p(type(), 37, k, 6, 99, 0);
  const std::vector<float> y = p.Run(0, 37, 37);
  SetCpuIsaForTesting(CpuIsa::kScalar);
  const std::vector<float> y_scalar = p.Run(0, 37, 37);
  for (int64_t b = 0; b < 6; ++b) {
    for (int64_t r = 0; r < 37; ++r) {
      double magnitude = 0;
      for (int64_t i = 0; i < k; ++i)
        magnitude += std::fabs(p.w_deq[r * k + i] * p.x_deq[b * k + i]);
      ASSERT_NEAR(y[b * 37 + r], y_scalar[b * 37 + r], 2e-5 * magnitude) << "b=" << b << " r=" << r;
    }
  }
}

TEST_P(GemmTest, ZeroWeightsGiveZero) {
  const int64_t k = KsFor(type()).back();
  Problem p(type(), 5, k, 3, 5, 0);
  std::vector<float> zeros(k, 0.0f);
  for (int64_t r = 0; r < 5; ++r)
    QuantizeRow(type(), zeros.data(), p.w.data() + r * p.w_row_bytes, k);
  for (float v : p.Run(0, 5, 5)) EXPECT_EQ(v, 0.0f);
}

INSTANTIATE_TEST_SUITE_P(TypesAndPaths, GemmTest,
                         ::testing::Combine(::testing::ValuesIn(kWeightTypes),
                                            ::testing::Values(CpuIsa::kScalar, CpuIsa::kAvx2,
                                                              CpuIsa::kAvx512)),
                         [](const ::testing::TestParamInfo<std::tuple<GgmlType, CpuIsa>>& info) {
                           return std::string(TraitsOf(std::get<0>(info.param)).name) + "_" +
                                  CpuIsaName(std::get<1>(info.param));
                         });

TEST(GemmDispatchTest, DotTypes) {
  EXPECT_EQ(DotTypeFor(GgmlType::kF32), GgmlType::kF32);
  EXPECT_EQ(DotTypeFor(GgmlType::kF16), GgmlType::kF16);
  EXPECT_EQ(DotTypeFor(GgmlType::kBF16), GgmlType::kBF16);
  EXPECT_EQ(DotTypeFor(GgmlType::kQ8_0), GgmlType::kQ8_0);
  EXPECT_EQ(DotTypeFor(GgmlType::kQ4_0), GgmlType::kQ8_0);
  EXPECT_EQ(DotTypeFor(GgmlType::kQ4_K), GgmlType::kQ8_K);
  EXPECT_EQ(DotTypeFor(GgmlType::kQ6_K), GgmlType::kQ8_K);
}

TEST(GemmDispatchTest, IsaOverride) {
  EXPECT_EQ(ActiveCpuIsa(), DetectedCpuIsa());
  SetCpuIsaForTesting(CpuIsa::kScalar);
  EXPECT_EQ(ActiveCpuIsa(), CpuIsa::kScalar);
  SetCpuIsaForTesting(DetectedCpuIsa());
  EXPECT_EQ(ActiveCpuIsa(), DetectedCpuIsa());
  EXPECT_STREQ(CpuIsaName(CpuIsa::kAvx512), "avx512");
}

// ---- float helpers used by attention ----

class VectorHelpersTest : public KernelPathTest<CpuIsa> {
 protected:
  CpuIsa isa() const override { return GetParam(); }
};

// silu(gate) * up against double precision, with every tail length and over the range where
// exp over- and underflows (there silu is within 1e-35 of its limits 0 and gate).
TEST_P(VectorHelpersTest, SiluMul) {
  std::mt19937 rng(23);
  std::uniform_real_distribution<float> wide(-100.0f, 100.0f);
  for (int64_t n : {0, 1, 7, 8, 9, 16, 33, 1000}) {
    SCOPED_TRACE(::testing::Message() << "n=" << n);
    std::vector<float> gate(n), up = Gaussian(n, &rng);
    for (int64_t i = 0; i < n; ++i) gate[i] = i % 2 == 0 ? wide(rng) : 4 * up[(i + 1) % n];
    const float specials[] = {0.0f, -0.0f, 1e-30f, -1e-30f, 87.0f, 88.5f, 89.0f, -87.0f,
                              -88.5f, -89.0f, -104.0f, 1e6f, -1e6f};
    for (size_t i = 0; i < std::size(specials) && static_cast<int64_t>(i) < n; ++i) {
      gate[i] = specials[i];
    }
    std::vector<float> out(n + 1, kUntouched);
    SiluMulF32(gate.data(), up.data(), out.data(), n);
    for (int64_t i = 0; i < n; ++i) {
      const double g = gate[i];
      const double want = g / (1 + std::exp(-g)) * up[i];
      EXPECT_NEAR(out[i], want, 1e-6 * std::fabs(want) + 1e-35) << "gate " << gate[i];
    }
    EXPECT_EQ(out[n], kUntouched);
    // In place, as the backend calls it.
    std::vector<float> in_place = gate;
    SiluMulF32(in_place.data(), up.data(), in_place.data(), n);
    for (int64_t i = 0; i < n; ++i) EXPECT_EQ(in_place[i], out[i]);
  }
}

TEST_P(VectorHelpersTest, SoftmaxNumerators) {
  std::mt19937 rng(29);
  for (int64_t n : {1, 2, 7, 8, 9, 16, 31, 100, 1027}) {
    SCOPED_TRACE(::testing::Message() << "n=" << n);
    std::vector<float> row = Gaussian(n, &rng);
    for (float& v : row) v *= 40;  // scores far apart: most weights underflow to ~0
    if (n > 3) row[3] = row[0];    // a tie at the max or elsewhere
    const float scale = 0.125f;
    double max_score = -INFINITY, want_sum = 0;
    for (float v : row) max_score = std::max(max_score, static_cast<double>(v) * scale);
    for (float v : row) want_sum += std::exp(static_cast<double>(v) * scale - max_score);
    std::vector<float> got = row;
    got.push_back(kUntouched);
    float got_max = 0;
    const float got_sum = SoftmaxNumeratorsF32(got.data(), n, scale, &got_max);
    EXPECT_EQ(got_max, static_cast<float>(max_score));  // a product of two floats, exact in double
    double total = 0;
    for (int64_t i = 0; i < n; ++i) {
      const double arg = static_cast<double>(row[i]) * scale - max_score;
      const double want = std::exp(arg);
      // Both paths round the argument to float: exp's relative error grows with |arg| by 2^-24.
      EXPECT_NEAR(got[i], want, want * (1e-6 + 1.2e-7 * std::fabs(arg)) + 1e-37) << "i=" << i;
      total += got[i];
    }
    EXPECT_NEAR(got_sum, want_sum, 1e-6 * want_sum);
    EXPECT_NEAR(got_sum, total, 1e-6 * total);
    EXPECT_EQ(got[n], kUntouched);
  }
}

// The f16 rows the cache would hold for `rows`.
std::vector<uint16_t> RoundedToFp16(const std::vector<float>& rows) {
  std::vector<uint16_t> rows16(rows.size());
  for (size_t i = 0; i < rows.size(); ++i) rows16[i] = Fp32ToFp16(rows[i]);
  return rows16;
}

// Several outputs (query heads) at once, each with its own weights; weights and outputs lie
// further apart than one row, as attention's score rows and partial outputs do.
TEST_P(VectorHelpersTest, AccumulateRows) {
  std::mt19937 rng(31);
  for (int64_t n_out : {1, 2, 3, 4, 5, 9}) {
    for (int64_t dim : {1, 8, 24, 64, 72, 128, 130}) {
      for (int64_t n : {0, 1, 3, 16}) {
        SCOPED_TRACE(::testing::Message() << "n_out=" << n_out << " dim=" << dim << " n=" << n);
        const int64_t ldw = n + 3, ldo = dim + 2;
        const std::vector<float> weights = Gaussian(n_out * ldw, &rng),
                                 rows = Gaussian(n * dim, &rng), out0 = Gaussian(n_out * ldo, &rng);
        const std::vector<uint16_t> rows16 = RoundedToFp16(rows);
        std::vector<float> out = out0, out16 = out0;
        AccumulateRowsF32(weights.data(), ldw, n_out, rows.data(), n, dim, out.data(), ldo);
        AccumulateRowsF16F32(weights.data(), ldw, n_out, rows16.data(), n, dim, out16.data(), ldo);
        for (int64_t h = 0; h < n_out; ++h) {
          for (int64_t c = 0; c < ldo; ++c) {
            const int64_t o = h * ldo + c;
            if (c >= dim) {  // the gap between outputs
              EXPECT_EQ(out[o], out0[o]);
              EXPECT_EQ(out16[o], out0[o]);
              continue;
            }
            double want = out0[o], want16 = out0[o], magnitude = std::fabs(out0[o]);
            for (int64_t t = 0; t < n; ++t) {
              const double w = weights[h * ldw + t];
              want += w * rows[t * dim + c];
              want16 += w * Fp16ToFp32(rows16[t * dim + c]);
              magnitude += std::fabs(w * rows[t * dim + c]);
            }
            EXPECT_NEAR(out[o], want, 1e-6 * magnitude) << "h=" << h << " c=" << c;
            EXPECT_NEAR(out16[o], want16, 1e-6 * magnitude) << "h=" << h << " c=" << c;
          }
        }
      }
    }
  }
}

// Several query heads against key rows, queries and scores further apart than one row, as in
// attention; head sizes with and without a vector multiple, row counts around the 8-row blocks.
// A key's score must not depend on where it falls among the rows or on how many queries share
// them: decode steps and prompt passes score the same key in different blocks.
TEST_P(VectorHelpersTest, DotRows) {
  std::mt19937 rng(37);
  for (int64_t n_queries : {1, 2, 3, 4, 7}) {
    for (int64_t dim : {1, 8, 20, 64, 128, 264}) {
      for (int64_t n : {0, 1, 7, 8, 9, 16, 21}) {
        SCOPED_TRACE(::testing::Message() << "queries=" << n_queries << " dim=" << dim
                                          << " n=" << n);
        const int64_t ldq = dim + 3, lds = n + 2;
        const std::vector<float> queries = Gaussian(n_queries * ldq, &rng),
                                 rows = Gaussian(n * dim, &rng);
        const std::vector<uint16_t> rows16 = RoundedToFp16(rows);
        std::vector<float> scores(n_queries * lds, kUntouched), scores16 = scores;
        DotRowsF32(queries.data(), ldq, n_queries, rows.data(), n, dim, scores.data(), lds);
        DotRowsF16F32(queries.data(), ldq, n_queries, rows16.data(), n, dim, scores16.data(), lds);
        for (int64_t j = 0; j < n_queries; ++j) {
          for (int64_t t = 0; t < lds; ++t) {
            const int64_t o = j * lds + t;
            if (t >= n) {  // the gap between score rows
              EXPECT_EQ(scores[o], kUntouched);
              EXPECT_EQ(scores16[o], kUntouched);
              continue;
            }
            double want = 0, want16 = 0, magnitude = 0;
            for (int64_t c = 0; c < dim; ++c) {
              const double q = queries[j * ldq + c];
              want += q * rows[t * dim + c];
              want16 += q * Fp16ToFp32(rows16[t * dim + c]);
              magnitude += std::fabs(q * rows[t * dim + c]);
            }
            EXPECT_NEAR(scores[o], want, 1e-6 * magnitude) << "j=" << j << " t=" << t;
            EXPECT_NEAR(scores16[o], want16, 1e-6 * magnitude) << "j=" << j << " t=" << t;
          }
        }
        // Each key alone, and the last query alone, score bit for bit the same.
        for (int64_t t = 0; t < n; ++t) {
          float alone = 0, alone16 = 0;
          const float* last = queries.data() + (n_queries - 1) * ldq;
          DotRowsF32(last, ldq, 1, rows.data() + t * dim, 1, dim, &alone, 1);
          DotRowsF16F32(last, ldq, 1, rows16.data() + t * dim, 1, dim, &alone16, 1);
          EXPECT_EQ(alone, scores[(n_queries - 1) * lds + t]) << "t=" << t;
          EXPECT_EQ(alone16, scores16[(n_queries - 1) * lds + t]) << "t=" << t;
        }
      }
    }
  }
}

// Activations quantize to the bytes of QuantizeRow on every path (the dot kernels of all paths
// then see the same values). Besides Gaussian blocks, one block each of ties (amax 127 makes the
// scale 1, so k + 0.5 must round to even), zeros, one outlier, tiny and huge magnitudes.
TEST_P(VectorHelpersTest, QuantizeActivationsAsQuantizeRow) {
  std::mt19937 rng(31);
  for (const GgmlType type : {GgmlType::kQ8_0, GgmlType::kQ8_K}) {
    const int64_t block = type == GgmlType::kQ8_0 ? kQK8_0 : kQK_K;
    for (int64_t k : {1536, 2048}) {
      SCOPED_TRACE(::testing::Message() << TraitsOf(type).name << " k=" << k);
      std::vector<float> x = Gaussian(k, &rng);
      for (int64_t i = 0; i < block; ++i) {
        x[i] = i == 0 ? 127.0f : static_cast<float>(i % 19) - 9.5f;  // ties
      }
      std::fill(x.data() + block, x.data() + 2 * block, 0.0f);
      x[2 * block + 6] = -1e4f;
      for (int64_t i = 3 * block; i < 4 * block; ++i) x[i] *= 1e-30f;
      for (int64_t i = 4 * block; i < 5 * block; ++i) x[i] *= 1e30f;
      const size_t bytes = GgmlRowBytes(type, k);
      std::vector<uint8_t> want(bytes), got(bytes + 1, 0xa5);
      QuantizeRow(type, x.data(), want.data(), k);
      ConvertActivationRow(type, x.data(), got.data(), k);
      for (size_t i = 0; i < bytes; ++i) ASSERT_EQ(got[i], want[i]) << "byte " << i;
      EXPECT_EQ(got[bytes], 0xa5);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Paths, VectorHelpersTest,
                         ::testing::Values(CpuIsa::kScalar, CpuIsa::kAvx2, CpuIsa::kAvx512),
                         [](const ::testing::TestParamInfo<CpuIsa>& info) {
                           return std::string(CpuIsaName(info.param));
                         });

TEST(ConvertActivationRowTest, MatchesTheRowConversions) {
  std::mt19937 rng(23);
  const std::vector<float> x = Gaussian(512, &rng);
  std::vector<float> f32(512);
  ConvertActivationRow(GgmlType::kF32, x.data(), f32.data(), 512);
  EXPECT_EQ(f32, x);
  for (GgmlType t : {GgmlType::kF16, GgmlType::kBF16, GgmlType::kQ8_0, GgmlType::kQ8_K}) {
    std::vector<uint8_t> got(GgmlRowBytes(t, 512)), want(GgmlRowBytes(t, 512));
    ConvertActivationRow(t, x.data(), got.data(), 512);
    QuantizeRow(t, x.data(), want.data(), 512);
    EXPECT_EQ(got, want) << TraitsOf(t).name;
  }
}

}  // namespace
}  // namespace memoria
