#include <cstdio>

#include "client/cli/commands.h"
#include "client/cli/flags.h"
#include "engine/gguf/gguf_file.h"
#include "engine/tokenizer/tokenizer.h"
#include "engine/util/status_macros.h"

namespace memoria::cli {

absl::Status TokenizeCommand(const std::vector<std::string>& args) {
  MEMORIA_ASSIGN_OR_RETURN(Flags flags, Flags::Parse(args, {"--model", "--text"}, {"--no-special"}));
  MEMORIA_ASSIGN_OR_RETURN(std::string path, flags.Required("--model"));
  MEMORIA_ASSIGN_OR_RETURN(std::string text, flags.Required("--text"));
  MEMORIA_ASSIGN_OR_RETURN(std::unique_ptr<GgufFile> file, GgufFile::Open(path));
  MEMORIA_ASSIGN_OR_RETURN(std::unique_ptr<Tokenizer> tokenizer, Tokenizer::FromGguf(*file));
  const bool special = !flags.Has("--no-special");
  std::vector<int32_t> ids = tokenizer->Encode(text, special, special);
  for (size_t i = 0; i < ids.size(); ++i) std::printf("%s%d", i ? " " : "", ids[i]);
  std::printf("\n");
  return absl::OkStatus();
}

}  // namespace memoria::cli
