#include "engine/quant/interleave.h"

#include <cstring>
#include <vector>

#include "engine/quant/blocks.h"
#include "engine/quant/gemm.h"
#include "engine/quant/gemm_internal.h"
#include "engine/quant/quant.h"
#include "engine/quant/quant_internal.h"

namespace memoria {

namespace {

// Where the bytes of one row's block go in a group block: `length` bytes at `row_offset` of row
// r's block sit at group_offset + r * row_stride of the group block, xor-ed with `flip` (Q8_0
// stores quants + 128, which is q ^ 0x80 and its own inverse).
struct Run {
  size_t row_offset, group_offset, row_stride, length;
  uint8_t flip;
};

using gemm_internal::GemmFn;
using gemm_internal::KernelTable;

struct Format {
  std::vector<Run> runs;
  GemmFn KernelTable::*kernel;  // its kernel in each path's table (null: none on that path)
  // Rewrite one row block, in place, into the byte order the runs copy and back (null: the
  // file's order is the kernel's).
  void (*to_kernel_order)(uint8_t* block) = nullptr;
  void (*from_kernel_order)(uint8_t* block) = nullptr;
  // Group blocks at odd indices of a row are rotated by this many bytes, scales first
  // (GroupBlockParts in blocks.h; 0: not rotated). Runs give offsets in the unrotated block.
  size_t odd_block_rotation = 0;
};

// Where `run` starts in group block `ib` of `f`, `group_block_bytes` long.
size_t GroupOffset(const Format& f, const Run& run, int64_t ib, size_t group_block_bytes) {
  if (ib % 2 == 0) return run.group_offset;
  return (run.group_offset + f.odd_block_rotation) % group_block_bytes;
}

// Q6_K quants in BlockQ6_Kx16's order (blocks.h): for each half h and j < 32, the bytes
// ql[64h + j], ql[64h + 32 + j] and qh[32h + j] hold the quants q0..q3 of elements
// 128h + 32n + j, in BlockQ6_K as 4 low bits in ql and 2 high bits in qh, in kernel order as
// q0..q2 in their low 6 bits and q3 2 bits at a time in their top bits. `recode(lo, hi, bits)`
// rewrites one such triple.
template <class Recode>
void RecodeQ6KTriples(uint8_t* block, Recode recode) {
  auto& b = *reinterpret_cast<BlockQ6_K*>(block);
  for (int h = 0; h < 2; ++h) {
    for (int j = 0; j < 32; ++j) recode(b.ql[64 * h + j], b.ql[64 * h + 32 + j], b.qh[32 * h + j]);
  }
}

void Q6KToKernelOrder(uint8_t* block) {
  RecodeQ6KTriples(block, [](uint8_t& lo, uint8_t& hi, uint8_t& bits) {
    const int q0 = (lo & 0x0f) | (bits & 3) << 4;
    const int q1 = (hi & 0x0f) | (bits >> 2 & 3) << 4;
    const int q2 = lo >> 4 | (bits >> 4 & 3) << 4;
    const int q3 = hi >> 4 | (bits >> 6 & 3) << 4;
    lo = static_cast<uint8_t>(q0 | (q3 & 3) << 6);
    hi = static_cast<uint8_t>(q1 | (q3 >> 2 & 3) << 6);
    bits = static_cast<uint8_t>(q2 | (q3 >> 4) << 6);
  });
}

void Q6KFromKernelOrder(uint8_t* block) {
  RecodeQ6KTriples(block, [](uint8_t& lo, uint8_t& hi, uint8_t& bits) {
    const int q0 = lo & 63, q1 = hi & 63, q2 = bits & 63;
    const int q3 = lo >> 6 | (hi >> 6) << 2 | (bits >> 6) << 4;
    lo = static_cast<uint8_t>((q0 & 0x0f) | (q2 & 0x0f) << 4);
    hi = static_cast<uint8_t>((q1 & 0x0f) | (q3 & 0x0f) << 4);
    bits = static_cast<uint8_t>(q0 >> 4 | (q1 >> 4) << 2 | (q2 >> 4) << 4 | (q3 >> 4) << 6);
  });
}

// The layouts of blocks.h as runs.
const Format* FormatOf(GgmlType type) {
  static const Format q8_0 = [] {
    Format f{{}, &KernelTable::q8_0_x16};
    for (size_t c = 0; c < kQK8_0 / 4; ++c) f.runs.push_back({2 + 4 * c, 64 * c, 4, 4, 0x80});
    f.runs.push_back({0, sizeof(BlockQ8_0x16::Quants), 2, 2, 0});  // d
    f.odd_block_rotation = sizeof(BlockQ8_0x16::Scales);
    return f;
  }();
  static const Format q4_k = [] {
    Format f{{{0, 0, 2, 2, 0}, {2, 32, 2, 2, 0}}, &KernelTable::q4_k_x16};
    for (size_t j = 0; j < 12; ++j) f.runs.push_back({4 + j, 64 + 16 * j, 1, 1, 0});
    for (size_t i = 0; i < 32; ++i) f.runs.push_back({16 + 4 * i, 256 + 64 * i, 4, 4, 0});
    return f;
  }();
  static const Format q6_k = [] {
    Format f{{}, &KernelTable::q6_k_x16, Q6KToKernelOrder, Q6KFromKernelOrder};
    for (size_t h = 0; h < 2; ++h) {
      for (size_t t = 0; t < 8; ++t) {
        const size_t vectors = 192 * (8 * h + t);
        for (size_t s = 0; s < 2; ++s) {
          f.runs.push_back({64 * h + 32 * s + 4 * t, vectors + 64 * s, 4, 4, 0});  // ql
        }
        f.runs.push_back({128 + 32 * h + 4 * t, vectors + 128, 4, 4, 0});  // qh
      }
    }
    for (size_t j = 0; j < 16; ++j) f.runs.push_back({192 + j, 3072 + 16 * j, 1, 1, 0});  // scales
    f.runs.push_back({208, 3328, 2, 2, 0});                                                // d
    f.odd_block_rotation = sizeof(BlockQ6_Kx16::Scales);
    return f;
  }();
  switch (type) {
    case GgmlType::kQ8_0:
      return &q8_0;
    case GgmlType::kQ4_K:
      return &q4_k;
    case GgmlType::kQ6_K:
      return &q6_k;
    default:
      return nullptr;
  }
}

const Format& CheckedFormatOf(const char* function, GgmlType type) {
  const Format* f = FormatOf(type);
  if (f == nullptr) DieUnsupportedType(function, type);
  return *f;
}

void Copy(const Run& run, const uint8_t* from, uint8_t* to) {
  for (size_t i = 0; i < run.length; ++i) to[i] = from[i] ^ run.flip;
}

// Rows [0, WholeGroupRows(rows)) are interleaved.
int64_t WholeGroupRows(int64_t rows) { return rows / kInterleavedRows * kInterleavedRows; }

// Row r (< 16) of the group at `group` in row layout.
void DeinterleaveGroupRow(const Format& f, const uint8_t* group, int r, int64_t nblocks,
                          size_t block_bytes, uint8_t* row) {
  const size_t group_block_bytes = kInterleavedRows * block_bytes;
  for (int64_t ib = 0; ib < nblocks; ++ib) {
    uint8_t* block = row + ib * block_bytes;
    for (const Run& run : f.runs) {
      Copy(run,
           group + ib * group_block_bytes + GroupOffset(f, run, ib, group_block_bytes) +
               r * run.row_stride,
           block + run.row_offset);
    }
    if (f.from_kernel_order != nullptr) f.from_kernel_order(block);
  }
}

}  // namespace

bool PrefersInterleavedRows(GgmlType type) {
  const Format* f = FormatOf(type);
  return f != nullptr && gemm_internal::ActiveKernels().*(f->kernel) != nullptr;
}

void InterleaveRows(GgmlType type, const void* src, int64_t rows, int64_t k, void* dst) {
  const Format& f = CheckedFormatOf("InterleaveRows", type);
  const size_t row_bytes = GgmlRowBytes(type, k);
  const size_t block_bytes = TraitsOf(type).block_bytes;
  const int64_t nblocks = k / TraitsOf(type).block_size;
  const int64_t whole = WholeGroupRows(rows);
  const auto* in = static_cast<const uint8_t*>(src);
  auto* out = static_cast<uint8_t*>(dst);
  const size_t group_block_bytes = kInterleavedRows * block_bytes;
  std::vector<uint8_t> reordered(block_bytes);
  for (int64_t g = 0; g < whole; g += kInterleavedRows) {
    for (int64_t ib = 0; ib < nblocks; ++ib) {
      uint8_t* group_block = out + g * row_bytes + ib * group_block_bytes;
      for (int r = 0; r < kInterleavedRows; ++r) {
        const uint8_t* block = in + (g + r) * row_bytes + ib * block_bytes;
        if (f.to_kernel_order != nullptr) {
          std::memcpy(reordered.data(), block, block_bytes);
          f.to_kernel_order(reordered.data());
          block = reordered.data();
        }
        for (const Run& run : f.runs) {
          Copy(run, block + run.row_offset,
               group_block + GroupOffset(f, run, ib, group_block_bytes) + r * run.row_stride);
        }
      }
    }
  }
  std::memcpy(out + whole * row_bytes, in + whole * row_bytes, (rows - whole) * row_bytes);
}

void DeinterleaveRow(GgmlType type, const void* w, int64_t rows, int64_t row, int64_t k,
                     void* out) {
  const Format& f = CheckedFormatOf("DeinterleaveRow", type);
  const size_t row_bytes = GgmlRowBytes(type, k);
  const auto* base = static_cast<const uint8_t*>(w);
  if (row >= WholeGroupRows(rows)) {
    std::memcpy(out, base + row * row_bytes, row_bytes);
    return;
  }
  const int64_t g = row / kInterleavedRows * kInterleavedRows;
  DeinterleaveGroupRow(f, base + g * row_bytes, static_cast<int>(row - g),
                       k / TraitsOf(type).block_size, TraitsOf(type).block_bytes,
                       static_cast<uint8_t*>(out));
}

size_t InterleavedActivationRowBytes(GgmlType type, int64_t k) {
  CheckedFormatOf("InterleavedActivationRowBytes", type);
  const size_t row = GgmlRowBytes(DotTypeFor(type), k);
  return type == GgmlType::kQ8_0 ? row + (k / kQK8_0) * sizeof(int32_t) : row;
}

void ConvertInterleavedActivationRow(GgmlType type, const float* x, void* out, int64_t k) {
  CheckedFormatOf("ConvertInterleavedActivationRow", type);
  ConvertActivationRow(DotTypeFor(type), x, out, k);
  if (type != GgmlType::kQ8_0) return;  // Q8_K rows carry their sums (bsums)
  const auto* blocks = static_cast<const BlockQ8_0*>(out);
  const int64_t nblocks = k / kQK8_0;
  auto* sums = static_cast<uint8_t*>(out) + nblocks * sizeof(BlockQ8_0);
  for (int64_t ib = 0; ib < nblocks; ++ib) {
    int32_t sum = 0;
    for (int i = 0; i < kQK8_0; ++i) sum += blocks[ib].qs[i];
    std::memcpy(sums + ib * sizeof(int32_t), &sum, sizeof sum);
  }
}

void GemmInterleavedRows(GgmlType type, const void* w, int64_t rows, int64_t k, int64_t r0,
                         int64_t r1, const void* xq, size_t xq_row_bytes, int64_t nb, float* y,
                         int64_t ldy) {
  const Format& f = CheckedFormatOf("GemmInterleavedRows", type);
  if (r0 >= r1 || nb <= 0) return;
  const int64_t whole = WholeGroupRows(rows);
  const size_t row_bytes = GgmlRowBytes(type, k);
  const auto* base = static_cast<const uint8_t*>(w);
  const int64_t g1 = r1 < whole ? r1 : whole;
  if (r0 < g1) {
    const GemmFn kernel = gemm_internal::ActiveKernels().*(f.kernel);
    if (kernel != nullptr) {
      kernel({base, row_bytes, k, r0, g1, static_cast<const uint8_t*>(xq), xq_row_bytes, nb, y,
              ldy});
    } else {
      // A path without interleaved kernels (a test switched paths after loading): back to rows.
      std::vector<uint8_t> group(kInterleavedRows * row_bytes);
      for (int64_t g = r0; g < g1; g += kInterleavedRows) {
        for (int r = 0; r < kInterleavedRows; ++r) {
          DeinterleaveGroupRow(f, base + g * row_bytes, r, k / TraitsOf(type).block_size,
                               TraitsOf(type).block_bytes, group.data() + r * row_bytes);
        }
        GemmRows(type, group.data(), row_bytes, k, 0, kInterleavedRows, xq, xq_row_bytes, nb,
                 y + g, ldy);
      }
    }
  }
  // The rows after the last whole group are in row layout, and the row kernels read only the
  // DotTypeFor(type) part of each activation row.
  if (r1 > whole) {
    GemmRows(type, w, row_bytes, k, r0 > whole ? r0 : whole, r1, xq, xq_row_bytes, nb, y, ldy);
  }
}

}  // namespace memoria
