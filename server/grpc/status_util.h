#ifndef MEMORIA_SERVER_GRPC_STATUS_UTIL_H_
#define MEMORIA_SERVER_GRPC_STATUS_UTIL_H_

#include <string>

#include "absl/status/status.h"
#include "grpcpp/support/status.h"

namespace memoria {

// absl and gRPC share the canonical code numbering.
inline grpc::Status ToGrpcStatus(const absl::Status& s) {
  if (s.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(s.code()), std::string(s.message()));
}

}  // namespace memoria

#endif  // MEMORIA_SERVER_GRPC_STATUS_UTIL_H_
