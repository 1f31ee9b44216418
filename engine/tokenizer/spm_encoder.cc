#include "engine/tokenizer/spm_encoder.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <queue>

#include "engine/tokenizer/utf8.h"

namespace memoria {
namespace {

// A run of text [offset, offset + size); merged symbols absorb their right neighbour, so a
// symbol's start never moves and a merged-away symbol has size 0.
struct Symbol {
  int prev;
  int next;
  size_t offset;
  size_t size;
};

struct Bigram {
  float score;
  int left;
  int right;
  size_t size;  // left.size + right.size when queued; a mismatch later means it is stale
};

// Highest score first; on equal scores the leftmost pair.
struct BigramOrder {
  bool operator()(const Bigram& a, const Bigram& b) const {
    return a.score < b.score || (a.score == b.score && a.left > b.left);
  }
};

// Up to four bytes of each character, zero-padded; characters are at most four bytes.
uint64_t PairFingerprint(std::string_view left, std::string_view right) {
  uint32_t l = 0, r = 0;
  std::memcpy(&l, left.data(), std::min<size_t>(left.size(), 4));
  std::memcpy(&r, right.data(), std::min<size_t>(right.size(), 4));
  return (static_cast<uint64_t>(l) << 32) | r;
}

// The characters of `text` as llama.cpp's tokenizers cut them (by lead byte, clipped at the end).
template <typename Fn>
void ForEachChar(std::string_view text, Fn fn) {
  for (size_t offset = 0; offset < text.size();) {
    const size_t size = std::min(utf8::SequenceLength(text[offset]), text.size() - offset);
    fn(offset, size);
    offset += size;
  }
}

TokenId ByteToken(const Vocab& vocab, uint8_t byte) {
  char hex[8];
  std::snprintf(hex, sizeof(hex), "<0x%02X>", byte);
  TokenId id = vocab.Find(hex);
  if (id < 0) id = vocab.Find(std::string_view(reinterpret_cast<const char*>(&byte), 1));
  return id < 0 ? vocab.unknown : id;
}

}  // namespace

SpmEncoder::SpmEncoder(const Vocab& vocab) : vocab_(vocab) {
  for (TokenId id = 0; id < vocab.size(); ++id) {
    const std::string_view text = vocab.Text(id);
    std::string_view prev;
    ForEachChar(text, [&](size_t offset, size_t size) {
      const std::string_view c = text.substr(offset, size);
      if (!prev.empty()) joined_pairs_.insert(PairFingerprint(prev, c));
      prev = c;
    });
  }
}

bool SpmEncoder::MayJoin(std::string_view left, std::string_view right) const {
  return joined_pairs_.contains(PairFingerprint(left, right));
}

void SpmEncoder::Encode(std::string_view text, std::vector<TokenId>* out) const {
  // Symbols, linked within parts; part_starts holds each part's first symbol.
  std::vector<Symbol> symbols;
  std::vector<int> part_starts;
  symbols.reserve(text.size());
  ForEachChar(text, [&](size_t offset, size_t size) {
    const int index = static_cast<int>(symbols.size());
    const bool cut = index == 0 || !MayJoin(text.substr(symbols.back().offset, symbols.back().size),
                                            text.substr(offset, size));
    if (cut) {
      part_starts.push_back(index);
    } else {
      symbols.back().next = index;
    }
    symbols.push_back({cut ? -1 : index - 1, -1, offset, size});
  });

  std::priority_queue<Bigram, std::vector<Bigram>, BigramOrder> queue;
  auto try_add = [&](int left, int right) {
    if (left < 0 || right < 0) return;
    const size_t size = symbols[left].size + symbols[right].size;
    const TokenId id = vocab_.Find(text.substr(symbols[left].offset, size));
    if (id < 0) return;
    queue.push({vocab_.scores[id], left, right, size});
  };

  for (const int start : part_starts) {
    for (int i = start; symbols[i].next != -1; i = symbols[i].next) try_add(i, symbols[i].next);
    while (!queue.empty()) {
      const Bigram bigram = queue.top();
      queue.pop();
      Symbol& left = symbols[bigram.left];
      Symbol& right = symbols[bigram.right];
      if (left.size == 0 || right.size == 0 || left.size + right.size != bigram.size) continue;
      left.size += right.size;
      right.size = 0;
      left.next = right.next;
      if (right.next >= 0) symbols[right.next].prev = bigram.left;
      try_add(left.prev, bigram.left);
      try_add(bigram.left, left.next);
    }

    // Every merged symbol is a token (merges only make tokens); a symbol that is not is a
    // single character outside the vocabulary, spelled out in byte tokens.
    for (int i = start; i != -1; i = symbols[i].next) {
      const std::string_view piece = text.substr(symbols[i].offset, symbols[i].size);
      const TokenId id = vocab_.Find(piece);
      if (id >= 0) {
        out->push_back(id);
        continue;
      }
      for (const char c : piece) out->push_back(ByteToken(vocab_, static_cast<uint8_t>(c)));
    }
  }
}

}  // namespace memoria
