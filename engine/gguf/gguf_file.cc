#include "engine/gguf/gguf_file.h"

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <limits>
#include <unordered_set>
#include <utility>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace memoria {

static_assert(std::endian::native == std::endian::little,
              "the GGUF reader loads little-endian fields with memcpy");

namespace {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" read as a little-endian u32
constexpr uint32_t kMaxDims = 4;         // ggml's GGML_MAX_DIMS
constexpr uint64_t kDefaultAlignment = 32;
constexpr uint64_t kMaxAlignment = uint64_t{1} << 30;
// Arrays of arrays are legal but nothing real nests deeply; the bound keeps recursion shallow.
constexpr int kMaxArrayDepth = 8;
// Far above any real array (vocabularies have ~10^5 tokens and merges). A corrupt count in a
// multi-GB file could otherwise make us decode gigabytes of tensor data as array elements.
constexpr uint64_t kMaxArrayCount = uint64_t{1} << 24;
// Vectors sized from counts in the file reserve at most this much up front and grow as records
// actually parse, so a lying count costs nothing before it is caught.
constexpr uint64_t kMaxReserve = 4096;
constexpr uint32_t kLastValueType = static_cast<uint32_t>(GgufValueType::kFloat64);

// Smallest encoding of each record, used to reject counts that cannot fit in the bytes left
// before anything is allocated for them.
constexpr uint64_t kMinKvBytes = 8 + 4 + 1;              // key length, value type, 1-byte value
constexpr uint64_t kMinTensorInfoBytes = 8 + 4 + 8 + 4 + 8;  // name len, n_dims, 1 dim, type, offset

// This abseil build has its own string_view type (ABSL_OPTION_USE_STD_STRING_VIEW is 0).
absl::string_view ToAbsl(std::string_view s) { return absl::string_view(s.data(), s.size()); }

// A name or key from the file as it appears in an error message: escaped (it may be binary
// garbage) and shortened.
std::string Quote(std::string_view s) {
  constexpr size_t kMaxShown = 96;
  std::string shown = absl::CHexEscape(ToAbsl(s.substr(0, kMaxShown)));
  if (s.size() > kMaxShown) shown += "...";
  return absl::StrCat("'", shown, "'");
}

absl::Status Prefixed(const absl::Status& status, std::string_view prefix) {
  return absl::Status(status.code(), absl::StrCat(ToAbsl(prefix), status.message()));
}

// Encoded size of one element of `type`; 0 for types without a fixed minimum.
uint64_t MinEncodedBytes(GgufValueType type) {
  switch (type) {
    case GgufValueType::kUint8:
    case GgufValueType::kInt8:
    case GgufValueType::kBool:
      return 1;
    case GgufValueType::kUint16:
    case GgufValueType::kInt16:
      return 2;
    case GgufValueType::kUint32:
    case GgufValueType::kInt32:
    case GgufValueType::kFloat32:
      return 4;
    case GgufValueType::kUint64:
    case GgufValueType::kInt64:
    case GgufValueType::kFloat64:
    case GgufValueType::kString:  // u64 length
      return 8;
    case GgufValueType::kArray:  // u32 element type + u64 count
      return 12;
  }
  return 1;
}

bool IsIntegerType(GgufValueType type) {
  switch (type) {
    case GgufValueType::kUint8:
    case GgufValueType::kInt8:
    case GgufValueType::kUint16:
    case GgufValueType::kInt16:
    case GgufValueType::kUint32:
    case GgufValueType::kInt32:
    case GgufValueType::kUint64:
    case GgufValueType::kInt64:
      return true;
    default:
      return false;
  }
}

bool IsFloatType(GgufValueType type) {
  return type == GgufValueType::kFloat32 || type == GgufValueType::kFloat64;
}

// Bounds-checked little-endian reads over the caller's bytes. Running out of bytes is DataLoss:
// from inside the file a truncated file and a length that overshoots it look the same.
class Cursor {
 public:
  Cursor(const uint8_t* data, size_t size) : data_(data), size_(size) {}

  size_t pos() const { return pos_; }
  uint64_t remaining() const { return size_ - pos_; }

  template <typename T>
  absl::Status Read(const char* what, T* out) {
    if (remaining() < sizeof(T)) return Truncated(what, sizeof(T));
    std::memcpy(out, data_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return absl::OkStatus();
  }

  // The view points into the caller's bytes.
  absl::Status ReadString(const char* what, std::string_view* out) {
    uint64_t length = 0;
    if (absl::Status s = Read(what, &length); !s.ok()) return s;
    if (length > remaining()) {
      return absl::DataLossError(absl::StrCat(what, " length ", length, " at offset ",
                                              pos_ - 8, " exceeds the ", remaining(),
                                              " bytes left in the file"));
    }
    *out = std::string_view(reinterpret_cast<const char*>(data_ + pos_), length);
    pos_ += length;
    return absl::OkStatus();
  }

 private:
  absl::Status Truncated(const char* what, size_t need) const {
    return absl::DataLossError(absl::StrCat("file truncated reading ", what, " at offset ", pos_,
                                            " (need ", need, " bytes, ", remaining(), " left)"));
  }

  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
};

absl::Status ReadValueType(Cursor& in, const char* what, GgufValueType* type) {
  uint32_t raw = 0;
  if (absl::Status s = in.Read(what, &raw); !s.ok()) return s;
  if (raw > kLastValueType) {
    return absl::InvalidArgumentError(absl::StrCat("unknown ", what, " ", raw));
  }
  *type = static_cast<GgufValueType>(raw);
  return absl::OkStatus();
}

template <typename T>
absl::Status ReadInteger(Cursor& in, int64_t* out) {
  T v = 0;
  if (absl::Status s = in.Read("integer value", &v); !s.ok()) return s;
  *out = static_cast<int64_t>(v);  // uint64 above INT64_MAX is bit-cast, as documented
  return absl::OkStatus();
}

// Reads one scalar of an integer type or bool into *out.
absl::Status ReadIntegral(Cursor& in, GgufValueType type, int64_t* out) {
  switch (type) {
    case GgufValueType::kUint8: return ReadInteger<uint8_t>(in, out);
    case GgufValueType::kInt8: return ReadInteger<int8_t>(in, out);
    case GgufValueType::kUint16: return ReadInteger<uint16_t>(in, out);
    case GgufValueType::kInt16: return ReadInteger<int16_t>(in, out);
    case GgufValueType::kUint32: return ReadInteger<uint32_t>(in, out);
    case GgufValueType::kInt32: return ReadInteger<int32_t>(in, out);
    case GgufValueType::kUint64: return ReadInteger<uint64_t>(in, out);
    case GgufValueType::kInt64: return ReadInteger<int64_t>(in, out);
    case GgufValueType::kBool: {
      uint8_t v = 0;
      if (absl::Status s = in.Read("bool value", &v); !s.ok()) return s;
      *out = v != 0 ? 1 : 0;
      return absl::OkStatus();
    }
    default:
      return absl::InternalError("ReadIntegral on a non-integer type");
  }
}

absl::Status ReadReal(Cursor& in, GgufValueType type, double* out) {
  if (type == GgufValueType::kFloat32) {
    float v = 0;
    if (absl::Status s = in.Read("float32 value", &v); !s.ok()) return s;
    *out = v;
    return absl::OkStatus();
  }
  return in.Read("float64 value", out);
}

absl::Status ReadValue(Cursor& in, GgufValueType type, int depth, GgufValue* out);

absl::Status ReadArray(Cursor& in, int depth, GgufValue* out) {
  if (depth >= kMaxArrayDepth) {
    return absl::InvalidArgumentError(
        absl::StrCat("arrays nested deeper than ", kMaxArrayDepth, " levels"));
  }
  if (absl::Status s = ReadValueType(in, "array element type", &out->elem_type); !s.ok()) {
    return s;
  }
  uint64_t count = 0;
  if (absl::Status s = in.Read("array count", &count); !s.ok()) return s;
  const uint64_t min_bytes = MinEncodedBytes(out->elem_type);
  if (count > kMaxArrayCount) {
    return absl::InvalidArgumentError(
        absl::StrCat("array count ", count, " exceeds the limit of ", kMaxArrayCount));
  }
  if (count > in.remaining() / min_bytes) {
    return absl::DataLossError(absl::StrCat(
        "array count ", count, " of ", ToAbsl(GgufValueTypeName(out->elem_type)),
        " needs at least ", min_bytes, " bytes each but only ", in.remaining(), " bytes are left"));
  }
  const GgufValueType elem = out->elem_type;
  if (elem == GgufValueType::kString) {
    out->strings.resize(count);
    for (std::string& str : out->strings) {
      std::string_view view;
      if (absl::Status s = in.ReadString("array string", &view); !s.ok()) return s;
      str.assign(view);
    }
  } else if (elem == GgufValueType::kArray) {
    out->arrays.resize(count);
    for (GgufValue& nested : out->arrays) {
      nested.type = GgufValueType::kArray;
      if (absl::Status s = ReadArray(in, depth + 1, &nested); !s.ok()) return s;
    }
  } else if (IsFloatType(elem)) {
    out->reals.resize(count);
    for (double& v : out->reals) {
      if (absl::Status s = ReadReal(in, elem, &v); !s.ok()) return s;
    }
  } else {
    out->ints.resize(count);
    for (int64_t& v : out->ints) {
      if (absl::Status s = ReadIntegral(in, elem, &v); !s.ok()) return s;
    }
  }
  return absl::OkStatus();
}

absl::Status ReadValue(Cursor& in, GgufValueType type, int depth, GgufValue* out) {
  out->type = type;
  if (type == GgufValueType::kString) {
    std::string_view view;
    if (absl::Status s = in.ReadString("string value", &view); !s.ok()) return s;
    out->str.assign(view);
    return absl::OkStatus();
  }
  if (type == GgufValueType::kArray) return ReadArray(in, depth, out);
  if (IsFloatType(type)) return ReadReal(in, type, &out->real);
  return ReadIntegral(in, type, &out->integer);
}

absl::Status TypeMismatch(std::string_view key, const GgufValue& value,
                          std::string_view expected) {
  std::string actual(GgufValueTypeName(value.type));
  if (value.type == GgufValueType::kArray) {
    absl::StrAppend(&actual, " of ", ToAbsl(GgufValueTypeName(value.elem_type)));
  }
  return absl::InvalidArgumentError(
      absl::StrCat("gguf: key ", Quote(key), " has type ", actual, ", expected ", ToAbsl(expected)));
}

// uint64 values above INT64_MAX are stored bit-cast, i.e. negative; range checks and messages
// must not mistake them for negative numbers.
bool IsHugeUnsigned(GgufValueType type, int64_t v) {
  return type == GgufValueType::kUint64 && v < 0;
}

std::string IntegerToString(GgufValueType type, int64_t v) {
  return IsHugeUnsigned(type, v) ? absl::StrCat(static_cast<uint64_t>(v)) : absl::StrCat(v);
}


// Magic, version and the two counts. Counts are checked against the bytes left so that nothing
// is reserved for records the file cannot hold.
absl::Status ReadHeader(Cursor& in, const uint8_t* data, uint32_t* version,
                        uint64_t* tensor_count, uint64_t* kv_count) {
  uint32_t magic = 0;
  if (absl::Status s = in.Read("magic", &magic); !s.ok()) return s;
  if (magic != kMagic) {
    return absl::InvalidArgumentError(absl::StrCat(
        "bad magic \"", absl::CHexEscape(absl::string_view(reinterpret_cast<const char*>(data), 4)),
        "\", not a GGUF file"));
  }
  if (absl::Status s = in.Read("version", version); !s.ok()) return s;
  if (*version == 1) {
    return absl::InvalidArgumentError(
        "version 1 is not supported (it predates 64-bit counts); re-convert the model with a "
        "current llama.cpp");
  }
  if (*version != 2 && *version != 3) {
    const uint32_t swapped = __builtin_bswap32(*version);
    if (swapped == 2 || swapped == 3) {
      return absl::InvalidArgumentError(absl::StrCat(
          "version field reads ", *version, ": a big-endian file, only little-endian GGUF is "
          "supported"));
    }
    return absl::InvalidArgumentError(
        absl::StrCat("unsupported version ", *version, " (expected 2 or 3)"));
  }
  if (absl::Status s = in.Read("tensor count", tensor_count); !s.ok()) return s;
  if (absl::Status s = in.Read("metadata count", kv_count); !s.ok()) return s;
  if (*kv_count > in.remaining() / kMinKvBytes) {
    return absl::DataLossError(absl::StrCat("metadata count ", *kv_count, " cannot fit in the ",
                                            in.remaining(), " bytes left in the file"));
  }
  if (*tensor_count > in.remaining() / kMinTensorInfoBytes) {
    return absl::DataLossError(absl::StrCat("tensor count ", *tensor_count, " cannot fit in the ",
                                            in.remaining(), " bytes left in the file"));
  }
  return absl::OkStatus();
}

// Returns errors already prefixed with "gguf: " and the entry at fault.
absl::Status ReadMetadata(Cursor& in, uint64_t count,
                          std::vector<std::pair<std::string, GgufValue>>* metadata) {
  // Keys are tracked as views into the input, which stay put while `metadata` grows.
  std::unordered_set<std::string_view> keys;
  metadata->reserve(std::min(count, kMaxReserve));
  for (uint64_t i = 0; i < count; ++i) {
    std::string_view key;
    if (absl::Status s = in.ReadString("metadata key", &key); !s.ok()) {
      return Prefixed(s, absl::StrCat("gguf: metadata entry ", i, ": "));
    }
    if (key.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("gguf: metadata entry ", i, " has an empty key"));
    }
    const std::string where = absl::StrCat("gguf: metadata key ", Quote(key), ": ");
    if (!keys.insert(key).second) {
      return absl::InvalidArgumentError(absl::StrCat(where, "duplicate key"));
    }
    GgufValue value;
    if (absl::Status s = ReadValueType(in, "value type", &value.type); !s.ok()) {
      return Prefixed(s, where);
    }
    if (absl::Status s = ReadValue(in, value.type, 0, &value); !s.ok()) return Prefixed(s, where);
    metadata->emplace_back(std::string(key), std::move(value));
  }
  return absl::OkStatus();
}

// The data alignment from general.alignment (nullptr: absent, the default applies).
absl::StatusOr<uint64_t> AlignmentOf(const GgufValue* value) {
  if (value == nullptr) return kDefaultAlignment;
  if (!value->IsInteger()) return TypeMismatch("general.alignment", *value, "an integer");
  // Negative and huge values fail the range check once viewed as unsigned.
  const uint64_t a = static_cast<uint64_t>(value->integer);
  if (a == 0 || a > kMaxAlignment || (a & (a - 1)) != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("gguf: general.alignment ", IntegerToString(value->type, value->integer),
                     " is not a power of 2 between 1 and ", kMaxAlignment));
  }
  return a;
}

// Reads and validates one tensor info; the data pointer is set later, once the data section's
// start is known. Errors name the tensor.
absl::Status ReadTensorInfo(Cursor& in, uint64_t index, uint64_t alignment,
                            std::unordered_set<std::string_view>* names, GgufTensorInfo* info) {
  std::string_view name;
  if (absl::Status s = in.ReadString("tensor name", &name); !s.ok()) {
    return Prefixed(s, absl::StrCat("gguf: tensor info ", index, ": "));
  }
  const std::string where = absl::StrCat("gguf: tensor ", Quote(name), ": ");
  if (!names->insert(name).second) {
    return absl::InvalidArgumentError(absl::StrCat(where, "duplicate tensor name"));
  }
  info->name.assign(name);

  // Shape.
  uint32_t n_dims = 0;
  if (absl::Status s = in.Read("n_dims", &n_dims); !s.ok()) return Prefixed(s, where);
  if (n_dims == 0 || n_dims > kMaxDims) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, "n_dims ", n_dims, " is outside [1, ", kMaxDims, "]"));
  }
  info->dims.resize(n_dims);
  int64_t elements = 1;
  for (uint32_t d = 0; d < n_dims; ++d) {
    uint64_t dim = 0;
    if (absl::Status s = in.Read("dimension", &dim); !s.ok()) return Prefixed(s, where);
    if (dim == 0 || dim > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return absl::InvalidArgumentError(absl::StrCat(
          where, "dimension ", d, " is ", static_cast<int64_t>(dim), " (must be positive)"));
    }
    info->dims[d] = static_cast<int64_t>(dim);
    if (__builtin_mul_overflow(elements, info->dims[d], &elements)) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, "element count overflows int64 at dimension ", d));
    }
  }

  // Type and byte size.
  uint32_t raw_type = 0;
  if (absl::Status s = in.Read("ggml type", &raw_type); !s.ok()) return Prefixed(s, where);
  const std::optional<GgmlTypeTraits> traits = GetGgmlTypeTraits(raw_type);
  if (!traits.has_value()) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, "unknown or unsupported ggml type ", raw_type));
  }
  info->type = static_cast<GgmlType>(raw_type);
  if (info->dims[0] % traits->block_size != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        where, "dimension 0 (", info->dims[0], ") is not a multiple of the ",
        ToAbsl(traits->name), " block size ", traits->block_size));
  }
  int64_t size_bytes = 0;
  if (__builtin_mul_overflow(elements / traits->block_size, traits->block_bytes, &size_bytes)) {
    return absl::InvalidArgumentError(absl::StrCat(where, "byte size overflows int64"));
  }
  info->size_bytes = static_cast<uint64_t>(size_bytes);

  // Offset.
  if (absl::Status s = in.Read("offset", &info->offset); !s.ok()) return Prefixed(s, where);
  if (info->offset % alignment != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        where, "offset ", info->offset, " is not a multiple of alignment ", alignment));
  }
  return absl::OkStatus();
}

}  // namespace

std::string_view GgufValueTypeName(GgufValueType type) {
  switch (type) {
    case GgufValueType::kUint8: return "uint8";
    case GgufValueType::kInt8: return "int8";
    case GgufValueType::kUint16: return "uint16";
    case GgufValueType::kInt16: return "int16";
    case GgufValueType::kUint32: return "uint32";
    case GgufValueType::kInt32: return "int32";
    case GgufValueType::kFloat32: return "float32";
    case GgufValueType::kBool: return "bool";
    case GgufValueType::kString: return "string";
    case GgufValueType::kArray: return "array";
    case GgufValueType::kUint64: return "uint64";
    case GgufValueType::kInt64: return "int64";
    case GgufValueType::kFloat64: return "float64";
  }
  return "unknown";
}

bool GgufValue::IsInteger() const { return IsIntegerType(type); }
bool GgufValue::IsFloat() const { return IsFloatType(type); }

size_t GgufValue::ArraySize() const {
  if (type != GgufValueType::kArray) return 0;
  if (elem_type == GgufValueType::kString) return strings.size();
  if (elem_type == GgufValueType::kArray) return arrays.size();
  if (IsFloatType(elem_type)) return reals.size();
  return ints.size();
}

int64_t GgufTensorInfo::NumElements() const {
  int64_t n = 1;
  for (int64_t d : dims) n *= d;
  return n;
}

int64_t GgufTensorInfo::Rows() const {
  int64_t n = 1;
  for (size_t i = 1; i < dims.size(); ++i) n *= dims[i];
  return n;
}

absl::StatusOr<std::unique_ptr<GgufFile>> GgufFile::Open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return absl::ErrnoToStatus(errno, absl::StrCat("gguf: cannot open ", path));
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    return absl::ErrnoToStatus(err, absl::StrCat("gguf: cannot stat ", path));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return absl::InvalidArgumentError(absl::StrCat("gguf: ", path, " is not a regular file"));
  }
  const size_t size = static_cast<size_t>(st.st_size);
  void* mapping = nullptr;
  if (size > 0) {  // mmap rejects empty lengths; Parse reports the empty file as truncated
    mapping = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (mapping == MAP_FAILED) {
      const int err = errno;
      ::close(fd);
      return absl::ErrnoToStatus(err, absl::StrCat("gguf: cannot mmap ", path));
    }
  }
  ::close(fd);  // the mapping keeps the file referenced

  absl::StatusOr<std::unique_ptr<GgufFile>> file =
      Parse(static_cast<const uint8_t*>(mapping), size);
  if (!file.ok()) {
    if (mapping != nullptr) ::munmap(mapping, size);
    // "gguf: <what>" becomes "gguf: <path>: <what>".
    absl::string_view message = file.status().message();
    absl::ConsumePrefix(&message, "gguf: ");
    return absl::Status(file.status().code(), absl::StrCat("gguf: ", path, ": ", message));
  }
  (*file)->path_ = path;
  (*file)->mapping_ = mapping;
  (*file)->mapping_size_ = size;
  return file;
}

GgufFile::~GgufFile() {
  if (mapping_ != nullptr) ::munmap(mapping_, mapping_size_);
}

absl::StatusOr<std::unique_ptr<GgufFile>> GgufFile::Parse(const uint8_t* data, size_t size) {
  std::unique_ptr<GgufFile> file(new GgufFile());
  Cursor in(data, size);
  uint64_t tensor_count = 0;
  uint64_t kv_count = 0;
  if (absl::Status s = ReadHeader(in, data, &file->version_, &tensor_count, &kv_count); !s.ok()) {
    return Prefixed(s, "gguf: ");
  }
  if (absl::Status s = ReadMetadata(in, kv_count, &file->metadata_); !s.ok()) return s;
  absl::StatusOr<uint64_t> alignment = AlignmentOf(file->Find("general.alignment"));
  if (!alignment.ok()) return alignment.status();
  file->alignment_ = *alignment;

  // Names are tracked as views into `data`, like the metadata keys.
  std::unordered_set<std::string_view> names;
  file->tensors_.reserve(std::min(tensor_count, kMaxReserve));
  for (uint64_t i = 0; i < tensor_count; ++i) {
    GgufTensorInfo info;
    if (absl::Status s = ReadTensorInfo(in, i, *alignment, &names, &info); !s.ok()) return s;
    file->tensors_.push_back(std::move(info));
  }

  // The data section starts at the next multiple of the alignment. A file without tensors may
  // end before that padding (llama.cpp's vocab-only files do).
  const uint64_t data_start = (in.pos() + *alignment - 1) / *alignment * *alignment;
  const uint64_t data_size = size > data_start ? size - data_start : 0;
  for (GgufTensorInfo& info : file->tensors_) {
    if (info.offset > data_size || info.size_bytes > data_size - info.offset) {
      return absl::DataLossError(absl::StrCat(
          "gguf: tensor ", Quote(info.name), ": data at offset ", info.offset, " of ",
          info.size_bytes, " bytes runs past the end of the file (the data section at ",
          data_start, " holds ", data_size, " bytes)"));
    }
    info.data = data + data_start + info.offset;
  }
  return file;
}

const GgufValue* GgufFile::Find(std::string_view key) const {
  for (const auto& [k, v] : metadata_) {
    if (k == key) return &v;
  }
  return nullptr;
}

const GgufTensorInfo* GgufFile::FindTensor(std::string_view name) const {
  for (const GgufTensorInfo& info : tensors_) {
    if (info.name == name) return &info;
  }
  return nullptr;
}

namespace {

absl::StatusOr<const GgufValue*> Lookup(const GgufFile& file, std::string_view key) {
  const GgufValue* value = file.Find(key);
  if (value == nullptr) {
    return absl::NotFoundError(absl::StrCat("gguf: key ", Quote(key), " not found"));
  }
  return value;
}

}  // namespace

absl::StatusOr<std::string> GgufFile::GetString(std::string_view key) const {
  absl::StatusOr<const GgufValue*> value = Lookup(*this, key);
  if (!value.ok()) return value.status();
  if ((*value)->type != GgufValueType::kString) return TypeMismatch(key, **value, "string");
  return (*value)->str;
}

absl::StatusOr<int64_t> GgufFile::GetInt(std::string_view key) const {
  absl::StatusOr<const GgufValue*> value = Lookup(*this, key);
  if (!value.ok()) return value.status();
  const GgufValue& v = **value;
  if (!v.IsInteger()) return TypeMismatch(key, v, "an integer");
  if (IsHugeUnsigned(v.type, v.integer)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "gguf: key ", Quote(key), ": value ", IntegerToString(v.type, v.integer),
        " does not fit int64"));
  }
  return v.integer;
}

absl::StatusOr<uint64_t> GgufFile::GetUint(std::string_view key) const {
  absl::StatusOr<const GgufValue*> value = Lookup(*this, key);
  if (!value.ok()) return value.status();
  const GgufValue& v = **value;
  if (!v.IsInteger()) return TypeMismatch(key, v, "an integer");
  if (v.integer < 0 && v.type != GgufValueType::kUint64) {
    return absl::InvalidArgumentError(absl::StrCat(
        "gguf: key ", Quote(key), ": value ", v.integer, " is negative, expected unsigned"));
  }
  return static_cast<uint64_t>(v.integer);
}

absl::StatusOr<double> GgufFile::GetFloat(std::string_view key) const {
  absl::StatusOr<const GgufValue*> value = Lookup(*this, key);
  if (!value.ok()) return value.status();
  const GgufValue& v = **value;
  if (v.IsFloat()) return v.real;
  if (v.IsInteger()) {
    return v.type == GgufValueType::kUint64 ? static_cast<double>(static_cast<uint64_t>(v.integer))
                                            : static_cast<double>(v.integer);
  }
  return TypeMismatch(key, v, "a number");
}

absl::StatusOr<bool> GgufFile::GetBool(std::string_view key) const {
  absl::StatusOr<const GgufValue*> value = Lookup(*this, key);
  if (!value.ok()) return value.status();
  if ((*value)->type != GgufValueType::kBool) return TypeMismatch(key, **value, "bool");
  return (*value)->integer != 0;
}

absl::StatusOr<const std::vector<std::string>*> GgufFile::GetStringArray(
    std::string_view key) const {
  absl::StatusOr<const GgufValue*> value = Lookup(*this, key);
  if (!value.ok()) return value.status();
  const GgufValue& v = **value;
  if (v.type != GgufValueType::kArray || v.elem_type != GgufValueType::kString) {
    return TypeMismatch(key, v, "array of string");
  }
  return &v.strings;
}

absl::StatusOr<std::vector<float>> GgufFile::GetFloatArray(std::string_view key) const {
  absl::StatusOr<const GgufValue*> value = Lookup(*this, key);
  if (!value.ok()) return value.status();
  const GgufValue& v = **value;
  if (v.type != GgufValueType::kArray ||
      !(IsFloatType(v.elem_type) || IsIntegerType(v.elem_type))) {
    return TypeMismatch(key, v, "array of numbers");
  }
  std::vector<float> out;
  if (IsFloatType(v.elem_type)) {
    out.assign(v.reals.begin(), v.reals.end());
  } else {
    out.reserve(v.ints.size());
    for (int64_t x : v.ints) {
      out.push_back(IsHugeUnsigned(v.elem_type, x) ? static_cast<float>(static_cast<uint64_t>(x))
                                                   : static_cast<float>(x));
    }
  }
  return out;
}

absl::StatusOr<std::vector<int32_t>> GgufFile::GetInt32Array(std::string_view key) const {
  absl::StatusOr<const GgufValue*> value = Lookup(*this, key);
  if (!value.ok()) return value.status();
  const GgufValue& v = **value;
  if (v.type != GgufValueType::kArray || !IsIntegerType(v.elem_type)) {
    return TypeMismatch(key, v, "array of integers");
  }
  std::vector<int32_t> out;
  out.reserve(v.ints.size());
  for (size_t i = 0; i < v.ints.size(); ++i) {
    const int64_t x = v.ints[i];
    if (IsHugeUnsigned(v.elem_type, x) || x < std::numeric_limits<int32_t>::min() ||
        x > std::numeric_limits<int32_t>::max()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "gguf: key ", Quote(key), ": element ", i, " (", IntegerToString(v.elem_type, x),
          ") does not fit int32"));
    }
    out.push_back(static_cast<int32_t>(x));
  }
  return out;
}

}  // namespace memoria
