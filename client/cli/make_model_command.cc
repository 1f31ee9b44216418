#include <chrono>
#include <cstdio>

#include "client/cli/commands.h"
#include "client/cli/flags.h"
#include "engine/model/random_model.h"
#include "engine/util/status_macros.h"

namespace memoria::cli {

absl::Status MakeModelCommand(const std::vector<std::string>& args) {
  MEMORIA_ASSIGN_OR_RETURN(
      Flags flags, Flags::Parse(args,
                                {"--vocab", "--arch", "--layers", "--dim", "--heads", "--kv-heads",
                                 "--ff", "--type", "--seed", "--ctx", "-o"},
                                {"--tied", "--rope-freqs"}));
  RandomModelOptions o;
  MEMORIA_ASSIGN_OR_RETURN(o.vocab_path, flags.Required("--vocab"));
  MEMORIA_ASSIGN_OR_RETURN(std::string out, flags.Required("-o"));
  o.arch = flags.String("--arch", "llama");
  MEMORIA_ASSIGN_OR_RETURN(int64_t layers, flags.Int("--layers", o.n_layers));
  MEMORIA_ASSIGN_OR_RETURN(int64_t dim, flags.Int("--dim", o.n_embd));
  MEMORIA_ASSIGN_OR_RETURN(int64_t heads, flags.Int("--heads", o.n_heads));
  MEMORIA_ASSIGN_OR_RETURN(int64_t kv_heads, flags.Int("--kv-heads", o.n_kv_heads));
  MEMORIA_ASSIGN_OR_RETURN(int64_t ff, flags.Int("--ff", o.n_ff));
  MEMORIA_ASSIGN_OR_RETURN(int64_t ctx, flags.Int("--ctx", o.context_length));
  MEMORIA_ASSIGN_OR_RETURN(int64_t seed, flags.Int("--seed", 1));
  for (int64_t v : {layers, dim, heads, kv_heads, ff, ctx}) {
    if (v <= 0 || v > (int64_t{1} << 24)) {
      return absl::InvalidArgumentError("--layers, --dim, --heads, --kv-heads, --ff, --ctx must be positive");
    }
  }
  o.n_layers = static_cast<int32_t>(layers);
  o.n_embd = static_cast<int32_t>(dim);
  o.n_heads = static_cast<int32_t>(heads);
  o.n_kv_heads = static_cast<int32_t>(kv_heads);
  o.n_ff = static_cast<int32_t>(ff);
  o.context_length = static_cast<int32_t>(ctx);
  o.seed = static_cast<uint64_t>(seed);
  o.tied_embeddings = flags.Has("--tied");
  o.rope_freqs = flags.Has("--rope-freqs");
  const std::string type = flags.String("--type", "f32");
  if (type == "q4_k_m" || type == "Q4_K_M") {
    o.type = GgmlType::kQ4_K;
    o.mixed_q4_k_m = true;
  } else {
    std::optional<GgmlType> t = ParseGgmlType(type);
    if (!t) return absl::InvalidArgumentError("--type: unknown type '" + type + "'");
    o.type = *t;
  }
  auto t0 = std::chrono::steady_clock::now();
  MEMORIA_RETURN_IF_ERROR(WriteRandomModel(o, out));
  std::fprintf(stderr, "wrote %s in %.1f s\n", out.c_str(),
               std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  return absl::OkStatus();
}

}  // namespace memoria::cli
