#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "engine/gguf/ggml_type.h"
#include "engine/gguf/gguf_file.h"
#include "engine/gguf/gguf_writer.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/test_support.h"

namespace memoria {
namespace {

using ::testing::HasSubstr;

constexpr uint64_t kHuge = uint64_t{1} << 60;

// ---------------------------------------------------------------------------------------------
// Hand-made GGUF bytes, so that each broken file differs from a valid one in exactly one field.

class Bytes {
 public:
  Bytes& U8(uint8_t v) { return Put(v); }
  Bytes& U32(uint32_t v) { return Put(v); }
  Bytes& U64(uint64_t v) { return Put(v); }
  Bytes& F32(float v) { return Put(v); }
  Bytes& Str(std::string_view s) {
    U64(s.size());
    data_.append(s);
    return *this;
  }
  Bytes& Raw(std::string_view s) {
    data_.append(s);
    return *this;
  }
  const std::string& str() const { return data_; }

 private:
  template <typename T>
  Bytes& Put(T v) {
    char b[sizeof(T)];
    std::memcpy(b, &v, sizeof(T));
    data_.append(b, sizeof(T));
    return *this;
  }
  std::string data_;
};

// One encoded metadata entry: key, value type, payload.
std::string Kv(std::string_view key, GgufValueType type, const Bytes& payload) {
  return Bytes().Str(key).U32(static_cast<uint32_t>(type)).Raw(payload.str()).str();
}
std::string KvU32(std::string_view key, uint32_t v) {
  return Kv(key, GgufValueType::kUint32, Bytes().U32(v));
}
std::string KvString(std::string_view key, std::string_view v) {
  return Kv(key, GgufValueType::kString, Bytes().Str(v));
}

struct TensorSpec {
  std::string name;
  std::vector<uint64_t> dims;
  uint32_t type;
  uint64_t offset;
};

struct FileSpec {
  std::string magic = "GGUF";
  uint32_t version = 3;
  std::optional<uint64_t> tensor_count;  // overrides tensors.size()
  std::optional<uint64_t> kv_count;      // overrides kvs.size()
  std::vector<std::string> kvs;
  std::vector<TensorSpec> tensors;
  uint64_t alignment = 32;  // padding written before the data section
  uint64_t data_bytes = 0;
};

std::string Build(const FileSpec& spec) {
  Bytes b;
  b.Raw(spec.magic).U32(spec.version);
  b.U64(spec.tensor_count.value_or(spec.tensors.size()));
  b.U64(spec.kv_count.value_or(spec.kvs.size()));
  for (const std::string& kv : spec.kvs) b.Raw(kv);
  for (const TensorSpec& t : spec.tensors) {
    b.Str(t.name).U32(static_cast<uint32_t>(t.dims.size()));
    for (uint64_t d : t.dims) b.U64(d);
    b.U32(t.type).U64(t.offset);
  }
  std::string out = b.str();
  if (!spec.tensors.empty()) out.append((spec.alignment - out.size() % spec.alignment) % spec.alignment, '\0');
  for (uint64_t i = 0; i < spec.data_bytes; ++i) out.push_back(static_cast<char>(i * 7 + 1));
  return out;
}

// A small valid file: a few metadata types, an f32 tensor (4x2: 32 bytes) and a q8_0 tensor
// (32x1: 34 bytes) at offset 32.
FileSpec ValidSpec() {
  FileSpec spec;
  spec.kvs = {
      KvString("general.architecture", "llama"),
      KvU32("llama.block_count", 2),
      Kv("tokenizer.ggml.tokens", GgufValueType::kArray,
         Bytes().U32(static_cast<uint32_t>(GgufValueType::kString)).U64(3).Str("a").Str("bc").Str("")),
      Kv("tokenizer.ggml.scores", GgufValueType::kArray,
         Bytes().U32(static_cast<uint32_t>(GgufValueType::kFloat32)).U64(2).F32(0.5f).F32(-1.0f)),
  };
  spec.tensors = {
      {"token_embd.weight", {4, 2}, static_cast<uint32_t>(GgmlType::kF32), 0},
      {"blk.0.attn_q.weight", {32, 1}, static_cast<uint32_t>(GgmlType::kQ8_0), 32},
  };
  spec.data_bytes = 32 + 34;
  return spec;
}

// Parses a private heap copy of exactly the given bytes, so that a sanitizer build catches any
// read past the end.
absl::StatusOr<std::unique_ptr<GgufFile>> ParseCopy(const std::string& bytes,
                                                   std::vector<uint8_t>* storage) {
  storage->assign(bytes.begin(), bytes.end());
  return GgufFile::Parse(storage->data(), storage->size());
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void WriteAll(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out << bytes;
}

// ---------------------------------------------------------------------------------------------
// Type traits.

TEST(GgmlTypeTest, TraitsOfEveryType) {
  struct Expected {
    GgmlType type;
    const char* name;
    int64_t block_size;
    int64_t block_bytes;
  };
  const Expected kTable[] = {
      {GgmlType::kF32, "f32", 1, 4},       {GgmlType::kF16, "f16", 1, 2},
      {GgmlType::kBF16, "bf16", 1, 2},     {GgmlType::kQ4_0, "q4_0", 32, 18},
      {GgmlType::kQ4_1, "q4_1", 32, 20},   {GgmlType::kQ5_0, "q5_0", 32, 22},
      {GgmlType::kQ5_1, "q5_1", 32, 24},   {GgmlType::kQ8_0, "q8_0", 32, 34},
      {GgmlType::kQ8_1, "q8_1", 32, 36},   {GgmlType::kQ2_K, "q2_K", 256, 84},
      {GgmlType::kQ3_K, "q3_K", 256, 110}, {GgmlType::kQ4_K, "q4_K", 256, 144},
      {GgmlType::kQ5_K, "q5_K", 256, 176}, {GgmlType::kQ6_K, "q6_K", 256, 210},
      {GgmlType::kQ8_K, "q8_K", 256, 292}, {GgmlType::kI8, "i8", 1, 1},
      {GgmlType::kI16, "i16", 1, 2},       {GgmlType::kI32, "i32", 1, 4},
      {GgmlType::kI64, "i64", 1, 8},       {GgmlType::kF64, "f64", 1, 8},
  };
  for (const Expected& e : kTable) {
    SCOPED_TRACE(e.name);
    std::optional<GgmlTypeTraits> traits = GetGgmlTypeTraits(static_cast<uint32_t>(e.type));
    ASSERT_TRUE(traits.has_value());
    EXPECT_EQ(traits->name, e.name);
    EXPECT_EQ(traits->block_size, e.block_size);
    EXPECT_EQ(traits->block_bytes, e.block_bytes);
    EXPECT_EQ(TraitsOf(e.type).block_bytes, e.block_bytes);
    EXPECT_EQ(GgmlRowBytes(e.type, e.block_size * 16), static_cast<size_t>(e.block_bytes * 16));
    EXPECT_EQ(ParseGgmlType(e.name), e.type);
  }
}

TEST(GgmlTypeTest, UnknownAndCaseInsensitive) {
  for (uint32_t removed : {4u, 5u, 16u, 23u, 29u, 31u, 1000u}) {
    EXPECT_FALSE(GetGgmlTypeTraits(removed).has_value()) << removed;
  }
  EXPECT_EQ(ParseGgmlType("Q4_k"), GgmlType::kQ4_K);
  EXPECT_EQ(ParseGgmlType("BF16"), GgmlType::kBF16);
  EXPECT_FALSE(ParseGgmlType("q4_2").has_value());
  EXPECT_FALSE(ParseGgmlType("").has_value());
  EXPECT_EQ(GgmlRowBytes(GgmlType::kQ4_K, 4096), 16u * 144u);
}

// ---------------------------------------------------------------------------------------------
// Writer/reader round trips.

GgufValue Scalar(GgufValueType type, int64_t integer) {
  GgufValue v;
  v.type = type;
  v.integer = integer;
  return v;
}

GgufValue Real(GgufValueType type, double real) {
  GgufValue v;
  v.type = type;
  v.real = real;
  return v;
}

GgufValue IntArray(GgufValueType elem, std::vector<int64_t> ints) {
  GgufValue v;
  v.type = GgufValueType::kArray;
  v.elem_type = elem;
  v.ints = std::move(ints);
  return v;
}

void ExpectSameValue(const GgufValue& got, const GgufValue& want) {
  ASSERT_EQ(got.type, want.type);
  if (want.type == GgufValueType::kArray) {
    ASSERT_EQ(got.elem_type, want.elem_type);
    ASSERT_EQ(got.ArraySize(), want.ArraySize());
    EXPECT_EQ(got.ints, want.ints);
    EXPECT_EQ(got.reals, want.reals);
    EXPECT_EQ(got.strings, want.strings);
    for (size_t i = 0; i < want.arrays.size(); ++i) ExpectSameValue(got.arrays[i], want.arrays[i]);
  } else if (want.type == GgufValueType::kString) {
    EXPECT_EQ(got.str, want.str);
  } else if (want.IsFloat()) {
    EXPECT_EQ(got.real, want.real);
  } else {
    EXPECT_EQ(got.integer, want.integer);
  }
}

TEST(GgufRoundTripTest, EveryMetadataType) {
  const std::string path = testing::TempDir("gguf_meta") + "/meta.gguf";
  std::vector<std::pair<std::string, GgufValue>> want = {
      {"u8", Scalar(GgufValueType::kUint8, 255)},
      {"i8", Scalar(GgufValueType::kInt8, -128)},
      {"u16", Scalar(GgufValueType::kUint16, 65535)},
      {"i16", Scalar(GgufValueType::kInt16, -32768)},
      {"u32", Scalar(GgufValueType::kUint32, 4294967295)},
      {"i32", Scalar(GgufValueType::kInt32, -2147483648LL)},
      {"u64", Scalar(GgufValueType::kUint64, -1)},  // UINT64_MAX, bit-cast
      {"i64", Scalar(GgufValueType::kInt64, std::numeric_limits<int64_t>::min())},
      {"f32", Real(GgufValueType::kFloat32, 0.25)},
      {"f64", Real(GgufValueType::kFloat64, 1e300)},
      {"bool", Scalar(GgufValueType::kBool, 1)},
      {"arr.u8", IntArray(GgufValueType::kUint8, {0, 1, 255})},
      {"arr.i8", IntArray(GgufValueType::kInt8, {-128, 127})},
      {"arr.u16", IntArray(GgufValueType::kUint16, {65535})},
      {"arr.i16", IntArray(GgufValueType::kInt16, {-32768, 1})},
      {"arr.u32", IntArray(GgufValueType::kUint32, {4294967295})},
      {"arr.i32", IntArray(GgufValueType::kInt32, {-5, 7})},
      {"arr.u64", IntArray(GgufValueType::kUint64, {-1, 3})},
      {"arr.i64", IntArray(GgufValueType::kInt64, {std::numeric_limits<int64_t>::max()})},
      {"arr.bool", IntArray(GgufValueType::kBool, {1, 0, 1})},
      {"arr.empty", IntArray(GgufValueType::kInt32, {})},
  };
  GgufValue f64s;
  f64s.type = GgufValueType::kArray;
  f64s.elem_type = GgufValueType::kFloat64;
  f64s.reals = {1.5, -2.25, 1e-300};
  want.emplace_back("arr.f64", f64s);
  GgufValue str;
  str.type = GgufValueType::kString;
  str.str = std::string("with\0nul and \xe2\x96\x81 utf8", 20);
  want.emplace_back("str", str);
  // Nested: [[1, 2], [], [3]] and [["x"], ["y", "z"]] inside [[...]].
  GgufValue nested;
  nested.type = GgufValueType::kArray;
  nested.elem_type = GgufValueType::kArray;
  nested.arrays = {IntArray(GgufValueType::kInt32, {1, 2}), IntArray(GgufValueType::kInt32, {}),
                   IntArray(GgufValueType::kInt32, {3})};
  want.emplace_back("arr.nested", nested);
  GgufValue strings_inner;
  strings_inner.type = GgufValueType::kArray;
  strings_inner.elem_type = GgufValueType::kString;
  strings_inner.strings = {"y", "z"};
  GgufValue deep;
  deep.type = GgufValueType::kArray;
  deep.elem_type = GgufValueType::kArray;
  GgufValue mid;
  mid.type = GgufValueType::kArray;
  mid.elem_type = GgufValueType::kArray;
  mid.arrays = {strings_inner};
  deep.arrays = {mid, mid};
  want.emplace_back("arr.deep", deep);

  GgufWriter writer;
  for (const auto& [key, value] : want) writer.Set(key, value);
  writer.SetString("s", "first");
  writer.SetString("s", "replaced");  // replaces in place, keeps the position
  writer.SetUint32("w.u32", 7);
  writer.SetInt32("w.i32", -7);
  writer.SetUint64("w.u64", 1ULL << 40);
  writer.SetFloat32("w.f32", 1.5f);
  writer.SetBool("w.bool", false);
  writer.SetStringArray("w.strs", {"a", "", "c"});
  writer.SetFloat32Array("w.f32s", {0.5f, -0.125f});
  writer.SetInt32Array("w.i32s", {-1, 0, 2147483647});
  ASSERT_TRUE(writer.WriteFile(path).ok());
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));

  absl::StatusOr<std::unique_ptr<GgufFile>> file = GgufFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status();
  const GgufFile& f = **file;
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.path(), path);
  EXPECT_TRUE(f.tensors().empty());
  ASSERT_EQ(f.metadata().size(), want.size() + 9);
  for (size_t i = 0; i < want.size(); ++i) {
    SCOPED_TRACE(want[i].first);
    EXPECT_EQ(f.metadata()[i].first, want[i].first);  // file order is insertion order
    ExpectSameValue(f.metadata()[i].second, want[i].second);
  }
  EXPECT_EQ(f.metadata()[want.size()].first, "s");
  EXPECT_EQ(*f.GetString("s"), "replaced");
  EXPECT_EQ(*f.GetUint("w.u32"), 7u);
  EXPECT_EQ(*f.GetInt("w.i32"), -7);
  EXPECT_EQ(*f.GetUint("w.u64"), 1ULL << 40);
  EXPECT_EQ(*f.GetFloat("w.f32"), 1.5);
  EXPECT_EQ(*f.GetBool("w.bool"), false);
  EXPECT_EQ(**f.GetStringArray("w.strs"), (std::vector<std::string>{"a", "", "c"}));
  EXPECT_EQ(*f.GetFloatArray("w.f32s"), (std::vector<float>{0.5f, -0.125f}));
  EXPECT_EQ(*f.GetInt32Array("w.i32s"), (std::vector<int32_t>{-1, 0, 2147483647}));
  EXPECT_EQ(*f.GetUint("u64"), std::numeric_limits<uint64_t>::max());
  EXPECT_EQ(*f.GetFloat("u32"), 4294967295.0);  // GetFloat accepts integers
  EXPECT_EQ(*f.GetInt("i64"), std::numeric_limits<int64_t>::min());
  EXPECT_EQ(*f.GetFloatArray("arr.i8"), (std::vector<float>{-128, 127}));
  EXPECT_TRUE(f.Find("bool")->integer == 1 && f.Has("arr.deep") && !f.Has("nope"));
  EXPECT_TRUE(f.Find("u8")->IsInteger());
  EXPECT_FALSE(f.Find("bool")->IsInteger());
  EXPECT_TRUE(f.Find("f64")->IsFloat());
}

TEST(GgufRoundTripTest, GetterErrorsNameKeyAndTypes) {
  const std::string path = testing::TempDir("gguf_getters") + "/g.gguf";
  GgufWriter writer;
  writer.SetUint32("count", 3);
  writer.SetInt32("neg", -1);
  writer.SetUint64("huge", std::numeric_limits<uint64_t>::max());
  writer.SetString("name", "x");
  writer.Set("big_ids", IntArray(GgufValueType::kInt64, {1, int64_t{1} << 40}));
  ASSERT_TRUE(writer.WriteFile(path).ok());
  absl::StatusOr<std::unique_ptr<GgufFile>> file = GgufFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status();
  const GgufFile& f = **file;

  absl::Status s = f.GetString("missing.key").status();
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(s.message(), HasSubstr("'missing.key'"));
  s = f.GetString("count").status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("'count' has type uint32, expected string"));
  s = f.GetStringArray("name").status();
  EXPECT_THAT(s.message(), HasSubstr("'name' has type string, expected array of string"));
  s = f.GetStringArray("big_ids").status();
  EXPECT_THAT(s.message(), HasSubstr("has type array of int64"));
  s = f.GetUint("neg").status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("'neg'"));
  s = f.GetInt("huge").status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("18446744073709551615"));
  s = f.GetBool("count").status();
  EXPECT_THAT(s.message(), HasSubstr("expected bool"));
  s = f.GetFloat("name").status();
  EXPECT_THAT(s.message(), HasSubstr("'name' has type string"));
  s = f.GetInt32Array("big_ids").status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("element 1 (1099511627776) does not fit int32"));
}

// Deterministic bytes that differ per tensor.
void Pattern(uint32_t seed, uint8_t* data, size_t size) {
  for (size_t i = 0; i < size; ++i) data[i] = static_cast<uint8_t>(i * 31 + seed * 17 + 5);
}

TEST(GgufRoundTripTest, EveryTensorTypeAndSize) {
  for (uint64_t alignment : {32u, 64u, 4096u}) {
    SCOPED_TRACE(alignment);
    const std::string path =
        testing::TempDir("gguf_tensors") + "/t" + std::to_string(alignment) + ".gguf";
    GgufWriter writer(alignment);
    writer.SetString("general.architecture", "test");
    std::vector<GgmlType> types;
    for (uint32_t t = 0; t < 64; ++t) {
      if (GetGgmlTypeTraits(t).has_value()) types.push_back(static_cast<GgmlType>(t));
    }
    ASSERT_EQ(types.size(), 20u);
    for (GgmlType type : types) {
      const GgmlTypeTraits& traits = TraitsOf(type);
      const uint32_t seed = static_cast<uint32_t>(type);
      ASSERT_TRUE(writer
                      .AddTensor(std::string("t.") + std::string(traits.name), type,
                                 {traits.block_size * 3, 5, 2},
                                 [seed](uint8_t* data, size_t size) {
                                   for (size_t i = 0; i < size; ++i) ASSERT_EQ(data[i], 0);
                                   Pattern(seed, data, size);
                                 })
                      .ok());
    }
    ASSERT_TRUE(writer.AddTensorBytes("raw", GgmlType::kI8, {3}, "xyz").ok());
    ASSERT_TRUE(writer.WriteFile(path).ok());

    absl::StatusOr<std::unique_ptr<GgufFile>> file = GgufFile::Open(path);
    ASSERT_TRUE(file.ok()) << file.status();
    const GgufFile& f = **file;
    EXPECT_EQ(f.alignment(), alignment);
    EXPECT_EQ(f.Has("general.alignment"), alignment != 32);
    ASSERT_EQ(f.tensors().size(), types.size() + 1);
    for (size_t i = 0; i < types.size(); ++i) {
      const GgufTensorInfo& info = f.tensors()[i];
      const GgmlTypeTraits& traits = TraitsOf(types[i]);
      SCOPED_TRACE(info.name);
      EXPECT_EQ(info.name, std::string("t.") + std::string(traits.name));
      EXPECT_EQ(info.type, types[i]);
      EXPECT_EQ(info.dims, (std::vector<int64_t>{traits.block_size * 3, 5, 2}));
      EXPECT_EQ(info.NumElements(), traits.block_size * 30);
      EXPECT_EQ(info.Rows(), 10);
      EXPECT_EQ(info.size_bytes, GgmlRowBytes(types[i], info.dims[0]) * 10);
      EXPECT_EQ(info.size_bytes, static_cast<uint64_t>(traits.block_bytes * 30));
      EXPECT_EQ(info.offset % alignment, 0u);
      EXPECT_EQ(reinterpret_cast<uintptr_t>(info.data) % alignment, 0u);
      std::vector<uint8_t> expected(info.size_bytes);
      Pattern(static_cast<uint32_t>(types[i]), expected.data(), expected.size());
      EXPECT_EQ(std::memcmp(info.data, expected.data(), expected.size()), 0);
      EXPECT_EQ(f.FindTensor(info.name), &info);
    }
    const GgufTensorInfo* raw = f.FindTensor("raw");
    ASSERT_NE(raw, nullptr);
    EXPECT_EQ(std::string(reinterpret_cast<const char*>(raw->data), 3), "xyz");
    EXPECT_EQ(f.FindTensor("absent"), nullptr);
  }
}

TEST(GgufWriterTest, RejectsBadTensors) {
  GgufWriter writer;
  ASSERT_TRUE(writer.AddTensor("a", GgmlType::kF32, {4}, nullptr).ok());
  absl::Status s = writer.AddTensor("a", GgmlType::kF32, {4}, nullptr);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("'a': duplicate name"));
  s = writer.AddTensor("zero", GgmlType::kF32, {4, 0}, nullptr);
  EXPECT_THAT(s.message(), HasSubstr("dimension 1 is 0"));
  s = writer.AddTensor("five", GgmlType::kF32, {1, 1, 1, 1, 1}, nullptr);
  EXPECT_THAT(s.message(), HasSubstr("5 dimensions"));
  s = writer.AddTensor("none", GgmlType::kF32, {}, nullptr);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  s = writer.AddTensor("q", GgmlType::kQ4_K, {128}, nullptr);
  EXPECT_THAT(s.message(), HasSubstr("not a multiple of the q4_K block size 256"));
  s = writer.AddTensor("ovf", GgmlType::kF32, {int64_t{1} << 40, int64_t{1} << 40}, nullptr);
  EXPECT_THAT(s.message(), HasSubstr("overflows"));
  s = writer.AddTensor("type", static_cast<GgmlType>(4), {32}, nullptr);
  EXPECT_THAT(s.message(), HasSubstr("unknown ggml type 4"));
  s = writer.AddTensorBytes("short", GgmlType::kF16, {4}, "abc");
  EXPECT_THAT(s.message(), HasSubstr("3 bytes given, the shape needs 8"));
  // A rejected AddTensorBytes leaves nothing behind: the name is free again.
  EXPECT_TRUE(writer.AddTensorBytes("short", GgmlType::kF16, {4}, "abcdefgh").ok());
}

TEST(GgufWriterTest, RejectsBadMetadataAndAlignment) {
  const std::string dir = testing::TempDir("gguf_writer_bad");
  GgufWriter writer;
  writer.Set("small", Scalar(GgufValueType::kUint8, 256));
  absl::Status s = writer.WriteFile(dir + "/a.gguf");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("'small'"));
  EXPECT_FALSE(std::filesystem::exists(dir + "/a.gguf"));
  EXPECT_FALSE(std::filesystem::exists(dir + "/a.gguf.tmp"));

  GgufWriter odd(48);
  EXPECT_EQ(odd.WriteFile(dir + "/b.gguf").code(), absl::StatusCode::kInvalidArgument);

  GgufWriter disagree(64);
  disagree.SetUint32("general.alignment", 32);
  EXPECT_THAT(disagree.WriteFile(dir + "/c.gguf").message(), HasSubstr("general.alignment"));

  GgufWriter no_dir;
  EXPECT_FALSE(no_dir.WriteFile(dir + "/missing/d.gguf").ok());
}

TEST(GgufWriterTest, OverwritesExistingFileAtomically) {
  const std::string path = testing::TempDir("gguf_overwrite") + "/m.gguf";
  WriteAll(path, "old contents");
  GgufWriter writer;
  writer.SetUint32("x", 1);
  ASSERT_TRUE(writer.WriteFile(path).ok());
  absl::StatusOr<std::unique_ptr<GgufFile>> file = GgufFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ(*(*file)->GetUint("x"), 1u);
}

// ---------------------------------------------------------------------------------------------
// Broken files.

TEST(GgufParseTest, HandMadeValidFileParses) {
  std::vector<uint8_t> storage;
  absl::StatusOr<std::unique_ptr<GgufFile>> file = ParseCopy(Build(ValidSpec()), &storage);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ((*file)->tensors().size(), 2u);
  EXPECT_EQ((*file)->tensors()[1].size_bytes, 34u);
  EXPECT_EQ(**(*file)->GetStringArray("tokenizer.ggml.tokens"),
            (std::vector<std::string>{"a", "bc", ""}));
  EXPECT_TRUE((*file)->path().empty());

  FileSpec v2 = ValidSpec();
  v2.version = 2;
  file = ParseCopy(Build(v2), &storage);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ((*file)->version(), 2u);
}

TEST(GgufParseTest, EveryTruncationIsDataLoss) {
  const std::string bytes = Build(ValidSpec());
  for (size_t n = 0; n < bytes.size(); ++n) {
    std::vector<uint8_t> storage;
    absl::StatusOr<std::unique_ptr<GgufFile>> file = ParseCopy(bytes.substr(0, n), &storage);
    ASSERT_FALSE(file.ok()) << "prefix of " << n << " bytes parsed";
    EXPECT_EQ(file.status().code(), absl::StatusCode::kDataLoss) << n << ": " << file.status();
    EXPECT_THAT(file.status().message(), HasSubstr("gguf: "));
  }
}

struct BrokenCase {
  const char* what;
  std::string bytes;
  absl::StatusCode code;
  std::string message;  // a substring the error must contain
};

std::vector<BrokenCase> BrokenCases() {
  using Code = absl::StatusCode;
  std::vector<BrokenCase> cases;
  auto add = [&](const char* what, const FileSpec& spec, Code code, std::string message) {
    cases.push_back({what, Build(spec), code, std::move(message)});
  };
  const uint32_t kF32 = static_cast<uint32_t>(GgmlType::kF32);
  const uint32_t kArray = static_cast<uint32_t>(GgufValueType::kArray);
  FileSpec s;

  s = ValidSpec(), s.magic = "GGUX";
  add("bad magic", s, Code::kInvalidArgument, "bad magic \"GGUX\"");
  s = ValidSpec(), s.version = 1;
  add("version 1", s, Code::kInvalidArgument, "version 1 is not supported");
  s = ValidSpec(), s.version = 4;
  add("version 4", s, Code::kInvalidArgument, "unsupported version 4");
  s = ValidSpec(), s.version = 0x03000000;
  add("big-endian", s, Code::kInvalidArgument, "big-endian");
  s = ValidSpec(), s.kv_count = kHuge;
  add("huge kv count", s, Code::kDataLoss, "metadata count 1152921504606846976");
  s = ValidSpec(), s.tensor_count = kHuge;
  add("huge tensor count", s, Code::kDataLoss, "tensor count 1152921504606846976");
  s = ValidSpec(), s.kvs[0] = Bytes().U64(kHuge).Raw("general.architecture").str();
  add("huge key length", s, Code::kDataLoss, "metadata key length 1152921504606846976");
  s = ValidSpec();
  s.kvs[0] = Kv("general.name", GgufValueType::kString, Bytes().U64(kHuge).Raw("x"));
  add("huge string length", s, Code::kDataLoss,
      "'general.name': string value length 1152921504606846976");
  s = ValidSpec();
  s.kvs[0] = Kv("big", GgufValueType::kArray, Bytes().U32(0).U64(kHuge));
  add("array count 2^60", s, Code::kInvalidArgument, "'big': array count 1152921504606846976");
  s = ValidSpec();
  s.kvs[0] = Kv("strs", GgufValueType::kArray, Bytes().U32(8).U64(1 << 20).Str("a"));
  add("array count beyond file", s, Code::kDataLoss, "'strs': array count 1048576 of string");
  {
    Bytes deep;
    for (int i = 0; i < 9; ++i) deep.U32(kArray).U64(1);
    deep.U32(0).U64(0);
    s = ValidSpec();
    s.kvs[0] = Kv("deep", GgufValueType::kArray, deep);
    add("nesting too deep", s, Code::kInvalidArgument, "'deep': arrays nested deeper than 8");
  }
  s = ValidSpec(), s.kvs[1] = Kv("odd", static_cast<GgufValueType>(13), Bytes().U32(0));
  add("unknown value type", s, Code::kInvalidArgument, "'odd': unknown value type 13");
  s = ValidSpec(), s.kvs[1] = Kv("odd", GgufValueType::kArray, Bytes().U32(99).U64(0));
  add("unknown element type", s, Code::kInvalidArgument, "'odd': unknown array element type 99");
  s = ValidSpec(), s.kvs.push_back(KvU32("llama.block_count", 3));
  add("duplicate key", s, Code::kInvalidArgument, "'llama.block_count': duplicate key");
  s = ValidSpec(), s.kvs.push_back(KvU32("", 3));
  add("empty key", s, Code::kInvalidArgument, "metadata entry 4 has an empty key");
  s = ValidSpec(), s.kvs.push_back(KvU32("general.alignment", 0));
  add("alignment 0", s, Code::kInvalidArgument, "general.alignment 0 is not a power of 2");
  s = ValidSpec(), s.kvs.push_back(KvU32("general.alignment", 48));
  add("alignment 48", s, Code::kInvalidArgument, "general.alignment 48 is not a power of 2");
  s = ValidSpec(), s.kvs.push_back(KvString("general.alignment", "32"));
  add("alignment string", s, Code::kInvalidArgument,
      "'general.alignment' has type string, expected an integer");
  s = ValidSpec(), s.kvs.push_back(KvU32("general.alignment", 64)), s.alignment = 64;
  add("offset misaligned for 64", s, Code::kInvalidArgument,
      "gguf: tensor 'blk.0.attn_q.weight': offset 32 is not a multiple of alignment 64");
  s = ValidSpec(), s.tensors[1].offset = 123;
  add("misaligned offset", s, Code::kInvalidArgument,
      "gguf: tensor 'blk.0.attn_q.weight': offset 123 is not a multiple of alignment 32");
  s = ValidSpec(), s.tensors[1].offset = 64;
  add("tensor past end", s, Code::kDataLoss,
      "tensor 'blk.0.attn_q.weight': data at offset 64 of 34 bytes runs past the end");
  s = ValidSpec(), s.tensors[1].offset = std::numeric_limits<uint64_t>::max() - 31;
  add("offset wraps", s, Code::kDataLoss, "runs past the end");
  s = ValidSpec(), s.tensors[0].dims = {};
  add("n_dims 0", s, Code::kInvalidArgument, "'token_embd.weight': n_dims 0 is outside [1, 4]");
  s = ValidSpec(), s.tensors[0].dims = {4, 1, 1, 1, 2};
  add("n_dims 5", s, Code::kInvalidArgument, "'token_embd.weight': n_dims 5 is outside [1, 4]");
  s = ValidSpec(), s.tensors[0].dims = {4, 0};
  add("zero dim", s, Code::kInvalidArgument, "'token_embd.weight': dimension 1 is 0");
  s = ValidSpec(), s.tensors[0].dims = {std::numeric_limits<uint64_t>::max(), 2};
  add("negative dim", s, Code::kInvalidArgument, "dimension 0 is -1 (must be positive)");
  s = ValidSpec(), s.tensors[0].dims = {uint64_t{1} << 32, uint64_t{1} << 32};
  add("element overflow", s, Code::kInvalidArgument, "element count overflows int64");
  s = ValidSpec(), s.tensors[0].dims = {uint64_t{1} << 31, uint64_t{1} << 31};
  s.tensors[0].type = static_cast<uint32_t>(GgmlType::kF64);
  add("byte size overflow", s, Code::kInvalidArgument, "byte size overflows");
  s = ValidSpec(), s.tensors[1].dims = {16, 2};
  add("row not whole blocks", s, Code::kInvalidArgument,
      "dimension 0 (16) is not a multiple of the q8_0 block size 32");
  s = ValidSpec(), s.tensors[0].type = 16;
  add("unknown tensor type", s, Code::kInvalidArgument,
      "'token_embd.weight': unknown or unsupported ggml type 16");
  s = ValidSpec(), s.tensors[1].name = "token_embd.weight";
  add("duplicate tensor", s, Code::kInvalidArgument, "'token_embd.weight': duplicate tensor name");
  s = ValidSpec(), s.tensors[0].name = std::string("bad\xff\x01name", 9);
  s.tensors[0].type = 99;
  add("binary name escaped", s, Code::kInvalidArgument, "tensor 'bad\\xff\\x01name'");
  s = ValidSpec(), s.tensors.push_back({"huge", {uint64_t{1} << 40}, kF32, 96});
  add("huge tensor", s, Code::kDataLoss, "'huge': data at offset 96 of 4398046511104 bytes");
  return cases;
}

TEST(GgufParseTest, BrokenFilesGiveNamedErrors) {
  for (const BrokenCase& c : BrokenCases()) {
    SCOPED_TRACE(c.what);
    std::vector<uint8_t> storage;
    absl::StatusOr<std::unique_ptr<GgufFile>> file = ParseCopy(c.bytes, &storage);
    ASSERT_FALSE(file.ok());
    EXPECT_EQ(file.status().code(), c.code) << file.status();
    EXPECT_THAT(file.status().message(), HasSubstr(c.message));
    // Every cut of a broken file fails too, without crashing.
    for (size_t n = 0; n < c.bytes.size(); n += 7) {
      EXPECT_FALSE(ParseCopy(c.bytes.substr(0, n), &storage).ok());
    }
  }
}

TEST(GgufParseTest, VocabOnlyFileNeedsNoPadding) {
  // llama.cpp's vocab files have no tensors and end right after the metadata.
  FileSpec spec = ValidSpec();
  spec.tensors.clear();
  spec.data_bytes = 0;
  std::vector<uint8_t> storage;
  absl::StatusOr<std::unique_ptr<GgufFile>> file = ParseCopy(Build(spec), &storage);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ(*(*file)->GetString("general.architecture"), "llama");
}

TEST(GgufOpenTest, MissingEmptyAndDirectory) {
  const std::string dir = testing::TempDir("gguf_open");
  absl::StatusOr<std::unique_ptr<GgufFile>> file = GgufFile::Open(dir + "/nope.gguf");
  EXPECT_EQ(file.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(file.status().message(), HasSubstr("nope.gguf"));

  WriteAll(dir + "/empty.gguf", "");
  file = GgufFile::Open(dir + "/empty.gguf");
  EXPECT_EQ(file.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(file.status().message(), HasSubstr("empty.gguf: file truncated reading magic"));

  file = GgufFile::Open(dir);
  EXPECT_EQ(file.status().code(), absl::StatusCode::kInvalidArgument);

  FileSpec spec = ValidSpec();
  spec.tensors[1].offset = 5;
  WriteAll(dir + "/bad.gguf", Build(spec));
  file = GgufFile::Open(dir + "/bad.gguf");
  EXPECT_EQ(file.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(file.status().message(),
              HasSubstr("gguf: " + dir + "/bad.gguf: tensor 'blk.0.attn_q.weight': offset 5"));

  WriteAll(dir + "/good.gguf", Build(ValidSpec()));
  file = GgufFile::Open(dir + "/good.gguf");
  ASSERT_TRUE(file.ok()) << file.status();
  const GgufTensorInfo* q = (*file)->FindTensor("blk.0.attn_q.weight");
  ASSERT_NE(q, nullptr);
  const std::string bytes = ReadAll(dir + "/good.gguf");
  EXPECT_EQ(std::memcmp(q->data, bytes.data() + bytes.size() - 34, 34), 0);
}

// ---------------------------------------------------------------------------------------------
// The real vocabulary files shipped with llama.cpp's tests.

TEST(GgufVocabTest, LlamaSpm) {
  MEMORIA_REQUIRE_SHARED(path, "ggml-vocab-llama-spm.gguf");
  absl::StatusOr<std::unique_ptr<GgufFile>> file = GgufFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status();
  const GgufFile& f = **file;
  EXPECT_EQ(f.version(), 3u);
  EXPECT_TRUE(f.tensors().empty());
  EXPECT_EQ(*f.GetString("general.architecture"), "llama");
  EXPECT_EQ(*f.GetString("tokenizer.ggml.model"), "llama");
  absl::StatusOr<const std::vector<std::string>*> tokens = f.GetStringArray("tokenizer.ggml.tokens");
  ASSERT_TRUE(tokens.ok()) << tokens.status();
  ASSERT_EQ((*tokens)->size(), 32000u);
  EXPECT_EQ((**tokens)[0], "<unk>");
  EXPECT_EQ((**tokens)[1], "<s>");
  EXPECT_EQ((**tokens)[2], "</s>");
  EXPECT_EQ((**tokens)[3], "<0x00>");
  EXPECT_EQ(*f.GetUint("llama.vocab_size"), 32000u);
  absl::StatusOr<std::vector<float>> scores = f.GetFloatArray("tokenizer.ggml.scores");
  ASSERT_TRUE(scores.ok()) << scores.status();
  EXPECT_EQ(scores->size(), 32000u);
  absl::StatusOr<std::vector<int32_t>> types = f.GetInt32Array("tokenizer.ggml.token_type");
  ASSERT_TRUE(types.ok()) << types.status();
  ASSERT_EQ(types->size(), 32000u);
  EXPECT_EQ((*types)[0], 2);
  EXPECT_EQ((*types)[1], 3);
  EXPECT_EQ((*types)[3], 6);
  EXPECT_EQ(*f.GetInt("tokenizer.ggml.bos_token_id"), 1);
  EXPECT_EQ(*f.GetInt("tokenizer.ggml.eos_token_id"), 2);
  EXPECT_EQ(*f.GetBool("tokenizer.ggml.add_bos_token"), true);
  EXPECT_EQ(*f.GetBool("tokenizer.ggml.add_eos_token"), false);
  EXPECT_NEAR(*f.GetFloat("llama.attention.layer_norm_rms_epsilon"), 1e-5, 1e-9);
}

TEST(GgufVocabTest, LlamaBpeAndGpt2HaveMerges) {
  struct Expected {
    const char* file;
    const char* model;
    size_t tokens;
    size_t merges;
    int64_t bos;
  };
  for (const Expected& e : {Expected{"ggml-vocab-llama-bpe.gguf", "gpt2", 128256, 280147, 128000},
                            Expected{"ggml-vocab-gpt-2.gguf", "gpt2", 50257, 50000, 50256}}) {
    SCOPED_TRACE(e.file);
    MEMORIA_REQUIRE_SHARED(path, e.file);
    absl::StatusOr<std::unique_ptr<GgufFile>> file = GgufFile::Open(path);
    ASSERT_TRUE(file.ok()) << file.status();
    const GgufFile& f = **file;
    EXPECT_EQ(*f.GetString("tokenizer.ggml.model"), e.model);
    EXPECT_EQ((*f.GetStringArray("tokenizer.ggml.tokens"))->size(), e.tokens);
    absl::StatusOr<const std::vector<std::string>*> merges =
        f.GetStringArray("tokenizer.ggml.merges");
    ASSERT_TRUE(merges.ok()) << merges.status();
    EXPECT_EQ((*merges)->size(), e.merges);
    EXPECT_NE((**merges)[0].find(' '), std::string::npos);  // "a b" pairs
    EXPECT_EQ(*f.GetInt("tokenizer.ggml.bos_token_id"), e.bos);
    EXPECT_EQ(f.GetInt32Array("tokenizer.ggml.token_type")->size(), e.tokens);
    EXPECT_EQ(f.GetStringArray("tokenizer.ggml.scores").status().code(),
              absl::StatusCode::kNotFound);
  }
}

TEST(GgufVocabTest, RewrittenVocabReadsBackTheSame) {
  MEMORIA_REQUIRE_SHARED(path, "ggml-vocab-llama-spm.gguf");
  absl::StatusOr<std::unique_ptr<GgufFile>> original = GgufFile::Open(path);
  ASSERT_TRUE(original.ok()) << original.status();
  GgufWriter writer;
  for (const auto& [key, value] : (*original)->metadata()) writer.Set(key, value);
  const std::string copy = testing::TempDir("gguf_vocab_copy") + "/copy.gguf";
  ASSERT_TRUE(writer.WriteFile(copy).ok());
  // Same metadata, no tensors: the file is byte-identical to llama.cpp's.
  EXPECT_EQ(ReadAll(copy), ReadAll(path));
}

}  // namespace
}  // namespace memoria
