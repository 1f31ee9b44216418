#ifndef MEMORIA_ENGINE_SAMPLING_SAMPLER_H_
#define MEMORIA_ENGINE_SAMPLING_SAMPLER_H_

#include <cstdint>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"

namespace memoria {

struct SamplingParams {
  // 0 means greedy (argmax); otherwise logits are divided by it before softmax.
  float temperature = 0.0f;
  int32_t top_k = 0;          // 0: off
  float top_p = 1.0f;         // 1: off
  float min_p = 0.0f;         // 0: off; drop tokens with p < min_p * p_max
  float repetition_penalty = 1.0f;  // 1: off; CTRL-style, over the last penalty_last_n tokens
  float frequency_penalty = 0.0f;   // OpenAI-style, subtracted count * value
  float presence_penalty = 0.0f;    // OpenAI-style, subtracted once if present
  int32_t penalty_last_n = 64;      // window of recent tokens the penalties look at
  uint64_t seed = 0;                // same seed, same logits -> same tokens
  int32_t top_logprobs = 0;         // how many alternatives to report (0..20)
  // Fill SampledToken::logprob. Off (and top_logprobs 0), Sample skips the log-softmax over the
  // vocabulary, and greedy decoding is one scan: a server turns it off unless a client asks.
  bool logprobs = true;
};

absl::Status ValidateSamplingParams(const SamplingParams& params);

struct SampledToken {
  int32_t id = -1;
  float logprob = 0.0f;  // log-softmax of the unmodified logits (before penalties/temperature)
  std::vector<std::pair<int32_t, float>> top;  // top_logprobs best (id, logprob), best first
};

// Chooses tokens from logits. One per sequence; holds the RNG and the penalty history.
// Not thread-safe.
//
// Sample() works in this order:
//   1. logprob and top are the log-softmax of the raw logits (NaN counts as -inf; if no logit is
//      above -inf, all are treated as equal); skipped (logprob 0) when neither is asked for.
//   2. penalties over the last penalty_last_n accepted tokens: repetition (positive logits divided
//      by the penalty, negative ones multiplied, once per distinct token), then frequency
//      (count * value subtracted) and presence (value subtracted once).
//   3. temperature == 0: argmax, ties going to the lowest id. Otherwise:
//   4. top-k, then logits / temperature, softmax, top-p (the smallest most-likely set whose mass
//      reaches top_p, at least one token), min-p (drop p < min_p * p_max), renormalize, and one
//      draw from the seeded RNG. Ranking ties go to the lowest id and the draw uses no
//      std:: distribution, so a seed and logits give the same tokens with any standard library.
class Sampler {
 public:
  Sampler(const SamplingParams& params, int32_t vocab_size);

  // Records tokens that count for the penalties (the prompt, then each chosen token).
  void Accept(int32_t id);
  // Samples from vocab_size logits; does not Accept the result.
  SampledToken Sample(const float* logits);

 private:
  SamplingParams params_;
  int32_t vocab_size_;
  std::mt19937_64 rng_;
  std::vector<int32_t> history_;
  std::vector<std::pair<float, int32_t>> scratch_;
};

// Finds stop strings in streamed text. Feed each text delta; it returns the part that is safe to
// show (text that cannot be the start of a stop string) and whether a stop string was completed,
// in which case the text before it is returned and the rest is dropped.
class StopStringMatcher {
 public:
  explicit StopStringMatcher(std::vector<std::string> stops);
  struct Result {
    std::string text;
    bool stopped = false;
  };
  Result Push(std::string_view delta);
  std::string Flush();  // held-back text once generation ends without a stop

 private:
  std::vector<std::string> stops_;
  std::string held_;
};

}  // namespace memoria

#endif  // MEMORIA_ENGINE_SAMPLING_SAMPLER_H_
