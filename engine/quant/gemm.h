#ifndef MEMORIA_ENGINE_QUANT_GEMM_H_
#define MEMORIA_ENGINE_QUANT_GEMM_H_

#include <cstddef>
#include <cstdint>

#include "engine/gguf/ggml_type.h"

namespace memoria {

// Instruction-set paths for the CPU kernels, chosen once at run time from cpuid.
enum class CpuIsa { kScalar, kAvx2, kAvx512 };
CpuIsa DetectedCpuIsa();          // the best path this CPU supports
CpuIsa ActiveCpuIsa();            // the path in use (DetectedCpuIsa unless overridden)
void SetCpuIsaForTesting(CpuIsa isa);  // isa must be <= DetectedCpuIsa()
const char* CpuIsaName(CpuIsa isa);

// The format activations are converted to before a dot product with weights of type `weight`:
// F32 -> F32, F16 -> F16, BF16 -> BF16, Q8_0/Q4_0 -> Q8_0, Q4_K/Q6_K -> Q8_K.
GgmlType DotTypeFor(GgmlType weight);

// Converts one activation row of k floats to `dot_type` (GgmlRowBytes(dot_type, k) bytes).
void ConvertActivationRow(GgmlType dot_type, const float* x, void* out, int64_t k);

// Weight-times-activations for a range of weight rows:
//   y[b * ldy + r] = dot(W[r, 0:k], X[b, 0:k])   for r in [r0, r1), b in [0, nb)
// W has `wtype` rows of w_row_bytes each; X holds nb rows already converted to DotTypeFor(wtype),
// xq_row_bytes apart. Callers split [0, rows) across threads; this function is single-threaded.
void GemmRows(GgmlType wtype, const void* w, size_t w_row_bytes, int64_t k, int64_t r0, int64_t r1,
              const void* xq, size_t xq_row_bytes, int64_t nb, float* y, int64_t ldy);

// Float vector helpers for attention and the feed-forward (dispatched like GemmRows).
void Fp32ToFp16Row(const float* x, uint16_t* y, int64_t n);
void Fp16ToFp32Row(const uint16_t* x, float* y, int64_t n);  // exact
// out = silu(gate) * up = gate / (1 + exp(-gate)) * up, elementwise; out may be gate or up.
void SiluMulF32(const float* gate, const float* up, float* out, int64_t n);
// Attention's softmax without its division: row[0:n) = exp(scale * row[0:n) - m) in place, m the
// largest scale * row[i]; sets *max_scaled = m and returns the sum of the new row[0:n). Attention
// divides its outputs by the sum instead of every weight, and merges parts of one softmax that
// were computed apart (over chunks of a long context) through their m and sum.
float SoftmaxNumeratorsF32(float* row, int64_t n, float scale, float* max_scaled);
// For h < n_out: out[h * ldo + 0:dim) += sum over t < n of weights[h * ldw + t] * rows[t * dim :
// (t + 1) * dim] (attention's values: one KV page, or one reference's memory entries, summed for
// the n_out query heads that share them; each row is read, and widened from f16, once for all).
void AccumulateRowsF32(const float* weights, int64_t ldw, int64_t n_out, const float* rows,
                       int64_t n, int64_t dim, float* out, int64_t ldo);
void AccumulateRowsF16F32(const float* weights, int64_t ldw, int64_t n_out,
                          const uint16_t* rows_fp16, int64_t n, int64_t dim, float* out,
                          int64_t ldo);
// Attention's scores: for j < n_queries and t < n,
//   scores[j * lds + t] = dot(queries[j * ldq + 0:dim), rows[t * dim + 0:dim))
// (the keys of one KV page, or one reference's memory entries, against the query heads that share
// them; each row is read, and widened from f16, once for all).
// A score's summation order does not depend on t, n or n_queries, so a key scores the same in a
// prompt pass, a decode step and any chunk of either.
void DotRowsF32(const float* queries, int64_t ldq, int64_t n_queries, const float* rows, int64_t n,
                int64_t dim, float* scores, int64_t lds);
void DotRowsF16F32(const float* queries, int64_t ldq, int64_t n_queries, const uint16_t* rows_fp16,
                   int64_t n, int64_t dim, float* scores, int64_t lds);

}  // namespace memoria

#endif  // MEMORIA_ENGINE_QUANT_GEMM_H_
