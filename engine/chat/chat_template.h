#ifndef MEMORIA_ENGINE_CHAT_CHAT_TEMPLATE_H_
#define MEMORIA_ENGINE_CHAT_CHAT_TEMPLATE_H_

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace memoria {

enum class ChatTemplateKind { kChatML, kLlama3, kLlama2, kMistral };

struct ChatMessage {
  std::string role;  // "system", "user" or "assistant"
  std::string content;
};

// Recognizes the family of a tokenizer.chat_template (Jinja source) by its markers; an unknown
// template gives InvalidArgument naming what was looked for.
absl::StatusOr<ChatTemplateKind> DetectChatTemplate(std::string_view jinja);
const char* ChatTemplateName(ChatTemplateKind kind);

// Renders messages as the family's template does (special-token text included, BOS not: the
// tokenizer adds it). add_generation_prompt appends the assistant header. Bad roles or order give
// InvalidArgument.
absl::StatusOr<std::string> ApplyChatTemplate(ChatTemplateKind kind,
                                              const std::vector<ChatMessage>& messages,
                                              bool add_generation_prompt);

}  // namespace memoria

#endif  // MEMORIA_ENGINE_CHAT_CHAT_TEMPLATE_H_
