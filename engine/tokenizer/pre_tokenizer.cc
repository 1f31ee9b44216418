#include "engine/tokenizer/pre_tokenizer.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "engine/tokenizer/unicode.h"
#include "engine/tokenizer/utf8.h"

namespace memoria {

enum class PreTokenizer::Rule : uint8_t {
  // 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
  kGpt2,
  // (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|
  // \s*[\r\n]+|\s+(?!\S)|\s+
  kLlama3,
  // As kLlama3 with \p{N} (one digit) in place of \p{N}{1,3}.
  kQwen2,
  kPunctuationRun,        // [\p{P}\$\+<=>\^~\|]+
  kPunctuationRunFalcon,  // [\p{P}\$\+<=>\^~\|`]+
  kNumberRun,             // \p{N}+
  kNumber,                // \p{N}
  kAsciiDigitTriple,      // [0-9][0-9][0-9]
  kNewline,               // [\r\n]
  kTrailingSpace,         // \s+$
  kSpaceLetters,          // \s?\p{L}+
  kSpacePunctuation,      // \s?\p{P}+
  kDeepseekLetters,       // \s?[A-Za-zµÀ-ÖØ-ö...]+ (cased letters of alphabetic scripts)
  kDeepseekPunctuation,   // \s?[!-/:-~！-／：-～‘-‟　-。]+
  kCjk,                   // [一-龥ࠀ-一가-퟿]+
};

namespace {

using Rule = PreTokenizer::Rule;
using unicode::CharInfo;
using unicode::GetCharInfo;

struct Range {
  uint32_t lo, hi;
};

// The character class of DeepSeek LLM's letter regex, as code point ranges.
constexpr Range kDeepseekLetterRanges[] = {
    {0x41, 0x5A},       {0x61, 0x7A},       {0xB5, 0xB5},       {0xC0, 0xD6},
    {0xD8, 0xF6},       {0xF8, 0x1BA},      {0x1BC, 0x1BF},     {0x1C4, 0x293},
    {0x295, 0x2AF},     {0x370, 0x373},     {0x376, 0x377},     {0x37B, 0x37D},
    {0x37F, 0x37F},     {0x386, 0x386},     {0x388, 0x38A},     {0x38C, 0x38C},
    {0x38E, 0x3A1},     {0x3A3, 0x3F5},     {0x3F7, 0x481},     {0x48A, 0x52F},
    {0x531, 0x556},     {0x10A0, 0x10C5},   {0x13A0, 0x13F5},   {0x13F8, 0x13FD},
    {0x1C90, 0x1CBA},   {0x1CBD, 0x1CBF},   {0x1D00, 0x1D2B},   {0x1D6B, 0x1D77},
    {0x1D79, 0x1D9A},   {0x1E00, 0x1F15},   {0x1F18, 0x1F1D},   {0x1F20, 0x1F45},
    {0x1F48, 0x1F4D},   {0x1F50, 0x1F57},   {0x1F59, 0x1F59},   {0x1F5B, 0x1F5B},
    {0x1F5D, 0x1F5D},   {0x1F5F, 0x1F7D},   {0x1F80, 0x1FB4},   {0x1FB6, 0x1FBC},
    {0x1FBE, 0x1FBE},   {0x1FC2, 0x1FC4},   {0x1FC6, 0x1FCC},   {0x1FD0, 0x1FD3},
    {0x1FD6, 0x1FDB},   {0x1FE0, 0x1FEC},   {0x1FF2, 0x1FF4},   {0x1FF6, 0x1FFC},
    {0x2102, 0x2102},   {0x2107, 0x2107},   {0x210A, 0x2113},   {0x2115, 0x2115},
    {0x2119, 0x211D},   {0x2124, 0x2124},   {0x2126, 0x2126},   {0x2128, 0x2128},
    {0x212A, 0x212D},   {0x212F, 0x2134},   {0x2139, 0x2139},   {0x213C, 0x213F},
    {0x2145, 0x2149},   {0x214E, 0x214E},   {0x2183, 0x2184},   {0x2C00, 0x2C7B},
    {0x2C7E, 0x2CE4},   {0x2CEB, 0x2CEE},   {0x2CF2, 0x2CF3},   {0xA640, 0xA66D},
    {0xA680, 0xA69B},   {0xA722, 0xA76F},   {0xA771, 0xA787},   {0xA78B, 0xA78E},
    {0xAB70, 0xABBF},   {0xFB00, 0xFB06},   {0xFB13, 0xFB17},   {0xFF21, 0xFF3A},
    {0xFF41, 0xFF5A},   {0x10400, 0x1044F}, {0x104B0, 0x104D3}, {0x104D8, 0x104FB},
    {0x10C80, 0x10CB2}, {0x10CC0, 0x10CF2}, {0x118A0, 0x118DF}, {0x1E900, 0x1E943},
};
constexpr Range kDeepseekPunctuationRanges[] = {
    {0x21, 0x2F},     {0x3A, 0x7E},     {0x2018, 0x201F},
    {0x3000, 0x3002}, {0xFF01, 0xFF0F}, {0xFF1A, 0xFF5E},
};
constexpr Range kCjkRanges[] = {{0x800, 0x4E00}, {0x4E00, 0x9FA5}, {0xAC00, 0xD7FF}};

template <size_t N>
bool InRanges(const Range (&ranges)[N], uint32_t c) {
  for (const Range& r : ranges) {
    if (c < r.lo) return false;  // ranges are sorted
    if (c <= r.hi) return true;
  }
  return false;
}

// The piece of text a pass is splitting: code points [begin, end) of `cpts`. Positions outside
// the piece read as "no character", which matches nothing, like the end of the input does for a
// regex.
class Piece {
 public:
  Piece(const std::vector<uint32_t>& cpts, size_t begin, size_t end)
      : cpts_(cpts.data()), begin_(begin), end_(end) {}

  size_t begin() const { return begin_; }
  size_t end() const { return end_; }
  bool In(size_t i) const { return i < end_; }
  uint32_t At(size_t i) const { return cpts_[i]; }
  CharInfo Info(size_t i) const { return GetCharInfo(cpts_[i]); }

  bool Space(size_t i) const { return In(i) && Info(i).is_whitespace(); }
  bool Letter(size_t i) const { return In(i) && Info(i).is_letter(); }
  bool Number(size_t i) const { return In(i) && Info(i).is_number(); }
  bool Punctuation(size_t i) const { return In(i) && Info(i).is_punctuation(); }
  // [^\s\p{L}\p{N}]
  bool Other(size_t i) const {
    if (!In(i)) return false;
    const CharInfo info = Info(i);
    return !info.is_whitespace() && !info.is_letter() && !info.is_number();
  }
  bool CrOrLf(size_t i) const { return In(i) && (cpts_[i] == '\r' || cpts_[i] == '\n'); }
  bool AsciiDigit(size_t i) const { return In(i) && cpts_[i] >= '0' && cpts_[i] <= '9'; }

  // The code point as llama.cpp's std::wregex path sees it: non-ASCII whitespace is replaced by
  // U+000B beforehand, so classes never match it literally.
  uint32_t RegexChar(size_t i) const {
    const uint32_t c = cpts_[i];
    return c > 0x7F && GetCharInfo(c).is_whitespace() ? 0x0B : c;
  }

  // First position at or after i where `pred` fails.
  template <typename Pred>
  size_t Skip(size_t i, Pred pred) const {
    while (pred(i)) ++i;
    return i;
  }

 private:
  const uint32_t* cpts_;
  size_t begin_;
  size_t end_;
};

// Length of 's|'t|'re|'ve|'m|'ll|'d at p (ASCII case-folded when `fold_case`), or 0.
size_t MatchContraction(const Piece& s, size_t p, bool fold_case) {
  if (s.At(p) != '\'' || !s.In(p + 1)) return 0;
  auto lower = [&](size_t i) -> uint32_t {
    const uint32_t c = s.At(i);
    return fold_case && c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c;
  };
  const uint32_t c1 = lower(p + 1);
  if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd') return 2;
  if (!s.In(p + 2)) return 0;
  const uint32_t c2 = lower(p + 2);
  if ((c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l')) return 3;
  return 0;
}

// \s+(?!\S)|\s+ at p, given that s.Space(p): a run of whitespace gives back its last character
// when a non-space follows, so that character can lead the next word.
size_t MatchSpaces(const Piece& s, size_t p) {
  const size_t n = s.Skip(p, [&](size_t i) { return s.Space(i); }) - p;
  return n > 1 && s.In(p + n) ? n - 1 : n;
}

size_t MatchGpt2(const Piece& s, size_t p) {
  if (size_t n = MatchContraction(s, p, /*fold_case=*/false)) return n;
  // " ?X+" for X in letters, numbers, others: an optional leading space, then a run.
  const size_t q = s.At(p) == ' ' ? p + 1 : p;
  if (s.Letter(q)) return s.Skip(q, [&](size_t i) { return s.Letter(i); }) - p;
  if (s.Number(q)) return s.Skip(q, [&](size_t i) { return s.Number(i); }) - p;
  if (s.Other(q)) return s.Skip(q, [&](size_t i) { return s.Other(i); }) - p;
  if (s.Space(p)) return MatchSpaces(s, p);
  return 1;
}

size_t MatchLlama3(const Piece& s, size_t p, size_t max_digits) {
  if (size_t n = MatchContraction(s, p, /*fold_case=*/true)) return n;
  // [^\r\n\p{L}\p{N}]?\p{L}+
  if (!s.CrOrLf(p) && !s.Number(p) && (s.Letter(p) || s.Letter(p + 1))) {
    return s.Skip(p + 1, [&](size_t i) { return s.Letter(i); }) - p;
  }
  // \p{N}{1,max_digits}
  if (s.Number(p)) {
    return std::min(max_digits, s.Skip(p, [&](size_t i) { return s.Number(i); }) - p);
  }
  //  ?[^\s\p{L}\p{N}]+[\r\n]*
  const size_t q = s.At(p) == ' ' ? p + 1 : p;
  if (s.Other(q)) {
    const size_t r = s.Skip(q, [&](size_t i) { return s.Other(i); });
    return s.Skip(r, [&](size_t i) { return s.CrOrLf(i); }) - p;
  }
  if (s.Space(p)) {
    // \s*[\r\n]+ : the whitespace run up to and including its last line break.
    size_t last_break = 0;
    size_t i = p;
    for (; s.Space(i); ++i) {
      if (s.CrOrLf(i)) last_break = i + 1;
    }
    if (last_break != 0) return last_break - p;
    return MatchSpaces(s, p);
  }
  return 1;
}

// Runs of a class, or \s? followed by a run of a class (the leading space only when the class
// follows it: ECMAScript backtracks \s? to empty otherwise).
template <typename Pred>
size_t MatchRun(const Piece& s, size_t p, Pred in_class) {
  return s.Skip(p, in_class) - p;
}
template <typename Pred>
size_t MatchSpaceThenRun(const Piece& s, size_t p, Pred in_class) {
  if (s.Space(p) && in_class(p + 1)) return 1 + MatchRun(s, p + 1, in_class);
  return MatchRun(s, p, in_class);
}

// [\p{P}\$\+<=>\^~\|] (plus ` for Falcon): punctuation and the ASCII math/currency symbols.
bool PunctuationOrAsciiSymbol(const Piece& s, size_t i, bool backtick) {
  if (!s.In(i)) return false;
  const uint32_t c = s.At(i);
  if (c == '$' || c == '+' || c == '<' || c == '=' || c == '>' || c == '^' || c == '~' ||
      c == '|') {
    return true;
  }
  if (c == '`') return backtick;
  return s.Info(i).is_punctuation();
}

// Length of the match of `rule` at p (p inside the piece), 0 if none.
size_t Match(Rule rule, const Piece& s, size_t p) {
  switch (rule) {
    case Rule::kGpt2:
      return MatchGpt2(s, p);
    case Rule::kLlama3:
      return MatchLlama3(s, p, 3);
    case Rule::kQwen2:
      return MatchLlama3(s, p, 1);
    case Rule::kPunctuationRun:
    case Rule::kPunctuationRunFalcon: {
      const bool backtick = rule == Rule::kPunctuationRunFalcon;
      return MatchRun(s, p, [&](size_t i) { return PunctuationOrAsciiSymbol(s, i, backtick); });
    }
    case Rule::kNumberRun:
      return MatchRun(s, p, [&](size_t i) { return s.Number(i); });
    case Rule::kNumber:
      return s.Number(p) ? 1 : 0;
    case Rule::kAsciiDigitTriple:
      return s.AsciiDigit(p) && s.AsciiDigit(p + 1) && s.AsciiDigit(p + 2) ? 3 : 0;
    case Rule::kNewline:
      return s.CrOrLf(p) ? 1 : 0;
    case Rule::kSpaceLetters:
      return MatchSpaceThenRun(s, p, [&](size_t i) { return s.Letter(i); });
    case Rule::kSpacePunctuation:
      return MatchSpaceThenRun(s, p, [&](size_t i) { return s.Punctuation(i); });
    case Rule::kDeepseekLetters:
      return MatchSpaceThenRun(s, p, [&](size_t i) {
        return s.In(i) && InRanges(kDeepseekLetterRanges, s.RegexChar(i));
      });
    case Rule::kDeepseekPunctuation:
      return MatchSpaceThenRun(s, p, [&](size_t i) {
        return s.In(i) && InRanges(kDeepseekPunctuationRanges, s.RegexChar(i));
      });
    case Rule::kCjk:
      return MatchRun(s, p,
                      [&](size_t i) { return s.In(i) && InRanges(kCjkRanges, s.RegexChar(i)); });
    case Rule::kTrailingSpace:
      break;  // handled by SplitPiece: it is anchored at the end
  }
  return 0;
}

// Appends to *ends the end offsets of the pieces `rule` splits s into: its matches, leftmost
// first, and the gaps between them.
void SplitPiece(Rule rule, const Piece& s, std::vector<size_t>* ends) {
  if (rule == Rule::kTrailingSpace) {
    size_t start = s.end();
    while (start > s.begin() && s.Space(start - 1)) --start;
    if (start > s.begin()) ends->push_back(start);
    ends->push_back(s.end());
    return;
  }
  size_t gap_begin = s.begin();
  size_t p = s.begin();
  while (p < s.end()) {
    const size_t n = Match(rule, s, p);
    if (n == 0) {
      ++p;
      continue;
    }
    if (p > gap_begin) ends->push_back(p);
    p += n;
    ends->push_back(p);
    gap_begin = p;
  }
  if (s.end() > gap_begin) ends->push_back(s.end());
}

struct NamedRules {
  std::vector<std::string_view> names;
  std::vector<Rule> rules;
};

const std::vector<NamedRules>& Table() {
  static const auto* table = new std::vector<NamedRules>{
      {{"default"},
       {Rule::kPunctuationRun, Rule::kGpt2, Rule::kNumberRun, Rule::kAsciiDigitTriple}},
      {{"llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "dbrx", "smaug-bpe"},
       {Rule::kLlama3}},
      {{"gpt-2", "phi-2", "jina-es", "jina-de", "gigachat", "jina-v2-es", "jina-v2-de", "mpt",
        "olmo", "jais", "exaone4", "roberta-bpe", "jina-v1-en", "jina-v2-code"},
       {Rule::kGpt2}},
      {{"qwen2", "deepseek-r1-qwen", "stablelm2", "megrez", "hunyuan"}, {Rule::kQwen2}},
      {{"deepseek-llm"},
       {Rule::kNewline, Rule::kDeepseekLetters, Rule::kDeepseekPunctuation, Rule::kTrailingSpace,
        Rule::kCjk, Rule::kNumberRun}},
      {{"deepseek-coder"},
       {Rule::kNewline, Rule::kSpaceLetters, Rule::kSpacePunctuation, Rule::kCjk, Rule::kNumber}},
      {{"falcon"}, {Rule::kPunctuationRunFalcon, Rule::kGpt2, Rule::kAsciiDigitTriple}},
      {{"starcoder", "refact", "command-r", "smollm", "codeshell", "exaone", "minerva-7b"},
       {Rule::kNumber, Rule::kGpt2}},
  };
  return *table;
}

}  // namespace

absl::StatusOr<PreTokenizer> PreTokenizer::ForName(std::string_view name) {
  for (const NamedRules& entry : Table()) {
    if (std::find(entry.names.begin(), entry.names.end(), name) != entry.names.end()) {
      return PreTokenizer(entry.rules);
    }
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unsupported pre-tokenizer (tokenizer.ggml.pre) '", std::string(name), "'"));
}

std::vector<std::string> PreTokenizer::Split(std::string_view text) const {
  const std::vector<uint32_t> cpts = utf8::DecodeLenient(text);
  std::vector<size_t> ends = {cpts.size()};
  std::vector<size_t> next;
  for (const Rule rule : rules_) {
    next.clear();
    next.reserve(ends.size() * 2);
    size_t begin = 0;
    for (const size_t end : ends) {
      if (end > begin) SplitPiece(rule, Piece(cpts, begin, end), &next);
      begin = end;
    }
    std::swap(ends, next);
  }
  std::vector<std::string> words;
  words.reserve(ends.size());
  size_t begin = 0;
  for (const size_t end : ends) {
    if (end == begin) continue;
    std::string& word = words.emplace_back();
    for (size_t i = begin; i < end; ++i) utf8::Append(cpts[i], &word);
    begin = end;
  }
  return words;
}

}  // namespace memoria
