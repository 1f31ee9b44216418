// Writes the small valid GGUF files that seed gguf_fuzzer: every metadata type, nested arrays, a
// custom alignment and one tiny tensor of each type. Usage: gguf_fuzz_seeds <output dir>.
// The files are named *.seed because the repository ignores *.gguf.

#include <cstdio>
#include <string>

#include "engine/gguf/ggml_type.h"
#include "engine/gguf/gguf_writer.h"

namespace memoria {
namespace {

GgufValue IntArray(GgufValueType elem, std::vector<int64_t> ints) {
  GgufValue v;
  v.type = GgufValueType::kArray;
  v.elem_type = elem;
  v.ints = std::move(ints);
  return v;
}

GgufValue Scalar(GgufValueType type, int64_t integer) {
  GgufValue v;
  v.type = type;
  v.integer = integer;
  return v;
}

absl::Status WriteMetadataSeed(const std::string& path) {
  GgufWriter writer;
  writer.SetString("general.architecture", "llama");
  writer.Set("u8", Scalar(GgufValueType::kUint8, 7));
  writer.Set("i8", Scalar(GgufValueType::kInt8, -7));
  writer.Set("u16", Scalar(GgufValueType::kUint16, 700));
  writer.Set("i16", Scalar(GgufValueType::kInt16, -700));
  writer.SetUint32("u32", 70000);
  writer.SetInt32("i32", -70000);
  writer.SetUint64("u64", ~uint64_t{0});
  writer.Set("i64", Scalar(GgufValueType::kInt64, -1));
  writer.SetFloat32("f32", 0.5f);
  GgufValue f64;
  f64.type = GgufValueType::kFloat64;
  f64.real = 2.5;
  writer.Set("f64", f64);
  writer.SetBool("bool", true);
  writer.SetStringArray("tokenizer.ggml.tokens", {"<s>", "a", "b"});
  writer.SetFloat32Array("tokenizer.ggml.scores", {0, -1, -2});
  writer.SetInt32Array("tokenizer.ggml.token_type", {3, 1, 1});
  GgufValue nested;
  nested.type = GgufValueType::kArray;
  nested.elem_type = GgufValueType::kArray;
  nested.arrays = {IntArray(GgufValueType::kUint8, {1, 2}), IntArray(GgufValueType::kUint8, {})};
  writer.Set("nested", nested);
  return writer.WriteFile(path);
}

absl::Status WriteTensorSeed(const std::string& path, uint64_t alignment) {
  GgufWriter writer(alignment);
  writer.SetString("general.architecture", "llama");
  for (uint32_t t = 0; t < 40; ++t) {
    if (!GetGgmlTypeTraits(t).has_value()) continue;
    const GgmlType type = static_cast<GgmlType>(t);
    const GgmlTypeTraits& traits = TraitsOf(type);
    absl::Status s = writer.AddTensor(std::string(traits.name), type, {traits.block_size},
                                      [t](uint8_t* data, size_t size) {
                                        for (size_t i = 0; i < size; ++i) data[i] = t + i;
                                      });
    if (!s.ok()) return s;
  }
  return writer.WriteFile(path);
}

absl::Status WriteSmallTensorSeed(const std::string& path) {
  GgufWriter writer;
  absl::Status s = writer.AddTensorBytes("blk.0.attn_q.weight", GgmlType::kF32, {2, 2},
                                         std::string(16, '\x01'));
  if (!s.ok()) return s;
  return writer.WriteFile(path);
}

}  // namespace
}  // namespace memoria

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s <output dir>\n", argv[0]);
    return 2;
  }
  const std::string dir = argv[1];
  for (const absl::Status& s : {memoria::WriteMetadataSeed(dir + "/metadata.seed"),
                                memoria::WriteTensorSeed(dir + "/all_types.seed", 32),
                                memoria::WriteTensorSeed(dir + "/all_types_align64.seed", 64),
                                memoria::WriteSmallTensorSeed(dir + "/one_tensor.seed")}) {
    if (!s.ok()) {
      std::fprintf(stderr, "%s\n", std::string(s.message()).c_str());
      return 1;
    }
  }
  return 0;
}
