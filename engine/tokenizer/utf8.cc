#include "engine/tokenizer/utf8.h"

namespace memoria::utf8 {
namespace {

bool IsContinuation(uint8_t b) { return (b & 0xC0) == 0x80; }

// Strict (RFC 3629) validation of the sequence starting at text[i]. Returns its length when it
// is complete and valid, 0 when it is a valid but unfinished prefix that runs into the end of
// `text`, and -1 when the lead byte (or any byte after it) makes it invalid: then only the lead
// byte is to be replaced and scanning resumes after it.
int StrictSequence(std::string_view text, size_t i) {
  const uint8_t b0 = text[i];
  if (b0 < 0x80) return 1;
  int len;
  uint8_t lo = 0x80, hi = 0xBF;  // allowed range of the second byte
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    len = 2;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    len = 3;
    if (b0 == 0xE0) lo = 0xA0;  // overlong
    if (b0 == 0xED) hi = 0x9F;  // surrogates
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    len = 4;
    if (b0 == 0xF0) lo = 0x90;  // overlong
    if (b0 == 0xF4) hi = 0x8F;  // past U+10FFFF
  } else {
    return -1;
  }
  for (int k = 1; k < len; ++k) {
    if (i + k >= text.size()) return 0;
    const uint8_t b = text[i + k];
    if (k == 1 ? (b < lo || b > hi) : !IsContinuation(b)) return -1;
  }
  return len;
}

void AppendReplacement(std::string* out) { Append(kReplacementChar, out); }

}  // namespace

std::vector<uint32_t> DecodeLenient(std::string_view text) {
  std::vector<uint32_t> cpts;
  cpts.reserve(text.size());
  size_t i = 0;
  const size_t n = text.size();
  while (i < n) {
    const uint8_t b0 = text[i];
    if (b0 < 0x80) {
      cpts.push_back(b0);
      ++i;
      continue;
    }
    size_t len = 0;
    uint32_t cpt = 0;
    if ((b0 & 0xE0) == 0xC0) {
      len = 2;
      cpt = b0 & 0x1F;
    } else if ((b0 & 0xF0) == 0xE0) {
      len = 3;
      cpt = b0 & 0x0F;
    } else if ((b0 & 0xF8) == 0xF0) {
      len = 4;
      cpt = b0 & 0x07;
    }
    bool ok = len != 0 && i + len <= n;
    for (size_t k = 1; ok && k < len; ++k) {
      const uint8_t b = text[i + k];
      ok = IsContinuation(b);
      cpt = (cpt << 6) | (b & 0x3F);
    }
    if (!ok || cpt > 0x10FFFF) {
      cpts.push_back(kReplacementChar);
      ++i;
      continue;
    }
    cpts.push_back(cpt);
    i += len;
  }
  return cpts;
}

void Append(uint32_t cpt, std::string* out) {
  if (cpt < 0x80) {
    out->push_back(static_cast<char>(cpt));
  } else if (cpt < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cpt >> 6)));
    out->push_back(static_cast<char>(0x80 | (cpt & 0x3F)));
  } else if (cpt < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cpt >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cpt >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cpt & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cpt >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cpt >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cpt >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cpt & 0x3F)));
  }
}

std::string TakeComplete(std::string* pending) {
  std::string out;
  const std::string_view text(*pending);
  size_t i = 0;
  while (i < text.size()) {
    const int len = StrictSequence(text, i);
    if (len == 0) break;  // unfinished: keep it for the next call
    if (len < 0) {
      AppendReplacement(&out);
      ++i;
      continue;
    }
    out.append(text.substr(i, len));
    i += len;
  }
  pending->erase(0, i);
  return out;
}

std::string Sanitize(std::string_view bytes) {
  std::string out;
  size_t i = 0;
  while (i < bytes.size()) {
    const int len = StrictSequence(bytes, i);
    if (len <= 0) {
      AppendReplacement(&out);
      if (len == 0) break;  // an unfinished tail is one replacement character
      ++i;
      continue;
    }
    out.append(bytes.substr(i, len));
    i += len;
  }
  return out;
}

int64_t FirstInvalid(std::string_view text) {
  for (size_t i = 0; i < text.size();) {
    const int len = StrictSequence(text, i);
    if (len <= 0) return static_cast<int64_t>(i);
    i += len;
  }
  return -1;
}

}  // namespace memoria::utf8
