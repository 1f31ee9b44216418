#ifndef MEMORIA_CLIENT_CLI_COMMANDS_H_
#define MEMORIA_CLIENT_CLI_COMMANDS_H_

#include <string>
#include <vector>

#include "absl/status/status.h"

namespace memoria::cli {

// Subcommands of the `memoria` tool; each parses its own flags (args exclude the subcommand).
absl::Status RunCommand(const std::vector<std::string>& args);       // memoria run
absl::Status TokenizeCommand(const std::vector<std::string>& args);  // memoria tokenize
absl::Status MakeModelCommand(const std::vector<std::string>& args); // memoria make-model

}  // namespace memoria::cli

#endif  // MEMORIA_CLIENT_CLI_COMMANDS_H_
