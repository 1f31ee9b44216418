#ifndef MEMORIA_ENGINE_MODEL_GENERATE_H_
#define MEMORIA_ENGINE_MODEL_GENERATE_H_

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/model/model.h"
#include "engine/sampling/sampler.h"

namespace memoria {

struct GenerateOptions {
  int32_t max_tokens = 64;
  SamplingParams sampling;
  std::vector<std::string> stop_strings;
  std::vector<int32_t> stop_tokens;
  bool stop_at_end_of_generation = true;  // EOS / EOT tokens end the text
  int32_t first_position = 0;             // rotary position of the prompt's first token
  std::shared_ptr<const MemoryView> memory;
};

struct GenerateResult {
  std::vector<int32_t> tokens;       // generated ids (the stop token included when one ended it)
  std::vector<float> prompt_logits;  // logits at the last prompt position
  std::string finish_reason;         // "length", "stop" (EOS/EOT or stop token/string)
  double prefill_seconds = 0;
  double decode_seconds = 0;
};

// Called for each generated token with the text it completes (whole UTF-8 characters, stop
// strings held back); return false to stop early.
using TokenCallback = std::function<bool(const SampledToken& token, std::string_view text)>;

// One sequence, start to end: prefills the prompt in max_batch_tokens chunks, then samples up to
// max_tokens tokens. For tools and tests; the server's scheduler batches many sequences instead.
absl::StatusOr<GenerateResult> Generate(Model& model, std::span<const int32_t> prompt,
                                        const GenerateOptions& options, const TokenCallback& on_token);

}  // namespace memoria

#endif  // MEMORIA_ENGINE_MODEL_GENERATE_H_
