// memoria generate: one completion from a memoria-server, streamed to the terminal.
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "client/cli/commands.h"
#include "client/cli/server_flags.h"
#include "engine/util/status_macros.h"
#include "google/protobuf/util/json_util.h"

namespace memoria::cli {
namespace {

// Where and how well one document was cited over a whole completion.
struct CitedDocument {
  float best_score = 0;
  std::vector<int32_t> at_tokens;  // generated_tokens of each retrieval that chose it
};

// Cited documents in the order they were first cited.
class Citations {
 public:
  void Add(const v1::Retrieval& retrieval) {
    for (const v1::Citation& c : retrieval.references()) {
      auto [it, inserted] = documents_.try_emplace(c.document_id());
      if (inserted) order_.push_back(c.document_id());
      CitedDocument& doc = it->second;
      if (doc.at_tokens.empty() || c.score() > doc.best_score) doc.best_score = c.score();
      // A retrieval cites several references of one document; count the retrieval once.
      if (doc.at_tokens.empty() || doc.at_tokens.back() != retrieval.generated_tokens()) {
        doc.at_tokens.push_back(retrieval.generated_tokens());
      }
    }
  }

  void Print() const {
    if (order_.empty()) return;
    std::printf("\ncitations:\n");
    for (const std::string& id : order_) {
      const CitedDocument& doc = documents_.at(id);
      std::printf("  [%s] score %.3f, retrieved at token", id.c_str(), doc.best_score);
      for (size_t i = 0; i < doc.at_tokens.size(); ++i) {
        std::printf("%s %d", i ? "," : "", doc.at_tokens[i]);
      }
      std::printf("\n");
    }
  }

 private:
  std::map<std::string, CitedDocument> documents_;
  std::vector<std::string> order_;
};

absl::StatusOr<v1::GenerateRequest> RequestFromFlags(const Flags& flags) {
  v1::GenerateRequest request;
  MEMORIA_ASSIGN_OR_RETURN(std::string prompt, flags.Required("--prompt"));
  if (flags.Has("--chat") || flags.Has("--system")) {
    v1::ChatMessages* chat = request.mutable_chat();
    if (flags.Has("--system")) {
      v1::ChatMessage* system = chat->add_messages();
      system->set_role("system");
      system->set_content(flags.String("--system"));
    }
    v1::ChatMessage* user = chat->add_messages();
    user->set_role("user");
    user->set_content(prompt);
  } else {
    request.set_prompt(prompt);
  }

  v1::SamplingOptions* sampling = request.mutable_sampling();
  MEMORIA_ASSIGN_OR_RETURN(int64_t max_tokens, flags.Int("-n", 128));
  sampling->set_max_tokens(static_cast<int32_t>(max_tokens));
  // Unset flags stay unset so the server's defaults apply.
  if (flags.Has("--temp")) {
    MEMORIA_ASSIGN_OR_RETURN(double temp, flags.Double("--temp", 0));
    sampling->set_temperature(static_cast<float>(temp));
  }
  MEMORIA_ASSIGN_OR_RETURN(int64_t top_k, flags.Int("--top-k", 0));
  sampling->set_top_k(static_cast<int32_t>(top_k));
  if (flags.Has("--top-p")) {
    MEMORIA_ASSIGN_OR_RETURN(double top_p, flags.Double("--top-p", 1));
    sampling->set_top_p(static_cast<float>(top_p));
  }
  MEMORIA_ASSIGN_OR_RETURN(double min_p, flags.Double("--min-p", 0));
  sampling->set_min_p(static_cast<float>(min_p));
  if (flags.Has("--repeat-penalty")) {
    MEMORIA_ASSIGN_OR_RETURN(double penalty, flags.Double("--repeat-penalty", 1));
    sampling->set_repetition_penalty(static_cast<float>(penalty));
  }
  if (flags.Has("--seed")) {
    MEMORIA_ASSIGN_OR_RETURN(int64_t seed, flags.Int("--seed", 0));
    sampling->set_seed(static_cast<uint64_t>(seed));
  }
  if (flags.Has("--stop")) sampling->add_stop(flags.String("--stop"));
  sampling->set_ignore_eos(flags.Has("--ignore-eos"));

  v1::MemoryOptions* memory = request.mutable_memory();
  if (flags.Has("--no-memory")) memory->set_enabled(false);
  if (flags.Has("--collection")) {
    for (absl::string_view c : absl::StrSplit(flags.String("--collection"), ',', absl::SkipEmpty())) {
      memory->add_collections(std::string(c));
    }
  }
  if (flags.Has("--references")) {
    MEMORIA_ASSIGN_OR_RETURN(int64_t references, flags.Int("--references", 5));
    memory->set_references(static_cast<int32_t>(references));
  }
  if (flags.Has("--retrieve-every")) {
    MEMORIA_ASSIGN_OR_RETURN(int64_t every, flags.Int("--retrieve-every", 64));
    memory->set_retrieve_every(static_cast<int32_t>(every));
  }
  if (flags.Has("--min-score")) {
    MEMORIA_ASSIGN_OR_RETURN(double min_score, flags.Double("--min-score", 0));
    memory->set_min_score(static_cast<float>(min_score));
  }
  if (flags.Has("--score-gap")) {
    MEMORIA_ASSIGN_OR_RETURN(double gap, flags.Double("--score-gap", 2));
    memory->set_score_gap(static_cast<float>(gap));
  }
  return request;
}

const char* FinishReasonName(v1::FinishReason reason) {
  switch (reason) {
    case v1::FINISH_REASON_LENGTH: return "length";
    case v1::FINISH_REASON_STOP: return "stop";
    default: return "unspecified";
  }
}

}  // namespace

absl::Status GenerateCommand(const std::vector<std::string>& args) {
  MEMORIA_ASSIGN_OR_RETURN(
      Flags flags,
      ParseServerFlags(args,
                       {"--prompt", "--system", "-n", "--temp", "--top-k", "--top-p", "--min-p",
                        "--repeat-penalty", "--seed", "--stop", "--collection", "--references",
                        "--retrieve-every", "--min-score", "--score-gap"},
                       {"--chat", "--ignore-eos", "--no-memory", "--json"}));
  MEMORIA_ASSIGN_OR_RETURN(v1::GenerateRequest request, RequestFromFlags(flags));
  MEMORIA_ASSIGN_OR_RETURN(std::unique_ptr<Client> client, ConnectFromFlags(flags));

  const bool json = flags.Has("--json");
  Citations citations;
  v1::Finished finished;
  bool text_ends_line = true;
  absl::Status status = client->Generate(request, [&](const v1::GenerateResponse& response) {
    if (json) {
      // One JSON object per line (protobuf's JSON mapping of GenerateResponse). Conversion fails
      // only for messages that cannot parse, which a received one never is; nothing to print then.
      std::string line;
      if (google::protobuf::util::MessageToJsonString(response, &line).ok()) {
        std::printf("%s\n", line.c_str());
      }
    } else if (!response.text().empty()) {
      std::fwrite(response.text().data(), 1, response.text().size(), stdout);
      text_ends_line = response.text().back() == '\n';
    }
    std::fflush(stdout);
    if (response.has_retrieval()) citations.Add(response.retrieval());
    if (response.has_finished()) finished = response.finished();
  });
  if (json) return status;
  if (!text_ends_line) std::printf("\n");
  citations.Print();
  std::fflush(stdout);
  MEMORIA_RETURN_IF_ERROR(status);
  std::fprintf(stderr,
               "finish: %s; prompt %d tokens, completion %d tokens; queue %.1f ms, first token "
               "%.1f ms, %.1f tokens/s, total %.1f ms\n",
               FinishReasonName(finished.reason()), finished.usage().prompt_tokens(),
               finished.usage().completion_tokens(), finished.timings().queue_ms(),
               finished.timings().ttft_ms(), finished.timings().decode_tokens_per_second(),
               finished.timings().total_ms());
  return absl::OkStatus();
}

}  // namespace memoria::cli
