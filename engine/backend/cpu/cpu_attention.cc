// Attention of the CPU backend: paged KV storage plus per-head memory entries in one softmax.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "engine/backend/cpu/cpu_backend.h"
#include "engine/quant/gemm.h"

namespace memoria {
namespace {

inline const float* RowF32(const Tensor& t, int64_t r) {
  return reinterpret_cast<const float*>(static_cast<const char*>(t.data) + r * t.row_bytes);
}

// Memory entries of one (sequence, KV head) flattened for the kernels: keys as f32 rows (rotated
// when the view asks for it), values left in their pages, one run of rows per MemoryEntries.
struct PreparedMemory {
  struct ValueRows {
    const void* rows;  // count x head_dim
    int32_t count;
    bool f16;
  };
  int32_t count = 0;
  std::vector<float> keys;  // count x head_dim
  std::vector<ValueRows> values;
};

}  // namespace

void CpuBackend::StoreKv(int32_t layer, const Tensor& k, const Tensor& v) {
  const int32_t hd = kv_.head_dim;
  const size_t head_bytes = static_cast<size_t>(hd) * kv_elem_bytes_;
  uint8_t* kc = k_cache_[layer].get();
  uint8_t* vc = v_cache_[layer].get();
  pool_.Run(plan_->n_rows(), [&](int64_t r) {
    const BatchSequence& seq = plan_->sequences[row_sequence_[r]];
    const int32_t slot = seq.n_cached + static_cast<int32_t>(r - seq.first_row);
    const int32_t page = seq.pages[slot / kv_.page_size];
    const int32_t in_page = slot % kv_.page_size;
    for (int32_t g = 0; g < kv_.n_kv_heads; ++g) {
      size_t off = ((static_cast<size_t>(page) * kv_.n_kv_heads + g) * kv_.page_size + in_page) * head_bytes;
      const float* ks = RowF32(k, r) + g * hd;
      const float* vs = RowF32(v, r) + g * hd;
      if (kv_.type == GgmlType::kF16) {
        Fp32ToFp16Row(ks, reinterpret_cast<uint16_t*>(kc + off), hd);
        Fp32ToFp16Row(vs, reinterpret_cast<uint16_t*>(vc + off), hd);
      } else {
        std::memcpy(kc + off, ks, head_bytes);
        std::memcpy(vc + off, vs, head_bytes);
      }
    }
  });
}

void CpuBackend::Attention(int32_t layer, const Tensor& q, const Tensor* q_pre_rope, const Tensor& k,
                           const Tensor& v, Tensor* out, float* mass) {
  StoreKv(layer, k, v);

  const int32_t hd = kv_.head_dim;
  const int32_t n_kv = kv_.n_kv_heads;
  const int32_t n_heads = static_cast<int32_t>(q.cols / hd);
  const int32_t group = n_heads / n_kv;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  const size_t head_bytes = static_cast<size_t>(hd) * kv_elem_bytes_;
  const bool f16 = kv_.type == GgmlType::kF16;
  const uint8_t* kc = k_cache_[layer].get();
  const uint8_t* vc = v_cache_[layer].get();
  const int32_t n_seqs = static_cast<int32_t>(plan_->sequences.size());

  // Memory keys of this layer, per (sequence, KV head), rotated once for all queries (skipped
  // without memories: a decode step runs this for every layer).
  std::vector<PreparedMemory> memory(static_cast<size_t>(n_seqs) * n_kv);
  const bool any_memory = std::any_of(plan_->sequences.begin(), plan_->sequences.end(),
                                      [&](const BatchSequence& s) { return s.memory != nullptr; });
  if (any_memory) {
    pool_.Run(static_cast<int64_t>(n_seqs) * n_kv, [&](int64_t task) {
      const int32_t s = static_cast<int32_t>(task / n_kv), g = static_cast<int32_t>(task % n_kv);
      const MemoryView* view = plan_->sequences[s].memory;
      if (view == nullptr) return;
      PreparedMemory& pm = memory[task];
      for (const MemoryEntries& e : view->Entries(layer, g)) pm.count += e.count;
      pm.keys.resize(static_cast<size_t>(pm.count) * hd);
      float* key = pm.keys.data();
      for (const MemoryEntries& e : view->Entries(layer, g)) {
        const bool f16_entries = e.type == GgmlType::kF16;
        if (f16_entries) {
          Fp16ToFp32Row(static_cast<const uint16_t*>(e.keys), key,
                        static_cast<int64_t>(e.count) * hd);
        } else {
          std::memcpy(key, e.keys, static_cast<size_t>(e.count) * hd * sizeof(float));
        }
        if (view->rotation() == MemoryRotation::kStoredPositions) {
          for (int32_t m = 0; m < e.count; ++m) {
            RotateHead(key + static_cast<size_t>(m) * hd, e.positions[m]);
          }
        }
        pm.values.push_back({e.values, e.count, f16_entries});
        key += static_cast<size_t>(e.count) * hd;
      }
    });
  }

  // A block of query rows [r0, r1) of one sequence and one head: each row attends to
  // [memory entries] + [its causal context] in one softmax. Scores against the cache come from
  // the GEMM kernel one page at a time (each key is read once for the whole block, queries
  // converted to the cache's type as the kernels expect); values are summed a page at a time
  // per query row (below).
  const size_t q_row_bytes = GgmlRowBytes(kv_.type, hd);
  const Tensor& q_rot = q;  // the loops below use q for a row index
  // o += weights[0:n) times n contiguous value rows, f16 or f32 (cache pages and memory entries)
  auto add_values = [hd](const float* weights, const void* rows, int32_t n, bool rows_f16,
                         float* o) {
    if (rows_f16) {
      AccumulateRowsF16F32(weights, static_cast<const uint16_t*>(rows), n, hd, o);
    } else {
      AccumulateRowsF32(weights, static_cast<const float*>(rows), n, hd, o);
    }
  };
  auto attend_block = [&](int32_t s, int32_t h, int64_t r0, int64_t r1, float* mass_row) {
    const BatchSequence& seq = plan_->sequences[s];
    const int32_t g = h / group;
    const PreparedMemory& pm = memory[static_cast<size_t>(s) * n_kv + g];
    const int32_t n_mem = pm.count;
    const bool position_free = n_mem > 0 && seq.memory->rotation() == MemoryRotation::kNone;
    const int64_t nq = r1 - r0;
    const int32_t first_last = seq.n_cached + static_cast<int32_t>(r0 - seq.first_row);
    const int32_t n_ctx = first_last + static_cast<int32_t>(nq);  // slots the last row sees
    const int64_t stride = n_mem + n_ctx;
    thread_local std::vector<float> scores;
    thread_local std::vector<uint8_t> queries;
    scores.resize(static_cast<size_t>(nq) * stride);
    queries.resize(static_cast<size_t>(nq) * q_row_bytes);

    for (int64_t q = 0; q < nq; ++q) {
      ConvertActivationRow(kv_.type, RowF32(q_rot, r0 + q) + h * hd,
                           queries.data() + q * q_row_bytes, hd);
    }
    if (n_mem > 0) {  // f32 keys times the f32 queries (before rotation for position-free ones)
      const Tensor& qm = position_free ? *q_pre_rope : q_rot;
      GemmRows(GgmlType::kF32, pm.keys.data(), hd * sizeof(float), hd, 0, n_mem,
               RowF32(qm, r0) + h * hd, qm.row_bytes, nq, scores.data(), stride);
    }
    for (int32_t t0 = 0; t0 < n_ctx; t0 += kv_.page_size) {
      const int32_t page = seq.pages[t0 / kv_.page_size];
      const uint8_t* keys = kc + (static_cast<size_t>(page) * n_kv + g) * kv_.page_size * head_bytes;
      GemmRows(kv_.type, keys, head_bytes, hd, 0, std::min(kv_.page_size, n_ctx - t0), queries.data(),
               q_row_bytes, nq, scores.data() + n_mem + t0, stride);
    }
    // softmax per row over its visible part
    for (int64_t q = 0; q < nq; ++q) {
      float* row = scores.data() + q * stride;
      const int32_t n_visible = n_mem + first_last + static_cast<int32_t>(q) + 1;
      SoftmaxF32(row, n_visible, scale);
      float* o = const_cast<float*>(RowF32(*out, r0 + q)) + h * hd;
      std::fill(o, o + hd, 0.0f);
      const float* weights = row;
      for (const PreparedMemory::ValueRows& v : pm.values) {
        add_values(weights, v.rows, v.count, v.f16, o);
        weights += v.count;
      }
    }
    // values: a page of a head's value rows (contiguous) at a time, with each query's output
    // kept in registers across the page (f16 rows widened as they are loaded); the page stays in
    // cache for the queries after the first
    for (int64_t q = 0; q < nq; ++q) {
      const int32_t n_visible = first_last + static_cast<int32_t>(q) + 1;
      const float* weights = scores.data() + q * stride + n_mem;
      float* o = const_cast<float*>(RowF32(*out, r0 + q)) + h * hd;
      for (int32_t t0 = 0; t0 < n_visible; t0 += kv_.page_size) {
        const int32_t page = seq.pages[t0 / kv_.page_size];
        const uint8_t* v = vc + (static_cast<size_t>(page) * n_kv + g) * kv_.page_size * head_bytes;
        const int32_t n = std::min(kv_.page_size, n_visible - t0);
        add_values(weights + t0, v, n, f16, o);
      }
      if (mass_row != nullptr) {
        for (int32_t t = seq.n_cached; t < n_visible; ++t) mass_row[t - seq.n_cached] += weights[t];
      }
    }
  };

  if (mass != nullptr) {
    // Introspection: one sequence; a task per KV group accumulates its own mass row, race-free.
    const int64_t n_rows = plan_->n_rows();
    std::fill(mass, mass + static_cast<size_t>(n_kv) * n_rows, 0.0f);
    pool_.Run(n_kv, [&](int64_t g) {
      for (int32_t h = static_cast<int32_t>(g) * group; h < (g + 1) * group; ++h) {
        attend_block(0, h, 0, n_rows, mass + g * n_rows);
      }
    });
    return;
  }

  // Tasks: (sequence, head, block of up to kRowsPerTask query rows).
  constexpr int32_t kRowsPerTask = 32;
  struct Task {
    int32_t seq, head;
    int64_t row0, row1;
  };
  std::vector<Task> tasks;
  for (int32_t s = 0; s < n_seqs; ++s) {
    const BatchSequence& seq = plan_->sequences[s];
    for (int32_t h = 0; h < n_heads; ++h) {
      for (int32_t i = 0; i < seq.n_new; i += kRowsPerTask) {
        tasks.push_back({s, h, seq.first_row + i, seq.first_row + std::min(seq.n_new, i + kRowsPerTask)});
      }
    }
  }
  pool_.Run(static_cast<int64_t>(tasks.size()), [&](int64_t i) {
    const Task& t = tasks[i];
    attend_block(t.seq, t.head, t.row0, t.row1, nullptr);
  });
}

}  // namespace memoria
