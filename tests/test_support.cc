#include "tests/test_support.h"

#include <cstdlib>
#include <filesystem>
#include <system_error>
#include <vector>

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

namespace {

// The directories this process made, removed when it exits normally (each test runs in its own
// process, so a run leaves nothing behind; a crashed test leaves its files for inspection).
class TempDirRegistry {
 public:
  ~TempDirRegistry() {
    if (::getpid() != owner_) return;  // a forked child that returned instead of exec'ing
    std::error_code ignored;
    for (const std::filesystem::path& dir : dirs_) std::filesystem::remove_all(dir, ignored);
  }
  void Add(const std::filesystem::path& dir) { dirs_.push_back(dir); }

 private:
  const pid_t owner_ = ::getpid();
  std::vector<std::filesystem::path> dirs_;
};

}  // namespace

std::string TempDir(const std::string& name) {
  namespace fs = std::filesystem;
  static TempDirRegistry registry;
  const char* base = std::getenv("TEST_TMPDIR");
  fs::path root = base != nullptr ? fs::path(base) : fs::temp_directory_path();
  fs::path dir = root / ("memoria_test_" + std::to_string(::getpid()) + "_" + name);
  fs::remove_all(dir);
  fs::create_directories(dir);
  registry.Add(dir);
  return dir.string();
}

std::string CliPath() { return MEMORIA_CLI_PATH; }

}  // namespace memoria::testing
