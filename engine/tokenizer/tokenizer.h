#ifndef MEMORIA_ENGINE_TOKENIZER_TOKENIZER_H_
#define MEMORIA_ENGINE_TOKENIZER_TOKENIZER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/gguf/gguf_file.h"

namespace memoria {

using TokenId = int32_t;

// A tokenizer read from a GGUF file's tokenizer.* metadata: SentencePiece-style ("llama") or
// byte-level BPE ("gpt2") with the pre-tokenizer named by tokenizer.ggml.pre. Token ids match
// llama.cpp's exactly. Immutable after construction and safe to share across threads; each call
// uses its own scratch state.
class Tokenizer {
 public:
  static absl::StatusOr<std::unique_ptr<Tokenizer>> FromGguf(const GgufFile& file);
  virtual ~Tokenizer() = default;

  // Encodes text. add_special: prepend BOS / append EOS as tokenizer.ggml.add_bos_token /
  // add_eos_token say. parse_special: text of special tokens ("<|im_start|>") becomes that token
  // instead of being tokenized as plain text.
  virtual std::vector<TokenId> Encode(std::string_view text, bool add_special,
                                      bool parse_special) const = 0;

  // The bytes a token stands for (byte-level and byte-fallback tokens decoded; SentencePiece's
  // U+2581 turned into a space). Control tokens give their text only when `special` is true.
  virtual std::string TokenToPiece(TokenId id, bool special) const = 0;
  // Concatenated pieces; drops the leading space SentencePiece adds after BOS, as llama.cpp does.
  std::string Decode(const std::vector<TokenId>& ids, bool special) const;

  int32_t vocab_size() const { return static_cast<int32_t>(texts_.size()); }
  const std::string& TokenText(TokenId id) const { return texts_[id]; }  // as stored in the file
  TokenId bos() const { return bos_; }  // -1 when the vocabulary has none
  TokenId eos() const { return eos_; }
  bool add_bos() const { return add_bos_; }
  bool add_eos() const { return add_eos_; }
  // SentencePiece-style: Encode puts a space before text that starts the input or follows a
  // special token, and decoding drops the first one again.
  bool add_space_prefix() const { return add_space_prefix_; }
  // End of generation: EOS, EOT (<|eot_id|>, <|im_end|>, <|end|>...) and tokenizer.ggml.eot_token_id.
  bool IsEndOfGeneration(TokenId id) const;
  // Id of the token whose stored text is exactly `text`, or -1.
  TokenId FindToken(std::string_view text) const;

 protected:
  Tokenizer() = default;
  std::vector<std::string> texts_;
  TokenId bos_ = -1;
  TokenId eos_ = -1;
  bool add_bos_ = false;
  bool add_eos_ = false;
  bool add_space_prefix_ = false;
  std::vector<TokenId> end_of_generation_;
};

// Turns a stream of token ids into text deltas that are always whole UTF-8 characters: bytes of an
// unfinished character are held back until it completes. One per generated sequence. Generated
// tokens continue a prompt, so their pieces are kept as they are (SentencePiece's "\u2581Paris"
// streams as " Paris");
// only a stream that starts with BOS, a whole sequence as Encode makes it, drops the space prefix
// after the BOS as Decode does.
class StreamingDecoder {
 public:
  explicit StreamingDecoder(const Tokenizer& tokenizer, bool special = false);
  std::string Push(TokenId id);  // the newly completed text (maybe empty)
  std::string Flush();           // whatever is held back, invalid bytes replaced by U+FFFD

 private:
  const Tokenizer& tokenizer_;
  bool special_;
  bool first_ = true;
  bool strip_space_ = false;  // the next piece is the first after a leading BOS
  std::string pending_;
};

}  // namespace memoria

#endif  // MEMORIA_ENGINE_TOKENIZER_TOKENIZER_H_
