#ifndef MEMORIA_ENGINE_TOKENIZER_UTF8_H_
#define MEMORIA_ENGINE_TOKENIZER_UTF8_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace memoria::utf8 {

inline constexpr uint32_t kReplacementChar = 0xFFFD;

// Length of the sequence a lead byte announces, judged by its high four bits only (1 for ASCII
// and for stray continuation bytes), as llama.cpp's tokenizers split text into symbols.
inline size_t SequenceLength(uint8_t lead) {
  static constexpr uint8_t kLengths[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
  return kLengths[lead >> 4];
}

// Code points of `text`, decoded leniently the way llama.cpp does before pre-tokenizing: a byte
// that does not start a complete sequence becomes U+FFFD and decoding resumes at the next byte.
// Overlong forms and surrogates are accepted as they come; values past U+10FFFF become U+FFFD.
std::vector<uint32_t> DecodeLenient(std::string_view text);

// Appends the UTF-8 encoding of `cpt` (at most U+10FFFF).
void Append(uint32_t cpt, std::string* out);

// Moves the longest prefix of *pending that holds only whole characters into the result, with
// bytes that can never start or continue a valid character replaced by U+FFFD. What stays in
// *pending is an unfinished character that more bytes could still complete.
std::string TakeComplete(std::string* pending);

// `bytes` with every invalid or unfinished sequence replaced by U+FFFD.
std::string Sanitize(std::string_view bytes);

// Offset of the first byte of `text` that does not belong to a complete, valid (RFC 3629)
// sequence, or -1 when all of it is well-formed UTF-8.
int64_t FirstInvalid(std::string_view text);

}  // namespace memoria::utf8

#endif  // MEMORIA_ENGINE_TOKENIZER_UTF8_H_
