#include "memstore/compiler.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "engine/util/status_macros.h"

namespace memoria {

absl::StatusOr<MemoryCompiler> MemoryCompiler::Create(Model* model, const CompilerOptions& options) {
  const ModelConfig& c = model->config();
  CompilerOptions o = options;
  if (o.reference_tokens <= 0 || o.reference_tokens + 1 > model->options().max_batch_tokens) {
    return absl::InvalidArgumentError(absl::StrCat(
        "compiler: reference_tokens must be in [1, max_batch_tokens - 1 = ",
        model->options().max_batch_tokens - 1, "], got ", o.reference_tokens));
  }
  if (!o.dense && o.kept_tokens <= 0) {
    return absl::InvalidArgumentError("compiler: kept_tokens must be positive");
  }
  if (o.memory_layers.empty()) o.memory_layers = c.memory_layers;
  if (o.memory_layers.empty()) {
    for (int32_t l = 0; l < std::max(1, c.n_layers / 2); ++l) o.memory_layers.push_back(l);
  }
  std::sort(o.memory_layers.begin(), o.memory_layers.end());
  o.memory_layers.erase(std::unique(o.memory_layers.begin(), o.memory_layers.end()),
                        o.memory_layers.end());
  for (int32_t l : o.memory_layers) {
    if (l < 0 || l >= c.n_layers) {
      return absl::InvalidArgumentError(absl::StrCat("compiler: memory layer ", l,
                                                     " is not a layer of the model (0..",
                                                     c.n_layers - 1, ")"));
    }
  }
  if (o.embedding_layer < 0) o.embedding_layer = c.n_layers / 2;
  if (o.embedding_layer > c.n_layers) {
    return absl::InvalidArgumentError(absl::StrCat("compiler: embedding_layer ", o.embedding_layer,
                                                   " is beyond the model's ", c.n_layers, " layers"));
  }
  MemoryCompiler compiler(model, o);
  compiler.bos_rows_ = model->tokenizer().add_bos() && model->tokenizer().bos() >= 0 ? 1 : 0;
  return compiler;
}

absl::StatusOr<IntrospectionResult> MemoryCompiler::Encode(std::span<const int32_t> tokens,
                                                           bool want_memory) {
  std::vector<int32_t> input;
  if (bos_rows_ == 1) input.push_back(model_->tokenizer().bos());
  input.insert(input.end(), tokens.begin(), tokens.end());
  const int32_t limit = std::min(model_->options().max_batch_tokens, model_->config().context_length);
  if (static_cast<int32_t>(input.size()) > limit) {
    return absl::InvalidArgumentError(absl::StrCat("compiler: ", input.size(),
                                                   " tokens do not fit one encoding pass of ", limit));
  }
  IntrospectionRequest request;
  if (want_memory) {
    request.kv_layers = options_.memory_layers;
    request.attention_mass = !options_.dense;
  }
  request.hidden_layers = {options_.embedding_layer};
  request.logits = false;  // the pass ends at the last layer recorded
  MEMORIA_ASSIGN_OR_RETURN(SequenceId seq, model_->CreateSequence());
  IntrospectionResult trace;
  absl::Status status = model_->Introspect(seq, input, request, &trace, nullptr);
  model_->DestroySequence(seq);
  if (!status.ok()) return status;
  return trace;
}

ReferenceKv MemoryCompiler::Select(const IntrospectionResult& trace, int32_t n_rows, int32_t first,
                                   int32_t last, int32_t position_base) const {
  const ModelConfig& c = model_->config();
  const int32_t hd = c.head_dim, n_kv = c.n_kv_heads;
  ReferenceKv kv;
  kv.head_dim = hd;
  kv.n_kv_heads = n_kv;
  kv.layers = options_.memory_layers;
  kv.heads.resize(kv.layers.size() * n_kv);
  std::vector<int32_t> rows;
  std::vector<float> score(n_rows);
  for (size_t li = 0; li < kv.layers.size(); ++li) {
    const IntrospectionResult::Layer& layer = trace.layers[li];
    for (int32_t g = 0; g < n_kv; ++g) {
      rows.resize(last - first);
      std::iota(rows.begin(), rows.end(), first);
      if (!options_.dense && static_cast<int32_t>(rows.size()) > options_.kept_tokens) {
        for (int32_t j = first; j < last; ++j) {
          score[j] = layer.mass[static_cast<size_t>(g) * n_rows + j];
          // kPerQuery: rows j .. n_rows-1 are the queries that see token j.
          if (options_.mass_rule == MassRule::kPerQuery) score[j] /= static_cast<float>(n_rows - j);
        }
        // Highest score first; ties to the earlier token so the choice is deterministic.
        std::partial_sort(rows.begin(), rows.begin() + options_.kept_tokens, rows.end(),
                          [&](int32_t a, int32_t b) { return score[a] > score[b] || (score[a] == score[b] && a < b); });
        rows.resize(options_.kept_tokens);
        std::sort(rows.begin(), rows.end());
      }
      ReferenceKv::Head& head = kv.heads[li * n_kv + g];
      for (int32_t j : rows) {
        head.positions.push_back(j - position_base);
        const size_t off = (static_cast<size_t>(j) * n_kv + g) * hd;
        head.keys.insert(head.keys.end(), layer.keys.begin() + off, layer.keys.begin() + off + hd);
        head.values.insert(head.values.end(), layer.values.begin() + off, layer.values.begin() + off + hd);
      }
    }
  }
  return kv;
}

std::vector<float> MemoryCompiler::MeanVector(const IntrospectionResult& trace, int32_t first,
                                              int32_t last) const {
  const int32_t d = model_->config().n_embd;
  const std::vector<float>& states = trace.hidden.front().states;
  std::vector<double> sum(d, 0.0);
  for (int32_t j = first; j < last; ++j) {
    for (int32_t i = 0; i < d; ++i) sum[i] += states[static_cast<size_t>(j) * d + i];
  }
  double norm = 0;
  for (double v : sum) norm += v * v;
  norm = std::sqrt(norm);
  std::vector<float> out(d);
  for (int32_t i = 0; i < d; ++i) out[i] = norm > 0 ? static_cast<float>(sum[i] / norm) : 0.0f;
  return out;
}

absl::StatusOr<std::vector<CompiledReference>> MemoryCompiler::Compile(std::string_view text) {
  const Tokenizer& tok = model_->tokenizer();
  const std::vector<int32_t> tokens = tok.Encode(text, /*add_special=*/false, /*parse_special=*/false);
  if (tokens.empty()) return absl::InvalidArgumentError("compiler: the document has no tokens");
  const int32_t r = options_.reference_tokens;
  const int32_t n_tokens = static_cast<int32_t>(tokens.size());
  std::vector<CompiledReference> refs;

  IntrospectionResult document;  // whole-document mode: one pass over everything
  if (options_.whole_document) {
    MEMORIA_ASSIGN_OR_RETURN(document, Encode(tokens, true));
  }
  for (int32_t begin = 0; begin < n_tokens; begin += r) {
    const int32_t end = std::min(n_tokens, begin + r);
    const std::span<const int32_t> span(tokens.data() + begin, end - begin);
    CompiledReference ref;
    ref.token_begin = begin;
    ref.token_end = end;
    ref.text = tok.Decode(std::vector<int32_t>(span.begin(), span.end()), /*special=*/false);
    if (options_.whole_document) {
      const int32_t n_rows = n_tokens + bos_rows_;
      ref.memory = Select(document, n_rows, begin + bos_rows_, end + bos_rows_, begin);
      ref.vector = MeanVector(document, begin + bos_rows_, end + bos_rows_);
    } else {
      MEMORIA_ASSIGN_OR_RETURN(IntrospectionResult trace, Encode(span, true));
      const int32_t n_rows = (end - begin) + bos_rows_;
      // Dense keeps BOS too (it is position 0 of the encoded reference); sparse never keeps the
      // attention sink.
      ref.memory = Select(trace, n_rows, options_.dense ? 0 : bos_rows_, n_rows, 0);
      ref.vector = MeanVector(trace, bos_rows_, n_rows);
    }
    refs.push_back(std::move(ref));
  }
  return refs;
}

absl::StatusOr<std::vector<float>> MemoryCompiler::QueryVector(std::span<const int32_t> tokens) {
  if (tokens.empty()) return absl::InvalidArgumentError("compiler: the query has no tokens");
  const size_t n = std::min<size_t>(tokens.size(), options_.reference_tokens);
  MEMORIA_ASSIGN_OR_RETURN(IntrospectionResult trace, Encode(tokens.subspan(tokens.size() - n), false));
  return MeanVector(trace, bos_rows_, static_cast<int32_t>(n) + bos_rows_);
}

}  // namespace memoria
