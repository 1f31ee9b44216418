// memoria health: the standard gRPC health check of a memoria-server (what Kubernetes probes ask).
#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/cli/commands.h"
#include "client/cli/server_flags.h"
#include "engine/util/status_macros.h"

namespace memoria::cli {

absl::Status HealthCommand(const std::vector<std::string>& args) {
  MEMORIA_ASSIGN_OR_RETURN(Flags flags, ParseServerFlags(args, {"--service"}, {}));
  MEMORIA_ASSIGN_OR_RETURN(std::unique_ptr<Client> client, ConnectFromFlags(flags));
  const std::string service = flags.String("--service");
  MEMORIA_ASSIGN_OR_RETURN(grpc::health::v1::HealthCheckResponse::ServingStatus serving,
                           client->Health(service));
  const std::string name = grpc::health::v1::HealthCheckResponse::ServingStatus_Name(serving);
  std::printf("%s\n", name.c_str());
  if (serving != grpc::health::v1::HealthCheckResponse::SERVING) {
    return absl::UnavailableError(absl::StrCat(service.empty() ? "server" : service, " is ", name));
  }
  return absl::OkStatus();
}

}  // namespace memoria::cli
