// memory-bench: the memory store's headline numbers on one model, one run.
//   ingest: references compiled and stored per second (compile = one introspection pass each).
//   TTFT:   time to first token for a prompt with the top-5 retrieved references injected as
//           memories, vs the same 5 references' text prepended to the prompt (RAG). Both include
//           the retrieval (query vector + index search); memory adds loading the pages.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "client/cli/flags.h"
#include "engine/model/model.h"
#include "engine/util/status_macros.h"
#include "memstore/compiler.h"
#include "memstore/fingerprint.h"
#include "memstore/memory_blob.h"
#include "memstore/memory_store.h"

namespace memoria {
namespace {

using Clock = std::chrono::steady_clock;
double Since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Deterministic English-like filler: facts about made-up entities from small word lists.
std::string MakeDocument(std::mt19937& rng, int sentences) {
  static const char* kNames[] = {"Varnholt", "Meridel", "Ostrava Quill", "Tamsin Vale", "Corvin Ash",
                                 "Lumen Bay", "Halvard Stone", "Zephyr 9", "Ilsabet Marr", "Quorra Fen"};
  static const char* kVerbs[] = {"exports", "was founded in", "is known for", "sells", "discovered",
                                 "lives near", "builds", "studied", "collects", "repairs"};
  static const char* kThings[] = {"blue copper", "the year 1842", "glass bells", "graphite cases",
                                  "a silver comet", "the northern harbour", "clockwork birds",
                                  "ancient maps", "amber lanterns", "river boats"};
  std::string doc;
  for (int i = 0; i < sentences; ++i) {
    doc += std::string(kNames[rng() % 10]) + " " + kVerbs[rng() % 10] + " " + kThings[rng() % 10] + ". ";
  }
  return doc;
}


// Logits of `prompt` (BOS first) at the last position, with `view` as memory (null = none).
absl::StatusOr<std::vector<float>> LastLogits(Model& model, const std::vector<int32_t>& prompt,
                                              std::shared_ptr<const MemoryView> view, int32_t first_position) {
  MEMORIA_ASSIGN_OR_RETURN(SequenceId seq, model.CreateSequence(first_position));
  absl::Status st = model.SetMemory(seq, std::move(view));
  ForwardOutput out;
  SequenceInput in{seq, prompt};
  if (st.ok()) st = model.Forward(std::span<const SequenceInput>(&in, 1), &out);
  model.DestroySequence(seq);
  if (!st.ok()) return st;
  return std::vector<float>(out.Logits(0), out.Logits(0) + out.n_vocab);
}

// The memory as generation sees it: encoded with `codec`, decoded into a page, put in a view.
absl::StatusOr<std::shared_ptr<const MemoryView>> ViewThrough(const ModelConfig& c, const ReferenceKv& kv,
                                                              const VectorCodec& codec) {
  MEMORIA_ASSIGN_OR_RETURN(auto page, MemoryPage::Decode(EncodeMemoryBlob(kv, codec), codec, c.n_kv_heads,
                                                         c.head_dim));
  auto view = std::make_shared<MemoryView>(c.n_layers, c.n_kv_heads, MemoryRotation::kStoredPositions);
  AddToView(page, view.get());
  return view;
}

// Relative distance of `a` from `b`, measured against how far `b` is from `base`.
double LostEffect(const std::vector<float>& a, const std::vector<float>& b, const std::vector<float>& base) {
  double lost = 0, effect = 0;
  for (size_t v = 0; v < a.size(); ++v) {
    lost += (a[v] - b[v]) * (a[v] - b[v]);
    effect += (b[v] - base[v]) * (b[v] - base[v]);
  }
  return std::sqrt(lost / std::max(effect, 1e-30));
}

// How much of a dense memory's effect on the logits a sparse one keeps, per mass rule:
// |logits(sparse) - logits(dense)| / |logits(dense) - logits(no memory)| over held-out prompts
// (the text that follows each reference), averaged. Lower is better.
absl::Status MassRuleStudy(Model& model, const std::vector<std::string>& documents, int32_t kept) {
  const ModelConfig& c = model.config();
  const Tokenizer& tok = model.tokenizer();
  CodecOptions f32_options;
  f32_options.kind = CodecKind::kF32;
  f32_options.dim = c.head_dim;
  MEMORIA_ASSIGN_OR_RETURN(std::unique_ptr<VectorCodec> f32, VectorCodec::Create(f32_options));
  std::printf("\n| mass rule (k=%d) | lost memory effect (mean) | references |\n|---|---|---|\n", kept);
  for (MassRule rule : {MassRule::kSum, MassRule::kPerQuery}) {
    CompilerOptions sparse_o, dense_o;
    sparse_o.kept_tokens = kept;
    sparse_o.mass_rule = rule;
    dense_o.dense = true;
    MEMORIA_ASSIGN_OR_RETURN(MemoryCompiler sparse, MemoryCompiler::Create(&model, sparse_o));
    MEMORIA_ASSIGN_OR_RETURN(MemoryCompiler dense, MemoryCompiler::Create(&model, dense_o));
    double total = 0;
    int n = 0;
    for (const std::string& doc : documents) {
      MEMORIA_ASSIGN_OR_RETURN(auto s_refs, sparse.Compile(doc));
      MEMORIA_ASSIGN_OR_RETURN(auto d_refs, dense.Compile(doc));
      const std::vector<int32_t> tokens = tok.Encode(doc, false, false);
      for (size_t i = 0; i + 1 < s_refs.size(); ++i) {
        std::vector<int32_t> prompt = {tok.bos()};
        const int32_t begin = s_refs[i + 1].token_begin;
        prompt.insert(prompt.end(), tokens.begin() + begin, tokens.begin() + std::min<int32_t>(begin + 32, tokens.size()));
        MEMORIA_ASSIGN_OR_RETURN(auto dense_view, ViewThrough(c, d_refs[i].memory, *f32));
        MEMORIA_ASSIGN_OR_RETURN(auto sparse_view, ViewThrough(c, s_refs[i].memory, *f32));
        MEMORIA_ASSIGN_OR_RETURN(auto none, LastLogits(model, prompt, nullptr, sparse_o.reference_tokens));
        MEMORIA_ASSIGN_OR_RETURN(auto with_dense, LastLogits(model, prompt, dense_view, sparse_o.reference_tokens));
        MEMORIA_ASSIGN_OR_RETURN(auto with_sparse, LastLogits(model, prompt, sparse_view, sparse_o.reference_tokens));
        total += LostEffect(with_sparse, with_dense, none);
        ++n;
      }
    }
    std::printf("| %s | %.3f | %d |\n", rule == MassRule::kSum ? "sum" : "per query", total / std::max(n, 1), n);
  }
  return absl::OkStatus();
}

// What each codec costs a real memory: |logits(codec) - logits(f32)| / |logits(f32) - logits(none)|
// on held-out prompts, sparse memories (default compiler options).
absl::Status CodecStudy(Model& model, const std::vector<std::string>& documents) {
  const ModelConfig& c = model.config();
  const Tokenizer& tok = model.tokenizer();
  MEMORIA_ASSIGN_OR_RETURN(MemoryCompiler compiler, MemoryCompiler::Create(&model, CompilerOptions()));
  std::vector<std::vector<CompiledReference>> refs;
  std::vector<float> training;  // PQ learns from every kept key and value
  for (const std::string& doc : documents) {
    MEMORIA_ASSIGN_OR_RETURN(auto r, compiler.Compile(doc));
    for (const CompiledReference& ref : r) {
      for (const ReferenceKv::Head& h : ref.memory.heads) {
        training.insert(training.end(), h.keys.begin(), h.keys.end());
        training.insert(training.end(), h.values.begin(), h.values.end());
      }
    }
    refs.push_back(std::move(r));
  }
  std::printf("\n| codec (k=8, this model's memories) | bytes/ref | logit error vs f32 memory (mean) |\n|---|---|---|\n");
  CodecOptions o;
  o.dim = c.head_dim;
  o.kind = CodecKind::kF32;
  MEMORIA_ASSIGN_OR_RETURN(std::unique_ptr<VectorCodec> f32, VectorCodec::Create(o));
  for (CodecKind kind : {CodecKind::kF16, CodecKind::kInt8, CodecKind::kInt4, CodecKind::kPq}) {
    o.kind = kind;
    MEMORIA_ASSIGN_OR_RETURN(std::unique_ptr<VectorCodec> codec, VectorCodec::Create(o));
    if (codec->NeedsTraining()) MEMORIA_RETURN_IF_ERROR(codec->Train(training));
    double total = 0, bytes = 0;
    int n = 0;
    for (size_t d = 0; d < documents.size(); ++d) {
      const std::vector<int32_t> tokens = tok.Encode(documents[d], false, false);
      for (size_t i = 0; i + 1 < refs[d].size(); ++i) {
        std::vector<int32_t> prompt = {tok.bos()};
        const int32_t begin = refs[d][i + 1].token_begin;
        prompt.insert(prompt.end(), tokens.begin() + begin, tokens.begin() + std::min<int32_t>(begin + 32, tokens.size()));
        const int32_t pos = compiler.options().reference_tokens;
        MEMORIA_ASSIGN_OR_RETURN(auto exact_view, ViewThrough(c, refs[d][i].memory, *f32));
        MEMORIA_ASSIGN_OR_RETURN(auto coded_view, ViewThrough(c, refs[d][i].memory, *codec));
        MEMORIA_ASSIGN_OR_RETURN(auto none, LastLogits(model, prompt, nullptr, pos));
        MEMORIA_ASSIGN_OR_RETURN(auto exact, LastLogits(model, prompt, exact_view, pos));
        MEMORIA_ASSIGN_OR_RETURN(auto coded, LastLogits(model, prompt, coded_view, pos));
        total += LostEffect(coded, exact, none);
        bytes += static_cast<double>(EncodeMemoryBlob(refs[d][i].memory, *codec).size());
        ++n;
      }
    }
    std::printf("| %s | %.0f | %.4f |\n", CodecName(kind), bytes / std::max(n, 1), total / std::max(n, 1));
  }
  return absl::OkStatus();
}

absl::Status Main(const std::vector<std::string>& args) {
  MEMORIA_ASSIGN_OR_RETURN(cli::Flags flags,
                           cli::Flags::Parse(args, {"-m", "-t", "--docs", "--codec", "--prompt-tokens", "-r",
                                                    "--kept"},
                                             {"--dense"}));
  MEMORIA_ASSIGN_OR_RETURN(std::string path, flags.Required("-m"));
  MEMORIA_ASSIGN_OR_RETURN(int64_t threads, flags.Int("-t", 0));
  MEMORIA_ASSIGN_OR_RETURN(int64_t n_docs, flags.Int("--docs", 20));
  MEMORIA_ASSIGN_OR_RETURN(int64_t prompt_tokens, flags.Int("--prompt-tokens", 32));
  MEMORIA_ASSIGN_OR_RETURN(int64_t repeats, flags.Int("-r", 5));
  MEMORIA_ASSIGN_OR_RETURN(int64_t kept, flags.Int("--kept", 8));
  MEMORIA_ASSIGN_OR_RETURN(CodecKind codec, ParseCodec(flags.String("--codec", "int8")));
  if (n_docs < 1 || prompt_tokens < 1 || repeats < 1) return absl::InvalidArgumentError("bad sizes");

  ModelOptions mo;
  mo.backend.n_threads = static_cast<int32_t>(threads);
  mo.max_batch_tokens = 1024;
  mo.kv_cache_tokens = 4096;
  MEMORIA_ASSIGN_OR_RETURN(std::unique_ptr<Model> model, Model::Load(mo, path));
  const ModelConfig& c = model->config();
  CompilerOptions co;
  co.kept_tokens = static_cast<int32_t>(kept);
  co.dense = flags.Has("--dense");
  MEMORIA_ASSIGN_OR_RETURN(MemoryCompiler compiler, MemoryCompiler::Create(model.get(), co));

  const std::string dir = (std::filesystem::temp_directory_path() / "memoria_memory_bench").string();
  std::filesystem::remove_all(dir);
  MemoryStoreOptions so;
  so.codec.kind = codec;
  so.codec.dim = c.head_dim;
  so.retrieval_dim = compiler.retrieval_dim();
  MEMORIA_ASSIGN_OR_RETURN(std::unique_ptr<MemoryStore> store,
                           MemoryStore::Open(so, dir, FingerprintOf(*model)));

  // ingest
  std::mt19937 rng(1);
  std::vector<std::string> study_docs;
  for (int i = 0; i < 4; ++i) study_docs.push_back(MakeDocument(rng, 30));
  int64_t n_refs = 0;
  auto t0 = Clock::now();
  for (int64_t d = 0; d < n_docs; ++d) {
    Document doc;
    doc.id = "doc-" + std::to_string(d);
    doc.collection = "bench";
    MEMORIA_ASSIGN_OR_RETURN(doc.references, compiler.Compile(MakeDocument(rng, 60)));
    n_refs += static_cast<int64_t>(doc.references.size());
    MEMORIA_RETURN_IF_ERROR(store->Put(doc).status());
  }
  const double ingest_s = Since(t0);
  const StoreStats stats = store->Stats();
  std::printf("model: %s (%s)\n", c.arch_name.c_str(), model->backend().Describe().c_str());
  std::printf("ingest: %lld documents, %lld references in %.2f s = %.1f references/s; %.0f bytes/reference (%s)\n\n",
              static_cast<long long>(n_docs), static_cast<long long>(n_refs), ingest_s, n_refs / ingest_s,
              static_cast<double>(stats.memory_bytes) / std::max<int64_t>(1, stats.references),
              CodecName(codec));

  const Tokenizer& tok = model->tokenizer();
  std::vector<int32_t> prompt = tok.Encode(MakeDocument(rng, 40), false, false);
  prompt.resize(std::min<size_t>(prompt.size(), prompt_tokens));
  // The 5 best references that hold a full R tokens (a document's short tail would flatter RAG).
  auto top_references = [&](const std::vector<int32_t>& query) -> absl::StatusOr<std::vector<uint64_t>> {
    MEMORIA_ASSIGN_OR_RETURN(std::vector<float> q, compiler.QueryVector(query));
    MEMORIA_ASSIGN_OR_RETURN(std::vector<RetrievedReference> hits, store->Retrieve(q, 20, {}, -1.0f));
    std::vector<uint64_t> ids;
    for (const RetrievedReference& h : hits) {
      MEMORIA_ASSIGN_OR_RETURN(StoredReference r, store->GetReference(h.reference_id));
      if (r.token_end - r.token_begin == co.reference_tokens && ids.size() < 5) ids.push_back(h.reference_id);
    }
    if (ids.size() < 5) return absl::FailedPreconditionError("fewer than 5 full references stored");
    return ids;
  };
  std::vector<double> mem_s, rag_s;
  int64_t rag_tokens = 0;
  for (int64_t rep = 0; rep < repeats; ++rep) {
    // memory
    t0 = Clock::now();
    MEMORIA_ASSIGN_OR_RETURN(std::vector<uint64_t> ids, top_references(prompt));
    MEMORIA_ASSIGN_OR_RETURN(auto pages, store->Load(ids));
    auto view = std::make_shared<MemoryView>(c.n_layers, c.n_kv_heads, MemoryRotation::kStoredPositions);
    for (const auto& page : pages) AddToView(page, view.get());
    MEMORIA_ASSIGN_OR_RETURN(SequenceId seq, model->CreateSequence(co.reference_tokens));
    MEMORIA_RETURN_IF_ERROR(model->SetMemory(seq, view));
    std::vector<int32_t> with_bos = {tok.bos()};
    with_bos.insert(with_bos.end(), prompt.begin(), prompt.end());
    ForwardOutput out;
    SequenceInput in{seq, with_bos};
    MEMORIA_RETURN_IF_ERROR(model->Forward(std::span<const SequenceInput>(&in, 1), &out));
    std::max_element(out.Logits(0), out.Logits(0) + c.n_vocab);
    mem_s.push_back(Since(t0));
    model->DestroySequence(seq);

    // RAG: the same references' text in front of the prompt
    t0 = Clock::now();
    MEMORIA_ASSIGN_OR_RETURN(ids, top_references(prompt));
    std::vector<int32_t> context = {tok.bos()};
    for (uint64_t id : ids) {
      MEMORIA_ASSIGN_OR_RETURN(StoredReference r, store->GetReference(id));
      std::vector<int32_t> t = tok.Encode(r.text, false, false);
      context.insert(context.end(), t.begin(), t.end());
    }
    context.insert(context.end(), prompt.begin(), prompt.end());
    rag_tokens = static_cast<int64_t>(context.size());
    MEMORIA_ASSIGN_OR_RETURN(seq, model->CreateSequence(0));
    for (size_t i = 0; i < context.size(); i += mo.max_batch_tokens) {
      SequenceInput rin{seq, std::span<const int32_t>(context).subspan(
                                 i, std::min<size_t>(mo.max_batch_tokens, context.size() - i))};
      MEMORIA_RETURN_IF_ERROR(model->Forward(std::span<const SequenceInput>(&rin, 1), &out));
    }
    std::max_element(out.Logits(0), out.Logits(0) + c.n_vocab);
    rag_s.push_back(Since(t0));
    model->DestroySequence(seq);
  }
  const double mem = Median(mem_s), rag = Median(rag_s);
  std::printf("| TTFT, %lld-token prompt, top-5 references | median ms |\n|---|---|\n",
              static_cast<long long>(prompt.size()));
  std::printf("| memory (%s, k=%lld, memory layers = first half) | %.1f |\n", CodecName(codec),
              static_cast<long long>(co.dense ? 0 : kept), mem * 1e3);
  std::printf("| RAG (%lld tokens prefilled) | %.1f |\n", static_cast<long long>(rag_tokens), rag * 1e3);
  std::printf("| **RAG / memory** | **%.1fx** |\n", rag / mem);
  MEMORIA_RETURN_IF_ERROR(MassRuleStudy(*model, study_docs, static_cast<int32_t>(kept)));
  MEMORIA_RETURN_IF_ERROR(CodecStudy(*model, study_docs));
  store.reset();
  std::filesystem::remove_all(dir);
  return absl::OkStatus();
}

}  // namespace
}  // namespace memoria

int main(int argc, char** argv) {
  absl::Status st = memoria::Main(std::vector<std::string>(argv + 1, argv + argc));
  if (!st.ok()) {
    std::fprintf(stderr, "memory-bench: %s\n", std::string(st.message()).c_str());
    return 1;
  }
  return 0;
}
