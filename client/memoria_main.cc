// memoria: the command-line tool. Engine subcommands work on a local model file.
#include <cstdio>
#include <string>
#include <vector>

#include "client/cli/commands.h"

namespace {

constexpr char kUsage[] =
    "usage: memoria COMMAND [flags]\n"
    "  run         --model M.gguf --prompt TEXT [-n 64] [--temp 0] [--seed S] [--top-k K]\n"
    "              [--top-p P] [--min-p P] [--chat] [--print-ids] [--dump-logits FILE] [-t THREADS]\n"
    "  tokenize    --model M.gguf --text TEXT\n"
    "  make-model  --vocab V.gguf --arch llama|qwen2 --layers L --dim D --heads H --kv-heads K\n"
    "              --ff F --type f32|f16|bf16|q8_0|q4_0|q4_k|q6_k|q4_k_m [--seed S] [--ctx N]\n"
    "              [--tied] [--rope-freqs] -o OUT.gguf\n";

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fputs(kUsage, stderr);
    return 2;
  }
  const std::string command = argv[1];
  const std::vector<std::string> args(argv + 2, argv + argc);
  absl::Status status;
  if (command == "run") {
    status = memoria::cli::RunCommand(args);
  } else if (command == "tokenize") {
    status = memoria::cli::TokenizeCommand(args);
  } else if (command == "make-model") {
    status = memoria::cli::MakeModelCommand(args);
  } else if (command == "help" || command == "--help" || command == "-h") {
    std::fputs(kUsage, stdout);
    return 0;
  } else {
    std::fprintf(stderr, "memoria: unknown command '%s'\n%s", command.c_str(), kUsage);
    return 2;
  }
  if (!status.ok()) {
    std::fprintf(stderr, "memoria %s: %s\n", command.c_str(), std::string(status.message()).c_str());
    return 1;
  }
  return 0;
}
