#include "engine/model/random_model.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <memory>
#include <numbers>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "engine/gguf/gguf_file.h"
#include "engine/gguf/gguf_writer.h"
#include "engine/quant/quant.h"

namespace memoria {
namespace {

// Elements generated per task: large enough that the per-task seeding and scheduling cost
// nothing, small enough that a 2-core machine balances the tensors of a tiny model too. Rows are
// grouped into tasks by this count alone, so the bytes never depend on the thread count.
constexpr int64_t kElementsPerTask = 1 << 16;

// The row length every quantized type divides: Q8_0 / Q4_0 blocks. K-quants whose 256-element
// super-block does not divide a row fall back to Q8_0 for that tensor.
constexpr int64_t kMinBlock = 32;

uint64_t MixBits(uint64_t z) {  // splitmix64's finalizer
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

uint64_t HashName(std::string_view s) {  // FNV-1a
  uint64_t h = 0xcbf29ce484222325ULL;
  for (char c : s) h = (h ^ static_cast<uint8_t>(c)) * 0x100000001b3ULL;
  return h;
}

// xoshiro256+ seeded through splitmix64: fast and statistically plenty for random weights.
class Rng {
 public:
  explicit Rng(uint64_t seed) {
    for (uint64_t& s : s_) {
      seed += 0x9e3779b97f4a7c15ULL;
      s = MixBits(seed);
    }
  }

  uint64_t Next() {
    const uint64_t result = s_[0] + s_[3];
    const uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = (s_[3] << 45) | (s_[3] >> 19);
    return result;
  }

  // Approximately N(0, 1): the sum of four 16-bit uniforms (Irwin-Hall), centred and scaled to unit
  // variance. One generator call per sample and no transcendental functions; the tails are cut at
  // about 3.5 sigma, which random test weights do not miss.
  float Normal() {
    const uint64_t r = Next();
    const int64_t sum = static_cast<int64_t>(r & 0xffff) + ((r >> 16) & 0xffff) +
                        ((r >> 32) & 0xffff) + (r >> 48);
    constexpr double kMean = 4 * 65535 / 2.0;
    // One uniform on [0, 65535] has variance (65536^2 - 1) / 12, so the sum's standard deviation
    // is 65536 / sqrt(3) up to a relative 1e-10.
    constexpr float kScale = static_cast<float>(1.7320508075688772 / 65536);
    return static_cast<float>(static_cast<double>(sum) - kMean) * kScale;
  }

 private:
  uint64_t s_[4];
};

// One tensor of the random model: `rows` rows of `row_len` elements, each element
// offset + scale * N(0, 1).
struct RandomTensor {
  std::string name;
  GgmlType type = GgmlType::kF32;
  int64_t row_len = 0;
  int64_t rows = 1;  // 1 and `vector` for 1-D tensors
  bool vector = false;
  float offset = 0;
  float scale = 1;
};

// Fills `data` (rows * GgmlRowBytes(type, row_len) bytes) with the tensor's rows, quantized to its
// type, using every hardware thread. Each task of rows draws from its own generator seeded by
// (model seed, tensor name, task index).
void FillRandom(const RandomTensor& t, uint64_t seed, uint8_t* data) {
  const size_t row_bytes = GgmlRowBytes(t.type, t.row_len);
  const int64_t rows_per_task = std::max<int64_t>(1, kElementsPerTask / t.row_len);
  const int64_t n_tasks = (t.rows + rows_per_task - 1) / rows_per_task;
  const uint64_t tensor_seed = MixBits(seed ^ MixBits(HashName(t.name)));
  std::atomic<int64_t> next_task{0};

  auto work = [&] {
    std::vector<float> row(t.row_len);
    for (int64_t task = next_task++; task < n_tasks; task = next_task++) {
      Rng rng(tensor_seed ^ MixBits(static_cast<uint64_t>(task) + 1));
      const int64_t end = std::min(t.rows, (task + 1) * rows_per_task);
      for (int64_t r = task * rows_per_task; r < end; ++r) {
        for (float& x : row) x = t.offset + t.scale * rng.Normal();
        uint8_t* dst = data + static_cast<size_t>(r) * row_bytes;
        if (t.type == GgmlType::kF32) {
          std::memcpy(dst, row.data(), row_bytes);
        } else {
          QuantizeRow(t.type, row.data(), dst, t.row_len);
        }
      }
    }
  };

  const int64_t hw = std::max(1u, std::thread::hardware_concurrency());
  const int64_t n_threads = std::min(hw, n_tasks);
  std::vector<std::thread> helpers;
  for (int64_t i = 1; i < n_threads; ++i) helpers.emplace_back(work);
  work();
  for (std::thread& th : helpers) th.join();
}

// llama.cpp's use_more_bits: the first and last eighth of the layers and every third layer in
// between get more bits in the *_M mixes.
bool UseMoreBits(int32_t layer, int32_t n_layers) {
  return layer < n_layers / 8 || layer >= 7 * n_layers / 8 || (layer - n_layers / 8) % 3 == 2;
}

// The type a matrix with rows of `row_len` is stored in: `wanted`, or Q8_0 when a k-quant
// super-block (256) does not divide the row, as in small test models (n_embd 128), which thus
// still get a quantized file; llama.cpp's quantizer falls back the same way for such tensors.
GgmlType FitType(GgmlType wanted, int64_t row_len) {
  return row_len % TraitsOf(wanted).block_size == 0 ? wanted : GgmlType::kQ8_0;
}

// llama.cpp's LLAMA_FTYPE numbers for general.file_type.
uint32_t FileType(const RandomModelOptions& o) {
  switch (o.type) {
    case GgmlType::kF32: return 0;    // ALL_F32
    case GgmlType::kF16: return 1;    // MOSTLY_F16
    case GgmlType::kQ4_0: return 2;   // MOSTLY_Q4_0
    case GgmlType::kQ8_0: return 7;   // MOSTLY_Q8_0
    case GgmlType::kQ4_K: return o.mixed_q4_k_m ? 15 : 14;  // MOSTLY_Q4_K_M / MOSTLY_Q4_K_S
    case GgmlType::kQ6_K: return 18;  // MOSTLY_Q6_K
    case GgmlType::kBF16: return 32;  // MOSTLY_BF16
    default: return 0;  // unreachable: Validate() admits compute types only
  }
}

absl::Status Invalid(const std::string& field, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat("random model: ", field, " ", what));
}

absl::Status Validate(const RandomModelOptions& o) {
  if (o.arch != "llama" && o.arch != "qwen2") {
    return Invalid("arch", absl::StrCat("'", o.arch, "' is not llama or qwen2"));
  }
  const std::pair<const char*, int32_t> sizes[] = {
      {"n_layers", o.n_layers}, {"n_embd", o.n_embd}, {"n_heads", o.n_heads},
      {"n_kv_heads", o.n_kv_heads}, {"n_ff", o.n_ff}, {"context_length", o.context_length}};
  for (const auto& [field, value] : sizes) {
    if (value <= 0) return Invalid(field, absl::StrCat("must be positive, got ", value));
  }
  if (o.n_embd % o.n_heads != 0) {
    return Invalid("n_heads", absl::StrCat(o.n_heads, " does not divide n_embd ", o.n_embd));
  }
  if (o.n_heads % o.n_kv_heads != 0) {
    return Invalid("n_kv_heads", absl::StrCat(o.n_kv_heads, " does not divide n_heads ", o.n_heads));
  }
  if ((o.n_embd / o.n_heads) % 2 != 0) {
    return Invalid("n_heads", absl::StrCat("gives an odd head dimension ", o.n_embd / o.n_heads,
                                           " (RoPE rotates pairs)"));
  }
  if (!IsComputeType(o.type)) {
    const auto traits = GetGgmlTypeTraits(static_cast<uint32_t>(o.type));
    return Invalid("type", absl::StrCat(traits ? std::string(traits->name) : "unknown type",
                                        " is not a compute type"));
  }
  if (o.mixed_q4_k_m && o.type != GgmlType::kQ4_K) {
    return Invalid("mixed_q4_k_m", absl::StrCat("needs type q4_K, got ", std::string(TraitsOf(o.type).name)));
  }
  if (TraitsOf(o.type).block_size > 1) {
    if (o.n_embd % kMinBlock != 0) {
      return Invalid("n_embd", absl::StrCat(o.n_embd, " is not a multiple of ", kMinBlock,
                                            " as quantized types need"));
    }
    if (o.n_ff % kMinBlock != 0) {
      return Invalid("n_ff", absl::StrCat(o.n_ff, " is not a multiple of ", kMinBlock,
                                          " as quantized types need"));
    }
  }
  return absl::OkStatus();
}

// Llama 3.1 rope_freqs factors (factor 8, low/high frequency factors 1 and 4, original context
// 8192): high frequencies keep their speed, low ones are slowed 8x, a smooth blend in between.
// The model divides each frequency by its factor.
std::vector<float> Llama3RopeFactors(int32_t head_dim, double freq_base) {
  constexpr double kFactor = 8, kLowFreqFactor = 1, kHighFreqFactor = 4, kOriginalContext = 8192;
  const double low_freq_wavelen = kOriginalContext / kLowFreqFactor;
  const double high_freq_wavelen = kOriginalContext / kHighFreqFactor;
  std::vector<float> factors(head_dim / 2);
  for (int32_t i = 0; i < head_dim / 2; ++i) {
    const double freq = std::pow(freq_base, -2.0 * i / head_dim);
    const double wavelen = 2 * std::numbers::pi / freq;
    double f;
    if (wavelen < high_freq_wavelen) {
      f = 1;
    } else if (wavelen > low_freq_wavelen) {
      f = kFactor;
    } else {
      const double smooth = (kOriginalContext / wavelen - kLowFreqFactor) /
                            (kHighFreqFactor - kLowFreqFactor);
      f = 1 / ((1 - smooth) / kFactor + smooth);
    }
    factors[i] = static_cast<float>(f);
  }
  return factors;
}

}  // namespace

absl::Status WriteRandomModel(const RandomModelOptions& options, const std::string& path) {
  const RandomModelOptions& o = options;
  if (absl::Status s = Validate(o); !s.ok()) return s;

  absl::StatusOr<std::unique_ptr<GgufFile>> vocab = GgufFile::Open(o.vocab_path);
  if (!vocab.ok()) {
    return Invalid("vocab_path", absl::StrCat("'", o.vocab_path, "': ", vocab.status().message()));
  }
  absl::StatusOr<const std::vector<std::string>*> tokens =
      (*vocab)->GetStringArray("tokenizer.ggml.tokens");
  if (!tokens.ok()) {
    return Invalid("vocab_path", absl::StrCat("'", o.vocab_path, "': ", tokens.status().message()));
  }
  const int64_t n_vocab = static_cast<int64_t>((*tokens)->size());
  if (n_vocab == 0) return Invalid("vocab_path", absl::StrCat("'", o.vocab_path, "' has no tokens"));

  const bool qwen2 = o.arch == "qwen2";
  const int32_t head_dim = o.n_embd / o.n_heads;
  const int64_t q_dim = int64_t{o.n_heads} * head_dim;
  const int64_t kv_dim = int64_t{o.n_kv_heads} * head_dim;
  const float freq_base = o.rope_freqs ? 500000.0f : (qwen2 ? 1000000.0f : 10000.0f);

  // metadata
  GgufWriter writer;
  writer.SetString("general.architecture", o.arch);
  writer.SetString("general.name", "memoria-random");
  writer.SetUint32("general.file_type", FileType(o));
  if (TraitsOf(o.type).block_size > 1) writer.SetUint32("general.quantization_version", 2);
  const std::string a = o.arch + ".";
  writer.SetUint32(a + "context_length", o.context_length);
  writer.SetUint32(a + "embedding_length", o.n_embd);
  writer.SetUint32(a + "block_count", o.n_layers);
  writer.SetUint32(a + "feed_forward_length", o.n_ff);
  writer.SetUint32(a + "attention.head_count", o.n_heads);
  writer.SetUint32(a + "attention.head_count_kv", o.n_kv_heads);
  writer.SetFloat32(a + "attention.layer_norm_rms_epsilon", qwen2 ? 1e-6f : 1e-5f);
  writer.SetFloat32(a + "rope.freq_base", freq_base);
  writer.SetUint32(a + "rope.dimension_count", head_dim);
  writer.SetUint32(a + "vocab_size", static_cast<uint32_t>(n_vocab));
  for (const auto& [key, value] : (*vocab)->metadata()) {
    if (absl::StartsWith(key, "tokenizer.")) writer.Set(key, value);
  }

  // tensors, with llama.cpp's names and shapes (row length first); Q4_K_M's "more bits" is Q6_K
  auto matrix_type = [&](bool more_bits, int64_t row_len) {
    return FitType(o.mixed_q4_k_m && more_bits ? GgmlType::kQ6_K : o.type, row_len);
  };
  std::vector<RandomTensor> tensors;
  auto matrix = [&](std::string name, GgmlType type, int64_t row_len, int64_t rows, float scale) {
    tensors.push_back({std::move(name), type, row_len, rows, false, 0.0f, scale});
  };
  auto norm = [&](std::string name, int64_t n) {
    tensors.push_back({std::move(name), GgmlType::kF32, n, 1, true, 1.0f, 0.1f});
  };
  auto bias = [&](std::string name, int64_t n) {
    tensors.push_back({std::move(name), GgmlType::kF32, n, 1, true, 0.0f, 0.1f});
  };
  const float embd_scale = 1 / std::sqrt(static_cast<float>(o.n_embd));
  const float ff_scale = 1 / std::sqrt(static_cast<float>(o.n_ff));
  const float q_scale = 1 / std::sqrt(static_cast<float>(q_dim));

  // Tied embeddings make token_embd the output matrix, which Q4_K_M stores in Q6_K.
  matrix("token_embd.weight", matrix_type(o.tied_embeddings, o.n_embd), o.n_embd, n_vocab, 0.5f);
  for (int32_t l = 0; l < o.n_layers; ++l) {
    const std::string p = absl::StrCat("blk.", l, ".");
    const bool more_bits = UseMoreBits(l, o.n_layers);
    norm(p + "attn_norm.weight", o.n_embd);
    matrix(p + "attn_q.weight", matrix_type(false, o.n_embd), o.n_embd, q_dim, embd_scale);
    matrix(p + "attn_k.weight", matrix_type(false, o.n_embd), o.n_embd, kv_dim, embd_scale);
    matrix(p + "attn_v.weight", matrix_type(more_bits, o.n_embd), o.n_embd, kv_dim, embd_scale);
    if (qwen2) {
      bias(p + "attn_q.bias", q_dim);
      bias(p + "attn_k.bias", kv_dim);
      bias(p + "attn_v.bias", kv_dim);
    }
    matrix(p + "attn_output.weight", matrix_type(false, q_dim), q_dim, o.n_embd, q_scale);
    norm(p + "ffn_norm.weight", o.n_embd);
    matrix(p + "ffn_gate.weight", matrix_type(false, o.n_embd), o.n_embd, o.n_ff, embd_scale);
    matrix(p + "ffn_up.weight", matrix_type(false, o.n_embd), o.n_embd, o.n_ff, embd_scale);
    matrix(p + "ffn_down.weight", matrix_type(more_bits, o.n_ff), o.n_ff, o.n_embd, ff_scale);
  }
  norm("output_norm.weight", o.n_embd);
  if (!o.tied_embeddings) {
    matrix("output.weight", matrix_type(true, o.n_embd), o.n_embd, n_vocab, embd_scale);
  }

  if (o.rope_freqs) {
    std::vector<float> factors = Llama3RopeFactors(head_dim, freq_base);
    std::string bytes(reinterpret_cast<const char*>(factors.data()), factors.size() * sizeof(float));
    if (absl::Status s = writer.AddTensorBytes("rope_freqs.weight", GgmlType::kF32,
                                               {head_dim / 2}, std::move(bytes));
        !s.ok()) {
      return s;
    }
  }
  for (const RandomTensor& t : tensors) {
    std::vector<int64_t> dims = t.vector ? std::vector<int64_t>{t.row_len}
                                         : std::vector<int64_t>{t.row_len, t.rows};
    absl::Status s = writer.AddTensor(t.name, t.type, std::move(dims),
                                      [&t, seed = o.seed](uint8_t* data, size_t /*size*/) {
                                        FillRandom(t, seed, data);
                                      });
    if (!s.ok()) return s;
  }
  // `tensors` outlives WriteFile, which runs the fill callbacks referring to its elements.
  return writer.WriteFile(path);
}

}  // namespace memoria
