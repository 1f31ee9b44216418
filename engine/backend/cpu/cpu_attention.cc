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
  // [memory entries] + [its causal context] in one softmax. Scores against the cache come one
  // page at a time (each key is read once for the whole block); values are summed a page at a
  // time per query row (below), and each output is divided by its softmax sum at the end.
  const Tensor& q_rot = q;  // the loops below use q for a row index
  const int64_t q_row_floats = static_cast<int64_t>(q_rot.row_bytes / sizeof(float));
  // scores[j * lds + 0:n) for the n_queries query vectors at queries (ldq floats apart) and n
  // contiguous key rows (cache pages and memory entries, f16 or f32)
  auto score_rows = [hd](const float* queries, int64_t ldq, int64_t n_queries, const void* rows,
                         int32_t n, bool rows_f16, float* scores, int64_t lds) {
    if (rows_f16) {
      DotRowsF16F32(queries, ldq, n_queries, static_cast<const uint16_t*>(rows), n, hd, scores,
                    lds);
    } else {
      DotRowsF32(queries, ldq, n_queries, static_cast<const float*>(rows), n, hd, scores, lds);
    }
  };
  // out[j * ldo + 0:hd) += the weights[j * ldw + 0:n) times n contiguous value rows, for j < n_out
  // (cache pages and memory entries, f16 or f32)
  auto add_values = [hd](const float* weights, int64_t ldw, int64_t n_out, const void* rows,
                         int32_t n, bool rows_f16, float* out, int64_t ldo) {
    if (rows_f16) {
      AccumulateRowsF16F32(weights, ldw, n_out, static_cast<const uint16_t*>(rows), n, hd, out,
                           ldo);
    } else {
      AccumulateRowsF32(weights, ldw, n_out, static_cast<const float*>(rows), n, hd, out, ldo);
    }
  };
  // KV group g's rows, in `cache` (keys or values), of the page holding the sequence's `slot`
  auto page_rows = [&](const uint8_t* cache, const BatchSequence& seq, int32_t g, int32_t slot) {
    const int32_t page = seq.pages[slot / kv_.page_size];
    return cache + (static_cast<size_t>(page) * n_kv + g) * kv_.page_size * head_bytes;
  };
  // Memory keys meet the queries before rotation when the memory is position-free.
  auto memory_queries = [&](const BatchSequence& seq) -> const Tensor& {
    return seq.memory->rotation() == MemoryRotation::kNone ? *q_pre_rope : q_rot;
  };
  auto attend_block = [&](int32_t s, int32_t h, int64_t r0, int64_t r1, float* mass_row) {
    const BatchSequence& seq = plan_->sequences[s];
    const int32_t g = h / group;
    const PreparedMemory& pm = memory[static_cast<size_t>(s) * n_kv + g];
    const int32_t n_mem = pm.count;
    const int64_t nq = r1 - r0;
    const int32_t first_last = seq.n_cached + static_cast<int32_t>(r0 - seq.first_row);
    const int32_t n_ctx = first_last + static_cast<int32_t>(nq);  // slots the last row sees
    const int64_t stride = n_mem + n_ctx;
    thread_local std::vector<float> scores, sums;
    scores.resize(static_cast<size_t>(nq) * stride);
    sums.resize(static_cast<size_t>(nq));

    if (n_mem > 0) {  // f32 keys
      const Tensor& qm = memory_queries(seq);
      score_rows(RowF32(qm, r0) + h * hd, static_cast<int64_t>(qm.row_bytes / sizeof(float)), nq,
                 pm.keys.data(), n_mem, false, scores.data(), stride);
    }
    for (int32_t t0 = 0; t0 < n_ctx; t0 += kv_.page_size) {
      score_rows(RowF32(q_rot, r0) + h * hd, q_row_floats, nq, page_rows(kc, seq, g, t0),
                 std::min(kv_.page_size, n_ctx - t0), f16, scores.data() + n_mem + t0, stride);
    }
    // softmax numerators per row over its visible part
    for (int64_t q = 0; q < nq; ++q) {
      float* row = scores.data() + q * stride;
      const int32_t n_visible = n_mem + first_last + static_cast<int32_t>(q) + 1;
      float max_scaled;
      sums[q] = SoftmaxNumeratorsF32(row, n_visible, scale, &max_scaled);
      float* o = const_cast<float*>(RowF32(*out, r0 + q)) + h * hd;
      std::fill(o, o + hd, 0.0f);
      const float* weights = row;
      for (const PreparedMemory::ValueRows& v : pm.values) {
        add_values(weights, 0, 1, v.rows, v.count, v.f16, o, 0);
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
        add_values(weights + t0, 0, 1, page_rows(vc, seq, g, t0),
                   std::min(kv_.page_size, n_visible - t0), f16, o, 0);
      }
      const float inv_sum = 1.0f / sums[q];
      for (int32_t c = 0; c < hd; ++c) o[c] *= inv_sum;
      if (mass_row != nullptr) {
        for (int32_t t = seq.n_cached; t < n_visible; ++t) {
          mass_row[t - seq.n_cached] += weights[t] * inv_sum;
        }
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

  // A decoding sequence's one query row with a long context goes by KV group and chunk of that
  // context (flash-decoding): the group's query heads score each key and sum each value
  // together, so each f16 key and value row is widened once for all of them instead of once per
  // head, and the chunks keep every thread busy however few KV heads the model has. A chunk
  // leaves, per head, its unnormalized output, its largest scaled score and its softmax sum (a
  // record); the merge below weighs the chunks of a head by exp(their max - the head's max).
  // Shorter contexts go by head as prompt rows do: below kMinChunkedContext slots, the merge's
  // second pass over the thread pool and the few (KV group) tasks cost more than the sharing
  // saves (the small model, 3 KV heads on 2 threads, decoded 2-8% slower from an empty cache).
  constexpr int32_t kMinChunkedContext = 256;
  constexpr int32_t kMinChunkSlots = 128;
  constexpr int32_t kChunksPerThread = 4;
  auto chunked = [&](const BatchSequence& seq) {
    return seq.n_new == 1 && seq.n_cached + 1 >= kMinChunkedContext;
  };
  const int64_t record_floats = hd + 2;  // output, max, sum
  struct DecodeChunk {
    int32_t seq, group;
    int32_t slot0, slot1;  // context slots [slot0, slot1); the first chunk also takes the memory
    int64_t first_record;  // its records: first_record + j for the group's query heads
  };
  struct DecodeRow {
    int32_t seq;
    int32_t n_chunks;
    int64_t first_record;  // chunk c's record of head h: first_record + c * n_heads + h
  };
  std::vector<DecodeChunk> chunks;
  std::vector<DecodeRow> decode_rows;
  int64_t n_records = 0;
  int32_t n_chunked = 0;
  for (const BatchSequence& seq : plan_->sequences) n_chunked += chunked(seq);
  // Chunks of whole pages, enough for kChunksPerThread tasks per thread over all such rows.
  const int32_t chunked_groups = std::max(1, n_chunked * n_kv);
  const int32_t wanted_chunks =
      (kChunksPerThread * pool_.size() + chunked_groups - 1) / chunked_groups;
  for (int32_t s = 0; s < n_seqs; ++s) {
    const BatchSequence& seq = plan_->sequences[s];
    if (!chunked(seq)) continue;
    const int32_t n_ctx = seq.n_cached + 1;
    const int32_t n_pages = (n_ctx + kv_.page_size - 1) / kv_.page_size;
    const int32_t split = std::min(wanted_chunks, n_ctx / kMinChunkSlots);
    const int32_t slots_per_chunk = (n_pages + split - 1) / split * kv_.page_size;
    const int32_t n_chunks = (n_ctx + slots_per_chunk - 1) / slots_per_chunk;
    decode_rows.push_back({s, n_chunks, n_records});
    for (int32_t c = 0; c < n_chunks; ++c) {
      for (int32_t g = 0; g < n_kv; ++g) {
        chunks.push_back({s, g, c * slots_per_chunk, std::min(n_ctx, (c + 1) * slots_per_chunk),
                          n_records + static_cast<int64_t>(c) * n_heads + g * group});
      }
    }
    n_records += static_cast<int64_t>(n_chunks) * n_heads;
  }
  std::vector<float> records(static_cast<size_t>(n_records * record_floats));

  auto attend_chunk = [&](const DecodeChunk& chunk) {
    const BatchSequence& seq = plan_->sequences[chunk.seq];
    const int32_t g = chunk.group;
    const PreparedMemory& pm = memory[static_cast<size_t>(chunk.seq) * n_kv + g];
    const int32_t n_mem = chunk.slot0 == 0 ? pm.count : 0;
    const int32_t n_slots = chunk.slot1 - chunk.slot0;
    const int64_t n = n_mem + n_slots;  // scores per head
    const int64_t row = seq.first_row;
    thread_local std::vector<float> scores;
    scores.resize(static_cast<size_t>(group) * n);
    if (n_mem > 0) {
      const Tensor& qm = memory_queries(seq);
      score_rows(RowF32(qm, row) + g * group * hd, hd, group, pm.keys.data(), n_mem, false,
                 scores.data(), n);
    }
    for (int32_t t = chunk.slot0; t < chunk.slot1; t += kv_.page_size) {
      score_rows(RowF32(q_rot, row) + g * group * hd, hd, group, page_rows(kc, seq, g, t),
                 std::min(kv_.page_size, chunk.slot1 - t), f16,
                 scores.data() + n_mem + (t - chunk.slot0), n);
    }
    float* rec = records.data() + chunk.first_record * record_floats;
    for (int32_t j = 0; j < group; ++j) {
      float* r = rec + j * record_floats;
      std::fill(r, r + hd, 0.0f);
      r[hd + 1] = SoftmaxNumeratorsF32(scores.data() + j * n, n, scale, &r[hd]);
    }
    int64_t col = 0;
    if (n_mem > 0) {
      for (const PreparedMemory::ValueRows& v : pm.values) {
        add_values(scores.data() + col, n, group, v.rows, v.count, v.f16, rec, record_floats);
        col += v.count;
      }
    }
    for (int32_t t = chunk.slot0; t < chunk.slot1; t += kv_.page_size) {
      add_values(scores.data() + col, n, group, page_rows(vc, seq, g, t),
                 std::min(kv_.page_size, chunk.slot1 - t), f16, rec, record_floats);
      col += kv_.page_size;
    }
  };

  // Tasks: (sequence, head, block of up to kRowsPerTask query rows) for the rows not chunked,
  // then the chunks.
  constexpr int32_t kRowsPerTask = 32;
  struct Task {
    int32_t seq, head;
    int64_t row0, row1;
  };
  std::vector<Task> tasks;
  for (int32_t s = 0; s < n_seqs; ++s) {
    const BatchSequence& seq = plan_->sequences[s];
    if (chunked(seq)) continue;
    for (int32_t h = 0; h < n_heads; ++h) {
      for (int32_t i = 0; i < seq.n_new; i += kRowsPerTask) {
        tasks.push_back({s, h, seq.first_row + i, seq.first_row + std::min(seq.n_new, i + kRowsPerTask)});
      }
    }
  }
  const int64_t n_tasks = static_cast<int64_t>(tasks.size());
  pool_.Run(n_tasks + static_cast<int64_t>(chunks.size()), [&](int64_t i) {
    if (i < n_tasks) {
      attend_block(tasks[i].seq, tasks[i].head, tasks[i].row0, tasks[i].row1, nullptr);
    } else {
      attend_chunk(chunks[i - n_tasks]);
    }
  });
  if (decode_rows.empty()) return;

  // Merge each decoding head's chunks into its output row.
  pool_.Run(static_cast<int64_t>(decode_rows.size()) * n_heads, [&](int64_t i) {
    const DecodeRow& d = decode_rows[i / n_heads];
    const int32_t h = static_cast<int32_t>(i % n_heads);
    auto record = [&](int32_t c) {
      const int64_t index = d.first_record + static_cast<int64_t>(c) * n_heads + h;
      return records.data() + index * record_floats;
    };
    float max_scaled = -INFINITY;
    for (int32_t c = 0; c < d.n_chunks; ++c) max_scaled = std::max(max_scaled, record(c)[hd]);
    float* o = const_cast<float*>(RowF32(*out, plan_->sequences[d.seq].first_row)) + h * hd;
    std::fill(o, o + hd, 0.0f);
    float sum = 0;
    for (int32_t c = 0; c < d.n_chunks; ++c) {
      const float* r = record(c);
      const float weight = std::exp(r[hd] - max_scaled);
      sum += weight * r[hd + 1];
      for (int32_t k = 0; k < hd; ++k) o[k] += weight * r[k];
    }
    const float inv_sum = 1.0f / sum;
    for (int32_t k = 0; k < hd; ++k) o[k] *= inv_sum;
  });
}

}  // namespace memoria
