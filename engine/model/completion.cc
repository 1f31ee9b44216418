#include "engine/model/completion.h"

#include <algorithm>

namespace memoria {

Completion::Completion(const Tokenizer& tokenizer, int32_t n_vocab,
                       const CompletionOptions& options, std::span<const int32_t> prompt)
    : tokenizer_(tokenizer),
      options_(options),
      sampler_(options.sampling, n_vocab),
      decoder_(tokenizer),
      stops_(options.stop_strings) {
  for (int32_t t : prompt) sampler_.Accept(t);
}

Completion::Step Completion::Next(const float* logits) {
  Step step;
  step.token = sampler_.Sample(logits);
  const int32_t id = step.token.id;
  sampler_.Accept(id);
  tokens_.push_back(id);
  const bool end_token =
      (options_.stop_at_end_of_generation && tokenizer_.IsEndOfGeneration(id)) ||
      std::find(options_.stop_tokens.begin(), options_.stop_tokens.end(), id) !=
          options_.stop_tokens.end();
  const bool last = end_token || static_cast<int32_t>(tokens_.size()) >= options_.max_tokens;
  // An end token's own text is not part of the answer.
  std::string delta = end_token ? std::string() : decoder_.Push(id);
  if (last) delta += decoder_.Flush();
  StopStringMatcher::Result text = stops_.Push(delta);
  if (last && !text.stopped) text.text += stops_.Flush();
  step.text = std::move(text.text);
  step.stopped = end_token || text.stopped;
  step.finished = last || text.stopped;
  return step;
}

}  // namespace memoria
