#ifndef MEMORIA_TESTS_REFERENCE_REFERENCE_MODEL_H_
#define MEMORIA_TESTS_REFERENCE_REFERENCE_MODEL_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/model/memory.h"
#include "engine/model/model_config.h"

namespace memoria::testing {

// One memory entry for one (layer, KV head): head_dim floats each.
struct ReferenceMemoryEntry {
  std::vector<float> key;  // before RoPE
  std::vector<float> value;
  int32_t position = 0;    // rotary position of the key under kStoredPositions
};

// The memories a sequence attends to (see shared/MEMORY.md), in plain containers.
struct ReferenceMemory {
  MemoryRotation rotation = MemoryRotation::kStoredPositions;
  std::vector<int> layers;  // memory layers; entries of other layers are ignored
  // entries[layer][kv_head]: the memory entries of that KV group, indexed by model layer. Every
  // layer in `layers` must have its n_kv_heads lists; other layers are never read.
  std::vector<std::vector<std::vector<ReferenceMemoryEntry>>> entries;

  ReferenceMemory() = default;
  // Sized n_layers x n_kv_heads, no entries, no memory layers.
  ReferenceMemory(int32_t n_layers, int32_t n_kv_heads, MemoryRotation rotation);
};

// What Forward() saw, for checking memory encoding. Filled when passed non-null (previous contents
// are replaced).
struct ReferenceTrace {
  // [layer][token][kv_head] -> head_dim floats: keys after the bias, before RoPE; values.
  std::vector<std::vector<std::vector<std::vector<float>>>> k_pre_rope;
  std::vector<std::vector<std::vector<std::vector<float>>>> v;
  // [layer][kv_head][token]: attention mass received from the sequence's own queries,
  //   mass[g][j] = sum over query heads h of group g, sum over queries i >= j of a[h][i][j],
  // where a is the softmax weight (over memory entries and context together in memory layers).
  std::vector<std::vector<std::vector<double>>> mass;
  // [l][token] -> n_embd floats: the residual stream entering layer l; hidden[n_layers] is the
  // stream after the last layer, before the final norm.
  std::vector<std::vector<std::vector<float>>> hidden;
};

// An independent, plain scalar forward pass for Llama-family GGUF models, written from the math
// and sharing nothing with the engine's forward pass; the oracle the engine is tested against.
// Every weight is dequantized to float at load; dot products accumulate in double. Slow: for
// small models only. Immutable after Load(); Forward() is const and thread-safe.
class ReferenceModel {
 public:
  static absl::StatusOr<std::unique_ptr<ReferenceModel>> Load(const std::string& path);

  const ModelConfig& config() const { return config_; }

  // Logits (n_vocab each) for every token of `tokens`, which sit at positions first_position,
  // first_position + 1, ... and attend causally to each other only (no cache). `memory`, when
  // non-null, must have entries for each of its layers with head_dim-sized keys and values. Tokens must
  // lie in [0, n_vocab). Misuse aborts with a message (test code).
  std::vector<std::vector<float>> Forward(const std::vector<int32_t>& tokens,
                                          int32_t first_position, const ReferenceMemory* memory,
                                          ReferenceTrace* trace) const;

 private:
  struct Layer {
    // Matrices are row-major [out][in], as GGUF stores them (dims[0] = in).
    std::vector<float> attn_norm, wq, wk, wv, bq, bk, bv, wo;
    std::vector<float> ffn_norm, w_gate, w_up, w_down;
  };

  ReferenceModel() = default;

  // Rotates one head (head_dim floats) in place as if it sat at `position`.
  void Rope(float* head, int32_t position) const;

  ModelConfig config_;
  std::vector<float> token_embd_;  // [n_vocab][n_embd]
  std::vector<float> output_norm_;
  std::vector<float> output_;      // [n_vocab][n_embd]; empty when tied
  std::vector<float> rope_freqs_;  // [rope_dims / 2]; empty when absent
  std::vector<Layer> layers_;
};

}  // namespace memoria::testing

#endif  // MEMORIA_TESTS_REFERENCE_REFERENCE_MODEL_H_
