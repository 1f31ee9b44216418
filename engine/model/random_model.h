#ifndef MEMORIA_ENGINE_MODEL_RANDOM_MODEL_H_
#define MEMORIA_ENGINE_MODEL_RANDOM_MODEL_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "engine/gguf/ggml_type.h"

namespace memoria {

// A random-weight Llama-family model with a real tokenizer, for tests, demos and benchmarks.
struct RandomModelOptions {
  std::string vocab_path;      // GGUF whose tokenizer.* metadata is copied (and sets the vocab size)
  std::string arch = "llama";  // "llama" or "qwen2" (qwen2 adds q/k/v biases and NeoX RoPE)
  int32_t n_layers = 2;
  int32_t n_embd = 128;
  int32_t n_heads = 4;
  int32_t n_kv_heads = 2;
  int32_t n_ff = 352;
  int32_t context_length = 4096;
  // Weight type of the 2-D matrices; norms and biases stay F32. "q4_k_m" mixes Q4_K with Q6_K for
  // output.weight and some attn_v / ffn_down as llama.cpp's Q4_K_M does (see mixed_q4_k_m).
  GgmlType type = GgmlType::kF32;
  bool mixed_q4_k_m = false;
  bool tied_embeddings = false;  // omit output.weight
  bool rope_freqs = false;       // write a Llama 3 style rope_freqs.weight
  uint64_t seed = 1;
};

// Writes the model to `path`. Weights are drawn from a seeded generator (same options, same file)
// and produced in parallel while streaming to disk.
absl::Status WriteRandomModel(const RandomModelOptions& options, const std::string& path);

}  // namespace memoria

#endif  // MEMORIA_ENGINE_MODEL_RANDOM_MODEL_H_
