#include <cstdio>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "client/cli/commands.h"
#include "client/cli/flags.h"
#include "engine/chat/chat_template.h"
#include "engine/model/generate.h"
#include "engine/model/model.h"
#include "engine/util/status_macros.h"

namespace memoria::cli {
namespace {

void PrintIds(const char* label, const std::vector<int32_t>& ids) {
  std::printf("%s:", label);
  for (int32_t id : ids) std::printf(" %d", id);
  std::printf("\n");
}

}  // namespace

absl::Status RunCommand(const std::vector<std::string>& args) {
  MEMORIA_ASSIGN_OR_RETURN(
      Flags flags,
      Flags::Parse(args, {"--model", "--prompt", "-n", "--temp", "--seed", "--top-k", "--top-p",
                          "--min-p", "--dump-logits", "-t", "--kv-type", "--batch",
                          "--device"},
                   {"--chat", "--print-ids"}));
  MEMORIA_ASSIGN_OR_RETURN(std::string path, flags.Required("--model"));
  MEMORIA_ASSIGN_OR_RETURN(std::string prompt, flags.Required("--prompt"));
  MEMORIA_ASSIGN_OR_RETURN(int64_t n_predict, flags.Int("-n", 64));
  MEMORIA_ASSIGN_OR_RETURN(int64_t threads, flags.Int("-t", 0));
  MEMORIA_ASSIGN_OR_RETURN(int64_t batch, flags.Int("--batch", 512));
  GenerateOptions gen;
  gen.max_tokens = static_cast<int32_t>(n_predict);
  MEMORIA_ASSIGN_OR_RETURN(double temp, flags.Double("--temp", 0.0));
  MEMORIA_ASSIGN_OR_RETURN(int64_t seed, flags.Int("--seed", 0));
  MEMORIA_ASSIGN_OR_RETURN(int64_t top_k, flags.Int("--top-k", 0));
  MEMORIA_ASSIGN_OR_RETURN(double top_p, flags.Double("--top-p", 1.0));
  MEMORIA_ASSIGN_OR_RETURN(double min_p, flags.Double("--min-p", 0.0));
  gen.sampling.temperature = static_cast<float>(temp);
  gen.sampling.seed = static_cast<uint64_t>(seed);
  gen.sampling.top_k = static_cast<int32_t>(top_k);
  gen.sampling.top_p = static_cast<float>(top_p);
  gen.sampling.min_p = static_cast<float>(min_p);
  if (n_predict < 0) return absl::InvalidArgumentError("-n must be >= 0");

  ModelOptions options;
  MEMORIA_ASSIGN_OR_RETURN(options.backend.device, ParseDeviceKind(flags.String("--device", "auto")));
  options.backend.n_threads = static_cast<int32_t>(threads);
  options.max_batch_tokens = static_cast<int32_t>(batch);
  const std::string kv_type = flags.String("--kv-type", "f16");
  if (kv_type != "f16" && kv_type != "f32") return absl::InvalidArgumentError("--kv-type: f16 or f32");
  options.kv_type = kv_type == "f16" ? GgmlType::kF16 : GgmlType::kF32;
  MEMORIA_ASSIGN_OR_RETURN(std::unique_ptr<Model> model, Model::Load(options, path));

  std::string text = prompt;
  if (flags.Has("--chat")) {
    MEMORIA_ASSIGN_OR_RETURN(ChatTemplateKind kind, model->chat_template());
    MEMORIA_ASSIGN_OR_RETURN(text, ApplyChatTemplate(kind, {{"user", prompt}}, true));
  }
  std::vector<int32_t> ids = model->tokenizer().Encode(text, /*add_special=*/true,
                                                       /*parse_special=*/flags.Has("--chat"));
  if (flags.Has("--print-ids")) PrintIds("prompt", ids);
  if (ids.empty()) return absl::InvalidArgumentError("the prompt has no tokens");
  if (n_predict == 0) gen.max_tokens = 1;  // one pass still yields the prompt's logits

  const bool print_ids = flags.Has("--print-ids");
  MEMORIA_ASSIGN_OR_RETURN(GenerateResult result,
                           Generate(*model, ids, gen, [&](const SampledToken&, std::string_view t) {
                             if (!print_ids && n_predict > 0) {
                               std::fwrite(t.data(), 1, t.size(), stdout);
                               std::fflush(stdout);
                             }
                             return true;
                           }));
  if (n_predict == 0) result.tokens.clear();
  if (print_ids) {
    PrintIds("gen", result.tokens);
  } else {
    std::printf("\n");
  }
  if (flags.Has("--dump-logits")) {
    std::ofstream out(flags.String("--dump-logits"), std::ios::binary);
    out.write(reinterpret_cast<const char*>(result.prompt_logits.data()),
              static_cast<std::streamsize>(result.prompt_logits.size() * sizeof(float)));
    if (!out) return absl::UnavailableError("cannot write " + flags.String("--dump-logits"));
  }
  std::fflush(stdout);  // the text first, then the timing line on stderr
  std::fprintf(stderr, "prompt: %zu tokens in %.3f s; generated %zu tokens in %.3f s (%s)\n",
               ids.size(), result.prefill_seconds, result.tokens.size(), result.decode_seconds,
               model->backend().Describe().c_str());
  return absl::OkStatus();
}

}  // namespace memoria::cli
