#ifndef MEMORIA_CLIENT_EVAL_MEMORY_EVAL_H_
#define MEMORIA_CLIENT_EVAL_MEMORY_EVAL_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "client/lib/client.h"

namespace memoria {

// A question-answering set for measuring whether a model reads its explicit memories: documents
// of facts and questions whose exact answers only those documents give (written by
// tools/train/export_eval.py from the trainer's held-out entities).
struct EvalDocument {
  std::string id;
  std::string text;
};
struct EvalQuestion {
  std::string prompt;       // the question as the model was trained to see it
  std::string rag_prompt;   // the same question with its document's text in front (RAG)
  std::string answer;       // exact answer, compared with the start of the generated text
  std::string document_id;  // the document that holds the answer
};
struct EvalSet {
  std::vector<EvalDocument> documents;
  std::vector<EvalQuestion> questions;
};

// JSON lines: {"document": {"id", "text"}} or {"question": {"prompt", "rag_prompt", "answer",
// "document_id"}}. InvalidArgument naming the line for anything else.
absl::StatusOr<EvalSet> ReadEvalSet(const std::string& path);

enum class EvalMode {
  kMemory,    // ask the question alone; the server retrieves memories from `collection`
  kMemoryNoFloor,  // the same with no floor and no score gap: the top 5 whatever their scores
  kNoMemory,  // ask the question alone with memory off (the chance baseline)
  kRag,       // the document's text in the prompt, memory off
};

struct EvalResult {
  int questions = 0;
  int correct = 0;          // generated text starts with the exact answer
  int gold_cited = 0;       // with memory: the answer's document among the first retrieval's
  double ttft_ms_mean = 0;  // as the server measured it
  double prompt_tokens_mean = 0;
  double recall() const { return questions ? static_cast<double>(correct) / questions : 0; }
};

// Ingests the set's documents into `collection` (one document per call, stopping at the first
// error).
absl::Status IngestEvalSet(Client& client, const EvalSet& set, const std::string& collection);

// Asks every question greedily (max_tokens tokens) and scores the answers.
absl::StatusOr<EvalResult> RunEval(Client& client, const EvalSet& set, EvalMode mode,
                                   const std::string& collection, int max_tokens);

// True when `generated`, leading spaces dropped, starts with `answer` followed by the end or a
// character that cannot continue a word.
bool AnswerMatches(const std::string& generated, const std::string& answer);

}  // namespace memoria

#endif  // MEMORIA_CLIENT_EVAL_MEMORY_EVAL_H_
