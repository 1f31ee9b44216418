#include "tests/reference/reference_model.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/gguf/gguf_file.h"
#include "engine/quant/quant.h"

namespace memoria::testing {
namespace {

void Require(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "ReferenceModel: %s\n", what);
    std::abort();
  }
}

// Dequantizes tensor `name`, which must have exactly `dims`, into `out` (row-major, dims[0]
// contiguous).
absl::Status LoadTensor(const GgufFile& file, const std::string& name,
                        const std::vector<int64_t>& dims, std::vector<float>* out) {
  const GgufTensorInfo* t = file.FindTensor(name);
  if (t == nullptr) return absl::NotFoundError(absl::StrCat("reference: no tensor ", name));
  if (t->dims != dims) {
    return absl::InvalidArgumentError(absl::StrCat("reference: tensor ", name, " has dims [",
                                                   absl::StrJoin(t->dims, ", "), "], want [",
                                                   absl::StrJoin(dims, ", "), "]"));
  }
  const int64_t row_len = dims[0];
  const int64_t rows = t->Rows();
  const size_t row_bytes = GgmlRowBytes(t->type, row_len);
  out->assign(static_cast<size_t>(row_len * rows), 0.0f);
  for (int64_t r = 0; r < rows; ++r) {
    DequantizeRow(t->type, t->data + r * row_bytes, out->data() + r * row_len, row_len);
  }
  return absl::OkStatus();
}

double Dot(const float* a, const float* b, int64_t n) {
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += static_cast<double>(a[i]) * b[i];
  return s;
}

// y[r] = W[r] . x (+ bias[r]) for a row-major [rows][cols] matrix.
std::vector<float> MatVec(const std::vector<float>& w, const std::vector<float>& x, int64_t rows,
                          const std::vector<float>* bias = nullptr) {
  const int64_t cols = static_cast<int64_t>(x.size());
  std::vector<float> y(rows);
  for (int64_t r = 0; r < rows; ++r) {
    double s = Dot(w.data() + r * cols, x.data(), cols);
    if (bias != nullptr && !bias->empty()) s += (*bias)[r];
    y[r] = static_cast<float>(s);
  }
  return y;
}

std::vector<float> RmsNorm(const std::vector<float>& x, const std::vector<float>& w, float eps) {
  double ss = 0;
  for (float v : x) ss += static_cast<double>(v) * v;
  const double inv = 1.0 / std::sqrt(ss / static_cast<double>(x.size()) + eps);
  std::vector<float> y(x.size());
  for (size_t i = 0; i < x.size(); ++i) y[i] = static_cast<float>(x[i] * inv * w[i]);
  return y;
}

}  // namespace

ReferenceMemory::ReferenceMemory(int32_t n_layers, int32_t n_kv_heads, MemoryRotation rotation)
    : rotation(rotation),
      entries(n_layers, std::vector<std::vector<ReferenceMemoryEntry>>(n_kv_heads)) {}

absl::StatusOr<std::unique_ptr<ReferenceModel>> ReferenceModel::Load(const std::string& path) {
  absl::StatusOr<std::unique_ptr<GgufFile>> file = GgufFile::Open(path);
  if (!file.ok()) return file.status();
  const GgufFile& f = **file;
  absl::StatusOr<ModelConfig> config = ModelConfig::FromGguf(f);
  if (!config.ok()) return config.status();

  std::unique_ptr<ReferenceModel> m(new ReferenceModel());
  m->config_ = *config;
  const ModelConfig& c = m->config_;
  const int64_t d = c.n_embd, q_dim = int64_t{c.n_heads} * c.head_dim;
  const int64_t kv_dim = int64_t{c.n_kv_heads} * c.head_dim;

  auto load = [&f](const std::string& name, std::vector<int64_t> dims, std::vector<float>* out) {
    return LoadTensor(f, name, dims, out);
  };
  absl::Status s = load("token_embd.weight", {d, c.n_vocab}, &m->token_embd_);
  if (s.ok()) s = load("output_norm.weight", {d}, &m->output_norm_);
  if (s.ok() && !c.tied_embeddings) s = load("output.weight", {d, c.n_vocab}, &m->output_);
  if (s.ok() && c.has_rope_freqs) s = load("rope_freqs.weight", {c.rope_dims / 2}, &m->rope_freqs_);
  m->layers_.resize(c.n_layers);
  for (int32_t l = 0; l < c.n_layers && s.ok(); ++l) {
    Layer& L = m->layers_[l];
    const std::string p = absl::StrCat("blk.", l, ".");
    s = load(p + "attn_norm.weight", {d}, &L.attn_norm);
    if (s.ok()) s = load(p + "attn_q.weight", {d, q_dim}, &L.wq);
    if (s.ok()) s = load(p + "attn_k.weight", {d, kv_dim}, &L.wk);
    if (s.ok()) s = load(p + "attn_v.weight", {d, kv_dim}, &L.wv);
    if (s.ok() && c.has_qkv_bias) s = load(p + "attn_q.bias", {q_dim}, &L.bq);
    if (s.ok() && c.has_qkv_bias) s = load(p + "attn_k.bias", {kv_dim}, &L.bk);
    if (s.ok() && c.has_qkv_bias) s = load(p + "attn_v.bias", {kv_dim}, &L.bv);
    if (s.ok()) s = load(p + "attn_output.weight", {q_dim, d}, &L.wo);
    if (s.ok()) s = load(p + "ffn_norm.weight", {d}, &L.ffn_norm);
    if (s.ok()) s = load(p + "ffn_gate.weight", {d, c.n_ff}, &L.w_gate);
    if (s.ok()) s = load(p + "ffn_up.weight", {d, c.n_ff}, &L.w_up);
    if (s.ok()) s = load(p + "ffn_down.weight", {c.n_ff, d}, &L.w_down);
  }
  if (!s.ok()) return s;
  return m;
}

void ReferenceModel::Rope(float* head, int32_t position) const {
  const ModelConfig& c = config_;
  const int32_t half = c.rope_dims / 2;
  for (int32_t i = 0; i < half; ++i) {
    double freq = std::pow(static_cast<double>(c.rope_freq_base), -2.0 * i / c.rope_dims);
    if (!rope_freqs_.empty()) freq /= rope_freqs_[i];
    const double theta = static_cast<double>(position) * c.rope_freq_scale * freq;
    // kNormal rotates adjacent pairs, kNeox the two halves of the rotated dimensions.
    const int32_t a = c.rope_style == RopeStyle::kNormal ? 2 * i : i;
    const int32_t b = c.rope_style == RopeStyle::kNormal ? 2 * i + 1 : i + half;
    const double x0 = head[a], x1 = head[b];
    head[a] = static_cast<float>(x0 * std::cos(theta) - x1 * std::sin(theta));
    head[b] = static_cast<float>(x0 * std::sin(theta) + x1 * std::cos(theta));
  }
}

std::vector<std::vector<float>> ReferenceModel::Forward(const std::vector<int32_t>& tokens,
                                                        int32_t first_position,
                                                        const ReferenceMemory* memory,
                                                        ReferenceTrace* trace) const {
  const ModelConfig& c = config_;
  const int64_t n = static_cast<int64_t>(tokens.size());
  const int64_t d = c.n_embd, hd = c.head_dim;
  const int64_t q_dim = c.n_heads * hd, kv_dim = c.n_kv_heads * hd;
  const int32_t group = c.n_heads / c.n_kv_heads;
  const double scale = 1.0 / std::sqrt(static_cast<double>(hd));
  if (memory != nullptr) {
    for (int l : memory->layers) {
      Require(l >= 0 && l < c.n_layers, "memory: layer out of range");
      Require(static_cast<size_t>(l) < memory->entries.size() &&
                  memory->entries[l].size() == static_cast<size_t>(c.n_kv_heads),
              "memory: a memory layer lacks its per-kv-head entry lists");
      for (const auto& head : memory->entries[l]) {
        for (const ReferenceMemoryEntry& e : head) {
          Require(e.key.size() == static_cast<size_t>(hd) && e.value.size() == static_cast<size_t>(hd),
                  "memory: key/value size != head_dim");
        }
      }
    }
  }
  if (trace != nullptr) *trace = ReferenceTrace();

  // embeddings
  std::vector<std::vector<float>> x(n);
  for (int64_t i = 0; i < n; ++i) {
    Require(tokens[i] >= 0 && tokens[i] < c.n_vocab, "token out of range");
    x[i].assign(token_embd_.begin() + tokens[i] * d, token_embd_.begin() + (tokens[i] + 1) * d);
  }

  for (int32_t l = 0; l < c.n_layers; ++l) {
    const Layer& L = layers_[l];
    if (trace != nullptr) trace->hidden.push_back(x);

    // q, k, v (with bias), then RoPE on copies
    std::vector<std::vector<float>> q(n), k(n), v(n), q_rot(n), k_rot(n);
    for (int64_t i = 0; i < n; ++i) {
      const std::vector<float> h = RmsNorm(x[i], L.attn_norm, c.rms_eps);
      q[i] = MatVec(L.wq, h, q_dim, &L.bq);
      k[i] = MatVec(L.wk, h, kv_dim, &L.bk);
      v[i] = MatVec(L.wv, h, kv_dim, &L.bv);
      q_rot[i] = q[i];
      k_rot[i] = k[i];
      const int32_t pos = first_position + static_cast<int32_t>(i);
      for (int32_t hh = 0; hh < c.n_heads; ++hh) Rope(q_rot[i].data() + hh * hd, pos);
      for (int32_t g = 0; g < c.n_kv_heads; ++g) Rope(k_rot[i].data() + g * hd, pos);
    }
    if (trace != nullptr) {
      auto split = [&](const std::vector<std::vector<float>>& rows) {
        std::vector<std::vector<std::vector<float>>> out(n);
        for (int64_t i = 0; i < n; ++i) {
          for (int32_t g = 0; g < c.n_kv_heads; ++g) {
            out[i].emplace_back(rows[i].begin() + g * hd, rows[i].begin() + (g + 1) * hd);
          }
        }
        return out;
      };
      trace->k_pre_rope.push_back(split(k));
      trace->v.push_back(split(v));
      trace->mass.emplace_back(c.n_kv_heads, std::vector<double>(n, 0.0));
    }

    // memory keys as the queries will meet them
    const bool memory_layer =
        memory != nullptr &&
        std::find(memory->layers.begin(), memory->layers.end(), l) != memory->layers.end();
    const bool rotate_memory =
        memory_layer && memory->rotation == MemoryRotation::kStoredPositions;
    std::vector<std::vector<std::vector<float>>> mem_keys(c.n_kv_heads);
    if (memory_layer) {
      for (int32_t g = 0; g < c.n_kv_heads; ++g) {
        for (const ReferenceMemoryEntry& e : memory->entries[l][g]) {
          mem_keys[g].push_back(e.key);
          if (rotate_memory) Rope(mem_keys[g].back().data(), e.position);
        }
      }
    }

    // attention: memory entries of the group and the causal context in one softmax
    std::vector<std::vector<float>> attn(n, std::vector<float>(q_dim, 0.0f));
    for (int32_t hh = 0; hh < c.n_heads; ++hh) {
      const int32_t g = hh / group;
      const int64_t n_mem = static_cast<int64_t>(mem_keys[g].size());
      for (int64_t i = 0; i < n; ++i) {
        // kNone meets the stored key with the query before RoPE.
        const float* q_mem = (rotate_memory ? q_rot[i] : q[i]).data() + hh * hd;
        const float* q_ctx = q_rot[i].data() + hh * hd;
        std::vector<double> scores;
        for (int64_t m = 0; m < n_mem; ++m) {
          scores.push_back(Dot(q_mem, mem_keys[g][m].data(), hd) * scale);
        }
        for (int64_t j = 0; j <= i; ++j) {
          scores.push_back(Dot(q_ctx, k_rot[j].data() + g * hd, hd) * scale);
        }
        const double max = *std::max_element(scores.begin(), scores.end());
        double sum = 0;
        for (double& s : scores) sum += (s = std::exp(s - max));
        std::vector<double> out(hd, 0.0);
        for (int64_t m = 0; m < n_mem; ++m) {
          const double w = scores[m] / sum;
          const std::vector<float>& value = memory->entries[l][g][m].value;
          for (int64_t e = 0; e < hd; ++e) out[e] += w * value[e];
        }
        for (int64_t j = 0; j <= i; ++j) {
          const double w = scores[n_mem + j] / sum;
          for (int64_t e = 0; e < hd; ++e) out[e] += w * v[j][g * hd + e];
          if (trace != nullptr) trace->mass[l][g][j] += w;
        }
        for (int64_t e = 0; e < hd; ++e) attn[i][hh * hd + e] = static_cast<float>(out[e]);
      }
    }

    // output projection and residual; SwiGLU feed-forward and residual
    for (int64_t i = 0; i < n; ++i) {
      const std::vector<float> o = MatVec(L.wo, attn[i], d);
      for (int64_t e = 0; e < d; ++e) x[i][e] += o[e];
      const std::vector<float> h = RmsNorm(x[i], L.ffn_norm, c.rms_eps);
      std::vector<float> gate = MatVec(L.w_gate, h, c.n_ff);
      const std::vector<float> up = MatVec(L.w_up, h, c.n_ff);
      for (int64_t e = 0; e < c.n_ff; ++e) {
        const double gv = gate[e];
        gate[e] = static_cast<float>(gv / (1.0 + std::exp(-gv)) * up[e]);
      }
      const std::vector<float> down = MatVec(L.w_down, gate, d);
      for (int64_t e = 0; e < d; ++e) x[i][e] += down[e];
    }
  }
  if (trace != nullptr) trace->hidden.push_back(x);

  // final norm and logits
  const std::vector<float>& out_w = c.tied_embeddings ? token_embd_ : output_;
  std::vector<std::vector<float>> logits(n);
  for (int64_t i = 0; i < n; ++i) {
    logits[i] = MatVec(out_w, RmsNorm(x[i], output_norm_, c.rms_eps), c.n_vocab);
  }
  return logits;
}

}  // namespace memoria::testing
