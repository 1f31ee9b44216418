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

// Subcommands that talk to a memoria-server over gRPC (flags: client/cli/server_flags.h).
absl::Status GenerateCommand(const std::vector<std::string>& args);  // memoria generate
absl::Status IngestCommand(const std::vector<std::string>& args);    // memoria ingest
absl::Status DeleteCommand(const std::vector<std::string>& args);    // memoria delete
absl::Status GetCommand(const std::vector<std::string>& args);       // memoria get
absl::Status ListCommand(const std::vector<std::string>& args);      // memoria list
absl::Status StatsCommand(const std::vector<std::string>& args);     // memoria stats
absl::Status HealthCommand(const std::vector<std::string>& args);    // memoria health

}  // namespace memoria::cli

#endif  // MEMORIA_CLIENT_CLI_COMMANDS_H_
