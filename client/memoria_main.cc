// memoria: the command-line tool. Engine subcommands work on a local model file; server
// subcommands talk to a memoria-server over gRPC.
#include <cstdio>
#include <string>
#include <vector>

#include "client/cli/commands.h"

namespace {

constexpr char kUsage[] =
    "usage: memoria COMMAND [flags]\n"
    "local model:\n"
    "  run         --model M.gguf --prompt TEXT [-n 64] [--temp 0] [--seed S] [--top-k K]\n"
    "              [--top-p P] [--min-p P] [--chat] [--print-ids] [--dump-logits FILE] [-t THREADS]\n"
    "  tokenize    --model M.gguf --text TEXT\n"
    "  make-model  --vocab V.gguf --arch llama|qwen2 --layers L --dim D --heads H --kv-heads K\n"
    "              --ff F --type f32|f16|bf16|q8_0|q4_0|q4_k|q6_k|q4_k_m [--seed S] [--ctx N]\n"
    "              [--tied] [--rope-freqs] -o OUT.gguf\n"
    "memoria-server (every command also takes --server HOST:PORT (default 127.0.0.1:50051),\n"
    "--token T (default $MEMORIA_ADMIN_TOKEN), --tls, --tls-ca FILE, --timeout SECONDS):\n"
    "  generate    --prompt TEXT [--chat] [--system TEXT] [-n 128] [--temp T] [--top-k K]\n"
    "              [--top-p P] [--min-p P] [--repeat-penalty R] [--seed S] [--stop STR]\n"
    "              [--ignore-eos] [--no-memory] [--collection C[,C...]] [--references M]\n"
    "              [--retrieve-every N] [--min-score S] [--json]\n"
    "  ingest      FILE|DIR... [--collection C] [--id ID]   (id: path relative to DIR, or file name)\n"
    "  get         ID\n"
    "  delete      ID\n"
    "  list        [--collection C]\n"
    "  stats\n"
    "  health      [--service NAME]\n";

using CommandFn = absl::Status (*)(const std::vector<std::string>&);

struct Command {
  const char* name;
  CommandFn run;
  // Server errors carry a gRPC code worth showing (UNAVAILABLE, UNAUTHENTICATED, ...).
  bool shows_code;
};

constexpr Command kCommands[] = {
    {"run", memoria::cli::RunCommand, false},
    {"tokenize", memoria::cli::TokenizeCommand, false},
    {"make-model", memoria::cli::MakeModelCommand, false},
    {"generate", memoria::cli::GenerateCommand, true},
    {"ingest", memoria::cli::IngestCommand, true},
    {"get", memoria::cli::GetCommand, true},
    {"delete", memoria::cli::DeleteCommand, true},
    {"list", memoria::cli::ListCommand, true},
    {"stats", memoria::cli::StatsCommand, true},
    {"health", memoria::cli::HealthCommand, true},
};

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fputs(kUsage, stderr);
    return 2;
  }
  const std::string name = argv[1];
  const std::vector<std::string> args(argv + 2, argv + argc);
  if (name == "help" || name == "--help" || name == "-h") {
    std::fputs(kUsage, stdout);
    return 0;
  }
  for (const Command& command : kCommands) {
    if (name != command.name) continue;
    absl::Status status = command.run(args);
    if (status.ok()) return 0;
    const std::string message(status.message());
    if (command.shows_code) {
      std::fprintf(stderr, "memoria %s: %s: %s\n", command.name,
                   absl::StatusCodeToString(status.code()).c_str(), message.c_str());
    } else {
      std::fprintf(stderr, "memoria %s: %s\n", command.name, message.c_str());
    }
    return 1;
  }
  std::fprintf(stderr, "memoria: unknown command '%s'\n%s", name.c_str(), kUsage);
  return 2;
}
