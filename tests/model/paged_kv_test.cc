// Paged KV cache and batching: how tokens are fed must not change the logits.
#include <random>
#include <vector>

#include "engine/model/model.h"
#include "gtest/gtest.h"
#include "tests/model/model_test_util.h"

namespace memoria::testing {
namespace {

class PagedKvTest : public ::testing::Test {
 protected:
  void SetUp() override {
    RandomModelOptions o;
    o.n_layers = 2;
    o.n_embd = 64;
    o.n_heads = 4;
    o.n_kv_heads = 2;
    o.n_ff = 128;
    o.seed = 11;
    path_ = SmallModel("paged_llama", "ggml-vocab-llama-spm.gguf", o);
    if (path_.empty()) GTEST_SKIP() << "../shared/vocab not found; skipping";
    auto m = LoadModel(256);
    ASSERT_TRUE(m.ok()) << m.status();
    model_ = std::move(*m);
    n_vocab_ = model_->config().n_vocab;
  }

  // The test model with an f32 cache of `kv_cache_tokens` slots in pages of 4, on 2 threads.
  absl::StatusOr<std::unique_ptr<Model>> LoadModel(int32_t kv_cache_tokens) {
    ModelOptions mo;
    mo.kv_type = GgmlType::kF32;
    mo.kv_page_size = 4;
    mo.kv_cache_tokens = kv_cache_tokens;
    mo.max_batch_tokens = 64;
    mo.backend.n_threads = 2;
    return Model::Load(mo, path_);
  }

  std::vector<int32_t> Tokens(int n, uint32_t seed) {
    std::mt19937 rng(seed);
    std::vector<int32_t> t(n);
    for (int32_t& x : t) x = static_cast<int32_t>(rng() % n_vocab_);
    return t;
  }

  // Logits after feeding `tokens` to a new sequence in pieces of `chunk` tokens.
  std::vector<float> FeedInChunks(const std::vector<int32_t>& tokens, size_t chunk) {
    auto seq = model_->CreateSequence();
    EXPECT_TRUE(seq.ok());
    ForwardOutput out;
    for (size_t i = 0; i < tokens.size(); i += chunk) {
      SequenceInput in{*seq, std::span<const int32_t>(tokens).subspan(i, std::min(chunk, tokens.size() - i))};
      absl::Status st = model_->Forward(std::span<const SequenceInput>(&in, 1), &out);
      EXPECT_TRUE(st.ok()) << st;
    }
    model_->DestroySequence(*seq);
    return std::vector<float>(out.Logits(0), out.Logits(0) + n_vocab_);
  }

  std::string path_;
  std::unique_ptr<Model> model_;
  int32_t n_vocab_ = 0;
};

TEST_F(PagedKvTest, ChunkedPrefillAndDecodeMatchOnePass) {
  std::vector<int32_t> tokens = Tokens(37, 1);
  std::vector<float> whole = FeedInChunks(tokens, 64);
  for (size_t chunk : {1, 3, 4, 16}) {
    std::vector<float> pieces = FeedInChunks(tokens, chunk);
    EXPECT_LT(RelativeMaxError(pieces.data(), whole.data(), n_vocab_), 1e-5) << "chunk " << chunk;
  }
}

TEST_F(PagedKvTest, BatchedSequencesMatchEachAlone) {
  // Three sequences of different lengths, interleaved so their pages are not contiguous.
  std::vector<std::vector<int32_t>> prompts = {Tokens(5, 2), Tokens(13, 3), Tokens(2, 4)};
  std::vector<int32_t> next = Tokens(3, 5);
  std::vector<SequenceId> seqs;
  for (size_t s = 0; s < prompts.size(); ++s) seqs.push_back(*model_->CreateSequence());
  ForwardOutput out;
  // Prefill all three in one pass (mixed lengths), then one decode step for all three.
  std::vector<SequenceInput> inputs;
  for (size_t s = 0; s < prompts.size(); ++s) inputs.push_back({seqs[s], prompts[s]});
  ASSERT_TRUE(model_->Forward(inputs, &out).ok());
  inputs.clear();
  for (size_t s = 0; s < prompts.size(); ++s) inputs.push_back({seqs[s], std::span<const int32_t>(&next[s], 1)});
  ASSERT_TRUE(model_->Forward(inputs, &out).ok());
  for (size_t s = 0; s < prompts.size(); ++s) {
    std::vector<int32_t> alone = prompts[s];
    alone.push_back(next[s]);
    std::vector<float> want = FeedInChunks(alone, 64);
    EXPECT_LT(RelativeMaxError(out.Logits(s), want.data(), n_vocab_), 1e-5) << "sequence " << s;
    EXPECT_EQ(model_->SequenceLength(seqs[s]), static_cast<int32_t>(alone.size()));
  }
  for (SequenceId id : seqs) model_->DestroySequence(id);
  EXPECT_EQ(model_->free_kv_pages(), model_->total_kv_pages());
}

TEST_F(PagedKvTest, DecodeRowsBesidePromptRowsMatchEachAlone) {
  // One pass that decodes two sequences (long and short context) and prefills a third, as the
  // scheduler's continuous batches do.
  std::vector<std::vector<int32_t>> prompts = {Tokens(45, 6), Tokens(3, 7)};
  std::vector<SequenceId> seqs;
  ForwardOutput out;
  for (const std::vector<int32_t>& p : prompts) {
    seqs.push_back(*model_->CreateSequence());
    SequenceInput in{seqs.back(), p};
    ASSERT_TRUE(model_->Forward(std::span<const SequenceInput>(&in, 1), &out).ok());
  }
  std::vector<int32_t> next = Tokens(2, 8), third = Tokens(10, 9);
  seqs.push_back(*model_->CreateSequence());
  std::vector<SequenceInput> inputs = {{seqs[0], std::span<const int32_t>(&next[0], 1)},
                                       {seqs[2], third},
                                       {seqs[1], std::span<const int32_t>(&next[1], 1)}};
  ASSERT_TRUE(model_->Forward(inputs, &out).ok());
  const std::vector<std::vector<int32_t>> alone = {
      [&] { auto t = prompts[0]; t.push_back(next[0]); return t; }(), third,
      [&] { auto t = prompts[1]; t.push_back(next[1]); return t; }()};
  for (size_t i = 0; i < inputs.size(); ++i) {
    std::vector<float> want = FeedInChunks(alone[i], 64);
    EXPECT_LT(RelativeMaxError(out.Logits(i), want.data(), n_vocab_), 1e-5) << "input " << i;
  }
  for (SequenceId id : seqs) model_->DestroySequence(id);
}

TEST_F(PagedKvTest, LongContextDecodeMatchesPromptPasses) {
  // A decode row attends to a context of 256 slots or more by KV group, in chunks merged after
  // (flash-decoding), to a shorter one by head: steps across that boundary, into two to four
  // chunks, agree with prompt passes over the same tokens.
  auto m = LoadModel(1024);
  ASSERT_TRUE(m.ok()) << m.status();
  Model& model = **m;
  const std::vector<int32_t> tokens = Tokens(530, 10);
  constexpr size_t kFirstDecoded = 250;
  // every position's logits from prompt passes of 64 tokens
  std::vector<float> want;
  auto whole = model.CreateSequence();
  ASSERT_TRUE(whole.ok());
  for (size_t i = 0; i < tokens.size(); i += 64) {
    ForwardOutput out;
    const size_t n = std::min<size_t>(64, tokens.size() - i);
    SequenceInput in{*whole, std::span<const int32_t>(tokens).subspan(i, n), true};
    ASSERT_TRUE(model.Forward(std::span<const SequenceInput>(&in, 1), &out).ok());
    want.insert(want.end(), out.logits.begin(), out.logits.end());
  }
  model.DestroySequence(*whole);  // the cache holds one such context
  auto seq = model.CreateSequence();
  ASSERT_TRUE(seq.ok());
  ForwardOutput out;
  for (size_t i = 0; i < kFirstDecoded; i += 50) {
    SequenceInput in{*seq, std::span<const int32_t>(tokens).subspan(i, 50)};
    ASSERT_TRUE(model.Forward(std::span<const SequenceInput>(&in, 1), &out).ok());
  }
  for (size_t i = kFirstDecoded; i < tokens.size(); ++i) {
    SequenceInput in{*seq, std::span<const int32_t>(&tokens[i], 1)};
    ASSERT_TRUE(model.Forward(std::span<const SequenceInput>(&in, 1), &out).ok());
    EXPECT_LT(RelativeMaxError(out.Logits(0), want.data() + i * n_vocab_, n_vocab_), 1e-5)
        << "position " << i;
  }
}

TEST_F(PagedKvTest, RejectedPassChangesNothing) {
  auto a = model_->CreateSequence();
  ASSERT_TRUE(a.ok());
  std::vector<int32_t> tokens = Tokens(8, 6);
  ForwardOutput out;
  SequenceInput in{*a, tokens};
  ASSERT_TRUE(model_->Forward(std::span<const SequenceInput>(&in, 1), &out).ok());

  std::vector<int32_t> bad = {1, n_vocab_};  // out of the vocabulary
  SequenceInput bad_in{*a, bad};
  absl::Status st = model_->Forward(std::span<const SequenceInput>(&bad_in, 1), &out);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("vocabulary"), std::string::npos) << st;
  st = absl::OkStatus();

  // Feed another sequence until the pool (64 pages of 4 slots) runs out: the failing pass must
  // leave its length and the free pages as they were.
  auto b = model_->CreateSequence();
  ASSERT_TRUE(b.ok());
  std::vector<int32_t> chunk = Tokens(64, 7);
  int32_t len_before = 0, free_pages_before = 0;
  for (int i = 0; i < 10 && st.ok(); ++i) {
    len_before = model_->SequenceLength(*b);
    free_pages_before = model_->free_kv_pages();
    SequenceInput m{*b, chunk};
    st = model_->Forward(std::span<const SequenceInput>(&m, 1), &out);
  }
  EXPECT_EQ(st.code(), absl::StatusCode::kResourceExhausted) << st;
  EXPECT_EQ(model_->SequenceLength(*b), len_before);
  EXPECT_EQ(model_->free_kv_pages(), free_pages_before);
  EXPECT_EQ(model_->SequenceLength(*a), 8);

  // Unknown sequence, duplicate sequence, empty input, context overflow.
  SequenceInput unknown{12345, tokens};
  EXPECT_EQ(model_->Forward(std::span<const SequenceInput>(&unknown, 1), &out).code(),
            absl::StatusCode::kNotFound);
  std::vector<SequenceInput> dup = {{*a, tokens}, {*a, tokens}};
  EXPECT_EQ(model_->Forward(dup, &out).code(), absl::StatusCode::kInvalidArgument);
  SequenceInput empty{*a, {}};
  EXPECT_EQ(model_->Forward(std::span<const SequenceInput>(&empty, 1), &out).code(),
            absl::StatusCode::kInvalidArgument);
  auto late = model_->CreateSequence(model_->config().context_length - 2);
  ASSERT_TRUE(late.ok());
  SequenceInput overflow{*late, tokens};
  st = model_->Forward(std::span<const SequenceInput>(&overflow, 1), &out);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("context length"), std::string::npos) << st;

  model_->DestroySequence(*a);
  model_->DestroySequence(*b);
  model_->DestroySequence(*late);
  EXPECT_EQ(model_->free_kv_pages(), model_->total_kv_pages());
}

TEST_F(PagedKvTest, TruncateThenRefeedMatches) {
  std::vector<int32_t> tokens = Tokens(20, 9);
  std::vector<float> want = FeedInChunks(tokens, 64);
  auto seq = model_->CreateSequence();
  std::vector<int32_t> wrong = tokens;
  wrong[15] = (wrong[15] + 1) % n_vocab_;
  ForwardOutput out;
  SequenceInput in{*seq, wrong};
  ASSERT_TRUE(model_->Forward(std::span<const SequenceInput>(&in, 1), &out).ok());
  ASSERT_TRUE(model_->TruncateSequence(*seq, 15).ok());
  SequenceInput rest{*seq, std::span<const int32_t>(tokens).subspan(15)};
  ASSERT_TRUE(model_->Forward(std::span<const SequenceInput>(&rest, 1), &out).ok());
  EXPECT_LT(RelativeMaxError(out.Logits(0), want.data(), n_vocab_), 1e-5);
  model_->DestroySequence(*seq);
}

}  // namespace
}  // namespace memoria::testing
