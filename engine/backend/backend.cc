#include "engine/backend/backend.h"

#include "engine/backend/cpu/cpu_backend.h"
#include "engine/util/thread_pool.h"
#ifdef MEMORIA_HAVE_CUDA
#include "engine/backend/cuda/cuda_backend.h"
#endif

namespace memoria {

absl::StatusOr<DeviceKind> ParseDeviceKind(std::string_view name) {
  if (name == "cpu") return DeviceKind::kCpu;
  if (name == "cuda") return DeviceKind::kCuda;
  if (name != "auto") {
    return absl::InvalidArgumentError(
        "device: cpu, cuda or auto, got '" + std::string(name) + "'");
  }
#ifdef MEMORIA_HAVE_CUDA
  if (CudaDeviceCount() > 0) return DeviceKind::kCuda;
#endif
  return DeviceKind::kCpu;
}

absl::StatusOr<std::unique_ptr<Backend>> Backend::Create(const BackendOptions& options) {
  switch (options.device) {
    case DeviceKind::kCpu:
      return std::unique_ptr<Backend>(
          new CpuBackend(options.n_threads > 0 ? options.n_threads : DefaultThreadCount(),
                         options.weights_in_place));
    case DeviceKind::kCuda: {
#ifdef MEMORIA_HAVE_CUDA
      CudaBackendSettings settings;
      settings.keep_quantized = options.keep_quantized;
      settings.graphs = options.cuda_graphs;
      settings.memory_cache_bytes = options.device_memory_cache_bytes;
      auto cuda = CudaBackend::Create(0, settings);
      if (!cuda.ok()) return cuda.status();
      return std::unique_ptr<Backend>(std::move(*cuda));
#else
      return absl::UnimplementedError("backend: this build has no CUDA backend");
#endif
    }
  }
  return absl::InvalidArgumentError("backend: unknown device");
}

}  // namespace memoria
