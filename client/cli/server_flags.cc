#include "client/cli/server_flags.h"

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "engine/util/status_macros.h"

namespace memoria::cli {

absl::StatusOr<Flags> ParseServerFlags(const std::vector<std::string>& args,
                                       std::set<std::string> valued,
                                       std::set<std::string> switches,
                                       std::vector<std::string>* positional) {
  valued.insert({"--server", "--token", "--tls-ca", "--timeout"});
  switches.insert("--tls");
  return Flags::Parse(args, valued, switches, positional);
}

absl::StatusOr<std::unique_ptr<Client>> ConnectFromFlags(const Flags& flags) {
  ClientOptions options;
  const char* env_token = std::getenv("MEMORIA_ADMIN_TOKEN");
  options.admin_token = flags.String("--token", env_token != nullptr ? env_token : "");
  options.tls = flags.Has("--tls") || flags.Has("--tls-ca");
  if (flags.Has("--tls-ca")) {
    const std::string path = flags.String("--tls-ca");
    std::ifstream in(path);
    if (!in) return absl::NotFoundError(absl::StrCat("--tls-ca: cannot read '", path, "'"));
    std::ostringstream pem;
    pem << in.rdbuf();
    options.tls_root_certs = pem.str();
  }
  MEMORIA_ASSIGN_OR_RETURN(double timeout, flags.Double("--timeout", 0));
  if (timeout < 0) return absl::InvalidArgumentError("--timeout must be >= 0");
  if (timeout > 0) options.deadline = absl::Seconds(timeout);
  return Client::Connect(flags.String("--server", "127.0.0.1:50051"), options);
}

}  // namespace memoria::cli
