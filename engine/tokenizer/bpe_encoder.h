#ifndef MEMORIA_ENGINE_TOKENIZER_BPE_ENCODER_H_
#define MEMORIA_ENGINE_TOKENIZER_BPE_ENCODER_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "engine/tokenizer/pre_tokenizer.h"
#include "engine/tokenizer/vocab.h"

namespace memoria {

// Byte-level BPE (GPT-2 style) as llama.cpp runs it: the pre-tokenizer cuts text into words,
// each word's bytes are spelled with GPT-2's byte-to-unicode alphabet, and within a word the
// adjacent pair with the lowest merge rank is merged (leftmost on ties) until none is left.
// Immutable after construction; Encode keeps its scratch state on the stack.
class BpeEncoder {
 public:
  // `merges` are tokenizer.ggml.merges ("left right", rank = index). `ignore_merges`: a word that
  // is a token as a whole becomes that token without merging (Llama 3).
  BpeEncoder(const Vocab& vocab, const std::vector<std::string>& merges, PreTokenizer pre_tokenizer,
             bool ignore_merges);

  // Appends the ids for `text` to *out.
  void Encode(std::string_view text, std::vector<TokenId>* out) const;

  // The bytes a byte-level token text stands for (inverse of the byte alphabet); characters
  // outside the alphabet are kept as they are.
  static std::string DecodeByteLevel(std::string_view token_text);

 private:
  // A merge rule: the halves are merges_text_[offset, +left_size) and the right_size bytes after
  // the separating space.
  struct Merge {
    uint32_t offset;
    uint32_t left_size;
    uint32_t right_size;
  };

  static uint64_t PairHash(std::string_view left, std::string_view right);
  static std::string CollisionKey(std::string_view left, std::string_view right);
  // Whether merge `rank` is exactly (left, right).
  bool MergeIs(int32_t rank, std::string_view left, std::string_view right) const;
  // Rank of the merge (left, right), or -1.
  int32_t Rank(std::string_view left, std::string_view right) const;
  void EncodeWord(std::string_view word, std::vector<TokenId>* out) const;

  const Vocab& vocab_;
  PreTokenizer pre_tokenizer_;
  bool ignore_merges_;
  std::string merges_text_;    // all merge rules, back to back
  std::vector<Merge> merges_;  // by rank
  // Pair hash -> rank of the first merge with that hash; a hit is confirmed against the rule's
  // text. Keying by a hash of the two strings, rather than by token ids, spares loading 560k
  // string lookups. Rules whose hash an earlier, different rule already took are in collisions_.
  absl::flat_hash_map<uint64_t, int32_t> ranks_;
  absl::flat_hash_map<std::string, int32_t> collisions_;  // CollisionKey(left, right) -> rank
};

}  // namespace memoria

#endif  // MEMORIA_ENGINE_TOKENIZER_BPE_ENCODER_H_
