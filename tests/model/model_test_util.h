#ifndef MEMORIA_TESTS_MODEL_MODEL_TEST_UTIL_H_
#define MEMORIA_TESTS_MODEL_MODEL_TEST_UTIL_H_

#include <algorithm>
#include <cmath>
#include <fstream>
#include <string>
#include <vector>

#include "engine/model/random_model.h"
#include "gtest/gtest.h"
#include "tests/test_support.h"

namespace memoria::testing {

// Writes (once per process) a small random model from a shared vocab; "" when shared/ is absent.
inline std::string SmallModel(const std::string& tag, const std::string& vocab, RandomModelOptions o) {
  std::string vocab_path = VocabPath(vocab);
  if (vocab_path.empty()) return {};
  static std::string dir = TempDir("models");
  std::string path = dir + "/" + tag + ".gguf";
  o.vocab_path = vocab_path;
  if (!std::ifstream(path).good()) {
    absl::Status st = WriteRandomModel(o, path);
    EXPECT_TRUE(st.ok()) << st;
  }
  return path;
}

// The smallest shape with grouped-query attention and memory layers apart from the others:
// 4 layers (memories go to the first two), 64 dims, 4 query / 2 KV heads.
inline RandomModelOptions TinyMemoryModel(const std::string& arch = "llama", uint64_t seed = 1) {
  RandomModelOptions o;
  o.arch = arch;
  o.n_layers = 4;
  o.n_embd = 64;
  o.n_heads = 4;
  o.n_kv_heads = 2;
  o.n_ff = 128;
  o.seed = seed;
  return o;
}

// Largest |a - b| relative to the largest |b|.
inline double RelativeMaxError(const float* a, const float* b, size_t n) {
  double max_diff = 0, max_ref = 1e-12;
  for (size_t i = 0; i < n; ++i) {
    max_diff = std::max(max_diff, std::fabs(static_cast<double>(a[i]) - b[i]));
    max_ref = std::max(max_ref, std::fabs(static_cast<double>(b[i])));
  }
  return max_diff / max_ref;
}

inline int32_t ArgMax(const float* x, size_t n) {
  return static_cast<int32_t>(std::max_element(x, x + n) - x);
}

}  // namespace memoria::testing

#endif  // MEMORIA_TESTS_MODEL_MODEL_TEST_UTIL_H_
