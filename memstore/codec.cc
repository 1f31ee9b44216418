#include "memstore/codec.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <limits>

#include <faiss/impl/ProductQuantizer.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "engine/quant/fp16.h"

namespace memoria {

static_assert(std::endian::native == std::endian::little,
              "encoded vectors are little-endian and copied with memcpy");

namespace {

constexpr float kMaxFp16 = 65504.0f;

// Encoders cannot report errors, and a non-finite key or value would make attention NaN for every
// sequence that retrieves the memory, so they map NaN to 0 and infinities to the largest finite
// value the format holds. Decoders reject non-finite data as corruption.
inline float Sanitize(float x, float max_finite) {
  if (std::isnan(x)) return 0.0f;
  return std::clamp(x, -max_finite, max_finite);
}

inline float AbsMax(const float* x, int32_t n) {
  float m = 0.0f;
  for (int32_t i = 0; i < n; ++i) {
    float a = std::fabs(x[i]);
    if (a > m && std::isfinite(a)) m = a;
  }
  return m;
}

absl::Status CheckSize(std::string_view bytes, int64_t n, size_t per_vector) {
  if (n < 0 || bytes.size() != static_cast<uint64_t>(n) * per_vector) {
    return absl::DataLossError(absl::StrCat("codec: ", bytes.size(), " bytes cannot hold ", n,
                                            " vectors of ", per_vector, " bytes"));
  }
  return absl::OkStatus();
}

absl::Status NonFinite(const char* what, int64_t vector) {
  return absl::DataLossError(absl::StrCat("codec: non-finite ", what, " in vector ", vector));
}

[[noreturn]] void Die(const char* message) {
  std::fprintf(stderr, "memoria: %s\n", message);
  std::abort();
}

// Encode's input is the caller's own arrays, so a ragged one is a bug, not bad data.
void CheckWholeVectors(std::span<const float> vectors, int32_t dim) {
  if (vectors.size() % dim != 0) Die("VectorCodec::Encode: input is not a whole number of vectors");
}

// Codecs without trained state: a non-empty state means the store was written with another codec.
class StatelessCodec : public VectorCodec {
 public:
  absl::Status LoadState(std::string_view state) override {
    if (state.empty()) return absl::OkStatus();
    return absl::InvalidArgumentError(absl::StrCat("codec: ", CodecName(options_.kind),
                                                   " has no state, got ", state.size(),
                                                   " bytes"));
  }

 protected:
  using VectorCodec::VectorCodec;
};

// --- kF32: raw little-endian floats.
class F32Codec final : public StatelessCodec {
 public:
  explicit F32Codec(const CodecOptions& options) : StatelessCodec(options) {}

  size_t EncodedBytes() const override { return sizeof(float) * options_.dim; }

  void Encode(std::span<const float> vectors, std::string* out) const override {
    CheckWholeVectors(vectors, options_.dim);
    size_t start = out->size();
    out->resize(start + vectors.size() * sizeof(float));
    char* dst = out->data() + start;
    for (float x : vectors) {
      float v = Sanitize(x, std::numeric_limits<float>::max());
      std::memcpy(dst, &v, sizeof v);
      dst += sizeof v;
    }
  }

  absl::Status Decode(std::string_view bytes, int64_t n, float* out) const override {
    if (absl::Status s = CheckSize(bytes, n, EncodedBytes()); !s.ok()) return s;
    if (!bytes.empty()) std::memcpy(out, bytes.data(), bytes.size());
    const int64_t total = n * options_.dim;
    for (int64_t i = 0; i < total; ++i) {
      if (!std::isfinite(out[i])) return NonFinite("element", i / options_.dim);
    }
    return absl::OkStatus();
  }
};

// --- kF16: IEEE half per element.
class F16Codec final : public StatelessCodec {
 public:
  explicit F16Codec(const CodecOptions& options) : StatelessCodec(options) {}

  size_t EncodedBytes() const override { return sizeof(uint16_t) * options_.dim; }

  void Encode(std::span<const float> vectors, std::string* out) const override {
    CheckWholeVectors(vectors, options_.dim);
    size_t start = out->size();
    out->resize(start + vectors.size() * sizeof(uint16_t));
    char* dst = out->data() + start;
    for (float x : vectors) {
      uint16_t h = Fp32ToFp16(Sanitize(x, kMaxFp16));
      std::memcpy(dst, &h, sizeof h);
      dst += sizeof h;
    }
  }

  absl::Status Decode(std::string_view bytes, int64_t n, float* out) const override {
    if (absl::Status s = CheckSize(bytes, n, EncodedBytes()); !s.ok()) return s;
    const int64_t total = n * options_.dim;
    for (int64_t i = 0; i < total; ++i) {
      uint16_t h;
      std::memcpy(&h, bytes.data() + i * sizeof h, sizeof h);
      if ((h & 0x7C00u) == 0x7C00u) return NonFinite("element", i / options_.dim);
      out[i] = Fp16ToFp32(h);
    }
    return absl::OkStatus();
  }
};

// --- kInt8: per vector [f32 scale][dim x int8], x ~= q * scale with scale = absmax / 127.
class Int8Codec final : public StatelessCodec {
 public:
  explicit Int8Codec(const CodecOptions& options) : StatelessCodec(options) {}

  size_t EncodedBytes() const override { return sizeof(float) + options_.dim; }

  void Encode(std::span<const float> vectors, std::string* out) const override {
    CheckWholeVectors(vectors, options_.dim);
    const int32_t dim = options_.dim;
    const size_t n = vectors.size() / dim;
    size_t start = out->size();
    out->resize(start + n * EncodedBytes());
    char* dst = out->data() + start;
    for (size_t v = 0; v < n; ++v) {
      const float* x = vectors.data() + v * dim;
      float scale = AbsMax(x, dim) / 127.0f;
      std::memcpy(dst, &scale, sizeof scale);
      dst += sizeof scale;
      for (int32_t i = 0; i < dim; ++i) {
        // Divide rather than multiply by 1 / scale: a subnormal scale has no finite inverse.
        float q = scale > 0.0f
                      ? std::nearbyint(Sanitize(x[i], std::numeric_limits<float>::max()) / scale)
                      : 0.0f;
        dst[i] = static_cast<char>(static_cast<int8_t>(std::clamp(q, -127.0f, 127.0f)));
      }
      dst += dim;
    }
  }

  absl::Status Decode(std::string_view bytes, int64_t n, float* out) const override {
    if (absl::Status s = CheckSize(bytes, n, EncodedBytes()); !s.ok()) return s;
    const int32_t dim = options_.dim;
    const char* src = bytes.data();
    for (int64_t v = 0; v < n; ++v) {
      float scale;
      std::memcpy(&scale, src, sizeof scale);
      src += sizeof scale;
      if (!std::isfinite(scale)) return NonFinite("scale", v);
      for (int32_t i = 0; i < dim; ++i) {
        out[v * dim + i] = static_cast<float>(static_cast<int8_t>(src[i])) * scale;
      }
      src += dim;
    }
    return absl::OkStatus();
  }
};

// --- kInt4: per group of int4_group elements [f16 scale][group / 2 bytes], two elements per byte
// (even element in the low nibble), each stored as q + 8 with q in -7..7 and scale = absmax / 7.
// The symmetric range keeps zero exact and the absmax element within half a step; the unused
// nibble 0 (q = -8) still decodes, so any byte is valid.
class Int4Codec final : public StatelessCodec {
 public:
  explicit Int4Codec(const CodecOptions& options) : StatelessCodec(options) {}

  size_t EncodedBytes() const override {
    const int32_t groups = options_.dim / options_.int4_group;
    return groups * (sizeof(uint16_t) + options_.int4_group / 2);
  }

  void Encode(std::span<const float> vectors, std::string* out) const override {
    CheckWholeVectors(vectors, options_.dim);
    const int32_t group = options_.int4_group;
    const size_t groups = vectors.size() / group;
    size_t start = out->size();
    out->resize(start + groups * (sizeof(uint16_t) + group / 2));
    char* dst = out->data() + start;
    for (size_t g = 0; g < groups; ++g) {
      const float* x = vectors.data() + g * group;
      // The scale the decoder sees is the rounded half, so quantize against that one.
      uint16_t h = Fp32ToFp16(std::min(AbsMax(x, group) / 7.0f, kMaxFp16));
      float scale = Fp16ToFp32(h);
      std::memcpy(dst, &h, sizeof h);
      dst += sizeof h;
      const float inv = scale > 0.0f ? 1.0f / scale : 0.0f;
      for (int32_t i = 0; i < group; i += 2) {
        uint8_t lo = Level(x[i], inv);
        uint8_t hi = Level(x[i + 1], inv);
        *dst++ = static_cast<char>(lo | (hi << 4));
      }
    }
  }

  absl::Status Decode(std::string_view bytes, int64_t n, float* out) const override {
    if (absl::Status s = CheckSize(bytes, n, EncodedBytes()); !s.ok()) return s;
    const int32_t group = options_.int4_group;
    const int64_t groups = n * (options_.dim / group);
    const char* src = bytes.data();
    for (int64_t g = 0; g < groups; ++g) {
      uint16_t h;
      std::memcpy(&h, src, sizeof h);
      src += sizeof h;
      if ((h & 0x7C00u) == 0x7C00u) return NonFinite("scale", g * group / options_.dim);
      const float scale = Fp16ToFp32(h);
      float* y = out + g * group;
      for (int32_t i = 0; i < group; i += 2) {
        uint8_t b = static_cast<uint8_t>(*src++);
        y[i] = static_cast<float>(static_cast<int>(b & 0x0F) - 8) * scale;
        y[i + 1] = static_cast<float>(static_cast<int>(b >> 4) - 8) * scale;
      }
    }
    return absl::OkStatus();
  }

 private:
  static uint8_t Level(float x, float inv) {
    float q = std::nearbyint(Sanitize(x, std::numeric_limits<float>::max()) * inv);
    return static_cast<uint8_t>(static_cast<int>(std::clamp(q, -7.0f, 7.0f)) + 8);
  }
};

// --- kPq: FAISS ProductQuantizer. FAISS reports misuse by throwing; every call into it is wrapped
// so that no exception crosses this file. State layout (little-endian): u32 dim, u32 subvectors,
// u32 bits, then the centroid table (subvectors x 2^bits x dim/subvectors f32).
class PqCodec final : public VectorCodec {
 public:
  explicit PqCodec(const CodecOptions& options) : VectorCodec(options) {}

  absl::Status Init() {
    try {
      pq_ = faiss::ProductQuantizer(options_.dim, options_.pq_subvectors, options_.pq_bits);
      pq_.verbose = false;
      // FAISS warns on stderr below 39 training points per centroid; codec.h states what
      // training set to give, and a server's stderr is no place for the reminder.
      pq_.cp.min_points_per_centroid = 1;
    } catch (const std::exception& e) {
      return absl::InvalidArgumentError(absl::StrCat("codec: pq: ", e.what()));
    }
    return absl::OkStatus();
  }

  size_t EncodedBytes() const override { return pq_.code_size; }
  bool NeedsTraining() const override { return true; }

  absl::Status Train(std::span<const float> vectors) override {
    const size_t dim = options_.dim;
    if (vectors.size() % dim != 0) {
      return absl::InvalidArgumentError(absl::StrCat("codec: pq training data of ", vectors.size(),
                                                     " floats is not a multiple of dim ", dim));
    }
    const size_t n = vectors.size() / dim;
    if (n < pq_.ksub) {
      return absl::InvalidArgumentError(absl::StrCat("codec: pq training needs at least ",
                                                     pq_.ksub, " vectors (2^pq_bits), got ", n));
    }
    for (float x : vectors) {
      if (!std::isfinite(x)) {
        return absl::InvalidArgumentError("codec: pq training data is not finite");
      }
    }
    try {
      pq_.train(n, vectors.data());
    } catch (const std::exception& e) {
      return absl::InternalError(absl::StrCat("codec: pq training failed: ", e.what()));
    }
    trained_ = true;
    return absl::OkStatus();
  }

  std::string SerializeState() const override {
    if (!trained_) return {};
    std::string out;
    for (uint32_t v : {static_cast<uint32_t>(options_.dim),
                       static_cast<uint32_t>(options_.pq_subvectors),
                       static_cast<uint32_t>(options_.pq_bits)}) {
      out.append(reinterpret_cast<const char*>(&v), sizeof v);
    }
    out.append(reinterpret_cast<const char*>(pq_.centroids.data()),
               pq_.centroids.size() * sizeof(float));
    return out;
  }

  absl::Status LoadState(std::string_view state) override {
    constexpr size_t kHeader = 3 * sizeof(uint32_t);
    if (state.size() < kHeader) {
      return absl::DataLossError(absl::StrCat("codec: pq state of ", state.size(), " bytes"));
    }
    uint32_t header[3];
    std::memcpy(header, state.data(), kHeader);
    if (header[0] != static_cast<uint32_t>(options_.dim) ||
        header[1] != static_cast<uint32_t>(options_.pq_subvectors) ||
        header[2] != static_cast<uint32_t>(options_.pq_bits)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "codec: pq state is for dim=", header[0], " pq_subvectors=", header[1],
          " pq_bits=", header[2], ", codec has dim=", options_.dim, " pq_subvectors=",
          options_.pq_subvectors, " pq_bits=", options_.pq_bits));
    }
    const size_t floats = pq_.centroids.size();
    if (state.size() != kHeader + floats * sizeof(float)) {
      return absl::DataLossError(absl::StrCat("codec: pq state of ", state.size(),
                                              " bytes, expected ",
                                              kHeader + floats * sizeof(float)));
    }
    std::vector<float> centroids(floats);
    std::memcpy(centroids.data(), state.data() + kHeader, floats * sizeof(float));
    for (float c : centroids) {
      if (!std::isfinite(c)) return absl::DataLossError("codec: pq state: non-finite centroid");
    }
    pq_.centroids = std::move(centroids);
    trained_ = true;
    return absl::OkStatus();
  }

  void Encode(std::span<const float> vectors, std::string* out) const override {
    CheckWholeVectors(vectors, options_.dim);
    if (!trained_) Die("VectorCodec::Encode on a PQ codec that is not trained or loaded");
    const size_t dim = options_.dim;
    const size_t n = vectors.size() / dim;
    const float* x = vectors.data();
    std::vector<float> clean;
    if (!std::all_of(vectors.begin(), vectors.end(), [](float v) { return std::isfinite(v); })) {
      clean.resize(n * dim);
      for (size_t i = 0; i < clean.size(); ++i) {
        clean[i] = Sanitize(vectors[i], std::numeric_limits<float>::max());
      }
      x = clean.data();
    }
    size_t start = out->size();
    out->resize(start + n * pq_.code_size);
    // One vector at a time rather than compute_codes: that opens an OpenMP parallel region per
    // call, which costs milliseconds on a busy machine, and callers encode one head (a few to a
    // hundred vectors) at a time and parallelize across references themselves.
    uint8_t* codes = reinterpret_cast<uint8_t*>(out->data() + start);
    try {
      for (size_t i = 0; i < n; ++i) pq_.compute_code(x + i * dim, codes + i * pq_.code_size);
    } catch (const std::exception& e) {
      // Shapes are checked at Create and Train, so FAISS has no reason to throw here.
      Die(e.what());
    }
  }

  absl::Status Decode(std::string_view bytes, int64_t n, float* out) const override {
    if (!trained_) {
      return absl::FailedPreconditionError("codec: pq codec is not trained or loaded");
    }
    if (absl::Status s = CheckSize(bytes, n, EncodedBytes()); !s.ok()) return s;
    // Every bit pattern is a valid centroid index, and the centroids are finite (checked at
    // LoadState, produced by k-means on finite data at Train), so any bytes decode safely.
    try {
      pq_.decode(reinterpret_cast<const uint8_t*>(bytes.data()), out, n);
    } catch (const std::exception& e) {
      return absl::InternalError(absl::StrCat("codec: pq decode failed: ", e.what()));
    }
    return absl::OkStatus();
  }

 private:
  faiss::ProductQuantizer pq_;
  bool trained_ = false;
};

absl::Status ValidateOptions(const CodecOptions& o) {
  if (o.dim <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("codec: dim must be > 0, got ", o.dim));
  }
  switch (o.kind) {
    case CodecKind::kF32:
    case CodecKind::kF16:
    case CodecKind::kInt8:
      return absl::OkStatus();
    case CodecKind::kInt4:
      if (o.int4_group <= 0 || o.int4_group % 2 != 0 || o.dim % o.int4_group != 0) {
        return absl::InvalidArgumentError(absl::StrCat(
            "codec: int4_group must be even and divide dim ", o.dim, ", got ", o.int4_group));
      }
      return absl::OkStatus();
    case CodecKind::kPq:
      if (o.pq_subvectors <= 0 || o.dim % o.pq_subvectors != 0) {
        return absl::InvalidArgumentError(absl::StrCat(
            "codec: pq_subvectors must divide dim ", o.dim, ", got ", o.pq_subvectors));
      }
      if (o.pq_bits < 1 || o.pq_bits > 16) {
        return absl::InvalidArgumentError(
            absl::StrCat("codec: pq_bits must be in [1, 16], got ", o.pq_bits));
      }
      return absl::OkStatus();
  }
  return absl::InvalidArgumentError(
      absl::StrCat("codec: unknown kind ", static_cast<int>(o.kind)));
}

}  // namespace

const char* CodecName(CodecKind kind) {
  switch (kind) {
    case CodecKind::kF32: return "f32";
    case CodecKind::kF16: return "f16";
    case CodecKind::kInt8: return "int8";
    case CodecKind::kInt4: return "int4";
    case CodecKind::kPq: return "pq";
  }
  return "unknown";
}

absl::StatusOr<CodecKind> ParseCodec(std::string_view name) {
  for (CodecKind kind : {CodecKind::kF32, CodecKind::kF16, CodecKind::kInt8, CodecKind::kInt4,
                         CodecKind::kPq}) {
    if (name == CodecName(kind)) return kind;
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown codec \"", std::string(name),
                                                 "\" (expected f32, f16, int8, int4 or pq)"));
}

absl::StatusOr<std::unique_ptr<VectorCodec>> VectorCodec::Create(const CodecOptions& options) {
  if (absl::Status s = ValidateOptions(options); !s.ok()) return s;
  switch (options.kind) {
    case CodecKind::kF32: return std::make_unique<F32Codec>(options);
    case CodecKind::kF16: return std::make_unique<F16Codec>(options);
    case CodecKind::kInt8: return std::make_unique<Int8Codec>(options);
    case CodecKind::kInt4: return std::make_unique<Int4Codec>(options);
    case CodecKind::kPq: {
      auto codec = std::make_unique<PqCodec>(options);
      if (absl::Status s = codec->Init(); !s.ok()) return s;
      return codec;
    }
  }
  return absl::InvalidArgumentError("codec: unknown kind");
}

}  // namespace memoria
