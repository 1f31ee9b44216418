#ifndef MEMORIA_ENGINE_GGUF_GGML_TYPE_H_
#define MEMORIA_ENGINE_GGUF_GGML_TYPE_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace memoria {

// Tensor element types, numbered as in the GGUF format (ggml's enum ggml_type).
// Only the types listed here can appear in a file we accept; others are rejected by name.
enum class GgmlType : uint32_t {
  kF32 = 0,
  kF16 = 1,
  kQ4_0 = 2,
  kQ4_1 = 3,
  kQ5_0 = 6,
  kQ5_1 = 7,
  kQ8_0 = 8,
  kQ8_1 = 9,
  kQ2_K = 10,
  kQ3_K = 11,
  kQ4_K = 12,
  kQ5_K = 13,
  kQ6_K = 14,
  kQ8_K = 15,
  kI8 = 24,
  kI16 = 25,
  kI32 = 26,
  kI64 = 27,
  kF64 = 28,
  kBF16 = 30,
};

struct GgmlTypeTraits {
  std::string_view name;  // "f32", "q4_K", ... as ggml spells it
  int64_t block_size;     // elements per block (1 for plain types)
  int64_t block_bytes;    // bytes per block
};

// Traits of a known type; nullopt for a number that is not a type we know the layout of.
std::optional<GgmlTypeTraits> GetGgmlTypeTraits(uint32_t type);
const GgmlTypeTraits& TraitsOf(GgmlType type);  // type must be known

// Bytes of one row of n elements; n must be a multiple of the block size (checked by callers).
size_t GgmlRowBytes(GgmlType type, int64_t n);

// Parses "f32", "q8_0", "q4_k" (case-insensitive); nullopt when unknown.
std::optional<GgmlType> ParseGgmlType(std::string_view name);

}  // namespace memoria

#endif  // MEMORIA_ENGINE_GGUF_GGML_TYPE_H_
