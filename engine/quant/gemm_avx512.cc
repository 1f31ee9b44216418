// AVX-512 (F/BW/VL/DQ + VNNI) kernels. Integer dot products use vpdpbusd (u8 x s8) and vpdpwssd
// (s16 x s16 with the sub-block scales). vpdpbusd needs one unsigned operand, so signed weights
// are offset to unsigned (Q8_0: w + 128, Q4_0 already 0..15) and the offset times the activation
// sum is subtracted once per activation block, shared by all weight rows of a tile.

#include <immintrin.h>

#include <cstring>

#include "engine/quant/blocks.h"
#include "engine/quant/gemm_internal.h"
#include "engine/quant/gemm_x86.h"

namespace memoria::gemm_internal {

namespace {

inline __m512i Load512(const uint8_t* p) { return _mm512_loadu_si512(p); }
inline __m512i Concat(__m256i lo, __m256i hi) {
  return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
}

// ---- F32 / F16 / BF16 weights: convert to f32 and FMA, 16 elements per step ----

struct F32Elem {
  static constexpr int kBytes = 4;
  static __m512 Load(const uint8_t* p) { return _mm512_loadu_ps(p); }
  static __m512 LoadPart(const uint8_t* p, __mmask16 m) { return _mm512_maskz_loadu_ps(m, p); }
};

struct F16Elem {
  static constexpr int kBytes = 2;
  static __m512 Load(const uint8_t* p) { return _mm512_cvtph_ps(Load256(p)); }
  static __m512 LoadPart(const uint8_t* p, __mmask16 m) {
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p));
  }
};

struct Bf16Elem {
  static constexpr int kBytes = 2;
  static __m512 Widen(__m256i h) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  }
  static __m512 Load(const uint8_t* p) { return Widen(Load256(p)); }
  static __m512 LoadPart(const uint8_t* p, __mmask16 m) {
    return Widen(_mm256_maskz_loadu_epi16(m, p));
  }
};

template <class E>
struct FloatKernel {
  static constexpr int kDecodeRows = 4;
  static constexpr int kBatchRows = 4;

  template <int RW, int RB>
  static void Tile(const uint8_t* w, size_t w_row_bytes, const uint8_t* x, size_t x_row_bytes,
                   int64_t k, float* y, int64_t ldy) {
    __m512 acc[RW][RB];
    for (int r = 0; r < RW; ++r)
      for (int b = 0; b < RB; ++b) acc[r][b] = _mm512_setzero_ps();
    // Each iteration reads one 64-byte line of every weight row.
    constexpr int kVectors = 64 / (16 * E::kBytes);
    int64_t i = 0;
    for (; i + 16 * kVectors <= k; i += 16 * kVectors) {
      if (RB == 1) {
        for (int r = 0; r < RW; ++r) Prefetch<1>(w + r * w_row_bytes + i * E::kBytes);
      }
      for (int v = 0; v < kVectors; ++v) {
        const int64_t iv = i + 16 * v;
        __m512 xv[RB];
        for (int b = 0; b < RB; ++b) xv[b] = E::Load(x + b * x_row_bytes + iv * E::kBytes);
        for (int r = 0; r < RW; ++r) {
          const __m512 wv = E::Load(w + r * w_row_bytes + iv * E::kBytes);
          for (int b = 0; b < RB; ++b) acc[r][b] = _mm512_fmadd_ps(wv, xv[b], acc[r][b]);
        }
      }
    }
    for (; i + 16 <= k; i += 16) {
      __m512 xv[RB];
      for (int b = 0; b < RB; ++b) xv[b] = E::Load(x + b * x_row_bytes + i * E::kBytes);
      for (int r = 0; r < RW; ++r) {
        const __m512 wv = E::Load(w + r * w_row_bytes + i * E::kBytes);
        for (int b = 0; b < RB; ++b) acc[r][b] = _mm512_fmadd_ps(wv, xv[b], acc[r][b]);
      }
    }
    if (i < k) {
      const __mmask16 m = static_cast<__mmask16>((1u << (k - i)) - 1);
      __m512 xv[RB];
      for (int b = 0; b < RB; ++b) xv[b] = E::LoadPart(x + b * x_row_bytes + i * E::kBytes, m);
      for (int r = 0; r < RW; ++r) {
        const __m512 wv = E::LoadPart(w + r * w_row_bytes + i * E::kBytes, m);
        for (int b = 0; b < RB; ++b) acc[r][b] = _mm512_fmadd_ps(wv, xv[b], acc[r][b]);
      }
    }
    for (int r = 0; r < RW; ++r)
      for (int b = 0; b < RB; ++b) y[b * ldy + r] = _mm512_reduce_add_ps(acc[r][b]);
  }
};

// ---- Q8_0 and Q4_0 weights x Q8_0 activations, two 32-element blocks per zmm ----

// Two fp16 block scales as [d0 x 8, d1 x 8], matching the lanes of a vpdpbusd over two blocks.
inline __m512 PairScales(const uint8_t* block0, const uint8_t* block1) {
  uint16_t h0, h1;
  std::memcpy(&h0, block0, sizeof h0);
  std::memcpy(&h1, block1, sizeof h1);
  const __m256i h =
      _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_set1_epi16(h0)), _mm_set1_epi16(h1), 1);
  return _mm512_cvtph_ps(h);
}

struct Q8_0Weights {
  static constexpr int kBlockBytes = sizeof(BlockQ8_0);
  static constexpr int kOffsetShift = 7;  // stored as w + 128
  static __m512i Unsigned(__m512i q) { return _mm512_xor_si512(q, _mm512_set1_epi8(-128)); }
  static __m512i Load2(const uint8_t* b) {
    return Unsigned(Concat(Load256(b + 2), Load256(b + kBlockBytes + 2)));
  }
  static __m512i Load1(const uint8_t* b) {
    return Unsigned(_mm512_zextsi256_si512(Load256(b + 2)));
  }
};

struct Q4_0Weights {
  static constexpr int kBlockBytes = sizeof(BlockQ4_0);
  static constexpr int kOffsetShift = 3;  // nibbles are w + 8
  // 128-bit lanes [q0, q0, q1, q1] -> [low nibbles 0, high nibbles 0, low 1, high 1].
  static __m512i Nibbles(__m512i t) {
    const __m512i shifted = _mm512_srli_epi16(t, 4);
    return _mm512_and_si512(_mm512_mask_blend_epi64(0xcc, t, shifted), _mm512_set1_epi8(0x0f));
  }
  static __m512i Load2(const uint8_t* b) {
    return Nibbles(Concat(_mm256_broadcastsi128_si256(Load128(b + 2)),
                          _mm256_broadcastsi128_si256(Load128(b + kBlockBytes + 2))));
  }
  static __m512i Load1(const uint8_t* b) {
    return Nibbles(_mm512_zextsi256_si512(_mm256_broadcastsi128_si256(Load128(b + 2))));
  }
};

template <class Wt>
struct Q8DotKernel {
  static constexpr int kDecodeRows = 4;
  static constexpr int kBatchRows = 4;
  static constexpr int kXBytes = sizeof(BlockQ8_0);

  // One step over blocks [ib, ib + 2) (kPair) or the single block ib. A single block leaves the
  // upper activation half zero, so whatever sits in the weights' upper half contributes nothing.
  template <int RW, int RB, bool kPair>
  static void Step(const uint8_t* w, size_t w_row_bytes, const uint8_t* x, size_t x_row_bytes,
                   int64_t ib, __m512 (&acc)[RW][RB]) {
    const __m512i ones = _mm512_set1_epi8(1);
    __m512i xv[RB], neg_offset[RB];
    __m512 dx[RB];
    for (int b = 0; b < RB; ++b) {
      const uint8_t* xb = x + b * x_row_bytes + ib * kXBytes;
      xv[b] = kPair ? Concat(Load256(xb + 2), Load256(xb + kXBytes + 2))
                    : _mm512_zextsi256_si512(Load256(xb + 2));
      const __m512i sum = _mm512_dpbusd_epi32(_mm512_setzero_si512(), ones, xv[b]);
      neg_offset[b] =
          _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32(sum, Wt::kOffsetShift));
      dx[b] = PairScales(xb, kPair ? xb + kXBytes : xb);
    }
    for (int r = 0; r < RW; ++r) {
      const uint8_t* wb = w + r * w_row_bytes + ib * Wt::kBlockBytes;
      if (RB == 1) Prefetch<1>(wb);
      const __m512i u = kPair ? Wt::Load2(wb) : Wt::Load1(wb);
      const __m512 dw = PairScales(wb, kPair ? wb + Wt::kBlockBytes : wb);
      for (int b = 0; b < RB; ++b) {
        const __m512i p = _mm512_dpbusd_epi32(neg_offset[b], u, xv[b]);
        acc[r][b] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), _mm512_mul_ps(dw, dx[b]), acc[r][b]);
      }
    }
  }

  template <int RW, int RB>
  static void Tile(const uint8_t* w, size_t w_row_bytes, const uint8_t* x, size_t x_row_bytes,
                   int64_t k, float* y, int64_t ldy) {
    __m512 acc[RW][RB];
    for (int r = 0; r < RW; ++r)
      for (int b = 0; b < RB; ++b) acc[r][b] = _mm512_setzero_ps();
    const int64_t nblocks = k / kQK8_0;
    int64_t ib = 0;
    for (; ib + 2 <= nblocks; ib += 2) {
      Step<RW, RB, true>(w, w_row_bytes, x, x_row_bytes, ib, acc);
    }
    if (ib < nblocks) Step<RW, RB, false>(w, w_row_bytes, x, x_row_bytes, ib, acc);
    for (int r = 0; r < RW; ++r)
      for (int b = 0; b < RB; ++b) y[b * ldy + r] = _mm512_reduce_add_ps(acc[r][b]);
  }
};

// ---- Weights interleaved 16 rows at a time (interleave.h, blocks.h; driver in gemm_x86.h) ----

// A group's 16 rows, lane r for row r.
struct GroupSums {
  __m512 v;
  static GroupSums Zero() { return {_mm512_setzero_ps()}; }
  void Store(float* y) const { _mm512_storeu_ps(y, v); }
};

// Q8_0 x Q8_0 activations followed by their block sums. Weights are stored + 128, so each
// block's accumulator starts at -128 x (activation block sum); two chains of four vpdpbusd halve
// the latency of the sum.
struct Q8_0x16Kernel {
  static constexpr int kBatchRows = 4;
  static constexpr int kDecodeStreams = 4;  // 2: 0.75x, 8: 0.6x (kernels_bench, 2 threads)
  static constexpr int kBlockElems = kQK8_0;
  static constexpr size_t kGroupBlockBytes = sizeof(BlockQ8_0x16);
  using Sums = GroupSums;

  template <int RB>
  static void Block(const uint8_t* group_block, const uint8_t* x, size_t x_row_bytes, int64_t k,
                    int64_t ib, GroupSums (&acc)[RB]) {
    const GroupBlockParts<BlockQ8_0x16> g(group_block, ib);
    const uint8_t* sums = x + (k / kQK8_0) * sizeof(BlockQ8_0);
    if (RB == 1) Prefetch<2>(group_block);
    __m512i q[kQK8_0 / 4];
    for (int c = 0; c < kQK8_0 / 4; ++c) q[c] = Load512(g.quants->qs[c][0]);
    const __m512 dw = _mm512_cvtph_ps(Load256(reinterpret_cast<const uint8_t*>(g.scales->d)));
    for (int b = 0; b < RB; ++b) {
      const uint8_t* xb = x + b * x_row_bytes + ib * sizeof(BlockQ8_0);
      const int32_t sum = Load32(sums + b * x_row_bytes + ib * sizeof(int32_t));
      __m512i even = _mm512_set1_epi32(-128 * sum), odd = _mm512_setzero_si512();
      for (int c = 0; c < kQK8_0 / 4; c += 2) {
        even = _mm512_dpbusd_epi32(even, q[c], _mm512_set1_epi32(Load32(xb + 2 + 4 * c)));
        odd = _mm512_dpbusd_epi32(odd, q[c + 1], _mm512_set1_epi32(Load32(xb + 6 + 4 * c)));
      }
      const __m512 d = _mm512_mul_ps(dw, _mm512_set1_ps(LoadFp16(xb)));
      acc[b].v = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(even, odd)), d, acc[b].v);
    }
  }
};

// Q4_K x Q8_K: per super-block, sub-block sums times the 6-bit scales, minus the 6-bit mins times
// the activation's sub-block sums (from bsums), as DotRowQ4K in gemm_scalar.cc.
struct Q4_Kx16Kernel {
  static constexpr int kBatchRows = 4;
  static constexpr int kDecodeStreams = 2;  // 1: 0.85x, 4: 0.65x (kernels_bench, 2 threads)
  static constexpr int kBlockElems = kQK_K;
  static constexpr size_t kGroupBlockBytes = sizeof(BlockQ4_Kx16);
  using Sums = GroupSums;

  template <int RB>
  static void Block(const uint8_t* group_block, const uint8_t* x, size_t x_row_bytes,
                    int64_t /*k*/, int64_t ib, GroupSums (&acc)[RB]) {
    const __m512i four = _mm512_set1_epi8(0x0f);
    const BlockQ4_Kx16& g = *reinterpret_cast<const BlockQ4_Kx16*>(group_block);
    const BlockQ8_K* xb[RB];
    for (int b = 0; b < RB; ++b) {
      xb[b] = reinterpret_cast<const BlockQ8_K*>(x + b * x_row_bytes) + ib;
    }
    __m128i scales[8], mins[8];
    UnpackQ4KScalesX16(g, scales, mins);
    __m512i isum[RB];
    for (int b = 0; b < RB; ++b) isum[b] = _mm512_setzero_si512();
    for (int c = 0; c < 4; ++c) {
      __m512i lo_sum[RB], hi_sum[RB];
      for (int b = 0; b < RB; ++b) lo_sum[b] = hi_sum[b] = _mm512_setzero_si512();
      for (int t = 0; t < 8; ++t) {
        if (RB == 1) Prefetch<1>(g.qs[c][t][0]);
        const __m512i q = Load512(g.qs[c][t][0]);
        const __m512i lo = _mm512_and_si512(q, four);
        const __m512i hi = _mm512_and_si512(_mm512_srli_epi16(q, 4), four);
        for (int b = 0; b < RB; ++b) {
          const int8_t* xq = xb[b]->qs + 64 * c + 4 * t;
          lo_sum[b] = _mm512_dpbusd_epi32(lo_sum[b], lo, _mm512_set1_epi32(Load32(xq)));
          hi_sum[b] = _mm512_dpbusd_epi32(hi_sum[b], hi, _mm512_set1_epi32(Load32(xq + 32)));
        }
      }
      const __m512i s_lo = _mm512_cvtepu8_epi32(scales[2 * c]);
      const __m512i s_hi = _mm512_cvtepu8_epi32(scales[2 * c + 1]);
      for (int b = 0; b < RB; ++b) {
        const __m512i sub_sums = _mm512_add_epi32(_mm512_mullo_epi32(lo_sum[b], s_lo),
                                                  _mm512_mullo_epi32(hi_sum[b], s_hi));
        isum[b] = _mm512_add_epi32(isum[b], sub_sums);
      }
    }
    // Mins of sub-blocks 2p and 2p + 1 as a 16-bit pair in each row's lane, so that one vpdpwssd
    // per pair multiplies them with the pair's activation sums (|sum of 32 quants| < 2^15).
    __m512i min_pairs[4];
    for (int p = 0; p < 4; ++p) {
      min_pairs[p] = _mm512_cvtepu8_epi16(
          _mm256_set_m128i(_mm_unpackhi_epi8(mins[2 * p], mins[2 * p + 1]),
                           _mm_unpacklo_epi8(mins[2 * p], mins[2 * p + 1])));
    }
    const __m512 d = _mm512_cvtph_ps(Load256(reinterpret_cast<const uint8_t*>(g.d)));
    const __m512 dmin = _mm512_cvtph_ps(Load256(reinterpret_cast<const uint8_t*>(g.dmin)));
    for (int b = 0; b < RB; ++b) {
      __m512i msum = _mm512_setzero_si512();
      for (int p = 0; p < 4; ++p) {
        msum = _mm512_dpwssd_epi32(msum, min_pairs[p],
                                   _mm512_set1_epi32(Q8KSubBlockSumPair(*xb[b], p)));
      }
      const __m512 dx = _mm512_set1_ps(xb[b]->d);
      acc[b].v = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[b]), _mm512_mul_ps(d, dx), acc[b].v);
      acc[b].v = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(msum), _mm512_mul_ps(dmin, dx), acc[b].v);
    }
  }
};

// Q6_K x Q8_K. The 6-bit quants are used unsigned (0..63) and each 16-element sub-block's sum
// starts at -32 x its activation sum (bsums), which makes it the sum over q - 32; then times the
// sub-block's scale, as DotRowQ6K in gemm_scalar.cc. Three of every four quants are the low 6 bits
// of a byte, the fourth is gathered from the three bytes' top 2 bits (BlockQ6_Kx16).
struct Q6_Kx16Kernel {
  static constexpr int kBatchRows = 2;  // 4 x RB sub-block sums live at once
  static constexpr int kDecodeStreams = 2;  // 1: 0.9x, 4: 0.6x (kernels_bench, 2 threads)
  static constexpr int kBlockElems = kQK_K;
  static constexpr size_t kGroupBlockBytes = sizeof(BlockQ6_Kx16);
  using Sums = GroupSums;

  template <int RB>
  static void Block(const uint8_t* group_block, const uint8_t* x, size_t x_row_bytes,
                    int64_t /*k*/, int64_t ib, GroupSums (&acc)[RB]) {
    const __m512i six = _mm512_set1_epi8(63);
    const __m512i bits_01 = _mm512_set1_epi8(0x03), bits_0123 = _mm512_set1_epi8(0x0f);
    const GroupBlockParts<BlockQ6_Kx16> g(group_block, ib);
    const auto& qs = g.quants->qs;
    const BlockQ8_K* xb[RB];
    for (int b = 0; b < RB; ++b) {
      xb[b] = reinterpret_cast<const BlockQ8_K*>(x + b * x_row_bytes) + ib;
    }
    __m512i isum[RB];
    for (int b = 0; b < RB; ++b) isum[b] = _mm512_setzero_si512();
    // Quants of element 128h + 32n + 4t + i (n = 0..3) form sub-block 8h + 2n + t / 4.
    for (int h = 0; h < 2; ++h) {
      for (int half = 0; half < 2; ++half) {
        __m512i sub[RB][4];
        for (int b = 0; b < RB; ++b) {
          for (int n = 0; n < 4; ++n) {
            sub[b][n] = _mm512_set1_epi32(-32 * xb[b]->bsums[8 * h + 2 * n + half]);
          }
        }
        for (int t = 4 * half; t < 4 * half + 4; ++t) {
          // One line ahead per 3 read: requesting all 3 (as the Q4_K kernel requests each line
          // it reads) was 5-30% slower with 1 thread and no faster with 2 (kernels_bench, 5
          // rounds).
          if (RB == 1) Prefetch<1>(qs[h][t][0][0]);
          const __m512i v0 = Load512(qs[h][t][0][0]);
          const __m512i v1 = Load512(qs[h][t][1][0]);
          const __m512i v2 = Load512(qs[h][t][2][0]);
          __m512i q[4];
          q[0] = _mm512_and_si512(v0, six);
          q[1] = _mm512_and_si512(v1, six);
          q[2] = _mm512_and_si512(v2, six);
          // Top bits of v0, v1, v2 to bits 0-1, 2-3, 4-5 (16-bit shifts: the bits kept come
          // from the same byte), merged by bit selects (vpternlog 0xe4: c ? a : b per bit).
          const __m512i q3_low = _mm512_ternarylogic_epi32(
              _mm512_srli_epi16(v0, 6), _mm512_srli_epi16(v1, 4), bits_01, 0xe4);
          q[3] = _mm512_and_si512(
              _mm512_ternarylogic_epi32(q3_low, _mm512_srli_epi16(v2, 2), bits_0123, 0xe4), six);
          for (int b = 0; b < RB; ++b) {
            const int8_t* xq = xb[b]->qs + 128 * h + 4 * t;
            for (int n = 0; n < 4; ++n) {
              sub[b][n] = _mm512_dpbusd_epi32(sub[b][n], q[n],
                                              _mm512_set1_epi32(Load32(xq + 32 * n)));
            }
          }
        }
        for (int n = 0; n < 4; ++n) {
          const __m512i scale = _mm512_cvtepi8_epi32(Load128(
              reinterpret_cast<const uint8_t*>(g.scales->scales[8 * h + 2 * n + half])));
          for (int b = 0; b < RB; ++b) {
            isum[b] = _mm512_add_epi32(isum[b], _mm512_mullo_epi32(sub[b][n], scale));
          }
        }
      }
    }
    const __m512 d = _mm512_cvtph_ps(Load256(reinterpret_cast<const uint8_t*>(g.scales->d)));
    for (int b = 0; b < RB; ++b) {
      acc[b].v = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[b]),
                                 _mm512_mul_ps(d, _mm512_set1_ps(xb[b]->d)), acc[b].v);
    }
  }
};

// ---- k-quants x Q8_K ----

constexpr int kQ8KQsOffset = 4;       // after float d
constexpr int kQ8KBsumsOffset = 260;  // after d and 256 quants

// vpermw index vectors: word i of table t selects scale `first[t] + i / 16 * step` (two 256-bit
// halves, one scale each) or, for Q6_K, `4 t + i / 8` (four 128-bit quarters).
struct ScaleIndexTables {
  alignas(64) int16_t q4k[4][32];
  alignas(64) int16_t q6k[4][32];
};

constexpr ScaleIndexTables MakeScaleIndexTables() {
  ScaleIndexTables t{};
  // Q4_K, per 128 elements jj: low nibbles hold sub-blocks 4jj and 4jj+2, high ones 4jj+1, 4jj+3.
  const int first[4] = {0, 1, 4, 5};
  for (int v = 0; v < 4; ++v) {
    for (int i = 0; i < 32; ++i) {
      t.q4k[v][i] = static_cast<int16_t>(first[v] + (i / 16) * 2);
      t.q6k[v][i] = static_cast<int16_t>(4 * v + i / 8);
    }
  }
  return t;
}

constexpr ScaleIndexTables kScaleIndex = MakeScaleIndexTables();

inline __m512i LoadIndex(const int16_t* idx) { return _mm512_load_si512(idx); }

// Q4_K: 64 bytes of qs cover 128 elements as four 32-element sub-blocks: low nibbles of bytes
// 0-31 / 32-63 are sub-blocks 4jj / 4jj+2, high nibbles 4jj+1 / 4jj+3, so the activations are
// gathered into the same order (shared by all rows of the tile). vpmaddubsw pairs quants with
// activations (|sum| <= 2*15*127) and vpdpwssd applies each sub-block's 6-bit scale per word.
// The mins meet the activation group sums (bsums).
struct Q4KKernel {
  static constexpr int kDecodeRows = 4;
  static constexpr int kBatchRows = 2;
  static constexpr int kXBytes = sizeof(BlockQ8_K);

  template <int RW, int RB>
  static void Tile(const uint8_t* w, size_t w_row_bytes, const uint8_t* x, size_t x_row_bytes,
                   int64_t k, float* y, int64_t ldy) {
    const __m512i low4 = _mm512_set1_epi8(0x0f);
    __m512 acc[RW][RB];
    for (int r = 0; r < RW; ++r)
      for (int b = 0; b < RB; ++b) acc[r][b] = _mm512_setzero_ps();
    for (int64_t sb = 0; sb < k / kQK_K; ++sb) {
      __m512i scales[RW];
      __m256i mins[RW];
      float d[RW], dmin[RW];
      const uint8_t* qs[RW];
      for (int r = 0; r < RW; ++r) {
        const uint8_t* blk = w + r * w_row_bytes + sb * sizeof(BlockQ4_K);
        if (RB == 1) Prefetch<3>(blk);
        d[r] = LoadFp16(blk);
        dmin[r] = LoadFp16(blk + 2);
        uint32_t u[3];
        std::memcpy(u, blk + 4, sizeof u);
        // The 6-bit packing, four bytes at a time: scales/mins 0-3 are the low 6 bits of bytes
        // 0-3 / 4-7; 4-7 take a nibble of bytes 8-11 and their top 2 bits from bytes 0-3 / 4-7.
        const uint64_t sc =
            (u[0] & 0x3f3f3f3f) |
            (static_cast<uint64_t>((u[2] & 0x0f0f0f0f) | ((u[0] >> 2) & 0x30303030)) << 32);
        const uint64_t mn =
            (u[1] & 0x3f3f3f3f) |
            (static_cast<uint64_t>(((u[2] >> 4) & 0x0f0f0f0f) | ((u[1] >> 2) & 0x30303030)) << 32);
        scales[r] =
            _mm512_castsi128_si512(_mm_cvtepu8_epi16(_mm_cvtsi64_si128(static_cast<int64_t>(sc))));
        const __m128i m8 = _mm_cvtsi64_si128(static_cast<int64_t>(mn));
        mins[r] = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(m8, m8));  // each min twice: one per bsum
        qs[r] = blk + 16;
      }
      __m512i isum[RW][RB];
      for (int r = 0; r < RW; ++r)
        for (int b = 0; b < RB; ++b) isum[r][b] = _mm512_setzero_si512();
      const uint8_t* xblk = x + sb * kXBytes;
      for (int jj = 0; jj < 2; ++jj) {
        __m512i x_lo[RB], x_hi[RB];
        for (int b = 0; b < RB; ++b) {
          const uint8_t* xq = xblk + b * x_row_bytes + kQ8KQsOffset + 128 * jj;
          x_lo[b] = Concat(Load256(xq), Load256(xq + 64));
          x_hi[b] = Concat(Load256(xq + 32), Load256(xq + 96));
        }
        const __m512i idx_lo = LoadIndex(kScaleIndex.q4k[2 * jj]);
        const __m512i idx_hi = LoadIndex(kScaleIndex.q4k[2 * jj + 1]);
        for (int r = 0; r < RW; ++r) {
          const __m512i v = Load512(qs[r] + 64 * jj);
          const __m512i q_lo = _mm512_and_si512(v, low4);
          const __m512i q_hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), low4);
          const __m512i s_lo = _mm512_permutexvar_epi16(idx_lo, scales[r]);
          const __m512i s_hi = _mm512_permutexvar_epi16(idx_hi, scales[r]);
          for (int b = 0; b < RB; ++b) {
            isum[r][b] = _mm512_dpwssd_epi32(isum[r][b], _mm512_maddubs_epi16(q_lo, x_lo[b]), s_lo);
            isum[r][b] = _mm512_dpwssd_epi32(isum[r][b], _mm512_maddubs_epi16(q_hi, x_hi[b]), s_hi);
          }
        }
      }
      for (int b = 0; b < RB; ++b) {
        const uint8_t* xb = xblk + b * x_row_bytes;
        const float dx = LoadF32(xb);
        const __m256i bsums = Load256(xb + kQ8KBsumsOffset);
        for (int r = 0; r < RW; ++r) {
          const __m256 m = _mm256_cvtepi32_ps(_mm256_madd_epi16(mins[r], bsums));
          acc[r][b] =
              _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[r][b]), _mm512_set1_ps(d[r] * dx), acc[r][b]);
          acc[r][b] =
              _mm512_fmadd_ps(_mm512_zextps256_ps512(m), _mm512_set1_ps(-dmin[r] * dx), acc[r][b]);
        }
      }
    }
    for (int r = 0; r < RW; ++r)
      for (int b = 0; b < RB; ++b) y[b * ldy + r] = _mm512_reduce_add_ps(acc[r][b]);
  }
};

// Q6_K: per half of 128, 64 bytes of ql and 32 of qh rebuild two zmm of 6-bit quants (elements
// 0-63 from the low nibbles, 64-127 from the high ones), used unsigned (q + 32); the 32 * scale *
// group-sum correction comes from bsums.
struct Q6KKernel {
  static constexpr int kDecodeRows = 4;
  static constexpr int kBatchRows = 2;
  static constexpr int kXBytes = sizeof(BlockQ8_K);

  template <int RW, int RB>
  static void Tile(const uint8_t* w, size_t w_row_bytes, const uint8_t* x, size_t x_row_bytes,
                   int64_t k, float* y, int64_t ldy) {
    const __m512i low4 = _mm512_set1_epi8(0x0f);
    const __m512i bits01 = _mm512_set1_epi8(0x03);
    const __m512i bits45 = _mm512_set1_epi8(0x30);
    __m512 acc[RW][RB];
    for (int r = 0; r < RW; ++r)
      for (int b = 0; b < RB; ++b) acc[r][b] = _mm512_setzero_ps();
    for (int64_t sb = 0; sb < k / kQK_K; ++sb) {
      __m512i scales[RW];
      float d[RW];
      const uint8_t* blk[RW];
      for (int r = 0; r < RW; ++r) {
        blk[r] = w + r * w_row_bytes + sb * sizeof(BlockQ6_K);
        if (RB == 1) Prefetch<4>(blk[r]);
        scales[r] = _mm512_castsi256_si512(
            _mm256_cvtepi8_epi16(Load128(blk[r] + offsetof(BlockQ6_K, scales))));
        d[r] = LoadFp16(blk[r] + offsetof(BlockQ6_K, d));
      }
      __m512i isum[RW][RB];
      for (int r = 0; r < RW; ++r)
        for (int b = 0; b < RB; ++b) isum[r][b] = _mm512_setzero_si512();
      const uint8_t* xblk = x + sb * kXBytes;
      for (int h = 0; h < 2; ++h) {
        __m512i x_lo[RB], x_hi[RB];
        for (int b = 0; b < RB; ++b) {
          const uint8_t* xq = xblk + b * x_row_bytes + kQ8KQsOffset + 128 * h;
          x_lo[b] = Load512(xq);
          x_hi[b] = Load512(xq + 64);
        }
        for (int r = 0; r < RW; ++r) {
          const __m512i ql = Load512(blk[r] + offsetof(BlockQ6_K, ql) + 64 * h);
          const __m256i qh = Load256(blk[r] + offsetof(BlockQ6_K, qh) + 32 * h);
          // Bytes 0-31 pair with qh, bytes 32-63 with qh >> 2 (16-bit shifts are safe: only
          // bits 0-1 and 4-5 of each byte are used afterwards).
          const __m512i qhz = Concat(qh, _mm256_srli_epi16(qh, 2));
          const __m512i q_lo = _mm512_or_si512(_mm512_and_si512(ql, low4),
                                               _mm512_slli_epi16(_mm512_and_si512(qhz, bits01), 4));
          const __m512i q_hi = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ql, 4), low4),
                                               _mm512_and_si512(qhz, bits45));
          const __m512i s_lo =
              _mm512_permutexvar_epi16(LoadIndex(kScaleIndex.q6k[2 * h]), scales[r]);
          const __m512i s_hi =
              _mm512_permutexvar_epi16(LoadIndex(kScaleIndex.q6k[2 * h + 1]), scales[r]);
          for (int b = 0; b < RB; ++b) {
            isum[r][b] = _mm512_dpwssd_epi32(isum[r][b], _mm512_maddubs_epi16(q_lo, x_lo[b]), s_lo);
            isum[r][b] = _mm512_dpwssd_epi32(isum[r][b], _mm512_maddubs_epi16(q_hi, x_hi[b]), s_hi);
          }
        }
      }
      for (int b = 0; b < RB; ++b) {
        const uint8_t* xb = xblk + b * x_row_bytes;
        const float dx = LoadF32(xb);
        const __m256i bsums = Load256(xb + kQ8KBsumsOffset);
        for (int r = 0; r < RW; ++r) {
          const __m256i corr =
              _mm256_slli_epi32(_mm256_madd_epi16(_mm512_castsi512_si256(scales[r]), bsums), 5);
          const __m512i total = _mm512_sub_epi32(isum[r][b], _mm512_zextsi256_si512(corr));
          acc[r][b] =
              _mm512_fmadd_ps(_mm512_cvtepi32_ps(total), _mm512_set1_ps(d[r] * dx), acc[r][b]);
        }
      }
    }
    for (int r = 0; r < RW; ++r)
      for (int b = 0; b < RB; ++b) y[b * ldy + r] = _mm512_reduce_add_ps(acc[r][b]);
  }
};

// ---- f32 rows to f16 (the KV cache, F16 activations) ----

inline __mmask16 TailMask(int64_t n) { return static_cast<__mmask16>((1u << n) - 1); }

void Fp32ToFp16Row(const float* x, uint16_t* y, int64_t n) {
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = n - i >= 16 ? 0xffff : TailMask(n - i);
    const __m256i h = _mm512_cvtps_ph(_mm512_maskz_loadu_ps(m, x + i),
                                      _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    _mm256_mask_storeu_epi16(y + i, m, h);
  }
}

}  // namespace

const KernelTable& Avx512Kernels() {
  static const KernelTable table{RunTiles<FloatKernel<F32Elem>>,
                                 RunTiles<FloatKernel<F16Elem>>,
                                 RunTiles<FloatKernel<Bf16Elem>>,
                                 RunTiles<Q8DotKernel<Q8_0Weights>>,
                                 RunTiles<Q8DotKernel<Q4_0Weights>>,
                                 RunTiles<Q4KKernel>,
                                 RunTiles<Q6KKernel>,
                                 RunGroups<Q8_0x16Kernel>,
                                 RunGroups<Q4_Kx16Kernel>,
                                 RunGroups<Q6_Kx16Kernel>,
                                 Fp32ToFp16Row,
                                 Fp16ToFp32Row,
                                 SiluMulF32,
                                 SoftmaxNumeratorsF32,
                                 AccumulateRows<float>,
                                 AccumulateRows<uint16_t>,
                                 DotRows<float>,
                                 DotRows<uint16_t>,
                                 QuantizeRowQ8_0,
                                 QuantizeRowQ8K};
  return table;
}

}  // namespace memoria::gemm_internal
