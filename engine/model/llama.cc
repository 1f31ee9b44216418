#include "engine/model/llama.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/util/status_macros.h"

namespace memoria {
namespace {

// Looks up a tensor and checks its shape (dims[0] first).
absl::StatusOr<const GgufTensorInfo*> FindTensor(const GgufFile& file, const std::string& name,
                                                 const std::vector<int64_t>& dims) {
  const GgufTensorInfo* info = file.FindTensor(name);
  if (info == nullptr) return absl::InvalidArgumentError(absl::StrCat("model: tensor '", name, "' is missing"));
  if (info->dims != dims) {
    return absl::InvalidArgumentError(absl::StrCat("model: tensor '", name, "' has shape [",
                                                   absl::StrJoin(info->dims, ", "), "], expected [",
                                                   absl::StrJoin(dims, ", "), "]"));
  }
  if (dims.size() == 1 && info->type != GgmlType::kF32) {
    return absl::InvalidArgumentError(absl::StrCat("model: tensor '", name, "' must be f32"));
  }
  return info;
}

absl::StatusOr<Tensor> LoadTensor(const GgufFile& file, Backend* backend, const std::string& name,
                                  const std::vector<int64_t>& dims) {
  MEMORIA_ASSIGN_OR_RETURN(const GgufTensorInfo* info, FindTensor(file, name, dims));
  return backend->UploadWeight(*info);
}

}  // namespace

absl::StatusOr<std::vector<LlamaGraph::Projection>> LlamaGraph::LoadProjections(
    const GgufFile& file, Backend* backend,
    const std::vector<std::pair<std::string, std::vector<int64_t>>>& parts) {
  std::vector<const GgufTensorInfo*> infos;
  for (const auto& [name, dims] : parts) {
    MEMORIA_ASSIGN_OR_RETURN(const GgufTensorInfo* info, FindTensor(file, name, dims));
    infos.push_back(info);
  }
  // Runs of consecutive parts with one type are stacked (Q4_K_M files often give v another type
  // than q and k).
  std::vector<Projection> out;
  int64_t col = 0;
  for (size_t i = 0, j; i < infos.size(); i = j) {
    for (j = i + 1; j < infos.size() && infos[j]->type == infos[i]->type;) ++j;
    if (j - i > 1) {
      absl::StatusOr<Tensor> stacked =
          backend->UploadStacked(std::span<const GgufTensorInfo* const>(&infos[i], j - i));
      if (stacked.ok()) {
        out.push_back({*stacked, col});
        col += stacked->rows;
        continue;
      }
      if (!absl::IsUnimplemented(stacked.status())) return stacked.status();
    }
    for (size_t p = i; p < j; ++p) {
      MEMORIA_ASSIGN_OR_RETURN(Tensor t, backend->UploadWeight(*infos[p]));
      out.push_back({t, col});
      col += t.rows;
    }
  }
  return out;
}

absl::StatusOr<std::unique_ptr<LlamaGraph>> LlamaGraph::Create(const ModelConfig& c,
                                                               const GgufFile& file,
                                                               Backend* backend, int32_t max_rows) {
  std::unique_ptr<LlamaGraph> g(new LlamaGraph(c, backend));
  g->max_rows_ = max_rows;
  const int64_t d = c.n_embd, q_dim = int64_t{c.n_heads} * c.head_dim;
  const int64_t kv_dim = int64_t{c.n_kv_heads} * c.head_dim;
  auto load = [&](const std::string& name, std::vector<int64_t> dims, Tensor* out) -> absl::Status {
    MEMORIA_ASSIGN_OR_RETURN(*out, LoadTensor(file, backend, name, std::move(dims)));
    return absl::OkStatus();
  };
  // tensors
  MEMORIA_RETURN_IF_ERROR(load("token_embd.weight", {d, c.n_vocab}, &g->token_embd_));
  MEMORIA_RETURN_IF_ERROR(load("output_norm.weight", {d}, &g->output_norm_));
  if (c.tied_embeddings) {
    g->output_ = g->token_embd_;
  } else {
    MEMORIA_RETURN_IF_ERROR(load("output.weight", {d, c.n_vocab}, &g->output_));
  }
  g->layers_.resize(c.n_layers);
  for (int32_t l = 0; l < c.n_layers; ++l) {
    const std::string p = absl::StrCat("blk.", l, ".");
    LayerWeights& w = g->layers_[l];
    MEMORIA_RETURN_IF_ERROR(load(p + "attn_norm.weight", {d}, &w.attn_norm));
    MEMORIA_ASSIGN_OR_RETURN(w.qkv, LoadProjections(file, backend,
                                                    {{p + "attn_q.weight", {d, q_dim}},
                                                     {p + "attn_k.weight", {d, kv_dim}},
                                                     {p + "attn_v.weight", {d, kv_dim}}}));
    if (c.has_qkv_bias) {
      MEMORIA_RETURN_IF_ERROR(load(p + "attn_q.bias", {q_dim}, &w.bq));
      MEMORIA_RETURN_IF_ERROR(load(p + "attn_k.bias", {kv_dim}, &w.bk));
      MEMORIA_RETURN_IF_ERROR(load(p + "attn_v.bias", {kv_dim}, &w.bv));
    }
    MEMORIA_RETURN_IF_ERROR(load(p + "attn_output.weight", {q_dim, d}, &w.wo));
    MEMORIA_RETURN_IF_ERROR(load(p + "ffn_norm.weight", {d}, &w.ffn_norm));
    MEMORIA_ASSIGN_OR_RETURN(w.gate_up, LoadProjections(file, backend,
                                                        {{p + "ffn_gate.weight", {d, c.n_ff}},
                                                         {p + "ffn_up.weight", {d, c.n_ff}}}));
    MEMORIA_RETURN_IF_ERROR(load(p + "ffn_down.weight", {c.n_ff, d}, &w.w_down));
  }

  // activations
  auto alloc = [&](int64_t rows, int64_t cols, Tensor* out) -> absl::Status {
    MEMORIA_ASSIGN_OR_RETURN(*out, backend->Allocate(GgmlType::kF32, rows, cols));
    return absl::OkStatus();
  };
  Activations& a = g->act_;
  MEMORIA_RETURN_IF_ERROR(alloc(max_rows, d, &a.x));
  MEMORIA_RETURN_IF_ERROR(alloc(max_rows, d, &a.xb));
  MEMORIA_RETURN_IF_ERROR(alloc(max_rows, q_dim + 2 * kv_dim, &a.qkv));
  a.q = a.qkv.Columns(0, q_dim);
  a.k = a.qkv.Columns(q_dim, kv_dim);
  a.v = a.qkv.Columns(q_dim + kv_dim, kv_dim);
  MEMORIA_RETURN_IF_ERROR(alloc(max_rows, q_dim, &a.q_pre));
  MEMORIA_RETURN_IF_ERROR(alloc(max_rows, q_dim, &a.attn));
  MEMORIA_RETURN_IF_ERROR(alloc(max_rows, 2 * c.n_ff, &a.gate_up));
  a.gate = a.gate_up.Columns(0, c.n_ff);
  a.up = a.gate_up.Columns(c.n_ff, c.n_ff);
  MEMORIA_RETURN_IF_ERROR(alloc(kLogitRowsPerPass, d, &a.logits_in));
  MEMORIA_RETURN_IF_ERROR(alloc(kLogitRowsPerPass, c.n_vocab, &a.logits));
  return g;
}

absl::Status LlamaGraph::Forward(const BatchPlan& plan, std::span<const int32_t> tokens,
                                 std::span<const int32_t> logit_rows, float* logits,
                                 const IntrospectionRequest* request, IntrospectionResult* trace) {
  const int64_t n = plan.n_rows();
  if (n > max_rows_) return absl::InvalidArgumentError("model: batch larger than max_batch_tokens");
  const ModelConfig& c = config_;
  Activations& a = act_;
  Backend& be = *backend_;
  be.PrepareBatch(plan);

  auto wants = [](const std::vector<int32_t>& layers, int32_t l) {
    return std::find(layers.begin(), layers.end(), l) != layers.end();
  };
  auto record_hidden = [&](int32_t l) {
    if (request == nullptr || !wants(request->hidden_layers, l)) return;
    IntrospectionResult::Hidden& h = trace->hidden.emplace_back();
    h.layer = l;
    h.states.resize(static_cast<size_t>(n) * c.n_embd);
    be.CopyToHost(a.x, 0, n, h.states.data());
  };

  // The last layer this pass must run: all of them unless an introspection needs no logits.
  int32_t last_layer = c.n_layers;
  if (request != nullptr && !request->logits) {
    last_layer = 0;
    for (int32_t l : request->kv_layers) last_layer = std::max(last_layer, l + 1);
    for (int32_t l : request->hidden_layers) last_layer = std::max(last_layer, l);
  }

  // a.xb times each projection, into its columns of `out`
  auto project = [&](const std::vector<Projection>& projections, Tensor* out) {
    for (const Projection& p : projections) {
      Tensor columns = out->Columns(p.col0, p.w.rows);
      be.MatMul(p.w, a.xb, n, &columns);
    }
  };

  be.Embed(token_embd_, tokens, &a.x);
  for (int32_t l = 0; l < c.n_layers; ++l) {
    const LayerWeights& w = layers_[l];
    record_hidden(l);
    if (l == last_layer) return absl::OkStatus();

    // self-attention
    be.RmsNorm(a.x, w.attn_norm, c.rms_eps, n, &a.xb);
    project(w.qkv, &a.qkv);
    if (c.has_qkv_bias) {
      be.AddBias(w.bq, n, &a.q);
      be.AddBias(w.bk, n, &a.k);
      be.AddBias(w.bv, n, &a.v);
    }
    IntrospectionResult::Layer* rec = nullptr;
    if (request != nullptr && wants(request->kv_layers, l)) {
      rec = &trace->layers.emplace_back();
      rec->layer = l;
      rec->keys.resize(static_cast<size_t>(n) * a.k.cols);
      rec->values.resize(static_cast<size_t>(n) * a.v.cols);
      be.CopyToHost(a.k, 0, n, rec->keys.data());
      be.CopyToHost(a.v, 0, n, rec->values.data());
      if (request->attention_mass) rec->mass.resize(static_cast<size_t>(c.n_kv_heads) * n);
    }
    // Position-free memories meet the query before rotation.
    bool needs_q_pre = false;
    for (const BatchSequence& s : plan.sequences) {
      needs_q_pre |= s.memory != nullptr && s.memory->rotation() == MemoryRotation::kNone &&
                     s.memory->HasLayer(l);
    }
    if (needs_q_pre) be.Copy(a.q, n, &a.q_pre);
    be.Rope(&a.q);
    be.Rope(&a.k);
    be.Attention(l, a.q, needs_q_pre ? &a.q_pre : nullptr, a.k, a.v, &a.attn,
                 rec != nullptr && !rec->mass.empty() ? rec->mass.data() : nullptr);
    be.MatMul(w.wo, a.attn, n, &a.xb);
    be.Add(a.xb, n, &a.x);

    // feed-forward (SwiGLU)
    be.RmsNorm(a.x, w.ffn_norm, c.rms_eps, n, &a.xb);
    project(w.gate_up, &a.gate_up);
    be.SwiGlu(a.gate, a.up, n, &a.gate);
    be.MatMul(w.w_down, a.gate, n, &a.xb);
    be.Add(a.xb, n, &a.x);
  }
  record_hidden(c.n_layers);
  if (request != nullptr && !request->logits) return absl::OkStatus();

  // output head, a few rows at a time
  for (size_t i = 0; i < logit_rows.size(); i += kLogitRowsPerPass) {
    const int64_t m = std::min<int64_t>(kLogitRowsPerPass, static_cast<int64_t>(logit_rows.size() - i));
    be.GatherRows(a.x, logit_rows.subspan(i, m), &a.logits_in);
    be.RmsNorm(a.logits_in, output_norm_, c.rms_eps, m, &a.logits_in);
    be.MatMul(output_, a.logits_in, m, &a.logits);
    be.CopyToHost(a.logits, 0, m, logits + i * c.n_vocab);
  }
  return absl::OkStatus();
}

}  // namespace memoria
