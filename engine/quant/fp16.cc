#include "engine/quant/fp16.h"

namespace memoria {

namespace {

uint32_t FloatBits(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof bits);
  return bits;
}

float BitsFloat(uint32_t bits) {
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

// Rounds `value >> shift` to nearest, ties to even (shift in [1, 31]).
uint32_t ShiftRoundEven(uint32_t value, int shift) {
  const uint32_t q = value >> shift;
  const uint32_t rem = value & ((1u << shift) - 1);
  const uint32_t half = 1u << (shift - 1);
  return q + ((rem > half || (rem == half && (q & 1))) ? 1 : 0);
}

}  // namespace

float Fp16ToFp32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
  const uint32_t exp = (h >> 10) & 0x1f;
  uint32_t mant = h & 0x3ff;
  if (exp == 0x1f) {  // inf; a NaN is quieted with its payload kept, as F16C's vcvtph2ps does
    return BitsFloat(sign | 0x7f800000 | (mant != 0 ? 0x400000 : 0) | (mant << 13));
  }
  if (exp != 0) return BitsFloat(sign | ((exp + 112) << 23) | (mant << 13));
  if (mant == 0) return BitsFloat(sign);
  // Subnormal half: normalize into a float exponent.
  uint32_t e = 113;
  while ((mant & 0x400) == 0) {
    mant <<= 1;
    --e;
  }
  return BitsFloat(sign | (e << 23) | ((mant & 0x3ff) << 13));
}

uint16_t Fp32ToFp16(float f) {
  const uint32_t bits = FloatBits(f);
  const uint32_t sign = (bits >> 16) & 0x8000;
  const uint32_t abs = bits & 0x7fffffff;
  // NaN: quiet it and keep the top payload bits, as F16C's vcvtps2ph does.
  if (abs > 0x7f800000) return static_cast<uint16_t>(sign | 0x7e00 | ((abs >> 13) & 0x3ff));
  // 65520 and above round to infinity (65504 is the largest half; 65520 ties to the even inf).
  if (abs >= 0x477ff000) return static_cast<uint16_t>(sign | 0x7c00);
  const uint32_t exp = abs >> 23;
  if (exp >= 113) {  // normal half: rebias; a mantissa carry correctly bumps the exponent
    const uint32_t rebased = ((exp - 112) << 23) | (abs & 0x7fffff);
    return static_cast<uint16_t>(sign | ShiftRoundEven(rebased, 13));
  }
  // Subnormal half (units of 2^-24); below 2^-25 everything rounds to zero.
  if (exp < 102) return static_cast<uint16_t>(sign);
  const uint32_t mant = (abs & 0x7fffff) | 0x800000;
  return static_cast<uint16_t>(sign | ShiftRoundEven(mant, static_cast<int>(126 - exp)));
}

uint16_t Fp32ToBf16(float f) {
  const uint32_t bits = FloatBits(f);
  if ((bits & 0x7fffffff) > 0x7f800000) return static_cast<uint16_t>((bits >> 16) | 0x40);
  const uint32_t rounded = bits + 0x7fff + ((bits >> 16) & 1);
  return static_cast<uint16_t>(rounded >> 16);
}

}  // namespace memoria
