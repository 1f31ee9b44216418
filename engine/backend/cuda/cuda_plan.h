#ifndef MEMORIA_ENGINE_BACKEND_CUDA_CUDA_PLAN_H_
#define MEMORIA_ENGINE_BACKEND_CUDA_CUDA_PLAN_H_

// The device copy of a BatchPlan, shared by the host code that writes it (cuda_backend.cc) and
// the kernels that read it. One int32 array: a fixed header, then sections at the offsets the
// header gives. Kernels receive only its base address, so a CUDA graph captured for one decode
// step replays for the next: the plan changes, its address does not.

#include <cstdint>

namespace memoria::cuda {

struct PlanHeader {
  int32_t n_rows;
  int32_t n_seqs;
  int32_t positions;   // offset of n_rows rotary positions
  int32_t row_seq;     // offset of n_rows sequence indices
  int32_t seqs;        // offset of n_seqs PlanSequence
  int32_t pages;       // offset of all page tables, concatenated
  int32_t memory;      // offset of PlanMemoryHead tables (n_layers x n_kv_heads per sequence with memory)
  int32_t chunks;      // offset (8-byte aligned) of PlanMemoryChunk records
};

struct PlanSequence {
  int32_t n_cached;
  int32_t first_row;
  int32_t n_new;
  int32_t pages;       // offset of its page table in the pages section
  int32_t memory;      // index of its first PlanMemoryHead, or -1 without memory
  int32_t rotate_memory;  // 1: kStoredPositions, 0: kNone
  int32_t pad[2];
};

// Memory entries of one (sequence, layer, KV head): chunks [chunk, chunk + n_chunks), n_entries in all.
struct PlanMemoryHead {
  int32_t chunk;
  int32_t n_chunks;
  int32_t n_entries;
};

// One MemoryEntries on the device: count keys and values of head_dim elements, rows contiguous.
struct PlanMemoryChunk {
  const void* keys;
  const void* values;
  const int32_t* positions;
  int32_t count;
  int32_t f16;
};
static_assert(sizeof(PlanMemoryChunk) == 32);

constexpr int32_t kPlanHeaderWords = sizeof(PlanHeader) / 4;
constexpr int32_t kPlanSequenceWords = sizeof(PlanSequence) / 4;
constexpr int32_t kPlanMemoryHeadWords = sizeof(PlanMemoryHead) / 4;

}  // namespace memoria::cuda

#endif  // MEMORIA_ENGINE_BACKEND_CUDA_CUDA_PLAN_H_
