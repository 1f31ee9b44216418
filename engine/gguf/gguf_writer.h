#ifndef MEMORIA_ENGINE_GGUF_GGUF_WRITER_H_
#define MEMORIA_ENGINE_GGUF_GGUF_WRITER_H_

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "engine/gguf/ggml_type.h"
#include "engine/gguf/gguf_file.h"

namespace memoria {

// Builds a GGUF v3 file. Metadata keys keep insertion order; setting a key twice replaces it.
// Tensor data is produced at write time by a fill callback, so a multi-GB model is streamed to
// disk without being held in memory. Not thread-safe.
class GgufWriter {
 public:
  explicit GgufWriter(uint64_t alignment = 32);

  void Set(std::string_view key, GgufValue value);
  void SetString(std::string_view key, std::string value);
  void SetUint32(std::string_view key, uint32_t value);
  void SetInt32(std::string_view key, int32_t value);
  void SetUint64(std::string_view key, uint64_t value);
  void SetFloat32(std::string_view key, float value);
  void SetBool(std::string_view key, bool value);
  void SetStringArray(std::string_view key, std::vector<std::string> values);
  void SetFloat32Array(std::string_view key, std::vector<float> values);
  void SetInt32Array(std::string_view key, std::vector<int32_t> values);

  // `fill` receives a zeroed buffer of GgmlRowBytes(type, dims[0]) * rows bytes to fill in.
  using FillFn = std::function<void(uint8_t* data, size_t size)>;
  absl::Status AddTensor(std::string name, GgmlType type, std::vector<int64_t> dims, FillFn fill);
  // Convenience: copies `bytes` (which must have the exact size) at write time.
  absl::Status AddTensorBytes(std::string name, GgmlType type, std::vector<int64_t> dims,
                              std::string bytes);

  // Writes header, metadata, tensor infos and aligned data; fsyncs and renames into place.
  absl::Status WriteFile(const std::string& path);

 private:
  struct PendingTensor {
    std::string name;
    GgmlType type;
    std::vector<int64_t> dims;
    uint64_t size_bytes;
    FillFn fill;
  };
  uint64_t alignment_;
  std::vector<std::pair<std::string, GgufValue>> metadata_;
  std::vector<PendingTensor> tensors_;
};

}  // namespace memoria

#endif  // MEMORIA_ENGINE_GGUF_GGUF_WRITER_H_
