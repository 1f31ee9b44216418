#ifndef MEMORIA_ENGINE_BACKEND_CUDA_CUDA_BACKEND_H_
#define MEMORIA_ENGINE_BACKEND_CUDA_CUDA_BACKEND_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "engine/backend/backend.h"
#include "engine/backend/cuda/cuda_kernels.h"
#include "engine/backend/cuda/cuda_memory_cache.h"

namespace memoria {

// How many CUDA devices this process sees (0 without a driver or GPU).
int CudaDeviceCount();

// The CUDA part of BackendOptions (see there).
struct CudaBackendSettings {
  bool keep_quantized = true;
  bool graphs = true;
  size_t memory_cache_bytes = size_t{512} << 20;
};

// The CUDA backend: weights and activations in device memory, cuBLAS for GEMMs, own kernels for
// the rest (cuda_kernels.cu, cuda_attention.cu), memory entries streamed through a device cache
// (cuda_memory_cache.h). All work goes to one compute stream; CopyToHost synchronizes it.
//
// Decode steps (every sequence has one new token, no memory to upload) are recorded instead of
// launched: each operation is kept as a closure and folded into a signature, and at CopyToHost
// the step runs: launched as recorded the first time a signature is seen, captured as a CUDA
// graph the second time, and replayed from then on. Everything that
// changes between such steps (token ids, positions, page tables, memory pointers) lives at fixed
// device addresses the kernels read, so a replay needs no update.
class CudaBackend final : public Backend {
 public:
  static absl::StatusOr<std::unique_ptr<CudaBackend>> Create(int device, const CudaBackendSettings& settings);
  ~CudaBackend() override;

  DeviceKind device() const override { return DeviceKind::kCuda; }
  std::string Describe() const override;

  absl::StatusOr<Tensor> UploadWeight(const GgufTensorInfo& info) override;
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
  void Attention(int32_t layer, const Tensor& q, const Tensor* q_pre_rope, const Tensor& k, const Tensor& v,
                 Tensor* out, float* mass) override;

  // Counters for tests and benchmarks.
  int64_t graph_launches() const { return graph_launches_; }
  int64_t graph_captures() const { return graph_captures_; }
  const cuda::CudaMemoryCache* memory_cache() const { return memory_cache_.get(); }

 private:
  using Op = std::function<void(cudaStream_t)>;

  CudaBackend(int device, const CudaBackendSettings& settings);
  absl::Status Init();

  // Device memory that lives as long as the backend (weights, activations, caches).
  void* DeviceAlloc(size_t bytes);
  // Grows a scratch buffer to `bytes`. Moving it invalidates captured graphs (and, mid-step,
  // first runs what was recorded, since recorded ops point into the old buffer).
  void EnsureScratch(char** buffer, size_t* capacity, size_t bytes);

  // Launches `op` on the compute stream, or records it for this step's graph. `signature` names
  // the op and every argument that is baked into its launch.
  void Launch(std::initializer_list<uint64_t> signature, Op op);
  // Runs what was recorded (as a graph) and returns to launching directly.
  void Flush();
  void InvalidateGraphs();
  void GrowCosSin(int32_t positions);

  const int device_;
  const CudaBackendSettings settings_;
  cudaDeviceProp properties_{};
  cudaStream_t stream_ = nullptr;
  cublasHandle_t cublas_ = nullptr;
  std::vector<void*> allocations_;

  // scratch: GEMM operands (activations in f16/bf16, quantized weights in f16)
  char* gemm_x_ = nullptr;
  size_t gemm_x_bytes_ = 0;
  char* gemm_w_ = nullptr;
  size_t gemm_w_bytes_ = 0;
  void* cublas_workspace_ = nullptr;
  // attention: split partials and log-sum-exp for the mass kernel
  char* attention_partial_ = nullptr;
  size_t attention_partial_bytes_ = 0;
  char* lse_ = nullptr;
  size_t lse_bytes_ = 0;
  char* mass_ = nullptr;
  size_t mass_bytes_ = 0;

  KvCacheConfig kv_;
  RopeConfig rope_;
  std::vector<float> inv_freq_;
  float* cos_sin_ = nullptr;  // device [position][n_dims/2][2]
  int32_t cos_sin_positions_ = 0;
  std::vector<void*> k_cache_, v_cache_;
  std::unique_ptr<cuda::CudaMemoryCache> memory_cache_;

  // the step: plan words staged in pinned memory, copied to plan_device_ by PrepareBatch
  const BatchPlan* plan_ = nullptr;
  std::vector<int32_t> plan_words_;
  std::vector<cuda::PlanMemoryHead> memory_heads_;
  std::vector<cuda::PlanMemoryChunk> memory_chunks_;
  int32_t* plan_host_ = nullptr;
  int32_t* plan_device_ = nullptr;
  size_t plan_capacity_ = 0;  // words
  int32_t max_keys_ = 0;      // most keys (memory + context) a row of the step sees
  bool memory_uploading_ = false;
  bool step_unsynced_ = false;
  // host inputs of ops (ids, gathered rows), pinned at fixed addresses for graph replays
  int32_t* ids_host_ = nullptr;
  char* ids_device_ = nullptr;
  size_t ids_bytes_ = 0;
  int32_t* rows_host_ = nullptr;
  char* rows_device_ = nullptr;
  size_t rows_bytes_ = 0;
  float* copy_host_ = nullptr;  // pinned bounce buffer of CopyToHost
  size_t copy_host_bytes_ = 0;

  // graphs
  bool graphs_enabled_ = true;  // off with the setting, or after a capture failed
  bool recording_ = false;
  uint64_t step_signature_ = 0;
  std::vector<Op> recorded_;
  absl::flat_hash_map<uint64_t, cudaGraphExec_t> graphs_;
  absl::flat_hash_set<uint64_t> seen_once_;  // signatures run once, captured on their second step
  int64_t graph_launches_ = 0;
  int64_t graph_captures_ = 0;
};

}  // namespace memoria

#endif  // MEMORIA_ENGINE_BACKEND_CUDA_CUDA_BACKEND_H_
