#include "memstore/fingerprint.h"

#include <cstring>

#include "absl/strings/str_format.h"

namespace memoria {
namespace {

// A fast 64-bit hash of a byte range: four independent multiply-rotate lanes over 32-byte
// stripes (memory-bound on large tensors), then a tail and a final avalanche. Stable across
// runs and machines (little-endian), which is all a fingerprint needs; not cryptographic.
uint64_t HashBytes(const uint8_t* p, size_t n, uint64_t seed) {
  constexpr uint64_t kMul = 0x9E3779B97F4A7C15ull;
  constexpr uint64_t kMul2 = 0xC2B2AE3D27D4EB4Full;
  auto rotl = [](uint64_t x, int r) { return (x << r) | (x >> (64 - r)); };
  uint64_t lane[4] = {seed ^ kMul, seed + kMul2, seed ^ (kMul2 << 1), seed - kMul};
  size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    for (int l = 0; l < 4; ++l) {
      uint64_t w;
      std::memcpy(&w, p + i + 8 * l, 8);
      lane[l] = rotl(lane[l] + w * kMul2, 31) * kMul;
    }
  }
  uint64_t h = rotl(lane[0], 1) + rotl(lane[1], 7) + rotl(lane[2], 12) + rotl(lane[3], 18) + n;
  for (; i < n; ++i) h = (h ^ p[i]) * kMul;
  h ^= h >> 33;
  h *= kMul2;
  h ^= h >> 29;
  return h;
}

}  // namespace

ModelFingerprint FingerprintOf(const Model& model) {
  const ModelConfig& c = model.config();
  ModelFingerprint f;
  f.n_layers = c.n_layers;
  f.n_kv_heads = c.n_kv_heads;
  f.head_dim = c.head_dim;
  f.description = c.Describe();
  uint64_t h = 0;
  for (const GgufTensorInfo& t : model.file().tensors()) {
    h = HashBytes(reinterpret_cast<const uint8_t*>(t.name.data()), t.name.size(), h);
    h = HashBytes(t.data, t.size_bytes, h);
  }
  f.tensor_hash = h;
  return f;
}

std::string ModelFingerprint::ToString() const {
  return absl::StrFormat("%s data=%016x", description, tensor_hash);
}

}  // namespace memoria
