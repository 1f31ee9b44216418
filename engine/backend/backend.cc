#include "engine/backend/backend.h"

#include "engine/backend/cpu/cpu_backend.h"
#include "engine/util/thread_pool.h"

namespace memoria {

absl::StatusOr<std::unique_ptr<Backend>> Backend::Create(const BackendOptions& options) {
  switch (options.device) {
    case DeviceKind::kCpu:
      return std::unique_ptr<Backend>(
          new CpuBackend(options.n_threads > 0 ? options.n_threads : DefaultThreadCount(),
                         options.weights_in_place));
    case DeviceKind::kCuda:
      return absl::UnimplementedError("backend: this build has no CUDA backend");
  }
  return absl::InvalidArgumentError("backend: unknown device");
}

}  // namespace memoria
