#include "engine/sampling/sampler.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>

#include "absl/strings/str_cat.h"

namespace memoria {

namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();
constexpr int32_t kMaxTopLogprobs = 20;
// Top-p first ranks this many candidates; only when their mass falls short of top_p does it sort
// the whole vocabulary. Real distributions put almost all mass in far fewer tokens.
constexpr size_t kTopPFirstPass = 1024;

using Candidate = std::pair<float, int32_t>;  // (value, token id)

// Strict total order: higher value first, then lower id, so every ranking is reproducible. A
// lambda rather than a function so that the std:: algorithms inline it.
constexpr auto Better = [](const Candidate& a, const Candidate& b) {
  return a.first > b.first || (a.first == b.first && a.second < b.second);
};

// NaN logits cannot be ranked; they count as impossible. +inf is clamped so that differences of
// logits stay finite.
float Clean(float x) {
  if (std::isnan(x)) return kNegInf;
  if (x == std::numeric_limits<float>::infinity()) return std::numeric_limits<float>::max();
  return x;
}

// A double in [0, 1) from the top 53 bits: the same on every standard library, unlike
// std::uniform_real_distribution.
double UniformUnit(std::mt19937_64& rng) {
  return static_cast<double>(rng() >> 11) * (1.0 / 9007199254740992.0);
}

// exp(x) for x <= 0 (every use is relative to a maximum). Written out instead of calling
// std::exp so that loops over 128k logits vectorize and results do not depend on the platform's
// libm: Cody-Waite reduction to r in [-ln2/2, ln2/2] and Cephes' degree-6 polynomial (relative
// error below 1e-7). Below -87 (including -inf and NaN) it gives exactly 0, where 2^n would leave
// the normal range. The cutoff is a bit mask rather than a branch or select, which GCC will not
// vectorize under the default -ftrapping-math.
inline float ExpNonPositive(float x) {
  constexpr float kLog2e = 1.44269504088896341f;
  constexpr float kLn2Hi = 0.693359375f;
  constexpr float kLn2Lo = -2.12194440e-4f;
  constexpr float kRound = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  const uint32_t bits = std::bit_cast<uint32_t>(x);
  const uint32_t keep =
      0u - static_cast<uint32_t>((bits & 0x7fffffffu) <= std::bit_cast<uint32_t>(87.0f));
  const float safe = std::bit_cast<float>(bits & keep);
  const float shifted = safe * kLog2e + kRound;
  const float n = shifted - kRound;
  const float r = safe - n * kLn2Hi - n * kLn2Lo;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  // shifted holds n in its low mantissa bits; n + 127 is the biased exponent of 2^n.
  const int32_t n_int = std::bit_cast<int32_t>(shifted) - std::bit_cast<int32_t>(kRound);
  const float result = p * std::bit_cast<float>((n_int + 127) << 23);
  return std::bit_cast<float>(std::bit_cast<uint32_t>(result) & keep);
}

// Sum over candidates[0, n) of ExpNonPositive((value - shift) * scale), where shift is at least
// every value; with `store`, each value is replaced by its term. Works through a contiguous
// buffer so that the exponentials vectorize; sums are in double to stay accurate over 128k terms.
double ExpAndSum(Candidate* candidates, size_t n, float shift, float scale, bool store) {
  constexpr size_t kChunk = 256;
  float buf[kChunk];
  double sum = 0.0;
  for (size_t base = 0; base < n; base += kChunk) {
    const size_t len = std::min(kChunk, n - base);
    for (size_t j = 0; j < len; ++j) buf[j] = (candidates[base + j].first - shift) * scale;
    for (size_t j = 0; j < len; ++j) buf[j] = ExpNonPositive(buf[j]);
    double lanes[4] = {};
    size_t j = 0;
    for (; j + 4 <= len; j += 4) {
      for (size_t l = 0; l < 4; ++l) lanes[l] += buf[j + l];
    }
    for (; j < len; ++j) lanes[0] += buf[j];
    sum += (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
    if (store) {
      for (size_t k = 0; k < len; ++k) candidates[base + k].first = buf[k];
    }
  }
  return sum;
}

// The k best of candidates[0, n) by Better, best first, into *best. A bounded heap with the worst
// kept candidate on top rejects most tokens with one comparison.
void SelectBest(const Candidate* candidates, size_t n, size_t k, std::vector<Candidate>* best) {
  k = std::min(k, n);
  best->clear();
  best->reserve(k);
  for (size_t i = 0; i < n; ++i) {
    if (best->size() < k) {
      best->push_back(candidates[i]);
      std::push_heap(best->begin(), best->end(), Better);
    } else if (Better(candidates[i], best->front())) {
      std::pop_heap(best->begin(), best->end(), Better);
      best->back() = candidates[i];
      std::push_heap(best->begin(), best->end(), Better);
    }
  }
  std::sort_heap(best->begin(), best->end(), Better);
}

}  // namespace

absl::Status ValidateSamplingParams(const SamplingParams& p) {
  if (!(p.temperature >= 0.0f) || std::isinf(p.temperature)) {
    return absl::InvalidArgumentError(
        absl::StrCat("temperature must be finite and >= 0, got ", p.temperature));
  }
  if (p.top_k < 0) {
    return absl::InvalidArgumentError(absl::StrCat("top_k must be >= 0, got ", p.top_k));
  }
  if (!(p.top_p > 0.0f && p.top_p <= 1.0f)) {
    return absl::InvalidArgumentError(absl::StrCat("top_p must be in (0, 1], got ", p.top_p));
  }
  if (!(p.min_p >= 0.0f && p.min_p <= 1.0f)) {
    return absl::InvalidArgumentError(absl::StrCat("min_p must be in [0, 1], got ", p.min_p));
  }
  if (!(p.repetition_penalty > 0.0f) || std::isinf(p.repetition_penalty)) {
    return absl::InvalidArgumentError(
        absl::StrCat("repetition_penalty must be finite and > 0, got ", p.repetition_penalty));
  }
  if (!std::isfinite(p.frequency_penalty)) {
    return absl::InvalidArgumentError(
        absl::StrCat("frequency_penalty must be finite, got ", p.frequency_penalty));
  }
  if (!std::isfinite(p.presence_penalty)) {
    return absl::InvalidArgumentError(
        absl::StrCat("presence_penalty must be finite, got ", p.presence_penalty));
  }
  if (p.penalty_last_n < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("penalty_last_n must be >= 0, got ", p.penalty_last_n));
  }
  if (p.top_logprobs < 0 || p.top_logprobs > kMaxTopLogprobs) {
    return absl::InvalidArgumentError(
        absl::StrCat("top_logprobs must be in [0, ", kMaxTopLogprobs, "], got ", p.top_logprobs));
  }
  return absl::OkStatus();
}

Sampler::Sampler(const SamplingParams& params, int32_t vocab_size)
    : params_(params), vocab_size_(vocab_size), rng_(params.seed) {}

void Sampler::Accept(int32_t id) {
  // Ids outside the vocabulary have no logit to penalize.
  if (id < 0 || id >= vocab_size_ || params_.penalty_last_n == 0) return;
  history_.push_back(id);
  // Only the last penalty_last_n tokens matter. Trimming in bulk keeps Accept amortized O(1).
  const size_t window = static_cast<size_t>(params_.penalty_last_n);
  if (history_.size() >= 2 * window) {
    history_.erase(history_.begin(), history_.end() - window);
  }
}

SampledToken Sampler::Sample(const float* logits) {
  const int32_t n_vocab = vocab_size_;
  SampledToken result;

  // Working logits, indexed by id until the filters below reorder them.
  scratch_.resize(n_vocab);
  float max_logit = kNegInf;
  for (int32_t i = 0; i < n_vocab; ++i) {
    scratch_[i] = Candidate(Clean(logits[i]), i);
    max_logit = std::max(max_logit, scratch_[i].first);
  }
  // A vocabulary with nothing above -inf is treated as uniform rather than NaN everywhere.
  const bool degenerate = (max_logit == kNegInf);
  if (degenerate) {
    max_logit = 0.0f;
    for (Candidate& c : scratch_) c.first = 0.0f;
  }

  // log-softmax of the raw logits, for reporting.
  const bool report = params_.logprobs || params_.top_logprobs > 0;
  const double log_norm =
      report ? max_logit + std::log(ExpAndSum(scratch_.data(), n_vocab, max_logit, 1.0f,
                                              /*store=*/false))
             : 0.0;
  auto logprob = [&](int32_t id) {
    if (!report) return 0.0f;
    const float raw = degenerate ? 0.0f : Clean(logits[id]);
    return static_cast<float>(raw - log_norm);
  };

  if (params_.top_logprobs > 0) {
    std::vector<Candidate> best;
    SelectBest(scratch_.data(), n_vocab, params_.top_logprobs, &best);
    result.top.reserve(best.size());
    for (const Candidate& c : best) result.top.emplace_back(c.second, logprob(c.second));
  }

  // penalties
  const bool penalize = params_.repetition_penalty != 1.0f || params_.frequency_penalty != 0.0f ||
                        params_.presence_penalty != 0.0f;
  if (penalize && !history_.empty()) {
    const size_t window = std::min(history_.size(), static_cast<size_t>(params_.penalty_last_n));
    std::vector<int32_t> recent(history_.end() - window, history_.end());
    std::sort(recent.begin(), recent.end());
    for (size_t k = 0; k < recent.size();) {
      size_t end = k;
      while (end < recent.size() && recent[end] == recent[k]) ++end;
      float& x = scratch_[recent[k]].first;
      x = x > 0.0f ? x / params_.repetition_penalty : x * params_.repetition_penalty;
      x -= static_cast<float>(end - k) * params_.frequency_penalty + params_.presence_penalty;
      k = end;
    }
  }

  auto finish = [&](int32_t id) {
    result.id = id;
    result.logprob = logprob(id);
    return result;
  };

  // greedy
  if (params_.temperature == 0.0f) {
    Candidate best = scratch_[0];
    for (int32_t k = 1; k < n_vocab; ++k) {
      if (Better(scratch_[k], best)) best = scratch_[k];
    }
    return finish(best.second);
  }

  // Impossible tokens never survive, and dropping them first shrinks every later step.
  auto possible_end = std::partition(scratch_.begin(), scratch_.end(),
                                     [](const Candidate& c) { return c.first != kNegInf; });
  size_t n = possible_end - scratch_.begin();
  if (n == 0) return finish(0);  // penalties pushed everything to -inf

  // top-k, leaving the k best sorted at the front.
  bool sorted = false;
  const size_t top_k = static_cast<size_t>(params_.top_k);
  if (top_k > 0 && top_k < n) {
    if (top_k <= kTopPFirstPass) {
      std::vector<Candidate> best;
      SelectBest(scratch_.data(), n, top_k, &best);
      std::copy(best.begin(), best.end(), scratch_.begin());
    } else {
      std::nth_element(scratch_.begin(), scratch_.begin() + top_k, scratch_.begin() + n, Better);
      std::sort(scratch_.begin(), scratch_.begin() + top_k, Better);
    }
    n = top_k;
    sorted = true;
  }

  // temperature and softmax: weights relative to the best token, which gets exactly 1.
  float best = kNegInf;
  for (size_t k = 0; k < n; ++k) best = std::max(best, scratch_[k].first);
  // Clamped so that a subnormal temperature still gives the best token 0 * scale = 0, not NaN.
  const float inv_temp = std::min(1.0f / params_.temperature, std::numeric_limits<float>::max());
  double total = ExpAndSum(scratch_.data(), n, best, inv_temp, /*store=*/true);

  // top-p: rank the most likely candidates; the full sort happens only if they fall short.
  if (params_.top_p < 1.0f) {
    const double target = static_cast<double>(params_.top_p) * total;
    auto nucleus = [&](size_t ranked) -> size_t {  // 0 when the ranked prefix is not enough
      double mass = 0.0;
      for (size_t k = 0; k < ranked; ++k) {
        mass += scratch_[k].first;
        if (mass >= target) return k + 1;
      }
      return ranked == n ? n : 0;
    };
    size_t keep = 0;
    if (!sorted && n > kTopPFirstPass) {
      std::partial_sort(scratch_.begin(), scratch_.begin() + kTopPFirstPass, scratch_.begin() + n,
                        Better);
      keep = nucleus(kTopPFirstPass);
    }
    if (keep == 0) {
      if (!sorted) std::sort(scratch_.begin(), scratch_.begin() + n, Better);
      keep = nucleus(n);
    }
    n = keep;
  }

  // min-p: the best weight is 1, so the threshold is min_p itself.
  if (params_.min_p > 0.0f) {
    size_t kept = 0;
    for (size_t k = 0; k < n; ++k) {
      if (scratch_[k].first >= params_.min_p) scratch_[kept++] = scratch_[k];
    }
    n = kept;  // at least the best token (weight 1 >= min_p) remains
  }

  // renormalize and draw
  total = 0.0;
  for (size_t k = 0; k < n; ++k) total += scratch_[k].first;
  const double target = UniformUnit(rng_) * total;
  double mass = 0.0;
  int32_t chosen = -1;
  for (size_t k = 0; k < n; ++k) {
    if (scratch_[k].first <= 0.0f) continue;
    chosen = scratch_[k].second;
    mass += scratch_[k].first;
    if (target < mass) break;
  }
  // Rounding can leave target just above the summed mass; the last possible token takes it.
  return finish(chosen);
}

}  // namespace memoria
