// Portable kernels: the reference the SIMD paths are tested against, and the fallback for CPUs
// without AVX2. Written for clarity; integer block sums are exact, floats accumulate per block.

#include <cmath>

#include "engine/quant/blocks.h"
#include "engine/quant/fp16.h"
#include "engine/quant/gemm_internal.h"
#include "engine/quant/quant.h"
#include "engine/quant/quant_internal.h"

namespace memoria::gemm_internal {

namespace {

float DotRowF32(const uint8_t* w, const uint8_t* x, int64_t k) {
  const float* a = reinterpret_cast<const float*>(w);
  const float* b = reinterpret_cast<const float*>(x);
  float sum = 0;
  for (int64_t i = 0; i < k; ++i) sum += a[i] * b[i];
  return sum;
}

float DotRowF16(const uint8_t* w, const uint8_t* x, int64_t k) {
  const uint16_t* a = reinterpret_cast<const uint16_t*>(w);
  const uint16_t* b = reinterpret_cast<const uint16_t*>(x);
  float sum = 0;
  for (int64_t i = 0; i < k; ++i) sum += Fp16ToFp32(a[i]) * Fp16ToFp32(b[i]);
  return sum;
}

float DotRowBf16(const uint8_t* w, const uint8_t* x, int64_t k) {
  const uint16_t* a = reinterpret_cast<const uint16_t*>(w);
  const uint16_t* b = reinterpret_cast<const uint16_t*>(x);
  float sum = 0;
  for (int64_t i = 0; i < k; ++i) sum += Bf16ToFp32(a[i]) * Bf16ToFp32(b[i]);
  return sum;
}

float DotRowQ8_0(const uint8_t* w, const uint8_t* x, int64_t k) {
  const BlockQ8_0* a = reinterpret_cast<const BlockQ8_0*>(w);
  const BlockQ8_0* b = reinterpret_cast<const BlockQ8_0*>(x);
  float sum = 0;
  for (int64_t i = 0; i < k / kQK8_0; ++i) {
    int sumi = 0;
    for (int j = 0; j < kQK8_0; ++j) sumi += a[i].qs[j] * b[i].qs[j];
    sum += sumi * (Fp16ToFp32(a[i].d) * Fp16ToFp32(b[i].d));
  }
  return sum;
}

float DotRowQ4_0(const uint8_t* w, const uint8_t* x, int64_t k) {
  const BlockQ4_0* a = reinterpret_cast<const BlockQ4_0*>(w);
  const BlockQ8_0* b = reinterpret_cast<const BlockQ8_0*>(x);
  float sum = 0;
  for (int64_t i = 0; i < k / kQK4_0; ++i) {
    int sumi = 0;
    for (int j = 0; j < kQK4_0 / 2; ++j) {
      sumi += ((a[i].qs[j] & 0xf) - 8) * b[i].qs[j];
      sumi += ((a[i].qs[j] >> 4) - 8) * b[i].qs[j + kQK4_0 / 2];
    }
    sum += sumi * (Fp16ToFp32(a[i].d) * Fp16ToFp32(b[i].d));
  }
  return sum;
}

// Sum over sub-blocks of scale * dot(q, x) minus the mins against the activation group sums
// (bsums), which is why Q8_K carries them.
float DotRowQ4K(const uint8_t* w, const uint8_t* x, int64_t k) {
  const BlockQ4_K* a = reinterpret_cast<const BlockQ4_K*>(w);
  const BlockQ8_K* b = reinterpret_cast<const BlockQ8_K*>(x);
  float sum = 0;
  for (int64_t i = 0; i < k / kQK_K; ++i) {
    uint8_t scales[8], mins[8];
    UnpackQ4KScales(a[i].scales, scales, mins);
    int sumi = 0, summ = 0;
    for (int c = 0; c < 4; ++c) {
      const uint8_t* q = a[i].qs + 32 * c;
      const int8_t* xq = b[i].qs + 64 * c;
      int lo = 0, hi = 0;
      for (int l = 0; l < 32; ++l) {
        lo += (q[l] & 0xf) * xq[l];
        hi += (q[l] >> 4) * xq[l + 32];
      }
      sumi += scales[2 * c] * lo + scales[2 * c + 1] * hi;
    }
    for (int j = 0; j < 8; ++j) summ += mins[j] * (b[i].bsums[2 * j] + b[i].bsums[2 * j + 1]);
    sum += Fp16ToFp32(a[i].d) * b[i].d * sumi - Fp16ToFp32(a[i].dmin) * b[i].d * summ;
  }
  return sum;
}

float DotRowQ6K(const uint8_t* w, const uint8_t* x, int64_t k) {
  const BlockQ6_K* a = reinterpret_cast<const BlockQ6_K*>(w);
  const BlockQ8_K* b = reinterpret_cast<const BlockQ8_K*>(x);
  float sum = 0;
  for (int64_t i = 0; i < k / kQK_K; ++i) {
    int group[16] = {};
    for (int h = 0; h < 2; ++h) {
      const uint8_t* ql = a[i].ql + 64 * h;
      const uint8_t* qh = a[i].qh + 32 * h;
      const int8_t* xq = b[i].qs + 128 * h;
      int* g = group + 8 * h;
      for (int l = 0; l < 32; ++l) {
        const int q1 = ((ql[l] & 0xf) | ((qh[l] & 3) << 4)) - 32;
        const int q2 = ((ql[l + 32] & 0xf) | (((qh[l] >> 2) & 3) << 4)) - 32;
        const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
        const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
        g[l / 16] += q1 * xq[l];
        g[l / 16 + 2] += q2 * xq[l + 32];
        g[l / 16 + 4] += q3 * xq[l + 64];
        g[l / 16 + 6] += q4 * xq[l + 96];
      }
    }
    int sumi = 0;
    for (int j = 0; j < 16; ++j) sumi += a[i].scales[j] * group[j];
    sum += Fp16ToFp32(a[i].d) * b[i].d * sumi;
  }
  return sum;
}

template <float (*DotRow)(const uint8_t*, const uint8_t*, int64_t)>
void Gemm(const GemmArgs& a) {
  for (int64_t b = 0; b < a.nb; ++b) {
    const uint8_t* x = a.x + b * a.x_row_bytes;
    for (int64_t r = a.r0; r < a.r1; ++r) {
      a.y[b * a.ldy + r] = DotRow(a.w + r * a.w_row_bytes, x, a.k);
    }
  }
}

void Fp32ToFp16Row(const float* x, uint16_t* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = Fp32ToFp16(x[i]);
}

void Fp16ToFp32Row(const uint16_t* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = Fp16ToFp32(x[i]);
}

void SiluMulF32(const float* gate, const float* up, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
}

float SoftmaxNumeratorsF32(float* row, int64_t n, float scale, float* max_scaled) {
  float max_score = -INFINITY;
  for (int64_t i = 0; i < n; ++i) {
    row[i] *= scale;
    max_score = row[i] > max_score ? row[i] : max_score;
  }
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) {
    row[i] = std::exp(row[i] - max_score);
    sum += row[i];
  }
  *max_scaled = max_score;
  return static_cast<float>(sum);
}

inline float ToF32(float v) { return v; }
inline float ToF32(uint16_t h) { return Fp16ToFp32(h); }

template <class T>
void AccumulateRows(const float* weights, int64_t ldw, int64_t n_out, const T* rows, int64_t n,
                    int64_t dim, float* out, int64_t ldo) {
  for (int64_t h = 0; h < n_out; ++h) {
    for (int64_t t = 0; t < n; ++t) {
      for (int64_t c = 0; c < dim; ++c) {
        out[h * ldo + c] += weights[h * ldw + t] * ToF32(rows[t * dim + c]);
      }
    }
  }
}

template <class T>
void DotRows(const float* queries, int64_t ldq, int64_t n_queries, const T* rows, int64_t n,
             int64_t dim, float* scores, int64_t lds) {
  for (int64_t j = 0; j < n_queries; ++j) {
    for (int64_t t = 0; t < n; ++t) {
      float sum = 0;
      for (int64_t c = 0; c < dim; ++c) sum += queries[j * ldq + c] * ToF32(rows[t * dim + c]);
      scores[j * lds + t] = sum;
    }
  }
}

void QuantizeRowQ8_0(const float* x, void* out, int64_t k) {
  QuantizeRow(GgmlType::kQ8_0, x, out, k);
}

void QuantizeRowQ8K(const float* x, void* out, int64_t k) {
  QuantizeRow(GgmlType::kQ8_K, x, out, k);
}

}  // namespace

const KernelTable& ScalarKernels() {
  static const KernelTable table{Gemm<DotRowF32>,          Gemm<DotRowF16>,
                                 Gemm<DotRowBf16>,         Gemm<DotRowQ8_0>,
                                 Gemm<DotRowQ4_0>,         Gemm<DotRowQ4K>,
                                 Gemm<DotRowQ6K>,          nullptr,
                                 nullptr,                  nullptr,
                                 Fp32ToFp16Row,            Fp16ToFp32Row,
                                 SiluMulF32,               SoftmaxNumeratorsF32,
                                 AccumulateRows<float>,    AccumulateRows<uint16_t>,
                                 DotRows<float>,           DotRows<uint16_t>,
                                 QuantizeRowQ8_0,          QuantizeRowQ8K};
  return table;
}

}  // namespace memoria::gemm_internal
