#ifndef MEMORIA_ENGINE_TOKENIZER_UNICODE_H_
#define MEMORIA_ENGINE_TOKENIZER_UNICODE_H_

#include <cstddef>
#include <cstdint>

namespace memoria::unicode {

// Unicode general category, folded to the classes the pre-tokenizer regexes name (\p{L} etc.).
// kUndefined is an unassigned code point (Cn), which the regexes treat like any other non-letter,
// non-number, non-space character.
enum class Category : uint8_t {
  kUndefined,
  kLetter,       // \p{L}
  kNumber,       // \p{N}
  kPunctuation,  // \p{P}
  kSymbol,       // \p{S}
  kMark,         // \p{M}
  kSeparator,    // \p{Z}
  kControl,      // \p{C} other than Cn: controls, format, private use, surrogates
};

// Packed per-code-point properties: the category and whether the code point is White_Space
// (what \s means in the regexes). Code points past U+10FFFF are undefined, not whitespace.
class CharInfo {
 public:
  constexpr CharInfo() = default;
  constexpr CharInfo(Category category, bool whitespace)
      : bits_(static_cast<uint8_t>(static_cast<uint8_t>(category) | (whitespace ? kSpaceBit : 0))) {
  }

  Category category() const { return static_cast<Category>(bits_ & kCategoryMask); }
  bool is_whitespace() const { return bits_ & kSpaceBit; }
  bool is_letter() const { return category() == Category::kLetter; }
  bool is_number() const { return category() == Category::kNumber; }
  bool is_punctuation() const { return category() == Category::kPunctuation; }

 private:
  static constexpr uint8_t kCategoryMask = 0x7;
  static constexpr uint8_t kSpaceBit = 0x8;
  uint8_t bits_ = 0;
};

CharInfo GetCharInfo(uint32_t cpt);

// Generated tables (unicode_data.cc, from tools/gen_unicode_data.py).
struct CategoryRange {
  uint32_t first;  // the range runs up to the next entry's `first`
  Category category;
};
extern const CategoryRange kCategoryRanges[];
extern const size_t kNumCategoryRanges;
extern const uint32_t kWhitespace[];
extern const size_t kNumWhitespace;

}  // namespace memoria::unicode

#endif  // MEMORIA_ENGINE_TOKENIZER_UNICODE_H_
