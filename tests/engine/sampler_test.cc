#include "engine/sampling/sampler.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <random>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace memoria {
namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();

// How often each token is drawn in `draws` samples (no Accept, so no penalties build up).
std::vector<int> DrawCounts(const SamplingParams& params, const std::vector<float>& logits,
                            int draws) {
  Sampler sampler(params, static_cast<int32_t>(logits.size()));
  std::vector<int> counts(logits.size(), 0);
  for (int i = 0; i < draws; ++i) {
    const int32_t id = sampler.Sample(logits.data()).id;
    EXPECT_GE(id, 0);
    EXPECT_LT(id, static_cast<int32_t>(logits.size()));
    ++counts[id];
  }
  return counts;
}

std::vector<double> Softmax(const std::vector<float>& logits, double temperature) {
  double max = logits[0];
  for (float x : logits) max = std::max<double>(max, x);
  std::vector<double> p(logits.size());
  double sum = 0.0;
  for (size_t i = 0; i < logits.size(); ++i) {
    p[i] = std::exp((logits[i] - max) / temperature);
    sum += p[i];
  }
  for (double& x : p) x /= sum;
  return p;
}

std::vector<float> RandomLogits(int n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  std::vector<float> logits(n);
  for (float& x : logits) x = normal(rng);
  return logits;
}

// Logits whose softmax is exactly `probs` (T = 1).
std::vector<float> LogitsFor(const std::vector<double>& probs) {
  std::vector<float> logits;
  for (double p : probs) logits.push_back(static_cast<float>(std::log(p)));
  return logits;
}

TEST(ValidateSamplingParamsTest, DefaultsAreValid) {
  EXPECT_TRUE(ValidateSamplingParams(SamplingParams()).ok());
  SamplingParams p;
  p.temperature = 0.8f;
  p.top_k = 40;
  p.top_p = 0.95f;
  p.min_p = 1.0f;
  p.top_logprobs = 20;
  p.frequency_penalty = -2.0f;
  EXPECT_TRUE(ValidateSamplingParams(p).ok());
}

TEST(ValidateSamplingParamsTest, RejectsEachBadFieldByName) {
  struct Case {
    const char* field;
    void (*set)(SamplingParams&);
  };
  const Case cases[] = {
      {"temperature", [](SamplingParams& p) { p.temperature = -0.1f; }},
      {"temperature", [](SamplingParams& p) { p.temperature = kNaN; }},
      {"top_p", [](SamplingParams& p) { p.top_p = 0.0f; }},
      {"top_p", [](SamplingParams& p) { p.top_p = 1.01f; }},
      {"top_p", [](SamplingParams& p) { p.top_p = kNaN; }},
      {"min_p", [](SamplingParams& p) { p.min_p = -0.01f; }},
      {"min_p", [](SamplingParams& p) { p.min_p = 1.5f; }},
      {"top_k", [](SamplingParams& p) { p.top_k = -1; }},
      {"repetition_penalty", [](SamplingParams& p) { p.repetition_penalty = 0.0f; }},
      {"repetition_penalty", [](SamplingParams& p) { p.repetition_penalty = kNaN; }},
      {"frequency_penalty", [](SamplingParams& p) { p.frequency_penalty = kNaN; }},
      {"presence_penalty", [](SamplingParams& p) { p.presence_penalty = kInf; }},
      {"penalty_last_n", [](SamplingParams& p) { p.penalty_last_n = -1; }},
      {"top_logprobs", [](SamplingParams& p) { p.top_logprobs = -1; }},
      {"top_logprobs", [](SamplingParams& p) { p.top_logprobs = 21; }},
  };
  for (const Case& c : cases) {
    SamplingParams p;
    c.set(p);
    absl::Status s = ValidateSamplingParams(p);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << c.field;
    EXPECT_THAT(std::string(s.message()), ::testing::HasSubstr(c.field));
  }
}

TEST(SamplerTest, GreedyIsArgmaxWithTiesToLowestId) {
  const std::vector<float> logits = RandomLogits(1000, 1);
  const int32_t argmax = std::max_element(logits.begin(), logits.end()) - logits.begin();
  Sampler sampler(SamplingParams(), 1000);
  EXPECT_EQ(sampler.Sample(logits.data()).id, argmax);

  const std::vector<float> tied = {1.0f, 3.0f, 2.0f, 3.0f};
  Sampler tie_sampler(SamplingParams(), 4);
  EXPECT_EQ(tie_sampler.Sample(tied.data()).id, 1);
}

TEST(SamplerTest, NaNLogitsCountAsImpossible) {
  const std::vector<float> logits = {kNaN, 0.5f, kNaN, 0.0f};
  Sampler greedy(SamplingParams(), 4);
  EXPECT_EQ(greedy.Sample(logits.data()).id, 1);

  SamplingParams p;
  p.temperature = 1.0f;
  p.top_logprobs = 4;
  std::vector<int> counts = DrawCounts(p, logits, 2000);
  EXPECT_EQ(counts[0], 0);
  EXPECT_EQ(counts[2], 0);
  EXPECT_GT(counts[1], 0);
  EXPECT_GT(counts[3], 0);

  Sampler sampler(p, 4);
  SampledToken t = sampler.Sample(logits.data());
  ASSERT_EQ(t.top.size(), 4u);
  EXPECT_EQ(t.top[2].second, -kInf);
  EXPECT_EQ(t.top[3].second, -kInf);
}

TEST(SamplerTest, AllImpossibleLogitsAreTreatedAsUniform) {
  const std::vector<float> logits = {kNaN, -kInf, -kInf, kNaN};
  for (float temperature : {0.0f, 1.0f}) {
    SamplingParams p;
    p.temperature = temperature;
    Sampler sampler(p, 4);
    SampledToken t = sampler.Sample(logits.data());
    EXPECT_GE(t.id, 0);
    EXPECT_LT(t.id, 4);
    EXPECT_NEAR(t.logprob, -std::log(4.0f), 1e-6);
  }
}

TEST(SamplerTest, SameSeedSameTokensDifferentSeedDifferentTokens) {
  const std::vector<float> logits(50, 0.0f);  // uniform: every draw is a coin toss
  auto run = [&](uint64_t seed) {
    SamplingParams p;
    p.temperature = 1.0f;
    p.seed = seed;
    Sampler sampler(p, 50);
    std::vector<int32_t> ids;
    for (int i = 0; i < 100; ++i) ids.push_back(sampler.Sample(logits.data()).id);
    return ids;
  };
  EXPECT_EQ(run(42), run(42));
  EXPECT_NE(run(42), run(43));
}

TEST(SamplerTest, LowTemperatureApproachesGreedy) {
  const std::vector<float> logits = RandomLogits(500, 2);
  const int32_t argmax = std::max_element(logits.begin(), logits.end()) - logits.begin();
  SamplingParams p;
  p.temperature = 1e-4f;
  std::vector<int> counts = DrawCounts(p, logits, 500);
  EXPECT_EQ(counts[argmax], 500);

  p.temperature = 1e-40f;  // subnormal: 1 / T overflows
  counts = DrawCounts(p, logits, 50);
  EXPECT_EQ(counts[argmax], 50);
}

TEST(SamplerTest, TopKOneIsGreedy) {
  for (uint32_t seed = 0; seed < 20; ++seed) {
    const std::vector<float> logits = RandomLogits(300, seed);
    SamplingParams greedy;
    SamplingParams top1;
    top1.temperature = 1.5f;
    top1.top_k = 1;
    top1.seed = seed;
    EXPECT_EQ(Sampler(top1, 300).Sample(logits.data()).id,
              Sampler(greedy, 300).Sample(logits.data()).id);
  }
}

TEST(SamplerTest, TopKKeepsOnlyTheKBest) {
  const std::vector<float> logits = {0.0f, 3.0f, 1.0f, 2.9f, 2.8f, -1.0f};
  SamplingParams p;
  p.temperature = 1.0f;
  p.top_k = 3;
  std::vector<int> counts = DrawCounts(p, logits, 5000);
  EXPECT_EQ(counts[0] + counts[2] + counts[5], 0);
  EXPECT_GT(counts[1], counts[3]);
  EXPECT_GT(counts[3], counts[4]);
  EXPECT_GT(counts[4], 0);
}

TEST(SamplerTest, TopPKeepsTheNucleusOnly) {
  // Probabilities 0.5, 0.3, 0.15, 0.05: the smallest set reaching 0.75 is {0, 1}.
  const std::vector<float> logits = LogitsFor({0.15, 0.5, 0.05, 0.3});
  SamplingParams p;
  p.temperature = 1.0f;
  p.top_p = 0.75f;
  p.seed = 7;
  std::vector<int> counts = DrawCounts(p, logits, 20000);
  EXPECT_EQ(counts[0] + counts[2], 0);
  // Renormalized within the nucleus: 0.5 / 0.8 = 0.625.
  EXPECT_NEAR(counts[1] / 20000.0, 0.625, 0.015);

  // A tiny top_p still keeps the most likely token.
  p.top_p = 0.01f;
  counts = DrawCounts(p, logits, 500);
  EXPECT_EQ(counts[1], 500);
}

TEST(SamplerTest, TopPOverLargeVocabularies) {
  // Uniform over 5000: the nucleus for 0.5 is 2500 tokens, more than the first ranking pass, and
  // ties rank by id, so exactly ids 0..2499 remain.
  {
    const std::vector<float> logits(5000, 1.0f);
    SamplingParams p;
    p.temperature = 1.0f;
    p.top_p = 0.5f;
    std::vector<int> counts = DrawCounts(p, logits, 4000);
    int inside = 0;
    for (int i = 0; i < 2500; ++i) inside += counts[i];
    EXPECT_EQ(inside, 4000);
    int last_hundred = 0;
    for (int i = 2400; i < 2500; ++i) last_hundred += counts[i];
    EXPECT_GT(last_hundred, 0);
  }
  // Peaked: ids 100 and 4000 hold nearly all mass; the nucleus is found in the first pass.
  {
    std::vector<float> logits(5000, 0.0f);
    logits[100] = 20.0f;
    logits[4000] = 19.0f;
    SamplingParams p;
    p.temperature = 1.0f;
    p.top_p = 0.9f;
    std::vector<int> counts = DrawCounts(p, logits, 5000);
    EXPECT_EQ(counts[100] + counts[4000], 5000);
    EXPECT_GT(counts[4000], 0);
  }
}

TEST(SamplerTest, MinPDropsUnlikelyTokens) {
  // p_max = 0.5, min_p = 0.2: tokens below 0.1 go, so only the 0.05 token is dropped.
  const std::vector<float> logits = LogitsFor({0.5, 0.3, 0.15, 0.05});
  SamplingParams p;
  p.temperature = 1.0f;
  p.min_p = 0.2f;
  std::vector<int> counts = DrawCounts(p, logits, 20000);
  EXPECT_EQ(counts[3], 0);
  EXPECT_GT(counts[2], 0);
  EXPECT_NEAR(counts[0] / 20000.0, 0.5 / 0.95, 0.015);

  p.min_p = 1.0f;  // only tokens as likely as the best
  counts = DrawCounts(p, logits, 200);
  EXPECT_EQ(counts[0], 200);
}

TEST(SamplerTest, DrawsFollowSoftmaxOfLogitsOverTemperature) {
  const std::vector<float> logits = {1.0f, 0.2f, -0.5f, 2.0f, 0.0f, 1.5f};
  for (double temperature : {0.7, 1.0, 2.5}) {
    SamplingParams p;
    p.temperature = static_cast<float>(temperature);
    p.seed = 123;
    constexpr int kDraws = 60000;
    std::vector<int> counts = DrawCounts(p, logits, kDraws);
    std::vector<double> expected = Softmax(logits, temperature);
    double chi2 = 0.0;
    for (size_t i = 0; i < logits.size(); ++i) {
      const double e = expected[i] * kDraws;
      chi2 += (counts[i] - e) * (counts[i] - e) / e;
    }
    // 5 degrees of freedom: P(chi2 > 20.5) = 0.001 for a correct sampler.
    EXPECT_LT(chi2, 20.5) << "temperature " << temperature;
  }
}

TEST(SamplerTest, RepetitionPenaltyChangesTheChoice) {
  SamplingParams p;
  p.repetition_penalty = 1.2f;
  {
    // Positive logit divided: 2.0 / 1.2 = 1.67 < 1.9.
    const std::vector<float> logits = {2.0f, 1.9f, 0.0f};
    Sampler sampler(p, 3);
    EXPECT_EQ(sampler.Sample(logits.data()).id, 0);
    sampler.Accept(0);
    SampledToken t = sampler.Sample(logits.data());
    EXPECT_EQ(t.id, 1);
    // The reported logprob is of the raw logits, before the penalty.
    EXPECT_NEAR(t.logprob, std::log(Softmax(logits, 1.0)[1]), 1e-5);
  }
  {
    // Negative logit multiplied: -1.0 * 1.2 = -1.2 < -1.1.
    const std::vector<float> logits = {-1.0f, -1.1f};
    Sampler sampler(p, 2);
    sampler.Accept(0);
    EXPECT_EQ(sampler.Sample(logits.data()).id, 1);
  }
  {
    // Applied once per distinct token however often it repeats: -1.2 stays above -1.3.
    const std::vector<float> logits = {-1.0f, -1.3f};
    Sampler sampler(p, 2);
    sampler.Accept(0);
    sampler.Accept(0);
    EXPECT_EQ(sampler.Sample(logits.data()).id, 0);
  }
}

TEST(SamplerTest, FrequencyAndPresencePenalties) {
  const std::vector<float> logits = {2.0f, 1.75f, 0.0f};
  {
    SamplingParams p;
    p.frequency_penalty = 0.1f;
    Sampler sampler(p, 3);
    sampler.Accept(0);
    sampler.Accept(0);
    EXPECT_EQ(sampler.Sample(logits.data()).id, 0);  // 2.0 - 0.2 = 1.8
    sampler.Accept(0);
    EXPECT_EQ(sampler.Sample(logits.data()).id, 1);  // 2.0 - 0.3 = 1.7
  }
  {
    SamplingParams p;
    p.presence_penalty = 0.5f;
    Sampler sampler(p, 3);
    sampler.Accept(0);
    EXPECT_EQ(sampler.Sample(logits.data()).id, 1);  // 1.5
    sampler.Accept(1);
    EXPECT_EQ(sampler.Sample(logits.data()).id, 0);  // 1.5 vs 1.25
  }
}

TEST(SamplerTest, PenaltiesOnlySeeTheLastNTokens) {
  const std::vector<float> logits = {2.0f, 1.9f, 0.0f, 0.0f};
  SamplingParams p;
  p.presence_penalty = 1.0f;
  p.penalty_last_n = 3;
  Sampler sampler(p, 4);
  sampler.Accept(0);
  EXPECT_EQ(sampler.Sample(logits.data()).id, 1);
  for (int i = 0; i < 3; ++i) sampler.Accept(2);  // pushes 0 out of the window
  EXPECT_EQ(sampler.Sample(logits.data()).id, 0);
  for (int i = 0; i < 10; ++i) {  // long histories keep only the window
    sampler.Accept(3);
    sampler.Accept(0);
    sampler.Accept(3);
    sampler.Accept(3);
  }
  EXPECT_EQ(sampler.Sample(logits.data()).id, 1);  // window 0, 3, 3
  sampler.Accept(3);
  EXPECT_EQ(sampler.Sample(logits.data()).id, 0);  // window 3, 3, 3

  p.penalty_last_n = 0;  // off
  Sampler off(p, 4);
  off.Accept(0);
  EXPECT_EQ(off.Sample(logits.data()).id, 0);
}

TEST(SamplerTest, LogprobsAreNormalizedAndTopIsSorted) {
  const std::vector<float> logits = RandomLogits(20, 5);
  SamplingParams p;
  p.temperature = 1.0f;
  p.top_logprobs = 20;
  Sampler sampler(p, 20);
  SampledToken t = sampler.Sample(logits.data());
  ASSERT_EQ(t.top.size(), 20u);
  double mass = 0.0;
  for (size_t i = 0; i < t.top.size(); ++i) {
    mass += std::exp(t.top[i].second);
    if (i > 0) {
      EXPECT_GE(t.top[i - 1].second, t.top[i].second);
    }
    EXPECT_NEAR(t.top[i].second, std::log(Softmax(logits, 1.0)[t.top[i].first]), 1e-5);
  }
  EXPECT_NEAR(mass, 1.0, 1e-5);
  EXPECT_NEAR(t.logprob, std::log(Softmax(logits, 1.0)[t.id]), 1e-5);

  p.top_logprobs = 3;
  Sampler three(p, 20);
  t = three.Sample(logits.data());
  ASSERT_EQ(t.top.size(), 3u);
  EXPECT_EQ(t.top[0].first, std::max_element(logits.begin(), logits.end()) - logits.begin());

  p.top_logprobs = 0;
  EXPECT_TRUE(Sampler(p, 20).Sample(logits.data()).top.empty());
}

TEST(SamplerTest, LogprobsStayFiniteForHugeLogits) {
  const std::vector<float> logits = {1000.0f, 999.0f, -1000.0f, kInf};
  SamplingParams p;
  p.top_logprobs = 4;
  SampledToken t = Sampler(p, 4).Sample(logits.data());
  EXPECT_EQ(t.id, 3);
  EXPECT_NEAR(t.logprob, 0.0f, 1e-6);
  EXPECT_FALSE(std::isnan(t.top[1].second));
  EXPECT_EQ(t.top[1].first, 0);
}

TEST(SamplerTest, FullVocabularyWithAllFilters) {
  constexpr int kVocab = 128256;
  const std::vector<float> logits = RandomLogits(kVocab, 9);
  std::vector<float> sorted = logits;
  std::sort(sorted.begin(), sorted.end(), std::greater<float>());
  SamplingParams p;
  p.temperature = 0.8f;
  p.top_k = 40;
  p.top_p = 0.9f;
  p.min_p = 0.05f;
  p.repetition_penalty = 1.1f;
  p.seed = 99;
  Sampler sampler(p, kVocab);
  for (int i = 0; i < 20; ++i) {
    SampledToken t = sampler.Sample(logits.data());
    ASSERT_GE(t.id, 0);
    // Within the top 40 after penalties, so within the top 60 raw: at most 20 were penalized.
    EXPECT_GE(logits[t.id], sorted[59]);
    sampler.Accept(t.id);
  }
  p.top_k = 0;  // top-p alone over the whole vocabulary
  Sampler nucleus(p, kVocab);
  for (int i = 0; i < 20; ++i) EXPECT_GE(nucleus.Sample(logits.data()).id, 0);
}

TEST(SamplerTest, WithoutLogprobsGreedyPicksTheSameTokenAndReportsNone) {
  std::vector<float> logits = {0.5f, 2.0f, -1.0f, 1.5f};
  SamplingParams with;
  SamplingParams without;
  without.logprobs = false;
  Sampler a(with, 4), b(without, 4);
  const SampledToken reported = a.Sample(logits.data());
  const SampledToken silent = b.Sample(logits.data());
  EXPECT_EQ(silent.id, reported.id);
  EXPECT_EQ(silent.id, 1);
  EXPECT_LT(reported.logprob, 0.0f);
  EXPECT_EQ(silent.logprob, 0.0f);
  // Asking for alternatives brings the log-softmax back.
  without.top_logprobs = 2;
  Sampler c(without, 4);
  const SampledToken top = c.Sample(logits.data());
  EXPECT_FLOAT_EQ(top.logprob, reported.logprob);
  ASSERT_EQ(top.top.size(), 2u);
}

}  // namespace
}  // namespace memoria
