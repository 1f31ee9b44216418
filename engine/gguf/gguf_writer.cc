#include "engine/gguf/gguf_writer.h"

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <limits>
#include <memory>
#include <utility>

#include <fcntl.h>
#include <unistd.h>

#include "absl/strings/str_cat.h"

namespace memoria {

static_assert(std::endian::native == std::endian::little,
              "the GGUF writer stores fields with memcpy");

namespace {

constexpr uint32_t kVersion = 3;
constexpr uint64_t kDefaultAlignment = 32;
constexpr uint32_t kMaxDims = 4;
constexpr char kAlignmentKey[] = "general.alignment";
// Small records are gathered and written in chunks of this size; large tensor buffers bypass
// the buffer and go straight to write(2).
constexpr size_t kBufferBytes = size_t{8} << 20;
// Upper bound on one write(2) call: Linux moves at most ~2 GiB per call anyway, and moderate
// chunks keep a multi-GB tensor from sitting in one uninterruptible syscall.
constexpr size_t kMaxWriteBytes = size_t{64} << 20;

// Appends the GGUF encoding of metadata to a byte string.
class Encoder {
 public:
  explicit Encoder(std::string* out) : out_(out) {}

  template <typename T>
  void Put(T v) {
    char bytes[sizeof(T)];
    std::memcpy(bytes, &v, sizeof(T));
    out_->append(bytes, sizeof(T));
  }
  void PutString(std::string_view s) {
    Put<uint64_t>(s.size());
    out_->append(s);
  }

  // Integers are range-checked against their declared width: a silently truncated value would
  // be read back as a different number.
  absl::Status PutInteger(GgufValueType type, int64_t v) {
    switch (type) {
      case GgufValueType::kUint8: return PutChecked<uint8_t>(v);
      case GgufValueType::kInt8: return PutChecked<int8_t>(v);
      case GgufValueType::kUint16: return PutChecked<uint16_t>(v);
      case GgufValueType::kInt16: return PutChecked<int16_t>(v);
      case GgufValueType::kUint32: return PutChecked<uint32_t>(v);
      case GgufValueType::kInt32: return PutChecked<int32_t>(v);
      case GgufValueType::kUint64: Put<uint64_t>(static_cast<uint64_t>(v)); return absl::OkStatus();
      case GgufValueType::kInt64: Put<int64_t>(v); return absl::OkStatus();
      case GgufValueType::kBool: Put<uint8_t>(v != 0 ? 1 : 0); return absl::OkStatus();
      default: return absl::InvalidArgumentError("not an integer type");
    }
  }

  void PutReal(GgufValueType type, double v) {
    if (type == GgufValueType::kFloat32) {
      Put<float>(static_cast<float>(v));
    } else {
      Put<double>(v);
    }
  }

  // Writes the payload of `value` (not its type tag).
  absl::Status PutValue(const GgufValue& value) {
    switch (value.type) {
      case GgufValueType::kString:
        PutString(value.str);
        return absl::OkStatus();
      case GgufValueType::kArray:
        return PutArray(value);
      case GgufValueType::kFloat32:
      case GgufValueType::kFloat64:
        PutReal(value.type, value.real);
        return absl::OkStatus();
      default:
        return PutInteger(value.type, value.integer);
    }
  }

 private:
  template <typename T>
  absl::Status PutChecked(int64_t v) {
    if (v < std::numeric_limits<T>::min() || v > std::numeric_limits<T>::max()) {
      return absl::InvalidArgumentError(absl::StrCat("value ", v, " is out of range"));
    }
    Put<T>(static_cast<T>(v));
    return absl::OkStatus();
  }

  absl::Status PutArray(const GgufValue& value) {
    Put<uint32_t>(static_cast<uint32_t>(value.elem_type));
    Put<uint64_t>(value.ArraySize());
    switch (value.elem_type) {
      case GgufValueType::kString:
        for (const std::string& s : value.strings) PutString(s);
        return absl::OkStatus();
      case GgufValueType::kArray:
        for (const GgufValue& nested : value.arrays) {
          if (nested.type != GgufValueType::kArray) {
            return absl::InvalidArgumentError("array of arrays holds a non-array element");
          }
          if (absl::Status s = PutArray(nested); !s.ok()) return s;
        }
        return absl::OkStatus();
      case GgufValueType::kFloat32:
      case GgufValueType::kFloat64:
        for (double v : value.reals) PutReal(value.elem_type, v);
        return absl::OkStatus();
      default:
        for (size_t i = 0; i < value.ints.size(); ++i) {
          if (absl::Status s = PutInteger(value.elem_type, value.ints[i]); !s.ok()) {
            return absl::Status(s.code(), absl::StrCat("element ", i, ": ", s.message()));
          }
        }
        return absl::OkStatus();
    }
  }

  std::string* out_;
};

// Writes everything through a file descriptor, retrying partial writes. Owns the descriptor.
class FileSink {
 public:
  FileSink(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}
  ~FileSink() {
    if (fd_ >= 0) ::close(fd_);
  }

  absl::Status Write(const void* data, size_t size) {
    const char* p = static_cast<const char*>(data);
    while (size > 0) {
      const ssize_t n = ::write(fd_, p, std::min(size, kMaxWriteBytes));
      if (n < 0) {
        if (errno == EINTR) continue;
        return absl::ErrnoToStatus(errno, absl::StrCat("gguf: writing ", path_));
      }
      p += n;
      size -= static_cast<size_t>(n);
    }
    return absl::OkStatus();
  }

  absl::Status SyncAndClose() {
    if (::fsync(fd_) != 0) return absl::ErrnoToStatus(errno, absl::StrCat("gguf: fsync ", path_));
    const int fd = fd_;
    fd_ = -1;
    if (::close(fd) != 0) return absl::ErrnoToStatus(errno, absl::StrCat("gguf: close ", path_));
    return absl::OkStatus();
  }

 private:
  int fd_;
  std::string path_;
};

uint64_t PaddingFor(uint64_t pos, uint64_t alignment) {
  return (alignment - pos % alignment) % alignment;
}

struct FreeDeleter {
  void operator()(uint8_t* p) const { std::free(p); }
};

}  // namespace

GgufWriter::GgufWriter(uint64_t alignment) : alignment_(alignment) {}

void GgufWriter::Set(std::string_view key, GgufValue value) {
  for (auto& [k, v] : metadata_) {
    if (k == key) {
      v = std::move(value);
      return;
    }
  }
  metadata_.emplace_back(std::string(key), std::move(value));
}

void GgufWriter::SetString(std::string_view key, std::string value) {
  GgufValue v;
  v.type = GgufValueType::kString;
  v.str = std::move(value);
  Set(key, std::move(v));
}

void GgufWriter::SetUint32(std::string_view key, uint32_t value) {
  GgufValue v;
  v.type = GgufValueType::kUint32;
  v.integer = value;
  Set(key, std::move(v));
}

void GgufWriter::SetInt32(std::string_view key, int32_t value) {
  GgufValue v;
  v.type = GgufValueType::kInt32;
  v.integer = value;
  Set(key, std::move(v));
}

void GgufWriter::SetUint64(std::string_view key, uint64_t value) {
  GgufValue v;
  v.type = GgufValueType::kUint64;
  v.integer = static_cast<int64_t>(value);  // bit-cast above INT64_MAX, as GgufValue documents
  Set(key, std::move(v));
}

void GgufWriter::SetFloat32(std::string_view key, float value) {
  GgufValue v;
  v.type = GgufValueType::kFloat32;
  v.real = value;
  Set(key, std::move(v));
}

void GgufWriter::SetBool(std::string_view key, bool value) {
  GgufValue v;
  v.type = GgufValueType::kBool;
  v.integer = value ? 1 : 0;
  Set(key, std::move(v));
}

void GgufWriter::SetStringArray(std::string_view key, std::vector<std::string> values) {
  GgufValue v;
  v.type = GgufValueType::kArray;
  v.elem_type = GgufValueType::kString;
  v.strings = std::move(values);
  Set(key, std::move(v));
}

void GgufWriter::SetFloat32Array(std::string_view key, std::vector<float> values) {
  GgufValue v;
  v.type = GgufValueType::kArray;
  v.elem_type = GgufValueType::kFloat32;
  v.reals.assign(values.begin(), values.end());
  Set(key, std::move(v));
}

void GgufWriter::SetInt32Array(std::string_view key, std::vector<int32_t> values) {
  GgufValue v;
  v.type = GgufValueType::kArray;
  v.elem_type = GgufValueType::kInt32;
  v.ints.assign(values.begin(), values.end());
  Set(key, std::move(v));
}

absl::Status GgufWriter::AddTensor(std::string name, GgmlType type, std::vector<int64_t> dims,
                                   FillFn fill) {
  const std::string where = absl::StrCat("gguf writer: tensor '", name, "': ");
  if (!GetGgmlTypeTraits(static_cast<uint32_t>(type)).has_value()) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, "unknown ggml type ", static_cast<uint32_t>(type)));
  }
  for (const PendingTensor& t : tensors_) {
    if (t.name == name) return absl::InvalidArgumentError(absl::StrCat(where, "duplicate name"));
  }
  if (dims.empty() || dims.size() > kMaxDims) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, dims.size(), " dimensions, expected 1 to ", kMaxDims));
  }
  int64_t elements = 1;
  for (size_t d = 0; d < dims.size(); ++d) {
    if (dims[d] <= 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, "dimension ", d, " is ", dims[d], " (must be positive)"));
    }
    if (__builtin_mul_overflow(elements, dims[d], &elements)) {
      return absl::InvalidArgumentError(absl::StrCat(where, "element count overflows int64"));
    }
  }
  const GgmlTypeTraits& traits = TraitsOf(type);
  if (dims[0] % traits.block_size != 0) {
    return absl::InvalidArgumentError(absl::StrCat(where, "dimension 0 (", dims[0],
                                                   ") is not a multiple of the ",
                                                   absl::string_view(traits.name.data(), traits.name.size()),
                                                   " block size ", traits.block_size));
  }
  int64_t size_bytes;
  if (__builtin_mul_overflow(elements / traits.block_size, traits.block_bytes, &size_bytes)) {
    return absl::InvalidArgumentError(absl::StrCat(where, "byte size overflows int64"));
  }
  tensors_.push_back(PendingTensor{std::move(name), type, std::move(dims),
                                   static_cast<uint64_t>(size_bytes), std::move(fill)});
  return absl::OkStatus();
}

absl::Status GgufWriter::AddTensorBytes(std::string name, GgmlType type,
                                        std::vector<int64_t> dims, std::string bytes) {
  const std::string tensor_name = name;
  if (absl::Status s = AddTensor(std::move(name), type, std::move(dims), nullptr); !s.ok()) {
    return s;
  }
  PendingTensor& added = tensors_.back();
  if (bytes.size() != added.size_bytes) {
    const uint64_t expected = added.size_bytes;
    tensors_.pop_back();
    return absl::InvalidArgumentError(absl::StrCat("gguf writer: tensor '", tensor_name, "': ",
                                                   bytes.size(), " bytes given, the shape needs ",
                                                   expected));
  }
  added.fill = [bytes = std::move(bytes)](uint8_t* data, size_t size) {
    std::memcpy(data, bytes.data(), size);
  };
  return absl::OkStatus();
}

absl::Status GgufWriter::WriteFile(const std::string& path) {
  if (alignment_ == 0 || (alignment_ & (alignment_ - 1)) != 0 ||
      alignment_ > std::numeric_limits<uint32_t>::max()) {
    return absl::InvalidArgumentError(
        absl::StrCat("gguf writer: alignment ", alignment_, " is not a 32-bit power of 2"));
  }
  // The reader finds the alignment only through this key, so it must agree with alignment_.
  std::vector<std::pair<std::string, GgufValue>> extra;
  if (const auto it = std::find_if(metadata_.begin(), metadata_.end(),
                                   [](const auto& kv) { return kv.first == kAlignmentKey; });
      it != metadata_.end()) {
    if (!it->second.IsInteger() || static_cast<uint64_t>(it->second.integer) != alignment_) {
      return absl::InvalidArgumentError(absl::StrCat(
          "gguf writer: metadata ", kAlignmentKey, " disagrees with the writer's alignment ",
          alignment_));
    }
  } else if (alignment_ != kDefaultAlignment) {
    GgufValue v;
    v.type = GgufValueType::kUint32;
    v.integer = static_cast<int64_t>(alignment_);
    extra.emplace_back(kAlignmentKey, std::move(v));
  }

  // Header, metadata and tensor infos are small; encode them in memory first.
  std::string head;
  Encoder enc(&head);
  enc.Put<uint32_t>(0x46554747);  // "GGUF"
  enc.Put<uint32_t>(kVersion);
  enc.Put<uint64_t>(tensors_.size());
  enc.Put<uint64_t>(metadata_.size() + extra.size());
  for (const auto* list : {&metadata_, &extra}) {
    for (const auto& [key, value] : *list) {
      enc.PutString(key);
      enc.Put<uint32_t>(static_cast<uint32_t>(value.type));
      if (absl::Status s = enc.PutValue(value); !s.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat("gguf writer: metadata '", key, "': ", s.message()));
      }
    }
  }
  uint64_t offset = 0;
  for (const PendingTensor& t : tensors_) {
    enc.PutString(t.name);
    enc.Put<uint32_t>(static_cast<uint32_t>(t.dims.size()));
    for (int64_t d : t.dims) enc.Put<uint64_t>(static_cast<uint64_t>(d));
    enc.Put<uint32_t>(static_cast<uint32_t>(t.type));
    enc.Put<uint64_t>(offset);
    offset += t.size_bytes + PaddingFor(t.size_bytes, alignment_);
  }
  if (!tensors_.empty()) head.append(PaddingFor(head.size(), alignment_), '\0');

  const std::string tmp_path = path + ".tmp";
  const int fd = ::open(tmp_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return absl::ErrnoToStatus(errno, absl::StrCat("gguf writer: cannot create ", tmp_path));
  FileSink sink(fd, tmp_path);
  absl::Status status = [&]() -> absl::Status {
    // Tensors smaller than the buffer are appended to `head` so that many small tensors become
    // few large writes; big ones flush it and go out directly.
    head.reserve(kBufferBytes);
    const std::string zeros(alignment_, '\0');
    // One buffer, as large as the largest tensor, is reused: allocating a fresh one per tensor
    // costs a page fault per 4 KiB, which made multi-GB writes several times slower.
    std::unique_ptr<uint8_t, FreeDeleter> buffer;
    uint64_t capacity = 0;
    for (const PendingTensor& t : tensors_) {
      if (t.size_bytes > capacity) {
        buffer.reset();  // release the old one before asking for the larger one
        buffer.reset(static_cast<uint8_t*>(std::malloc(t.size_bytes)));
        if (buffer == nullptr) {
          return absl::ResourceExhaustedError(absl::StrCat(
              "gguf writer: cannot allocate ", t.size_bytes, " bytes for tensor '", t.name, "'"));
        }
        capacity = t.size_bytes;
      }
      std::memset(buffer.get(), 0, t.size_bytes);
      if (t.fill) t.fill(buffer.get(), t.size_bytes);
      const size_t padding = PaddingFor(t.size_bytes, alignment_);
      if (head.size() + t.size_bytes + padding <= kBufferBytes) {
        head.append(reinterpret_cast<const char*>(buffer.get()), t.size_bytes);
        head.append(zeros, 0, padding);
        continue;
      }
      if (absl::Status s = sink.Write(head.data(), head.size()); !s.ok()) return s;
      head.clear();
      if (absl::Status s = sink.Write(buffer.get(), t.size_bytes); !s.ok()) return s;
      head.append(zeros, 0, padding);
    }
    if (absl::Status s = sink.Write(head.data(), head.size()); !s.ok()) return s;
    return sink.SyncAndClose();
  }();
  if (!status.ok()) {
    ::unlink(tmp_path.c_str());  // best effort: the error being returned matters more
    return status;
  }
  if (::rename(tmp_path.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp_path.c_str());
    return absl::ErrnoToStatus(err, absl::StrCat("gguf writer: rename to ", path));
  }
  // Make the rename itself durable.
  std::string dir = std::filesystem::path(path).parent_path().string();
  if (dir.empty()) dir = ".";
  const int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd >= 0) {
    const int rc = ::fsync(dir_fd);
    const int err = errno;
    ::close(dir_fd);
    if (rc != 0) return absl::ErrnoToStatus(err, absl::StrCat("gguf writer: fsync ", dir));
  }
  return absl::OkStatus();
}

}  // namespace memoria
