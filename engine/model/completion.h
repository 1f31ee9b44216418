#ifndef MEMORIA_ENGINE_MODEL_COMPLETION_H_
#define MEMORIA_ENGINE_MODEL_COMPLETION_H_

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "engine/sampling/sampler.h"
#include "engine/tokenizer/tokenizer.h"

namespace memoria {

struct CompletionOptions {
  int32_t max_tokens = 64;
  SamplingParams sampling;
  std::vector<std::string> stop_strings;
  std::vector<int32_t> stop_tokens;
  bool stop_at_end_of_generation = true;  // EOS / EOT tokens end the text
};

// The token-by-token state of one completion: sampling with its penalty history, streaming
// detokenization to whole UTF-8 characters, and the stop rules (end-of-generation and stop
// tokens, stop strings, max_tokens). The caller runs the model; this decides what the logits
// become. Used by Generate and by the server's scheduler for every sequence it batches.
class Completion {
 public:
  Completion(const Tokenizer& tokenizer, int32_t n_vocab, const CompletionOptions& options,
             std::span<const int32_t> prompt);

  struct Step {
    SampledToken token;
    std::string text;       // text this token completes (stop strings held back / cut)
    bool finished = false;  // no more tokens: feed nothing further
    bool stopped = false;   // finished by a stop rule rather than max_tokens
  };
  // Samples the next token from the logits of the last position.
  Step Next(const float* logits);

  const std::vector<int32_t>& tokens() const { return tokens_; }

 private:
  const Tokenizer& tokenizer_;
  CompletionOptions options_;
  Sampler sampler_;
  StreamingDecoder decoder_;
  StopStringMatcher stops_;
  std::vector<int32_t> tokens_;
};

}  // namespace memoria

#endif  // MEMORIA_ENGINE_MODEL_COMPLETION_H_
