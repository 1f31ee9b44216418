#include "engine/chat/chat_template.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace memoria {
namespace {

using ::testing::HasSubstr;

// Real tokenizer.chat_template strings, shortened where marked.

// Qwen/Qwen2.5-7B-Instruct, with the tool-calling branches removed.
constexpr char kQwen25Template[] = R"({%- if messages[0]['role'] == 'system' %}
    {{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}
{%- else %}
    {{- '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n' }}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>' + '\n' }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
{%- endif %}
)";

// teknium/OpenHermes-2.5-Mistral-7B (complete).
constexpr char kOpenHermesTemplate[] =
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\\n' }}{% endif %}";

// meta-llama/Meta-Llama-3-8B-Instruct (complete).
constexpr char kLlama3Template[] =
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
    "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | "
    "trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}"
    "{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}";

// meta-llama/Llama-2-7b-chat-hf (complete).
constexpr char kLlama2Template[] =
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set "
    "system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set "
    "system_message = false %}{% endif %}{% for message in loop_messages %}{% if "
    "(message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation "
    "roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if loop.index0 == 0 "
    "and system_message != false %}{% set content = '<<SYS>>\\\\n' + system_message + "
    "'\\\\n<</SYS>>\\\\n\\\\n' + message['content'] %}{% else %}{% set content = "
    "message['content'] %}{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + "
    "content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' '  + "
    "content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}";

// mistralai/Mistral-7B-Instruct-v0.2 (complete, the original version).
constexpr char kMistralTemplate[] =
    "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != "
    "(loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate "
    "user/assistant/user/assistant/...') }}{% endif %}{% if message['role'] == 'user' %}{{ "
    "'[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ "
    "message['content'] + eos_token}}{% else %}{{ raise_exception('Only user and assistant roles "
    "are supported!') }}{% endif %}{% endfor %}";

// google/gemma-7b-it (shortened): a family we do not render.
constexpr char kGemmaTemplate[] =
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not "
    "supported') }}{% endif %}{% for message in messages %}{{ '<start_of_turn>' + role + '\\n' + "
    "message['content'] | trim + '<end_of_turn>\\n' }}{% endfor %}";

const std::vector<ChatMessage> kSystemUser = {{"system", "You are terse."}, {"user", "Hi!"}};
const std::vector<ChatMessage> kMultiTurn = {
    {"user", "What is 2+2?"}, {"assistant", "4"}, {"user", "And 3+3?"}};

std::string Apply(ChatTemplateKind kind, const std::vector<ChatMessage>& messages,
                  bool add_generation_prompt) {
  absl::StatusOr<std::string> text = ApplyChatTemplate(kind, messages, add_generation_prompt);
  EXPECT_TRUE(text.ok()) << text.status();
  return text.ok() ? *text : "";
}

TEST(DetectChatTemplateTest, RecognizesRealTemplates) {
  struct Case {
    const char* name;
    const char* jinja;
    ChatTemplateKind kind;
  };
  const Case cases[] = {
      {"Qwen2.5", kQwen25Template, ChatTemplateKind::kChatML},
      {"OpenHermes", kOpenHermesTemplate, ChatTemplateKind::kChatML},
      {"Llama 3", kLlama3Template, ChatTemplateKind::kLlama3},
      {"Llama 2", kLlama2Template, ChatTemplateKind::kLlama2},
      {"Mistral", kMistralTemplate, ChatTemplateKind::kMistral},
  };
  for (const Case& c : cases) {
    absl::StatusOr<ChatTemplateKind> kind = DetectChatTemplate(c.jinja);
    ASSERT_TRUE(kind.ok()) << c.name << ": " << kind.status();
    EXPECT_EQ(*kind, c.kind) << c.name;
  }
}

TEST(DetectChatTemplateTest, UnknownTemplateQuotesItsStart) {
  absl::StatusOr<ChatTemplateKind> kind = DetectChatTemplate(kGemmaTemplate);
  ASSERT_EQ(kind.status().code(), absl::StatusCode::kInvalidArgument);
  const std::string message(kind.status().message());
  EXPECT_THAT(message, HasSubstr("unsupported chat template"));
  EXPECT_THAT(message, HasSubstr(std::string(kGemmaTemplate).substr(0, 60)));
  EXPECT_THAT(message, ::testing::Not(HasSubstr(std::string(kGemmaTemplate).substr(0, 61))));

  EXPECT_EQ(DetectChatTemplate("").status().code(), absl::StatusCode::kInvalidArgument);
  // The quote never ends inside a UTF-8 character.
  const std::string xs(41, 'x');  // byte 60 is then the middle of the 10th "é"
  kind = DetectChatTemplate(xs + "ééééééééééééé");
  EXPECT_THAT(std::string(kind.status().message()), HasSubstr(xs + "ééééééééé\""));
}

TEST(ChatTemplateNameTest, NamesEachKind) {
  EXPECT_STREQ(ChatTemplateName(ChatTemplateKind::kChatML), "chatml");
  EXPECT_STREQ(ChatTemplateName(ChatTemplateKind::kLlama3), "llama3");
  EXPECT_STREQ(ChatTemplateName(ChatTemplateKind::kLlama2), "llama2");
  EXPECT_STREQ(ChatTemplateName(ChatTemplateKind::kMistral), "mistral");
}

TEST(ApplyChatTemplateTest, ChatML) {
  EXPECT_EQ(Apply(ChatTemplateKind::kChatML, kSystemUser, true),
            "<|im_start|>system\nYou are terse.<|im_end|>\n"
            "<|im_start|>user\nHi!<|im_end|>\n"
            "<|im_start|>assistant\n");
  EXPECT_EQ(Apply(ChatTemplateKind::kChatML, kMultiTurn, false),
            "<|im_start|>user\nWhat is 2+2?<|im_end|>\n"
            "<|im_start|>assistant\n4<|im_end|>\n"
            "<|im_start|>user\nAnd 3+3?<|im_end|>\n");
  // Content is verbatim: no trimming.
  EXPECT_EQ(Apply(ChatTemplateKind::kChatML, {{"user", " x \n"}}, false),
            "<|im_start|>user\n x \n<|im_end|>\n");
}

TEST(ApplyChatTemplateTest, Llama3) {
  EXPECT_EQ(Apply(ChatTemplateKind::kLlama3, kSystemUser, true),
            "<|start_header_id|>system<|end_header_id|>\n\nYou are terse.<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
  EXPECT_EQ(Apply(ChatTemplateKind::kLlama3, kMultiTurn, false),
            "<|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n4<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nAnd 3+3?<|eot_id|>");
  // The template trims content.
  EXPECT_EQ(Apply(ChatTemplateKind::kLlama3, {{"user", "\n  hello there \t\n"}}, false),
            "<|start_header_id|>user<|end_header_id|>\n\nhello there<|eot_id|>");
}

TEST(ApplyChatTemplateTest, Llama2) {
  // The generation prompt changes nothing: the prompt already ends at " [/INST]".
  for (bool add_generation_prompt : {false, true}) {
    EXPECT_EQ(Apply(ChatTemplateKind::kLlama2, kSystemUser, add_generation_prompt),
              "[INST] <<SYS>>\nYou are terse.\n<</SYS>>\n\nHi! [/INST]");
  }
  EXPECT_EQ(Apply(ChatTemplateKind::kLlama2, kMultiTurn, true),
            "[INST] What is 2+2? [/INST] 4 </s><s>[INST] And 3+3? [/INST]");
  // System only in the first turn; contents stripped.
  EXPECT_EQ(Apply(ChatTemplateKind::kLlama2,
                  {{"system", "Be kind."},
                   {"user", "hello "},
                   {"assistant", " response "},
                   {"user", " again"},
                   {"assistant", "bye"}},
                  false),
            "[INST] <<SYS>>\nBe kind.\n<</SYS>>\n\nhello [/INST] response </s>"
            "<s>[INST] again [/INST] bye </s>");
}

TEST(ApplyChatTemplateTest, Mistral) {
  EXPECT_EQ(Apply(ChatTemplateKind::kMistral, kMultiTurn, true),
            "[INST] What is 2+2? [/INST]4</s>[INST] And 3+3? [/INST]");
  EXPECT_EQ(Apply(ChatTemplateKind::kMistral,
                  {{"user", "hello"},
                   {"assistant", "response"},
                   {"user", "again"},
                   {"assistant", "response"}},
                  false),
            "[INST] hello [/INST]response</s>[INST] again [/INST]response</s>");
  // The system message goes before the first user message.
  EXPECT_EQ(
      Apply(ChatTemplateKind::kMistral,
            {{"system", "Be brief."}, {"user", "Hi"}, {"assistant", "Hello"}, {"user", "Bye"}},
            true),
      "[INST] Be brief.\n\nHi [/INST]Hello</s>[INST] Bye [/INST]");
}

TEST(ApplyChatTemplateTest, RejectsUnknownRolesNamingThem) {
  for (ChatTemplateKind kind : {ChatTemplateKind::kChatML, ChatTemplateKind::kLlama3,
                                ChatTemplateKind::kLlama2, ChatTemplateKind::kMistral}) {
    absl::StatusOr<std::string> text =
        ApplyChatTemplate(kind, {{"user", "hi"}, {"tool", "42"}}, true);
    EXPECT_EQ(text.status().code(), absl::StatusCode::kInvalidArgument) << ChatTemplateName(kind);
    EXPECT_THAT(std::string(text.status().message()), HasSubstr("\"tool\""));
    EXPECT_EQ(ApplyChatTemplate(kind, {}, true).status().code(),
              absl::StatusCode::kInvalidArgument);
  }
}

TEST(ApplyChatTemplateTest, InstFamiliesRequireAlternation) {
  const std::vector<std::vector<ChatMessage>> bad = {
      {{"assistant", "I speak first"}},
      {{"user", "a"}, {"user", "b"}},
      {{"user", "a"}, {"assistant", "b"}, {"assistant", "c"}},
      {{"system", "s"}},
      {{"user", "a"}, {"system", "late system"}},
      {{"system", "s"}, {"system", "t"}, {"user", "u"}},
  };
  for (ChatTemplateKind kind : {ChatTemplateKind::kLlama2, ChatTemplateKind::kMistral}) {
    for (const std::vector<ChatMessage>& messages : bad) {
      EXPECT_EQ(ApplyChatTemplate(kind, messages, true).status().code(),
                absl::StatusCode::kInvalidArgument)
          << ChatTemplateName(kind) << " " << messages.size() << " messages, first "
          << messages[0].role;
    }
  }
  // ChatML and Llama 3 templates impose no order.
  EXPECT_TRUE(ApplyChatTemplate(ChatTemplateKind::kChatML, bad[1], true).ok());
  EXPECT_TRUE(ApplyChatTemplate(ChatTemplateKind::kLlama3, bad[0], true).ok());
}

}  // namespace
}  // namespace memoria
