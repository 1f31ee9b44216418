#include "engine/tokenizer/bpe_encoder.h"

#include <array>
#include <queue>
#include <utility>

#include "absl/hash/hash.h"
#include "absl/strings/string_view.h"
#include "engine/tokenizer/utf8.h"

namespace memoria {
namespace {

// GPT-2's byte-to-unicode alphabet: printable Latin-1 bytes stand for themselves, the other 68
// bytes (controls, space, DEL, NBSP, soft hyphen...) for U+0100 upwards in byte order, so every
// byte is a visible character and byte strings survive text-based merge tables.
struct ByteAlphabet {
  std::array<std::string, 256> byte_to_text;
  absl::flat_hash_map<uint32_t, uint8_t> codepoint_to_byte;

  ByteAlphabet() {
    uint32_t next_extra = 256;
    for (uint32_t b = 0; b < 256; ++b) {
      const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
      const uint32_t cpt = printable ? b : next_extra++;
      utf8::Append(cpt, &byte_to_text[b]);
      codepoint_to_byte[cpt] = static_cast<uint8_t>(b);
    }
  }
};

const ByteAlphabet& Alphabet() {
  static const ByteAlphabet* alphabet = new ByteAlphabet();
  return *alphabet;
}

struct Symbol {
  int prev;
  int next;
  uint32_t offset;  // into the byte-level word; never moves (merges absorb the right neighbour)
  uint32_t size;    // 0 once merged away
};

struct Bigram {
  int32_t rank;
  int left;
  int right;
  uint32_t left_size;  // sizes when queued: a change since means the pair is stale
  uint32_t right_size;
};

// Lowest rank first; on equal ranks the leftmost pair.
struct BigramOrder {
  bool operator()(const Bigram& a, const Bigram& b) const {
    return a.rank > b.rank || (a.rank == b.rank && a.left > b.left);
  }
};

}  // namespace

BpeEncoder::BpeEncoder(const Vocab& vocab, const std::vector<std::string>& merges,
                       PreTokenizer pre_tokenizer, bool ignore_merges)
    : vocab_(vocab), pre_tokenizer_(std::move(pre_tokenizer)), ignore_merges_(ignore_merges) {
  size_t total = 0;
  for (const std::string& merge : merges) total += merge.size();
  merges_text_.reserve(total);
  merges_.reserve(merges.size());
  ranks_.reserve(merges.size());
  for (const std::string& merge : merges) {
    const int32_t rank = static_cast<int32_t>(merges_.size());
    // The separator is the first space after the first character, so a left half may be a space.
    const size_t space = merge.find(' ', 1);
    if (space == std::string::npos) {
      merges_.push_back({0, 0, 0});  // malformed: keeps later ranks aligned, matches nothing
      continue;
    }
    const std::string_view left = std::string_view(merge).substr(0, space);
    const std::string_view right = std::string_view(merge).substr(space + 1);
    merges_.push_back({static_cast<uint32_t>(merges_text_.size()),
                       static_cast<uint32_t>(left.size()), static_cast<uint32_t>(right.size())});
    merges_text_.append(merge);
    const auto [it, inserted] = ranks_.emplace(PairHash(left, right), rank);
    if (!inserted && !MergeIs(it->second, left, right)) {
      collisions_.emplace(CollisionKey(left, right), rank);  // an earlier equal rule wins
    }
  }
}

uint64_t BpeEncoder::PairHash(std::string_view left, std::string_view right) {
  return absl::Hash<std::pair<absl::string_view, absl::string_view>>()(
      {absl::string_view(left.data(), left.size()), absl::string_view(right.data(), right.size())});
}

std::string BpeEncoder::CollisionKey(std::string_view left, std::string_view right) {
  std::string key = std::to_string(left.size());
  key.push_back(':');
  key.append(left);
  key.append(right);
  return key;
}

bool BpeEncoder::MergeIs(int32_t rank, std::string_view left, std::string_view right) const {
  const Merge& m = merges_[rank];
  return m.left_size == left.size() && m.right_size == right.size() &&
         std::string_view(merges_text_).substr(m.offset, m.left_size) == left &&
         std::string_view(merges_text_).substr(m.offset + m.left_size + 1, m.right_size) == right;
}

int32_t BpeEncoder::Rank(std::string_view left, std::string_view right) const {
  const auto it = ranks_.find(PairHash(left, right));
  if (it == ranks_.end()) return -1;
  if (MergeIs(it->second, left, right)) return it->second;
  if (collisions_.empty()) return -1;
  const auto collision = collisions_.find(CollisionKey(left, right));
  return collision == collisions_.end() ? -1 : collision->second;
}

void BpeEncoder::Encode(std::string_view text, std::vector<TokenId>* out) const {
  const ByteAlphabet& alphabet = Alphabet();
  std::string word;
  for (const std::string& raw : pre_tokenizer_.Split(text)) {
    word.clear();
    for (const char c : raw) word += alphabet.byte_to_text[static_cast<uint8_t>(c)];
    EncodeWord(word, out);
  }
}

void BpeEncoder::EncodeWord(std::string_view text, std::vector<TokenId>* out) const {
  if (ignore_merges_) {
    const TokenId id = vocab_.Find(text);
    if (id >= 0) {
      out->push_back(id);
      return;
    }
  }

  std::vector<Symbol> symbols;
  symbols.reserve(text.size());
  for (uint32_t offset = 0; offset < text.size();) {
    const uint32_t size =
        static_cast<uint32_t>(std::min(utf8::SequenceLength(text[offset]), text.size() - offset));
    const int index = static_cast<int>(symbols.size());
    symbols.push_back({index - 1, offset + size == text.size() ? -1 : index + 1, offset, size});
    offset += size;
  }

  std::priority_queue<Bigram, std::vector<Bigram>, BigramOrder> queue;
  auto try_add = [&](int left, int right) {
    if (left < 0 || right < 0) return;
    const Symbol& l = symbols[left];
    const Symbol& r = symbols[right];
    const int32_t rank = Rank(text.substr(l.offset, l.size), text.substr(r.offset, r.size));
    if (rank >= 0) queue.push({rank, left, right, l.size, r.size});
  };
  for (int i = 1; i < static_cast<int>(symbols.size()); ++i) try_add(i - 1, i);

  while (!queue.empty()) {
    const Bigram bigram = queue.top();
    queue.pop();
    Symbol& left = symbols[bigram.left];
    Symbol& right = symbols[bigram.right];
    if (left.size != bigram.left_size || right.size != bigram.right_size) continue;
    left.size += right.size;
    right.size = 0;
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = bigram.left;
    try_add(left.prev, bigram.left);
    try_add(bigram.left, left.next);
  }

  for (int i = symbols.empty() ? -1 : 0; i != -1; i = symbols[i].next) {
    const std::string_view piece = text.substr(symbols[i].offset, symbols[i].size);
    const TokenId id = vocab_.Find(piece);
    if (id >= 0) {
      out->push_back(id);
      continue;
    }
    // Not a token (a vocabulary without all 256 byte symbols): llama.cpp looks up each byte of
    // the byte-level spelling on its own and drops the ones that are not tokens either.
    for (const char c : piece) {
      const TokenId byte_id = vocab_.Find(std::string_view(&c, 1));
      if (byte_id >= 0) out->push_back(byte_id);
    }
  }
}

std::string BpeEncoder::DecodeByteLevel(std::string_view token_text) {
  const ByteAlphabet& alphabet = Alphabet();
  std::string bytes;
  for (const uint32_t cpt : utf8::DecodeLenient(token_text)) {
    const auto it = alphabet.codepoint_to_byte.find(cpt);
    if (it != alphabet.codepoint_to_byte.end()) {
      bytes.push_back(static_cast<char>(it->second));
    } else {
      utf8::Append(cpt, &bytes);
    }
  }
  return bytes;
}

}  // namespace memoria
