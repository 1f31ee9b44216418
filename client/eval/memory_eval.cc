#include "client/eval/memory_eval.h"

#include <cctype>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace memoria {

absl::StatusOr<EvalSet> ReadEvalSet(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  EvalSet set;
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    if (line.empty()) continue;
    const nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    auto text = [&](const nlohmann::json& o, const char* key, std::string* out) {
      if (!o.contains(key) || !o[key].is_string()) return false;
      *out = o[key].get<std::string>();
      return true;
    };
    bool ok = false;
    if (j.is_object() && j.contains("document") && j["document"].is_object()) {
      EvalDocument d;
      ok = text(j["document"], "id", &d.id) && text(j["document"], "text", &d.text);
      if (ok) set.documents.push_back(std::move(d));
    } else if (j.is_object() && j.contains("question") && j["question"].is_object()) {
      const nlohmann::json& q = j["question"];
      EvalQuestion e;
      ok = text(q, "prompt", &e.prompt) && text(q, "rag_prompt", &e.rag_prompt) &&
           text(q, "answer", &e.answer) && text(q, "document_id", &e.document_id);
      if (ok) set.questions.push_back(std::move(e));
    }
    if (!ok) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ":", n, ": expected {\"document\": {id, text}} or "
                       "{\"question\": {prompt, rag_prompt, answer, document_id}}"));
    }
  }
  return set;
}

absl::Status IngestEvalSet(Client& client, const EvalSet& set, const std::string& collection) {
  for (const EvalDocument& d : set.documents) {
    v1::IngestDocumentRequest request;
    request.set_id(d.id);
    request.set_collection(collection);
    request.set_text(d.text);
    absl::StatusOr<v1::IngestDocumentResponse> r = client.IngestDocument(request);
    if (!r.ok()) return r.status();
  }
  return absl::OkStatus();
}

bool AnswerMatches(const std::string& generated, const std::string& answer) {
  size_t start = generated.find_first_not_of(' ');
  if (start == std::string::npos || answer.empty()) return false;
  if (generated.compare(start, answer.size(), answer) != 0) return false;
  const size_t end = start + answer.size();
  return end == generated.size() || !std::isalnum(static_cast<unsigned char>(generated[end]));
}

absl::StatusOr<EvalResult> RunEval(Client& client, const EvalSet& set, EvalMode mode,
                                   const std::string& collection, int max_tokens) {
  EvalResult result;
  double ttft_sum = 0, prompt_sum = 0;
  for (const EvalQuestion& q : set.questions) {
    v1::GenerateRequest request;
    request.set_prompt(mode == EvalMode::kRag ? q.rag_prompt : q.prompt);
    request.mutable_sampling()->set_max_tokens(max_tokens);
    request.mutable_sampling()->set_temperature(0);
    const bool memory = mode == EvalMode::kMemory || mode == EvalMode::kMemoryNoFloor;
    request.mutable_memory()->set_enabled(memory);
    if (memory) request.mutable_memory()->add_collections(collection);
    if (mode == EvalMode::kMemoryNoFloor) {
      request.mutable_memory()->set_min_score(-1);
      request.mutable_memory()->set_score_gap(2);
    }
    std::string text;
    bool first_retrieval = true;
    bool gold_cited = false;
    v1::Finished finished;
    absl::Status s = client.Generate(request, [&](const v1::GenerateResponse& r) {
      text += r.text();
      if (r.has_retrieval() && first_retrieval) {
        first_retrieval = false;
        for (const v1::Citation& c : r.retrieval().references()) {
          gold_cited = gold_cited || c.document_id() == q.document_id;
        }
      }
      if (r.has_finished()) finished = r.finished();
    });
    if (!s.ok()) return s;
    ++result.questions;
    result.correct += AnswerMatches(text, q.answer) ? 1 : 0;
    result.gold_cited += gold_cited ? 1 : 0;
    ttft_sum += finished.timings().ttft_ms();
    prompt_sum += finished.usage().prompt_tokens();
  }
  if (result.questions > 0) {
    result.ttft_ms_mean = ttft_sum / result.questions;
    result.prompt_tokens_mean = prompt_sum / result.questions;
  }
  return result;
}

}  // namespace memoria
