// AVX2 + FMA + F16C kernels. Without VNNI the 8-bit dot products use vpmaddubsw (u8 x s8 pairs
// into saturating s16), so operands are kept in ranges where a pair cannot saturate: signed
// weights go through the sign trick (|w| x sign-adjusted x), 4- and 6-bit quants are unsigned.

#include <immintrin.h>

#include <cstring>

#include "engine/quant/blocks.h"
#include "engine/quant/fp16.h"
#include "engine/quant/gemm_internal.h"
#include "engine/quant/gemm_x86.h"

namespace memoria::gemm_internal {

namespace {


// Sums adjacent s16 pairs into s32.
inline __m256i PairSum16(__m256i v) { return _mm256_madd_epi16(v, _mm256_set1_epi16(1)); }

// vpshufb pattern that broadcasts 16-bit word `word` across each 128-bit lane.
inline __m256i WordBroadcast(int word) {
  return _mm256_set1_epi16(static_cast<int16_t>(0x0202 * word + 0x0100));
}

// ---- F32 / F16 / BF16 weights: 8 elements per step, scalar tail ----

struct F32Elem {
  static constexpr int kBytes = 4;
  static __m256 Load(const uint8_t* p) {
    return _mm256_loadu_ps(reinterpret_cast<const float*>(p));
  }
  static float Scalar(const uint8_t* p) { return LoadF32(p); }
};

struct F16Elem {
  static constexpr int kBytes = 2;
  static __m256 Load(const uint8_t* p) { return _mm256_cvtph_ps(Load128(p)); }
  static float Scalar(const uint8_t* p) { return LoadFp16(p); }
};

struct Bf16Elem {
  static constexpr int kBytes = 2;
  static __m256 Load(const uint8_t* p) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(Load128(p)), 16));
  }
  static float Scalar(const uint8_t* p) {
    uint16_t h;
    std::memcpy(&h, p, sizeof h);
    const uint32_t bits = static_cast<uint32_t>(h) << 16;
    float f;
    std::memcpy(&f, &bits, sizeof f);
    return f;
  }
};

template <class E>
struct FloatKernel {
  static constexpr int kDecodeRows = 4;
  static constexpr int kBatchRows = 2;

  template <int RW, int RB>
  static void Tile(const uint8_t* w, size_t w_row_bytes, const uint8_t* x, size_t x_row_bytes,
                   int64_t k, float* y, int64_t ldy) {
    __m256 acc[RW][RB];
    for (int r = 0; r < RW; ++r)
      for (int b = 0; b < RB; ++b) acc[r][b] = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= k; i += 8) {
      if (RB == 1 && (i * E::kBytes) % 64 == 0) {
        for (int r = 0; r < RW; ++r) Prefetch<1>(w + r * w_row_bytes + i * E::kBytes);
      }
      __m256 xv[RB];
      for (int b = 0; b < RB; ++b) xv[b] = E::Load(x + b * x_row_bytes + i * E::kBytes);
      for (int r = 0; r < RW; ++r) {
        const __m256 wv = E::Load(w + r * w_row_bytes + i * E::kBytes);
        for (int b = 0; b < RB; ++b) acc[r][b] = _mm256_fmadd_ps(wv, xv[b], acc[r][b]);
      }
    }
    for (int r = 0; r < RW; ++r) {
      for (int b = 0; b < RB; ++b) {
        float sum = Hsum(acc[r][b]);
        for (int64_t t = i; t < k; ++t) {
          sum += E::Scalar(w + r * w_row_bytes + t * E::kBytes) *
                 E::Scalar(x + b * x_row_bytes + t * E::kBytes);
        }
        y[b * ldy + r] = sum;
      }
    }
  }
};

// ---- Q8_0 and Q4_0 weights x Q8_0 activations, one 32-element block per ymm ----

struct Q8_0Weights {
  static constexpr int kBlockBytes = sizeof(BlockQ8_0);
  static __m256i Load(const uint8_t* b) { return Load256(b + 2); }
};

struct Q4_0Weights {
  static constexpr int kBlockBytes = sizeof(BlockQ4_0);
  static __m256i Load(const uint8_t* b) {
    const __m128i v = Load128(b + 2);
    const __m256i both =
        _mm256_inserti128_si256(_mm256_castsi128_si256(v), _mm_srli_epi16(v, 4), 1);
    return _mm256_sub_epi8(_mm256_and_si256(both, _mm256_set1_epi8(0x0f)), _mm256_set1_epi8(8));
  }
};

template <class Wt>
struct Q8DotKernel {
  static constexpr int kDecodeRows = 4;
  static constexpr int kBatchRows = 2;
  static constexpr int kXBytes = sizeof(BlockQ8_0);

  template <int RW, int RB>
  static void Tile(const uint8_t* w, size_t w_row_bytes, const uint8_t* x, size_t x_row_bytes,
                   int64_t k, float* y, int64_t ldy) {
    __m256 acc[RW][RB];
    for (int r = 0; r < RW; ++r)
      for (int b = 0; b < RB; ++b) acc[r][b] = _mm256_setzero_ps();
    for (int64_t ib = 0; ib < k / kQK8_0; ++ib) {
      __m256i xv[RB];
      float dx[RB];
      for (int b = 0; b < RB; ++b) {
        const uint8_t* xb = x + b * x_row_bytes + ib * kXBytes;
        xv[b] = Load256(xb + 2);
        dx[b] = LoadFp16(xb);
      }
      for (int r = 0; r < RW; ++r) {
        const uint8_t* wb = w + r * w_row_bytes + ib * Wt::kBlockBytes;
        if (RB == 1) Prefetch<1>(wb);
        const __m256i q = Wt::Load(wb);
        const __m256i abs_q = _mm256_sign_epi8(q, q);
        const float dw = LoadFp16(wb);
        for (int b = 0; b < RB; ++b) {
          // |q| <= 128 and |x| <= 127, so a pair of products stays below 2^15.
          const __m256i p = PairSum16(_mm256_maddubs_epi16(abs_q, _mm256_sign_epi8(xv[b], q)));
          acc[r][b] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(dw * dx[b]), acc[r][b]);
        }
      }
    }
    for (int r = 0; r < RW; ++r)
      for (int b = 0; b < RB; ++b) y[b * ldy + r] = Hsum(acc[r][b]);
  }
};

// ---- k-quants x Q8_K ----

constexpr int kQ8KQsOffset = 4;
constexpr int kQ8KBsumsOffset = 260;

struct Q4KKernel {
  static constexpr int kDecodeRows = 2;
  static constexpr int kBatchRows = 1;
  static constexpr int kXBytes = sizeof(BlockQ8_K);

  template <int RW, int RB>
  static void Tile(const uint8_t* w, size_t w_row_bytes, const uint8_t* x, size_t x_row_bytes,
                   int64_t k, float* y, int64_t ldy) {
    const __m256i low4 = _mm256_set1_epi8(0x0f);
    __m256 acc[RW][RB];
    for (int r = 0; r < RW; ++r)
      for (int b = 0; b < RB; ++b) acc[r][b] = _mm256_setzero_ps();
    for (int64_t sb = 0; sb < k / kQK_K; ++sb) {
      __m256i scales[RW], mins[RW];
      float d[RW], dmin[RW];
      const uint8_t* qs[RW];
      for (int r = 0; r < RW; ++r) {
        const uint8_t* blk = w + r * w_row_bytes + sb * sizeof(BlockQ4_K);
        if (RB == 1) Prefetch<3>(blk);
        d[r] = LoadFp16(blk);
        dmin[r] = LoadFp16(blk + 2);
        uint32_t u[3];
        std::memcpy(u, blk + 4, sizeof u);
        // See the AVX-512 kernel: the 6-bit packing unpacked four bytes at a time.
        const uint64_t sc =
            (u[0] & 0x3f3f3f3f) |
            (static_cast<uint64_t>((u[2] & 0x0f0f0f0f) | ((u[0] >> 2) & 0x30303030)) << 32);
        const uint64_t mn =
            (u[1] & 0x3f3f3f3f) |
            (static_cast<uint64_t>(((u[2] >> 4) & 0x0f0f0f0f) | ((u[1] >> 2) & 0x30303030)) << 32);
        scales[r] = _mm256_broadcastsi128_si256(
            _mm_cvtepu8_epi16(_mm_cvtsi64_si128(static_cast<int64_t>(sc))));
        const __m128i m8 = _mm_cvtsi64_si128(static_cast<int64_t>(mn));
        mins[r] = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(m8, m8));
        qs[r] = blk + 16;
      }
      __m256i isum[RW][RB];
      for (int r = 0; r < RW; ++r)
        for (int b = 0; b < RB; ++b) isum[r][b] = _mm256_setzero_si256();
      const uint8_t* xblk = x + sb * kXBytes;
      for (int c = 0; c < 4; ++c) {
        for (int r = 0; r < RW; ++r) {
          const __m256i v = Load256(qs[r] + 32 * c);
          const __m256i lo = _mm256_and_si256(v, low4);
          const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low4);
          const __m256i s_lo = _mm256_shuffle_epi8(scales[r], WordBroadcast(2 * c));
          const __m256i s_hi = _mm256_shuffle_epi8(scales[r], WordBroadcast(2 * c + 1));
          for (int b = 0; b < RB; ++b) {
            const uint8_t* xq = xblk + b * x_row_bytes + kQ8KQsOffset + 64 * c;
            const __m256i p_lo = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, Load256(xq)), s_lo);
            const __m256i p_hi =
                _mm256_madd_epi16(_mm256_maddubs_epi16(hi, Load256(xq + 32)), s_hi);
            isum[r][b] = _mm256_add_epi32(isum[r][b], _mm256_add_epi32(p_lo, p_hi));
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
              _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[r][b]), _mm256_set1_ps(d[r] * dx), acc[r][b]);
          acc[r][b] = _mm256_fmadd_ps(m, _mm256_set1_ps(-dmin[r] * dx), acc[r][b]);
        }
      }
    }
    for (int r = 0; r < RW; ++r)
      for (int b = 0; b < RB; ++b) y[b * ldy + r] = Hsum(acc[r][b]);
  }
};

struct Q6KKernel {
  static constexpr int kDecodeRows = 2;
  static constexpr int kBatchRows = 1;
  static constexpr int kXBytes = sizeof(BlockQ8_K);

  template <int RW, int RB>
  static void Tile(const uint8_t* w, size_t w_row_bytes, const uint8_t* x, size_t x_row_bytes,
                   int64_t k, float* y, int64_t ldy) {
    const __m256i low4 = _mm256_set1_epi8(0x0f);
    const __m256i bits01 = _mm256_set1_epi8(0x03);
    const __m256i bits45 = _mm256_set1_epi8(0x30);
    // Scales reordered so lane 0 holds the even ones and lane 1 the odd ones: a 32-element chunk
    // c spans groups 2c and 2c+1, one per 128-bit lane of the vpmaddubsw result.
    const __m128i even_odd = _mm_setr_epi8(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15);
    __m256 acc[RW][RB];
    for (int r = 0; r < RW; ++r)
      for (int b = 0; b < RB; ++b) acc[r][b] = _mm256_setzero_ps();
    for (int64_t sb = 0; sb < k / kQK_K; ++sb) {
      __m256i scales_eo[RW], scales[RW];
      float d[RW];
      const uint8_t* blk[RW];
      for (int r = 0; r < RW; ++r) {
        blk[r] = w + r * w_row_bytes + sb * sizeof(BlockQ6_K);
        if (RB == 1) Prefetch<4>(blk[r]);
        const __m128i s8 = Load128(blk[r] + offsetof(BlockQ6_K, scales));
        scales[r] = _mm256_cvtepi8_epi16(s8);
        scales_eo[r] = _mm256_cvtepi8_epi16(_mm_shuffle_epi8(s8, even_odd));
        d[r] = LoadFp16(blk[r] + offsetof(BlockQ6_K, d));
      }
      __m256i isum[RW][RB];
      for (int r = 0; r < RW; ++r)
        for (int b = 0; b < RB; ++b) isum[r][b] = _mm256_setzero_si256();
      const uint8_t* xblk = x + sb * kXBytes;
      for (int h = 0; h < 2; ++h) {
        for (int r = 0; r < RW; ++r) {
          const uint8_t* ql = blk[r] + offsetof(BlockQ6_K, ql) + 64 * h;
          const __m256i ql0 = Load256(ql), ql1 = Load256(ql + 32);
          const __m256i qh = Load256(blk[r] + offsetof(BlockQ6_K, qh) + 32 * h);
          const __m256i qh2 = _mm256_srli_epi16(qh, 2);
          const __m256i q[4] = {
              _mm256_or_si256(_mm256_and_si256(ql0, low4),
                              _mm256_slli_epi16(_mm256_and_si256(qh, bits01), 4)),
              _mm256_or_si256(_mm256_and_si256(ql1, low4),
                              _mm256_slli_epi16(_mm256_and_si256(qh2, bits01), 4)),
              _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), low4),
                              _mm256_and_si256(qh, bits45)),
              _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), low4),
                              _mm256_and_si256(qh2, bits45)),
          };
          for (int t = 0; t < 4; ++t) {
            const __m256i s = _mm256_shuffle_epi8(scales_eo[r], WordBroadcast(4 * h + t));
            for (int b = 0; b < RB; ++b) {
              const uint8_t* xq = xblk + b * x_row_bytes + kQ8KQsOffset + 128 * h + 32 * t;
              const __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(q[t], Load256(xq)), s);
              isum[r][b] = _mm256_add_epi32(isum[r][b], p);
            }
          }
        }
      }
      for (int b = 0; b < RB; ++b) {
        const uint8_t* xb = xblk + b * x_row_bytes;
        const float dx = LoadF32(xb);
        const __m256i bsums = Load256(xb + kQ8KBsumsOffset);
        for (int r = 0; r < RW; ++r) {
          const __m256i corr = _mm256_slli_epi32(_mm256_madd_epi16(scales[r], bsums), 5);
          const __m256i total = _mm256_sub_epi32(isum[r][b], corr);
          acc[r][b] =
              _mm256_fmadd_ps(_mm256_cvtepi32_ps(total), _mm256_set1_ps(d[r] * dx), acc[r][b]);
        }
      }
    }
    for (int r = 0; r < RW; ++r)
      for (int b = 0; b < RB; ++b) y[b * ldy + r] = Hsum(acc[r][b]);
  }
};

// ---- Weights interleaved 16 rows at a time (interleave.h, blocks.h; driver in gemm_x86.h) ----
//
// A group's 16 rows are two halves of 8 rows, one ymm each. Per half, one vpmaddubsw multiplies
// 4 quants of 8 rows with 4 broadcast activation quants into two s16 pair sums per row lane; the
// pairs add up in s16 over as many steps as cannot overflow, then one vpmaddwd applies the rows'
// sub-block scales (each row's scale as an s16 pair in its lane) and widens to s32. As on
// AVX-512, lane r of every accumulator is row r, so no per-row reduction is left.

struct GroupSums {
  __m256 half[2];  // rows 0-7 and 8-15
  static GroupSums Zero() { return {{_mm256_setzero_ps(), _mm256_setzero_ps()}}; }
  void Store(float* y) const {
    _mm256_storeu_ps(y, half[0]);
    _mm256_storeu_ps(y + 8, half[1]);
  }
};

// Bytes 8 hr .. 8 hr + 7 of a and b (one per row of half hr, signed or unsigned) as the s16 pairs
// (a, b), one pair per row lane.
template <bool kSigned>
inline __m256i RowPairs(__m128i a, __m128i b, int hr) {
  const __m128i bytes = hr == 0 ? _mm_unpacklo_epi8(a, b) : _mm_unpackhi_epi8(a, b);
  return kSigned ? _mm256_cvtepi8_epi16(bytes) : _mm256_cvtepu8_epi16(bytes);
}

// Q8_0 x Q8_0. Weights are stored + 128 (for AVX-512's vpdpbusd); here they go back to signed
// with one xor and through the sign trick as in the row kernel. A pair of products reaches
// 2 x 128 x 127, so every 4-element step is widened to s32 at once.
struct Q8_0x16Kernel {
  static constexpr int kBatchRows = 2;  // 4: the same pp512 (1B Q8_0 model)
  // Two streams per thread: with the line requests spread over both passes (PrefetchStep), whole
  // decode steps ran 1.07-1.15x faster than with one (1B Q8_0 and small models, 2 threads, Zen 3,
  // in-process alternation, either order); four ran 0.97x of two.
  static constexpr int kDecodeStreams = 2;
  static constexpr int kBlockElems = kQK8_0;
  static constexpr size_t kGroupBlockBytes = sizeof(BlockQ8_0x16);
  using Sums = GroupSums;

  template <int RB>
  static void Block(const uint8_t* group_block, const uint8_t* x, size_t x_row_bytes,
                    int64_t /*k*/, int64_t ib, GroupSums (&acc)[RB]) {
    const __m256i offset = _mm256_set1_epi8(static_cast<char>(0x80));
    const GroupBlockParts<BlockQ8_0x16> g(group_block, ib);
    // Every line of the block, spread over both passes (PrefetchStep). Two requests per block, as
    // on AVX-512, read 0.7-0.8x as much from memory (kernels_bench, 1 and 2 threads); every line
    // but in the first pass only, 1B Q8_0 tg128 0.8-0.98x (six alternating rounds).
    for (int hr = 0; hr < 2; ++hr) {
      __m256i isum[RB];
      for (int b = 0; b < RB; ++b) isum[b] = _mm256_setzero_si256();
      for (int c = 0; c < kQK8_0 / 4; ++c) {
        if (RB == 1) PrefetchStep<kGroupBlockBytes, 16>(group_block, 8 * hr + c);
        const __m256i w = _mm256_xor_si256(Load256(g.quants->qs[c][8 * hr]), offset);
        const __m256i abs_w = _mm256_sign_epi8(w, w);
        for (int b = 0; b < RB; ++b) {
          const __m256i xv =
              _mm256_set1_epi32(Load32(x + b * x_row_bytes + ib * sizeof(BlockQ8_0) + 2 + 4 * c));
          isum[b] = _mm256_add_epi32(
              isum[b], PairSum16(_mm256_maddubs_epi16(abs_w, _mm256_sign_epi8(xv, w))));
        }
      }
      const __m256 dw =
          _mm256_cvtph_ps(Load128(reinterpret_cast<const uint8_t*>(g.scales->d + 8 * hr)));
      for (int b = 0; b < RB; ++b) {
        const __m256 dx = _mm256_set1_ps(LoadFp16(x + b * x_row_bytes + ib * sizeof(BlockQ8_0)));
        acc[b].half[hr] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[b]), _mm256_mul_ps(dw, dx),
                                          acc[b].half[hr]);
      }
    }
  }
};

// Q4_K x Q8_K (see Q4_Kx16Kernel in gemm_avx512.cc). Nibbles times activations in s16 stay
// below 8 x 2 x 15 x 127 over a 32-element sub-block, so each sub-block takes one vpmaddwd.
struct Q4_Kx16Kernel {
  static constexpr int kBatchRows = 4;  // 2: 0.8x pp512 (1B Q4_K_M model)
  // Two streams per thread, as for Q8_0, here and in the Q6_K kernel: once this kernel's steps
  // stopped spilling (the unroll below), the 1B Q4_K_M model decoded 1.03-1.05x faster with two
  // in both kernels than with one (tg32, alternating repeats in one process, either order), and
  // each kernel alone read 1.09-1.10x as much beyond L3 (kernels_bench, alternating runs).
  // Before, two streams had measured 0.98-1.04x.
  static constexpr int kDecodeStreams = 2;
  static constexpr int kBlockElems = kQK_K;
  static constexpr size_t kGroupBlockBytes = sizeof(BlockQ4_Kx16);
  using Sums = GroupSums;

  template <int RB>
  static void Block(const uint8_t* group_block, const uint8_t* x, size_t x_row_bytes,
                    int64_t /*k*/, int64_t ib, GroupSums (&acc)[RB]) {
    const __m256i four = _mm256_set1_epi8(0x0f);
    const BlockQ4_Kx16& g = *reinterpret_cast<const BlockQ4_Kx16*>(group_block);
    const BlockQ8_K* xb[RB];
    __m256i xs_pairs[RB][4];  // for the mins
    for (int b = 0; b < RB; ++b) {
      xb[b] = reinterpret_cast<const BlockQ8_K*>(x + b * x_row_bytes) + ib;
      for (int p = 0; p < 4; ++p) xs_pairs[b][p] = _mm256_set1_epi32(Q8KSubBlockSumPair(*xb[b], p));
    }
    __m128i scales[8], mins[8];
    UnpackQ4KScalesX16(g, scales, mins);
    // Decode takes both halves in one pass, sharing each step's activation broadcasts; batches
    // take one half per pass, so that RB rows of sums fit in the 16 registers.
    constexpr int kHalves = RB == 1 ? 2 : 1;
    for (int hr0 = 0; hr0 < 2; hr0 += kHalves) {
      __m256i isum[kHalves][RB];
      for (auto& half : isum)
        for (__m256i& v : half) v = _mm256_setzero_si256();
      for (int c = 0; c < 4; ++c) {
        __m256i lo_sum[kHalves][RB], hi_sum[kHalves][RB];
        for (int h = 0; h < kHalves; ++h)
          for (int b = 0; b < RB; ++b) lo_sum[h][b] = hi_sum[h][b] = _mm256_setzero_si256();
        // Unrolled fully, g++ 12 computes all eight steps' products first and spills them to
        // the stack; four steps at a time it keeps them in registers: decode in L2 1.24x
        // (kernels_bench), as fast as clang's code for the full unroll. Batches measured
        // 0.97-1.03x, within what code placement moves.
#pragma GCC unroll 4
        for (int t = 0; t < 8; ++t) {
          if (RB == 1) PrefetchStep<kGroupBlockBytes, 32>(group_block, 8 * c + t);
          __m256i x_lo[RB], x_hi[RB];
          for (int b = 0; b < RB; ++b) {
            const int8_t* xq = xb[b]->qs + 64 * c + 4 * t;
            x_lo[b] = _mm256_set1_epi32(Load32(xq));
            x_hi[b] = _mm256_set1_epi32(Load32(xq + 32));
          }
          for (int h = 0; h < kHalves; ++h) {
            const __m256i q = Load256(g.qs[c][t][8 * (hr0 + h)]);
            const __m256i lo = _mm256_and_si256(q, four);
            const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), four);
            for (int b = 0; b < RB; ++b) {
              lo_sum[h][b] = _mm256_add_epi16(lo_sum[h][b], _mm256_maddubs_epi16(lo, x_lo[b]));
              hi_sum[h][b] = _mm256_add_epi16(hi_sum[h][b], _mm256_maddubs_epi16(hi, x_hi[b]));
            }
          }
        }
        for (int h = 0; h < kHalves; ++h) {
          const __m256i s_lo = RowPairs<false>(scales[2 * c], scales[2 * c], hr0 + h);
          const __m256i s_hi = RowPairs<false>(scales[2 * c + 1], scales[2 * c + 1], hr0 + h);
          for (int b = 0; b < RB; ++b) {
            isum[h][b] = _mm256_add_epi32(
                isum[h][b], _mm256_add_epi32(_mm256_madd_epi16(lo_sum[h][b], s_lo),
                                             _mm256_madd_epi16(hi_sum[h][b], s_hi)));
          }
        }
      }
      for (int h = 0; h < kHalves; ++h) {
        const int hr = hr0 + h;
        __m256i min_pairs[4];
        for (int p = 0; p < 4; ++p) {
          min_pairs[p] = RowPairs<false>(mins[2 * p], mins[2 * p + 1], hr);
        }
        const __m256 d = _mm256_cvtph_ps(Load128(reinterpret_cast<const uint8_t*>(g.d + 8 * hr)));
        const __m256 dmin =
            _mm256_cvtph_ps(Load128(reinterpret_cast<const uint8_t*>(g.dmin + 8 * hr)));
        for (int b = 0; b < RB; ++b) {
          __m256i msum = _mm256_madd_epi16(min_pairs[0], xs_pairs[b][0]);
          for (int p = 1; p < 4; ++p) {
            msum = _mm256_add_epi32(msum, _mm256_madd_epi16(min_pairs[p], xs_pairs[b][p]));
          }
          const __m256 dx = _mm256_set1_ps(xb[b]->d);
          __m256& sums = acc[b].half[hr];
          sums = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[h][b]), _mm256_mul_ps(d, dx), sums);
          sums = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(msum), _mm256_mul_ps(dmin, dx), sums);
        }
      }
    }
  }
};

// Q6_K x Q8_K (see Q6_Kx16Kernel in gemm_avx512.cc). Unsigned 6-bit quants times activations
// reach 2 x 63 x 127 per s16 pair, so pairs add up over two 4-element steps only, and each
// 16-element sub-block takes two vpmaddwd. The -32 offset is applied once per block, as
// -32 x the rows' scales times the activations' sub-block sums.
struct Q6_Kx16Kernel {
  static constexpr int kBatchRows = 2;  // 1: 0.8x pp512, 4: 0.9x (1B Q4_K_M model)
  static constexpr int kDecodeStreams = 2;  // see Q4_Kx16Kernel
  // Lines requested 3 KiB ahead, not kPrefetchDistance (1 KiB). Whole decode steps of the 1B
  // Q4_K_M model (in-process alternation, either order, Zen 3): 3 KiB ran 1.02-1.04x 4 KiB in
  // 8 of 8 runs on two threads and 1.07-1.08x on one; 2 KiB 1.02-1.03x, 1.5 KiB 0.99x, 1 KiB
  // 0.9x, 8 KiB 1.0x. The kernel alone (kernels_bench, beyond L3) does not tell 3 KiB from 4
  // (0.92-0.99x, within its noise); at 4 KiB it had read 1.1-1.4x what it read at 1. The Q8_0
  // and Q4_K kernels keep 1 KiB: at 2 KiB their models decoded 0.97x and 0.98-0.99x, at 0.5 KiB
  // 1.0x.
  static constexpr int kPrefetchBytes = 3072;
  static constexpr int kBlockElems = kQK_K;
  static constexpr size_t kGroupBlockBytes = sizeof(BlockQ6_Kx16);
  using Sums = GroupSums;

  template <int RB>
  static void Block(const uint8_t* group_block, const uint8_t* x, size_t x_row_bytes,
                    int64_t /*k*/, int64_t ib, GroupSums (&acc)[RB]) {
    const __m256i six = _mm256_set1_epi8(63);
    const __m256i bits_01 = _mm256_set1_epi8(0x03), bits_23 = _mm256_set1_epi8(0x0c),
                  bits_45 = _mm256_set1_epi8(0x30);
    const GroupBlockParts<BlockQ6_Kx16> g(group_block, ib);
    const auto& qs = g.quants->qs;
    const auto& scales = g.scales->scales;
    const BlockQ8_K* xb[RB];
    for (int b = 0; b < RB; ++b) {
      xb[b] = reinterpret_cast<const BlockQ8_K*>(x + b * x_row_bytes) + ib;
    }
    for (int hr = 0; hr < 2; ++hr) {
      __m256i isum[RB];
      for (int b = 0; b < RB; ++b) isum[b] = _mm256_setzero_si256();
      // Quants of element 128h + 32n + 4t + i (n = 0..3) form sub-block 8h + 2n + t / 4.
      for (int h = 0; h < 2; ++h) {
        for (int t0 = 0; t0 < 8; t0 += 2) {
          __m256i pairs[RB][4];
          for (int t = t0; t < t0 + 2; ++t) {
            // All of the block's lines, spread over both passes: one line per step (as on
            // AVX-512) read 5.2 instead of 6-7 GB/s from memory on one thread (kernels_bench).
            if (RB == 1) {
              PrefetchStep<kGroupBlockBytes, 32, kPrefetchBytes>(group_block, 16 * hr + 8 * h + t);
            }
            const __m256i v0 = Load256(qs[h][t][0][8 * hr]);
            const __m256i v1 = Load256(qs[h][t][1][8 * hr]);
            const __m256i v2 = Load256(qs[h][t][2][8 * hr]);
            // The fourth quant's bits from the top of v0, v1, v2 (16-bit shifts: the bits kept
            // come from the same byte).
            const __m256i q[4] = {
                _mm256_and_si256(v0, six), _mm256_and_si256(v1, six), _mm256_and_si256(v2, six),
                _mm256_or_si256(
                    _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(v0, 6), bits_01),
                                    _mm256_and_si256(_mm256_srli_epi16(v1, 4), bits_23)),
                    _mm256_and_si256(_mm256_srli_epi16(v2, 2), bits_45))};
            for (int b = 0; b < RB; ++b) {
              const int8_t* xq = xb[b]->qs + 128 * h + 4 * t;
              for (int n = 0; n < 4; ++n) {
                const __m256i p =
                    _mm256_maddubs_epi16(q[n], _mm256_set1_epi32(Load32(xq + 32 * n)));
                pairs[b][n] = t == t0 ? p : _mm256_add_epi16(pairs[b][n], p);
              }
            }
          }
          for (int n = 0; n < 4; ++n) {
            const int j = 8 * h + 2 * n + t0 / 4;
            const __m128i scale = Load128(reinterpret_cast<const uint8_t*>(scales[j]));
            const __m256i s = RowPairs<true>(scale, scale, hr);
            for (int b = 0; b < RB; ++b) {
              isum[b] = _mm256_add_epi32(isum[b], _mm256_madd_epi16(pairs[b][n], s));
            }
          }
        }
      }
      // Scales of sub-blocks 2m and 2m + 1 as an s16 pair per row, for the offset.
      __m256i scale_pairs[8];
      for (int m = 0; m < 8; ++m) {
        scale_pairs[m] = RowPairs<true>(
            Load128(reinterpret_cast<const uint8_t*>(scales[2 * m])),
            Load128(reinterpret_cast<const uint8_t*>(scales[2 * m + 1])), hr);
      }
      const __m256 d =
          _mm256_cvtph_ps(Load128(reinterpret_cast<const uint8_t*>(g.scales->d + 8 * hr)));
      for (int b = 0; b < RB; ++b) {
        __m256i offset = _mm256_setzero_si256();
        for (int m = 0; m < 8; ++m) {
          int32_t bsum_pair;
          std::memcpy(&bsum_pair, xb[b]->bsums + 2 * m, sizeof bsum_pair);
          const __m256i products = _mm256_madd_epi16(scale_pairs[m], _mm256_set1_epi32(bsum_pair));
          offset = _mm256_add_epi32(offset, products);
        }
        const __m256i total = _mm256_sub_epi32(isum[b], _mm256_slli_epi32(offset, 5));
        acc[b].half[hr] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(total),
                                          _mm256_mul_ps(d, _mm256_set1_ps(xb[b]->d)),
                                          acc[b].half[hr]);
      }
    }
  }
};

// ---- f32 rows to f16 (the KV cache, F16 activations) ----

void Fp32ToFp16Row(const float* x, uint16_t* y, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i h =
        _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(y + i), h);
  }
  for (; i < n; ++i) y[i] = Fp32ToFp16(x[i]);  // out of line in fp16.cc, portable code
}

}  // namespace

const KernelTable& Avx2Kernels() {
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
