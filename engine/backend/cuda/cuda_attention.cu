// Attention of the CUDA backend: paged KV storage plus per-head memory entries in one softmax,
// computing what engine/backend/cpu/cpu_attention.cc computes (the reference).
//
// One block per (query row, KV head, key split) serves all query heads of the KV group, so each
// key and value is read once per group. Keys are walked in tiles of 32 in a virtual order:
// [memory entries of the layer's head] + [causal context slots]; memory keys are converted and
// rotated (kStoredPositions) as the tile is loaded. Softmax is online (running max and sum per
// query head); with several splits each block leaves (max, sum, unnormalized output) and a second
// kernel combines them (flash-decoding), which keeps the GPU busy for small batches with long
// contexts.
#include <cuda_fp16.h>

#include <cmath>

#include "engine/backend/cuda/cuda_kernels.h"
#include "engine/backend/cuda/cuda_plan.h"

namespace memoria::cuda {
namespace {

constexpr int kThreads = 128;
constexpr int kWarps = kThreads / 32;
constexpr int kTile = 32;                                  // keys per tile (one per lane)
constexpr int kHeadsPerWarp = kMaxAttentionGroup / kWarps;  // query heads each warp accumulates
constexpr int kDimsPerLane = kMaxAttentionHeadDim / 32;

__device__ __forceinline__ float WarpMax(float x) {
  for (int o = 16; o > 0; o >>= 1) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, o));
  return x;
}
__device__ __forceinline__ float WarpSum(float x) {
  for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
  return x;
}

struct RowContext {
  const PlanSequence* seq;
  const int32_t* pages;
  const PlanMemoryChunk* chunks;  // this (layer, head)'s chunks, or null
  int32_t n_chunks;
  int32_t n_mem;
  int32_t n_ctx;  // context slots the row sees (its own included)
};

__device__ RowContext ContextOf(const AttentionParams& p, int32_t row, int32_t g) {
  const PlanHeader* h = reinterpret_cast<const PlanHeader*>(p.plan);
  RowContext c;
  const int32_t s = p.plan[h->row_seq + row];
  c.seq = reinterpret_cast<const PlanSequence*>(p.plan + h->seqs) + s;
  c.pages = p.plan + h->pages + c.seq->pages;
  c.n_ctx = c.seq->n_cached + (row - c.seq->first_row) + 1;
  c.chunks = nullptr;
  c.n_chunks = 0;
  c.n_mem = 0;
  if (c.seq->memory >= 0) {
    const PlanMemoryHead* mh = reinterpret_cast<const PlanMemoryHead*>(p.plan + h->memory) + c.seq->memory +
                               p.layer * p.n_kv_heads + g;
    c.chunks = reinterpret_cast<const PlanMemoryChunk*>(p.plan + h->chunks) + mh->chunk;
    c.n_chunks = mh->n_chunks;
    c.n_mem = mh->n_entries;
  }
  return c;
}

__device__ __forceinline__ size_t CacheOffset(const AttentionParams& p, int32_t page, int32_t g, int32_t in_page) {
  return ((static_cast<size_t>(page) * p.n_kv_heads + g) * p.page_size + in_page) * p.head_dim;
}

__global__ void StoreKvKernel(AttentionParams p) {
  const int32_t row = blockIdx.x;
  const PlanHeader* h = reinterpret_cast<const PlanHeader*>(p.plan);
  const PlanSequence& seq = reinterpret_cast<const PlanSequence*>(p.plan + h->seqs)[p.plan[h->row_seq + row]];
  const int32_t slot = seq.n_cached + row - seq.first_row;
  const int32_t page = p.plan[h->pages + seq.pages + slot / p.page_size];
  const int32_t width = p.n_kv_heads * p.head_dim;
  for (int32_t i = threadIdx.x; i < width; i += blockDim.x) {
    const int32_t g = i / p.head_dim, d = i % p.head_dim;
    const size_t off = CacheOffset(p, page, g, slot % p.page_size) + d;
    const float k = p.k[row * p.kv_stride + i], v = p.v[row * p.kv_stride + i];
    if (p.kv_f16) {
      static_cast<__half*>(p.k_cache)[off] = __float2half_rn(k);
      static_cast<__half*>(p.v_cache)[off] = __float2half_rn(v);
    } else {
      static_cast<float*>(p.k_cache)[off] = k;
      static_cast<float*>(p.v_cache)[off] = v;
    }
  }
}

__device__ __forceinline__ void LoadPair(const void* base, bool f16, int32_t i, float* out) {
  if (f16) {
    const float2 f = __half22float2(static_cast<const __half2*>(base)[i]);
    out[0] = f.x, out[1] = f.y;
  } else {
    const float2 f = static_cast<const float2*>(base)[i];
    out[0] = f.x, out[1] = f.y;
  }
}

__global__ void __launch_bounds__(kThreads) AttentionKernel(AttentionParams p) {
  const int32_t row = blockIdx.x, g = blockIdx.y, split = blockIdx.z;
  const int32_t hd = p.head_dim, group = p.n_heads / p.n_kv_heads;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const RowContext c = ContextOf(p, row, g);
  const bool rotate_memory = c.seq->rotate_memory != 0;
  const bool position_free = c.n_mem > 0 && !rotate_memory && p.q_pre != nullptr;

  // This split's range of the virtual key order, whole tiles except at the end.
  const int32_t n_keys = c.n_mem + c.n_ctx;
  const int32_t per_split = (n_keys + p.n_splits - 1) / p.n_splits;
  const int32_t span = (per_split + kTile - 1) / kTile * kTile;
  const int32_t k0 = min(n_keys, split * span), k1 = min(n_keys, k0 + span);

  extern __shared__ float smem[];
  float* ks = smem;                        // [kTile][hd + 1]: padded rows, conflict-free dots
  float* vs = ks + kTile * (hd + 1);       // [kTile][hd]
  float* qs = vs + kTile * hd;             // [group][hd]
  float* qp = qs + group * hd;             // [group][hd], position-free memories
  float* scores = qp + (position_free ? group * hd : 0);  // [group][kTile]
  __shared__ const void* key_src[kTile];
  __shared__ const void* value_src[kTile];
  __shared__ int32_t key_f16[kTile], key_position[kTile], key_is_memory[kTile];

  for (int32_t i = threadIdx.x; i < group * hd; i += kThreads) {
    const size_t off = static_cast<size_t>(row) * p.q_stride + static_cast<size_t>(g) * group * hd + i;
    qs[i] = p.q[off];
    if (position_free) qp[i] = p.q_pre[off];
  }

  float m[kHeadsPerWarp], l[kHeadsPerWarp], acc[kHeadsPerWarp][kDimsPerLane];
#pragma unroll
  for (int a = 0; a < kHeadsPerWarp; ++a) {
    m[a] = -INFINITY;
    l[a] = 0.0f;
#pragma unroll
    for (int d = 0; d < kDimsPerLane; ++d) acc[a][d] = 0.0f;
  }

  const size_t kv_elem = p.kv_f16 ? 2 : 4;
  for (int32_t t0 = k0; t0 < k1; t0 += kTile) {
    // where each key of the tile lives
    if (threadIdx.x < kTile) {
      const int32_t j = threadIdx.x, t = t0 + j;
      const void* ksrc = nullptr;
      const void* vsrc = nullptr;
      int32_t f16 = p.kv_f16, position = 0, is_memory = 0;
      if (t < k1 && t < c.n_mem) {
        int32_t e = t, ch = 0;
        while (e >= c.chunks[ch].count) e -= c.chunks[ch++].count;
        const PlanMemoryChunk& chunk = c.chunks[ch];
        const size_t row_bytes = static_cast<size_t>(hd) * (chunk.f16 ? 2 : 4);
        ksrc = static_cast<const char*>(chunk.keys) + e * row_bytes;
        vsrc = static_cast<const char*>(chunk.values) + e * row_bytes;
        f16 = chunk.f16;
        position = rotate_memory ? chunk.positions[e] : 0;
        is_memory = 1;
      } else if (t < k1) {
        const int32_t slot = t - c.n_mem;
        const size_t off = CacheOffset(p, c.pages[slot / p.page_size], g, slot % p.page_size) * kv_elem;
        ksrc = static_cast<const char*>(p.k_cache) + off;
        vsrc = static_cast<const char*>(p.v_cache) + off;
      }
      key_src[j] = ksrc;
      value_src[j] = vsrc;
      key_f16[j] = f16;
      key_position[j] = position;
      key_is_memory[j] = is_memory;
    }
    __syncthreads();
    for (int32_t i = threadIdx.x; i < kTile * hd / 2; i += kThreads) {
      const int32_t j = i / (hd / 2), d2 = i % (hd / 2);
      float kv[2] = {0.0f, 0.0f}, vv[2] = {0.0f, 0.0f};
      if (key_src[j] != nullptr) {
        LoadPair(key_src[j], key_f16[j], d2, kv);
        LoadPair(value_src[j], key_f16[j], d2, vv);
      }
      ks[j * (hd + 1) + 2 * d2] = kv[0];
      ks[j * (hd + 1) + 2 * d2 + 1] = kv[1];
      vs[j * hd + 2 * d2] = vv[0];
      vs[j * hd + 2 * d2 + 1] = vv[1];
    }
    __syncthreads();
    if (rotate_memory && t0 < c.n_mem) {
      const int32_t half = p.rope.half;
      for (int32_t i = threadIdx.x; i < kTile * half; i += kThreads) {
        const int32_t j = i / half, pair = i % half;
        if (!key_is_memory[j]) continue;
        const float* cs = p.rope.cos_sin + (static_cast<size_t>(key_position[j]) * half + pair) * 2;
        float* kr = ks + j * (hd + 1);
        const int32_t a = p.rope.neox ? pair : 2 * pair, b = p.rope.neox ? pair + half : 2 * pair + 1;
        const float x0 = kr[a], x1 = kr[b];
        kr[a] = x0 * cs[0] - x1 * cs[1];
        kr[b] = x0 * cs[1] + x1 * cs[0];
      }
      __syncthreads();
    }
    // scores of every (query head, key) pair
    for (int32_t i = threadIdx.x; i < group * kTile; i += kThreads) {
      const int32_t qh = i / kTile, j = i % kTile;
      float s = -INFINITY;
      if (key_src[j] != nullptr) {
        const float* q = (position_free && key_is_memory[j] ? qp : qs) + qh * hd;
        const float* k = ks + j * (hd + 1);
        float dot = 0.0f;
        for (int32_t d = 0; d < hd; ++d) dot += q[d] * k[d];
        s = dot * p.scale;
      }
      scores[qh * kTile + j] = s;
    }
    __syncthreads();
    // online softmax and value accumulation, a warp per query head
#pragma unroll
    for (int a = 0; a < kHeadsPerWarp; ++a) {
      const int32_t qh = warp + a * kWarps;
      if (qh >= group) break;
      const float s = scores[qh * kTile + lane];
      const float m_new = fmaxf(m[a], WarpMax(s));  // finite: every tile has a key
      const float w = s == -INFINITY ? 0.0f : expf(s - m_new);
      const float correction = m[a] == -INFINITY ? 0.0f : expf(m[a] - m_new);
      l[a] = l[a] * correction + WarpSum(w);
      m[a] = m_new;
#pragma unroll
      for (int d = 0; d < kDimsPerLane; ++d) acc[a][d] *= correction;
      for (int j = 0; j < kTile; ++j) {
        const float wj = __shfl_sync(0xffffffffu, w, j);
        if (wj == 0.0f) continue;
#pragma unroll
        for (int d = 0; d < kDimsPerLane; ++d) {
          if (lane + 32 * d < hd) acc[a][d] += wj * vs[j * hd + lane + 32 * d];
        }
      }
    }
    __syncthreads();
  }

#pragma unroll
  for (int a = 0; a < kHeadsPerWarp; ++a) {
    const int32_t qh = warp + a * kWarps;
    if (qh >= group) break;
    const int32_t head = g * group + qh;
    if (p.n_splits == 1) {
      const float inv = 1.0f / l[a];
      float* o = p.out + static_cast<size_t>(row) * p.out_stride + static_cast<size_t>(head) * hd;
#pragma unroll
      for (int d = 0; d < kDimsPerLane; ++d) {
        if (lane + 32 * d < hd) o[lane + 32 * d] = acc[a][d] * inv;
      }
      if (p.lse != nullptr && lane == 0) p.lse[static_cast<size_t>(row) * p.n_heads + head] = m[a] + logf(l[a]);
    } else {
      float* part = p.partial +
                    ((static_cast<size_t>(row) * p.n_heads + head) * p.n_splits + split) * (hd + 2);
      if (lane == 0) {
        part[0] = m[a];
        part[1] = l[a];
      }
#pragma unroll
      for (int d = 0; d < kDimsPerLane; ++d) {
        if (lane + 32 * d < hd) part[2 + lane + 32 * d] = acc[a][d];
      }
    }
  }
}

// One block per (row, head): merges the splits' partial softmaxes.
__global__ void CombineKernel(AttentionParams p) {
  const int32_t row = blockIdx.x, head = blockIdx.y, hd = p.head_dim;
  const float* part = p.partial + (static_cast<size_t>(row) * p.n_heads + head) * p.n_splits * (hd + 2);
  float m = -INFINITY;
  for (int32_t s = 0; s < p.n_splits; ++s) {
    if (part[s * (hd + 2) + 1] > 0.0f) m = fmaxf(m, part[s * (hd + 2)]);
  }
  float l = 0.0f;
  for (int32_t s = 0; s < p.n_splits; ++s) {
    const float ls = part[s * (hd + 2) + 1];
    if (ls > 0.0f) l += ls * expf(part[s * (hd + 2)] - m);
  }
  float* o = p.out + static_cast<size_t>(row) * p.out_stride + static_cast<size_t>(head) * hd;
  for (int32_t d = threadIdx.x; d < hd; d += blockDim.x) {
    float sum = 0.0f;
    for (int32_t s = 0; s < p.n_splits; ++s) {
      const float* ps = part + s * (hd + 2);
      if (ps[1] > 0.0f) sum += ps[2 + d] * expf(ps[0] - m);
    }
    o[d] = sum / l;
  }
  if (p.lse != nullptr && threadIdx.x == 0) p.lse[static_cast<size_t>(row) * p.n_heads + head] = m + logf(l);
}

// One block per (new token j, KV head g): sum over rows i >= j and the group's heads of
// exp(score - lse), the softmax weight row i gives token j.
__global__ void MassKernel(AttentionParams p, float* mass) {
  const int32_t j = blockIdx.x, g = blockIdx.y, hd = p.head_dim, group = p.n_heads / p.n_kv_heads;
  const RowContext c = ContextOf(p, j, g);
  const int32_t slot = c.seq->n_cached + j;
  const size_t off = CacheOffset(p, c.pages[slot / p.page_size], g, slot % p.page_size);
  extern __shared__ float key[];
  for (int32_t d = threadIdx.x; d < hd; d += blockDim.x) {
    key[d] = p.kv_f16 ? __half2float(static_cast<const __half*>(p.k_cache)[off + d])
                      : static_cast<const float*>(p.k_cache)[off + d];
  }
  __syncthreads();
  float sum = 0.0f;
  const int32_t n_pairs = (p.n_rows - j) * group;
  for (int32_t i = threadIdx.x; i < n_pairs; i += blockDim.x) {
    const int32_t row = j + i / group, head = g * group + i % group;
    const float* q = p.q + static_cast<size_t>(row) * p.q_stride + static_cast<size_t>(head) * hd;
    float dot = 0.0f;
    for (int32_t d = 0; d < hd; ++d) dot += q[d] * key[d];
    sum += expf(dot * p.scale - p.lse[static_cast<size_t>(row) * p.n_heads + head]);
  }
  __shared__ float warp_sums[kWarps];
  sum = WarpSum(sum);
  if (threadIdx.x % 32 == 0) warp_sums[threadIdx.x / 32] = sum;
  __syncthreads();
  if (threadIdx.x == 0) {
    float total = 0.0f;
    for (int w = 0; w < kWarps; ++w) total += warp_sums[w];
    mass[static_cast<size_t>(g) * p.n_rows + j] = total;
  }
}

size_t AttentionSharedBytes(const AttentionParams& p) {
  const size_t group = p.n_heads / p.n_kv_heads, hd = p.head_dim;
  return (kTile * (hd + 1) + kTile * hd + 2 * group * hd + group * kTile) * sizeof(float);
}

}  // namespace

void LaunchStoreKv(const AttentionParams& p, cudaStream_t stream) {
  StoreKvKernel<<<p.n_rows, 256, 0, stream>>>(p);
}

void InitAttentionKernels(size_t max_shared_bytes) {
  cudaFuncSetAttribute(AttentionKernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                       static_cast<int>(max_shared_bytes));
}

void LaunchAttention(const AttentionParams& p, cudaStream_t stream) {
  const size_t smem = AttentionSharedBytes(p);
  const dim3 grid(p.n_rows, p.n_kv_heads, p.n_splits);
  AttentionKernel<<<grid, kThreads, smem, stream>>>(p);
  if (p.n_splits > 1) CombineKernel<<<dim3(p.n_rows, p.n_heads), 128, 0, stream>>>(p);
}

void LaunchAttentionMass(const AttentionParams& p, float* mass, cudaStream_t stream) {
  MassKernel<<<dim3(p.n_rows, p.n_kv_heads), kThreads, p.head_dim * sizeof(float), stream>>>(p, mass);
}

}  // namespace memoria::cuda
