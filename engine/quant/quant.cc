#include "engine/quant/quant.h"

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
    // Quantize against the stored (rounded) scale so the error is what dequantization sees.
    const float d = Fp16ToFp32(blocks[i].d);
    const float id = d > 0 ? 1 / d : 0;
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

// Fits x ~ scale * l - min with l in [0, nmax] and min >= 0, minimizing the squared error. Tries
// a range of grid scales around (max - min) / nmax and refits scale and min by least squares for
// each rounding, keeping the best. Returns scale; *min_out gets min.
float FitAsymmetric(const float* x, int n, int nmax, float* min_out) {
  float lo = std::min(0.0f, *std::min_element(x, x + n));
  const float hi = *std::max_element(x, x + n);
  if (hi <= lo) {
    *min_out = -lo;
    return 0;
  }
  float best_scale = (hi - lo) / nmax, best_min = lo;
  float best_err = INFINITY;
  for (int step = -10; step <= 10; ++step) {
    const float iscale = (nmax + 0.1f * step) / (hi - lo);
    double sum_l = 0, sum_l2 = 0, sum_x = 0, sum_lx = 0;
    int l[kQK_K];
    for (int i = 0; i < n; ++i) {
      l[i] = std::clamp(Round(iscale * (x[i] - lo)), 0, nmax);
      sum_l += l[i];
      sum_l2 += l[i] * l[i];
      sum_x += x[i];
      sum_lx += l[i] * x[i];
    }
    const double det = n * sum_l2 - sum_l * sum_l;
    if (det <= 0) continue;
    double scale = (n * sum_lx - sum_x * sum_l) / det;
    double offset = (sum_l2 * sum_x - sum_l * sum_lx) / det;
    if (offset > 0) {  // the format only subtracts a min; refit the scale through the origin
      offset = 0;
      scale = sum_lx / sum_l2;
    }
    double err = 0;
    for (int i = 0; i < n; ++i) {
      const double e = scale * l[i] + offset - x[i];
      err += e * e;
    }
    if (err < best_err && scale > 0) {
      best_err = static_cast<float>(err);
      best_scale = static_cast<float>(scale);
      best_min = static_cast<float>(offset);
    }
  }
  *min_out = -best_min;
  return best_scale;
}

// Fits x ~ scale * l with l in [-nmax, nmax - 1], minimizing the squared error over a range of
// grid scales that put the largest-magnitude value near -nmax. Returns scale (may be negative).
float FitSymmetric(const float* x, int n, int nmax) {
  float max = 0;
  for (int i = 0; i < n; ++i) {
    if (std::fabs(x[i]) > std::fabs(max)) max = x[i];
  }
  if (max == 0) return 0;
  float best_scale = -max / nmax;
  double best_gain = -1;
  for (int step = -9; step <= 9; ++step) {
    const float iscale = -(nmax + 0.1f * step) / max;
    double sum_lx = 0, sum_l2 = 0;
    for (int i = 0; i < n; ++i) {
      const int l = std::clamp(Round(iscale * x[i]), -nmax, nmax - 1);
      sum_lx += l * x[i];
      sum_l2 += l * l;
    }
    // With the optimal scale sum_lx / sum_l2, the error is sum x^2 - sum_lx^2 / sum_l2.
    if (sum_l2 > 0 && sum_lx * sum_lx / sum_l2 > best_gain) {
      best_gain = sum_lx * sum_lx / sum_l2;
      best_scale = static_cast<float>(sum_lx / sum_l2);
    }
  }
  return best_scale;
}

uint8_t Q4KLevel(float x, float step, float offset) {
  return static_cast<uint8_t>(step > 0 ? std::clamp(Round((x + offset) / step), 0, 15) : 0);
}

// Squared error of 32 values quantized with a given effective scale and min.
float Q4KSubBlockError(const float* x, float step, float offset) {
  float err = 0;
  for (int l = 0; l < 32; ++l) {
    const float e = step * Q4KLevel(x[l], step, offset) - offset - x[l];
    err += e * e;
  }
  return err;
}

void QuantizeQ4K(const float* x, BlockQ4_K* blocks, int64_t n) {
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    const float* xb = x + i * kQK_K;
    BlockQ4_K& b = blocks[i];
    float scales[8], mins[8];
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < 8; ++j) {
      scales[j] = FitAsymmetric(xb + 32 * j, 32, 15, &mins[j]);
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
      // Rounding the min to 6 bits can push an end of the range off the 4-bit grid. For each
      // neighbouring min, refit the scale to the levels it gives, then keep the pair (among the
      // neighbours of that scale) with the least error after requantization.
      const float* xs = xb + 32 * j;
      float best_err = Q4KSubBlockError(xs, d * sc0, dmin * mn0);
      sc[j] = static_cast<uint8_t>(sc0);
      mn[j] = static_cast<uint8_t>(mn0);
      for (int m = std::max(mn0 - 1, 0); m <= std::min(mn0 + 1, 63) && d > 0; ++m) {
        const float offset = dmin * m;
        int fit = sc0;
        for (int iter = 0; iter < 2; ++iter) {
          float sum_qx = 0, sum_q2 = 0;
          for (int l = 0; l < 32; ++l) {
            const int q = Q4KLevel(xs[l], d * fit, offset);
            sum_qx += q * (xs[l] + offset);
            sum_q2 += q * q;
          }
          if (sum_q2 > 0) fit = std::clamp(Round(sum_qx / sum_q2 / d), 0, 63);
        }
        for (int s = std::max(fit - 1, 0); s <= std::min(fit + 1, 63); ++s) {
          const float err = Q4KSubBlockError(xs, d * s, offset);
          if (err < best_err) {
            best_err = err;
            sc[j] = static_cast<uint8_t>(s);
            mn[j] = static_cast<uint8_t>(m);
          }
        }
      }
    }
    for (int j = 0; j < 4; ++j) {
      b.scales[j] = static_cast<uint8_t>(sc[j] | ((sc[j + 4] >> 4) << 6));
      b.scales[j + 4] = static_cast<uint8_t>(mn[j] | ((mn[j + 4] >> 4) << 6));
      b.scales[j + 8] = static_cast<uint8_t>((sc[j + 4] & 0xf) | ((mn[j + 4] & 0xf) << 4));
    }
    // Requantize with the scales as stored.
    uint8_t q[kQK_K];
    for (int j = 0; j < 8; ++j) {
      for (int l = 0; l < 32; ++l)
        q[32 * j + l] = Q4KLevel(xb[32 * j + l], d * sc[j], dmin * mn[j]);
    }
    for (int c = 0; c < 4; ++c) {
      for (int l = 0; l < 32; ++l) {
        b.qs[32 * c + l] = static_cast<uint8_t>(q[64 * c + l] | (q[64 * c + 32 + l] << 4));
      }
    }
  }
}

void QuantizeQ6K(const float* x, BlockQ6_K* blocks, int64_t n) {
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    const float* xb = x + i * kQK_K;
    BlockQ6_K& b = blocks[i];
    float scales[16];
    float max_abs = 0;
    for (int g = 0; g < 16; ++g) {
      scales[g] = FitSymmetric(xb + 16 * g, 16, 32);
      max_abs = std::max(max_abs, std::fabs(scales[g]));
    }
    b.d = Fp32ToFp16(max_abs / 127);
    const float d = Fp16ToFp32(b.d);
    uint8_t q[kQK_K];
    for (int g = 0; g < 16; ++g) {
      b.scales[g] = static_cast<int8_t>(d > 0 ? std::clamp(Round(scales[g] / d), -127, 127) : 0);
      const float step = d * b.scales[g];
      for (int l = 0; l < 16; ++l) {
        const int v = step != 0 ? std::clamp(Round(xb[16 * g + l] / step), -32, 31) : 0;
        q[16 * g + l] = static_cast<uint8_t>(v + 32);
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
