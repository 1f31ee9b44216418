#ifndef MEMORIA_ENGINE_MODEL_MODEL_H_
#define MEMORIA_ENGINE_MODEL_MODEL_H_

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "engine/backend/backend.h"
#include "engine/chat/chat_template.h"
#include "engine/gguf/gguf_file.h"
#include "engine/model/kv_page_pool.h"
#include "engine/model/memory.h"
#include "engine/model/model_config.h"
#include "engine/tokenizer/tokenizer.h"

namespace memoria {

class LlamaGraph;

struct ModelOptions {
  BackendOptions backend;
  // Most token rows one forward pass computes (prefill chunk plus decodes). Sizes the activation
  // buffers; fixed at load.
  int32_t max_batch_tokens = 512;
  // KV cache: token slots per page and slots in all. 0 = room for one sequence of the model's
  // full context (capped at 32768 slots). Fixed at load.
  int32_t kv_page_size = 16;
  int32_t kv_cache_tokens = 0;
  GgmlType kv_type = GgmlType::kF16;  // kF16 (as llama.cpp) or kF32
};

using SequenceId = int64_t;

// One sequence's new tokens in a forward pass.
struct SequenceInput {
  SequenceId sequence = 0;
  std::span<const int32_t> tokens;
  bool all_logits = false;  // logits of every token, not just the last
};

struct ForwardOutput {
  int32_t n_vocab = 0;
  std::vector<float> logits;            // rows of n_vocab
  std::vector<int32_t> first_logit_row;  // per input: its first row in `logits`
  const float* Logits(size_t input, int32_t token = 0) const {
    return logits.data() + static_cast<size_t>(first_logit_row[input] + token) * n_vocab;
  }
};

// What an introspection pass records (see Model::Introspect). Layers are 0-based.
struct IntrospectionRequest {
  std::vector<int32_t> kv_layers;      // record pre-RoPE keys and values (and mass) of these
  bool attention_mass = false;         // also record the attention mass tokens receive
  std::vector<int32_t> hidden_layers;  // 0..n_layers: residual stream entering that layer
  // false: stop as soon as everything asked for is recorded, computing no logits (a retrieval
  // query needs only a middle layer). The sequence's KV cache is then incomplete: destroy it.
  bool logits = true;
};

struct IntrospectionResult {
  struct Layer {
    int32_t layer = 0;
    std::vector<float> keys;    // [token][kv_head][head_dim], before RoPE
    std::vector<float> values;  // [token][kv_head][head_dim]
    std::vector<float> mass;    // [kv_head][token], when requested
  };
  struct Hidden {
    int32_t layer = 0;
    std::vector<float> states;  // [token][n_embd]
  };
  std::vector<Layer> layers;
  std::vector<Hidden> hidden;
};

// A loaded model: weights on a backend, tokenizer, KV page pool, and the sequences using it.
// Sequences are created, fed tokens through Forward (prefill chunks and decode steps of many
// sequences in one pass), given memories, and destroyed. Not thread-safe: one thread (the
// scheduler's compute thread) drives a Model.
class Model {
 public:
  static absl::StatusOr<std::unique_ptr<Model>> Load(const ModelOptions& options,
                                                     const std::string& path);
  ~Model();

  const ModelConfig& config() const { return config_; }
  const Tokenizer& tokenizer() const { return *tokenizer_; }
  const GgufFile& file() const { return *file_; }
  Backend& backend() { return *backend_; }
  const ModelOptions& options() const { return options_; }
  // The chat template family from tokenizer.chat_template; NotFound when the file has none.
  absl::StatusOr<ChatTemplateKind> chat_template() const;

  // A new empty sequence whose token slot t sits at rotary position first_position + t
  // (Memory3 "parallel" memories put the context after the references' span).
  absl::StatusOr<SequenceId> CreateSequence(int32_t first_position = 0);
  void DestroySequence(SequenceId id);  // frees its KV pages; unknown ids are ignored
  int32_t SequenceLength(SequenceId id) const;  // tokens in its KV cache; -1 if unknown
  // Sets (or with null clears) what the sequence attends to besides its own tokens from its
  // next forward pass on. The view's shape must match the model.
  absl::Status SetMemory(SequenceId id, std::shared_ptr<const MemoryView> memory);
  // Drops the sequence's tokens from slot n_tokens on (e.g. to retry after a rejected pass).
  absl::Status TruncateSequence(SequenceId id, int32_t n_tokens);

  int32_t free_kv_pages() const { return pages_.free_pages(); }
  int32_t total_kv_pages() const { return pages_.total_pages(); }
  int32_t kv_page_size() const { return pages_.page_size(); }

  // Appends each input's tokens to its sequence and computes logits. All checks (ids, lengths,
  // batch size, KV pages) happen before any state changes: on error nothing was appended.
  absl::Status Forward(std::span<const SequenceInput> inputs, ForwardOutput* output);
  // Forward for one sequence that also records K/V, attention mass and hidden states. All
  // tokens go in one pass (at most max_batch_tokens).
  absl::Status Introspect(SequenceId id, std::span<const int32_t> tokens,
                          const IntrospectionRequest& request, IntrospectionResult* result,
                          ForwardOutput* output);

 private:
  struct Sequence {
    int32_t first_position = 0;
    int32_t length = 0;
    std::vector<int32_t> pages;
    std::shared_ptr<const MemoryView> memory;
  };

  Model(const ModelOptions& options, std::unique_ptr<GgufFile> file, ModelConfig config);
  absl::Status Run(std::span<const SequenceInput> inputs, const IntrospectionRequest* request,
                   IntrospectionResult* result, ForwardOutput* output);

  ModelOptions options_;
  std::unique_ptr<GgufFile> file_;
  ModelConfig config_;
  std::unique_ptr<Tokenizer> tokenizer_;
  std::unique_ptr<Backend> backend_;
  std::unique_ptr<LlamaGraph> graph_;
  KvPagePool pages_;
  absl::flat_hash_map<SequenceId, Sequence> sequences_;
  SequenceId next_sequence_ = 1;
};

}  // namespace memoria

#endif  // MEMORIA_ENGINE_MODEL_MODEL_H_
