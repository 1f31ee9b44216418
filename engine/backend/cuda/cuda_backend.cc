#include "engine/backend/cuda/cuda_backend.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "engine/backend/cuda/cuda_check.h"
#include "engine/backend/cuda/cuda_plan.h"
#include "engine/quant/quant.h"

#define MEMORIA_CUBLAS_CHECK(expr)                                                                     \
  do {                                                                                                 \
    if (cublasStatus_t memoria_cublas_status_ = (expr); memoria_cublas_status_ != CUBLAS_STATUS_SUCCESS) { \
      std::fprintf(stderr, "memoria: cuBLAS error %d at %s:%d: %s\n", static_cast<int>(memoria_cublas_status_), \
                   __FILE__, __LINE__, #expr);                                                         \
      std::abort();                                                                                    \
    }                                                                                                  \
  } while (false)

namespace memoria {
namespace {

using cuda::PlanHeader;
using cuda::PlanMemoryChunk;
using cuda::PlanMemoryHead;
using cuda::PlanSequence;

// Signature words of the operations (the first word of each op's signature).
enum OpCode : uint64_t { kOpEmbed = 1, kOpRmsNorm, kOpGemv, kOpGemm, kOpAddBias, kOpAdd, kOpSwiGlu, kOpCopy,
                         kOpGather, kOpRope, kOpAttention };

uint64_t Mix(uint64_t h, uint64_t v) {
  h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
  return h * 0xff51afd7ed558ccdull;
}
uint64_t Word(const void* p) { return reinterpret_cast<uintptr_t>(p); }

int64_t Stride(const Tensor& t) { return static_cast<int64_t>(t.row_bytes / sizeof(float)); }
float* F32(const Tensor& t) { return static_cast<float*>(t.data); }
cuda::WeightView View(const Tensor& t) { return {t.type, t.data, t.rows, t.cols}; }

}  // namespace

int CudaDeviceCount() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // no driver or no device: clear the sticky error, report none
    return 0;
  }
  return n;
}

CudaBackend::CudaBackend(int device, const CudaBackendSettings& settings)
    : device_(device), settings_(settings), graphs_enabled_(settings.graphs) {}

absl::StatusOr<std::unique_ptr<CudaBackend>> CudaBackend::Create(int device, const CudaBackendSettings& settings) {
  const int n = CudaDeviceCount();
  if (n == 0) return absl::UnavailableError("cuda backend: no CUDA device is visible");
  if (device < 0 || device >= n) {
    return absl::InvalidArgumentError(absl::StrCat("cuda backend: no device ", device, " (", n, " visible)"));
  }
  std::unique_ptr<CudaBackend> b(new CudaBackend(device, settings));
  absl::Status st = b->Init();
  if (!st.ok()) return st;
  return b;
}

absl::Status CudaBackend::Init() {
  if (cudaSetDevice(device_) != cudaSuccess || cudaGetDeviceProperties(&properties_, device_) != cudaSuccess ||
      cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking) != cudaSuccess) {
    cudaGetLastError();
    return absl::UnavailableError(absl::StrCat("cuda backend: cannot use device ", device_));
  }
  if (cublasCreate(&cublas_) != CUBLAS_STATUS_SUCCESS) {
    return absl::UnavailableError("cuda backend: cuBLAS did not initialize");
  }
  MEMORIA_CUBLAS_CHECK(cublasSetStream(cublas_, stream_));
  // A fixed workspace: cuBLAS then allocates nothing while a graph is captured.
  constexpr size_t kWorkspace = size_t{32} << 20;
  cublas_workspace_ = DeviceAlloc(kWorkspace);
  if (cublas_workspace_ == nullptr) return absl::ResourceExhaustedError("cuda backend: no memory for cuBLAS");
  MEMORIA_CUBLAS_CHECK(cublasSetWorkspace(cublas_, cublas_workspace_, kWorkspace));
  cuda::InitAttentionKernels(properties_.sharedMemPerBlockOptin);
  return absl::OkStatus();
}

CudaBackend::~CudaBackend() {
  if (stream_ != nullptr) cudaStreamSynchronize(stream_);
  InvalidateGraphs();
  memory_cache_.reset();
  if (cublas_ != nullptr) cublasDestroy(cublas_);
  for (void* p : allocations_) cudaFree(p);
  for (char* p : {gemm_x_, gemm_w_, attention_partial_, lse_, mass_, ids_device_, rows_device_}) cudaFree(p);
  cudaFree(plan_device_);
  cudaFree(cos_sin_);
  for (void* p : {static_cast<void*>(plan_host_), static_cast<void*>(ids_host_), static_cast<void*>(rows_host_),
                  static_cast<void*>(copy_host_)}) {
    cudaFreeHost(p);
  }
  if (stream_ != nullptr) cudaStreamDestroy(stream_);
}

std::string CudaBackend::Describe() const {
  return absl::StrCat("cuda (", properties_.name, ", sm_", properties_.major, properties_.minor, ", ",
                      properties_.multiProcessorCount, " SMs, ", properties_.totalGlobalMem >> 20, " MiB; ",
                      settings_.keep_quantized ? "q8_0/q4_0 kept quantized" : "weights as f16", ", graphs ",
                      graphs_enabled_ ? "on" : "off", ")");
}

void* CudaBackend::DeviceAlloc(size_t bytes) {
  void* p = nullptr;
  if (cudaMalloc(&p, std::max<size_t>(bytes, 1)) != cudaSuccess) {
    cudaGetLastError();
    return nullptr;
  }
  allocations_.push_back(p);
  return p;
}

void CudaBackend::EnsureScratch(char** buffer, size_t* capacity, size_t bytes) {
  if (*capacity >= bytes) return;
  Flush();
  MEMORIA_CUDA_CHECK(cudaStreamSynchronize(stream_));
  InvalidateGraphs();
  MEMORIA_CUDA_CHECK(cudaFree(*buffer));
  *capacity = std::max(bytes, *capacity * 3 / 2);
  MEMORIA_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(buffer), *capacity));
}

// ---- weights, buffers, caches ----

absl::StatusOr<Tensor> CudaBackend::UploadWeight(const GgufTensorInfo& info) {
  if (!IsComputeType(info.type)) {
    return absl::InvalidArgumentError(absl::StrCat("cuda backend: tensor '", info.name, "' has type ",
                                                   std::string(TraitsOf(info.type).name),
                                                   ", which the engine does not compute with"));
  }
  Tensor t;
  t.cols = info.dims[0];
  t.rows = info.Rows();
  const int64_t n = t.rows * t.cols;
  const bool plain = info.type == GgmlType::kF32 || info.type == GgmlType::kF16 || info.type == GgmlType::kBF16;
  const bool repack = (info.type == GgmlType::kQ8_0 || info.type == GgmlType::kQ4_0) && settings_.keep_quantized;
  t.type = plain || repack ? info.type : GgmlType::kF16;
  t.row_bytes = GgmlRowBytes(t.type, t.cols);
  const size_t bytes = plain || repack ? info.size_bytes : static_cast<size_t>(n) * 2;
  t.data = DeviceAlloc(bytes);
  if (t.data == nullptr) {
    return absl::ResourceExhaustedError(absl::StrCat("cuda backend: cannot allocate ", bytes,
                                                     " device bytes for tensor '", info.name, "'"));
  }
  if (plain) {
    MEMORIA_CUDA_CHECK(cudaMemcpy(t.data, info.data, info.size_bytes, cudaMemcpyHostToDevice));
    return t;
  }
  // Quantized: the file's blocks go to a temporary buffer and are converted on the device.
  void* raw = nullptr;
  if (cudaMalloc(&raw, info.size_bytes) != cudaSuccess) {
    cudaGetLastError();
    return absl::ResourceExhaustedError(absl::StrCat("cuda backend: no room to convert tensor '", info.name, "'"));
  }
  MEMORIA_CUDA_CHECK(cudaMemcpy(raw, info.data, info.size_bytes, cudaMemcpyHostToDevice));
  if (repack) {
    cuda::LaunchRepack(info.type, raw, t.rows, t.cols, t.data, stream_);
    // Batches above the GEMV's reach dequantize the weight to f16 scratch for cuBLAS.
    EnsureScratch(&gemm_w_, &gemm_w_bytes_, static_cast<size_t>(n) * 2);
  } else if (info.type == GgmlType::kQ8_0 || info.type == GgmlType::kQ4_0) {
    void* repacked = nullptr;
    MEMORIA_CUDA_CHECK(cudaMalloc(&repacked, info.size_bytes));
    cuda::LaunchRepack(info.type, raw, t.rows, t.cols, repacked, stream_);
    cuda::LaunchToF16(info.type, repacked, t.rows, t.cols, static_cast<uint16_t*>(t.data), stream_);
    MEMORIA_CUDA_CHECK(cudaStreamSynchronize(stream_));
    MEMORIA_CUDA_CHECK(cudaFree(repacked));
  } else {
    cuda::LaunchToF16(info.type, raw, t.rows, t.cols, static_cast<uint16_t*>(t.data), stream_);
  }
  MEMORIA_CUDA_CHECK(cudaGetLastError());
  MEMORIA_CUDA_CHECK(cudaStreamSynchronize(stream_));
  MEMORIA_CUDA_CHECK(cudaFree(raw));
  return t;
}

absl::StatusOr<Tensor> CudaBackend::Allocate(GgmlType type, int64_t rows, int64_t cols) {
  Tensor t;
  t.type = type;
  t.rows = rows;
  t.cols = cols;
  t.row_bytes = GgmlRowBytes(type, cols);
  const size_t bytes = t.row_bytes * static_cast<size_t>(rows);
  t.data = DeviceAlloc(bytes);
  if (t.data == nullptr) {
    return absl::ResourceExhaustedError(absl::StrCat("cuda backend: cannot allocate ", bytes, " device bytes"));
  }
  MEMORIA_CUDA_CHECK(cudaMemset(t.data, 0, bytes));
  // Any f32 activation may become a GEMM operand: keep room for it in f16.
  if (type == GgmlType::kF32) EnsureScratch(&gemm_x_, &gemm_x_bytes_, static_cast<size_t>(rows * cols) * 2);
  return t;
}

absl::Status CudaBackend::InitKvCache(const KvCacheConfig& config, const RopeConfig& rope) {
  if (config.type != GgmlType::kF32 && config.type != GgmlType::kF16) {
    return absl::InvalidArgumentError("cuda backend: the KV cache type must be f32 or f16");
  }
  if (config.head_dim > cuda::kMaxAttentionHeadDim || config.head_dim % 2 != 0) {
    return absl::InvalidArgumentError(absl::StrCat("cuda backend: head_dim ", config.head_dim,
                                                   " is not supported (even, at most ",
                                                   cuda::kMaxAttentionHeadDim, ")"));
  }
  kv_ = config;
  rope_ = rope;
  const size_t layer_bytes = static_cast<size_t>(config.n_pages) * config.n_kv_heads * config.page_size *
                             config.head_dim * (config.type == GgmlType::kF16 ? 2 : 4);
  k_cache_.clear();
  v_cache_.clear();
  for (int32_t l = 0; l < config.n_layers; ++l) {
    k_cache_.push_back(DeviceAlloc(layer_bytes));
    v_cache_.push_back(DeviceAlloc(layer_bytes));
    if (k_cache_.back() == nullptr || v_cache_.back() == nullptr) {
      return absl::ResourceExhaustedError(absl::StrCat("cuda backend: cannot allocate a KV cache of ",
                                                       2 * layer_bytes * config.n_layers, " device bytes"));
    }
  }
  // theta_i(p) = p * freq_scale * base^(-2i / n_dims) / factor_i, as the CPU backend
  const int32_t half = rope.n_dims / 2;
  inv_freq_.assign(half, 0.0f);
  for (int32_t i = 0; i < half; ++i) {
    double f = std::pow(static_cast<double>(rope.freq_base), -2.0 * i / rope.n_dims) * rope.freq_scale;
    if (!rope.freq_factors.empty()) f /= rope.freq_factors[i];
    inv_freq_[i] = static_cast<float>(f);
  }
  cos_sin_positions_ = 0;
  GrowCosSin(4096);
  memory_cache_ = std::make_unique<cuda::CudaMemoryCache>(config.n_layers, config.n_kv_heads, config.head_dim,
                                                          settings_.memory_cache_bytes);
  return absl::OkStatus();
}

void CudaBackend::GrowCosSin(int32_t positions) {
  if (positions <= cos_sin_positions_) return;
  const int32_t n = std::max(positions, 2 * cos_sin_positions_);
  const int32_t half = rope_.n_dims / 2;
  std::vector<float> table(static_cast<size_t>(n) * half * 2);
  for (int32_t p = 0; p < n; ++p) {
    for (int32_t i = 0; i < half; ++i) {
      const double theta = static_cast<double>(p) * inv_freq_[i];
      table[(static_cast<size_t>(p) * half + i) * 2] = static_cast<float>(std::cos(theta));
      table[(static_cast<size_t>(p) * half + i) * 2 + 1] = static_cast<float>(std::sin(theta));
    }
  }
  MEMORIA_CUDA_CHECK(cudaStreamSynchronize(stream_));
  InvalidateGraphs();
  MEMORIA_CUDA_CHECK(cudaFree(cos_sin_));
  MEMORIA_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&cos_sin_), std::max<size_t>(table.size(), 1) * 4));
  MEMORIA_CUDA_CHECK(cudaMemcpy(cos_sin_, table.data(), table.size() * 4, cudaMemcpyHostToDevice));
  cos_sin_positions_ = n;
}

// ---- the step ----

void CudaBackend::PrepareBatch(const BatchPlan& plan) {
  Flush();  // a step that ended without CopyToHost (an introspection without logits)
  if (step_unsynced_) MEMORIA_CUDA_CHECK(cudaStreamSynchronize(stream_));
  memory_cache_->Synchronize();
  step_unsynced_ = true;
  plan_ = &plan;

  const int32_t n_rows = static_cast<int32_t>(plan.n_rows());
  const int32_t n_seqs = static_cast<int32_t>(plan.sequences.size());
  std::vector<int32_t>& w = plan_words_;
  w.assign(cuda::kPlanHeaderWords, 0);
  PlanHeader header{};
  header.n_rows = n_rows;
  header.n_seqs = n_seqs;
  header.positions = static_cast<int32_t>(w.size());
  w.insert(w.end(), plan.positions.begin(), plan.positions.end());
  header.row_seq = static_cast<int32_t>(w.size());
  w.resize(w.size() + n_rows, 0);
  for (int32_t s = 0; s < n_seqs; ++s) {
    const BatchSequence& seq = plan.sequences[s];
    for (int32_t i = 0; i < seq.n_new; ++i) w[header.row_seq + seq.first_row + i] = s;
  }
  header.seqs = static_cast<int32_t>(w.size());
  w.resize(w.size() + static_cast<size_t>(n_seqs) * cuda::kPlanSequenceWords, 0);
  header.pages = static_cast<int32_t>(w.size());
  memory_heads_.clear();
  memory_chunks_.clear();
  memory_cache_->BeginStep();
  int32_t max_position = 0;
  max_keys_ = 0;
  // Sequences sharing a view (one MemoryView for many sequences) share its heads and chunks.
  struct Resolved {
    const MemoryView* view;
    int32_t first_head;
    int32_t most_entries;
  };
  std::vector<Resolved> resolved;
  for (int32_t s = 0; s < n_seqs; ++s) {
    const BatchSequence& seq = plan.sequences[s];
    PlanSequence ps{};
    ps.n_cached = seq.n_cached;
    ps.first_row = seq.first_row;
    ps.n_new = seq.n_new;
    ps.pages = static_cast<int32_t>(w.size()) - header.pages;
    ps.memory = -1;
    w.insert(w.end(), seq.pages.begin(), seq.pages.end());
    int32_t most_memory = 0;
    if (seq.memory != nullptr && seq.memory->TotalEntries() > 0) {
      ps.rotate_memory = seq.memory->rotation() == MemoryRotation::kStoredPositions;
      auto it = std::find_if(resolved.begin(), resolved.end(),
                             [&](const Resolved& r) { return r.view == seq.memory; });
      if (it == resolved.end()) {
        const int32_t first = static_cast<int32_t>(memory_heads_.size());
        memory_cache_->AddView(*seq.memory, &memory_heads_, &memory_chunks_);
        int32_t most = 0;
        for (size_t h = first; h < memory_heads_.size(); ++h) most = std::max(most, memory_heads_[h].n_entries);
        resolved.push_back({seq.memory, first, most});
        it = resolved.end() - 1;
      }
      ps.memory = it->first_head;
      most_memory = it->most_entries;
    }
    std::memcpy(&w[header.seqs + s * cuda::kPlanSequenceWords], &ps, sizeof ps);
    max_keys_ = std::max(max_keys_, most_memory + seq.n_cached + seq.n_new);
  }
  memory_uploading_ = memory_cache_->Upload(&memory_chunks_);
  max_position = memory_cache_->max_position();
  header.memory = static_cast<int32_t>(w.size());
  for (const PlanMemoryHead& h : memory_heads_) {
    w.insert(w.end(), {h.chunk, h.n_chunks, h.n_entries});
  }
  if (w.size() % 2 != 0) w.push_back(0);  // chunks hold pointers: 8-byte aligned
  header.chunks = static_cast<int32_t>(w.size());
  const size_t chunk_words = memory_chunks_.size() * sizeof(PlanMemoryChunk) / 4;
  w.resize(w.size() + chunk_words);
  if (chunk_words > 0) std::memcpy(&w[header.chunks], memory_chunks_.data(), chunk_words * 4);
  std::memcpy(w.data(), &header, sizeof header);

  for (int32_t p : plan.positions) max_position = std::max(max_position, p);
  GrowCosSin(max_position + 1);

  if (w.size() > plan_capacity_) {
    MEMORIA_CUDA_CHECK(cudaStreamSynchronize(stream_));
    InvalidateGraphs();
    MEMORIA_CUDA_CHECK(cudaFreeHost(plan_host_));
    MEMORIA_CUDA_CHECK(cudaFree(plan_device_));
    plan_capacity_ = std::max(w.size(), 2 * plan_capacity_);
    MEMORIA_CUDA_CHECK(cudaMallocHost(reinterpret_cast<void**>(&plan_host_), plan_capacity_ * 4));
    MEMORIA_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&plan_device_), plan_capacity_ * 4));
  }
  std::memcpy(plan_host_, w.data(), w.size() * 4);
  MEMORIA_CUDA_CHECK(cudaMemcpyAsync(plan_device_, plan_host_, w.size() * 4, cudaMemcpyHostToDevice, stream_));

  // Decode steps with nothing to upload run as graphs.
  bool decode = n_rows > 0;
  for (const BatchSequence& seq : plan.sequences) decode &= seq.n_new == 1;
  recording_ = graphs_enabled_ && decode && !memory_uploading_;
  recorded_.clear();
  step_signature_ = Mix(Mix(0, n_rows), n_seqs);
}

void CudaBackend::Launch(std::initializer_list<uint64_t> signature, Op op) {
  if (!recording_) {
    op(stream_);
    return;
  }
  for (uint64_t v : signature) step_signature_ = Mix(step_signature_, v);
  step_signature_ = Mix(step_signature_, 0xabcdef);  // op boundary
  recorded_.push_back(std::move(op));
}

void CudaBackend::Flush() {
  if (!recording_) return;
  recording_ = false;
  auto it = graphs_.find(step_signature_);
  if (it == graphs_.end() && seen_once_.insert(step_signature_).second) {
    // A step shape seen for the first time runs as launched: one-off shapes cost no capture, and
    // libraries (cuBLAS) do their first-use setup outside of a capture.
    for (const Op& op : recorded_) op(stream_);
    recorded_.clear();
    return;
  }
  if (it == graphs_.end()) {
    constexpr size_t kMaxGraphs = 64;  // batch sizes x split buckets in use; more means churn
    if (graphs_.size() >= kMaxGraphs) InvalidateGraphs();
    cudaGraph_t graph = nullptr;
    cudaGraphExec_t exec = nullptr;
    bool ok = cudaStreamBeginCapture(stream_, cudaStreamCaptureModeRelaxed) == cudaSuccess;
    if (ok) {
      for (const Op& op : recorded_) op(stream_);
      ok = cudaStreamEndCapture(stream_, &graph) == cudaSuccess && graph != nullptr;
    }
    ok = ok && cudaGraphInstantiate(&exec, graph, 0) == cudaSuccess;
    if (graph != nullptr) cudaGraphDestroy(graph);
    if (!ok) {
      // Leave graphs off for good and run the step as recorded.
      cudaGetLastError();
      std::fprintf(stderr, "memoria: cuda backend: graph capture failed; running without CUDA graphs\n");
      graphs_enabled_ = false;
      for (const Op& op : recorded_) op(stream_);
      recorded_.clear();
      return;
    }
    it = graphs_.emplace(step_signature_, exec).first;
    ++graph_captures_;
  }
  MEMORIA_CUDA_CHECK(cudaGraphLaunch(it->second, stream_));
  ++graph_launches_;
  recorded_.clear();
}

void CudaBackend::InvalidateGraphs() {
  for (auto& [signature, exec] : graphs_) cudaGraphExecDestroy(exec);
  graphs_.clear();
  seen_once_.clear();
}

void CudaBackend::CopyToHost(const Tensor& src, int64_t row0, int64_t n, float* dst) {
  Flush();
  const size_t row = static_cast<size_t>(src.cols) * sizeof(float);
  if (copy_host_bytes_ < row * n) {
    MEMORIA_CUDA_CHECK(cudaFreeHost(copy_host_));
    copy_host_bytes_ = row * n;
    MEMORIA_CUDA_CHECK(cudaMallocHost(reinterpret_cast<void**>(&copy_host_), copy_host_bytes_));
  }
  MEMORIA_CUDA_CHECK(cudaMemcpy2DAsync(copy_host_, row, static_cast<const char*>(src.data) + row0 * src.row_bytes,
                                       src.row_bytes, row, n, cudaMemcpyDeviceToHost, stream_));
  MEMORIA_CUDA_CHECK(cudaStreamSynchronize(stream_));
  step_unsynced_ = false;
  std::memcpy(dst, copy_host_, row * n);
}

// ---- operations ----

void CudaBackend::Embed(const Tensor& table, std::span<const int32_t> ids, Tensor* out) {
  const int64_t n = static_cast<int64_t>(ids.size());
  if (ids_bytes_ < static_cast<size_t>(n) * 4) {
    Flush();
    MEMORIA_CUDA_CHECK(cudaStreamSynchronize(stream_));
    EnsureScratch(&ids_device_, &ids_bytes_, std::max<size_t>(n * 4, 4096));
    MEMORIA_CUDA_CHECK(cudaFreeHost(ids_host_));
    MEMORIA_CUDA_CHECK(cudaMallocHost(reinterpret_cast<void**>(&ids_host_), ids_bytes_));
  }
  std::memcpy(ids_host_, ids.data(), n * 4);
  const cuda::WeightView view = View(table);
  int32_t* ids_host = ids_host_;
  int32_t* ids_device = reinterpret_cast<int32_t*>(ids_device_);
  float* o = F32(*out);
  const int64_t os = Stride(*out);
  Launch({kOpEmbed, Word(table.data), static_cast<uint64_t>(n), Word(o)}, [=](cudaStream_t s) {
    MEMORIA_CUDA_CHECK(cudaMemcpyAsync(ids_device, ids_host, n * 4, cudaMemcpyHostToDevice, s));
    cuda::LaunchEmbed(view, ids_device, n, o, os, s);
  });
}

void CudaBackend::RmsNorm(const Tensor& x, const Tensor& weight, float eps, int64_t n, Tensor* out) {
  const float* xp = F32(x);
  const float* wp = F32(weight);
  float* o = F32(*out);
  const int64_t xs = Stride(x), os = Stride(*out), cols = x.cols;
  uint64_t eps_bits = 0;
  std::memcpy(&eps_bits, &eps, sizeof eps);
  Launch({kOpRmsNorm, Word(xp), Word(wp), Word(o), static_cast<uint64_t>(n), eps_bits},
         [=](cudaStream_t s) { cuda::LaunchRmsNorm(xp, xs, wp, eps, n, cols, o, os, s); });
}

void CudaBackend::MatMul(const Tensor& w, const Tensor& x, int64_t n, Tensor* y) {
  const cuda::WeightView wv = View(w);
  const float* xp = F32(x);
  float* yp = F32(*y);
  const int64_t xs = Stride(x), ys = Stride(*y), m = w.rows, k = w.cols;
  if (cuda::GemvSupports(wv, xp, xs, n)) {
    Launch({kOpGemv, Word(w.data), Word(xp), Word(yp), static_cast<uint64_t>(n)},
           [=](cudaStream_t s) { cuda::LaunchGemv(wv, xp, xs, n, yp, ys, s); });
    return;
  }
  // cuBLAS, column-major: y (m x n, ld ys) = W^T-as-stored (k x m, ld k)^T * x (k x n).
  cublasHandle_t handle = cublas_;
  const float one = 1.0f, zero = 0.0f;
  if (w.type == GgmlType::kF32) {
    Launch({kOpGemm, Word(w.data), Word(xp), Word(yp), static_cast<uint64_t>(n)}, [=](cudaStream_t) {
      MEMORIA_CUBLAS_CHECK(cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, m, n, k, &one, wv.data, CUDA_R_32F, k, xp,
                                        CUDA_R_32F, xs, &zero, yp, CUDA_R_32F, ys, CUBLAS_COMPUTE_32F,
                                        CUBLAS_GEMM_DEFAULT));
    });
    return;
  }
  const GgmlType op_type = w.type == GgmlType::kBF16 ? GgmlType::kBF16 : GgmlType::kF16;
  const cudaDataType cuda_type = op_type == GgmlType::kBF16 ? CUDA_R_16BF : CUDA_R_16F;
  EnsureScratch(&gemm_x_, &gemm_x_bytes_, static_cast<size_t>(n * k) * 2);
  void* xh = gemm_x_;
  const void* a = w.data;
  const bool dequantize = w.type != GgmlType::kF16 && w.type != GgmlType::kBF16;
  if (dequantize) {
    EnsureScratch(&gemm_w_, &gemm_w_bytes_, static_cast<size_t>(m * k) * 2);
    a = gemm_w_;
  }
  void* wh = gemm_w_;
  Launch({kOpGemm, Word(w.data), Word(xp), Word(yp), static_cast<uint64_t>(n)}, [=](cudaStream_t s) {
    if (dequantize) cuda::LaunchToF16(wv.type, wv.data, m, k, static_cast<uint16_t*>(wh), s);
    cuda::LaunchConvertRows(xp, xs, n, k, op_type, xh, s);
    MEMORIA_CUBLAS_CHECK(cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, m, n, k, &one, a, cuda_type, k, xh, cuda_type,
                                      k, &zero, yp, CUDA_R_32F, ys, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  });
}

void CudaBackend::AddBias(const Tensor& bias, int64_t n, Tensor* y) {
  const float* b = F32(bias);
  float* yp = F32(*y);
  const int64_t ys = Stride(*y), cols = y->cols;
  Launch({kOpAddBias, Word(b), Word(yp), static_cast<uint64_t>(n)},
         [=](cudaStream_t s) { cuda::LaunchAddRow(b, n, cols, yp, ys, s); });
}

void CudaBackend::Add(const Tensor& a, int64_t n, Tensor* y) {
  const float* ap = F32(a);
  float* yp = F32(*y);
  const int64_t as = Stride(a), ys = Stride(*y), cols = y->cols;
  Launch({kOpAdd, Word(ap), Word(yp), static_cast<uint64_t>(n)},
         [=](cudaStream_t s) { cuda::LaunchAdd(ap, as, n, cols, yp, ys, s); });
}

void CudaBackend::SwiGlu(const Tensor& gate, const Tensor& up, int64_t n, Tensor* out) {
  const float* g = F32(gate);
  const float* u = F32(up);
  float* o = F32(*out);
  const int64_t gs = Stride(gate), us = Stride(up), os = Stride(*out), cols = out->cols;
  Launch({kOpSwiGlu, Word(g), Word(u), Word(o), static_cast<uint64_t>(n)},
         [=](cudaStream_t s) { cuda::LaunchSwiGlu(g, gs, u, us, n, cols, o, os, s); });
}

void CudaBackend::Copy(const Tensor& src, int64_t n, Tensor* dst) {
  const float* sp = F32(src);
  float* d = F32(*dst);
  const int64_t ss = Stride(src), ds = Stride(*dst), cols = src.cols;
  Launch({kOpCopy, Word(sp), Word(d), static_cast<uint64_t>(n)},
         [=](cudaStream_t s) { cuda::LaunchCopyRows(sp, ss, nullptr, n, cols, d, ds, s); });
}

void CudaBackend::GatherRows(const Tensor& src, std::span<const int32_t> rows, Tensor* dst) {
  const int64_t n = static_cast<int64_t>(rows.size());
  if (rows_bytes_ < static_cast<size_t>(n) * 4) {
    Flush();
    MEMORIA_CUDA_CHECK(cudaStreamSynchronize(stream_));
    EnsureScratch(&rows_device_, &rows_bytes_, std::max<size_t>(n * 4, 4096));
    MEMORIA_CUDA_CHECK(cudaFreeHost(rows_host_));
    MEMORIA_CUDA_CHECK(cudaMallocHost(reinterpret_cast<void**>(&rows_host_), rows_bytes_));
  }
  std::memcpy(rows_host_, rows.data(), n * 4);
  int32_t* rows_host = rows_host_;
  int32_t* rows_device = reinterpret_cast<int32_t*>(rows_device_);
  const float* sp = F32(src);
  float* d = F32(*dst);
  const int64_t ss = Stride(src), ds = Stride(*dst), cols = src.cols;
  Launch({kOpGather, Word(sp), Word(d), static_cast<uint64_t>(n)}, [=](cudaStream_t s) {
    MEMORIA_CUDA_CHECK(cudaMemcpyAsync(rows_device, rows_host, n * 4, cudaMemcpyHostToDevice, s));
    cuda::LaunchCopyRows(sp, ss, rows_device, n, cols, d, ds, s);
  });
}

void CudaBackend::Rope(Tensor* x) {
  float* xp = F32(*x);
  const int64_t xs = Stride(*x), n = plan_->n_rows();
  const int32_t n_heads = static_cast<int32_t>(x->cols / rope_.head_dim);
  const int32_t* plan = plan_device_;
  const cuda::RopeParams rope{rope_.head_dim, rope_.n_dims / 2, rope_.style == RopeStyle::kNeox, cos_sin_};
  Launch({kOpRope, Word(xp), static_cast<uint64_t>(n), Word(cos_sin_)},
         [=](cudaStream_t s) { cuda::LaunchRope(xp, xs, n, n_heads, plan, rope, s); });
}

void CudaBackend::Attention(int32_t layer, const Tensor& q, const Tensor* q_pre_rope, const Tensor& k,
                            const Tensor& v, Tensor* out, float* mass) {
  if (mass != nullptr) Flush();
  if (memory_uploading_) memory_cache_->WaitForLayer(layer, stream_);  // never while recording
  cuda::AttentionParams p;
  p.q = F32(q);
  p.q_pre = q_pre_rope != nullptr ? F32(*q_pre_rope) : nullptr;
  p.q_stride = Stride(q);
  p.k = F32(k);
  p.v = F32(v);
  p.kv_stride = Stride(k);
  p.out = F32(*out);
  p.out_stride = Stride(*out);
  p.k_cache = k_cache_[layer];
  p.v_cache = v_cache_[layer];
  p.kv_f16 = kv_.type == GgmlType::kF16;
  p.page_size = kv_.page_size;
  p.n_kv_heads = kv_.n_kv_heads;
  p.n_heads = static_cast<int32_t>(q.cols / kv_.head_dim);
  if (p.n_heads % p.n_kv_heads != 0 || p.n_heads / p.n_kv_heads > cuda::kMaxAttentionGroup) {
    std::fprintf(stderr, "memoria: cuda backend: %d query heads per KV head are not supported (at most %d)\n",
                 p.n_heads / p.n_kv_heads, cuda::kMaxAttentionGroup);
    std::abort();
  }
  p.head_dim = kv_.head_dim;
  p.layer = layer;
  p.n_layers = kv_.n_layers;
  p.n_rows = static_cast<int32_t>(plan_->n_rows());
  p.plan = plan_device_;
  p.rope = {rope_.head_dim, rope_.n_dims / 2, rope_.style == RopeStyle::kNeox, cos_sin_};
  p.scale = 1.0f / std::sqrt(static_cast<float>(kv_.head_dim));

  // Split the keys when (row, KV head) blocks alone would leave most of the GPU idle: a power of
  // two, so that decode steps reuse a few graphs as contexts grow.
  const int64_t blocks = int64_t{p.n_rows} * p.n_kv_heads;
  const int64_t target = 2 * int64_t{properties_.multiProcessorCount};
  int32_t splits = 1;
  while (splits < 32 && blocks * splits * 2 <= target && int64_t{max_keys_} > 256 * splits) splits *= 2;
  p.n_splits = splits;
  if (splits > 1) {
    EnsureScratch(&attention_partial_, &attention_partial_bytes_,
                  static_cast<size_t>(p.n_rows) * p.n_heads * splits * (p.head_dim + 2) * sizeof(float));
    p.partial = reinterpret_cast<float*>(attention_partial_);
  }
  if (mass != nullptr) {
    EnsureScratch(&lse_, &lse_bytes_, static_cast<size_t>(p.n_rows) * p.n_heads * sizeof(float));
    EnsureScratch(&mass_, &mass_bytes_, static_cast<size_t>(p.n_rows) * p.n_kv_heads * sizeof(float));
    p.lse = reinterpret_cast<float*>(lse_);
  }
  Launch({kOpAttention, static_cast<uint64_t>(layer), Word(p.q), Word(p.q_pre), Word(p.out),
          static_cast<uint64_t>(p.n_rows), static_cast<uint64_t>(splits), Word(p.partial), Word(cos_sin_)},
         [=](cudaStream_t s) {
           cuda::LaunchStoreKv(p, s);
           cuda::LaunchAttention(p, s);
         });
  if (mass != nullptr) {
    cuda::LaunchAttentionMass(p, reinterpret_cast<float*>(mass_), stream_);
    MEMORIA_CUDA_CHECK(cudaMemcpyAsync(mass, mass_, static_cast<size_t>(p.n_rows) * p.n_kv_heads * sizeof(float),
                                       cudaMemcpyDeviceToHost, stream_));
    MEMORIA_CUDA_CHECK(cudaStreamSynchronize(stream_));
  }
}

}  // namespace memoria
