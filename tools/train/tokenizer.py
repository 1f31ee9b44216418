"""Byte-level BPE owned by the trainer: learned from the generated corpus, exported to GGUF as
tokenizer.ggml.model = "gpt2" with tokenizer.ggml.pre = "gpt-2", and encoding exactly as the
engine's BpeEncoder does (engine/tokenizer/), which the agreement test checks.

The corpus is ASCII, so the GPT-2 pre-tokenizer regex is mirrored with ASCII classes:
  's|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+
"""

import collections
import heapq
import re

# The engine's "gpt-2" pre-tokenizer (pre_tokenizer.cc, Rule::kGpt2) restricted to ASCII text.
_PRE_TOKENIZER = re.compile(
    r"'s|'t|'re|'ve|'m|'ll|'d| ?[A-Za-z]+| ?[0-9]+| ?[^\sA-Za-z0-9]+|\s+(?!\S)|\s+")

BOS_TEXT = "<|bos|>"
EOS_TEXT = "<|eos|>"
TOKEN_TYPE_NORMAL = 1
TOKEN_TYPE_CONTROL = 3


def _byte_alphabet():
    """GPT-2's byte-to-unicode map: printable Latin-1 bytes stand for themselves, the others for
    U+0100 upwards in byte order (the same table as bpe_encoder.cc)."""
    table, extra = {}, 256
    for b in range(256):
        printable = 0x21 <= b <= 0x7E or 0xA1 <= b <= 0xAC or b >= 0xAE
        if printable:
            table[b] = chr(b)
        else:
            table[b] = chr(extra)
            extra += 1
    return table


BYTE_TO_TEXT = _byte_alphabet()
TEXT_TO_BYTE = {v: k for k, v in BYTE_TO_TEXT.items()}


def pre_tokenize(text):
    return _PRE_TOKENIZER.findall(text)


def _spell(word):
    return "".join(BYTE_TO_TEXT[b] for b in word.encode("utf-8"))


def learn_merges(texts, n_merges):
    """Classic BPE over word counts: repeatedly merges the most frequent adjacent pair (ties: the
    lexicographically smallest pair, so the result is deterministic). Incremental pair counts keep
    a few thousand merges over a large corpus to seconds."""
    word_counts = collections.Counter()
    for text in texts:
        word_counts.update(pre_tokenize(text))
    words = [list(_spell(w)) for w in word_counts]
    counts = list(word_counts.values())
    pair_counts = collections.Counter()
    pair_words = collections.defaultdict(set)
    for i, symbols in enumerate(words):
        for pair in zip(symbols, symbols[1:]):
            pair_counts[pair] += counts[i]
            pair_words[pair].add(i)

    # Max-heap of (count, pair) with lazy invalidation: an entry whose count is stale is skipped.
    # Ties go to the smallest pair, so the result is deterministic.
    heap = [(-c, p) for p, c in pair_counts.items()]
    heapq.heapify(heap)
    merges = []
    while len(merges) < n_merges and heap:
        neg, best = heapq.heappop(heap)
        if pair_counts.get(best, 0) != -neg:
            continue
        if -neg < 2:
            break
        merges.append(best)
        merged = best[0] + best[1]
        touched = set()
        for i in list(pair_words[best]):
            symbols = words[i]
            for pair in zip(symbols, symbols[1:]):
                pair_counts[pair] -= counts[i]
                if pair_counts[pair] <= 0:
                    del pair_counts[pair]
                pair_words[pair].discard(i)
                touched.add(pair)
            out, j = [], 0
            while j < len(symbols):
                if j + 1 < len(symbols) and symbols[j] == best[0] and symbols[j + 1] == best[1]:
                    out.append(merged)
                    j += 2
                else:
                    out.append(symbols[j])
                    j += 1
            words[i] = out
            for pair in zip(out, out[1:]):
                pair_counts[pair] += counts[i]
                pair_words[pair].add(i)
                touched.add(pair)
        pair_words.pop(best, None)
        for pair in touched:
            if pair in pair_counts:
                heapq.heappush(heap, (-pair_counts[pair], pair))
    return merges


class Tokenizer:
    """Vocabulary: the 256 byte tokens, one token per merge, then BOS and EOS (control)."""

    def __init__(self, merges):
        self.merges = [tuple(m) for m in merges]
        self.tokens = [BYTE_TO_TEXT[b] for b in range(256)]
        self.tokens += [a + b for a, b in self.merges]
        self.bos = len(self.tokens)
        self.eos = self.bos + 1
        self.tokens += [BOS_TEXT, EOS_TEXT]
        self.ids = {t: i for i, t in enumerate(self.tokens)}
        if len(self.ids) != len(self.tokens):
            raise ValueError("tokenizer: duplicate token texts")
        self.ranks = {m: r for r, m in enumerate(self.merges)}
        self._cache = {}

    @property
    def vocab_size(self):
        return len(self.tokens)

    def token_types(self):
        return [TOKEN_TYPE_NORMAL] * self.bos + [TOKEN_TYPE_CONTROL] * 2

    def _encode_word(self, word):
        ids = self._cache.get(word)
        if ids is not None:
            return ids
        symbols = list(_spell(word))
        while len(symbols) > 1:
            # the lowest-ranked pair, leftmost on ties; all its occurrences merge left to right
            best, best_rank = None, None
            for pair in zip(symbols, symbols[1:]):
                r = self.ranks.get(pair)
                if r is not None and (best_rank is None or r < best_rank):
                    best, best_rank = pair, r
            if best is None:
                break
            out, j = [], 0
            while j < len(symbols):
                if j + 1 < len(symbols) and symbols[j] == best[0] and symbols[j + 1] == best[1]:
                    out.append(symbols[j] + symbols[j + 1])
                    j += 2
                else:
                    out.append(symbols[j])
                    j += 1
            symbols = out
        ids = [self.ids[s] for s in symbols]
        self._cache[word] = ids
        return ids

    def encode(self, text, add_bos=False):
        ids = [self.bos] if add_bos else []
        for word in pre_tokenize(text):
            ids.extend(self._encode_word(word))
        return ids

    def encode_with_spans(self, text):
        """Token ids and, per token, the [start, end) character range of the pre-tokenizer word
        it came from (BPE never merges across words)."""
        ids, spans = [], []
        for m in _PRE_TOKENIZER.finditer(text):
            word_ids = self._encode_word(m.group())
            ids.extend(word_ids)
            spans.extend([m.span()] * len(word_ids))
        return ids, spans

    def decode(self, ids):
        data = bytearray()
        for i in ids:
            if i >= self.bos:
                continue
            data.extend(TEXT_TO_BYTE[c] for c in self.tokens[i])
        return data.decode("utf-8", errors="replace")
