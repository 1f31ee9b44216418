#ifndef MEMORIA_ENGINE_QUANT_FP16_H_
#define MEMORIA_ENGINE_QUANT_FP16_H_

#include <cstdint>
#include <cstring>

namespace memoria {

// IEEE half and bfloat16 conversions, bit-exact and portable (no F16C needed).
float Fp16ToFp32(uint16_t h);
uint16_t Fp32ToFp16(float f);  // round to nearest even; overflow to inf; NaN stays NaN

inline float Bf16ToFp32(uint16_t h) {
  uint32_t bits = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}
uint16_t Fp32ToBf16(float f);  // round to nearest even; NaN stays quiet NaN

}  // namespace memoria

#endif  // MEMORIA_ENGINE_QUANT_FP16_H_
