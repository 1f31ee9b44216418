#ifndef MEMORIA_ENGINE_QUANT_GEMM_INTERNAL_H_
#define MEMORIA_ENGINE_QUANT_GEMM_INTERNAL_H_

// The seam between the dispatcher (gemm.cc) and the kernels of each instruction set. Each
// gemm_<isa>.cc is compiled with its own target flags and exports one KernelTable. Everything in
// this header is either plain data or a template instantiated with a kernel type private to one
// file, so no function compiled with AVX-512 flags can be picked by the linker for another path
// (which is also why it avoids std:: helpers such as std::min).

#include <cstddef>
#include <cstdint>

namespace memoria::gemm_internal {

// GemmRows' parameters with the pointers as bytes.
struct GemmArgs {
  const uint8_t* w;
  size_t w_row_bytes;
  int64_t k;
  int64_t r0, r1;
  const uint8_t* x;
  size_t x_row_bytes;
  int64_t nb;
  float* y;
  int64_t ldy;
};

using GemmFn = void (*)(const GemmArgs& args);

struct KernelTable {
  // One GemmRows kernel per weight type (activations already in DotTypeFor(type)).
  GemmFn f32, f16, bf16, q8_0, q4_0, q4_k, q6_k;
  // Weights interleaved 16 rows at a time (interleave.h) x their activations, rows [r0, r1) in
  // whole groups; null where the path has no such kernel.
  GemmFn q8_0_x16, q4_k_x16, q6_k_x16;
  void (*fp32_to_fp16_row)(const float* x, uint16_t* y, int64_t n);
  void (*fp16_to_fp32_row)(const uint16_t* x, float* y, int64_t n);
  void (*silu_mul_f32)(const float* gate, const float* up, float* out, int64_t n);
  float (*softmax_numerators_f32)(float* row, int64_t n, float scale, float* max_scaled);
  void (*accumulate_rows_f32)(const float* weights, int64_t ldw, int64_t n_out, const float* rows,
                              int64_t n, int64_t dim, float* out, int64_t ldo);
  void (*accumulate_rows_f16_f32)(const float* weights, int64_t ldw, int64_t n_out,
                                  const uint16_t* rows, int64_t n, int64_t dim, float* out,
                                  int64_t ldo);
  void (*dot_rows_f32)(const float* queries, int64_t ldq, int64_t n_queries, const float* rows,
                       int64_t n, int64_t dim, float* scores, int64_t lds);
  void (*dot_rows_f16_f32)(const float* queries, int64_t ldq, int64_t n_queries,
                           const uint16_t* rows, int64_t n, int64_t dim, float* scores,
                           int64_t lds);
  // Activation rows to Q8_0 / Q8_K blocks, every byte as QuantizeRow (quant.h) writes it.
  void (*quantize_row_q8_0)(const float* x, void* out, int64_t k);
  void (*quantize_row_q8_k)(const float* x, void* out, int64_t k);
};

const KernelTable& ScalarKernels();
const KernelTable& Avx2Kernels();    // only call when the CPU has AVX2, FMA and F16C
const KernelTable& Avx512Kernels();  // only call when the CPU has AVX-512 F/BW/VL/DQ/VNNI
const KernelTable& ActiveKernels();  // the table of ActiveCpuIsa()

// Register-tile driver shared by the SIMD paths. A kernel K provides
//   static constexpr int kDecodeRows;  // weight rows per tile when nb == 1
//   static constexpr int kBatchRows;   // weight rows per tile when nb > 1
//   template <int RW, int RB> static void Tile(const uint8_t* w, size_t w_row_bytes,
//       const uint8_t* x, size_t x_row_bytes, int64_t k, float* y, int64_t ldy);
// where Tile computes y[b * ldy + r] for RW weight rows and RB activation rows, loading each weight
// block once for all RB activations.
//
// Decode (nb == 1) streams weights through kDecodeRows independent rows at a time. Batches walk
// activation rows in chunks small enough to stay in L2, and within a chunk each weight tile stays
// in L1 while every group of up to 4 activation rows passes over it, so weights come from memory
// once per chunk instead of once per activation row.
template <class K, int RW>
void BatchRowTile(const GemmArgs& a, int64_t r, int64_t b0, int64_t b1) {
  const uint8_t* w = a.w + r * a.w_row_bytes;
  int64_t b = b0;
  for (; b + 4 <= b1; b += 4) {
    K::template Tile<RW, 4>(w, a.w_row_bytes, a.x + b * a.x_row_bytes, a.x_row_bytes, a.k,
                            a.y + b * a.ldy + r, a.ldy);
  }
  if (b + 2 <= b1) {
    K::template Tile<RW, 2>(w, a.w_row_bytes, a.x + b * a.x_row_bytes, a.x_row_bytes, a.k,
                            a.y + b * a.ldy + r, a.ldy);
    b += 2;
  }
  if (b < b1) {
    K::template Tile<RW, 1>(w, a.w_row_bytes, a.x + b * a.x_row_bytes, a.x_row_bytes, a.k,
                            a.y + b * a.ldy + r, a.ldy);
  }
}

template <class K>
void RunTiles(const GemmArgs& a) {
  if (a.nb == 1) {
    constexpr int kRows = K::kDecodeRows;
    int64_t r = a.r0;
    for (; r + kRows <= a.r1; r += kRows) {
      K::template Tile<kRows, 1>(a.w + r * a.w_row_bytes, a.w_row_bytes, a.x, a.x_row_bytes, a.k,
                                 a.y + r, a.ldy);
    }
    for (; r < a.r1; ++r) {
      K::template Tile<1, 1>(a.w + r * a.w_row_bytes, a.w_row_bytes, a.x, a.x_row_bytes, a.k,
                             a.y + r, a.ldy);
    }
    return;
  }
  constexpr int64_t kBatchChunk = 64;
  constexpr int kRows = K::kBatchRows;
  for (int64_t b0 = 0; b0 < a.nb; b0 += kBatchChunk) {
    const int64_t b1 = a.nb < b0 + kBatchChunk ? a.nb : b0 + kBatchChunk;
    int64_t r = a.r0;
    for (; r + kRows <= a.r1; r += kRows) BatchRowTile<K, kRows>(a, r, b0, b1);
    for (; r < a.r1; ++r) BatchRowTile<K, 1>(a, r, b0, b1);
  }
}

}  // namespace memoria::gemm_internal

#endif  // MEMORIA_ENGINE_QUANT_GEMM_INTERNAL_H_
