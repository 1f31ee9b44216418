#ifndef MEMORIA_ENGINE_TOKENIZER_PRE_TOKENIZER_H_
#define MEMORIA_ENGINE_TOKENIZER_PRE_TOKENIZER_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace memoria {

// Splits text into the words a byte-level BPE merges within, by the regular expressions
// llama.cpp applies for each tokenizer.ggml.pre name. Each regex is a hand-written matcher here
// with the exact semantics llama.cpp gets from its own matchers or from std::regex
// (ECMAScript, leftmost match, first alternative wins): the passes run in order, each one
// splitting every piece left by the previous pass into its matches and the gaps between them.
// Immutable; safe to share across threads.
class PreTokenizer {
 public:
  // InvalidArgument for a name llama.cpp does not know or this port does not implement.
  static absl::StatusOr<PreTokenizer> ForName(std::string_view name);

  // The words of `text`, in order; their concatenation is `text` with invalid UTF-8 replaced by
  // U+FFFD (llama.cpp decodes to code points first, the same way).
  std::vector<std::string> Split(std::string_view text) const;

  // One regex of a pass list; defined (and only used) in pre_tokenizer.cc.
  enum class Rule : uint8_t;

 private:
  explicit PreTokenizer(std::vector<Rule> rules) : rules_(std::move(rules)) {}

  std::vector<Rule> rules_;
};

}  // namespace memoria

#endif  // MEMORIA_ENGINE_TOKENIZER_PRE_TOKENIZER_H_
