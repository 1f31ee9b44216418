// The CUDA backend's weight, matrix-vector and row-wise kernels (layouts in cuda_kernels.h).
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "engine/backend/cuda/cuda_kernels.h"
#include "engine/backend/cuda/cuda_plan.h"

namespace memoria::cuda {
namespace {

constexpr int kQK = 32;     // elements per Q8_0 / Q4_0 block
constexpr int kQK_K = 256;  // elements per k-quant super-block

__device__ __forceinline__ float Half(uint16_t h) { return __half2float(__ushort_as_half(h)); }
__device__ __forceinline__ float Bf16(uint16_t h) { return __uint_as_float(static_cast<uint32_t>(h) << 16); }
__device__ __forceinline__ uint16_t ToHalf(float f) { return __half_as_ushort(__float2half_rn(f)); }
__device__ __forceinline__ uint16_t Bytes16(const uint8_t* p) { return p[0] | (p[1] << 8); }

__device__ __forceinline__ float WarpSum(float x) {
  for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
  return x;
}

int Blocks(int64_t n, int threads) { return static_cast<int>((n + threads - 1) / threads); }

// ---- weights at upload ----

__global__ void RepackQ8_0Kernel(const uint8_t* raw, int64_t n_blocks, int8_t* qs, uint16_t* scales) {
  const int64_t b = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (b >= n_blocks) return;
  const uint8_t* block = raw + b * 34;
  scales[b] = Bytes16(block);
  for (int j = 0; j < kQK; ++j) qs[b * kQK + j] = static_cast<int8_t>(block[2 + j]);
}

__global__ void RepackQ4_0Kernel(const uint8_t* raw, int64_t n_blocks, uint8_t* qs, uint16_t* scales) {
  const int64_t b = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (b >= n_blocks) return;
  const uint8_t* block = raw + b * 18;
  scales[b] = Bytes16(block);
  for (int j = 0; j < kQK / 2; ++j) qs[b * (kQK / 2) + j] = block[2 + j];
}

// One thread per 32-element block of a repacked Q8_0 / Q4_0 tensor.
__global__ void RepackedToF16Kernel(bool q4, const uint8_t* qs, const uint16_t* scales, int64_t n_blocks,
                                    uint16_t* out) {
  const int64_t b = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (b >= n_blocks) return;
  const float d = Half(scales[b]);
  uint16_t* o = out + b * kQK;
  if (q4) {
    const uint8_t* q = qs + b * (kQK / 2);
    for (int j = 0; j < kQK / 2; ++j) {
      o[j] = ToHalf(((q[j] & 0xf) - 8) * d);
      o[j + kQK / 2] = ToHalf(((q[j] >> 4) - 8) * d);
    }
  } else {
    const int8_t* q = reinterpret_cast<const int8_t*>(qs) + b * kQK;
    for (int j = 0; j < kQK; ++j) o[j] = ToHalf(q[j] * d);
  }
}

// Q4_K: one thread per (super-block, pair of sub-blocks c, element l): two outputs.
__global__ void Q4KToF16Kernel(const uint8_t* raw, int64_t n_super, uint16_t* out) {
  const int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (t >= n_super * 128) return;
  const int64_t i = t / 128;
  const int c = (t % 128) / 32, l = t % 32;
  const uint8_t* b = raw + i * 144;
  const float d = Half(Bytes16(b)), dmin = Half(Bytes16(b + 2));
  const uint8_t* packed = b + 4;
  auto scale_min = [&](int j, uint8_t* s, uint8_t* m) {
    if (j < 4) {
      *s = packed[j] & 63;
      *m = packed[j + 4] & 63;
    } else {
      *s = (packed[j + 4] & 0xf) | ((packed[j - 4] >> 6) << 4);
      *m = (packed[j + 4] >> 4) | ((packed[j] >> 6) << 4);
    }
  };
  uint8_t s1, m1, s2, m2;
  scale_min(2 * c, &s1, &m1);
  scale_min(2 * c + 1, &s2, &m2);
  const uint8_t q = b[16 + 32 * c + l];
  uint16_t* o = out + i * kQK_K + 64 * c;
  o[l] = ToHalf(d * s1 * (q & 0xf) - dmin * m1);
  o[32 + l] = ToHalf(d * s2 * (q >> 4) - dmin * m2);
}

// Q6_K: one thread per (super-block, half h, element l): four outputs.
__global__ void Q6KToF16Kernel(const uint8_t* raw, int64_t n_super, uint16_t* out) {
  const int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (t >= n_super * 64) return;
  const int64_t i = t / 64;
  const int h = (t % 64) / 32, l = t % 32;
  const uint8_t* b = raw + i * 210;
  const float d = Half(Bytes16(b + 208));
  const uint8_t* ql = b + 64 * h;
  const uint8_t* qh = b + 128 + 32 * h;
  const int8_t* sc = reinterpret_cast<const int8_t*>(b + 192) + 8 * h;
  const int g = l / 16;
  const int q1 = ((ql[l] & 0xf) | (((qh[l] >> 0) & 3) << 4)) - 32;
  const int q2 = ((ql[l + 32] & 0xf) | (((qh[l] >> 2) & 3) << 4)) - 32;
  const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
  const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
  uint16_t* o = out + i * kQK_K + 128 * h;
  o[l] = ToHalf(d * sc[g] * q1);
  o[l + 32] = ToHalf(d * sc[g + 2] * q2);
  o[l + 64] = ToHalf(d * sc[g + 4] * q3);
  o[l + 96] = ToHalf(d * sc[g + 6] * q4);
}

__global__ void PlainToF16Kernel(bool bf16, const void* src, int64_t n, uint16_t* out) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= n) return;
  out[i] = ToHalf(bf16 ? Bf16(static_cast<const uint16_t*>(src)[i]) : static_cast<const float*>(src)[i]);
}

// ---- GEMV: one warp per weight row, each lane a strided set of 16-byte chunks of it ----

// A weight layout read one 16-byte chunk of quants (kElems elements) at a time.
struct F32Chunks {
  static constexpr int kElems = 4;
  const float* w;
  int64_t cols;
  __device__ void Load(int64_t row, int64_t c, float* out) const {
    const float4 v = __ldg(reinterpret_cast<const float4*>(w + row * cols) + c);
    out[0] = v.x, out[1] = v.y, out[2] = v.z, out[3] = v.w;
  }
};

template <bool kBf16>
struct Half8Chunks {
  static constexpr int kElems = 8;
  const uint16_t* w;
  int64_t cols;
  __device__ void Load(int64_t row, int64_t c, float* out) const {
    const uint4 v = __ldg(reinterpret_cast<const uint4*>(w + row * cols) + c);
    const uint32_t words[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      if constexpr (kBf16) {
        out[2 * i] = __uint_as_float(words[i] << 16);
        out[2 * i + 1] = __uint_as_float(words[i] & 0xffff0000u);
      } else {
        const float2 f = __half22float2(*reinterpret_cast<const __half2*>(&words[i]));
        out[2 * i] = f.x, out[2 * i + 1] = f.y;
      }
    }
  }
};

struct Q8_0Chunks {  // 16 quants of a 32-element block per chunk
  static constexpr int kElems = 16;
  const int8_t* qs;
  const uint16_t* scales;
  int64_t cols;
  __device__ void Load(int64_t row, int64_t c, float* out) const {
    const uint4 v = __ldg(reinterpret_cast<const uint4*>(qs + row * cols) + c);
    const float d = Half(__ldg(scales + row * (cols / kQK) + c / 2));
    const uint32_t words[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int i = 0; i < 16; ++i) out[i] = static_cast<int8_t>(words[i / 4] >> (8 * (i % 4))) * d;
  }
};

struct Q4_0Chunks {  // one 32-element block per chunk
  static constexpr int kElems = 32;
  const uint8_t* qs;
  const uint16_t* scales;
  int64_t cols;
  __device__ void Load(int64_t row, int64_t c, float* out) const {
    const uint4 v = __ldg(reinterpret_cast<const uint4*>(qs + row * (cols / 2)) + c);
    const float d = Half(__ldg(scales + row * (cols / kQK) + c));
    const uint32_t words[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int i = 0; i < 16; ++i) {
      const uint32_t byte = (words[i / 4] >> (8 * (i % 4))) & 0xff;
      out[i] = (static_cast<int>(byte & 0xf) - 8) * d;
      out[i + 16] = (static_cast<int>(byte >> 4) - 8) * d;
    }
  }
};

constexpr int kGemvWarps = 8;

template <class Chunks, int kN>
__global__ void __launch_bounds__(kGemvWarps * 32)
GemvKernel(Chunks w, int64_t rows, const float* __restrict__ x, int64_t x_stride, float* __restrict__ y,
           int64_t y_stride) {
  const int lane = threadIdx.x % 32;
  const int64_t row = blockIdx.x * static_cast<int64_t>(kGemvWarps) + threadIdx.x / 32;
  if (row >= rows) return;
  constexpr int kE = Chunks::kElems;
  const int64_t n_chunks = w.cols / kE;
  float acc[kN];
#pragma unroll
  for (int b = 0; b < kN; ++b) acc[b] = 0.0f;
#pragma unroll 2
  for (int64_t c = lane; c < n_chunks; c += 32) {
    float wv[kE];
    w.Load(row, c, wv);
#pragma unroll
    for (int b = 0; b < kN; ++b) {
      const float4* xp = reinterpret_cast<const float4*>(x + b * x_stride + c * kE);
#pragma unroll
      for (int e = 0; e < kE / 4; ++e) {
        const float4 xv = __ldg(xp + e);
        acc[b] += wv[4 * e] * xv.x + wv[4 * e + 1] * xv.y + wv[4 * e + 2] * xv.z + wv[4 * e + 3] * xv.w;
      }
    }
  }
#pragma unroll
  for (int b = 0; b < kN; ++b) {
    const float s = WarpSum(acc[b]);
    if (lane == 0) y[b * y_stride + row] = s;
  }
}

template <class Chunks>
void GemvFor(const Chunks& w, int64_t rows, const float* x, int64_t xs, int64_t n, float* y, int64_t ys,
             cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>((rows + kGemvWarps - 1) / kGemvWarps));
  const dim3 block(kGemvWarps * 32);
  switch (n) {
#define MEMORIA_GEMV_CASE(N) \
  case N:                    \
    return GemvKernel<Chunks, N><<<grid, block, 0, stream>>>(w, rows, x, xs, y, ys);
    MEMORIA_GEMV_CASE(1)
    MEMORIA_GEMV_CASE(2)
    MEMORIA_GEMV_CASE(3)
    MEMORIA_GEMV_CASE(4)
    MEMORIA_GEMV_CASE(5)
    MEMORIA_GEMV_CASE(6)
    MEMORIA_GEMV_CASE(7)
    MEMORIA_GEMV_CASE(8)
#undef MEMORIA_GEMV_CASE
  }
}

// ---- row-wise ----

// Element i of row r of a table in a device weight layout.
__device__ float TableElement(const WeightView& t, int64_t r, int64_t i) {
  switch (t.type) {
    case GgmlType::kF32:
      return static_cast<const float*>(t.data)[r * t.cols + i];
    case GgmlType::kF16:
      return Half(static_cast<const uint16_t*>(t.data)[r * t.cols + i]);
    case GgmlType::kBF16:
      return Bf16(static_cast<const uint16_t*>(t.data)[r * t.cols + i]);
    case GgmlType::kQ8_0: {
      const int8_t* qs = static_cast<const int8_t*>(t.data);
      const uint16_t* scales = reinterpret_cast<const uint16_t*>(qs + t.rows * t.cols);
      return qs[r * t.cols + i] * Half(scales[(r * t.cols + i) / kQK]);
    }
    case GgmlType::kQ4_0: {
      const uint8_t* qs = static_cast<const uint8_t*>(t.data);
      const uint16_t* scales = reinterpret_cast<const uint16_t*>(qs + t.rows * t.cols / 2);
      const int64_t e = r * t.cols + i, block = e / kQK, j = e % kQK;
      const uint8_t byte = qs[block * (kQK / 2) + j % (kQK / 2)];
      return ((j < kQK / 2 ? byte & 0xf : byte >> 4) - 8) * Half(scales[block]);
    }
    default:
      return 0.0f;  // other types are converted to f16 at upload
  }
}

__global__ void EmbedKernel(WeightView table, const int32_t* ids, float* out, int64_t out_stride) {
  const int64_t r = blockIdx.x;
  const int64_t id = ids[r];
  for (int64_t i = threadIdx.x; i < table.cols; i += blockDim.x) out[r * out_stride + i] = TableElement(table, id, i);
}

__device__ float BlockSum(float x) {
  __shared__ float partial[32];
  x = WarpSum(x);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) partial[warp] = x;
  __syncthreads();
  x = threadIdx.x < blockDim.x / 32 ? partial[threadIdx.x] : 0.0f;
  if (warp == 0) x = WarpSum(x);
  if (threadIdx.x == 0) partial[0] = x;
  __syncthreads();
  const float total = partial[0];
  __syncthreads();  // partial is reused by the next call
  return total;
}

__global__ void RmsNormKernel(const float* x, int64_t x_stride, const float* w, float eps, int64_t cols, float* out,
                              int64_t out_stride) {
  const float* xr = x + blockIdx.x * x_stride;
  float* o = out + blockIdx.x * out_stride;
  float sum = 0.0f;
  for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) sum += xr[i] * xr[i];
  sum = BlockSum(sum);  // every thread has read its elements before any writes (out may be x)
  const float scale = 1.0f / sqrtf(sum / cols + eps);
  for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) o[i] = xr[i] * scale * w[i];
}

__global__ void AddRowKernel(const float* bias, int64_t n, int64_t cols, float* y, int64_t ys) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= n * cols) return;
  y[(i / cols) * ys + i % cols] += bias[i % cols];
}

__global__ void AddKernel(const float* a, int64_t as, int64_t n, int64_t cols, float* y, int64_t ys) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= n * cols) return;
  const int64_t r = i / cols, c = i % cols;
  y[r * ys + c] += a[r * as + c];
}

__global__ void SwiGluKernel(const float* g, int64_t gs, const float* u, int64_t us, int64_t n, int64_t cols,
                             float* o, int64_t os) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= n * cols) return;
  const int64_t r = i / cols, c = i % cols;
  const float gv = g[r * gs + c];
  o[r * os + c] = gv / (1.0f + expf(-gv)) * u[r * us + c];
}

__global__ void CopyRowsKernel(const float* src, int64_t ss, const int32_t* rows, int64_t n, int64_t cols,
                               float* dst, int64_t ds) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= n * cols) return;
  const int64_t r = i / cols, c = i % cols;
  dst[r * ds + c] = src[(rows != nullptr ? rows[r] : r) * ss + c];
}

__global__ void ConvertRowsKernel(const float* x, int64_t xs, int64_t n, int64_t cols, bool bf16, uint16_t* out) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= n * cols) return;
  const float v = x[(i / cols) * xs + i % cols];
  out[i] = bf16 ? __bfloat16_as_ushort(__float2bfloat16_rn(v)) : ToHalf(v);
}

// One block per row, one thread per (head, pair).
__global__ void RopeKernel(float* x, int64_t xs, int32_t n_heads, const int32_t* plan, RopeParams rope) {
  const int64_t r = blockIdx.x;
  const PlanHeader* h = reinterpret_cast<const PlanHeader*>(plan);
  const int32_t position = plan[h->positions + r];
  const float* cs = rope.cos_sin + static_cast<int64_t>(position) * rope.half * 2;
  for (int t = threadIdx.x; t < n_heads * rope.half; t += blockDim.x) {
    const int head = t / rope.half, i = t % rope.half;
    float* v = x + r * xs + static_cast<int64_t>(head) * rope.head_dim;
    const int a = rope.neox ? i : 2 * i, b = rope.neox ? i + rope.half : 2 * i + 1;
    const float x0 = v[a], x1 = v[b], c = cs[2 * i], s = cs[2 * i + 1];
    v[a] = x0 * c - x1 * s;
    v[b] = x0 * s + x1 * c;
  }
}

}  // namespace

void LaunchRepack(GgmlType type, const void* raw, int64_t rows, int64_t cols, void* out, cudaStream_t stream) {
  const int64_t n_blocks = rows * cols / kQK;
  if (type == GgmlType::kQ8_0) {
    int8_t* qs = static_cast<int8_t*>(out);
    RepackQ8_0Kernel<<<Blocks(n_blocks, 256), 256, 0, stream>>>(
        static_cast<const uint8_t*>(raw), n_blocks, qs, reinterpret_cast<uint16_t*>(qs + rows * cols));
  } else {
    uint8_t* qs = static_cast<uint8_t*>(out);
    RepackQ4_0Kernel<<<Blocks(n_blocks, 256), 256, 0, stream>>>(
        static_cast<const uint8_t*>(raw), n_blocks, qs, reinterpret_cast<uint16_t*>(qs + rows * cols / 2));
  }
}

void LaunchToF16(GgmlType type, const void* src, int64_t rows, int64_t cols, uint16_t* out, cudaStream_t stream) {
  const int64_t n = rows * cols;
  const uint8_t* bytes = static_cast<const uint8_t*>(src);
  switch (type) {
    case GgmlType::kQ8_0:
      RepackedToF16Kernel<<<Blocks(n / kQK, 256), 256, 0, stream>>>(
          false, bytes, reinterpret_cast<const uint16_t*>(bytes + n), n / kQK, out);
      break;
    case GgmlType::kQ4_0:
      RepackedToF16Kernel<<<Blocks(n / kQK, 256), 256, 0, stream>>>(
          true, bytes, reinterpret_cast<const uint16_t*>(bytes + n / 2), n / kQK, out);
      break;
    case GgmlType::kQ4_K:
      Q4KToF16Kernel<<<Blocks(n / 2, 256), 256, 0, stream>>>(bytes, n / kQK_K, out);
      break;
    case GgmlType::kQ6_K:
      Q6KToF16Kernel<<<Blocks(n / 4, 256), 256, 0, stream>>>(bytes, n / kQK_K, out);
      break;
    case GgmlType::kBF16:
    case GgmlType::kF32:
      PlainToF16Kernel<<<Blocks(n, 256), 256, 0, stream>>>(type == GgmlType::kBF16, src, n, out);
      break;
    default:
      break;
  }
}

bool GemvSupports(const WeightView& w, const float* x, int64_t x_stride, int64_t n) {
  if (n < 1 || n > kMaxGemvRows || x_stride % 4 != 0 || reinterpret_cast<uintptr_t>(x) % 16 != 0) return false;
  switch (w.type) {
    case GgmlType::kF32:
      return w.cols % 4 == 0;
    case GgmlType::kF16:
    case GgmlType::kBF16:
      return w.cols % 8 == 0;
    case GgmlType::kQ8_0:
    case GgmlType::kQ4_0:
      return true;
    default:
      return false;
  }
}

void LaunchGemv(const WeightView& w, const float* x, int64_t x_stride, int64_t n, float* y, int64_t y_stride,
                cudaStream_t stream) {
  switch (w.type) {
    case GgmlType::kF32:
      return GemvFor(F32Chunks{static_cast<const float*>(w.data), w.cols}, w.rows, x, x_stride, n, y, y_stride,
                     stream);
    case GgmlType::kF16:
      return GemvFor(Half8Chunks<false>{static_cast<const uint16_t*>(w.data), w.cols}, w.rows, x, x_stride, n, y,
                     y_stride, stream);
    case GgmlType::kBF16:
      return GemvFor(Half8Chunks<true>{static_cast<const uint16_t*>(w.data), w.cols}, w.rows, x, x_stride, n, y,
                     y_stride, stream);
    case GgmlType::kQ8_0: {
      const int8_t* qs = static_cast<const int8_t*>(w.data);
      return GemvFor(Q8_0Chunks{qs, reinterpret_cast<const uint16_t*>(qs + w.rows * w.cols), w.cols}, w.rows, x,
                     x_stride, n, y, y_stride, stream);
    }
    case GgmlType::kQ4_0: {
      const uint8_t* qs = static_cast<const uint8_t*>(w.data);
      return GemvFor(Q4_0Chunks{qs, reinterpret_cast<const uint16_t*>(qs + w.rows * w.cols / 2), w.cols}, w.rows,
                     x, x_stride, n, y, y_stride, stream);
    }
    default:
      return;
  }
}

void LaunchConvertRows(const float* x, int64_t x_stride, int64_t n, int64_t cols, GgmlType to, void* out,
                       cudaStream_t stream) {
  ConvertRowsKernel<<<Blocks(n * cols, 256), 256, 0, stream>>>(x, x_stride, n, cols, to == GgmlType::kBF16,
                                                                static_cast<uint16_t*>(out));
}

void LaunchEmbed(const WeightView& table, const int32_t* ids, int64_t n, float* out, int64_t out_stride,
                 cudaStream_t stream) {
  EmbedKernel<<<static_cast<unsigned>(n), 256, 0, stream>>>(table, ids, out, out_stride);
}

void LaunchRmsNorm(const float* x, int64_t x_stride, const float* weight, float eps, int64_t n, int64_t cols,
                   float* out, int64_t out_stride, cudaStream_t stream) {
  RmsNormKernel<<<static_cast<unsigned>(n), 256, 0, stream>>>(x, x_stride, weight, eps, cols, out, out_stride);
}

void LaunchAddRow(const float* bias, int64_t n, int64_t cols, float* y, int64_t y_stride, cudaStream_t stream) {
  AddRowKernel<<<Blocks(n * cols, 256), 256, 0, stream>>>(bias, n, cols, y, y_stride);
}

void LaunchAdd(const float* a, int64_t a_stride, int64_t n, int64_t cols, float* y, int64_t y_stride,
               cudaStream_t stream) {
  AddKernel<<<Blocks(n * cols, 256), 256, 0, stream>>>(a, a_stride, n, cols, y, y_stride);
}

void LaunchSwiGlu(const float* gate, int64_t gate_stride, const float* up, int64_t up_stride, int64_t n,
                  int64_t cols, float* out, int64_t out_stride, cudaStream_t stream) {
  SwiGluKernel<<<Blocks(n * cols, 256), 256, 0, stream>>>(gate, gate_stride, up, up_stride, n, cols, out,
                                                           out_stride);
}

void LaunchCopyRows(const float* src, int64_t src_stride, const int32_t* rows, int64_t n, int64_t cols,
                    float* dst, int64_t dst_stride, cudaStream_t stream) {
  CopyRowsKernel<<<Blocks(n * cols, 256), 256, 0, stream>>>(src, src_stride, rows, n, cols, dst, dst_stride);
}

void LaunchRope(float* x, int64_t x_stride, int64_t n, int32_t n_heads, const int32_t* plan,
                const RopeParams& rope, cudaStream_t stream) {
  RopeKernel<<<static_cast<unsigned>(n), 128, 0, stream>>>(x, x_stride, n_heads, plan, rope);
}

}  // namespace memoria::cuda
