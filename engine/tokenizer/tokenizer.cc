#include "engine/tokenizer/tokenizer.h"

#include <algorithm>
#include <cstdlib>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "engine/tokenizer/bpe_encoder.h"
#include "engine/tokenizer/pre_tokenizer.h"
#include "engine/tokenizer/spm_encoder.h"
#include "engine/tokenizer/vocab.h"

namespace memoria {
namespace {

constexpr std::string_view kSpmSpace = "\xE2\x96\x81";  // U+2581, SentencePiece's space

// Texts of tokens that end a turn or the text in some model family. GGUF files name only EOS
// (and sometimes EOT) by id, so, like llama.cpp, these are recognised by their text; they are
// treated as control tokens even when a file marks them normal.
constexpr std::string_view kEndOfGenerationTexts[] = {
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<|flush|>",
    "<|calls|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "</s>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "[EOS]",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<eos>",
    "<turn|>",
    "<|tool_response>",
    "<\357\275\234end\342\226\201of\342\226\201sentence\357\275\234>",  // DeepSeek
    "[e~[",
};

// Pre-tokenizer names under which llama.cpp runs the Llama 3 tokenizer: a word that is a token
// as a whole skips merging, and BOS is added unless the file says otherwise.
constexpr std::string_view kLlama3PreNames[] = {
    "llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral",
};

bool IsLlama3Pre(std::string_view pre) {
  return std::find(std::begin(kLlama3PreNames), std::end(kLlama3PreNames), pre) !=
         std::end(kLlama3PreNames);
}

// The byte a "<0xXX>" byte-fallback token stands for.
char ByteOfToken(const std::string& text) {
  return static_cast<char>(std::strtol(text.substr(3, 2).c_str(), nullptr, 16));
}

std::string ReplaceAll(std::string_view text, std::string_view from, std::string_view to) {
  std::string out;
  out.reserve(text.size());
  size_t start = 0;
  size_t match;
  while ((match = text.find(from, start)) != std::string_view::npos) {
    out.append(text.substr(start, match - start));
    out.append(to);
    start = match + from.size();
  }
  out.append(text.substr(start));
  return out;
}

template <typename T>
absl::StatusOr<T> Optional(absl::StatusOr<T> value, T fallback) {
  if (value.ok()) return value;
  if (absl::IsNotFound(value.status())) return fallback;
  return value.status();
}

// The tokenizer behind every GGUF vocabulary: SentencePiece ("llama") or byte-level BPE ("gpt2")
// encoding of the text between special tokens.
class VocabTokenizer final : public Tokenizer {
 public:
  static absl::StatusOr<std::unique_ptr<Tokenizer>> Load(const GgufFile& file);

  std::vector<TokenId> Encode(std::string_view text, bool add_special,
                              bool parse_special) const override;
  std::string TokenToPiece(TokenId id, bool special) const override;

 private:
  // A stretch of the input: raw text [offset, offset + size), or a special token.
  struct Fragment {
    size_t offset;
    size_t size;
    TokenId token;  // -1 for raw text
  };

  absl::Status Init(const GgufFile& file);
  absl::Status ReadTokens(const GgufFile& file);
  absl::Status ReadSpecialIds(const GgufFile& file, bool llama3);
  void FindEndOfGeneration();
  std::vector<Fragment> Partition(std::string_view text, bool parse_special) const;
  void EncodeText(std::string_view text, bool after_special, std::vector<TokenId>* out) const;

  bool spm_ = false;  // "llama" model; else "gpt2"
  Vocab vocab_;
  std::unique_ptr<SpmEncoder> spm_encoder_;  // when spm_
  std::unique_ptr<BpeEncoder> bpe_;          // otherwise
  // Control, user-defined and unknown tokens, longest text first: the order in which their texts
  // are cut out of the input.
  std::vector<TokenId> special_tokens_;
};

absl::StatusOr<std::unique_ptr<Tokenizer>> VocabTokenizer::Load(const GgufFile& file) {
  std::unique_ptr<VocabTokenizer> tokenizer(new VocabTokenizer());
  absl::Status status = tokenizer->Init(file);
  if (!status.ok()) return status;
  return tokenizer;
}

absl::Status VocabTokenizer::Init(const GgufFile& file) {
  absl::StatusOr<std::string> model = file.GetString("tokenizer.ggml.model");
  if (!model.ok()) return model.status();
  if (*model == "llama") {
    spm_ = true;
  } else if (*model != "gpt2") {
    return absl::InvalidArgumentError(
        absl::StrCat("unsupported tokenizer model (tokenizer.ggml.model) '", *model, "'"));
  }
  absl::StatusOr<std::string> pre =
      Optional<std::string>(file.GetString("tokenizer.ggml.pre"), "default");
  if (!pre.ok()) return pre.status();

  if (absl::Status s = ReadTokens(file); !s.ok()) return s;
  const bool llama3 = IsLlama3Pre(*pre);
  if (absl::Status s = ReadSpecialIds(file, llama3); !s.ok()) return s;
  FindEndOfGeneration();

  for (TokenId id = 0; id < vocab_size(); ++id) {
    const TokenType type = vocab_.types[id];
    if (type == TokenType::kControl || type == TokenType::kUserDefined ||
        type == TokenType::kUnknown) {
      special_tokens_.push_back(id);
    }
  }
  std::stable_sort(special_tokens_.begin(), special_tokens_.end(),
                   [&](TokenId a, TokenId b) { return texts_[a].size() > texts_[b].size(); });

  if (spm_) {
    spm_encoder_ = std::make_unique<SpmEncoder>(vocab_);
  } else {
    absl::StatusOr<const std::vector<std::string>*> merges =
        file.GetStringArray("tokenizer.ggml.merges");
    if (!merges.ok()) return merges.status();
    absl::StatusOr<PreTokenizer> pre_tokenizer = PreTokenizer::ForName(*pre);
    if (!pre_tokenizer.ok()) return pre_tokenizer.status();
    bpe_ = std::make_unique<BpeEncoder>(vocab_, **merges, *std::move(pre_tokenizer), llama3);
  }
  return absl::OkStatus();
}

absl::Status VocabTokenizer::ReadTokens(const GgufFile& file) {
  absl::StatusOr<const std::vector<std::string>*> tokens =
      file.GetStringArray("tokenizer.ggml.tokens");
  if (!tokens.ok()) return tokens.status();
  const size_t n = (*tokens)->size();
  if (n == 0 || n > static_cast<size_t>(INT32_MAX)) {
    return absl::InvalidArgumentError(absl::StrCat("tokenizer.ggml.tokens has ", n, " tokens"));
  }

  absl::StatusOr<std::vector<float>> scores =
      Optional(file.GetFloatArray("tokenizer.ggml.scores"), std::vector<float>(n, 0.0f));
  if (!scores.ok()) return scores.status();
  absl::StatusOr<std::vector<int32_t>> types =
      Optional(file.GetInt32Array("tokenizer.ggml.token_type"),
               std::vector<int32_t>(n, static_cast<int32_t>(TokenType::kNormal)));
  if (!types.ok()) return types.status();
  if (scores->size() < n || types->size() < n) {
    return absl::InvalidArgumentError(absl::StrCat("tokenizer: ", n, " tokens but ", scores->size(),
                                                   " scores and ", types->size(), " token types"));
  }

  texts_.reserve(n);
  vocab_.types.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    const std::string& text = (**tokens)[i];
    // An empty text could never be matched; llama.cpp renames it so ids stay aligned.
    texts_.push_back(text.empty() ? absl::StrCat("[EMPTY_", i, "]") : text);
    const int32_t type = (*types)[i];
    vocab_.types.push_back(type >= 0 && type <= static_cast<int32_t>(TokenType::kByte)
                               ? static_cast<TokenType>(type)
                               : TokenType::kUndefined);
  }
  scores->resize(n);
  vocab_.scores = *std::move(scores);
  vocab_.texts = &texts_;
  vocab_.ids.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    const auto [it, inserted] = vocab_.ids.emplace(texts_[i], static_cast<TokenId>(i));
    if (!inserted) {
      return absl::InvalidArgumentError(absl::StrCat("tokenizer: duplicate token '", texts_[i],
                                                     "' (ids ", it->second, " and ", i, ")"));
    }
  }
  return absl::OkStatus();
}

absl::Status VocabTokenizer::ReadSpecialIds(const GgufFile& file, bool llama3) {
  // Defaults are llama.cpp's for SentencePiece; a byte-level vocabulary has none (llama.cpp's
  // placeholder 11 is an ordinary token there).
  const TokenId n = vocab_size();
  auto read_id = [&](std::string_view key, TokenId fallback) -> absl::StatusOr<TokenId> {
    if (fallback >= n) fallback = -1;
    absl::StatusOr<uint64_t> id = file.GetUint(key);
    if (absl::IsNotFound(id.status())) return fallback;
    if (!id.ok()) return id.status();
    return *id < static_cast<uint64_t>(n) ? static_cast<TokenId>(*id) : fallback;
  };
  auto read_flag = [&](std::string_view key, bool fallback) -> absl::StatusOr<bool> {
    return Optional(file.GetBool(key), fallback);
  };

  absl::StatusOr<TokenId> bos = read_id("tokenizer.ggml.bos_token_id", spm_ ? 1 : -1);
  absl::StatusOr<TokenId> eos = read_id("tokenizer.ggml.eos_token_id", spm_ ? 2 : -1);
  absl::StatusOr<TokenId> unknown = read_id("tokenizer.ggml.unknown_token_id", spm_ ? 0 : -1);
  absl::StatusOr<TokenId> eot = read_id("tokenizer.ggml.eot_token_id", -1);
  absl::StatusOr<TokenId> eom = read_id("tokenizer.ggml.eom_token_id", -1);
  for (const auto* id : {&bos, &eos, &unknown, &eot, &eom}) {
    if (!id->ok()) return id->status();
  }
  bos_ = *bos;
  eos_ = *eos;
  vocab_.unknown = *unknown;
  if (*eot >= 0) end_of_generation_.push_back(*eot);
  if (*eom >= 0) end_of_generation_.push_back(*eom);

  absl::StatusOr<bool> add_bos = read_flag("tokenizer.ggml.add_bos_token", spm_ || llama3);
  absl::StatusOr<bool> add_eos = read_flag("tokenizer.ggml.add_eos_token", false);
  absl::StatusOr<bool> add_space_prefix = read_flag("tokenizer.ggml.add_space_prefix", spm_);
  for (const auto* flag : {&add_bos, &add_eos, &add_space_prefix}) {
    if (!flag->ok()) return flag->status();
  }
  add_bos_ = *add_bos;
  add_eos_ = *add_eos;
  add_space_prefix_ = *add_space_prefix;
  if (add_bos_ && bos_ < 0) {
    return absl::InvalidArgumentError(
        "tokenizer.ggml.add_bos_token is set but there is no BOS token");
  }
  if (add_eos_ && eos_ < 0) {
    return absl::InvalidArgumentError(
        "tokenizer.ggml.add_eos_token is set but there is no EOS token");
  }
  return absl::OkStatus();
}

void VocabTokenizer::FindEndOfGeneration() {
  for (const std::string_view text : kEndOfGenerationTexts) {
    const TokenId id = vocab_.Find(text);
    if (id < 0) continue;
    end_of_generation_.push_back(id);
    vocab_.types[id] = TokenType::kControl;
  }
  if (eos_ >= 0) end_of_generation_.push_back(eos_);
  // In the gpt-oss ("harmony") format <|end|> closes a message but not the turn, which ends with
  // <|return|> or <|call|>; there, as in llama.cpp, it is an ordinary special token.
  const TokenId end = vocab_.Find("<|end|>");
  if (end >= 0 && (vocab_.Find("<|return|>") >= 0 || vocab_.Find("<|flush|>") >= 0) &&
      (vocab_.Find("<|call|>") >= 0 || vocab_.Find("<|calls|>") >= 0)) {
    end_of_generation_.erase(std::remove(end_of_generation_.begin(), end_of_generation_.end(), end),
                             end_of_generation_.end());
    vocab_.types[end] = TokenType::kUserDefined;
  }
  std::sort(end_of_generation_.begin(), end_of_generation_.end());
  end_of_generation_.erase(std::unique(end_of_generation_.begin(), end_of_generation_.end()),
                           end_of_generation_.end());
}

// Cuts the texts of special tokens out of the input, one token at a time in special_tokens_
// order, each everywhere it occurs in the raw text left by the tokens before it (llama.cpp's
// tokenizer_st_partition). Control and unknown tokens only when parse_special; user-defined ones
// always, as Hugging Face tokenizers do.
std::vector<VocabTokenizer::Fragment> VocabTokenizer::Partition(std::string_view text,
                                                                bool parse_special) const {
  std::vector<Fragment> fragments;
  if (text.empty()) return fragments;
  fragments.push_back({0, text.size(), -1});
  std::vector<Fragment> next;
  for (const TokenId id : special_tokens_) {
    if (!parse_special && vocab_.types[id] != TokenType::kUserDefined) continue;
    const std::string& special = texts_[id];
    bool found = false;
    next.clear();
    for (const Fragment& fragment : fragments) {
      if (fragment.token >= 0) {
        next.push_back(fragment);
        continue;
      }
      const std::string_view raw = text.substr(fragment.offset, fragment.size);
      size_t start = 0;
      size_t match;
      while ((match = raw.find(special, start)) != std::string_view::npos) {
        found = true;
        if (match > start) next.push_back({fragment.offset + start, match - start, -1});
        next.push_back({0, 0, id});
        start = match + special.size();
      }
      if (start < raw.size()) next.push_back({fragment.offset + start, raw.size() - start, -1});
    }
    if (found) std::swap(fragments, next);
  }
  return fragments;
}

void VocabTokenizer::EncodeText(std::string_view text, bool after_special,
                                std::vector<TokenId>* out) const {
  if (!spm_) {
    bpe_->Encode(text, out);
    return;
  }
  std::string escaped = ReplaceAll(text, " ", kSpmSpace);
  if (add_space_prefix_ && after_special) escaped.insert(0, kSpmSpace);
  spm_encoder_->Encode(escaped, out);
}

std::vector<TokenId> VocabTokenizer::Encode(std::string_view text, bool add_special,
                                            bool parse_special) const {
  std::vector<TokenId> out;
  if (add_special && add_bos_) out.push_back(bos_);
  bool after_special = true;  // the start of the input counts as following a special token
  for (const Fragment& fragment : Partition(text, parse_special)) {
    if (fragment.token >= 0) {
      out.push_back(fragment.token);
      after_special = true;
    } else {
      EncodeText(text.substr(fragment.offset, fragment.size), after_special, &out);
      after_special = false;
    }
  }
  if (add_special && add_eos_) out.push_back(eos_);
  return out;
}

std::string VocabTokenizer::TokenToPiece(TokenId id, bool special) const {
  if (id < 0 || id >= vocab_size()) return "";
  const std::string& text = texts_[id];
  switch (vocab_.types[id]) {
    case TokenType::kControl:
    case TokenType::kUnknown:
      return special ? text : "";
    case TokenType::kUserDefined:
      return text;
    case TokenType::kNormal:
      return spm_ ? ReplaceAll(text, kSpmSpace, " ") : BpeEncoder::DecodeByteLevel(text);
    case TokenType::kByte:
      return text.size() == 6 ? std::string(1, ByteOfToken(text)) : "";
    case TokenType::kUnused:
    case TokenType::kUndefined:
      return "";
  }
  return "";
}

}  // namespace

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::FromGguf(const GgufFile& file) {
  return VocabTokenizer::Load(file);
}

std::string Tokenizer::Decode(const std::vector<TokenId>& ids, bool special) const {
  std::string text;
  bool strip_space = add_space_prefix_;
  for (const TokenId id : ids) {
    std::string piece = TokenToPiece(id, special);
    if (strip_space && id != bos_) {
      if (!piece.empty() && piece[0] == ' ') piece.erase(0, 1);
      strip_space = false;
    }
    text += piece;
  }
  return text;
}

bool Tokenizer::IsEndOfGeneration(TokenId id) const {
  return std::find(end_of_generation_.begin(), end_of_generation_.end(), id) !=
         end_of_generation_.end();
}

// A linear scan: it is called for a handful of names at setup, and a scan works for any
// subclass without an index that all of them would have to keep.
TokenId Tokenizer::FindToken(std::string_view text) const {
  const auto it = std::find(texts_.begin(), texts_.end(), text);
  return it == texts_.end() ? -1 : static_cast<TokenId>(it - texts_.begin());
}

}  // namespace memoria
