#include "engine/chat/chat_template.h"

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace memoria {

namespace {

// How much of an unrecognized template the error message quotes.
constexpr size_t kQuotedTemplateBytes = 60;

// Markers in the Jinja source, checked in this order: ChatML and Llama 3 templates can mention
// other families' markers in comments or tool prompts, [INST] is the least specific.
constexpr char kChatMLMarker[] = "<|im_start|>";
constexpr char kLlama3Marker[] = "<|start_header_id|>";
constexpr char kInstMarker[] = "[INST]";
constexpr char kLlama2SystemMarker[] = "<<SYS>>";

// The text of the BOS and EOS tokens of the Llama 2 / Mistral SentencePiece vocabularies; the
// tokenizer turns them back into the special tokens when parsing special text.
constexpr std::string_view kBos = "<s>";
constexpr std::string_view kEos = "</s>";

bool Contains(std::string_view text, std::string_view what) {
  return text.find(what) != std::string_view::npos;
}

// The first `max_bytes` of text, cut back to a UTF-8 character boundary.
std::string_view Prefix(std::string_view text, size_t max_bytes) {
  if (text.size() <= max_bytes) return text;
  size_t end = max_bytes;
  while (end > 0 && (static_cast<unsigned char>(text[end]) & 0xC0) == 0x80) --end;
  return text.substr(0, end);
}

// Jinja's trim filter and Python's str.strip() (ASCII whitespace only).
std::string_view Strip(std::string_view s) {
  constexpr std::string_view kSpace = " \t\n\r\f\v";
  const size_t begin = s.find_first_not_of(kSpace);
  if (begin == std::string_view::npos) return {};
  return s.substr(begin, s.find_last_not_of(kSpace) - begin + 1);
}

absl::Status CheckRoles(const std::vector<ChatMessage>& messages) {
  if (messages.empty()) return absl::InvalidArgumentError("chat has no messages");
  for (const ChatMessage& m : messages) {
    if (m.role != "system" && m.role != "user" && m.role != "assistant") {
      return absl::InvalidArgumentError(absl::StrCat("unsupported chat role \"", m.role,
                                                     "\" (expected system, user or assistant)"));
    }
  }
  return absl::OkStatus();
}

// The [INST] families take an optional leading system message, then strictly alternating user and
// assistant turns starting with user; their templates raise an exception otherwise.
absl::Status CheckAlternation(const std::vector<ChatMessage>& messages, size_t first) {
  if (first == messages.size()) {
    return absl::InvalidArgumentError("chat has a system message but no user message");
  }
  for (size_t i = first; i < messages.size(); ++i) {
    const char* expected = (i - first) % 2 == 0 ? "user" : "assistant";
    if (messages[i].role != expected) {
      return absl::InvalidArgumentError(
          absl::StrCat("chat message ", i, " has role \"", messages[i].role, "\" but ", expected,
                       " was expected: after an optional first system message, roles must "
                       "alternate user/assistant"));
    }
  }
  return absl::OkStatus();
}

// <|im_start|>role\ncontent<|im_end|>\n per message (as Qwen2.5 and OpenHermes render it, without
// Qwen's default system prompt, which belongs to that model rather than the format).
std::string RenderChatML(const std::vector<ChatMessage>& messages, bool add_generation_prompt) {
  std::string out;
  for (const ChatMessage& m : messages) {
    absl::StrAppend(&out, "<|im_start|>", m.role, "\n", m.content, "<|im_end|>\n");
  }
  if (add_generation_prompt) out += "<|im_start|>assistant\n";
  return out;
}

// Meta-Llama-3-8B-Instruct: a header per message, content trimmed, each turn ended by <|eot_id|>.
std::string RenderLlama3(const std::vector<ChatMessage>& messages, bool add_generation_prompt) {
  std::string out;
  for (const ChatMessage& m : messages) {
    absl::StrAppend(&out, "<|start_header_id|>", m.role, "<|end_header_id|>\n\n");
    out.append(Strip(m.content));
    out += "<|eot_id|>";
  }
  if (add_generation_prompt) out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
  return out;
}

// Llama-2-7b-chat: "<s>[INST] user [/INST] assistant </s>" per exchange, the system message
// wrapped in <<SYS>> at the start of the first user turn, contents stripped. The prompt already
// ends where the assistant speaks, so there is no separate generation prompt.
std::string RenderLlama2(const std::vector<ChatMessage>& messages, size_t first,
                         std::string_view system) {
  std::string out;
  for (size_t i = first; i < messages.size(); ++i) {
    const ChatMessage& m = messages[i];
    if (m.role == "user") {
      std::string content;
      if (i == first && first > 0) {
        content.append("<<SYS>>\n").append(system).append("\n<</SYS>>\n\n");
      }
      content += m.content;
      // The first BOS is the tokenizer's to add.
      if (i != first) out.append(kBos);
      out.append("[INST] ").append(Strip(content)).append(" [/INST]");
    } else {
      out.append(" ").append(Strip(m.content)).append(" ").append(kEos);
    }
  }
  return out;
}

// Mistral-7B-Instruct-v0.2: "[INST] user [/INST]assistant</s>" with contents verbatim. That
// template has no system role; like Mistral's later templates, the system message is put before
// the first user message, separated by a blank line.
std::string RenderMistral(const std::vector<ChatMessage>& messages, size_t first,
                          std::string_view system) {
  std::string out;
  for (size_t i = first; i < messages.size(); ++i) {
    const ChatMessage& m = messages[i];
    if (m.role == "user") {
      out += "[INST] ";
      if (i == first && first > 0) out.append(system).append("\n\n");
      out.append(m.content).append(" [/INST]");
    } else {
      out.append(m.content).append(kEos);
    }
  }
  return out;
}

}  // namespace

absl::StatusOr<ChatTemplateKind> DetectChatTemplate(std::string_view jinja) {
  if (Contains(jinja, kChatMLMarker)) return ChatTemplateKind::kChatML;
  if (Contains(jinja, kLlama3Marker)) return ChatTemplateKind::kLlama3;
  if (Contains(jinja, kInstMarker)) {
    return Contains(jinja, kLlama2SystemMarker) ? ChatTemplateKind::kLlama2
                                                : ChatTemplateKind::kMistral;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "unsupported chat template: \"", std::string(Prefix(jinja, kQuotedTemplateBytes)),
      "\" (none of ", kChatMLMarker, ", ", kLlama3Marker, ", ", kInstMarker, " found)"));
}

const char* ChatTemplateName(ChatTemplateKind kind) {
  switch (kind) {
    case ChatTemplateKind::kChatML:
      return "chatml";
    case ChatTemplateKind::kLlama3:
      return "llama3";
    case ChatTemplateKind::kLlama2:
      return "llama2";
    case ChatTemplateKind::kMistral:
      return "mistral";
  }
  return "unknown";
}

absl::StatusOr<std::string> ApplyChatTemplate(ChatTemplateKind kind,
                                              const std::vector<ChatMessage>& messages,
                                              bool add_generation_prompt) {
  if (absl::Status s = CheckRoles(messages); !s.ok()) return s;
  switch (kind) {
    case ChatTemplateKind::kChatML:
      return RenderChatML(messages, add_generation_prompt);
    case ChatTemplateKind::kLlama3:
      return RenderLlama3(messages, add_generation_prompt);
    case ChatTemplateKind::kLlama2:
    case ChatTemplateKind::kMistral:
      break;
  }
  const size_t first = messages[0].role == "system" ? 1 : 0;
  if (absl::Status s = CheckAlternation(messages, first); !s.ok()) return s;
  const std::string_view system = first > 0 ? std::string_view(messages[0].content) : "";
  return kind == ChatTemplateKind::kLlama2 ? RenderLlama2(messages, first, system)
                                           : RenderMistral(messages, first, system);
}

}  // namespace memoria
