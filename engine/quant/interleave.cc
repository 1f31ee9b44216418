#include "engine/quant/interleave.h"

#include <cstring>

#include "engine/quant/blocks.h"
#include "engine/quant/fp16.h"
#include "engine/quant/gemm.h"
#include "engine/quant/gemm_internal.h"
#include "engine/quant/quant.h"
#include "engine/quant/quant_internal.h"

namespace memoria {

namespace {

void CheckInterleavable(const char* function, GgmlType type) {
  if (type != GgmlType::kQ8_0) DieUnsupportedType(function, type);
}

// Rows [0, whole_rows) are interleaved.
int64_t WholeGroupRows(int64_t rows) { return rows / kInterleavedRows * kInterleavedRows; }

}  // namespace

bool PrefersInterleavedRows(GgmlType type) {
  return type == GgmlType::kQ8_0 && ActiveCpuIsa() == CpuIsa::kAvx512;
}

void InterleaveRows(GgmlType type, const void* src, int64_t rows, int64_t k, void* dst) {
  CheckInterleavable("InterleaveRows", type);
  const size_t row_bytes = GgmlRowBytes(type, k);
  const int64_t nblocks = k / kQK8_0;
  const int64_t whole = WholeGroupRows(rows);
  const auto* in = static_cast<const uint8_t*>(src);
  auto* out = static_cast<uint8_t*>(dst);
  for (int64_t g = 0; g < whole; g += kInterleavedRows) {
    auto* group = reinterpret_cast<BlockQ8_0x16*>(out + g * row_bytes);
    for (int64_t ib = 0; ib < nblocks; ++ib) {
      BlockQ8_0x16& packed = group[ib];
      for (int r = 0; r < kInterleavedRows; ++r) {
        const auto* b = reinterpret_cast<const BlockQ8_0*>(in + (g + r) * row_bytes) + ib;
        packed.d[r] = b->d;
        for (int i = 0; i < kQK8_0; ++i) {
          packed.qs[i / 4][r][i % 4] = static_cast<uint8_t>(b->qs[i] + 128);
        }
      }
    }
  }
  std::memcpy(out + whole * row_bytes, in + whole * row_bytes, (rows - whole) * row_bytes);
}

void DequantizeInterleavedRow(GgmlType type, const void* w, int64_t rows, int64_t row, int64_t k,
                              float* out) {
  CheckInterleavable("DequantizeInterleavedRow", type);
  const size_t row_bytes = GgmlRowBytes(type, k);
  const auto* base = static_cast<const uint8_t*>(w);
  if (row >= WholeGroupRows(rows)) return DequantizeRow(type, base + row * row_bytes, out, k);
  const int64_t g = row / kInterleavedRows * kInterleavedRows;
  const int r = static_cast<int>(row - g);
  const auto* group = reinterpret_cast<const BlockQ8_0x16*>(base + g * row_bytes);
  for (int64_t ib = 0; ib < k / kQK8_0; ++ib) {
    const float d = Fp16ToFp32(group[ib].d[r]);
    for (int i = 0; i < kQK8_0; ++i) {
      out[ib * kQK8_0 + i] = d * static_cast<float>(group[ib].qs[i / 4][r][i % 4] - 128);
    }
  }
}

size_t InterleavedActivationRowBytes(GgmlType type, int64_t k) {
  CheckInterleavable("InterleavedActivationRowBytes", type);
  return GgmlRowBytes(GgmlType::kQ8_0, k) + (k / kQK8_0) * sizeof(int32_t);
}

void ConvertInterleavedActivationRow(GgmlType type, const float* x, void* out, int64_t k) {
  CheckInterleavable("ConvertInterleavedActivationRow", type);
  ConvertActivationRow(GgmlType::kQ8_0, x, out, k);
  const auto* blocks = static_cast<const BlockQ8_0*>(out);
  const int64_t nblocks = k / kQK8_0;
  auto* sums = reinterpret_cast<uint8_t*>(out) + nblocks * sizeof(BlockQ8_0);
  for (int64_t ib = 0; ib < nblocks; ++ib) {
    int32_t sum = 0;
    for (int i = 0; i < kQK8_0; ++i) sum += blocks[ib].qs[i];
    std::memcpy(sums + ib * sizeof(int32_t), &sum, sizeof sum);
  }
}

void GemmInterleavedRows(GgmlType type, const void* w, int64_t rows, int64_t k, int64_t r0,
                         int64_t r1, const void* xq, size_t xq_row_bytes, int64_t nb, float* y,
                         int64_t ldy) {
  CheckInterleavable("GemmInterleavedRows", type);
  if (r0 >= r1 || nb <= 0) return;
  const int64_t whole = WholeGroupRows(rows);
  const size_t row_bytes = GgmlRowBytes(type, k);
  if (r0 < whole) {
    const gemm_internal::GemmArgs args{static_cast<const uint8_t*>(w),
                                       row_bytes,
                                       k,
                                       r0,
                                       r1 < whole ? r1 : whole,
                                       static_cast<const uint8_t*>(xq),
                                       xq_row_bytes,
                                       nb,
                                       y,
                                       ldy};
    gemm_internal::ActiveKernels().q8_0_x16(args);
  }
  // The rows after the last whole group are in row layout, and the row kernels read only the
  // Q8_0 part of each activation row.
  if (r1 > whole) {
    const int64_t t0 = r0 > whole ? r0 : whole;
    GemmRows(type, w, row_bytes, k, t0, r1, xq, xq_row_bytes, nb, y, ldy);
  }
}

}  // namespace memoria
