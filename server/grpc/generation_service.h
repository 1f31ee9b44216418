#ifndef MEMORIA_SERVER_GRPC_GENERATION_SERVICE_H_
#define MEMORIA_SERVER_GRPC_GENERATION_SERVICE_H_

#include "absl/status/statusor.h"
#include "memoria/v1/generation.grpc.pb.h"
#include "server/scheduler/generation_request.h"
#include "server/serving_state.h"

namespace memoria {

// memoria.v1.Generation over the scheduler. Each Generate call's handler thread submits the
// request, then relays the stream's events as messages until the finish, noticing client
// cancellation and deadlines between events.
class GenerationService final : public memoria::v1::Generation::Service {
 public:
  explicit GenerationService(ServingState* state) : state_(state) {}

  grpc::Status Generate(grpc::ServerContext* context, const memoria::v1::GenerateRequest* request,
                        grpc::ServerWriter<memoria::v1::GenerateResponse>* writer) override;
  grpc::Status Tokenize(grpc::ServerContext* context, const memoria::v1::TokenizeRequest* request,
                        memoria::v1::TokenizeResponse* response) override;
  grpc::Status ModelInfo(grpc::ServerContext* context, const memoria::v1::ModelInfoRequest* request,
                         memoria::v1::ModelInfoResponse* response) override;

 private:
  ServingState* const state_;
};

// The engine request a GenerateRequest asks for (INVALID_ARGUMENT naming a bad field).
absl::StatusOr<GenerationRequest> FromProto(const Model& model,
                                            const memoria::v1::GenerateRequest& request);

}  // namespace memoria

#endif  // MEMORIA_SERVER_GRPC_GENERATION_SERVICE_H_
