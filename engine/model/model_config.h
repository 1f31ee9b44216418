#ifndef MEMORIA_ENGINE_MODEL_MODEL_CONFIG_H_
#define MEMORIA_ENGINE_MODEL_MODEL_CONFIG_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/gguf/gguf_file.h"

namespace memoria {

enum class Architecture { kLlama, kQwen2 };

// How RoPE pairs dimensions: kNormal rotates adjacent pairs (x[2i], x[2i+1]) as Llama does;
// kNeox rotates (x[i], x[i + n_rot/2]) as Qwen2 does.
enum class RopeStyle { kNormal, kNeox };

// Hyperparameters read from GGUF metadata ("{arch}.block_count", ...). Validated: every size
// positive and consistent (heads divide the embedding, kv heads divide heads, rope dims even
// and <= head_dim), so model code can rely on them.
struct ModelConfig {
  Architecture arch = Architecture::kLlama;
  std::string arch_name;        // general.architecture
  int32_t n_layers = 0;
  int32_t n_embd = 0;
  int32_t n_heads = 0;
  int32_t n_kv_heads = 0;
  int32_t head_dim = 0;         // n_embd / n_heads
  int32_t n_ff = 0;
  int32_t n_vocab = 0;
  int32_t context_length = 0;
  float rms_eps = 1e-5f;
  RopeStyle rope_style = RopeStyle::kNormal;
  int32_t rope_dims = 0;        // rotated dimensions per head (== head_dim for supported models)
  float rope_freq_base = 10000.0f;
  float rope_freq_scale = 1.0f;  // linear position scaling (1 / {arch}.rope.scale_linear)
  bool has_rope_freqs = false;   // "rope_freqs.weight" present: Llama 3 per-frequency factors
  bool has_qkv_bias = false;     // qwen2
  bool tied_embeddings = false;  // no "output.weight": logits use token_embd.weight
  // "memoria.memory_layers": the layers a model trained for explicit memory reads memories in,
  // ascending, each in [0, n_layers). Empty when the file does not say (MEMORY.md's default, the
  // first half, then applies).
  std::vector<int32_t> memory_layers;
  // "memoria.retrieval.score_gap": retrieval keeps only references scoring within this of the
  // best one (the server's default); the model was calibrated with it. Unset when the file does
  // not say.
  std::optional<float> retrieval_score_gap;

  static absl::StatusOr<ModelConfig> FromGguf(const GgufFile& file);
  // Architecture and shapes in one line: "llama L=16 D=2048 H=32/8 hd=64 FF=8192 V=128256".
  std::string Describe() const;
};

}  // namespace memoria

#endif  // MEMORIA_ENGINE_MODEL_MODEL_CONFIG_H_
