#include "engine/quant/quant.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "engine/gguf/ggml_type.h"
#include "engine/quant/blocks.h"
#include "engine/quant/fp16.h"
#include "gtest/gtest.h"

namespace memoria {
namespace {

std::vector<float> Gaussian(int64_t n, uint32_t seed, float sigma = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, sigma);
  std::vector<float> x(n);
  for (float& v : x) v = dist(rng);
  return x;
}

std::vector<float> RoundTrip(GgmlType type, const std::vector<float>& x) {
  const int64_t n = static_cast<int64_t>(x.size());
  std::vector<uint8_t> q(GgmlRowBytes(type, n));
  QuantizeRow(type, x.data(), q.data(), n);
  std::vector<float> y(n);
  DequantizeRow(type, q.data(), y.data(), n);
  return y;
}

double RelativeRmsError(const std::vector<float>& x, const std::vector<float>& y) {
  double err = 0, norm = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    err += (static_cast<double>(x[i]) - y[i]) * (static_cast<double>(x[i]) - y[i]);
    norm += static_cast<double>(x[i]) * x[i];
  }
  return std::sqrt(err / norm);
}

TEST(QuantTest, ComputeTypes) {
  for (GgmlType t : {GgmlType::kF32, GgmlType::kF16, GgmlType::kBF16, GgmlType::kQ8_0,
                     GgmlType::kQ4_0, GgmlType::kQ4_K, GgmlType::kQ6_K}) {
    EXPECT_TRUE(IsComputeType(t)) << TraitsOf(t).name;
  }
  for (GgmlType t : {GgmlType::kQ4_1, GgmlType::kQ5_K, GgmlType::kQ8_K, GgmlType::kI32}) {
    EXPECT_FALSE(IsComputeType(t)) << TraitsOf(t).name;
  }
}

// ---- hand-built blocks: dequantization is exactly the format's definition ----

TEST(QuantTest, Q8_0BlockDequantizesExactly) {
  BlockQ8_0 b[2];
  b[0].d = 0x3800;  // 0.5
  b[1].d = Fp32ToFp16(0.1f);
  for (int i = 0; i < 32; ++i) {
    b[0].qs[i] = static_cast<int8_t>(i * 8 - 128);
    b[1].qs[i] = static_cast<int8_t>(127 - i);
  }
  float y[64];
  DequantizeRow(GgmlType::kQ8_0, b, y, 64);
  const float d1 = Fp16ToFp32(b[1].d);
  for (int i = 0; i < 32; ++i) {
    EXPECT_EQ(y[i], 0.5f * (i * 8 - 128));
    EXPECT_EQ(y[32 + i], d1 * static_cast<float>(127 - i));
  }
}

TEST(QuantTest, Q4_0BlockDequantizesExactly) {
  BlockQ4_0 b;
  b.d = 0x4000;  // 2.0
  for (int j = 0; j < 16; ++j) b.qs[j] = static_cast<uint8_t>(j | ((15 - j) << 4));
  float y[32];
  DequantizeRow(GgmlType::kQ4_0, &b, y, 32);
  for (int j = 0; j < 16; ++j) {
    EXPECT_EQ(y[j], 2.0f * (j - 8)) << j;            // low nibbles: first half
    EXPECT_EQ(y[j + 16], 2.0f * (15 - j - 8)) << j;  // high nibbles: second half
  }
}

// Packs 6-bit scales and mins the way the format lays them out: entries 0-3 in the low 6 bits of
// bytes 0-3 (scales) and 4-7 (mins); entries 4-7 split into a low nibble in bytes 8-11 (scale
// low, min high nibble) and their top 2 bits in the top bits of bytes 0-3 / 4-7.
void PackQ4KScales(const int* sc, const int* mn, uint8_t* out) {
  for (int j = 0; j < 4; ++j) {
    out[j] = static_cast<uint8_t>((sc[j] & 63) | ((sc[j + 4] >> 4) << 6));
    out[j + 4] = static_cast<uint8_t>((mn[j] & 63) | ((mn[j + 4] >> 4) << 6));
    out[j + 8] = static_cast<uint8_t>((sc[j + 4] & 15) | ((mn[j + 4] & 15) << 4));
  }
}

TEST(QuantTest, Q4KBlockDequantizesExactly) {
  const int sc[8] = {1, 17, 33, 63, 5, 40, 20, 63};
  const int mn[8] = {0, 10, 63, 32, 7, 48, 15, 1};
  BlockQ4_K b;
  b.d = Fp32ToFp16(0.0123f);
  b.dmin = Fp32ToFp16(0.0456f);
  PackQ4KScales(sc, mn, b.scales);
  for (int c = 0; c < 4; ++c) {
    for (int l = 0; l < 32; ++l)
      b.qs[32 * c + l] = static_cast<uint8_t>((l % 16) | (((l + 3 * c) % 16) << 4));
  }
  float y[256];
  DequantizeRow(GgmlType::kQ4_K, &b, y, 256);
  const float d = Fp16ToFp32(b.d), dmin = Fp16ToFp32(b.dmin);
  for (int c = 0; c < 4; ++c) {
    for (int l = 0; l < 32; ++l) {
      // Sub-block 2c from the low nibbles, 2c+1 from the high nibbles: (d*sc)*q - dmin*m.
      const float lo = (d * sc[2 * c]) * static_cast<float>(l % 16) - dmin * mn[2 * c];
      const float hi =
          (d * sc[2 * c + 1]) * static_cast<float>((l + 3 * c) % 16) - dmin * mn[2 * c + 1];
      ASSERT_EQ(y[64 * c + l], lo) << c << " " << l;
      ASSERT_EQ(y[64 * c + 32 + l], hi) << c << " " << l;
    }
  }
}

// Element e of a Q6_K block: half h = e / 128, within it quarter t = (e % 128) / 32 and l = e % 32;
// the low 4 bits are nibble t / 2 of ql[64h + 32 (t % 2) + l], the high 2 bits are bits 2t, 2t+1
// of qh[32h + l]; the scale is scales[e / 16].
void SetQ6KQuant(BlockQ6_K* b, int e, int q) {
  const int h = e / 128, t = (e % 128) / 32, l = e % 32;
  uint8_t& lo = b->ql[64 * h + 32 * (t % 2) + l];
  lo = static_cast<uint8_t>(t < 2 ? (lo & 0xf0) | (q & 15) : (lo & 0x0f) | ((q & 15) << 4));
  uint8_t& hi = b->qh[32 * h + l];
  hi = static_cast<uint8_t>((hi & ~(3 << (2 * t))) | ((q >> 4) << (2 * t)));
}

TEST(QuantTest, Q6KBlockDequantizesExactly) {
  BlockQ6_K b;
  std::memset(&b, 0, sizeof b);
  b.d = Fp32ToFp16(0.0071f);
  for (int g = 0; g < 16; ++g) b.scales[g] = static_cast<int8_t>(g * 17 - 128);
  for (int e = 0; e < 256; ++e) SetQ6KQuant(&b, e, (e * 7 + 3) % 64);
  float y[256];
  DequantizeRow(GgmlType::kQ6_K, &b, y, 256);
  const float d = Fp16ToFp32(b.d);
  for (int e = 0; e < 256; ++e) {
    ASSERT_EQ(y[e],
              d * static_cast<float>(b.scales[e / 16]) * static_cast<float>((e * 7 + 3) % 64 - 32))
        << e;
  }
}

TEST(QuantTest, HalfTypesDequantizeExactly) {
  const uint16_t h[4] = {0x3c00, 0xc000, 0x0001, 0x7bff};
  float y[4];
  DequantizeRow(GgmlType::kF16, h, y, 4);
  EXPECT_EQ(y[0], 1.0f);
  EXPECT_EQ(y[1], -2.0f);
  EXPECT_EQ(y[2], std::ldexp(1.0f, -24));
  EXPECT_EQ(y[3], 65504.0f);
  const uint16_t bf[3] = {0x3f80, 0xc040, 0x0001};
  DequantizeRow(GgmlType::kBF16, bf, y, 3);
  EXPECT_EQ(y[0], 1.0f);
  EXPECT_EQ(y[1], -3.0f);
  EXPECT_EQ(y[2], std::ldexp(1.0f, -133));
}

// ---- quantize / dequantize round trips ----

struct RoundTripCase {
  GgmlType type;
  double max_relative_rms;  // bound on ||x - dequant(quant(x))|| / ||x|| for Gaussian data
};

class RoundTripTest : public ::testing::TestWithParam<RoundTripCase> {};

TEST_P(RoundTripTest, GaussianErrorWithinBound) {
  const RoundTripCase& c = GetParam();
  for (uint32_t seed : {1u, 2u, 3u}) {
    const std::vector<float> x = Gaussian(4096, seed, seed == 3 ? 1e-3f : 1.0f);
    const double err = RelativeRmsError(x, RoundTrip(c.type, x));
    EXPECT_LT(err, c.max_relative_rms) << TraitsOf(c.type).name << " seed " << seed;
  }
}

TEST_P(RoundTripTest, ZerosStayZero) {
  const std::vector<float> x(512, 0.0f);
  for (float v : RoundTrip(GetParam().type, x)) EXPECT_EQ(v, 0.0f);
}

TEST_P(RoundTripTest, ValuesOfOneSign) {
  // Negative, shifted data exercises the Q4_K min and the sign of the Q4_0 / Q6_K scales.
  std::vector<float> x = Gaussian(1024, 11);
  for (float& v : x) v = -std::fabs(v) - 2.0f;
  const double err = RelativeRmsError(x, RoundTrip(GetParam().type, x));
  EXPECT_LT(err, GetParam().max_relative_rms) << TraitsOf(GetParam().type).name;
}

INSTANTIATE_TEST_SUITE_P(
    Types, RoundTripTest,
    // Measured on 64K Gaussian values: f16 2.1e-4, bf16 1.7e-3, q8_0 5.4e-3, q4_0 0.086,
    // q4_K 0.070, q6_K 0.017. The K-quant bounds are tight (about 5%): their fits trade search
    // effort for speed, and these bounds keep that trade from costing quality.
    ::testing::Values(RoundTripCase{GgmlType::kF32, 1e-12}, RoundTripCase{GgmlType::kF16, 3e-4},
                      RoundTripCase{GgmlType::kBF16, 2.2e-3},
                      RoundTripCase{GgmlType::kQ8_0, 6.2e-3}, RoundTripCase{GgmlType::kQ4_0, 0.095},
                      RoundTripCase{GgmlType::kQ4_K, 0.074},
                      RoundTripCase{GgmlType::kQ6_K, 0.0182}),
    [](const ::testing::TestParamInfo<RoundTripCase>& info) {
      return std::string(TraitsOf(info.param.type).name);
    });

// Quants are rounded against the exact step amax / 127 (as llama.cpp quantizes activations), so
// an element is off by at most half that step plus its quant times the step's fp16 rounding.
TEST(QuantTest, Q8_0ElementErrorIsHalfAStepPlusScaleRounding) {
  const std::vector<float> x = Gaussian(1024, 5);
  std::vector<BlockQ8_0> q(1024 / 32);
  QuantizeRow(GgmlType::kQ8_0, x.data(), q.data(), 1024);
  std::vector<float> y(1024);
  DequantizeRow(GgmlType::kQ8_0, q.data(), y.data(), 1024);
  for (int i = 0; i < 1024; ++i) {
    float amax = 0;
    for (int j = i / 32 * 32; j < i / 32 * 32 + 32; ++j) amax = std::max(amax, std::fabs(x[j]));
    const float step = amax / 127;
    const float d = Fp16ToFp32(q[i / 32].d);
    const float bound = 0.5f * step + std::fabs(static_cast<float>(q[i / 32].qs[i % 32])) * std::fabs(d - step);
    EXPECT_LE(std::fabs(x[i] - y[i]), bound * 1.001f + 1e-7f) << i;
  }
}

TEST(QuantTest, Q4_0LargestMagnitudeIsExactlyRepresented) {
  std::vector<float> x = Gaussian(64, 9);
  // The largest magnitude of a block maps to level -8 (d = -max / 8, exact in fp16 here).
  x[5] = -7.0f;
  x[40] = 4.5f;
  std::vector<float> y = RoundTrip(GgmlType::kQ4_0, x);
  EXPECT_EQ(y[5], -7.0f);
  EXPECT_EQ(y[40], 4.5f);
}

TEST(QuantTest, Q8KQuantsAndGroupSums) {
  const std::vector<float> x = Gaussian(512, 21, 3.0f);
  std::vector<BlockQ8_K> q(2);
  QuantizeRow(GgmlType::kQ8_K, x.data(), q.data(), 512);
  for (int b = 0; b < 2; ++b) {
    float amax = 0;
    for (int i = 0; i < 256; ++i) amax = std::max(amax, std::fabs(x[256 * b + i]));
    EXPECT_FLOAT_EQ(q[b].d, amax / 127);
    for (int i = 0; i < 256; ++i) {
      EXPECT_GE(q[b].qs[i], -127);
      EXPECT_LE(std::fabs(q[b].d * q[b].qs[i] - x[256 * b + i]), q[b].d * 0.5f * 1.001f);
    }
    for (int g = 0; g < 16; ++g) {
      int sum = 0;
      for (int l = 0; l < 16; ++l) sum += q[b].qs[16 * g + l];
      EXPECT_EQ(q[b].bsums[g], sum);
    }
  }
}

TEST(QuantTest, Q4KUsesTheMinForShiftedData) {
  // All values in [-11, -10]: without the min, 4 bits over [-11, 0] would give steps of ~0.7.
  std::vector<float> x(256);
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> dist(-11.0f, -10.0f);
  for (float& v : x) v = dist(rng);
  const std::vector<float> y = RoundTrip(GgmlType::kQ4_K, x);
  for (int i = 0; i < 256; ++i) EXPECT_NEAR(y[i], x[i], 0.06f) << i;
}

TEST(QuantTest, KQuantZeroSubBlocksStayZeroBesideLargeValues) {
  // A zero sub-block gets a zero scale and min while its neighbours set large super-block scales;
  // a zero step must quantize to level 0 (and, for Q4_K, pick the zero min), not divide by zero.
  std::vector<float> x = Gaussian(512, 13, 100.0f);
  std::fill(x.begin() + 32, x.begin() + 64, 0.0f);    // Q4_K sub-block 1, Q6_K groups 2 and 3
  std::fill(x.begin() + 256, x.begin() + 272, 0.0f);  // Q6_K group 0 of the second block
  for (GgmlType type : {GgmlType::kQ4_K, GgmlType::kQ6_K}) {
    const std::vector<float> y = RoundTrip(type, x);
    for (int i = 32; i < 64; ++i) EXPECT_EQ(y[i], 0.0f) << TraitsOf(type).name << " " << i;
    if (type == GgmlType::kQ6_K) {
      for (int i = 256; i < 272; ++i) EXPECT_EQ(y[i], 0.0f) << i;
    }
    EXPECT_LT(RelativeRmsError(x, y), 0.074) << TraitsOf(type).name;
  }
}

}  // namespace
}  // namespace memoria
