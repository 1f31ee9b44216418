#include "engine/gguf/ggml_type.h"

#include <array>
#include <cassert>

#include "absl/strings/match.h"

namespace memoria {
namespace {

struct TypeEntry {
  GgmlType type;
  GgmlTypeTraits traits;
};

// Block layouts as ggml defines them: the k-quants pack 256 elements per super-block, the
// legacy quants 32 elements with one or two f16 scales in front of the quants.
constexpr std::array<TypeEntry, 20> kTypes = {{
    {GgmlType::kF32, {"f32", 1, 4}},
    {GgmlType::kF16, {"f16", 1, 2}},
    {GgmlType::kQ4_0, {"q4_0", 32, 18}},
    {GgmlType::kQ4_1, {"q4_1", 32, 20}},
    {GgmlType::kQ5_0, {"q5_0", 32, 22}},
    {GgmlType::kQ5_1, {"q5_1", 32, 24}},
    {GgmlType::kQ8_0, {"q8_0", 32, 34}},
    {GgmlType::kQ8_1, {"q8_1", 32, 36}},
    {GgmlType::kQ2_K, {"q2_K", 256, 84}},
    {GgmlType::kQ3_K, {"q3_K", 256, 110}},
    {GgmlType::kQ4_K, {"q4_K", 256, 144}},
    {GgmlType::kQ5_K, {"q5_K", 256, 176}},
    {GgmlType::kQ6_K, {"q6_K", 256, 210}},
    {GgmlType::kQ8_K, {"q8_K", 256, 292}},
    {GgmlType::kI8, {"i8", 1, 1}},
    {GgmlType::kI16, {"i16", 1, 2}},
    {GgmlType::kI32, {"i32", 1, 4}},
    {GgmlType::kI64, {"i64", 1, 8}},
    {GgmlType::kF64, {"f64", 1, 8}},
    {GgmlType::kBF16, {"bf16", 1, 2}},
}};

const TypeEntry* FindEntry(uint32_t type) {
  for (const TypeEntry& entry : kTypes) {
    if (static_cast<uint32_t>(entry.type) == type) return &entry;
  }
  return nullptr;
}

}  // namespace

std::optional<GgmlTypeTraits> GetGgmlTypeTraits(uint32_t type) {
  const TypeEntry* entry = FindEntry(type);
  if (entry == nullptr) return std::nullopt;
  return entry->traits;
}

const GgmlTypeTraits& TraitsOf(GgmlType type) {
  const TypeEntry* entry = FindEntry(static_cast<uint32_t>(type));
  assert(entry != nullptr && "TraitsOf called with a GgmlType outside the enum");
  return entry->traits;
}

size_t GgmlRowBytes(GgmlType type, int64_t n) {
  const GgmlTypeTraits& traits = TraitsOf(type);
  return static_cast<size_t>(n / traits.block_size) * static_cast<size_t>(traits.block_bytes);
}

std::optional<GgmlType> ParseGgmlType(std::string_view name) {
  for (const TypeEntry& entry : kTypes) {
    const std::string_view n = entry.traits.name;
    if (absl::EqualsIgnoreCase(absl::string_view(n.data(), n.size()),
                               absl::string_view(name.data(), name.size()))) {
      return entry.type;
    }
  }
  return std::nullopt;
}

}  // namespace memoria
