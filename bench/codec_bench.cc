// Memory codecs on synthetic K/V shaped like a Llama-3.2-1B memory (8 memory layers, 8 KV heads,
// head_dim 64): blob bytes per reference against raw dense fp16, and the error each codec adds to
// attention outputs. Prints a markdown table.
//
// Keys come from a fixed Gaussian model per (layer, head) with a low-rank component and a few
// heavy "outlier" channels with a large mean and spread, as pre-RoPE keys of real models have;
// held-out queries are drawn from the same model. Values are Gaussian with a low-rank component.
// The error is the relative L2 error of softmax(q K^T / sqrt(d)) V with decoded instead of
// original K and V, pooled over every query, head and layer.

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "memstore/codec.h"
#include "memstore/memory_blob.h"

namespace memoria {
namespace {

constexpr int32_t kLayers = 8;
constexpr int32_t kKvHeads = 8;
constexpr int32_t kHeadDim = 64;
constexpr int32_t kReferenceTokens = 128;  // R
constexpr int32_t kSparseTokens = 8;       // k
constexpr int32_t kDenseTokens = kReferenceTokens + 1;  // BOS + R
constexpr int32_t kReferences = 4;         // references measured per mode
constexpr int32_t kQueriesPerHead = 32;
constexpr int32_t kRank = 4;
constexpr int32_t kOutliers = 4;
constexpr uint32_t kModelSeed = 7;

// Raw dense fp16 K and V of one reference: R x layers x heads x head_dim x {K, V} x 2 bytes.
constexpr double kRawDenseFp16Bytes =
    double(kReferenceTokens) * kLayers * kKvHeads * kHeadDim * 2 * 2;

// The generative model of one (layer, head).
struct HeadModel {
  std::vector<float> key_mean;    // head_dim
  std::vector<float> key_sigma;   // head_dim
  std::vector<float> key_basis;   // head_dim x kRank
  std::vector<float> value_basis; // head_dim x kRank
};

class Generator {
 public:
  // The model depends on model_seed only, so generators that differ in sample_seed draw
  // independent samples (training data vs measured references) from the same distribution.
  Generator(uint32_t model_seed, uint32_t sample_seed) : rng_(model_seed) {
    std::uniform_int_distribution<int> channel(0, kHeadDim - 1);
    models_.resize(kLayers * kKvHeads);
    for (HeadModel& m : models_) {
      m.key_mean.assign(kHeadDim, 0.0f);
      m.key_sigma.assign(kHeadDim, 1.0f);
      for (int o = 0; o < kOutliers; ++o) {
        const int c = channel(rng_);
        m.key_mean[c] = (o % 2 ? -2.0f : 2.0f);
        m.key_sigma[c] = 3.0f;
      }
      m.key_basis.resize(kHeadDim * kRank);
      m.value_basis.resize(kHeadDim * kRank);
      for (float& v : m.key_basis) v = 0.5f * normal_(rng_);
      for (float& v : m.value_basis) v = 0.5f * normal_(rng_);
    }
    rng_.seed(sample_seed);
  }

  // Appends one key-like vector of head `h` (layer * kKvHeads + kv_head) to *out.
  void Key(int h, std::vector<float>* out) {
    const HeadModel& m = models_[h];
    float z[kRank];
    for (float& v : z) v = normal_(rng_);
    for (int c = 0; c < kHeadDim; ++c) {
      float x = m.key_mean[c] + m.key_sigma[c] * normal_(rng_);
      for (int r = 0; r < kRank; ++r) x += m.key_basis[c * kRank + r] * z[r];
      out->push_back(x);
    }
  }

  void Value(int h, std::vector<float>* out) {
    const HeadModel& m = models_[h];
    float z[kRank];
    for (float& v : z) v = normal_(rng_);
    for (int c = 0; c < kHeadDim; ++c) {
      float x = normal_(rng_);
      for (int r = 0; r < kRank; ++r) x += m.value_basis[c * kRank + r] * z[r];
      out->push_back(x);
    }
  }

  ReferenceKv Reference(int32_t tokens) {
    ReferenceKv memory;
    memory.head_dim = kHeadDim;
    memory.n_kv_heads = kKvHeads;
    for (int32_t l = 0; l < kLayers; ++l) memory.layers.push_back(l);
    memory.heads.resize(kLayers * kKvHeads);
    for (int h = 0; h < kLayers * kKvHeads; ++h) {
      ReferenceKv::Head& head = memory.heads[h];
      for (int32_t t = 0; t < tokens; ++t) {
        head.positions.push_back(tokens == kDenseTokens ? t : 1 + t * 13 % kReferenceTokens);
        Key(h, &head.keys);
        Value(h, &head.values);
      }
    }
    return memory;
  }

 private:
  std::mt19937 rng_;
  std::normal_distribution<float> normal_;
  std::vector<HeadModel> models_;
};

// softmax(q K^T / sqrt(d)) V for one query over `count` entries.
void Attend(const float* q, const float* keys, const float* values, int32_t count, float* out) {
  std::vector<float> w(count);
  const float scale = 1.0f / std::sqrt(float(kHeadDim));
  float max = -INFINITY;
  for (int32_t j = 0; j < count; ++j) {
    float s = 0;
    for (int c = 0; c < kHeadDim; ++c) s += q[c] * keys[j * kHeadDim + c];
    w[j] = s * scale;
    max = std::max(max, w[j]);
  }
  float sum = 0;
  for (float& v : w) sum += (v = std::exp(v - max));
  std::fill(out, out + kHeadDim, 0.0f);
  for (int32_t j = 0; j < count; ++j) {
    for (int c = 0; c < kHeadDim; ++c) out[c] += w[j] / sum * values[j * kHeadDim + c];
  }
}

struct Errors {
  double key_num = 0, key_den = 0, value_num = 0, value_den = 0, out_num = 0, out_den = 0;
};

void Accumulate(const std::vector<float>& x, const std::vector<float>& y, double* num,
                double* den) {
  for (size_t i = 0; i < x.size(); ++i) {
    *num += (double(x[i]) - y[i]) * (double(x[i]) - y[i]);
    *den += double(x[i]) * x[i];
  }
}

std::unique_ptr<VectorCodec> MakeCodec(CodecKind kind, int32_t subvectors, Generator* gen) {
  CodecOptions o;
  o.kind = kind;
  o.dim = kHeadDim;
  o.pq_subvectors = subvectors;
  o.pq_bits = 8;
  auto codec = VectorCodec::Create(o);
  if (!codec.ok()) {
    std::fprintf(stderr, "codec: %s\n", codec.status().ToString().c_str());
    std::exit(1);
  }
  if ((*codec)->NeedsTraining()) {
    // A store trains its codec once on keys and values of its first references.
    std::vector<float> train;
    for (int i = 0; i < 16384 / (2 * kLayers * kKvHeads); ++i) {
      for (int h = 0; h < kLayers * kKvHeads; ++h) {
        gen->Key(h, &train);
        gen->Value(h, &train);
      }
    }
    if (absl::Status s = (*codec)->Train(train); !s.ok()) {
      std::fprintf(stderr, "train: %s\n", s.ToString().c_str());
      std::exit(1);
    }
  }
  return std::move(*codec);
}

struct Row {
  std::string codec;
  const char* mode;
  size_t vector_bytes;
  double blob_bytes;
  Errors errors;
  double encode_us, decode_us;
};

Row Measure(const std::string& name, const VectorCodec& codec, int32_t tokens) {
  Generator gen(kModelSeed, 1);  // the same references and queries for every codec
  Row row{name, tokens == kDenseTokens ? "dense" : "k=8", codec.EncodedBytes(), 0, {}, 0, 0};
  for (int r = 0; r < kReferences; ++r) {
    const ReferenceKv memory = gen.Reference(tokens);
    auto t0 = std::chrono::steady_clock::now();
    const std::string blob = EncodeMemoryBlob(memory, codec);
    auto t1 = std::chrono::steady_clock::now();
    auto page = MemoryPage::Decode(blob, codec, kKvHeads, kHeadDim);
    auto t2 = std::chrono::steady_clock::now();
    if (!page.ok()) {
      std::fprintf(stderr, "decode: %s\n", page.status().ToString().c_str());
      std::exit(1);
    }
    row.blob_bytes += blob.size();
    row.encode_us += std::chrono::duration<double, std::micro>(t1 - t0).count();
    row.decode_us += std::chrono::duration<double, std::micro>(t2 - t1).count();

    std::vector<float> out(kHeadDim), decoded_out(kHeadDim);
    for (int h = 0; h < kLayers * kKvHeads; ++h) {
      const ReferenceKv::Head& a = memory.heads[h];
      const ReferenceKv::Head& b = (*page)->memory().heads[h];
      Accumulate(a.keys, b.keys, &row.errors.key_num, &row.errors.key_den);
      Accumulate(a.values, b.values, &row.errors.value_num, &row.errors.value_den);
      for (int i = 0; i < kQueriesPerHead; ++i) {
        std::vector<float> q;
        gen.Key(h, &q);
        Attend(q.data(), a.keys.data(), a.values.data(), tokens, out.data());
        Attend(q.data(), b.keys.data(), b.values.data(), tokens, decoded_out.data());
        Accumulate(out, decoded_out, &row.errors.out_num, &row.errors.out_den);
      }
    }
  }
  row.blob_bytes /= kReferences;
  row.encode_us /= kReferences;
  row.decode_us /= kReferences;
  return row;
}

int Main() {
  struct Config {
    std::string name;
    CodecKind kind;
    int32_t subvectors;
  };
  const Config configs[] = {
      {"f32", CodecKind::kF32, 0},      {"f16", CodecKind::kF16, 0},
      {"int8", CodecKind::kInt8, 0},    {"int4 (group 32)", CodecKind::kInt4, 0},
      {"pq 8x8b", CodecKind::kPq, 8},   {"pq 16x8b", CodecKind::kPq, 16},
  };
  std::printf("Synthetic Llama-3.2-1B-shaped memory: %d layers x %d KV heads x head_dim %d; "
              "raw dense fp16 = %.0f bytes/reference (R=%d).\n\n",
              kLayers, kKvHeads, kHeadDim, kRawDenseFp16Bytes, kReferenceTokens);
  std::printf("| codec | tokens/head | bytes/vector | blob bytes/ref | raw fp16 dense / blob | "
              "key rel err | value rel err | attn out rel L2 err | encode us/ref | "
              "decode us/ref |\n");
  std::printf("|---|---|---|---|---|---|---|---|---|---|\n");
  for (int32_t tokens : {kSparseTokens, kDenseTokens}) {
    for (const Config& c : configs) {
      Generator train_gen(kModelSeed, 2);  // PQ training data: same model, other draws
      auto codec = MakeCodec(c.kind, c.subvectors, &train_gen);
      const Row row = Measure(c.name, *codec, tokens);
      const Errors& e = row.errors;
      std::printf("| %s | %s | %zu | %.0f | %.1fx | %.2e | %.2e | %.2e | %.0f | %.0f |\n",
                  row.codec.c_str(), row.mode, row.vector_bytes, row.blob_bytes,
                  kRawDenseFp16Bytes / row.blob_bytes, std::sqrt(e.key_num / e.key_den),
                  std::sqrt(e.value_num / e.value_den), std::sqrt(e.out_num / e.out_den),
                  row.encode_us, row.decode_us);
    }
  }
  return 0;
}

}  // namespace
}  // namespace memoria

int main() { return memoria::Main(); }
