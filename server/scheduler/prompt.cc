#include "server/scheduler/prompt.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "engine/util/status_macros.h"

namespace memoria {
namespace {

// Index of the first byte that does not belong to a well-formed UTF-8 sequence, or -1.
int64_t FirstInvalidUtf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    int len = 0;
    uint32_t cp = 0;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      len = 2, cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3, cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4, cp = c & 0x07;
    } else {
      return static_cast<int64_t>(i);
    }
    if (i + len > s.size()) return static_cast<int64_t>(i);
    for (int k = 1; k < len; ++k) {
      const auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return static_cast<int64_t>(i);
      cp = (cp << 6) | (cc & 0x3F);
    }
    // Overlong forms, surrogates and values past U+10FFFF are not UTF-8.
    static constexpr uint32_t kMin[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < kMin[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
      return static_cast<int64_t>(i);
    }
    i += len;
  }
  return -1;
}

}  // namespace

absl::Status CheckUtf8(std::string_view what, std::string_view text) {
  const int64_t bad = FirstInvalidUtf8(text);
  if (bad >= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(std::string(what), " is not valid UTF-8 (byte ", bad, ")"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<int32_t>> PromptFromText(const Model& model, std::string_view text) {
  MEMORIA_RETURN_IF_ERROR(CheckUtf8("prompt", text));
  if (text.empty()) return absl::InvalidArgumentError("prompt is empty");
  std::vector<int32_t> ids = model.tokenizer().Encode(text, /*add_special=*/true,
                                                      /*parse_special=*/false);
  if (ids.empty()) return absl::InvalidArgumentError("prompt has no tokens");
  return ids;
}

absl::StatusOr<std::vector<int32_t>> PromptFromIds(const Model& model, std::vector<int32_t> ids) {
  if (ids.empty()) return absl::InvalidArgumentError("token_ids is empty");
  const int32_t n_vocab = model.config().n_vocab;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] < 0 || ids[i] >= n_vocab) {
      return absl::InvalidArgumentError(absl::StrCat("token_ids[", i, "] = ", ids[i],
                                                     " is outside the vocabulary [0, ", n_vocab,
                                                     ")"));
    }
  }
  return ids;
}

absl::StatusOr<std::vector<int32_t>> PromptFromChat(const Model& model,
                                                    const std::vector<ChatMessage>& messages) {
  if (messages.empty()) return absl::InvalidArgumentError("chat has no messages");
  for (size_t i = 0; i < messages.size(); ++i) {
    MEMORIA_RETURN_IF_ERROR(CheckUtf8(absl::StrCat("messages[", i, "].content"),
                                      messages[i].content));
    MEMORIA_RETURN_IF_ERROR(CheckUtf8(absl::StrCat("messages[", i, "].role"), messages[i].role));
  }
  absl::StatusOr<ChatTemplateKind> kind = model.chat_template();
  if (!kind.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("chat: the model has no usable chat template (",
                                                   kind.status().message(), "); send a prompt"));
  }
  absl::StatusOr<std::string> text = ApplyChatTemplate(*kind, messages, true);
  if (!text.ok()) return absl::InvalidArgumentError(text.status().message());
  // The template writes its special tokens as text; they must become special ids.
  std::vector<int32_t> ids = model.tokenizer().Encode(*text, /*add_special=*/true,
                                                      /*parse_special=*/true);
  if (ids.empty()) return absl::InvalidArgumentError("chat renders to no tokens");
  return ids;
}

}  // namespace memoria
