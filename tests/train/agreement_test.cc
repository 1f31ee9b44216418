// The trainer (tools/train/) and the engine compute the same thing: a tiny random model built and
// exported by the trainer, and the trainer's results for it in a case file written by
// tools/train/agreement_case.py (a ctest fixture), are reproduced here through the real pipeline:
// tokenizer, MemoryCompiler (dense and sparse), memory blob (f32 codec), MemoryView, Forward.
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "engine/model/model.h"
#include "gtest/gtest.h"
#include "memstore/codec.h"
#include "memstore/compiler.h"
#include "memstore/memory_blob.h"

namespace memoria::testing {
namespace {

// What agreement_case.py computed (see its docstring for the line format).
struct Case {
  std::string model_path;
  int32_t kept_tokens = 0;
  int32_t first_position = 0;
  struct Text {
    std::string text;
    std::vector<int32_t> ids;
  };
  std::vector<Text> samples, references;
  std::vector<std::vector<float>> vectors;  // per reference
  std::vector<int32_t> memory_layers;  // what the model declares (memoria.memory_layers)
  // kept[layer][reference][kv_head]: positions kept by sparse selection
  std::vector<std::vector<std::vector<std::vector<int32_t>>>> kept;
  std::vector<int32_t> prompt;
  std::vector<float> query_vector;
  std::vector<std::vector<float>> logits_none, logits_dense, logits_sparse;  // per prompt row
};

template <typename T>
std::vector<T> ReadValues(std::istringstream& in, size_t n) {
  std::vector<T> v(n);
  for (T& x : v) in >> x;
  return v;
}
template <typename T>
std::vector<T> ReadRest(std::istringstream& in) {
  std::vector<T> v;
  for (T x; in >> x;) v.push_back(x);
  return v;
}

Case::Text ReadText(std::istringstream& in) {
  Case::Text t;
  std::string hex;
  size_t n = 0;
  in >> hex >> n;
  t.text = absl::HexStringToBytes(hex);
  t.ids = ReadValues<int32_t>(in, n);
  return t;
}

bool LoadCase(const std::string& dir, Case* c) {
  std::ifstream file(dir + "/case.txt");
  if (!file.good()) return false;
  for (std::string line; std::getline(file, line);) {
    std::istringstream in(line);
    std::string key;
    in >> key;
    if (key == "model") {
      std::string name;
      in >> name;
      c->model_path = dir + "/" + name;
    } else if (key == "kept_tokens") {
      in >> c->kept_tokens;
    } else if (key == "memory_layers") {
      for (int32_t l; in >> l;) c->memory_layers.push_back(l);
    } else if (key == "first_position") {
      in >> c->first_position;
    } else if (key == "sample") {
      c->samples.push_back(ReadText(in));
    } else if (key == "reference") {
      c->references.push_back(ReadText(in));
    } else if (key == "vector") {
      size_t i = 0;
      in >> i;
      c->vectors.resize(std::max(c->vectors.size(), i + 1));
      c->vectors[i] = ReadRest<float>(in);
    } else if (key == "kept") {
      size_t layer = 0, ref = 0, head = 0, n = 0;
      in >> layer >> ref >> head >> n;
      c->kept.resize(std::max(c->kept.size(), layer + 1));
      c->kept[layer].resize(std::max(c->kept[layer].size(), ref + 1));
      c->kept[layer][ref].resize(std::max(c->kept[layer][ref].size(), head + 1));
      c->kept[layer][ref][head] = ReadValues<int32_t>(in, n);
    } else if (key == "prompt") {
      size_t n = 0;
      in >> n;
      c->prompt = ReadValues<int32_t>(in, n);
    } else if (key == "query_vector") {
      c->query_vector = ReadRest<float>(in);
    } else if (key == "logits") {
      std::string which;
      in >> which;
      auto& rows = which == "none" ? c->logits_none : which == "dense" ? c->logits_dense : c->logits_sparse;
      rows.push_back(ReadRest<float>(in));
    }
  }
  return true;
}

// Largest |a - b| over the largest |b|.
double RelativeError(const float* a, const std::vector<float>& b) {
  double diff = 0, scale = 1e-12;
  for (size_t i = 0; i < b.size(); ++i) {
    diff = std::max(diff, std::fabs(static_cast<double>(a[i]) - b[i]));
    scale = std::max(scale, std::fabs(static_cast<double>(b[i])));
  }
  return diff / scale;
}

class TrainerAgreementTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!LoadCase(MEMORIA_TRAIN_CASE_DIR, &case_)) {
      GTEST_SKIP() << "no " MEMORIA_TRAIN_CASE_DIR "/case.txt (tools/train/agreement_case.py needs "
                      "python3-torch); skipping";
    }
    ModelOptions mo;
    mo.kv_type = GgmlType::kF32;
    mo.max_batch_tokens = 256;
    mo.kv_cache_tokens = 1024;
    mo.backend.n_threads = 2;
    auto m = Model::Load(mo, case_.model_path);
    ASSERT_TRUE(m.ok()) << m.status();
    model_ = std::move(*m);
  }

  // Compiles each reference (one reference per document) with the compiler's defaults but
  // `dense` / the case's k.
  std::vector<CompiledReference> Compile(bool dense) {
    CompilerOptions o;
    o.dense = dense;
    o.kept_tokens = case_.kept_tokens;
    auto compiler = MemoryCompiler::Create(model_.get(), o);
    EXPECT_TRUE(compiler.ok()) << compiler.status();
    std::vector<CompiledReference> out;
    for (const Case::Text& r : case_.references) {
      auto refs = compiler->Compile(r.text);
      EXPECT_TRUE(refs.ok()) << refs.status();
      EXPECT_EQ(refs->size(), 1u);
      out.push_back(std::move(refs->front()));
    }
    return out;
  }

  // The prompt's logits (every row) with `refs` as memory through the f32 blob codec.
  std::vector<float> Generate(const std::vector<CompiledReference>& refs, int32_t first_position) {
    const ModelConfig& c = model_->config();
    std::shared_ptr<MemoryView> view;
    if (!refs.empty()) {
      CodecOptions co;
      co.kind = CodecKind::kF32;
      co.dim = c.head_dim;
      auto codec = VectorCodec::Create(co);
      EXPECT_TRUE(codec.ok()) << codec.status();
      view = std::make_shared<MemoryView>(c.n_layers, c.n_kv_heads, MemoryRotation::kStoredPositions);
      for (const CompiledReference& r : refs) {
        auto page = MemoryPage::Decode(EncodeMemoryBlob(r.memory, **codec), **codec, c.n_kv_heads,
                                       c.head_dim);
        EXPECT_TRUE(page.ok()) << page.status();
        AddToView(*page, view.get());
      }
    }
    auto seq = model_->CreateSequence(first_position);
    EXPECT_TRUE(seq.ok()) << seq.status();
    if (view != nullptr) {
      EXPECT_TRUE(model_->SetMemory(*seq, view).ok());
    }
    SequenceInput in{*seq, case_.prompt, /*all_logits=*/true};
    ForwardOutput out;
    absl::Status st = model_->Forward(std::span<const SequenceInput>(&in, 1), &out);
    EXPECT_TRUE(st.ok()) << st;
    model_->DestroySequence(*seq);
    return out.logits;
  }

  void ExpectLogits(const std::vector<float>& logits, const std::vector<std::vector<float>>& expected,
                    const char* what) {
    const int32_t n_vocab = model_->config().n_vocab;
    ASSERT_EQ(expected.size(), case_.prompt.size()) << what;
    ASSERT_EQ(logits.size(), expected.size() * n_vocab) << what;
    for (size_t i = 0; i < expected.size(); ++i) {
      ASSERT_EQ(expected[i].size(), static_cast<size_t>(n_vocab)) << what;
      EXPECT_LT(RelativeError(&logits[i * n_vocab], expected[i]), 1e-4) << what << " row " << i;
    }
  }

  Case case_;
  std::unique_ptr<Model> model_;
};

TEST_F(TrainerAgreementTest, TokenizerMatchesTrainer) {
  ASSERT_FALSE(case_.samples.empty());
  for (const Case::Text& s : case_.samples) {
    EXPECT_EQ(model_->tokenizer().Encode(s.text, false, false), s.ids) << s.text;
    EXPECT_EQ(model_->tokenizer().Decode(s.ids, false), s.text);
  }
  for (const Case::Text& r : case_.references) {
    EXPECT_EQ(model_->tokenizer().Encode(r.text, false, false), r.ids) << r.text;
  }
  EXPECT_EQ(model_->tokenizer().Encode("A", true, false).front(), model_->tokenizer().bos());
}

TEST_F(TrainerAgreementTest, LogitsWithoutMemory) {
  ExpectLogits(Generate({}, 0), case_.logits_none, "no memory");
}

TEST_F(TrainerAgreementTest, DenseMemory) {
  const std::vector<CompiledReference> refs = Compile(/*dense=*/true);
  ASSERT_EQ(refs.size(), case_.vectors.size());
  for (size_t r = 0; r < refs.size(); ++r) {
    ASSERT_EQ(refs[r].vector.size(), case_.vectors[r].size());
    EXPECT_LT(RelativeError(refs[r].vector.data(), case_.vectors[r]), 1e-4) << "vector " << r;
  }
  ExpectLogits(Generate(refs, case_.first_position), case_.logits_dense, "dense memory");
}

TEST_F(TrainerAgreementTest, SparseMemoryKeepsTheSameTokens) {
  const std::vector<CompiledReference> refs = Compile(/*dense=*/false);
  for (size_t r = 0; r < refs.size(); ++r) {
    const ReferenceKv& kv = refs[r].memory;
    ASSERT_EQ(kv.layers, case_.memory_layers);
    for (size_t li = 0; li < kv.layers.size(); ++li) {
      for (int32_t g = 0; g < kv.n_kv_heads; ++g) {
        EXPECT_EQ(kv.At(li, g).positions, case_.kept[kv.layers[li]][r][g])
            << "layer " << kv.layers[li] << " reference " << r << " head " << g;
      }
    }
  }
  ExpectLogits(Generate(refs, case_.first_position), case_.logits_sparse, "sparse memory");
}

TEST_F(TrainerAgreementTest, QueryVector) {
  CompilerOptions o;
  auto compiler = MemoryCompiler::Create(model_.get(), o);
  ASSERT_TRUE(compiler.ok()) << compiler.status();
  // The compiler adds BOS itself: pass the prompt without it.
  auto v = compiler->QueryVector(std::span<const int32_t>(case_.prompt).subspan(1));
  ASSERT_TRUE(v.ok()) << v.status();
  ASSERT_EQ(v->size(), case_.query_vector.size());
  EXPECT_LT(RelativeError(v->data(), case_.query_vector), 1e-4);
}

}  // namespace
}  // namespace memoria::testing
