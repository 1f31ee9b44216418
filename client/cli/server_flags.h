#ifndef MEMORIA_CLIENT_CLI_SERVER_FLAGS_H_
#define MEMORIA_CLIENT_CLI_SERVER_FLAGS_H_

#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "client/cli/flags.h"
#include "client/lib/client.h"

namespace memoria::cli {

// Flags every command that talks to a memoria-server takes:
//   --server HOST:PORT   default 127.0.0.1:50051
//   --token T            admin token; default $MEMORIA_ADMIN_TOKEN
//   --tls                connect with TLS (system roots unless --tls-ca)
//   --tls-ca FILE        PEM roots to check the server's certificate against
//   --timeout SECONDS    limit for each call; default none
// Parses `args` with these added to the command's own flags (see Flags::Parse).
absl::StatusOr<Flags> ParseServerFlags(const std::vector<std::string>& args,
                                       std::set<std::string> valued,
                                       std::set<std::string> switches,
                                       std::vector<std::string>* positional = nullptr);

// A client for the server the flags name.
absl::StatusOr<std::unique_ptr<Client>> ConnectFromFlags(const Flags& flags);

}  // namespace memoria::cli

#endif  // MEMORIA_CLIENT_CLI_SERVER_FLAGS_H_
