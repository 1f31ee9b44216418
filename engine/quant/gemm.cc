#include "engine/quant/gemm.h"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "engine/quant/fp16.h"
#include "engine/quant/gemm_internal.h"
#include "engine/quant/quant.h"
#include "engine/quant/quant_internal.h"

namespace memoria {

using gemm_internal::GemmArgs;
using gemm_internal::ActiveKernels;
using gemm_internal::KernelTable;

namespace {

CpuIsa Detect() {
  __builtin_cpu_init();
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                    __builtin_cpu_supports("f16c");
  const bool avx512 = avx2 && __builtin_cpu_supports("avx512f") &&
                      __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
                      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vnni");
  if (avx512) return CpuIsa::kAvx512;
  if (avx2) return CpuIsa::kAvx2;
  return CpuIsa::kScalar;
}

const KernelTable& TableFor(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::kAvx512:
      return gemm_internal::Avx512Kernels();
    case CpuIsa::kAvx2:
      return gemm_internal::Avx2Kernels();
    case CpuIsa::kScalar:
      break;
  }
  return gemm_internal::ScalarKernels();
}

struct Dispatch {
  CpuIsa detected;
  std::atomic<CpuIsa> active;
  std::atomic<const KernelTable*> table;
};

Dispatch& GetDispatch() {
  static Dispatch* dispatch = [] {
    auto* d = new Dispatch;
    d->detected = Detect();
    d->active.store(d->detected);
    d->table.store(&TableFor(d->detected));
    return d;
  }();
  return *dispatch;
}

}  // namespace

const KernelTable& gemm_internal::ActiveKernels() {
  return *GetDispatch().table.load(std::memory_order_relaxed);
}

CpuIsa DetectedCpuIsa() { return GetDispatch().detected; }

CpuIsa ActiveCpuIsa() { return GetDispatch().active.load(); }

void SetCpuIsaForTesting(CpuIsa isa) {
  Dispatch& d = GetDispatch();
  if (static_cast<int>(isa) > static_cast<int>(d.detected)) {
    std::fprintf(stderr, "memoria: SetCpuIsaForTesting(%s) on a CPU that only has %s\n",
                 CpuIsaName(isa), CpuIsaName(d.detected));
    std::abort();
  }
  d.active.store(isa);
  d.table.store(&TableFor(isa));
}

const char* CpuIsaName(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::kScalar:
      return "scalar";
    case CpuIsa::kAvx2:
      return "avx2";
    case CpuIsa::kAvx512:
      return "avx512";
  }
  return "unknown";
}

GgmlType DotTypeFor(GgmlType weight) {
  switch (weight) {
    case GgmlType::kF32:
    case GgmlType::kF16:
    case GgmlType::kBF16:
      return weight;
    case GgmlType::kQ8_0:
    case GgmlType::kQ4_0:
      return GgmlType::kQ8_0;
    case GgmlType::kQ4_K:
    case GgmlType::kQ6_K:
      return GgmlType::kQ8_K;
    default:
      DieUnsupportedType("DotTypeFor", weight);
  }
}

void ConvertActivationRow(GgmlType dot_type, const float* x, void* out, int64_t k) {
  switch (dot_type) {
    case GgmlType::kF32:
      std::memcpy(out, x, k * sizeof(float));
      return;
    case GgmlType::kF16:
      return ActiveKernels().fp32_to_fp16_row(x, static_cast<uint16_t*>(out), k);
    case GgmlType::kBF16:
      return QuantizeRow(dot_type, x, out, k);
    // Each path's quantizer writes QuantizeRow's bytes, so every path sees the same activations.
    case GgmlType::kQ8_0:
      return ActiveKernels().quantize_row_q8_0(x, out, k);
    case GgmlType::kQ8_K:
      return ActiveKernels().quantize_row_q8_k(x, out, k);
    default:
      DieUnsupportedType("ConvertActivationRow", dot_type);
  }
}

void GemmRows(GgmlType wtype, const void* w, size_t w_row_bytes, int64_t k, int64_t r0, int64_t r1,
              const void* xq, size_t xq_row_bytes, int64_t nb, float* y, int64_t ldy) {
  if (r0 >= r1 || nb <= 0) return;
  const GemmArgs args{static_cast<const uint8_t*>(w),  w_row_bytes,  k,  r0, r1,
                      static_cast<const uint8_t*>(xq), xq_row_bytes, nb, y,  ldy};
  const KernelTable& t = ActiveKernels();
  switch (wtype) {
    case GgmlType::kF32:
      return t.f32(args);
    case GgmlType::kF16:
      return t.f16(args);
    case GgmlType::kBF16:
      return t.bf16(args);
    case GgmlType::kQ8_0:
      return t.q8_0(args);
    case GgmlType::kQ4_0:
      return t.q4_0(args);
    case GgmlType::kQ4_K:
      return t.q4_k(args);
    case GgmlType::kQ6_K:
      return t.q6_k(args);
    default:
      DieUnsupportedType("GemmRows", wtype);
  }
}

void Fp32ToFp16Row(const float* x, uint16_t* y, int64_t n) {
  ActiveKernels().fp32_to_fp16_row(x, y, n);
}

void Fp16ToFp32Row(const uint16_t* x, float* y, int64_t n) {
  ActiveKernels().fp16_to_fp32_row(x, y, n);
}

void SiluMulF32(const float* gate, const float* up, float* out, int64_t n) {
  ActiveKernels().silu_mul_f32(gate, up, out, n);
}

float SoftmaxNumeratorsF32(float* row, int64_t n, float scale, float* max_scaled) {
  return ActiveKernels().softmax_numerators_f32(row, n, scale, max_scaled);
}

void AccumulateRowsF32(const float* weights, int64_t ldw, int64_t n_out, const float* rows,
                       int64_t n, int64_t dim, float* out, int64_t ldo) {
  ActiveKernels().accumulate_rows_f32(weights, ldw, n_out, rows, n, dim, out, ldo);
}

void AccumulateRowsF16F32(const float* weights, int64_t ldw, int64_t n_out,
                          const uint16_t* rows_fp16, int64_t n, int64_t dim, float* out,
                          int64_t ldo) {
  ActiveKernels().accumulate_rows_f16_f32(weights, ldw, n_out, rows_fp16, n, dim, out, ldo);
}

void DotRowsF32(const float* queries, int64_t ldq, int64_t n_queries, const float* rows, int64_t n,
                int64_t dim, float* scores, int64_t lds) {
  ActiveKernels().dot_rows_f32(queries, ldq, n_queries, rows, n, dim, scores, lds);
}

void DotRowsF16F32(const float* queries, int64_t ldq, int64_t n_queries, const uint16_t* rows_fp16,
                   int64_t n, int64_t dim, float* scores, int64_t lds) {
  ActiveKernels().dot_rows_f16_f32(queries, ldq, n_queries, rows_fp16, n, dim, scores, lds);
}

}  // namespace memoria
