#include "engine/model/model_config.h"

#include <cmath>

#include "absl/strings/str_cat.h"

namespace memoria {
namespace {

// Reads "{arch}.{suffix}" as a positive int32, naming the key on failure.
absl::StatusOr<int32_t> ReadPositive(const GgufFile& file, const std::string& key) {
  absl::StatusOr<int64_t> v = file.GetInt(key);
  if (!v.ok()) return v.status();
  if (*v <= 0 || *v > (int64_t{1} << 30)) {
    return absl::InvalidArgumentError(absl::StrCat("model: ", key, " = ", *v, " is out of range"));
  }
  return static_cast<int32_t>(*v);
}

}  // namespace

absl::StatusOr<ModelConfig> ModelConfig::FromGguf(const GgufFile& file) {
  ModelConfig c;
  absl::StatusOr<std::string> arch = file.GetString("general.architecture");
  if (!arch.ok()) return arch.status();
  c.arch_name = *arch;
  if (c.arch_name == "llama") {
    c.arch = Architecture::kLlama;
    c.rope_style = RopeStyle::kNormal;
  } else if (c.arch_name == "qwen2") {
    c.arch = Architecture::kQwen2;
    c.rope_style = RopeStyle::kNeox;
    c.has_qkv_bias = true;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("model: unsupported architecture '", c.arch_name, "' (supported: llama, qwen2)"));
  }
  const std::string p = c.arch_name + ".";

  absl::StatusOr<int32_t> v;
  if (v = ReadPositive(file, p + "block_count"); !v.ok()) return v.status();
  c.n_layers = *v;
  if (v = ReadPositive(file, p + "embedding_length"); !v.ok()) return v.status();
  c.n_embd = *v;
  if (v = ReadPositive(file, p + "feed_forward_length"); !v.ok()) return v.status();
  c.n_ff = *v;
  if (v = ReadPositive(file, p + "attention.head_count"); !v.ok()) return v.status();
  c.n_heads = *v;
  c.n_kv_heads = c.n_heads;
  if (file.Has(p + "attention.head_count_kv")) {
    if (v = ReadPositive(file, p + "attention.head_count_kv"); !v.ok()) return v.status();
    c.n_kv_heads = *v;
  }
  if (v = ReadPositive(file, p + "context_length"); !v.ok()) return v.status();
  c.context_length = *v;

  if (c.n_embd % c.n_heads != 0) {
    return absl::InvalidArgumentError(absl::StrCat("model: embedding_length ", c.n_embd,
                                                   " is not a multiple of head_count ", c.n_heads));
  }
  if (c.n_heads % c.n_kv_heads != 0) {
    return absl::InvalidArgumentError(absl::StrCat("model: head_count ", c.n_heads,
                                                   " is not a multiple of head_count_kv ",
                                                   c.n_kv_heads));
  }
  c.head_dim = c.n_embd / c.n_heads;
  if (file.Has(p + "attention.key_length")) {
    absl::StatusOr<int64_t> kl = file.GetInt(p + "attention.key_length");
    if (!kl.ok()) return kl.status();
    if (*kl != c.head_dim) {
      return absl::InvalidArgumentError(absl::StrCat("model: attention.key_length ", *kl,
                                                     " differs from embedding/heads ", c.head_dim,
                                                     "; not supported"));
    }
  }
  c.rope_dims = c.head_dim;
  if (file.Has(p + "rope.dimension_count")) {
    if (v = ReadPositive(file, p + "rope.dimension_count"); !v.ok()) return v.status();
    c.rope_dims = *v;
  }
  if (c.rope_dims % 2 != 0 || c.rope_dims > c.head_dim) {
    return absl::InvalidArgumentError(absl::StrCat("model: rope.dimension_count ", c.rope_dims,
                                                   " must be even and at most the head size ",
                                                   c.head_dim));
  }
  if (file.Has(p + "attention.layer_norm_rms_epsilon")) {
    absl::StatusOr<double> eps = file.GetFloat(p + "attention.layer_norm_rms_epsilon");
    if (!eps.ok()) return eps.status();
    c.rms_eps = static_cast<float>(*eps);
  }
  if (file.Has(p + "rope.freq_base")) {
    absl::StatusOr<double> base = file.GetFloat(p + "rope.freq_base");
    if (!base.ok()) return base.status();
    c.rope_freq_base = static_cast<float>(*base);
  }
  if (file.Has(p + "rope.scale_linear")) {
    absl::StatusOr<double> scale = file.GetFloat(p + "rope.scale_linear");
    if (!scale.ok()) return scale.status();
    if (!(*scale > 0)) {
      return absl::InvalidArgumentError(absl::StrCat("model: rope.scale_linear ", *scale,
                                                     " must be positive"));
    }
    c.rope_freq_scale = static_cast<float>(1.0 / *scale);
  }
  if (!(c.rms_eps > 0) || !(c.rope_freq_base > 0) || !std::isfinite(c.rope_freq_base)) {
    return absl::InvalidArgumentError("model: rms epsilon and rope.freq_base must be positive");
  }

  const GgufTensorInfo* embd = file.FindTensor("token_embd.weight");
  if (embd == nullptr) return absl::InvalidArgumentError("model: tensor token_embd.weight is missing");
  if (embd->dims.size() != 2 || embd->dims[0] != c.n_embd) {
    return absl::InvalidArgumentError(
        absl::StrCat("model: token_embd.weight must be [", c.n_embd, ", n_vocab]"));
  }
  c.n_vocab = static_cast<int32_t>(embd->dims[1]);
  c.tied_embeddings = file.FindTensor("output.weight") == nullptr;
  c.has_rope_freqs = file.FindTensor("rope_freqs.weight") != nullptr;
  if (file.Has("memoria.memory_layers")) {
    absl::StatusOr<std::vector<int32_t>> layers = file.GetInt32Array("memoria.memory_layers");
    if (!layers.ok()) return layers.status();
    if (layers->empty()) return absl::InvalidArgumentError("model: memoria.memory_layers is empty");
    for (size_t i = 0; i < layers->size(); ++i) {
      const int32_t l = (*layers)[i];
      if (l < 0 || l >= c.n_layers || (i > 0 && l <= (*layers)[i - 1])) {
        return absl::InvalidArgumentError(absl::StrCat(
            "model: memoria.memory_layers must be ascending layers in [0, ", c.n_layers,
            "), got ", l, " at index ", i));
      }
    }
    c.memory_layers = *std::move(layers);
  }
  if (file.Has("memoria.retrieval.score_gap")) {
    absl::StatusOr<double> gap = file.GetFloat("memoria.retrieval.score_gap");
    if (!gap.ok()) return gap.status();
    if (!(*gap >= 0.0 && *gap <= 2.0)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "model: memoria.retrieval.score_gap must be a cosine difference in [0, 2], got ", *gap));
    }
    c.retrieval_score_gap = static_cast<float>(*gap);
  }
  return c;
}

std::string ModelConfig::Describe() const {
  return absl::StrCat(arch_name, " L=", n_layers, " D=", n_embd, " H=", n_heads, "/", n_kv_heads,
                      " hd=", head_dim, " FF=", n_ff, " V=", n_vocab);
}

}  // namespace memoria
