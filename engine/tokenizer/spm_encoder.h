#ifndef MEMORIA_ENGINE_TOKENIZER_SPM_ENCODER_H_
#define MEMORIA_ENGINE_TOKENIZER_SPM_ENCODER_H_

#include <cstdint>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "engine/tokenizer/vocab.h"

namespace memoria {

// SentencePiece BPE as llama.cpp runs it: start from single UTF-8 characters and repeatedly
// merge the adjacent pair whose concatenation is the highest-scoring token (leftmost on ties);
// characters that never form a token fall back to their <0xXX> byte tokens. Immutable after
// construction; Encode keeps its scratch state on the stack.
class SpmEncoder {
 public:
  explicit SpmEncoder(const Vocab& vocab);

  // Appends the ids for `text`, already escaped (spaces as U+2581), to *out.
  void Encode(std::string_view text, std::vector<TokenId>* out) const;

 private:
  // Whether some token contains the character `left` directly followed by `right`.
  bool MayJoin(std::string_view left, std::string_view right) const;

  const Vocab& vocab_;
  // Fingerprints of every pair of adjacent characters inside a token text. Where the input has a
  // pair no token contains, no merge can ever cross, so the text is cut there and each part
  // merged on its own: the same result as one pass over the whole text (merges never see across
  // the cut), with small heaps instead of one the size of the input. Fingerprints may collide;
  // a collision only means a missed cut.
  absl::flat_hash_set<uint64_t> joined_pairs_;
};

}  // namespace memoria

#endif  // MEMORIA_ENGINE_TOKENIZER_SPM_ENCODER_H_
