#include "engine/quant/quant.h"

#include <emmintrin.h>
#include <xmmintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "engine/quant/blocks.h"
#include "engine/quant/fp16.h"
#include "engine/quant/quant_internal.h"

namespace memoria {

void DieUnsupportedType(const char* function, GgmlType type) {
  std::fprintf(stderr, "memoria: %s: unsupported tensor type %u\n", function,
               static_cast<unsigned>(type));
  std::abort();
}

void UnpackQ4KScales(const uint8_t* packed, uint8_t* scales, uint8_t* mins) {
  for (int j = 0; j < 4; ++j) {
    scales[j] = packed[j] & 63;
    mins[j] = packed[j + 4] & 63;
    scales[j + 4] = (packed[j + 8] & 0xf) | ((packed[j] >> 6) << 4);
    mins[j + 4] = (packed[j + 8] >> 4) | ((packed[j + 4] >> 6) << 4);
  }
}

namespace {

// Nearest integer, ties to even (the default rounding mode).
int Round(float x) { return static_cast<int>(std::lrintf(x)); }

// ---- dequantization, exactly as the format defines each element ----

void DequantizeQ8_0(const BlockQ8_0* blocks, float* y, int64_t n) {
  for (int64_t i = 0; i < n / kQK8_0; ++i) {
    const float d = Fp16ToFp32(blocks[i].d);
    for (int j = 0; j < kQK8_0; ++j) y[i * kQK8_0 + j] = blocks[i].qs[j] * d;
  }
}

void DequantizeQ4_0(const BlockQ4_0* blocks, float* y, int64_t n) {
  for (int64_t i = 0; i < n / kQK4_0; ++i) {
    const float d = Fp16ToFp32(blocks[i].d);
    float* out = y + i * kQK4_0;
    for (int j = 0; j < kQK4_0 / 2; ++j) {
      out[j] = ((blocks[i].qs[j] & 0xf) - 8) * d;
      out[j + kQK4_0 / 2] = ((blocks[i].qs[j] >> 4) - 8) * d;
    }
  }
}

void DequantizeQ4K(const BlockQ4_K* blocks, float* y, int64_t n) {
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    const BlockQ4_K& b = blocks[i];
    const float d = Fp16ToFp32(b.d);
    const float dmin = Fp16ToFp32(b.dmin);
    uint8_t scales[8], mins[8];
    UnpackQ4KScales(b.scales, scales, mins);
    float* out = y + i * kQK_K;
    // Each 32 bytes of qs hold two sub-blocks: low nibbles first, then high nibbles.
    for (int c = 0; c < 4; ++c) {
      const uint8_t* q = b.qs + 32 * c;
      const float d1 = d * scales[2 * c], m1 = dmin * mins[2 * c];
      const float d2 = d * scales[2 * c + 1], m2 = dmin * mins[2 * c + 1];
      for (int l = 0; l < 32; ++l) out[64 * c + l] = d1 * (q[l] & 0xf) - m1;
      for (int l = 0; l < 32; ++l) out[64 * c + 32 + l] = d2 * (q[l] >> 4) - m2;
    }
  }
}

void DequantizeQ6K(const BlockQ6_K* blocks, float* y, int64_t n) {
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    const BlockQ6_K& b = blocks[i];
    const float d = Fp16ToFp32(b.d);
    // Two halves of 128: ql[l] and ql[l + 32] carry four elements 32 apart in their nibbles,
    // qh[l] carries the four 2-bit high parts.
    for (int h = 0; h < 2; ++h) {
      const uint8_t* ql = b.ql + 64 * h;
      const uint8_t* qh = b.qh + 32 * h;
      const int8_t* sc = b.scales + 8 * h;
      float* out = y + i * kQK_K + 128 * h;
      for (int l = 0; l < 32; ++l) {
        const int g = l / 16;
        const int q1 = ((ql[l] & 0xf) | (((qh[l] >> 0) & 3) << 4)) - 32;
        const int q2 = ((ql[l + 32] & 0xf) | (((qh[l] >> 2) & 3) << 4)) - 32;
        const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
        const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
        out[l] = d * sc[g] * q1;
        out[l + 32] = d * sc[g + 2] * q2;
        out[l + 64] = d * sc[g + 4] * q3;
        out[l + 96] = d * sc[g + 6] * q4;
      }
    }
  }
}

// ---- quantization ----

void QuantizeQ8_0(const float* x, BlockQ8_0* blocks, int64_t n) {
  for (int64_t i = 0; i < n / kQK8_0; ++i) {
    const float* xb = x + i * kQK8_0;
    float amax = 0;
    for (int j = 0; j < kQK8_0; ++j) amax = std::max(amax, std::fabs(xb[j]));
    blocks[i].d = Fp32ToFp16(amax / 127);
    // The multiplier is 127 / amax, not the inverse of the stored (fp16-rounded) scale: this is
    // how llama.cpp quantizes activations, and matching it keeps greedy outputs in step with it.
    const float id = amax > 0 ? 127 / amax : 0;
    for (int j = 0; j < kQK8_0; ++j) blocks[i].qs[j] = std::clamp(Round(xb[j] * id), -127, 127);
  }
}

void QuantizeQ4_0(const float* x, BlockQ4_0* blocks, int64_t n) {
  for (int64_t i = 0; i < n / kQK4_0; ++i) {
    const float* xb = x + i * kQK4_0;
    // The value of largest magnitude maps to -8, the one level without a positive twin.
    float max = 0;
    for (int j = 0; j < kQK4_0; ++j) {
      if (std::fabs(xb[j]) > std::fabs(max)) max = xb[j];
    }
    blocks[i].d = Fp32ToFp16(max / -8);
    const float d = Fp16ToFp32(blocks[i].d);
    const float id = d != 0 ? 1 / d : 0;
    for (int j = 0; j < kQK4_0 / 2; ++j) {
      const int lo = std::clamp(Round(xb[j] * id) + 8, 0, 15);
      const int hi = std::clamp(Round(xb[j + kQK4_0 / 2] * id) + 8, 0, 15);
      blocks[i].qs[j] = static_cast<uint8_t>(lo | (hi << 4));
    }
  }
}

// Sums of q, q^2 and q * x over the levels q = clamp(round(a * x + b), qmin, qmax) of N values.
struct LevelSums {
  float q = 0, q2 = 0, qx = 0;
};

// The K-quant fits below run this loop for every candidate scale, so it is most of what writing a
// K-quant model costs. It is written in SSE2 (part of x86-64) because the compiler vectorizes
// neither the clamp nor the reordered sums by itself, and always inlined because a call costs
// about as much as the loop.
template <int N>
__attribute__((always_inline)) inline LevelSums SumLevels(const float* x, float a, float b,
                                                          float qmin, float qmax) {
  static_assert(N % 8 == 0);
  const __m128 va = _mm_set1_ps(a), vb = _mm_set1_ps(b);
  const __m128 lo = _mm_set1_ps(qmin), hi = _mm_set1_ps(qmax);
  // Two sets of partial sums halve the chains of dependent additions.
  __m128 sq[2] = {_mm_setzero_ps(), _mm_setzero_ps()};
  __m128 sq2[2] = {_mm_setzero_ps(), _mm_setzero_ps()};
  __m128 sqx[2] = {_mm_setzero_ps(), _mm_setzero_ps()};
  for (int i = 0; i < N; i += 8) {
    for (int h = 0; h < 2; ++h) {
      const __m128 vx = _mm_loadu_ps(x + i + 4 * h);
      __m128 q = _mm_min_ps(_mm_max_ps(_mm_add_ps(_mm_mul_ps(va, vx), vb), lo), hi);
      q = _mm_cvtepi32_ps(_mm_cvtps_epi32(q));  // nearest, ties to even, like lrintf
      sq[h] = _mm_add_ps(sq[h], q);
      sq2[h] = _mm_add_ps(sq2[h], _mm_mul_ps(q, q));
      sqx[h] = _mm_add_ps(sqx[h], _mm_mul_ps(q, vx));
    }
  }
  __m128 t0 = _mm_add_ps(sq[0], sq[1]), t1 = _mm_add_ps(sq2[0], sq2[1]);
  __m128 t2 = _mm_add_ps(sqx[0], sqx[1]), t3 = _mm_setzero_ps();
  _MM_TRANSPOSE4_PS(t0, t1, t2, t3);
  float sums[4];
  _mm_storeu_ps(sums, _mm_add_ps(_mm_add_ps(t0, t1), _mm_add_ps(t2, t3)));
  return {sums[0], sums[1], sums[2]};
}

// clamp(round(v), qmin, qmax), rounding as SumLevels does: to nearest, ties to even, like lrintf
// (a library call without -fno-math-errno).
int RoundLevel(float v, float qmin, float qmax) {
  return _mm_cvtss_si32(_mm_set_ss(std::min(std::max(qmin, v), qmax)));
}

constexpr int kQ4KSub = 32;  // values per Q4_K sub-block
constexpr float kQ4KMaxLevel = 15;

// Sum and sum of squares of one Q4_K sub-block: with them and the LevelSums of a candidate, the
// squared error of the candidate is known without another pass over the values.
struct Moments {
  double x = 0, x2 = 0;
};

Moments MomentsOf(const float* x) {
  Moments m;
  for (int i = 0; i < kQ4KSub; ++i) {
    m.x += x[i];
    m.x2 += double{x[i]} * x[i];
  }
  return m;
}

// sum (scale * q - min - x)^2, expanded. Double: the terms nearly cancel when the fit is good.
double Q4KError(const LevelSums& s, const Moments& m, double scale, double min) {
  return scale * scale * s.q2 - 2 * scale * min * s.q + kQ4KSub * min * min - 2 * scale * s.qx +
         2 * min * m.x + m.x2;
}

// Fits a sub-block x ~ scale * l - min with l in [0, 15] and min >= 0, minimizing the squared
// error. Tries 7 grid scales, (15 +- 0.9) / (max - min), and refits scale and min by least squares
// for each rounding, keeping the best. Returns scale; *min_out gets min. More candidates (21 at
// steps of 0.1) lower the Q4_K error by only 0.2%: RefineQ4KScales recovers most of it.
float FitAsymmetric(const float* x, const Moments& m, float* min_out) {
  float lo = 0, hi = x[0];
  for (int i = 0; i < kQ4KSub; ++i) {
    lo = std::min(lo, x[i]);
    hi = std::max(hi, x[i]);
  }
  if (hi <= lo) {
    *min_out = -lo;
    return 0;
  }
  float best_scale = (hi - lo) / kQ4KMaxLevel, best_min = -lo;
  double best_err = INFINITY;
  for (int step = -3; step <= 3; ++step) {
    const float iscale = (kQ4KMaxLevel + 0.3f * step) / (hi - lo);
    const LevelSums s = SumLevels<kQ4KSub>(x, iscale, -iscale * lo, 0, kQ4KMaxLevel);
    const double det = kQ4KSub * double{s.q2} - double{s.q} * s.q;
    if (det <= 0) continue;
    double scale = (kQ4KSub * double{s.qx} - m.x * s.q) / det;
    double min = (double{s.q} * s.qx - double{s.q2} * m.x) / det;
    if (min < 0) {  // the format only subtracts a min; refit the scale through the origin
      min = 0;
      scale = s.qx / s.q2;
    }
    const double err = Q4KError(s, m, scale, min);
    if (err < best_err && scale > 0) {
      best_err = err;
      best_scale = static_cast<float>(scale);
      best_min = static_cast<float>(min);
    }
  }
  *min_out = best_min;
  return best_scale;
}

// Squared error of a Q4_K sub-block quantized with the 6-bit scale s and min m (against the
// super-block scales d and dmin), and the refit 6-bit scale for the levels that gives.
struct Q4KTrial {
  double err;
  int refit;
};

Q4KTrial TryQ4KScales(const float* x, const Moments& mom, float d, float dmin, int s, int m) {
  const float step = d * s, offset = dmin * m;
  LevelSums sums;
  if (step > 0) {
    sums = SumLevels<kQ4KSub>(x, 1 / step, offset / step, 0, kQ4KMaxLevel);
  }
  const double sum_qy = sums.qx + double{offset} * sums.q;  // y = x + offset, on the grid
  const int refit = sums.q2 > 0 ? RoundLevel(static_cast<float>(sum_qy / sums.q2 / d), 0, 63) : s;
  return {Q4KError(sums, mom, step, offset), refit};
}

// Rounding the min to 6 bits can push an end of the range off the 4-bit grid. For each min next to
// mn0, refits the scale (from sc0) to the levels it gives, then keeps the pair (among the
// neighbours of that scale) with the least error after requantization.
void RefineQ4KScales(const float* x, const Moments& mom, float d, float dmin, int sc0, int mn0,
                     uint8_t* sc, uint8_t* mn) {
  *sc = static_cast<uint8_t>(sc0);
  *mn = static_cast<uint8_t>(mn0);
  if (d <= 0) return;
  double best_err = INFINITY;
  for (int m = std::max(mn0 - 1, 0); m <= std::min(mn0 + 1, 63); ++m) {
    // The refits and the neighbours mostly name the same few scales: try each once.
    int tried_scale[6];
    Q4KTrial tried[6];
    int num_tried = 0;
    auto try_scale = [&](int s) {
      for (int t = 0; t < num_tried; ++t) {
        if (tried_scale[t] == s) return tried[t];
      }
      const Q4KTrial trial = TryQ4KScales(x, mom, d, dmin, s, m);
      tried_scale[num_tried] = s;
      tried[num_tried++] = trial;
      if (trial.err < best_err) {
        best_err = trial.err;
        *sc = static_cast<uint8_t>(s);
        *mn = static_cast<uint8_t>(m);
      }
      return trial;
    };
    int fit = sc0;
    for (int iter = 0; iter < 2; ++iter) {
      const int refit = try_scale(fit).refit;
      if (refit == fit) break;
      fit = refit;
    }
    for (int s = std::max(fit - 1, 0); s <= std::min(fit + 1, 63); ++s) try_scale(s);
  }
}

void QuantizeQ4K(const float* x, BlockQ4_K* blocks, int64_t n) {
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    const float* xb = x + i * kQK_K;
    BlockQ4_K& b = blocks[i];
    Moments moments[8];
    float scales[8], mins[8];
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < 8; ++j) {
      moments[j] = MomentsOf(xb + kQ4KSub * j);
      scales[j] = FitAsymmetric(xb + kQ4KSub * j, moments[j], &mins[j]);
      max_scale = std::max(max_scale, scales[j]);
      max_min = std::max(max_min, mins[j]);
    }
    // 6-bit scales and mins against two fp16 super-block scales.
    b.d = Fp32ToFp16(max_scale / 63);
    b.dmin = Fp32ToFp16(max_min / 63);
    const float d = Fp16ToFp32(b.d), dmin = Fp16ToFp32(b.dmin);
    uint8_t sc[8], mn[8];
    for (int j = 0; j < 8; ++j) {
      const int sc0 = d > 0 ? std::clamp(Round(scales[j] / d), 0, 63) : 0;
      const int mn0 = dmin > 0 ? std::clamp(Round(mins[j] / dmin), 0, 63) : 0;
      RefineQ4KScales(xb + kQ4KSub * j, moments[j], d, dmin, sc0, mn0, &sc[j], &mn[j]);
    }
    for (int j = 0; j < 4; ++j) {
      b.scales[j] = static_cast<uint8_t>(sc[j] | ((sc[j + 4] >> 4) << 6));
      b.scales[j + 4] = static_cast<uint8_t>(mn[j] | ((mn[j + 4] >> 4) << 6));
      b.scales[j + 8] = static_cast<uint8_t>((sc[j + 4] & 0xf) | ((mn[j + 4] & 0xf) << 4));
    }
    // Requantize with the scales as stored.
    uint8_t q[kQK_K];
    for (int j = 0; j < 8; ++j) {
      const float step = d * sc[j], offset = dmin * mn[j];
      const float a = step > 0 ? 1 / step : 0;
      for (int l = 0; l < kQ4KSub; ++l) {
        q[kQ4KSub * j + l] =
            static_cast<uint8_t>(RoundLevel(a * (xb[kQ4KSub * j + l] + offset), 0, kQ4KMaxLevel));
      }
    }
    for (int c = 0; c < 4; ++c) {
      for (int l = 0; l < 32; ++l) {
        b.qs[32 * c + l] = static_cast<uint8_t>(q[64 * c + l] | (q[64 * c + 32 + l] << 4));
      }
    }
  }
}

constexpr int kQ6KGroup = 16;  // values per Q6_K scale

// Fits a group x ~ scale * l with l in [-32, 31], minimizing the squared error over 7 grid scales
// that put the largest-magnitude value at -(32 +- 0.9). Returns scale (may be negative). Finer
// steps (19 at 0.1) give the same Q6_K error at nearly twice the cost.
float FitSymmetric(const float* x) {
  constexpr float kMaxLevel = 32;
  float max = 0;
  for (int i = 0; i < kQ6KGroup; ++i) {
    if (std::fabs(x[i]) > std::fabs(max)) max = x[i];
  }
  if (max == 0) return 0;
  float best_scale = -max / kMaxLevel;
  float best_gain = -1;
  for (int step = -3; step <= 3; ++step) {
    const float iscale = -(kMaxLevel + 0.3f * step) / max;
    const LevelSums s = SumLevels<kQ6KGroup>(x, iscale, 0, -kMaxLevel, kMaxLevel - 1);
    // With the optimal scale qx / q2, the error is sum x^2 - qx^2 / q2.
    if (s.q2 > 0 && s.qx * s.qx / s.q2 > best_gain) {
      best_gain = s.qx * s.qx / s.q2;
      best_scale = s.qx / s.q2;
    }
  }
  return best_scale;
}

void QuantizeQ6K(const float* x, BlockQ6_K* blocks, int64_t n) {
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    const float* xb = x + i * kQK_K;
    BlockQ6_K& b = blocks[i];
    float scales[16];
    float max_abs = 0;
    for (int g = 0; g < 16; ++g) {
      scales[g] = FitSymmetric(xb + kQ6KGroup * g);
      max_abs = std::max(max_abs, std::fabs(scales[g]));
    }
    b.d = Fp32ToFp16(max_abs / 127);
    const float d = Fp16ToFp32(b.d);
    uint8_t q[kQK_K];
    for (int g = 0; g < 16; ++g) {
      b.scales[g] = static_cast<int8_t>(d > 0 ? std::clamp(Round(scales[g] / d), -127, 127) : 0);
      const float step = d * b.scales[g];
      const float a = step != 0 ? 1 / step : 0;
      for (int l = 0; l < kQ6KGroup; ++l) {
        q[kQ6KGroup * g + l] =
            static_cast<uint8_t>(RoundLevel(a * xb[kQ6KGroup * g + l], -32, 31) + 32);
      }
    }
    for (int h = 0; h < 2; ++h) {
      const uint8_t* qh_src = q + 128 * h;
      for (int l = 0; l < 32; ++l) {
        b.ql[64 * h + l] = static_cast<uint8_t>((qh_src[l] & 0xf) | ((qh_src[l + 64] & 0xf) << 4));
        b.ql[64 * h + l + 32] =
            static_cast<uint8_t>((qh_src[l + 32] & 0xf) | ((qh_src[l + 96] & 0xf) << 4));
        b.qh[32 * h + l] =
            static_cast<uint8_t>((qh_src[l] >> 4) | ((qh_src[l + 32] >> 4) << 2) |
                                 ((qh_src[l + 64] >> 4) << 4) | ((qh_src[l + 96] >> 4) << 6));
      }
    }
  }
}

void QuantizeQ8K(const float* x, BlockQ8_K* blocks, int64_t n) {
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    const float* xb = x + i * kQK_K;
    BlockQ8_K& b = blocks[i];
    float amax = 0;
    for (int j = 0; j < kQK_K; ++j) amax = std::max(amax, std::fabs(xb[j]));
    // Quants stay within [-127, 127]: the SIMD kernels negate them and rely on no -128.
    const float iscale = amax > 0 ? 127 / amax : 0;
    b.d = amax > 0 ? 1 / iscale : 0;
    for (int j = 0; j < kQK_K; ++j) b.qs[j] = std::clamp(Round(iscale * xb[j]), -127, 127);
    for (int g = 0; g < kQK_K / 16; ++g) {
      int sum = 0;
      for (int l = 0; l < 16; ++l) sum += b.qs[16 * g + l];
      b.bsums[g] = static_cast<int16_t>(sum);
    }
  }
}

}  // namespace

bool IsComputeType(GgmlType type) {
  switch (type) {
    case GgmlType::kF32:
    case GgmlType::kF16:
    case GgmlType::kBF16:
    case GgmlType::kQ8_0:
    case GgmlType::kQ4_0:
    case GgmlType::kQ4_K:
    case GgmlType::kQ6_K:
      return true;
    default:
      return false;
  }
}

void DequantizeRow(GgmlType type, const void* src, float* dst, int64_t n) {
  switch (type) {
    case GgmlType::kF32:
      std::memcpy(dst, src, n * sizeof(float));
      return;
    case GgmlType::kF16: {
      const uint16_t* h = static_cast<const uint16_t*>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = Fp16ToFp32(h[i]);
      return;
    }
    case GgmlType::kBF16: {
      const uint16_t* h = static_cast<const uint16_t*>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = Bf16ToFp32(h[i]);
      return;
    }
    case GgmlType::kQ8_0:
      return DequantizeQ8_0(static_cast<const BlockQ8_0*>(src), dst, n);
    case GgmlType::kQ4_0:
      return DequantizeQ4_0(static_cast<const BlockQ4_0*>(src), dst, n);
    case GgmlType::kQ4_K:
      return DequantizeQ4K(static_cast<const BlockQ4_K*>(src), dst, n);
    case GgmlType::kQ6_K:
      return DequantizeQ6K(static_cast<const BlockQ6_K*>(src), dst, n);
    default:
      DieUnsupportedType("DequantizeRow", type);
  }
}

void QuantizeRow(GgmlType type, const float* src, void* dst, int64_t n) {
  switch (type) {
    case GgmlType::kF32:
      std::memcpy(dst, src, n * sizeof(float));
      return;
    case GgmlType::kF16: {
      uint16_t* h = static_cast<uint16_t*>(dst);
      for (int64_t i = 0; i < n; ++i) h[i] = Fp32ToFp16(src[i]);
      return;
    }
    case GgmlType::kBF16: {
      uint16_t* h = static_cast<uint16_t*>(dst);
      for (int64_t i = 0; i < n; ++i) h[i] = Fp32ToBf16(src[i]);
      return;
    }
    case GgmlType::kQ8_0:
      return QuantizeQ8_0(src, static_cast<BlockQ8_0*>(dst), n);
    case GgmlType::kQ4_0:
      return QuantizeQ4_0(src, static_cast<BlockQ4_0*>(dst), n);
    case GgmlType::kQ4_K:
      return QuantizeQ4K(src, static_cast<BlockQ4_K*>(dst), n);
    case GgmlType::kQ6_K:
      return QuantizeQ6K(src, static_cast<BlockQ6_K*>(dst), n);
    case GgmlType::kQ8_K:
      return QuantizeQ8K(src, static_cast<BlockQ8_K*>(dst), n);
    default:
      DieUnsupportedType("QuantizeRow", type);
  }
}

}  // namespace memoria
