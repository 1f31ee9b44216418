#ifndef MEMORIA_ENGINE_TOKENIZER_VOCAB_H_
#define MEMORIA_ENGINE_TOKENIZER_VOCAB_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/hash/hash.h"
#include "absl/strings/string_view.h"
#include "engine/tokenizer/tokenizer.h"

namespace memoria {

// tokenizer.ggml.token_type values.
enum class TokenType : uint8_t {
  kUndefined = 0,
  kNormal = 1,
  kUnknown = 2,
  kControl = 3,
  kUserDefined = 4,
  kUnused = 5,
  kByte = 6,
};

// Hashes std::string_view with Abseil's string hash. This Abseil build has its own string_view
// type, and its generic hashing of std::string_view spreads token texts so poorly that lookups
// in a 128k-token map spend their time comparing colliding keys.
struct StringViewHash {
  size_t operator()(std::string_view s) const {
    return absl::Hash<absl::string_view>()(absl::string_view(s.data(), s.size()));
  }
};
using StringViewMap = absl::flat_hash_map<std::string_view, int32_t, StringViewHash>;

// The token table the encoders read. The texts themselves are owned by the Tokenizer (its
// texts_); `ids` holds views into them, so a Vocab lives inside the Tokenizer that owns them.
struct Vocab {
  const std::vector<std::string>* texts = nullptr;
  std::vector<TokenType> types;
  std::vector<float> scores;  // SentencePiece merge priorities; empty for BPE
  StringViewMap ids;
  TokenId unknown = -1;

  int32_t size() const { return static_cast<int32_t>(texts->size()); }
  const std::string& Text(TokenId id) const { return (*texts)[id]; }
  TokenId Find(std::string_view text) const {
    const auto it = ids.find(text);
    return it == ids.end() ? -1 : it->second;
  }
};

}  // namespace memoria

#endif  // MEMORIA_ENGINE_TOKENIZER_VOCAB_H_
