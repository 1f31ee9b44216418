#include "server/scheduler/prompt.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "engine/tokenizer/utf8.h"
#include "engine/util/status_macros.h"

namespace memoria {

absl::Status CheckUtf8(std::string_view what, std::string_view text) {
  const int64_t bad = utf8::FirstInvalid(text);
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
