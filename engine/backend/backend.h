#ifndef MEMORIA_ENGINE_BACKEND_BACKEND_H_
#define MEMORIA_ENGINE_BACKEND_BACKEND_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/gguf/ggml_type.h"
#include "engine/gguf/gguf_file.h"
#include "engine/model/memory.h"
#include "engine/model/model_config.h"

namespace memoria {

enum class DeviceKind { kCpu, kCuda };

// How a tensor's rows are stored. kRows: one after another, each as the GGUF format lays out a
// row. kInterleaved16: the CPU kernels' repacked weights (engine/quant/interleave.h); only the
// backend that chose it reads such a tensor.
enum class TensorLayout : uint8_t { kRows, kInterleaved16 };

// A 2-D tensor in a backend's memory: `rows` rows of `cols` elements of `type`, rows `row_bytes`
// apart. `data` is a device pointer: only the backend that made it may dereference it.
struct Tensor {
  void* data = nullptr;
  GgmlType type = GgmlType::kF32;
  int64_t cols = 0;
  int64_t rows = 0;
  size_t row_bytes = 0;
  TensorLayout layout = TensorLayout::kRows;

  // Rows [row0, row0 + n) of this tensor, sharing its memory.
  Tensor Rows(int64_t row0, int64_t n) const {
    Tensor t = *this;
    t.data = static_cast<char*>(data) + row0 * row_bytes;
    t.rows = n;
    return t;
  }
  // Columns [col0, col0 + n) of an f32 tensor, sharing its memory (rows stay row_bytes apart).
  Tensor Columns(int64_t col0, int64_t n) const {
    Tensor t = *this;
    t.data = static_cast<char*>(data) + col0 * sizeof(float);
    t.cols = n;
    return t;
  }
};

struct RopeConfig {
  RopeStyle style = RopeStyle::kNormal;
  int32_t n_dims = 0;      // rotated dimensions per head
  int32_t head_dim = 0;
  float freq_base = 10000.0f;
  float freq_scale = 1.0f;
  std::vector<float> freq_factors;  // n_dims / 2 divisors (Llama 3 rope_freqs), or empty
};

// Paged KV storage: `n_pages` pages of `page_size` token slots, shared by all sequences. A
// sequence's page table maps its token slot s to page pages[s / page_size], row s % page_size.
struct KvCacheConfig {
  int32_t n_layers = 0;
  int32_t n_kv_heads = 0;
  int32_t head_dim = 0;
  int32_t page_size = 16;
  int32_t n_pages = 0;
  GgmlType type = GgmlType::kF16;  // kF16 or kF32
};

// One sequence's part of a batch.
struct BatchSequence {
  std::span<const int32_t> pages;     // page table (covers n_cached + n_new slots)
  int32_t n_cached = 0;               // tokens already in the cache before this batch
  int32_t first_row = 0;              // first row of this sequence's tokens in the batch
  int32_t n_new = 0;                  // its new tokens, stored at slots n_cached .. n_cached+n_new-1
  const MemoryView* memory = nullptr; // extra entries to attend to in memory layers, or null
};

// The shape of one forward pass: which rows belong to which sequence and their rotary positions.
struct BatchPlan {
  std::vector<BatchSequence> sequences;
  std::vector<int32_t> positions;  // one per row
  int64_t n_rows() const { return static_cast<int64_t>(positions.size()); }
};

struct BackendOptions {
  DeviceKind device = DeviceKind::kCpu;
  int32_t n_threads = 0;  // CPU threads; 0 = all hardware threads
  // CPU: compute on weights in place in the file mapping (no copy, shares the page cache) instead
  // of copying them into 2 MiB huge pages at load. In place saves load time and memory; the copy
  // makes decode ~1.7x faster, because streaming 4 KiB-page mappings is bound by TLB misses, and
  // lets the backend repack weights for its kernels (interleaved Q8_0/Q4_K/Q6_K rows on AVX-512,
  // q/k/v and gate/up stacked).
  bool weights_in_place = false;
  // CUDA: Q8_0 / Q4_0 weights stay quantized on the device (dequantizing GEMV for small batches,
  // dequantize-then-cuBLAS above); false converts them to f16 at upload (twice the memory).
  bool keep_quantized = true;
  // CUDA: decode steps replayed as CUDA graphs.
  bool cuda_graphs = true;
  // CUDA: device bytes for cached memory pages (retrieved references' K/V).
  size_t device_memory_cache_bytes = size_t{512} << 20;
};

// "cpu", "cuda", or "auto" (cuda when this build has the backend and a GPU is visible).
absl::StatusOr<DeviceKind> ParseDeviceKind(std::string_view name);

// The compute device behind the model. The model's forward pass is a fixed sequence of these
// operations on Tensors the backend owns, so a device (CPU, CUDA) is one implementation of this
// interface and the model code never touches tensor memory itself. Operations act on the first
// `n` rows of their tensors and may run asynchronously; CopyToHost waits for them. Not
// thread-safe: one compute thread drives a backend.
class Backend {
 public:
  static absl::StatusOr<std::unique_ptr<Backend>> Create(const BackendOptions& options);
  virtual ~Backend() = default;

  virtual DeviceKind device() const = 0;
  virtual std::string Describe() const = 0;

  // Makes a weight usable on the device (the CPU backend reads it in place from the mapping).
  // 1-D tensors become one row.
  virtual absl::StatusOr<Tensor> UploadWeight(const GgufTensorInfo& info) = 0;
  // Weights of one type and row length that multiply the same input, as one matrix with their
  // rows stacked in order: one MatMul then computes all of them, outputs side by side (one
  // activation conversion and one parallel region instead of several). Unimplemented where a
  // backend does not gain from it; callers then upload the parts one by one.
  virtual absl::StatusOr<Tensor> UploadStacked(std::span<const GgufTensorInfo* const> parts) {
    return absl::UnimplementedError("this backend does not stack weights");
  }
  // Device memory owned by the backend for its lifetime.
  virtual absl::StatusOr<Tensor> Allocate(GgmlType type, int64_t rows, int64_t cols) = 0;
  virtual absl::Status InitKvCache(const KvCacheConfig& config, const RopeConfig& rope) = 0;
  // Copies f32 rows [row0, row0 + n) of `src` to host memory.
  virtual void CopyToHost(const Tensor& src, int64_t row0, int64_t n, float* dst) = 0;

  // Sets the plan that Rope and Attention of the following layers use (page tables, positions,
  // memories); the plan's pointers must stay valid until the next PrepareBatch.
  virtual void PrepareBatch(const BatchPlan& plan) = 0;

  // out[i] = table[ids[i]] as f32.
  virtual void Embed(const Tensor& table, std::span<const int32_t> ids, Tensor* out) = 0;
  // out[i] = x[i] / rms(x[i]) * weight.
  virtual void RmsNorm(const Tensor& x, const Tensor& weight, float eps, int64_t n, Tensor* out) = 0;
  // y[i] = W x[i] for i < n (W has y.cols rows of x.cols elements).
  virtual void MatMul(const Tensor& w, const Tensor& x, int64_t n, Tensor* y) = 0;
  virtual void AddBias(const Tensor& bias, int64_t n, Tensor* y) = 0;  // y[i] += bias
  virtual void Add(const Tensor& a, int64_t n, Tensor* y) = 0;         // y[i] += a[i]
  // out[i] = silu(gate[i]) * up[i]
  virtual void SwiGlu(const Tensor& gate, const Tensor& up, int64_t n, Tensor* out) = 0;
  virtual void Copy(const Tensor& src, int64_t n, Tensor* dst) = 0;
  // dst[i] = src[rows[i]]
  virtual void GatherRows(const Tensor& src, std::span<const int32_t> rows, Tensor* dst) = 0;
  // Rotates every row's heads (x.cols / head_dim of them) at the plan's positions.
  virtual void Rope(Tensor* x) = 0;
  // For the planned rows: stores k and v (k already rotated) at each sequence's new slots of
  // `layer`, then out = attention of q over [memory entries of the layer] + [causal context].
  // q_pre_rope (rows of q before rotation) is needed when a memory view uses
  // MemoryRotation::kNone, else may be null. When mass != null (host, n_kv_heads x n_rows, one
  // sequence only) it receives, for each KV head g and row j, the attention weight j gets, summed
  // over the group's query heads and the rows that see it (context only).
  virtual void Attention(int32_t layer, const Tensor& q, const Tensor* q_pre_rope, const Tensor& k,
                         const Tensor& v, Tensor* out, float* mass) = 0;
};

}  // namespace memoria

#endif  // MEMORIA_ENGINE_BACKEND_BACKEND_H_
