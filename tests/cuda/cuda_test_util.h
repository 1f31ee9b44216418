#ifndef MEMORIA_TESTS_CUDA_CUDA_TEST_UTIL_H_
#define MEMORIA_TESTS_CUDA_CUDA_TEST_UTIL_H_

#include <algorithm>
#include <cmath>
#include <cstddef>

#include "engine/backend/cuda/cuda_backend.h"
#include "gtest/gtest.h"

namespace memoria::testing {

// Skips the current test on a machine without a GPU (CI has nvcc but no device).
#define MEMORIA_REQUIRE_CUDA()                 \
  if (::memoria::CudaDeviceCount() > 0) {      \
  } else                                       \
    GTEST_SKIP() << "no CUDA device (cudaGetDeviceCount reports none); skipping the CUDA test"

// ||a - b|| / ||b|| over n floats.
inline double RelativeL2(const float* a, const float* b, size_t n) {
  double diff = 0, ref = 1e-30;
  for (size_t i = 0; i < n; ++i) {
    diff += (static_cast<double>(a[i]) - b[i]) * (static_cast<double>(a[i]) - b[i]);
    ref += static_cast<double>(b[i]) * b[i];
  }
  return std::sqrt(diff / ref);
}

inline bool AllFinite(const float* a, size_t n) {
  return std::all_of(a, a + n, [](float x) { return std::isfinite(x); });
}

}  // namespace memoria::testing

#endif  // MEMORIA_TESTS_CUDA_CUDA_TEST_UTIL_H_
