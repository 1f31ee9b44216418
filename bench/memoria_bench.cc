// memoria-bench: prompt-processing and token-generation speed as llama-bench defines them.
//   ppN: N prompt tokens in one sequence, fed in max_batch_tokens chunks, from an empty cache.
//   tgN: N tokens decoded one at a time from an empty cache (after one warm-up token).
//   With --seqs S > 1, tgN also runs S sequences decoding together (tokens/s counts all of them).
// Each test is repeated -r times; the median and spread are printed.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "client/cli/flags.h"
#include "engine/model/model.h"
#include "engine/quant/gemm.h"
#include "engine/util/status_macros.h"

namespace memoria {
namespace {

using Clock = std::chrono::steady_clock;

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
}

std::vector<int32_t> RandomTokens(int32_t n, int32_t n_vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int32_t> t(n);
  for (int32_t& x : t) x = static_cast<int32_t>(rng() % n_vocab);
  return t;
}

// Seconds to prefill n_prompt tokens into a fresh sequence.
absl::StatusOr<double> TimePrompt(Model& model, int32_t n_prompt) {
  std::vector<int32_t> tokens = RandomTokens(n_prompt, model.config().n_vocab, 1);
  MEMORIA_ASSIGN_OR_RETURN(SequenceId seq, model.CreateSequence());
  ForwardOutput out;
  auto t0 = Clock::now();
  const size_t chunk = model.options().max_batch_tokens;
  for (size_t i = 0; i < tokens.size(); i += chunk) {
    SequenceInput in{seq, std::span<const int32_t>(tokens).subspan(i, std::min(chunk, tokens.size() - i))};
    absl::Status st = model.Forward(std::span<const SequenceInput>(&in, 1), &out);
    if (!st.ok()) {
      model.DestroySequence(seq);
      return st;
    }
  }
  double s = std::chrono::duration<double>(Clock::now() - t0).count();
  model.DestroySequence(seq);
  return s;
}

// Seconds for n_seqs sequences to decode n_gen tokens each, one step per token.
absl::StatusOr<double> TimeGeneration(Model& model, int32_t n_gen, int32_t n_seqs) {
  std::vector<SequenceId> seqs;
  for (int32_t s = 0; s < n_seqs; ++s) {
    MEMORIA_ASSIGN_OR_RETURN(SequenceId id, model.CreateSequence());
    seqs.push_back(id);
  }
  std::vector<int32_t> tokens(n_seqs, 1);
  std::vector<SequenceInput> inputs(n_seqs);
  ForwardOutput out;
  auto step = [&]() {
    for (int32_t s = 0; s < n_seqs; ++s) inputs[s] = {seqs[s], std::span<const int32_t>(&tokens[s], 1)};
    return model.Forward(inputs, &out);
  };
  absl::Status st = step();  // warm-up token, as llama-bench
  auto t0 = Clock::now();
  for (int32_t i = 0; i < n_gen && st.ok(); ++i) {
    st = step();
    for (int32_t s = 0; s < n_seqs && st.ok(); ++s) {
      const float* l = out.Logits(s);
      tokens[s] = static_cast<int32_t>(std::max_element(l, l + out.n_vocab) - l);
    }
  }
  double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  for (SequenceId id : seqs) model.DestroySequence(id);
  if (!st.ok()) return st;
  return secs;
}

absl::Status Main(const std::vector<std::string>& args) {
  MEMORIA_ASSIGN_OR_RETURN(cli::Flags flags,
                           cli::Flags::Parse(args, {"--model", "-m", "-p", "-n", "-t", "-r", "--seqs", "-b",
                                                    "--kv-type"},
                                             {}));
  std::string path = flags.String("--model", flags.String("-m"));
  if (path.empty()) return absl::InvalidArgumentError("--model is required");
  MEMORIA_ASSIGN_OR_RETURN(int64_t n_prompt, flags.Int("-p", 512));
  MEMORIA_ASSIGN_OR_RETURN(int64_t n_gen, flags.Int("-n", 128));
  MEMORIA_ASSIGN_OR_RETURN(int64_t threads, flags.Int("-t", 0));
  MEMORIA_ASSIGN_OR_RETURN(int64_t repeats, flags.Int("-r", 5));
  MEMORIA_ASSIGN_OR_RETURN(int64_t n_seqs, flags.Int("--seqs", 1));
  MEMORIA_ASSIGN_OR_RETURN(int64_t batch, flags.Int("-b", 512));
  if (n_prompt < 0 || n_gen < 0 || repeats < 1 || n_seqs < 1 || batch < 1) {
    return absl::InvalidArgumentError("-p, -n >= 0; -r, --seqs, -b >= 1");
  }
  ModelOptions options;
  options.backend.n_threads = static_cast<int32_t>(threads);
  options.max_batch_tokens = static_cast<int32_t>(std::max<int64_t>(batch, n_seqs));
  options.kv_cache_tokens = static_cast<int32_t>(std::max(n_prompt, (n_gen + 2) * n_seqs) + 64 * n_seqs);
  options.kv_type = flags.String("--kv-type", "f16") == "f32" ? GgmlType::kF32 : GgmlType::kF16;
  MEMORIA_ASSIGN_OR_RETURN(std::unique_ptr<Model> model, Model::Load(options, path));
  const ModelConfig& c = model->config();
  std::printf("model: %s  arch=%s layers=%d dim=%d heads=%d/%d ff=%d vocab=%d\n", path.c_str(),
              c.arch_name.c_str(), c.n_layers, c.n_embd, c.n_heads, c.n_kv_heads, c.n_ff, c.n_vocab);
  std::printf("backend: %s\n\n", model->backend().Describe().c_str());
  std::printf("| %-10s | %12s | %10s |\n", "test", "t/s (median)", "spread");
  std::printf("|%s|%s|%s|\n", std::string(12, '-').c_str(), std::string(14, '-').c_str(),
              std::string(12, '-').c_str());
  auto report = [&](const std::string& name, int64_t tokens, const std::vector<double>& secs) {
    std::vector<double> tps;
    for (double s : secs) tps.push_back(tokens / s);
    auto [lo, hi] = std::minmax_element(tps.begin(), tps.end());
    std::printf("| %-10s | %12.2f | %4.1f-%4.1f |\n", name.c_str(), Median(tps), *lo, *hi);
    std::fflush(stdout);
  };
  if (n_prompt > 0) {
    std::vector<double> secs;
    for (int64_t r = 0; r < repeats; ++r) {
      MEMORIA_ASSIGN_OR_RETURN(double s, TimePrompt(*model, static_cast<int32_t>(n_prompt)));
      secs.push_back(s);
    }
    report("pp" + std::to_string(n_prompt), n_prompt, secs);
  }
  if (n_gen > 0) {
    std::vector<double> secs;
    for (int64_t r = 0; r < repeats; ++r) {
      MEMORIA_ASSIGN_OR_RETURN(double s, TimeGeneration(*model, static_cast<int32_t>(n_gen), static_cast<int32_t>(n_seqs)));
      secs.push_back(s);
    }
    std::string name = "tg" + std::to_string(n_gen);
    if (n_seqs > 1) name += "x" + std::to_string(n_seqs);
    report(name, n_gen * n_seqs, secs);
  }
  return absl::OkStatus();
}

}  // namespace
}  // namespace memoria

int main(int argc, char** argv) {
  absl::Status st = memoria::Main(std::vector<std::string>(argv + 1, argv + argc));
  if (!st.ok()) {
    std::fprintf(stderr, "memoria-bench: %s\n", std::string(st.message()).c_str());
    return 1;
  }
  return 0;
}
