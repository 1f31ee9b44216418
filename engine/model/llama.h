#ifndef MEMORIA_ENGINE_MODEL_LLAMA_H_
#define MEMORIA_ENGINE_MODEL_LLAMA_H_

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/backend/backend.h"
#include "engine/gguf/gguf_file.h"
#include "engine/model/model.h"
#include "engine/model/model_config.h"

namespace memoria {

// The Llama-family transformer (llama and qwen2: RMSNorm, GQA attention with RoPE, SwiGLU) as a
// sequence of backend operations: the three steps of an architecture file — hyperparameters
// (ModelConfig), tensors (Create), forward pass (Forward).
class LlamaGraph {
 public:
  static absl::StatusOr<std::unique_ptr<LlamaGraph>> Create(const ModelConfig& config,
                                                            const GgufFile& file, Backend* backend,
                                                            int32_t max_rows);

  // Runs the planned rows (tokens[i] at plan.positions[i]) through the model and writes the
  // logits of `logit_rows` (rows of the batch) to `logits` (n_vocab floats each). With a request,
  // also records what it asks for into `trace`.
  absl::Status Forward(const BatchPlan& plan, std::span<const int32_t> tokens,
                       std::span<const int32_t> logit_rows, float* logits,
                       const IntrospectionRequest* request, IntrospectionResult* trace);

 private:
  // A weight, or several stacked (Backend::UploadStacked), whose outputs fill columns
  // [col0, col0 + w.rows) of an activation.
  struct Projection {
    Tensor w;
    int64_t col0 = 0;
  };
  struct LayerWeights {
    Tensor attn_norm, bq, bk, bv, wo;
    std::vector<Projection> qkv;  // into Activations::qkv
    Tensor ffn_norm, w_down;
    std::vector<Projection> gate_up;  // into Activations::gate_up
  };
  // Activations for up to max_rows rows; reused by every pass. q, k, v are column ranges of qkv,
  // gate and up of gate_up.
  struct Activations {
    Tensor x, xb, qkv, q, q_pre, k, v, attn, gate_up, gate, up, logits_in, logits;
  };
  static constexpr int32_t kLogitRowsPerPass = 32;

  LlamaGraph(const ModelConfig& config, Backend* backend) : config_(config), backend_(backend) {}

  // Loads weights (name, expected dims) that multiply the same input as projections filling
  // consecutive columns, stacking runs of one type where the backend supports it.
  static absl::StatusOr<std::vector<Projection>> LoadProjections(
      const GgufFile& file, Backend* backend,
      const std::vector<std::pair<std::string, std::vector<int64_t>>>& parts);

  const ModelConfig& config_;
  Backend* backend_;
  Tensor token_embd_, output_norm_, output_;
  std::vector<LayerWeights> layers_;
  Activations act_;
  int32_t max_rows_ = 0;
};

}  // namespace memoria

#endif  // MEMORIA_ENGINE_MODEL_LLAMA_H_
