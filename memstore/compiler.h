#ifndef MEMORIA_MEMSTORE_COMPILER_H_
#define MEMORIA_MEMSTORE_COMPILER_H_

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/model/model.h"
#include "memstore/memory_store.h"

namespace memoria {

// Which attention mass ranks tokens for keeping (shared/MEMORY.md, "Encoding a reference").
enum class MassRule {
  kSum,           // mass summed over the queries that see the token
  kPerQuery,      // divided by the number of queries that see it (removes the causal bias)
};

struct CompilerOptions {
  int32_t reference_tokens = 128;  // R: tokens per reference; a shorter tail is its own
  int32_t kept_tokens = 8;         // k: entries kept per memory layer and KV head
  bool dense = false;              // keep every token, BOS included (k is ignored)
  MassRule mass_rule = MassRule::kPerQuery;
  // Layers whose attention reads memories; empty = the model's own (ModelConfig::memory_layers,
  // from its GGUF) or, when it declares none, the first half (0 .. n_layers/2 - 1).
  std::vector<int32_t> memory_layers;
  // Residual-stream layer whose mean over the reference's tokens is the retrieval vector;
  // -1 = n_layers / 2.
  int32_t embedding_layer = -1;
  // Encode the whole document once (within the context) and cut the result into references, so
  // each reference's K/V carry the document's context; otherwise each reference on its own.
  bool whole_document = false;
};

// Compiles documents into explicit memories with a model: text -> tokens -> references of R
// tokens -> one introspection pass each -> the k most-attended tokens' pre-RoPE K/V per memory
// layer and KV head, and a retrieval vector. Uses the model (one pass at a time); call it from
// the thread that drives the model.
class MemoryCompiler {
 public:
  static absl::StatusOr<MemoryCompiler> Create(Model* model, const CompilerOptions& options);

  const CompilerOptions& options() const { return options_; }

  // The document's references, memories and retrieval vectors (InvalidArgument for empty text).
  absl::StatusOr<std::vector<CompiledReference>> Compile(std::string_view text);
  // The retrieval vector of a query: the same recipe over its last up-to-R tokens.
  absl::StatusOr<std::vector<float>> QueryVector(std::span<const int32_t> tokens);
  int32_t retrieval_dim() const { return model_->config().n_embd; }

 private:
  MemoryCompiler(Model* model, const CompilerOptions& options) : model_(model), options_(options) {}

  // Runs [BOS] + tokens through the model, recording what the options need.
  absl::StatusOr<IntrospectionResult> Encode(std::span<const int32_t> tokens, bool want_memory);
  // Keeps tokens [first, last) of `trace` (row indices into the encoded pass) as one reference's
  // memory; `position_base` is subtracted from row indices to give positions in the reference.
  ReferenceKv Select(const IntrospectionResult& trace, int32_t n_rows, int32_t first, int32_t last,
                     int32_t position_base) const;
  std::vector<float> MeanVector(const IntrospectionResult& trace, int32_t first, int32_t last) const;

  Model* model_;
  CompilerOptions options_;
  int32_t bos_rows_ = 0;  // 1 when the model adds BOS
};

}  // namespace memoria

#endif  // MEMORIA_MEMSTORE_COMPILER_H_
