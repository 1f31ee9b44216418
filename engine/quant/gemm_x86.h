#ifndef MEMORIA_ENGINE_QUANT_GEMM_X86_H_
#define MEMORIA_ENGINE_QUANT_GEMM_X86_H_

// Small helpers shared by the x86 SIMD kernel files (gemm_avx2.cc, gemm_avx512.cc). Each of those
// files is compiled with its own -m flags, so these stay in an unnamed namespace: every file gets
// its own copy built for its instruction set, and no inline function is shared across them (which
// would let the linker pick the AVX-512 build for the AVX2 path).

#include <immintrin.h>

#include <cstdint>
#include <cstring>

namespace memoria::gemm_internal {
namespace {

inline float LoadFp16(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, sizeof h);
  return _cvtsh_ss(h);
}

inline float LoadF32(const uint8_t* p) {
  float f;
  std::memcpy(&f, p, sizeof f);
  return f;
}

// Decode streams each weight row once from memory. The hardware prefetcher alone leaves too
// few lines in flight when several rows are read at once with work between the loads, so
// decode tiles also request the lines kPrefetchDistance bytes ahead in every row they read.
constexpr int kPrefetchDistance = 1024;

template <int kLines>
inline void Prefetch(const uint8_t* p) {
  for (int i = 0; i < kLines; ++i) {
    _mm_prefetch(reinterpret_cast<const char*>(p + kPrefetchDistance + 64 * i), _MM_HINT_T0);
  }
}

}  // namespace
}  // namespace memoria::gemm_internal

#endif  // MEMORIA_ENGINE_QUANT_GEMM_X86_H_
