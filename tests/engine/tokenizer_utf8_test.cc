#include <string>

#include "engine/tokenizer/unicode.h"
#include "engine/tokenizer/utf8.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace memoria {
namespace {

using ::testing::ElementsAre;

TEST(Utf8Test, DecodeLenientReplacesBrokenSequences) {
  EXPECT_THAT(utf8::DecodeLenient("a\xC3\xA9\xF0\x9F\xA6\x99"), ElementsAre('a', 0xE9, 0x1F999));
  // A stray continuation byte, a truncated sequence: one U+FFFD per byte that fails.
  EXPECT_THAT(utf8::DecodeLenient("\x80"
                                  "a"),
              ElementsAre(0xFFFD, 'a'));
  EXPECT_THAT(utf8::DecodeLenient("\xE2\x82"
                                  "a"),
              ElementsAre(0xFFFD, 0xFFFD, 'a'));
  EXPECT_THAT(utf8::DecodeLenient("\xF8\x88\x80\x80\x80"),
              ElementsAre(0xFFFD, 0xFFFD, 0xFFFD, 0xFFFD, 0xFFFD));
}

TEST(Utf8Test, AppendEncodesEveryLength) {
  std::string s;
  for (uint32_t c : {0x41u, 0xE9u, 0x20ACu, 0x1F999u}) utf8::Append(c, &s);
  EXPECT_EQ(s, "A\xC3\xA9\xE2\x82\xAC\xF0\x9F\xA6\x99");
}

TEST(Utf8Test, TakeCompleteHoldsBackUnfinishedCharacter) {
  std::string pending = "ab\xF0\x9F";
  EXPECT_EQ(utf8::TakeComplete(&pending), "ab");
  EXPECT_EQ(pending, "\xF0\x9F");
  pending += "\xA6";
  EXPECT_EQ(utf8::TakeComplete(&pending), "");
  pending += "\x99!";
  EXPECT_EQ(utf8::TakeComplete(&pending), "\xF0\x9F\xA6\x99!");
  EXPECT_EQ(pending, "");
}

TEST(Utf8Test, TakeCompleteReplacesBytesThatCanNeverBeValid) {
  // A lone continuation byte, an overlong lead and a surrogate are invalid now and forever.
  std::string pending = "\x80x\xC0\xAFy\xED\xA0\x80";
  EXPECT_EQ(utf8::TakeComplete(&pending),
            "\xEF\xBF\xBDx\xEF\xBF\xBD\xEF\xBF\xBDy\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(pending, "");
  // A lead byte followed by a non-continuation is replaced, and the next byte kept.
  pending =
      "\xE2"
      "a";
  EXPECT_EQ(utf8::TakeComplete(&pending),
            "\xEF\xBF\xBD"
            "a");
}

TEST(Utf8Test, SanitizeReplacesUnfinishedTail) {
  EXPECT_EQ(utf8::Sanitize("ok\xF0\x9F\xA6"), "ok\xEF\xBF\xBD");
  EXPECT_EQ(utf8::Sanitize("\xC3\xA9"), "\xC3\xA9");
  EXPECT_EQ(utf8::Sanitize(""), "");
}

TEST(UnicodeTest, Categories) {
  using unicode::Category;
  using unicode::GetCharInfo;
  EXPECT_EQ(GetCharInfo('a').category(), Category::kLetter);
  EXPECT_EQ(GetCharInfo(0x4E2D).category(), Category::kLetter);  // 中
  EXPECT_EQ(GetCharInfo('7').category(), Category::kNumber);
  EXPECT_EQ(GetCharInfo(0xBD).category(), Category::kNumber);  // ½
  EXPECT_EQ(GetCharInfo('!').category(), Category::kPunctuation);
  EXPECT_EQ(GetCharInfo('$').category(), Category::kSymbol);
  EXPECT_EQ(GetCharInfo(0x1F999).category(), Category::kSymbol);  // 🦙
  EXPECT_EQ(GetCharInfo(0x301).category(), Category::kMark);      // combining acute
  EXPECT_EQ(GetCharInfo(0x3000).category(), Category::kSeparator);
  EXPECT_EQ(GetCharInfo(0x200D).category(), Category::kControl);  // ZWJ is a format char
  EXPECT_EQ(GetCharInfo(0x378).category(), Category::kUndefined);
  EXPECT_EQ(GetCharInfo(0x110000).category(), Category::kUndefined);
}

TEST(UnicodeTest, WhitespaceIsUnicodeWhiteSpace) {
  for (uint32_t c : {0x9u, 0xAu, 0xDu, 0x20u, 0x85u, 0xA0u, 0x2003u, 0x3000u}) {
    EXPECT_TRUE(unicode::GetCharInfo(c).is_whitespace()) << c;
  }
  // Python's isspace() also counts U+001C..U+001F; White_Space, and the tokenizers, do not.
  for (uint32_t c : {0x1Cu, 0x1Fu, 0x200Bu, 0x61u})
    EXPECT_FALSE(unicode::GetCharInfo(c).is_whitespace()) << c;
}

}  // namespace
TEST(Utf8Test, FirstInvalidFindsTheFirstByteOutsideAValidSequence) {
  EXPECT_EQ(utf8::FirstInvalid(""), -1);
  EXPECT_EQ(utf8::FirstInvalid("caf\xc3\xa9 \xf0\x9f\x98\x80"), -1);
  EXPECT_EQ(utf8::FirstInvalid("ab\xff"), 2);
  EXPECT_EQ(utf8::FirstInvalid("a\xc0\xaf"), 1);          // overlong "/"
  EXPECT_EQ(utf8::FirstInvalid("\xed\xa0\x80"), 0);      // surrogate
  EXPECT_EQ(utf8::FirstInvalid("\xf4\x90\x80\x80"), 0);  // past U+10FFFF
  EXPECT_EQ(utf8::FirstInvalid("ok\xe2\x82"), 2);         // unfinished at the end
}

}  // namespace memoria
