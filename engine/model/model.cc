#include "engine/model/model.h"

#include <algorithm>
#include <cstring>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "engine/model/llama.h"
#include "engine/util/status_macros.h"

namespace memoria {

Model::Model(const ModelOptions& options, std::unique_ptr<GgufFile> file, ModelConfig config)
    : options_(options),
      file_(std::move(file)),
      config_(std::move(config)),
      pages_(0, options.kv_page_size) {}

Model::~Model() = default;

absl::StatusOr<std::unique_ptr<Model>> Model::Load(const ModelOptions& options,
                                                   const std::string& path) {
  if (options.max_batch_tokens <= 0 || options.kv_page_size <= 0 || options.kv_cache_tokens < 0) {
    return absl::InvalidArgumentError(
        "model: max_batch_tokens and kv_page_size must be positive, kv_cache_tokens >= 0");
  }
  MEMORIA_ASSIGN_OR_RETURN(std::unique_ptr<GgufFile> file, GgufFile::Open(path));
  MEMORIA_ASSIGN_OR_RETURN(ModelConfig config, ModelConfig::FromGguf(*file));
  std::unique_ptr<Model> m(new Model(options, std::move(file), std::move(config)));
  const ModelConfig& c = m->config_;

  MEMORIA_ASSIGN_OR_RETURN(m->tokenizer_, Tokenizer::FromGguf(*m->file_));
  if (m->tokenizer_->vocab_size() > c.n_vocab) {
    return absl::InvalidArgumentError(absl::StrCat("model: the tokenizer has ",
                                                   m->tokenizer_->vocab_size(),
                                                   " tokens but token_embd.weight only ", c.n_vocab));
  }
  MEMORIA_ASSIGN_OR_RETURN(m->backend_, Backend::Create(options.backend));
  MEMORIA_ASSIGN_OR_RETURN(m->graph_,
                           LlamaGraph::Create(c, *m->file_, m->backend_.get(), options.max_batch_tokens));

  RopeConfig rope;
  rope.style = c.rope_style;
  rope.n_dims = c.rope_dims;
  rope.head_dim = c.head_dim;
  rope.freq_base = c.rope_freq_base;
  rope.freq_scale = c.rope_freq_scale;
  if (c.has_rope_freqs) {
    const GgufTensorInfo* f = m->file_->FindTensor("rope_freqs.weight");
    if (f->type != GgmlType::kF32 || f->dims.size() != 1 || f->dims[0] != c.rope_dims / 2) {
      return absl::InvalidArgumentError(
          absl::StrCat("model: rope_freqs.weight must be f32 [", c.rope_dims / 2, "]"));
    }
    rope.freq_factors.resize(c.rope_dims / 2);
    std::memcpy(rope.freq_factors.data(), f->data, rope.freq_factors.size() * sizeof(float));
  }
  KvCacheConfig kv;
  kv.n_layers = c.n_layers;
  kv.n_kv_heads = c.n_kv_heads;
  kv.head_dim = c.head_dim;
  kv.page_size = options.kv_page_size;
  kv.type = options.kv_type;
  const int32_t slots =
      options.kv_cache_tokens > 0 ? options.kv_cache_tokens : std::min(c.context_length, 32768);
  kv.n_pages = (slots + kv.page_size - 1) / kv.page_size;
  MEMORIA_RETURN_IF_ERROR(m->backend_->InitKvCache(kv, rope));
  m->pages_ = KvPagePool(kv.n_pages, kv.page_size);
  return m;
}

absl::StatusOr<ChatTemplateKind> Model::chat_template() const {
  const GgufValue* v = file_->Find("tokenizer.chat_template");
  if (v == nullptr || v->type != GgufValueType::kString) {
    return absl::NotFoundError("model: the file has no tokenizer.chat_template");
  }
  return DetectChatTemplate(v->str);
}

absl::StatusOr<SequenceId> Model::CreateSequence(int32_t first_position) {
  if (first_position < 0 || first_position >= config_.context_length) {
    return absl::InvalidArgumentError(absl::StrCat("model: first position ", first_position,
                                                   " is outside the context of ",
                                                   config_.context_length));
  }
  SequenceId id = next_sequence_++;
  sequences_[id].first_position = first_position;
  return id;
}

void Model::DestroySequence(SequenceId id) {
  auto it = sequences_.find(id);
  if (it == sequences_.end()) return;
  pages_.Release(&it->second.pages);
  sequences_.erase(it);
}

int32_t Model::SequenceLength(SequenceId id) const {
  auto it = sequences_.find(id);
  return it == sequences_.end() ? -1 : it->second.length;
}

absl::Status Model::SetMemory(SequenceId id, std::shared_ptr<const MemoryView> memory) {
  auto it = sequences_.find(id);
  if (it == sequences_.end()) return absl::NotFoundError(absl::StrCat("model: no sequence ", id));
  if (memory != nullptr) {
    if (memory->n_layers() != config_.n_layers || memory->n_kv_heads() != config_.n_kv_heads) {
      return absl::InvalidArgumentError(absl::StrCat(
          "model: memory shaped for ", memory->n_layers(), " layers x ", memory->n_kv_heads(),
          " KV heads, the model has ", config_.n_layers, " x ", config_.n_kv_heads));
    }
    for (int32_t l = 0; l < config_.n_layers; ++l) {
      for (int32_t g = 0; g < config_.n_kv_heads; ++g) {
        for (const MemoryEntries& e : memory->Entries(l, g)) {
          if (e.type != GgmlType::kF32 && e.type != GgmlType::kF16) {
            return absl::InvalidArgumentError("model: memory entries must be f32 or f16");
          }
          if (memory->rotation() != MemoryRotation::kStoredPositions) continue;
          for (int32_t m = 0; m < e.count; ++m) {
            if (e.positions[m] < 0 || e.positions[m] >= config_.context_length) {
              return absl::InvalidArgumentError(absl::StrCat("model: memory entry position ",
                                                             e.positions[m],
                                                             " is outside the context"));
            }
          }
        }
      }
    }
  }
  it->second.memory = std::move(memory);
  return absl::OkStatus();
}

absl::Status Model::TruncateSequence(SequenceId id, int32_t n_tokens) {
  auto it = sequences_.find(id);
  if (it == sequences_.end()) return absl::NotFoundError(absl::StrCat("model: no sequence ", id));
  Sequence& s = it->second;
  if (n_tokens < 0 || n_tokens > s.length) {
    return absl::InvalidArgumentError(absl::StrCat("model: cannot truncate a sequence of ", s.length,
                                                   " tokens to ", n_tokens));
  }
  s.length = n_tokens;
  std::vector<int32_t> tail(s.pages.begin() + pages_.PagesFor(n_tokens), s.pages.end());
  s.pages.resize(pages_.PagesFor(n_tokens));
  pages_.Release(&tail);
  return absl::OkStatus();
}

absl::Status Model::Forward(std::span<const SequenceInput> inputs, ForwardOutput* output) {
  return Run(inputs, nullptr, nullptr, output);
}

absl::Status Model::Introspect(SequenceId id, std::span<const int32_t> tokens,
                               const IntrospectionRequest& request, IntrospectionResult* result,
                               ForwardOutput* output) {
  for (int32_t l : request.kv_layers) {
    if (l < 0 || l >= config_.n_layers) {
      return absl::InvalidArgumentError(absl::StrCat("model: no layer ", l, " to introspect"));
    }
  }
  for (int32_t l : request.hidden_layers) {
    if (l < 0 || l > config_.n_layers) {
      return absl::InvalidArgumentError(absl::StrCat("model: no hidden state ", l));
    }
  }
  *result = IntrospectionResult();
  if (!request.logits && output != nullptr) {
    return absl::InvalidArgumentError("model: an introspection without logits has no output");
  }
  SequenceInput input{id, tokens, false};
  ForwardOutput scratch;
  return Run(std::span<const SequenceInput>(&input, 1), &request, result,
             output != nullptr ? output : &scratch);
}

absl::Status Model::Run(std::span<const SequenceInput> inputs, const IntrospectionRequest* request,
                        IntrospectionResult* result, ForwardOutput* output) {
  // Validate everything before touching state.
  int64_t n_rows = 0;
  absl::flat_hash_set<SequenceId> seen;
  for (const SequenceInput& in : inputs) {
    auto it = sequences_.find(in.sequence);
    if (it == sequences_.end()) return absl::NotFoundError(absl::StrCat("model: no sequence ", in.sequence));
    if (!seen.insert(in.sequence).second) {
      return absl::InvalidArgumentError(absl::StrCat("model: sequence ", in.sequence, " appears twice in a batch"));
    }
    if (in.tokens.empty()) return absl::InvalidArgumentError("model: an input has no tokens");
    for (int32_t t : in.tokens) {
      if (t < 0 || t >= config_.n_vocab) {
        return absl::InvalidArgumentError(absl::StrCat("model: token id ", t, " is outside the vocabulary of ",
                                                       config_.n_vocab));
      }
    }
    const Sequence& s = it->second;
    if (int64_t{s.first_position} + s.length + static_cast<int64_t>(in.tokens.size()) > config_.context_length) {
      return absl::InvalidArgumentError(absl::StrCat(
          "model: sequence ", in.sequence, " would reach position ",
          s.first_position + s.length + in.tokens.size(), ", beyond the context length ",
          config_.context_length));
    }
    n_rows += static_cast<int64_t>(in.tokens.size());
  }
  if (n_rows > options_.max_batch_tokens) {
    return absl::InvalidArgumentError(absl::StrCat("model: ", n_rows, " tokens in one pass, at most ",
                                                   options_.max_batch_tokens));
  }

  // Reserve KV pages for all inputs, or for none.
  std::vector<size_t> old_page_counts;
  for (const SequenceInput& in : inputs) {
    Sequence& s = sequences_[in.sequence];
    old_page_counts.push_back(s.pages.size());
    absl::Status st = pages_.Reserve(s.length + static_cast<int32_t>(in.tokens.size()), &s.pages);
    if (!st.ok()) {
      for (size_t i = 0; i < old_page_counts.size(); ++i) {
        Sequence& r = sequences_[inputs[i].sequence];
        std::vector<int32_t> tail(r.pages.begin() + old_page_counts[i], r.pages.end());
        r.pages.resize(old_page_counts[i]);
        pages_.Release(&tail);
      }
      return st;
    }
  }

  BatchPlan plan;
  std::vector<int32_t> tokens;
  std::vector<int32_t> logit_rows;
  tokens.reserve(n_rows);
  plan.positions.reserve(n_rows);
  output->n_vocab = config_.n_vocab;
  output->first_logit_row.clear();
  for (const SequenceInput& in : inputs) {
    const Sequence& s = sequences_[in.sequence];
    BatchSequence bs;
    bs.pages = s.pages;
    bs.n_cached = s.length;
    bs.first_row = static_cast<int32_t>(tokens.size());
    bs.n_new = static_cast<int32_t>(in.tokens.size());
    bs.memory = s.memory.get();
    plan.sequences.push_back(bs);
    output->first_logit_row.push_back(static_cast<int32_t>(logit_rows.size()));
    for (int32_t i = 0; i < bs.n_new; ++i) {
      plan.positions.push_back(s.first_position + s.length + i);
      if (in.all_logits || i == bs.n_new - 1) logit_rows.push_back(bs.first_row + i);
    }
    tokens.insert(tokens.end(), in.tokens.begin(), in.tokens.end());
  }
  output->logits.resize(logit_rows.size() * static_cast<size_t>(config_.n_vocab));
  MEMORIA_RETURN_IF_ERROR(graph_->Forward(plan, tokens, logit_rows, output->logits.data(), request, result));
  for (const SequenceInput& in : inputs) sequences_[in.sequence].length += static_cast<int32_t>(in.tokens.size());
  return absl::OkStatus();
}

}  // namespace memoria
