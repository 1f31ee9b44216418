#ifndef MEMORIA_TESTS_ENGINE_KERNEL_TEST_UTIL_H_
#define MEMORIA_TESTS_ENGINE_KERNEL_TEST_UTIL_H_

// Helpers shared by the kernel tests (quant_gemm_test, quant_interleave_test).

#include <cstdint>
#include <random>
#include <tuple>
#include <vector>

#include "engine/gguf/ggml_type.h"
#include "engine/quant/blocks.h"
#include "engine/quant/gemm.h"
#include "engine/quant/quant.h"
#include "gtest/gtest.h"

namespace memoria {

inline std::vector<float> Gaussian(int64_t n, std::mt19937* rng) {
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> x(n);
  for (float& v : x) v = dist(*rng);
  return x;
}

// Activation rows as the kernels see them, turned back into floats.
inline std::vector<float> DequantizeActivation(GgmlType dot_type, const uint8_t* row, int64_t k) {
  std::vector<float> out(k);
  if (dot_type == GgmlType::kQ8_K) {
    const BlockQ8_K* blocks = reinterpret_cast<const BlockQ8_K*>(row);
    for (int64_t i = 0; i < k; ++i) out[i] = blocks[i / kQK_K].d * blocks[i / kQK_K].qs[i % kQK_K];
  } else {
    DequantizeRow(dot_type, row, out.data(), k);
  }
  return out;
}

// Parameterized tests that each run on one kernel path (skipped where the CPU lacks it) and
// restore the detected path afterwards; isa() picks the path out of the parameter.
template <class Param>
class KernelPathTest : public ::testing::TestWithParam<Param> {
 protected:
  virtual CpuIsa isa() const = 0;

  void SetUp() override {
    if (static_cast<int>(isa()) > static_cast<int>(DetectedCpuIsa())) {
      GTEST_SKIP() << CpuIsaName(isa()) << " not supported by this CPU";
    }
    SetCpuIsaForTesting(isa());
  }
  void TearDown() override { SetCpuIsaForTesting(DetectedCpuIsa()); }
};

// Tests over (weight type, kernel path).
class TypeAndIsaTest : public KernelPathTest<std::tuple<GgmlType, CpuIsa>> {
 protected:
  GgmlType type() const { return std::get<0>(GetParam()); }
  CpuIsa isa() const override { return std::get<1>(GetParam()); }
};

}  // namespace memoria

#endif  // MEMORIA_TESTS_ENGINE_KERNEL_TEST_UTIL_H_
