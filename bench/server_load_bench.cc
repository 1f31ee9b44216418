// server-load-bench: a load generator for a running memoria-server. For each concurrency level it
// keeps that many Generate streams busy (each client thread sends its next request as soon as
// the previous one finishes) for a fixed number of requests, and reports total throughput and
// TTFT / inter-token latency percentiles as clients see them, with memory off and on. The
// batching factor is each level's tokens/s over concurrency 1's, measured in the same run.
//
//   server-load-bench --server 127.0.0.1:50051 [--token T] [--concurrency 1,8,32]
//                     [--requests-per-stream 4] [--max-tokens 64] [--documents 32]
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "client/cli/flags.h"
#include "client/lib/client.h"
#include "engine/util/status_macros.h"

namespace memoria {
namespace {

using Clock = std::chrono::steady_clock;

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t i = std::min(v.size() - 1, static_cast<size_t>(p * (v.size() - 1) + 0.5));
  return v[i];
}

double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

struct LevelResult {
  int concurrency = 0;
  bool memory = false;
  int requests = 0;
  int failures = 0;
  int64_t tokens = 0;
  double seconds = 0;
  std::vector<double> ttft_ms;
  std::vector<double> itl_ms;
};

const char* const kTopics[] = {"river", "mountain", "library", "engine", "garden", "market",
                               "harbor", "observatory"};

std::string DocumentText(int i) {
  const std::string topic = kTopics[i % 8];
  return absl::StrCat("Document ", i, " is about the ", topic, " of district ", i * 7 % 13,
                      ". The ", topic, " opened in ", 1800 + i * 3, " and has ", 10 + i,
                      " caretakers who meet every ", i % 7 + 1, " days to discuss its future.");
}

LevelResult RunLevel(Client& client, int concurrency, int per_stream, int max_tokens,
                     bool memory) {
  LevelResult result;
  result.concurrency = concurrency;
  result.memory = memory;
  std::mutex mu;
  std::vector<std::thread> threads;
  const auto t0 = Clock::now();
  for (int c = 0; c < concurrency; ++c) {
    threads.emplace_back([&, c] {
      for (int r = 0; r < per_stream; ++r) {
        v1::GenerateRequest request;
        request.set_prompt(absl::StrCat("Tell me about the ", kTopics[(c + r) % 8], " in district ",
                                        (c * 5 + r) % 13, "."));
        request.mutable_sampling()->set_max_tokens(max_tokens);
        request.mutable_sampling()->set_ignore_eos(true);
        request.mutable_sampling()->set_return_token_ids(true);
        request.mutable_memory()->set_enabled(memory);
        const auto sent = Clock::now();
        Clock::time_point last;
        std::vector<double> itl;
        double ttft = -1;
        int64_t tokens = 0;
        absl::Status s = client.Generate(request, [&](const v1::GenerateResponse& m) {
          if (m.tokens_size() == 0) return;
          const auto now = Clock::now();
          if (ttft < 0) {
            ttft = Ms(now - sent);
          } else {
            // Tokens that arrive merged in one message share the gap.
            for (int k = 0; k < m.tokens_size(); ++k) itl.push_back(Ms(now - last) / m.tokens_size());
          }
          last = now;
          tokens += m.tokens_size();
        });
        std::lock_guard<std::mutex> lock(mu);
        ++result.requests;
        if (!s.ok()) {
          ++result.failures;
          std::cerr << "request failed: " << s << "\n";
          continue;
        }
        result.tokens += tokens;
        result.ttft_ms.push_back(ttft);
        result.itl_ms.insert(result.itl_ms.end(), itl.begin(), itl.end());
      }
    });
  }
  for (std::thread& t : threads) t.join();
  result.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  return result;
}

absl::Status Main(const std::vector<std::string>& args) {
  MEMORIA_ASSIGN_OR_RETURN(
      cli::Flags flags,
      cli::Flags::Parse(args,
                        {"--server", "--token", "--concurrency", "--requests-per-stream",
                         "--max-tokens", "--documents"},
                        {}));
  ClientOptions options;
  options.admin_token = flags.String("--token");
  MEMORIA_ASSIGN_OR_RETURN(std::unique_ptr<Client> client,
                           Client::Connect(flags.String("--server", "127.0.0.1:50051"), options));
  std::vector<int> levels;
  for (absl::string_view part : absl::StrSplit(flags.String("--concurrency", "1,8,32"), ',')) {
    int level = 0;
    if (!absl::SimpleAtoi(part, &level) || level < 1) {
      return absl::InvalidArgumentError("--concurrency: comma-separated positive integers");
    }
    levels.push_back(level);
  }
  MEMORIA_ASSIGN_OR_RETURN(int64_t per_stream, flags.Int("--requests-per-stream", 4));
  MEMORIA_ASSIGN_OR_RETURN(int64_t max_tokens, flags.Int("--max-tokens", 64));
  MEMORIA_ASSIGN_OR_RETURN(int64_t documents, flags.Int("--documents", 32));

  MEMORIA_ASSIGN_OR_RETURN(v1::ModelInfoResponse info, client->ModelInfo());
  bool with_memory = info.memory_enabled();
  if (with_memory) {
    int i = 0;
    MEMORIA_ASSIGN_OR_RETURN(v1::IngestDocumentsResponse ingested,
                             client->IngestDocuments([&](v1::IngestDocumentRequest* doc) {
                               if (i >= documents) return false;
                               doc->set_id(absl::StrCat("load-", i));
                               doc->set_collection("load");
                               doc->set_text(DocumentText(i));
                               ++i;
                               return true;
                             }));
    if (ingested.failed() > 0) {
      return absl::InternalError(absl::StrCat(ingested.failed(), " documents failed to ingest"));
    }
  }
  std::printf("server-load-bench: %s, %s; %lld requests per stream, %lld tokens each\n",
              info.description().c_str(), info.device().c_str(),
              static_cast<long long>(per_stream), static_cast<long long>(max_tokens));
  std::printf("| memory | concurrency | requests | tokens/s | x vs c=1 | TTFT p50 ms | TTFT p99 ms "
              "| ITL p50 ms | ITL p99 ms |\n|---|---|---|---|---|---|---|---|---|\n");
  for (bool memory : {false, true}) {
    if (memory && !with_memory) continue;
    double base = 0;
    // A warm-up request so the first level does not pay for page faults and cache misses.
    RunLevel(*client, 1, 1, 8, memory);
    for (int level : levels) {
      LevelResult r = RunLevel(*client, level, static_cast<int>(per_stream),
                               static_cast<int>(max_tokens), memory);
      const double tps = r.tokens / r.seconds;
      if (base == 0) base = tps;
      std::printf("| %s | %d | %d%s | %.1f | %.2f | %.1f | %.1f | %.2f | %.2f |\n",
                  memory ? "on" : "off", level, r.requests,
                  r.failures ? absl::StrCat(" (", r.failures, " failed)").c_str() : "", tps,
                  tps / base, Percentile(r.ttft_ms, 0.5), Percentile(r.ttft_ms, 0.99),
                  Percentile(r.itl_ms, 0.5), Percentile(r.itl_ms, 0.99));
      std::fflush(stdout);
    }
  }
  return absl::OkStatus();
}

}  // namespace
}  // namespace memoria

int main(int argc, char** argv) {
  absl::Status s = memoria::Main(std::vector<std::string>(argv + 1, argv + argc));
  if (!s.ok()) {
    std::cerr << "server-load-bench: " << s << "\n";
    return 1;
  }
  return 0;
}
