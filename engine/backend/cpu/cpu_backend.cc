#include "engine/backend/cpu/cpu_backend.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/quant/blocks.h"
#include "engine/quant/gemm.h"
#include "engine/quant/interleave.h"
#include "engine/quant/quant.h"
#include "engine/util/huge_pages.h"
#include "engine/util/row_split.h"
#include "engine/util/status_macros.h"

namespace memoria {

void CpuBackend::AlignedFree::operator()(void* p) const { std::free(p); }

CpuBackend::Buffer CpuBackend::AllocateBuffer(size_t bytes) {
  constexpr size_t kAlign = 64;
  size_t rounded = (std::max<size_t>(bytes, 1) + kAlign - 1) / kAlign * kAlign;
  return Buffer(static_cast<uint8_t*>(std::aligned_alloc(kAlign, rounded)));
}

CpuBackend::CpuBackend(int n_threads, bool weights_in_place)
    : pool_(n_threads), weights_in_place_(weights_in_place) {}

uint8_t* CpuBackend::AllocateWeight(size_t bytes) {
  constexpr size_t kChunk = size_t{256} << 20;
  constexpr size_t kAlign = 64;
  bytes = (bytes + kAlign - 1) / kAlign * kAlign;
  if (bytes > weight_chunk_left_) {
    const size_t chunk = RoundUpToHugePages(std::max(bytes, kChunk));
    uint8_t* p = static_cast<uint8_t*>(AllocateHugePages(chunk));
    if (p == nullptr) return nullptr;
    allocations_.push_back(Buffer(p));
    weight_chunk_free_ = p;
    weight_chunk_left_ = chunk;
  }
  uint8_t* out = weight_chunk_free_;
  weight_chunk_free_ += bytes;
  weight_chunk_left_ -= bytes;
  return out;
}
CpuBackend::~CpuBackend() = default;

std::string CpuBackend::Describe() const {
  return absl::StrCat("cpu (", pool_.size(), " threads, ", CpuIsaName(ActiveCpuIsa()), ")");
}

namespace {

absl::Status CheckComputeType(const GgufTensorInfo& info) {
  if (IsComputeType(info.type)) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat("cpu backend: tensor '", info.name, "' has type ",
                                                 std::string(TraitsOf(info.type).name),
                                                 ", which the engine does not compute with"));
}

}  // namespace

absl::StatusOr<Tensor> CpuBackend::UploadWeight(const GgufTensorInfo& info) {
  const GgufTensorInfo* parts[] = {&info};
  if (!weights_in_place_) return CopyWeights(parts);
  MEMORIA_RETURN_IF_ERROR(CheckComputeType(info));
  Tensor t;
  t.type = info.type;
  t.cols = info.dims[0];
  t.rows = info.Rows();
  t.row_bytes = GgmlRowBytes(info.type, t.cols);
  t.data = const_cast<uint8_t*>(info.data);  // read-only by contract of every op
  return t;
}

absl::StatusOr<Tensor> CpuBackend::UploadStacked(std::span<const GgufTensorInfo* const> parts) {
  if (weights_in_place_) return absl::UnimplementedError("cpu backend: weights stay in place");
  for (const GgufTensorInfo* p : parts) {
    if (p->type != parts[0]->type || p->dims[0] != parts[0]->dims[0]) {
      return absl::InvalidArgumentError(absl::StrCat("cpu backend: cannot stack '", p->name,
                                                     "' with '", parts[0]->name,
                                                     "': type or row length differs"));
    }
  }
  return CopyWeights(parts);
}

absl::StatusOr<Tensor> CpuBackend::CopyWeights(std::span<const GgufTensorInfo* const> parts) {
  Tensor t;
  t.type = parts[0]->type;
  t.cols = parts[0]->dims[0];
  t.row_bytes = GgmlRowBytes(t.type, t.cols);
  for (const GgufTensorInfo* p : parts) {
    MEMORIA_RETURN_IF_ERROR(CheckComputeType(*p));
    t.rows += p->Rows();
  }
  const size_t bytes = t.row_bytes * static_cast<size_t>(t.rows);
  uint8_t* copy = AllocateWeight(bytes);
  if (copy == nullptr) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "cpu backend: cannot allocate ", bytes, " bytes for tensor '", parts[0]->name, "'"));
  }
  auto stack_into = [&](uint8_t* dst) {
    for (const GgufTensorInfo* p : parts) {
      std::memcpy(dst, p->data, p->size_bytes);
      dst += p->size_bytes;
    }
  };
  if (PrefersInterleavedRows(t.type)) {
    const uint8_t* rows = parts[0]->data;
    std::vector<uint8_t> stacked;
    if (parts.size() > 1) {
      stacked.resize(bytes);
      stack_into(stacked.data());
      rows = stacked.data();
    }
    // Groups are independent, so slices of whole groups repack in parallel (load time).
    constexpr int64_t kSliceRows = 64 * kInterleavedRows;
    pool_.Run((t.rows + kSliceRows - 1) / kSliceRows, [&](int64_t i) {
      const int64_t r0 = i * kSliceRows;
      InterleaveRows(t.type, rows + r0 * t.row_bytes, std::min(kSliceRows, t.rows - r0), t.cols,
                     copy + r0 * t.row_bytes);
    });
    t.layout = TensorLayout::kInterleaved16;
  } else {
    stack_into(copy);
  }
  t.data = copy;
  return t;
}

absl::StatusOr<Tensor> CpuBackend::Allocate(GgmlType type, int64_t rows, int64_t cols) {
  Tensor t;
  t.type = type;
  t.rows = rows;
  t.cols = cols;
  t.row_bytes = GgmlRowBytes(type, cols);
  Buffer buffer = AllocateBuffer(t.row_bytes * static_cast<size_t>(rows));
  if (buffer == nullptr) {
    return absl::ResourceExhaustedError(
        absl::StrCat("cpu backend: cannot allocate ", t.row_bytes * rows, " bytes"));
  }
  std::memset(buffer.get(), 0, t.row_bytes * static_cast<size_t>(rows));
  t.data = buffer.get();
  allocations_.push_back(std::move(buffer));
  return t;
}

absl::Status CpuBackend::InitKvCache(const KvCacheConfig& config, const RopeConfig& rope) {
  if (config.type != GgmlType::kF32 && config.type != GgmlType::kF16) {
    return absl::InvalidArgumentError("cpu backend: the KV cache type must be f32 or f16");
  }
  kv_ = config;
  rope_ = rope;
  kv_elem_bytes_ = config.type == GgmlType::kF16 ? 2 : 4;
  const size_t layer_bytes = static_cast<size_t>(config.n_pages) * config.n_kv_heads *
                             config.page_size * config.head_dim * kv_elem_bytes_;
  k_cache_.clear();
  v_cache_.clear();
  for (int32_t l = 0; l < config.n_layers; ++l) {
    k_cache_.push_back(AllocateBuffer(layer_bytes));
    v_cache_.push_back(AllocateBuffer(layer_bytes));
    if (k_cache_.back() == nullptr || v_cache_.back() == nullptr) {
      return absl::ResourceExhaustedError(
          absl::StrCat("cpu backend: cannot allocate a KV cache of ", 2 * layer_bytes * config.n_layers,
                       " bytes"));
    }
  }
  // theta_i(p) = p * freq_scale * base^(-2i / n_dims) / factor_i
  const int32_t half = rope.n_dims / 2;
  inv_freq_.assign(half, 0.0f);
  for (int32_t i = 0; i < half; ++i) {
    double f = std::pow(static_cast<double>(rope.freq_base), -2.0 * i / rope.n_dims) * rope.freq_scale;
    if (!rope.freq_factors.empty()) f /= rope.freq_factors[i];
    inv_freq_[i] = static_cast<float>(f);
  }
  cos_sin_.clear();
  cos_sin_positions_ = 0;
  return absl::OkStatus();
}

const float* CpuBackend::CosSinRow(int32_t position) {
  const int32_t half = rope_.n_dims / 2;
  if (position >= cos_sin_positions_) {
    // Grow the table geometrically; positions only reach the context length.
    int32_t n = std::max(position + 1, std::max(256, 2 * cos_sin_positions_));
    cos_sin_.resize(static_cast<size_t>(n) * half * 2);
    for (int32_t p = cos_sin_positions_; p < n; ++p) {
      float* row = &cos_sin_[static_cast<size_t>(p) * half * 2];
      for (int32_t i = 0; i < half; ++i) {
        double theta = static_cast<double>(p) * inv_freq_[i];
        row[2 * i] = static_cast<float>(std::cos(theta));
        row[2 * i + 1] = static_cast<float>(std::sin(theta));
      }
    }
    cos_sin_positions_ = n;
  }
  return &cos_sin_[static_cast<size_t>(position) * half * 2];
}

void CpuBackend::RotateHead(float* x, int32_t position) const {
  const int32_t half = rope_.n_dims / 2;
  const float* cs = &cos_sin_[static_cast<size_t>(position) * half * 2];
  if (rope_.style == RopeStyle::kNormal) {
    for (int32_t i = 0; i < half; ++i) {
      float x0 = x[2 * i], x1 = x[2 * i + 1];
      x[2 * i] = x0 * cs[2 * i] - x1 * cs[2 * i + 1];
      x[2 * i + 1] = x0 * cs[2 * i + 1] + x1 * cs[2 * i];
    }
  } else {
    for (int32_t i = 0; i < half; ++i) {
      float x0 = x[i], x1 = x[i + half];
      x[i] = x0 * cs[2 * i] - x1 * cs[2 * i + 1];
      x[i + half] = x0 * cs[2 * i + 1] + x1 * cs[2 * i];
    }
  }
}

void CpuBackend::PrepareBatch(const BatchPlan& plan) {
  plan_ = &plan;
  row_sequence_.assign(plan.positions.size(), 0);
  int32_t max_position = 0;
  for (size_t s = 0; s < plan.sequences.size(); ++s) {
    const BatchSequence& seq = plan.sequences[s];
    for (int32_t i = 0; i < seq.n_new; ++i) row_sequence_[seq.first_row + i] = static_cast<int32_t>(s);
    if (seq.memory != nullptr && seq.memory->rotation() == MemoryRotation::kStoredPositions) {
      for (int32_t l = 0; l < seq.memory->n_layers(); ++l) {
        for (int32_t g = 0; g < seq.memory->n_kv_heads(); ++g) {
          for (const MemoryEntries& e : seq.memory->Entries(l, g)) {
            for (int32_t m = 0; m < e.count; ++m) max_position = std::max(max_position, e.positions[m]);
          }
        }
      }
    }
  }
  for (int32_t p : plan.positions) max_position = std::max(max_position, p);
  CosSinRow(max_position);  // fills the table so the parallel ops below only read it
}

void CpuBackend::CopyToHost(const Tensor& src, int64_t row0, int64_t n, float* dst) {
  for (int64_t r = 0; r < n; ++r) {
    std::memcpy(dst + r * src.cols, static_cast<const char*>(src.data) + (row0 + r) * src.row_bytes,
                src.cols * sizeof(float));
  }
}

namespace {

inline float* RowF32(const Tensor& t, int64_t r) {
  return reinterpret_cast<float*>(static_cast<char*>(t.data) + r * t.row_bytes);
}

}  // namespace

void CpuBackend::Embed(const Tensor& table, std::span<const int32_t> ids, Tensor* out) {
  pool_.Run(static_cast<int64_t>(ids.size()), [&](int64_t i) {
    const void* row = static_cast<const char*>(table.data) + ids[i] * table.row_bytes;
    if (table.layout == TensorLayout::kInterleaved16) {
      thread_local std::vector<uint8_t> restored;
      restored.resize(table.row_bytes);
      DeinterleaveRow(table.type, table.data, table.rows, ids[i], table.cols, restored.data());
      row = restored.data();
    }
    DequantizeRow(table.type, row, RowF32(*out, i), table.cols);
  });
}

void CpuBackend::RmsNorm(const Tensor& x, const Tensor& weight, float eps, int64_t n, Tensor* out) {
  const float* w = static_cast<const float*>(weight.data);
  pool_.Run(n, [&](int64_t r) {
    const float* xr = RowF32(x, r);
    float* o = RowF32(*out, r);
    double sum = 0;
    for (int64_t i = 0; i < x.cols; ++i) sum += static_cast<double>(xr[i]) * xr[i];
    const float scale = 1.0f / std::sqrt(static_cast<float>(sum / x.cols) + eps);
    for (int64_t i = 0; i < x.cols; ++i) o[i] = xr[i] * scale * w[i];
  });
}

void CpuBackend::MatMul(const Tensor& w, const Tensor& x, int64_t n, Tensor* y) {
  const bool interleaved = w.layout == TensorLayout::kInterleaved16;
  const GgmlType dot_type = DotTypeFor(w.type);
  const int64_t k = x.cols;
  const size_t xq_row_bytes =
      interleaved ? InterleavedActivationRowBytes(w.type, k) : GgmlRowBytes(dot_type, k);
  if (activations_.size() < xq_row_bytes * n) activations_.resize(xq_row_bytes * n);
  uint8_t* xq = activations_.data();
  pool_.Run(n, [&](int64_t r) {
    if (interleaved) {
      ConvertInterleavedActivationRow(w.type, RowF32(x, r), xq + r * xq_row_bytes, k);
    } else {
      ConvertActivationRow(dot_type, RowF32(x, r), xq + r * xq_row_bytes, k);
    }
  });
  // Multiples of 16 rows keep the kernels' tiles and interleaved groups whole.
  const RowSplit split(y->cols, pool_.size(), 16);
  const int64_t ldy = static_cast<int64_t>(y->row_bytes / sizeof(float));
  pool_.Run(split.n_tasks(), [&](int64_t b) {
    const int64_t r0 = split.begin(b);
    const int64_t r1 = split.end(b);
    float* out = static_cast<float*>(y->data);
    if (interleaved) {
      GemmInterleavedRows(w.type, w.data, w.rows, k, r0, r1, xq, xq_row_bytes, n, out, ldy);
    } else {
      GemmRows(w.type, w.data, w.row_bytes, k, r0, r1, xq, xq_row_bytes, n, out, ldy);
    }
  });
}

void CpuBackend::AddBias(const Tensor& bias, int64_t n, Tensor* y) {
  const float* b = static_cast<const float*>(bias.data);
  pool_.Run(n, [&](int64_t r) {
    float* yr = RowF32(*y, r);
    for (int64_t i = 0; i < y->cols; ++i) yr[i] += b[i];
  });
}

void CpuBackend::Add(const Tensor& a, int64_t n, Tensor* y) {
  pool_.Run(n, [&](int64_t r) {
    const float* ar = RowF32(a, r);
    float* yr = RowF32(*y, r);
    for (int64_t i = 0; i < y->cols; ++i) yr[i] += ar[i];
  });
}

void CpuBackend::SwiGlu(const Tensor& gate, const Tensor& up, int64_t n, Tensor* out) {
  pool_.Run(n, [&](int64_t r) {
    SiluMulF32(RowF32(gate, r), RowF32(up, r), RowF32(*out, r), out->cols);
  });
}

void CpuBackend::Copy(const Tensor& src, int64_t n, Tensor* dst) {
  for (int64_t r = 0; r < n; ++r) {
    std::memcpy(RowF32(*dst, r), RowF32(src, r), src.cols * sizeof(float));
  }
}

void CpuBackend::GatherRows(const Tensor& src, std::span<const int32_t> rows, Tensor* dst) {
  for (size_t i = 0; i < rows.size(); ++i) {
    std::memcpy(RowF32(*dst, static_cast<int64_t>(i)), RowF32(src, rows[i]), src.cols * sizeof(float));
  }
}

void CpuBackend::Rope(Tensor* x) {
  const int32_t n_heads = static_cast<int32_t>(x->cols / rope_.head_dim);
  pool_.Run(plan_->n_rows(), [&](int64_t r) {
    float* row = RowF32(*x, r);
    for (int32_t h = 0; h < n_heads; ++h) RotateHead(row + h * rope_.head_dim, plan_->positions[r]);
  });
}

}  // namespace memoria
