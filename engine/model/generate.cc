#include "engine/model/generate.h"

#include <algorithm>
#include <chrono>

#include "engine/model/completion.h"
#include "engine/util/status_macros.h"

namespace memoria {
namespace {

double SecondsSince(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Destroys the sequence however Generate returns.
struct SequenceGuard {
  Model& model;
  SequenceId id;
  ~SequenceGuard() { model.DestroySequence(id); }
};

}  // namespace

absl::StatusOr<GenerateResult> Generate(Model& model, std::span<const int32_t> prompt,
                                        const GenerateOptions& options, const TokenCallback& on_token) {
  if (prompt.empty()) return absl::InvalidArgumentError("generate: the prompt has no tokens");
  MEMORIA_RETURN_IF_ERROR(ValidateSamplingParams(options.sampling));
  MEMORIA_ASSIGN_OR_RETURN(SequenceId seq, model.CreateSequence(options.first_position));
  SequenceGuard guard{model, seq};
  MEMORIA_RETURN_IF_ERROR(model.SetMemory(seq, options.memory));

  GenerateResult result;
  const int32_t n_vocab = model.config().n_vocab;
  CompletionOptions completion_options{options.max_tokens, options.sampling, options.stop_strings,
                                       options.stop_tokens, options.stop_at_end_of_generation};
  Completion completion(model.tokenizer(), n_vocab, completion_options, prompt);

  // prefill
  auto t0 = std::chrono::steady_clock::now();
  ForwardOutput out;
  const size_t chunk = static_cast<size_t>(model.options().max_batch_tokens);
  for (size_t i = 0; i < prompt.size(); i += chunk) {
    SequenceInput in{seq, prompt.subspan(i, std::min(chunk, prompt.size() - i)), false};
    MEMORIA_RETURN_IF_ERROR(model.Forward(std::span<const SequenceInput>(&in, 1), &out));
  }
  result.prompt_logits.assign(out.Logits(0), out.Logits(0) + n_vocab);
  result.prefill_seconds = SecondsSince(t0);

  // decode
  t0 = std::chrono::steady_clock::now();
  result.finish_reason = "length";
  while (options.max_tokens > 0) {
    Completion::Step step = completion.Next(out.Logits(0));
    if (step.stopped) result.finish_reason = "stop";
    if (on_token && !on_token(step.token, step.text)) break;
    if (step.finished) break;
    SequenceInput in{seq, std::span<const int32_t>(&completion.tokens().back(), 1), false};
    MEMORIA_RETURN_IF_ERROR(model.Forward(std::span<const SequenceInput>(&in, 1), &out));
  }
  result.tokens = completion.tokens();
  result.decode_seconds = SecondsSince(t0);
  return result;
}

}  // namespace memoria
