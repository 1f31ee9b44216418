#include "engine/tokenizer/unicode.h"

#include <vector>

namespace memoria::unicode {
namespace {

constexpr uint32_t kMaxCodepoint = 0x110000;

// One byte per code point (1.1 MB), expanded from the range tables on first use: a lookup is
// then a single load, which matters because pre-tokenizing looks up every character.
const std::vector<CharInfo>& Table() {
  static const std::vector<CharInfo>* table = [] {
    std::vector<Category> categories(kMaxCodepoint, Category::kUndefined);
    for (size_t i = 0; i < kNumCategoryRanges; ++i) {
      const uint32_t end =
          i + 1 < kNumCategoryRanges ? kCategoryRanges[i + 1].first : kMaxCodepoint;
      for (uint32_t c = kCategoryRanges[i].first; c < end; ++c)
        categories[c] = kCategoryRanges[i].category;
    }
    std::vector<bool> space(kMaxCodepoint, false);
    for (size_t i = 0; i < kNumWhitespace; ++i) space[kWhitespace[i]] = true;
    auto* t = new std::vector<CharInfo>(kMaxCodepoint);
    for (uint32_t c = 0; c < kMaxCodepoint; ++c) (*t)[c] = CharInfo(categories[c], space[c]);
    return t;
  }();
  return *table;
}

}  // namespace

CharInfo GetCharInfo(uint32_t cpt) {
  if (cpt >= kMaxCodepoint) return CharInfo(Category::kUndefined, false);
  return Table()[cpt];
}

}  // namespace memoria::unicode
