#ifndef MEMORIA_MEMSTORE_CODEC_H_
#define MEMORIA_MEMSTORE_CODEC_H_

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace memoria {

// How a store compresses the key and value vectors of its memories. Chosen when a store is
// created; fixed for its life.
enum class CodecKind : uint8_t {
  kF32 = 0,   // raw floats (tests, reference)
  kF16 = 1,   // IEEE half per element
  kInt8 = 2,  // int8 per element, one f32 scale per vector (symmetric, absmax)
  kInt4 = 3,  // int4 per element, one f16 scale per group of `group_size` elements
  kPq = 4,    // product quantization (FAISS ProductQuantizer) trained per store
};

const char* CodecName(CodecKind kind);
absl::StatusOr<CodecKind> ParseCodec(std::string_view name);  // "f32", "f16", "int8", "int4", "pq"

struct CodecOptions {
  CodecKind kind = CodecKind::kInt8;
  int32_t dim = 0;             // elements per vector (the model's head_dim)
  int32_t int4_group = 32;     // kInt4: elements per scale; must divide dim
  int32_t pq_subvectors = 8;   // kPq: sub-quantizers; must divide dim
  int32_t pq_bits = 8;         // kPq: bits per sub-quantizer code
};

// Encodes and decodes batches of `dim`-element vectors. Immutable once built (a PQ codec after
// Train); thread-safe. Decoding never trusts its input: a blob of the wrong size is DataLoss.
class VectorCodec {
 public:
  static absl::StatusOr<std::unique_ptr<VectorCodec>> Create(const CodecOptions& options);
  virtual ~VectorCodec() = default;

  const CodecOptions& options() const { return options_; }
  // Bytes one encoded vector takes.
  virtual size_t EncodedBytes() const = 0;
  // PQ needs training data (n x dim floats, n >= 256 x pq_subvectors recommended); other codecs
  // need none and return OK.
  virtual bool NeedsTraining() const { return false; }
  virtual absl::Status Train(std::span<const float> vectors) { return absl::OkStatus(); }
  // The trained state (PQ centroids) to persist, and its inverse; empty for other codecs.
  virtual std::string SerializeState() const { return {}; }
  virtual absl::Status LoadState(std::string_view state) { return absl::OkStatus(); }

  // Appends n encoded vectors (n x dim floats in) to *out.
  virtual void Encode(std::span<const float> vectors, std::string* out) const = 0;
  // Decodes n vectors into n x dim floats; DataLoss when bytes.size() != n * EncodedBytes().
  virtual absl::Status Decode(std::string_view bytes, int64_t n, float* out) const = 0;

 protected:
  explicit VectorCodec(const CodecOptions& options) : options_(options) {}
  CodecOptions options_;
};

}  // namespace memoria

#endif  // MEMORIA_MEMSTORE_CODEC_H_
