#ifndef MEMORIA_ENGINE_BACKEND_CUDA_CUDA_KERNELS_H_
#define MEMORIA_ENGINE_BACKEND_CUDA_CUDA_KERNELS_H_

// Launchers for the CUDA backend's own kernels (cuda_kernels.cu, cuda_attention.cu). Plain C++
// so that host code compiled by g++ can call them; every pointer is a device pointer unless its
// comment says otherwise, and every launch is asynchronous on `stream`.
//
// Weight layouts on the device (see CudaBackend::UploadWeight):
//   kF32, kF16, kBF16: rows of cols elements, as in the file.
//   kQ8_0: "repacked" as rows x cols int8 quants, then rows x cols/32 fp16 scales, so that a
//          thread reads 16 aligned quant bytes at once (the file's 34-byte blocks are unaligned).
//   kQ4_0: rows x cols/2 bytes of nibbles (each 32-element block's 16 bytes as in the file), then
//          rows x cols/32 fp16 scales.
// K-quants are dequantized to kF16 at upload.

#include <cstddef>
#include <cstdint>

#include <cuda_runtime.h>

#include "engine/gguf/ggml_type.h"

namespace memoria::cuda {

struct WeightView {
  GgmlType type = GgmlType::kF16;
  const void* data = nullptr;
  int64_t rows = 0;
  int64_t cols = 0;
};

struct RopeParams {
  int32_t head_dim = 0;
  int32_t half = 0;   // rotated pairs per head (n_dims / 2)
  bool neox = false;  // pairs (i, i + half) instead of (2i, 2i + 1)
  const float* cos_sin = nullptr;  // [position][half][2]
};

// ---- weights at upload ----
// raw GGUF Q8_0 / Q4_0 blocks -> the repacked layout above.
void LaunchRepack(GgmlType type, const void* raw, int64_t rows, int64_t cols, void* out, cudaStream_t stream);
// repacked Q8_0 / Q4_0, or raw Q4_K / Q6_K / BF16 / F32 -> fp16, rows * cols elements.
void LaunchToF16(GgmlType type, const void* src, int64_t rows, int64_t cols, uint16_t* out, cudaStream_t stream);

// ---- matrix products ----
// y[b][r] = dot(W[r], x[b]) for b < n <= kMaxGemvRows: one pass over W for all n rows of x.
// GemvSupports says whether the shape fits the kernel (cols a multiple of its chunk, aligned
// rows); when not, callers use the GEMM path.
inline constexpr int64_t kMaxGemvRows = 8;
bool GemvSupports(const WeightView& w, const float* x, int64_t x_stride, int64_t n);
void LaunchGemv(const WeightView& w, const float* x, int64_t x_stride, int64_t n, float* y,
                int64_t y_stride, cudaStream_t stream);
// out (n x cols, contiguous) = x rows converted to f16 or bf16, the GEMM operand.
void LaunchConvertRows(const float* x, int64_t x_stride, int64_t n, int64_t cols, GgmlType to, void* out,
                       cudaStream_t stream);

// ---- row-wise operations (row strides in floats) ----
void LaunchEmbed(const WeightView& table, const int32_t* ids, int64_t n, float* out, int64_t out_stride,
                 cudaStream_t stream);
void LaunchRmsNorm(const float* x, int64_t x_stride, const float* weight, float eps, int64_t n, int64_t cols,
                   float* out, int64_t out_stride, cudaStream_t stream);
void LaunchAddRow(const float* bias, int64_t n, int64_t cols, float* y, int64_t y_stride, cudaStream_t stream);
void LaunchAdd(const float* a, int64_t a_stride, int64_t n, int64_t cols, float* y, int64_t y_stride,
               cudaStream_t stream);
void LaunchSwiGlu(const float* gate, int64_t gate_stride, const float* up, int64_t up_stride, int64_t n,
                  int64_t cols, float* out, int64_t out_stride, cudaStream_t stream);
// dst[i] = src[rows ? rows[i] : i] for i < n.
void LaunchCopyRows(const float* src, int64_t src_stride, const int32_t* rows, int64_t n, int64_t cols,
                    float* dst, int64_t dst_stride, cudaStream_t stream);
// Rotates the heads of the plan's n rows at the plan's positions.
void LaunchRope(float* x, int64_t x_stride, int64_t n, int32_t n_heads, const int32_t* plan,
                const RopeParams& rope, cudaStream_t stream);

// ---- attention (cuda_attention.cu) ----
struct AttentionParams {
  const float* q = nullptr;       // rotated queries, n_rows x (n_heads * head_dim)
  const float* q_pre = nullptr;   // queries before rotation (position-free memories), or null
  int64_t q_stride = 0;
  const float* k = nullptr;       // new keys (rotated) and values, n_rows x (n_kv_heads * head_dim)
  const float* v = nullptr;
  int64_t kv_stride = 0;
  float* out = nullptr;
  int64_t out_stride = 0;
  void* k_cache = nullptr;        // this layer's pages: [page][kv_head][slot][head_dim]
  void* v_cache = nullptr;
  bool kv_f16 = true;
  int32_t page_size = 0;
  int32_t n_kv_heads = 0;
  int32_t n_heads = 0;
  int32_t head_dim = 0;
  int32_t layer = 0;
  int32_t n_layers = 0;
  int32_t n_rows = 0;
  const int32_t* plan = nullptr;
  RopeParams rope;                // rotates memory keys of kStoredPositions views
  float scale = 1.0f;
  int32_t n_splits = 1;           // key ranges per (row, KV head); > 1 uses `partial`
  float* partial = nullptr;       // n_rows * n_heads * n_splits * (head_dim + 2) floats
  float* lse = nullptr;           // n_rows * n_heads log-sum-exp of the scores, or null
};
// Most query heads per KV head and the largest head_dim the attention kernel takes.
inline constexpr int32_t kMaxAttentionGroup = 16;
inline constexpr int32_t kMaxAttentionHeadDim = 256;

// Once per process, before any launch (and outside graph capture): lets the attention kernel
// use the device's opt-in shared memory.
void InitAttentionKernels(size_t max_shared_bytes);
// Writes the rows' k and v into their sequences' new cache slots.
void LaunchStoreKv(const AttentionParams& p, cudaStream_t stream);
// out = softmax over [memory entries] + [causal context] of each query row, split over
// p.n_splits key ranges and combined (flash-decoding) when n_splits > 1.
void LaunchAttention(const AttentionParams& p, cudaStream_t stream);
// mass[g * n_rows + j] = sum over the group's query heads and rows i >= j of the softmax weight
// of row i on new token j (one sequence; needs p.lse from LaunchAttention).
void LaunchAttentionMass(const AttentionParams& p, float* mass, cudaStream_t stream);

}  // namespace memoria::cuda

#endif  // MEMORIA_ENGINE_BACKEND_CUDA_CUDA_KERNELS_H_
