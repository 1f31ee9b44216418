#include "engine/model/generate.h"

#include <algorithm>
#include <chrono>

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
  Sampler sampler(options.sampling, n_vocab);
  for (int32_t t : prompt) sampler.Accept(t);

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
  StreamingDecoder decoder(model.tokenizer());
  StopStringMatcher stops(options.stop_strings);
  result.finish_reason = "length";
  for (int32_t n = 0; n < options.max_tokens; ++n) {
    SampledToken tok = sampler.Sample(out.Logits(0));
    sampler.Accept(tok.id);
    result.tokens.push_back(tok.id);
    const bool end_token =
        (options.stop_at_end_of_generation && model.tokenizer().IsEndOfGeneration(tok.id)) ||
        std::find(options.stop_tokens.begin(), options.stop_tokens.end(), tok.id) !=
            options.stop_tokens.end();
    const bool last = end_token || n + 1 == options.max_tokens;
    std::string delta = end_token ? std::string() : decoder.Push(tok.id);
    if (last) delta += decoder.Flush();
    StopStringMatcher::Result text = stops.Push(delta);
    if (last && !text.stopped) text.text += stops.Flush();
    if (end_token || text.stopped) result.finish_reason = "stop";
    if (on_token && !on_token(tok, text.text)) break;
    if (last || text.stopped) break;
    SequenceInput in{seq, std::span<const int32_t>(&result.tokens.back(), 1), false};
    MEMORIA_RETURN_IF_ERROR(model.Forward(std::span<const SequenceInput>(&in, 1), &out));
  }
  result.decode_seconds = SecondsSince(t0);
  return result;
}

}  // namespace memoria
