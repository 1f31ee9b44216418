#ifndef MEMORIA_ENGINE_QUANT_INTERLEAVE_H_
#define MEMORIA_ENGINE_QUANT_INTERLEAVE_H_

// Weight matrices repacked for the CPU kernels: rows interleaved 16 at a time.
//
// In the GGUF row layout a decode kernel multiplies each row with the activations separately:
// per 32-element block it loads the row's scale, offsets and multiplies 32 quants, and at the end
// reduces the row's vector to one number. That work per byte leaves the AVX-512 Q8_0 kernel
// compute-bound at ~55% of the read bandwidth on two cores. Interleaved (BlockQ8_0x16 and friends
// in blocks.h), one vpdpbusd multiplies 4 quants of 16 rows at once with 4 broadcast activation
// quants, the 16 lanes of the result are the 16 rows' block sums, and no reduction is left: ~3x
// fewer instructions per byte (Q8_0 and Q4_K kernels at 0.8-0.9 of the read bandwidth,
// docs/performance.md). AVX2 has no vpdpbusd; its kernels work on the two 8-row halves of a
// group with vpmaddubsw and still save the per-row work (1.2-1.65x the row kernels in L2).
//
// A matrix of `rows` rows stores rows [0, 16 * (rows / 16)) as groups of 16 interleaved rows and
// the remaining rows in row layout at their usual offsets (a group has the size of 16 rows).

#include <cstddef>
#include <cstdint>

#include "engine/gguf/ggml_type.h"

namespace memoria {

// The types that have an interleaved layout: Q8_0, Q4_K, Q6_K (blocks.h).
//
// Whether the active CPU path has interleaved kernels for `type` (AVX2 and AVX-512 do). Every
// path computes interleaved weights correctly (without kernels, by restoring rows), so this only
// decides whether repacking pays.
bool PrefersInterleavedRows(GgmlType type);

// Repacks a row-layout matrix (rows x k, rows GgmlRowBytes(type, k) apart) into `dst` of the same
// size.
void InterleaveRows(GgmlType type, const void* src, int64_t rows, int64_t k, void* dst);

// Row `row` of an interleaved matrix in row layout (GgmlRowBytes(type, k) bytes), byte for byte
// the row before repacking.
void DeinterleaveRow(GgmlType type, const void* w, int64_t rows, int64_t row, int64_t k,
                     void* out);

// Activations for interleaved weights: the DotTypeFor(type) row, for Q8_0 followed by each
// block's sum of quants (int32), with which the kernels undo the weights' +128 offset (Q8_K rows
// carry such sums already).
size_t InterleavedActivationRowBytes(GgmlType type, int64_t k);
void ConvertInterleavedActivationRow(GgmlType type, const float* x, void* out, int64_t k);

// GemmRows (gemm.h) for an interleaved matrix of `rows` rows. r0 must be a multiple of 16 and r1
// a multiple of 16 or `rows`, so that a call covers whole groups (CpuBackend::MatMul's split).
void GemmInterleavedRows(GgmlType type, const void* w, int64_t rows, int64_t k, int64_t r0,
                         int64_t r1, const void* xq, size_t xq_row_bytes, int64_t nb, float* y,
                         int64_t ldy);

}  // namespace memoria

#endif  // MEMORIA_ENGINE_QUANT_INTERLEAVE_H_
