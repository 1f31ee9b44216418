#include "engine/tokenizer/tokenizer.h"
#include "engine/tokenizer/utf8.h"

namespace memoria {

StreamingDecoder::StreamingDecoder(const Tokenizer& tokenizer, bool special)
    : tokenizer_(tokenizer), special_(special) {}

std::string StreamingDecoder::Push(TokenId id) {
  std::string piece = tokenizer_.TokenToPiece(id, special_);
  if (first_) {
    first_ = false;
    strip_space_ = id == tokenizer_.bos() && tokenizer_.add_space_prefix();
  } else if (strip_space_) {
    if (!piece.empty() && piece[0] == ' ') piece.erase(0, 1);
    strip_space_ = false;
  }
  pending_ += piece;
  return utf8::TakeComplete(&pending_);
}

std::string StreamingDecoder::Flush() {
  std::string rest = utf8::Sanitize(pending_);
  pending_.clear();
  return rest;
}

}  // namespace memoria
