#include "tests/test_support.h"

#include <cstdlib>
#include <filesystem>

#include <unistd.h>

namespace memoria::testing {

std::string SourceDir() { return MEMORIA_SOURCE_DIR; }

std::string SharedDir() {
  namespace fs = std::filesystem;
  if (const char* env = std::getenv("MEMORIA_SHARED_DIR"); env != nullptr && *env != '\0') {
    return fs::is_directory(env) ? std::string(env) : std::string();
  }
  fs::path p = fs::path(MEMORIA_SOURCE_DIR).parent_path() / "shared";
  return fs::is_directory(p) ? p.string() : std::string();
}

std::string VocabPath(const std::string& name) {
  std::string shared = SharedDir();
  if (shared.empty()) return {};
  std::filesystem::path p = std::filesystem::path(shared) / "vocab" / name;
  return std::filesystem::exists(p) ? p.string() : std::string();
}

std::string TempDir(const std::string& name) {
  namespace fs = std::filesystem;
  const char* base = std::getenv("TEST_TMPDIR");
  fs::path root = base != nullptr ? fs::path(base) : fs::temp_directory_path();
  fs::path dir = root / ("memoria_test_" + std::to_string(::getpid()) + "_" + name);
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir.string();
}

std::string CliPath() { return MEMORIA_CLI_PATH; }

}  // namespace memoria::testing
