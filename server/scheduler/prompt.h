#ifndef MEMORIA_SERVER_SCHEDULER_PROMPT_H_
#define MEMORIA_SERVER_SCHEDULER_PROMPT_H_

#include <cstdint>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/chat/chat_template.h"
#include "engine/model/model.h"

namespace memoria {

// Prompt token ids from what a client sent, shared by every front end. Each gives
// INVALID_ARGUMENT naming the problem: invalid UTF-8, an empty prompt, out-of-vocabulary ids, a
// model without a chat template, bad roles.
// OK when `text` is well-formed UTF-8; else INVALID_ARGUMENT naming `what` and the byte offset.
absl::Status CheckUtf8(std::string_view what, std::string_view text);

absl::StatusOr<std::vector<int32_t>> PromptFromText(const Model& model, std::string_view text);
absl::StatusOr<std::vector<int32_t>> PromptFromIds(const Model& model, std::vector<int32_t> ids);
absl::StatusOr<std::vector<int32_t>> PromptFromChat(const Model& model,
                                                    const std::vector<ChatMessage>& messages);

}  // namespace memoria

#endif  // MEMORIA_SERVER_SCHEDULER_PROMPT_H_
