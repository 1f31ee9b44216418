#ifndef MEMORIA_ENGINE_BACKEND_CPU_CPU_BACKEND_H_
#define MEMORIA_ENGINE_BACKEND_CPU_CPU_BACKEND_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "engine/backend/backend.h"
#include "engine/util/thread_pool.h"

namespace memoria {

// The reference backend: host memory, a thread pool, and the ISA-dispatched kernels of
// engine/quant. Weights are used in place from the GGUF mapping.
class CpuBackend final : public Backend {
 public:
  CpuBackend(int n_threads, bool weights_in_place);
  ~CpuBackend() override;

  DeviceKind device() const override { return DeviceKind::kCpu; }
  std::string Describe() const override;

  absl::StatusOr<Tensor> UploadWeight(const GgufTensorInfo& info) override;
  absl::StatusOr<Tensor> UploadStacked(std::span<const GgufTensorInfo* const> parts) override;
  absl::StatusOr<Tensor> Allocate(GgmlType type, int64_t rows, int64_t cols) override;
  absl::Status InitKvCache(const KvCacheConfig& config, const RopeConfig& rope) override;
  void CopyToHost(const Tensor& src, int64_t row0, int64_t n, float* dst) override;
  void PrepareBatch(const BatchPlan& plan) override;

  void Embed(const Tensor& table, std::span<const int32_t> ids, Tensor* out) override;
  void RmsNorm(const Tensor& x, const Tensor& weight, float eps, int64_t n, Tensor* out) override;
  void MatMul(const Tensor& w, const Tensor& x, int64_t n, Tensor* y) override;
  void AddBias(const Tensor& bias, int64_t n, Tensor* y) override;
  void Add(const Tensor& a, int64_t n, Tensor* y) override;
  void SwiGlu(const Tensor& gate, const Tensor& up, int64_t n, Tensor* out) override;
  void Copy(const Tensor& src, int64_t n, Tensor* dst) override;
  void GatherRows(const Tensor& src, std::span<const int32_t> rows, Tensor* dst) override;
  void Rope(Tensor* x) override;
  void Attention(int32_t layer, const Tensor& q, const Tensor* q_pre_rope, const Tensor& k,
                 const Tensor& v, Tensor* out, float* mass) override;

 private:
  struct AlignedFree {
    void operator()(void* p) const;
  };
  using Buffer = std::unique_ptr<uint8_t, AlignedFree>;
  static Buffer AllocateBuffer(size_t bytes);
  // Room for `bytes` of weights in huge-page-backed chunks; null when out of memory.
  uint8_t* AllocateWeight(size_t bytes);
  // Copies weights of one type and row length into that room as one matrix (rows stacked in
  // order), interleaved where the kernels prefer it.
  absl::StatusOr<Tensor> CopyWeights(std::span<const GgufTensorInfo* const> parts);

  // Rotates one head vector in place with the cos/sin row of `position`.
  void RotateHead(float* x, int32_t position) const;
  const float* CosSinRow(int32_t position);  // n_dims/2 (cos, sin) pairs
  void StoreKv(int32_t layer, const Tensor& k, const Tensor& v);

  ThreadPool pool_;
  const bool weights_in_place_;
  std::vector<Buffer> allocations_;
  // Weights are bump-allocated in large huge-page chunks; the tail of the last one is free.
  uint8_t* weight_chunk_free_ = nullptr;
  size_t weight_chunk_left_ = 0;

  KvCacheConfig kv_;
  RopeConfig rope_;
  std::vector<float> inv_freq_;      // rope_.n_dims / 2 angular speeds (factors and scale applied)
  std::vector<float> cos_sin_;       // [position][n_dims / 2][2], positions [0, cos_sin_positions_)
  int32_t cos_sin_positions_ = 0;
  std::vector<Buffer> k_cache_;      // per layer: [page][kv_head][slot][head_dim]
  std::vector<Buffer> v_cache_;
  size_t kv_elem_bytes_ = 0;

  const BatchPlan* plan_ = nullptr;
  std::vector<int32_t> row_sequence_;  // sequence index of every planned row
  std::vector<uint8_t> activations_;   // MatMul input converted to the weights' dot type
};

}  // namespace memoria

#endif  // MEMORIA_ENGINE_BACKEND_CPU_CPU_BACKEND_H_
