#ifndef MEMORIA_TESTS_TEST_SUPPORT_H_
#define MEMORIA_TESTS_TEST_SUPPORT_H_

#include <string>

#include "gtest/gtest.h"

namespace memoria::testing {

// The repository's root.
std::string SourceDir();
// ../shared beside the checkout (or $MEMORIA_SHARED_DIR); empty when absent.
std::string SharedDir();
// Path of a vocab file in shared/vocab, e.g. "ggml-vocab-llama-spm.gguf"; empty when absent.
std::string VocabPath(const std::string& name);
// A fresh directory under $TEST_TMPDIR or the system temp dir, removed when the process exits.
std::string TempDir(const std::string& name);
// Path of the memoria CLI built with the tests.
std::string CliPath();

}  // namespace memoria::testing

// Skips the current test with a message saying shared/ is absent.
#define MEMORIA_REQUIRE_SHARED(path_var, name)                                          \
  std::string path_var = ::memoria::testing::VocabPath(name);                           \
  if (path_var.empty()) GTEST_SKIP() << "../shared/vocab/" << name                      \
                                     << " not found (set MEMORIA_SHARED_DIR); skipping"

#endif  // MEMORIA_TESTS_TEST_SUPPORT_H_
