#ifndef MEMORIA_ENGINE_QUANT_BLOCKS_H_
#define MEMORIA_ENGINE_QUANT_BLOCKS_H_

#include <cstddef>
#include <cstdint>

namespace memoria {

// Quantized block layouts, bit-exact with the GGUF format. Scales marked fp16 are IEEE halves.
inline constexpr int kQK8_0 = 32;
inline constexpr int kQK4_0 = 32;
inline constexpr int kQK_K = 256;  // super-block of the k-quants

struct BlockQ8_0 {
  uint16_t d;          // fp16 scale
  int8_t qs[kQK8_0];   // x = d * q
};
static_assert(sizeof(BlockQ8_0) == 34);

struct BlockQ4_0 {
  uint16_t d;                // fp16 scale
  uint8_t qs[kQK4_0 / 2];    // x[i] = d * ((qs[i] & 15) - 8), x[i + 16] = d * ((qs[i] >> 4) - 8)
};
static_assert(sizeof(BlockQ4_0) == 18);

struct BlockQ4_K {
  uint16_t d;              // fp16 super-block scale for the 6-bit scales
  uint16_t dmin;           // fp16 super-block scale for the 6-bit mins
  uint8_t scales[12];      // 8 scales and 8 mins, 6 bits each, packed
  uint8_t qs[kQK_K / 2];   // 4-bit quants
};
static_assert(sizeof(BlockQ4_K) == 144);

struct BlockQ6_K {
  uint8_t ql[kQK_K / 2];      // low 4 bits
  uint8_t qh[kQK_K / 4];      // high 2 bits
  int8_t scales[kQK_K / 16];  // 8-bit scales, one per 16 elements
  uint16_t d;                 // fp16 super-block scale
};
static_assert(sizeof(BlockQ6_K) == 210);

// Activation format for dot products with k-quants (never stored in files we write).
struct BlockQ8_K {
  float d;
  int8_t qs[kQK_K];
  int16_t bsums[kQK_K / 16];  // sums of groups of 16 quants
};
static_assert(sizeof(BlockQ8_K) == 292);

// ---- Layouts of the CPU kernels (never in files) ----

// Weights of 16 consecutive rows interleaved block by block (engine/quant/interleave.h): each
// group block holds the same block of the 16 rows, quants regrouped so that 4 consecutive bytes of
// every row form one 64-byte vector and one vpdpbusd (unsigned x signed bytes) multiplies 16 rows
// by 4 broadcast activation quants. A group block has the size of the 16 rows' blocks.
//
// Q8_0 and Q6_K group blocks are an odd multiple of 32 bytes, so in a row of them every second one
// would start half-way into a 64-byte line and each of its 64-byte quant loads would touch two
// lines (costing ~8% of the Q6_K kernel's in-L2 rate, kernels_bench). They come in two parts, the
// quants (a multiple of 64 bytes) and the rest (`Scales`), stored quants first at even block
// indices of a row and scales first at odd ones (GroupBlockParts): in a row of an even number of
// blocks every block's quants then start on a line.
inline constexpr int kInterleavedRows = 16;

// Where the two parts of group block `ib` of a row lie.
template <class G>
struct GroupBlockParts {
  GroupBlockParts(const uint8_t* group_block, int64_t ib)
      : quants(reinterpret_cast<const typename G::Quants*>(
            group_block + (ib % 2 == 1 ? sizeof(typename G::Scales) : 0))),
        scales(reinterpret_cast<const typename G::Scales*>(
            group_block + (ib % 2 == 1 ? 0 : sizeof(typename G::Quants)))) {}
  const typename G::Quants* quants;
  const typename G::Scales* scales;
};

// Q8_0: quants 4c..4c+3 of every row in chunk c, stored as q + 128, and the rows' scales.
struct BlockQ8_0x16 {
  struct Quants {
    uint8_t qs[kQK8_0 / 4][kInterleavedRows][4];  // qs[c][r][j] = q_r[4c + j] + 128
  };
  struct Scales {
    uint16_t d[kInterleavedRows];  // fp16 scale of each row's block
  };
  Quants quants;
  Scales scales;
};
static_assert(sizeof(BlockQ8_0x16) == kInterleavedRows * sizeof(BlockQ8_0));
static_assert(sizeof(BlockQ8_0x16::Quants) % 64 == 0);

// Q4_K super-blocks of 16 rows. qs[c][t] holds bytes 4t..4t+3 of every row's 32-byte chunk c:
// low nibbles are sub-block 2c, high nibbles sub-block 2c + 1, as in BlockQ4_K.
struct BlockQ4_Kx16 {
  uint16_t d[kInterleavedRows];
  uint16_t dmin[kInterleavedRows];
  uint8_t scales[12][kInterleavedRows];             // scales[j][r] = row r's packed byte j
  uint8_t qs[4][8][kInterleavedRows][4];            // qs[c][t][r][i] = row r's qs[32c + 4t + i]
};
static_assert(sizeof(BlockQ4_Kx16) == kInterleavedRows * sizeof(BlockQ4_K));

// Q6_K super-blocks of 16 rows. A 6-bit quant is split in BlockQ6_K into 4 low bits (ql) and 2
// high bits (qh), and putting four of them back together costs 17 vector operations per 3 x 64
// bytes. Here each row's three bytes for the quants of elements 128h + 32n + j (n = 0..3,
// j = 4t + i) hold three whole quants in their low 6 bits and the fourth 2 bits at a time in
// their top bits, which takes 9 operations to undo (Q6_Kx16Kernel in gemm_avx512.cc):
//   qs[h][t][s][r][i] = q(128h + 32s + j) | ((q(128h + 96 + j) >> 2s) & 3) << 6   (s = 0, 1, 2)
// where q(e) is row r's quant of element e, 0..63 (dequantized as d * scale * (q - 32)).
struct BlockQ6_Kx16 {
  struct Quants {
    uint8_t qs[2][8][3][kInterleavedRows][4];
  };
  struct Scales {
    int8_t scales[16][kInterleavedRows];  // scales[j][r] = row r's scales[j]
    uint16_t d[kInterleavedRows];
  };
  Quants quants;
  Scales scales;
};
static_assert(sizeof(BlockQ6_Kx16) == kInterleavedRows * sizeof(BlockQ6_K));
static_assert(sizeof(BlockQ6_Kx16::Quants) % 64 == 0);

}  // namespace memoria

#endif  // MEMORIA_ENGINE_QUANT_BLOCKS_H_
