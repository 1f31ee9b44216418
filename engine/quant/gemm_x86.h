#ifndef MEMORIA_ENGINE_QUANT_GEMM_X86_H_
#define MEMORIA_ENGINE_QUANT_GEMM_X86_H_

// Helpers, the 256-bit float helpers of the kernel table (exp, SiLU, softmax, value sums), the
// activation quantizers and the interleaved-weights driver shared by the x86 SIMD kernel files
// (gemm_avx2.cc, gemm_avx512.cc). Each of those files is compiled with its own -m flags, so these
// stay in an unnamed namespace: every file gets its own copy built for its instruction set, and
// no inline function is shared across them (which would let the linker pick the AVX-512 build
// for the AVX2 path).

#include <immintrin.h>

#include <cmath>
#include <cstdint>
#include <cstring>

#include "engine/quant/blocks.h"
#include "engine/quant/fp16.h"
#include "engine/quant/gemm_internal.h"

namespace memoria::gemm_internal {
namespace {

inline __m256i Load256(const uint8_t* p) {
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
}
inline __m128i Load128(const uint8_t* p) {
  return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
}

inline int32_t Load32(const void* p) {
  int32_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

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

// exp(x) for 8 floats x <= 0, within ~2 ulp of the exact value: x = n ln2 + r with
// |r| <= ln2 / 2 (ln2 in two parts, so r keeps its low bits), e^r by its Taylor series to r^7 / 7!
// (next term < 6e-9 relative), times 2^n built in the exponent field. Below -87.3, where 2^n
// would leave the normal floats, the result is 0 (the exact value is below 1.2e-38).
inline __m256 ExpNonPositive8(__m256 x) {
  const __m256 lowest = _mm256_set1_ps(-87.3f);
  const __m256 underflow = _mm256_cmp_ps(x, lowest, _CMP_LT_OQ);
  x = _mm256_min_ps(_mm256_max_ps(x, lowest), _mm256_setzero_ps());
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693145752f), x);  // ln2's high part, exact * n
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(1.42860677e-6f), r);       // and its low part
  __m256 p = _mm256_set1_ps(1.0f / 5040);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 720));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  const __m256i two_n = _mm256_slli_epi32(
      _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_andnot_ps(underflow, _mm256_mul_ps(p, _mm256_castsi256_ps(two_n)));
}

// Up to 8 floats of a row into a vector, zeros after the n-th (n <= 8): tails go through the same
// arithmetic as whole vectors.
inline __m256 LoadPartial8(const float* p, int64_t n) {
  float lanes[8] = {};
  std::memcpy(lanes, p, n * sizeof(float));
  return _mm256_loadu_ps(lanes);
}
inline void StorePartial8(float* p, __m256 v, int64_t n) {
  float lanes[8];
  _mm256_storeu_ps(lanes, v);
  std::memcpy(p, lanes, n * sizeof(float));
}

// silu(g) * u = g * sigmoid(g) * u, with e = exp(-|g|) <= 1: sigmoid is 1 / (1 + e) for g >= 0
// and e / (1 + e) below, so nothing overflows and silu reaches its limits, g and 0, exactly.
inline __m256 SiluMul8(__m256 gate, __m256 up) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  const __m256 e = ExpNonPositive8(_mm256_or_ps(gate, sign));  // -|gate|
  const __m256 one = _mm256_set1_ps(1.0f);
  const __m256 numerator = _mm256_blendv_ps(one, e, gate);     // e where gate's sign bit is set
  const __m256 sigmoid = _mm256_div_ps(numerator, _mm256_add_ps(one, e));
  return _mm256_mul_ps(_mm256_mul_ps(gate, sigmoid), up);
}

// SiluMulF32 (gemm.h): the feed-forward's activation, which a decode step runs on one thread
// while the others wait. With std::exp per element it took 1.4% of the samples of a small-model
// memoria-bench run (perf, tg128), this 0.2%.
void SiluMulF32(const float* gate, const float* up, float* out, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    _mm256_storeu_ps(out + i, SiluMul8(_mm256_loadu_ps(gate + i), _mm256_loadu_ps(up + i)));
  }
  if (i < n) {
    StorePartial8(out + i, SiluMul8(LoadPartial8(gate + i, n - i), LoadPartial8(up + i, n - i)),
                  n - i);
  }
}

inline float Hmax(__m256 v) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_movehdup_ps(m));
  return _mm_cvtss_f32(m);
}
inline float Hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// SoftmaxNumeratorsF32 (gemm.h) for attention's score rows: the scalar path's two passes (scale
// and max, exp and sum) eight lanes at a time, exp by ExpNonPositive8.
float SoftmaxNumeratorsF32(float* row, int64_t n, float scale, float* max_scaled) {
  const __m256 vscale = _mm256_set1_ps(scale);
  __m256 vmax = _mm256_set1_ps(-INFINITY);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_mul_ps(_mm256_loadu_ps(row + i), vscale);
    _mm256_storeu_ps(row + i, v);
    vmax = _mm256_max_ps(vmax, v);
  }
  float max_score = Hmax(vmax);
  for (int64_t j = i; j < n; ++j) {
    row[j] *= scale;
    max_score = row[j] > max_score ? row[j] : max_score;
  }
  const __m256 shift = _mm256_set1_ps(max_score);
  __m256 vsum = _mm256_setzero_ps();
  for (i = 0; i + 8 <= n; i += 8) {
    const __m256 e = ExpNonPositive8(_mm256_sub_ps(_mm256_loadu_ps(row + i), shift));
    _mm256_storeu_ps(row + i, e);
    vsum = _mm256_add_ps(vsum, e);
  }
  if (i < n) {
    const __m256 tail = ExpNonPositive8(_mm256_sub_ps(LoadPartial8(row + i, n - i), shift));
    StorePartial8(row + i, tail, n - i);
    vsum = _mm256_add_ps(vsum, LoadPartial8(row + i, n - i));  // the row's lanes only
  }
  *max_scaled = max_score;
  return Hsum(vsum);
}

inline __m256 Load8AsF32(const float* p) { return _mm256_loadu_ps(p); }
inline __m256 Load8AsF32(const uint16_t* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
inline float LoadAsF32(float v) { return v; }
inline float LoadAsF32(uint16_t h) { return _cvtsh_ss(h); }

// AccumulateRowsF32 / AccumulateRowsF16F32 (gemm.h): columns [c, c + 8 * kVectors) of kOut
// outputs stay in registers while every row adds its part (a row-by-row axpy, which loads and
// stores the output per row, took more time than the rest of attention at depth 1024), and each
// row's vectors are loaded and widened once for all kOut outputs.
template <int kOut, int kVectors, class T>
void AccumulateColumns(const float* weights, int64_t ldw, const T* rows, int64_t n, int64_t dim,
                       int64_t c, float* out, int64_t ldo) {
  __m256 acc[kOut][kVectors];
  for (int h = 0; h < kOut; ++h)
    for (int j = 0; j < kVectors; ++j) acc[h][j] = _mm256_loadu_ps(out + h * ldo + c + 8 * j);
  for (int64_t t = 0; t < n; ++t) {
    __m256 w[kOut];
    for (int h = 0; h < kOut; ++h) w[h] = _mm256_set1_ps(weights[h * ldw + t]);
    for (int j = 0; j < kVectors; ++j) {  // one vector of the row live at a time
      const __m256 v = Load8AsF32(rows + t * dim + c + 8 * j);
      for (int h = 0; h < kOut; ++h) acc[h][j] = _mm256_fmadd_ps(w[h], v, acc[h][j]);
    }
  }
  for (int h = 0; h < kOut; ++h)
    for (int j = 0; j < kVectors; ++j) _mm256_storeu_ps(out + h * ldo + c + 8 * j, acc[h][j]);
}

// Up to eight accumulators: 64 columns of one output, 32 of two, 16 of three or four.
template <int kOut, class T>
void AccumulateRowsFor(const float* weights, int64_t ldw, const T* rows, int64_t n, int64_t dim,
                       float* out, int64_t ldo) {
  constexpr int kVectors = kOut == 1 ? 8 : kOut == 2 ? 4 : 2;
  int64_t c = 0;
  for (; c + 8 * kVectors <= dim; c += 8 * kVectors) {
    AccumulateColumns<kOut, kVectors>(weights, ldw, rows, n, dim, c, out, ldo);
  }
  for (; c + 8 <= dim; c += 8) AccumulateColumns<kOut, 1>(weights, ldw, rows, n, dim, c, out, ldo);
  for (; c < dim; ++c) {
    for (int h = 0; h < kOut; ++h) {
      float sum = out[h * ldo + c];
      for (int64_t t = 0; t < n; ++t) sum += weights[h * ldw + t] * LoadAsF32(rows[t * dim + c]);
      out[h * ldo + c] = sum;
    }
  }
}

template <class T>
void AccumulateRows(const float* weights, int64_t ldw, int64_t n_out, const T* rows, int64_t n,
                    int64_t dim, float* out, int64_t ldo) {
  for (int64_t h = 0; h < n_out; h += 4) {
    const float* w = weights + h * ldw;
    float* o = out + h * ldo;
    switch (n_out - h) {
      case 1: AccumulateRowsFor<1>(w, ldw, rows, n, dim, o, ldo); break;
      case 2: AccumulateRowsFor<2>(w, ldw, rows, n, dim, o, ldo); break;
      case 3: AccumulateRowsFor<3>(w, ldw, rows, n, dim, o, ldo); break;
      default: AccumulateRowsFor<4>(w, ldw, rows, n, dim, o, ldo); break;
    }
  }
}

// DotRowsF32 / DotRowsF16F32 (gemm.h), eight rows (keys) at a time: each query passes over the
// block with one accumulator per row, and a tree of horizontal adds turns the eight accumulators
// into the block's eight scores at once. (A dot product reduced on its own, as in the GEMM
// kernels' tiles that attention used before, costs as much as its FMAs at head_dim 64.) With
// several queries, f16 rows are widened once into a buffer that all of them read (the tiles
// widened each row once per pair of queries). Every score is summed in the same order (lanes by
// the FMAs over the row, then the fixed tree) wherever its row falls and however many queries
// there are: the buffer holds exactly the values widened on the fly.
constexpr int64_t kDotRowsMaxDim = 256;

inline __m256 SumEachOf8(const __m256 (&acc)[8]) {
  const __m256 h01 = _mm256_hadd_ps(acc[0], acc[1]), h23 = _mm256_hadd_ps(acc[2], acc[3]);
  const __m256 h45 = _mm256_hadd_ps(acc[4], acc[5]), h67 = _mm256_hadd_ps(acc[6], acc[7]);
  const __m256 h0123 = _mm256_hadd_ps(h01, h23), h4567 = _mm256_hadd_ps(h45, h67);
  // lane i of the low halves holds row i's (or i + 4's) first four lanes summed, of the high
  // halves its last four
  return _mm256_add_ps(_mm256_permute2f128_ps(h0123, h4567, 0x20),
                       _mm256_permute2f128_ps(h0123, h4567, 0x31));
}

// Scores of one query against n_rows <= 8 rows, dim a multiple of 8. A partial block repeats
// its last row in the missing places (computed, not stored), so the loop keeps its eight
// accumulators in registers.
template <class T>
inline void DotBlock(const float* q, const T* rows, int64_t n_rows, int64_t dim, float* scores) {
  const T* row[8];
  for (int i = 0; i < 8; ++i) row[i] = rows + (i < n_rows ? i : n_rows - 1) * dim;
  __m256 acc[8];
  for (__m256& a : acc) a = _mm256_setzero_ps();
  for (int64_t c = 0; c < dim; c += 8) {
    const __m256 qv = _mm256_loadu_ps(q + c);
    for (int i = 0; i < 8; ++i) acc[i] = _mm256_fmadd_ps(Load8AsF32(row[i] + c), qv, acc[i]);
  }
  if (n_rows == 8) {
    _mm256_storeu_ps(scores, SumEachOf8(acc));
  } else {
    StorePartial8(scores, SumEachOf8(acc), n_rows);
  }
}

template <class T>
void DotRows(const float* queries, int64_t ldq, int64_t n_queries, const T* rows, int64_t n,
             int64_t dim, float* scores, int64_t lds) {
  constexpr bool kWiden = sizeof(T) != sizeof(float);
  if (dim % 8 != 0 || dim > kDotRowsMaxDim) {  // no Llama-family head size
    if constexpr (kWiden) {
      ScalarKernels().dot_rows_f16_f32(queries, ldq, n_queries, rows, n, dim, scores, lds);
    } else {
      ScalarKernels().dot_rows_f32(queries, ldq, n_queries, rows, n, dim, scores, lds);
    }
    return;
  }
  alignas(32) float widened[kWiden ? 8 * kDotRowsMaxDim : 1];
  for (int64_t t0 = 0; t0 < n; t0 += 8) {
    const int64_t n_rows = n - t0 < 8 ? n - t0 : 8;
    const T* block = rows + t0 * dim;
    if (kWiden && n_queries > 1) {
      for (int64_t i = 0; i < n_rows * dim; i += 8) {
        _mm256_store_ps(widened + i, Load8AsF32(block + i));
      }
      for (int64_t j = 0; j < n_queries; ++j) {
        DotBlock(queries + j * ldq, widened, n_rows, dim, scores + j * lds + t0);
      }
    } else {
      for (int64_t j = 0; j < n_queries; ++j) {
        DotBlock(queries + j * ldq, block, n_rows, dim, scores + j * lds + t0);
      }
    }
  }
}

// Fp16ToFp32Row (gemm.h): every half converts exactly, so F16C and the portable code agree.
void Fp16ToFp32Row(const uint16_t* x, float* y, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(x + i));
    _mm256_storeu_ps(y + i, _mm256_cvtph_ps(h));
  }
  for (; i < n; ++i) y[i] = _cvtsh_ss(x[i]);
}

// ---- activation quantizers (QuantizeRow's Q8_0 and Q8_K, byte for byte) ----
//
// The same operations as the scalar quantizers, eight lanes at a time: |x| maxima are exact,
// x * (127 / amax) is one IEEE product either way, and vcvtps2dq rounds to nearest even as
// lrintf does in the default mode. (Non-finite inputs, which leave every quant of their block
// meaningless, may give other bytes.)

inline float AbsMax(const float* x, int64_t n) {  // n a multiple of 8
  const __m256 magnitude = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  __m256 m = _mm256_setzero_ps();
  for (int64_t i = 0; i < n; i += 8) {
    m = _mm256_max_ps(_mm256_and_ps(_mm256_loadu_ps(x + i), magnitude), m);
  }
  return Hmax(m);
}

// 32 floats times `scale`, rounded, in order as 32 bytes clamped to [-127, 127].
inline __m256i QuantizeScaled32(const float* x, __m256 scale) {
  __m256i q[4];
  for (int j = 0; j < 4; ++j) {
    q[j] = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + 8 * j), scale));
  }
  // The packs work within 128-bit lanes, leaving the 4-byte runs in the order 0 2 4 6 1 3 5 7.
  const __m256i packed =
      _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
  const __m256i ordered =
      _mm256_permutevar8x32_epi32(packed, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
  return _mm256_max_epi8(ordered, _mm256_set1_epi8(-127));
}

void QuantizeRowQ8_0(const float* x, void* out, int64_t k) {
  auto* blocks = static_cast<BlockQ8_0*>(out);
  for (int64_t i = 0; i < k / kQK8_0; ++i) {
    const float* xb = x + i * kQK8_0;
    const float amax = AbsMax(xb, kQK8_0);
    blocks[i].d = Fp32ToFp16(amax / 127);  // out of line in fp16.cc, portable code
    const float scale = amax > 0 ? 127 / amax : 0;
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(blocks[i].qs),
                        QuantizeScaled32(xb, _mm256_set1_ps(scale)));
  }
}

void QuantizeRowQ8K(const float* x, void* out, int64_t k) {
  auto* blocks = static_cast<BlockQ8_K*>(out);
  const __m256i bias = _mm256_set1_epi8(-128);
  for (int64_t i = 0; i < k / kQK_K; ++i) {
    const float* xb = x + i * kQK_K;
    BlockQ8_K& b = blocks[i];
    const float amax = AbsMax(xb, kQK_K);
    const float scale = amax > 0 ? 127 / amax : 0;
    b.d = amax > 0 ? 1 / scale : 0;
    for (int c = 0; c < kQK_K / 32; ++c) {
      const __m256i q = QuantizeScaled32(xb + 32 * c, _mm256_set1_ps(scale));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(b.qs + 32 * c), q);
      // Sums of each 16 quants: unsigned sums of q + 128 per 8 bytes, the two halves of each
      // 128-bit lane added, less 16 x 128.
      const __m256i sums8 = _mm256_sad_epu8(_mm256_xor_si256(q, bias), _mm256_setzero_si256());
      const __m256i sums16 = _mm256_add_epi64(sums8, _mm256_srli_si256(sums8, 8));
      b.bsums[2 * c] = static_cast<int16_t>(_mm256_extract_epi32(sums16, 0) - 16 * 128);
      b.bsums[2 * c + 1] = static_cast<int16_t>(_mm256_extract_epi32(sums16, 4) - 16 * 128);
    }
  }
}

// Decode streams each weight row once from memory. The hardware prefetcher alone leaves too
// few lines in flight when several rows are read at once with work between the loads, so
// decode tiles also request the lines kPrefetchDistance bytes ahead in every row they read.
constexpr int kPrefetchDistance = 1024;

template <int kLines, int kDistance = kPrefetchDistance>
inline void Prefetch(const uint8_t* p) {
  for (int i = 0; i < kLines; ++i) {
    _mm_prefetch(reinterpret_cast<const char*>(p + kDistance + 64 * i), _MM_HINT_T0);
  }
}

// Requests the lines of a block of kBlockBytes kDistance bytes ahead (kPrefetchDistance unless a
// kernel measured better), spread evenly over the kSteps steps a decode kernel takes through it
// (in every pass over the block, including those that read it again from L1), so that the memory
// gets requests at the rate the kernel consumes lines. Blocks follow one another, so the steps
// form one stride through the weights, and requesting the lines of each step's stride covers
// every line.
template <size_t kBlockBytes, int kSteps, int kDistance = kPrefetchDistance>
inline void PrefetchStep(const uint8_t* block, int step) {
  static_assert(kBlockBytes % kSteps == 0);
  constexpr size_t kStride = kBlockBytes / kSteps;
  Prefetch<(kStride + 63) / 64, kDistance>(block + kStride * step);
}

// UnpackQ4KScales (quant_internal.h) for the 16 rows of a BlockQ4_Kx16, one byte lane per row.
inline void UnpackQ4KScalesX16(const BlockQ4_Kx16& g, __m128i (&scales)[8], __m128i (&mins)[8]) {
  const __m128i six = _mm_set1_epi8(63), four = _mm_set1_epi8(0x0f), top = _mm_set1_epi8(0x30);
  __m128i p[12];
  for (int j = 0; j < 12; ++j) p[j] = Load128(g.scales[j]);
  for (int j = 0; j < 4; ++j) {
    scales[j] = _mm_and_si128(p[j], six);
    mins[j] = _mm_and_si128(p[j + 4], six);
    // (p >> 6) << 4 is (p >> 2) & 0x30 per byte
    scales[j + 4] = _mm_or_si128(_mm_and_si128(p[j + 8], four),
                                 _mm_and_si128(_mm_srli_epi16(p[j], 2), top));
    mins[j + 4] = _mm_or_si128(_mm_and_si128(_mm_srli_epi16(p[j + 8], 4), four),
                               _mm_and_si128(_mm_srli_epi16(p[j + 4], 2), top));
  }
}

// The activation sums of 32-element sub-blocks 2p and 2p + 1 of a Q8_K block as an s16 pair
// (|sum of 32 quants| < 2^15), which one vpmaddwd / vpdpwssd multiplies with a row's pair of
// Q4_K mins.
inline int32_t Q8KSubBlockSumPair(const BlockQ8_K& x, int p) {
  const int16_t* bsums = x.bsums + 4 * p;
  return static_cast<uint16_t>(bsums[0] + bsums[1]) | (bsums[2] + bsums[3]) * 65536;
}

// ---- Driver for weights interleaved 16 rows at a time (interleave.h, blocks.h) ----
//
// A kernel K provides kBatchRows, kDecodeStreams, kBlockElems (elements per block),
// kGroupBlockBytes, a type Sums holding 16 float lanes (Sums::Zero(), sums.Store(float* y)) and
//   template <int RB> static void Block(const uint8_t* group_block, const uint8_t* x,
//                                       size_t x_row_bytes, int64_t k, int64_t ib,
//                                       Sums (&acc)[RB]);
// which adds block ib of the 16 rows at group_block times RB activation rows to acc[b] (lane r:
// row r). In each block, lane r of an integer accumulator collects row r's products, so results
// need no reduction.

// G groups (at w[g], results to y[g]) times RB activation rows, block by block.
template <class K, int RB, int G>
void RunBlocks(const uint8_t* const (&w)[G], const uint8_t* x, size_t x_row_bytes, int64_t k,
               float* const (&y)[G], int64_t ldy) {
  typename K::Sums acc[G][RB];
  for (int g = 0; g < G; ++g)
    for (int b = 0; b < RB; ++b) acc[g][b] = K::Sums::Zero();
  for (int64_t ib = 0; ib < k / K::kBlockElems; ++ib) {
    for (int g = 0; g < G; ++g) {
      K::template Block<RB>(w[g] + ib * K::kGroupBlockBytes, x, x_row_bytes, k, ib, acc[g]);
    }
  }
  for (int g = 0; g < G; ++g)
    for (int b = 0; b < RB; ++b) acc[g][b].Store(y[g] + b * ldy);
}

// Decode reads the thread's groups as K::kDecodeStreams sequential streams at once, one per part
// of its row range: on the AVX-512 machine the memory system delivered ~1.2-1.5x more to several
// streams than to one, up to a count that depends on the kernel's work per byte; on the AVX2
// machine two for every kernel (each kernel's count is measured).
// Batches walk activation rows in chunks and reuse each group for all rows of a chunk while it is
// in cache, as RunTiles does.
template <class K>
void RunGroups(const GemmArgs& a) {
  const size_t group_bytes = kInterleavedRows * a.w_row_bytes;  // a group has the size of 16 rows
  const uint8_t* groups = a.w + a.r0 * a.w_row_bytes;
  const int64_t n_groups = (a.r1 - a.r0) / kInterleavedRows;
  if (a.nb == 1) {
    constexpr int kDecodeStreams = K::kDecodeStreams;
    const int64_t per_stream = n_groups / kDecodeStreams;
    for (int64_t i = 0; i < per_stream; ++i) {
      const uint8_t* w[kDecodeStreams];
      float* y[kDecodeStreams];
      for (int s = 0; s < kDecodeStreams; ++s) {
        const int64_t g = s * per_stream + i;
        w[s] = groups + g * group_bytes;
        y[s] = a.y + a.r0 + g * kInterleavedRows;
      }
      RunBlocks<K, 1, kDecodeStreams>(w, a.x, a.x_row_bytes, a.k, y, a.ldy);
    }
    for (int64_t g = kDecodeStreams * per_stream; g < n_groups; ++g) {
      const uint8_t* w[1] = {groups + g * group_bytes};
      float* y[1] = {a.y + a.r0 + g * kInterleavedRows};
      RunBlocks<K, 1, 1>(w, a.x, a.x_row_bytes, a.k, y, a.ldy);
    }
    return;
  }
  constexpr int64_t kBatchChunk = 64;
  constexpr int kRows = K::kBatchRows;
  for (int64_t b0 = 0; b0 < a.nb; b0 += kBatchChunk) {
    const int64_t b1 = a.nb < b0 + kBatchChunk ? a.nb : b0 + kBatchChunk;
    for (int64_t g = 0; g < n_groups; ++g) {
      const uint8_t* w[1] = {groups + g * group_bytes};
      int64_t b = b0;
      for (; b + kRows <= b1; b += kRows) {
        float* y[1] = {a.y + b * a.ldy + a.r0 + g * kInterleavedRows};
        RunBlocks<K, kRows, 1>(w, a.x + b * a.x_row_bytes, a.x_row_bytes, a.k, y, a.ldy);
      }
      for (; b < b1; ++b) {
        float* y[1] = {a.y + b * a.ldy + a.r0 + g * kInterleavedRows};
        RunBlocks<K, 1, 1>(w, a.x + b * a.x_row_bytes, a.x_row_bytes, a.k, y, a.ldy);
      }
    }
  }
}

}  // namespace
}  // namespace memoria::gemm_internal

#endif  // MEMORIA_ENGINE_QUANT_GEMM_X86_H_
