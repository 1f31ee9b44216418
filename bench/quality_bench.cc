// quality-bench: does the served model answer from its explicit memories? Against a running
// memoria-server with a fresh store: ingests an eval set (tools/train/export_eval.py), asks every
// question with memory (the server's default retrieval floor), with memory from the top 5
// whatever their scores ("top5"), without memory and with the document in the prompt (RAG), as
// --modes lists them (default memory,none,rag), and prints one markdown row per mode: exact-answer recall, how often the gold document was retrieved, mean
// prompt tokens and mean TTFT (memory vs RAG in the same run). bench/run_quality.sh runs it
// over memory configurations (sparse/dense, codecs).
//
//   quality-bench --server 127.0.0.1:50051 --eval models/memoria-mini-eval.jsonl --label sparse-int8
#include <algorithm>
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "client/cli/flags.h"
#include "client/eval/memory_eval.h"
#include "engine/util/status_macros.h"

namespace memoria {
namespace {

absl::Status Main(const std::vector<std::string>& args) {
  MEMORIA_ASSIGN_OR_RETURN(
      cli::Flags flags,
      cli::Flags::Parse(args, {"--server", "--token", "--eval", "--label", "--max-tokens", "--modes"},
                        {"--header"}));
  MEMORIA_ASSIGN_OR_RETURN(std::string eval_path, flags.Required("--eval"));
  MEMORIA_ASSIGN_OR_RETURN(EvalSet set, ReadEvalSet(eval_path));
  MEMORIA_ASSIGN_OR_RETURN(int64_t max_tokens, flags.Int("--max-tokens", 8));
  ClientOptions options;
  options.admin_token = flags.String("--token");
  MEMORIA_ASSIGN_OR_RETURN(std::unique_ptr<Client> client,
                           Client::Connect(flags.String("--server", "127.0.0.1:50051"), options));
  const std::string label = flags.String("--label", "default");
  const std::string modes = flags.String("--modes", "memory,none,rag");
  if (flags.Has("--header")) {
    std::printf("| config | mode | questions | exact-answer recall | gold document retrieved "
                "| prompt tokens | TTFT ms |\n|---|---|---|---|---|---|---|\n");
  }
  const std::string collection = "quality";
  MEMORIA_RETURN_IF_ERROR(IngestEvalSet(*client, set, collection));
  struct Mode {
    const char* name;
    EvalMode mode;
  };
  for (const Mode& m : {Mode{"memory", EvalMode::kMemory}, Mode{"top5", EvalMode::kMemoryNoFloor},
                        Mode{"none", EvalMode::kNoMemory}, Mode{"rag", EvalMode::kRag}}) {
    if (modes.find(m.name) == std::string::npos) continue;
    MEMORIA_ASSIGN_OR_RETURN(EvalResult r, RunEval(*client, set, m.mode, collection,
                                                   static_cast<int>(max_tokens)));
    std::printf("| %s | %s | %d | %.1f%% | %s | %.1f | %.1f |\n", label.c_str(), m.name,
                r.questions, 100.0 * r.recall(),
                m.mode == EvalMode::kMemory || m.mode == EvalMode::kMemoryNoFloor
                    ? (std::to_string(100 * r.gold_cited / std::max(1, r.questions)) + "%").c_str()
                    : "-",
                r.prompt_tokens_mean, r.ttft_ms_mean);
    std::fflush(stdout);
  }
  return absl::OkStatus();
}

}  // namespace
}  // namespace memoria

int main(int argc, char** argv) {
  absl::Status s = memoria::Main(std::vector<std::string>(argv + 1, argv + argc));
  if (!s.ok()) {
    std::cerr << "quality-bench: " << s << "\n";
    return 1;
  }
  return 0;
}
