#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "engine/quant/fp16.h"
#include "engine/quant/gemm.h"
#include "gtest/gtest.h"

namespace memoria {
namespace {

float FromBits(uint32_t bits) {
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

uint32_t ToBits(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof bits);
  return bits;
}

bool IsHalfNan(uint16_t h) { return (h & 0x7c00) == 0x7c00 && (h & 0x3ff) != 0; }

// The value of a half from its definition, independent of the bit tricks under test.
double HalfValue(uint16_t h) {
  const int exp = (h >> 10) & 0x1f;
  const int mant = h & 0x3ff;
  const double sign = (h & 0x8000) ? -1 : 1;
  if (exp == 0) return sign * std::ldexp(mant, -24);
  return sign * std::ldexp(1024 + mant, exp - 25);
}

TEST(Fp16Test, EveryFiniteHalfConvertsExactlyAndBack) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const uint16_t half = static_cast<uint16_t>(h);
    const float f = Fp16ToFp32(half);
    if ((half & 0x7c00) == 0x7c00) {
      if (half & 0x3ff) {
        EXPECT_TRUE(std::isnan(f)) << std::hex << h;
      } else {
        EXPECT_TRUE(std::isinf(f)) << std::hex << h;
        EXPECT_EQ(Fp32ToFp16(f), half);
      }
      continue;
    }
    ASSERT_EQ(static_cast<double>(f), HalfValue(half)) << std::hex << h;
    ASSERT_EQ(Fp32ToFp16(f), half) << std::hex << h;
  }
}

TEST(Fp16Test, KnownValues) {
  EXPECT_EQ(Fp32ToFp16(1.0f), 0x3c00);
  EXPECT_EQ(Fp32ToFp16(-2.0f), 0xc000);
  EXPECT_EQ(Fp32ToFp16(0.0f), 0x0000);
  EXPECT_EQ(Fp32ToFp16(-0.0f), 0x8000);
  EXPECT_EQ(Fp32ToFp16(65504.0f), 0x7bff);                  // largest half
  EXPECT_EQ(Fp32ToFp16(std::ldexp(1.0f, -14)), 0x0400);     // smallest normal
  EXPECT_EQ(Fp32ToFp16(std::ldexp(1.0f, -24)), 0x0001);     // smallest subnormal
  EXPECT_EQ(Fp32ToFp16(std::ldexp(1023.0f, -24)), 0x03ff);  // largest subnormal
  EXPECT_EQ(Fp32ToFp16(std::numeric_limits<float>::infinity()), 0x7c00);
  EXPECT_EQ(Fp32ToFp16(-std::numeric_limits<float>::infinity()), 0xfc00);
}

TEST(Fp16Test, RoundsToNearestEven) {
  // Normal range: ulp of 1.0 is 2^-10.
  EXPECT_EQ(Fp32ToFp16(1.0f + std::ldexp(1.0f, -11)), 0x3c00);      // tie, down to even
  EXPECT_EQ(Fp32ToFp16(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3c02);  // tie, up to even
  EXPECT_EQ(Fp32ToFp16(1.0f + std::ldexp(1.0f, -11) + std::ldexp(1.0f, -20)), 0x3c01);
  EXPECT_EQ(Fp32ToFp16(1.0f + std::ldexp(1.0f, -11) - std::ldexp(1.0f, -20)), 0x3c00);
  EXPECT_EQ(Fp32ToFp16(2047.0f / 1024 + std::ldexp(1.0f, -11)), 0x4000);  // carry into exponent
  // Subnormal range: units of 2^-24.
  EXPECT_EQ(Fp32ToFp16(std::ldexp(1.0f, -25)), 0x0000);     // tie between 0 and 1 -> 0
  EXPECT_EQ(Fp32ToFp16(std::ldexp(3.0f, -25)), 0x0002);     // tie between 1 and 2 -> 2
  EXPECT_EQ(Fp32ToFp16(std::ldexp(1.0001f, -25)), 0x0001);  // just above the tie
  EXPECT_EQ(Fp32ToFp16(-std::ldexp(5.0f, -25)), 0x8002);    // tie between 2 and 3 -> 2
  EXPECT_EQ(Fp32ToFp16(std::ldexp(1.0f, -30)), 0x0000);
  EXPECT_EQ(Fp32ToFp16(std::ldexp(2047.0f, -25)), 0x0400);  // rounds up into the normals
  EXPECT_EQ(Fp32ToFp16(FromBits(1)), 0x0000);               // float denormal
  // Overflow: 65520 is the tie between 65504 and 65536 (inf), and goes to the even inf.
  EXPECT_EQ(Fp32ToFp16(65519.996f), 0x7bff);
  EXPECT_EQ(Fp32ToFp16(65520.0f), 0x7c00);
  EXPECT_EQ(Fp32ToFp16(-1e10f), 0xfc00);
}

TEST(Fp16Test, NanStaysNan) {
  for (uint32_t bits : {0x7fc00000u, 0x7f800001u, 0xffc00000u, 0x7fbfffffu, 0x7f802000u}) {
    const uint16_t h = Fp32ToFp16(FromBits(bits));
    EXPECT_TRUE(IsHalfNan(h)) << std::hex << bits << " -> " << h;
    EXPECT_EQ(h & 0x8000, (bits >> 16) & 0x8000);
    EXPECT_TRUE(std::isnan(Fp16ToFp32(h)));
  }
  EXPECT_TRUE(std::isnan(Fp16ToFp32(0x7e00)));
  EXPECT_TRUE(std::isnan(Fp16ToFp32(0xfc01)));
}

// The portable conversion must agree bit for bit with the hardware one (F16C / AVX-512) used by
// Fp32ToFp16Row, for every kind of input, so activations do not depend on the kernel path.
TEST(Fp16Test, RowConversionMatchesScalarOnEveryPath) {
  std::mt19937 rng(7);
  std::vector<float> x;
  for (int i = 0; i < 20000; ++i) x.push_back(FromBits(rng()));  // every exponent, NaNs included
  for (int i = 0; i < 20000; ++i) {
    // Concentrate on the half range, its subnormals and exact ties.
    const int exp = static_cast<int>(rng() % 40) - 27;
    const uint32_t mant = (rng() & 0x7fffff) & (rng() % 2 ? 0x7fe000u : 0x7fffffu);
    x.push_back(
        FromBits((rng() & 0x80000000u) | ((127 + exp) << 23) | mant | (rng() % 2 ? 0x1000 : 0)));
  }
  for (float v : {0.0f, -0.0f, 65504.0f, 65519.996f, 65520.0f, 1e-8f, std::ldexp(1.0f, -25),
                  std::ldexp(3.0f, -25), std::numeric_limits<float>::infinity(),
                  std::numeric_limits<float>::quiet_NaN()}) {
    x.push_back(v);
  }
  std::vector<uint16_t> expected(x.size());
  for (size_t i = 0; i < x.size(); ++i) expected[i] = Fp32ToFp16(x[i]);
  for (int isa = 0; isa <= static_cast<int>(DetectedCpuIsa()); ++isa) {
    SetCpuIsaForTesting(static_cast<CpuIsa>(isa));
    std::vector<uint16_t> got(x.size() + 1, 0xabcd);
    Fp32ToFp16Row(x.data(), got.data(), static_cast<int64_t>(x.size()));
    for (size_t i = 0; i < x.size(); ++i) {
      ASSERT_EQ(got[i], expected[i])
          << CpuIsaName(static_cast<CpuIsa>(isa)) << " input bits " << std::hex << ToBits(x[i]);
    }
    EXPECT_EQ(got[x.size()], 0xabcd) << "wrote past the end";
  }
  SetCpuIsaForTesting(DetectedCpuIsa());
}

// Every half, on every path, widens to the portable conversion's float (bit for bit; NaNs keep
// their payload), including the tail after the last whole vector.
TEST(Fp16Test, RowWideningMatchesScalarOnEveryPath) {
  std::vector<uint16_t> x(0x10000 + 3);
  for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<uint16_t>(i);
  for (int isa = 0; isa <= static_cast<int>(DetectedCpuIsa()); ++isa) {
    SetCpuIsaForTesting(static_cast<CpuIsa>(isa));
    std::vector<float> got(x.size() + 1, 1234.5f);
    Fp16ToFp32Row(x.data(), got.data(), static_cast<int64_t>(x.size()));
    for (size_t i = 0; i < x.size(); ++i) {
      ASSERT_EQ(ToBits(got[i]), ToBits(Fp16ToFp32(x[i])))
          << CpuIsaName(static_cast<CpuIsa>(isa)) << " half " << std::hex << x[i];
    }
    EXPECT_EQ(got[x.size()], 1234.5f) << "wrote past the end";
  }
  SetCpuIsaForTesting(DetectedCpuIsa());
}

TEST(Bf16Test, EveryBf16ConvertsBack) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const float f = Bf16ToFp32(static_cast<uint16_t>(h));
    EXPECT_EQ(ToBits(f), h << 16);
    if (!std::isnan(f)) {
      ASSERT_EQ(Fp32ToBf16(f), h) << std::hex << h;
    }
  }
}

TEST(Bf16Test, RoundsToNearestEven) {
  EXPECT_EQ(Fp32ToBf16(1.0f), 0x3f80);
  EXPECT_EQ(Fp32ToBf16(FromBits(0x3f808000)), 0x3f80);  // tie, down to even
  EXPECT_EQ(Fp32ToBf16(FromBits(0x3f818000)), 0x3f82);  // tie, up to even
  EXPECT_EQ(Fp32ToBf16(FromBits(0x3f808001)), 0x3f81);
  EXPECT_EQ(Fp32ToBf16(FromBits(0x3f807fff)), 0x3f80);
  EXPECT_EQ(Fp32ToBf16(FromBits(0x7f7fffff)), 0x7f80);  // largest float rounds to inf
  EXPECT_EQ(Fp32ToBf16(FromBits(0x00000001)), 0x0000);  // float denormal
  EXPECT_EQ(Fp32ToBf16(FromBits(0x00018000)), 0x0002);  // denormal tie, up to even
  EXPECT_EQ(Fp32ToBf16(-std::numeric_limits<float>::infinity()), 0xff80);
}

TEST(Bf16Test, NanStaysQuietNan) {
  EXPECT_EQ(Fp32ToBf16(FromBits(0x7f800001)), 0x7fc0);  // signalling, payload below bf16 bits
  EXPECT_EQ(Fp32ToBf16(FromBits(0xffc00000)), 0xffc0);
  EXPECT_EQ(Fp32ToBf16(FromBits(0x7fffffff)), 0x7fff);  // must not round up into the sign
  EXPECT_TRUE(std::isnan(Bf16ToFp32(Fp32ToBf16(std::numeric_limits<float>::quiet_NaN()))));
}

}  // namespace
}  // namespace memoria
