#ifndef MEMORIA_ENGINE_GGUF_GGUF_FILE_H_
#define MEMORIA_ENGINE_GGUF_GGUF_FILE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/gguf/ggml_type.h"

namespace memoria {

// Metadata value types, numbered as in the GGUF format.
enum class GgufValueType : uint32_t {
  kUint8 = 0, kInt8 = 1, kUint16 = 2, kInt16 = 3, kUint32 = 4, kInt32 = 5, kFloat32 = 6,
  kBool = 7, kString = 8, kArray = 9, kUint64 = 10, kInt64 = 11, kFloat64 = 12,
};

std::string_view GgufValueTypeName(GgufValueType type);

// One metadata value. Scalars keep their declared type; integer scalars of any width are held in
// `integer` (uint64 values above INT64_MAX bit-cast), floats in `real`. Arrays keep their element
// type; their elements live in exactly one of the vectors below, chosen by element type.
struct GgufValue {
  GgufValueType type = GgufValueType::kUint8;
  GgufValueType elem_type = GgufValueType::kUint8;  // arrays only
  int64_t integer = 0;                               // integer and bool scalars
  double real = 0;                                   // float scalars
  std::string str;                                   // string scalars
  std::vector<int64_t> ints;                         // integer/bool array elements
  std::vector<double> reals;                         // float array elements
  std::vector<std::string> strings;                  // string array elements
  std::vector<GgufValue> arrays;                     // nested array elements

  bool IsInteger() const;  // scalar of an integer type (not bool)
  bool IsFloat() const;    // scalar f32/f64
  size_t ArraySize() const;
};

struct GgufTensorInfo {
  std::string name;
  GgmlType type = GgmlType::kF32;
  std::vector<int64_t> dims;  // ne[0] first: dims[0] is the contiguous (row) length
  uint64_t offset = 0;        // from the start of the data section, as stored
  uint64_t size_bytes = 0;    // validated to lie inside the file
  const uint8_t* data = nullptr;  // points into the mapping; valid while the GgufFile lives

  int64_t NumElements() const;
  int64_t Rows() const;  // product of dims[1..]
};

// A parsed GGUF (v2 or v3) file. Open() maps the file read-only; everything it returns points
// into that mapping and lives as long as the GgufFile. Every count, size, offset and dimension is
// validated before use: a malformed file gives InvalidArgument (or DataLoss for a truncated one)
// naming what is wrong, never a crash. Immutable after construction; thread-safe to read.
class GgufFile {
 public:
  static absl::StatusOr<std::unique_ptr<GgufFile>> Open(const std::string& path);
  // Parses bytes held by the caller (no copy); `data` must outlive the returned file.
  static absl::StatusOr<std::unique_ptr<GgufFile>> Parse(const uint8_t* data, size_t size);

  ~GgufFile();
  GgufFile(const GgufFile&) = delete;
  GgufFile& operator=(const GgufFile&) = delete;

  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }
  const std::string& path() const { return path_; }

  // Metadata in file order.
  const std::vector<std::pair<std::string, GgufValue>>& metadata() const { return metadata_; }
  const GgufValue* Find(std::string_view key) const;  // nullptr when absent
  bool Has(std::string_view key) const { return Find(key) != nullptr; }

  // Typed lookups: NotFound naming the key when absent, InvalidArgument naming the key and both
  // types when the stored type does not fit. Integer getters accept any integer type whose value
  // fits; GetFloat also accepts integers.
  absl::StatusOr<std::string> GetString(std::string_view key) const;
  absl::StatusOr<int64_t> GetInt(std::string_view key) const;
  absl::StatusOr<uint64_t> GetUint(std::string_view key) const;
  absl::StatusOr<double> GetFloat(std::string_view key) const;
  absl::StatusOr<bool> GetBool(std::string_view key) const;
  absl::StatusOr<const std::vector<std::string>*> GetStringArray(std::string_view key) const;
  absl::StatusOr<std::vector<float>> GetFloatArray(std::string_view key) const;
  absl::StatusOr<std::vector<int32_t>> GetInt32Array(std::string_view key) const;

  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
  const GgufTensorInfo* FindTensor(std::string_view name) const;  // nullptr when absent

 private:
  GgufFile() = default;

  std::string path_;
  void* mapping_ = nullptr;  // munmap'd in the destructor when non-null
  size_t mapping_size_ = 0;
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  std::vector<std::pair<std::string, GgufValue>> metadata_;
  std::vector<GgufTensorInfo> tensors_;
};

}  // namespace memoria

#endif  // MEMORIA_ENGINE_GGUF_GGUF_FILE_H_
