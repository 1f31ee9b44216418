#ifndef MEMORIA_SERVER_GRPC_MEMORY_ADMIN_SERVICE_H_
#define MEMORIA_SERVER_GRPC_MEMORY_ADMIN_SERVICE_H_

#include "memoria/v1/memory_admin.grpc.pb.h"
#include "server/serving_state.h"

namespace memoria {

// memoria.v1.MemoryAdmin: documents in and out of the memory store. Every call needs
// `authorization: Bearer <token>` when the server has an admin token (UNAUTHENTICATED otherwise),
// and a store (FAILED_PRECONDITION otherwise). Compiling runs on the scheduler's compute thread;
// storing (a synced RocksDB write) on the handler's thread.
class MemoryAdminService final : public memoria::v1::MemoryAdmin::Service {
 public:
  explicit MemoryAdminService(ServingState* state) : state_(state) {}

  grpc::Status IngestDocument(grpc::ServerContext* context,
                              const memoria::v1::IngestDocumentRequest* request,
                              memoria::v1::IngestDocumentResponse* response) override;
  grpc::Status IngestDocuments(grpc::ServerContext* context,
                               grpc::ServerReader<memoria::v1::IngestDocumentRequest>* reader,
                               memoria::v1::IngestDocumentsResponse* response) override;
  grpc::Status DeleteDocument(grpc::ServerContext* context,
                              const memoria::v1::DeleteDocumentRequest* request,
                              memoria::v1::DeleteDocumentResponse* response) override;
  grpc::Status GetDocument(grpc::ServerContext* context,
                           const memoria::v1::GetDocumentRequest* request,
                           memoria::v1::DocumentInfo* response) override;
  grpc::Status ListDocuments(grpc::ServerContext* context,
                             const memoria::v1::ListDocumentsRequest* request,
                             memoria::v1::ListDocumentsResponse* response) override;
  grpc::Status Stats(grpc::ServerContext* context, const memoria::v1::StatsRequest* request,
                     memoria::v1::StatsResponse* response) override;

 private:
  // OK when the caller may use the store now.
  grpc::Status Admit(const grpc::ServerContext& context) const;
  absl::Status Ingest(const memoria::v1::IngestDocumentRequest& request,
                      memoria::v1::IngestDocumentResponse* response);

  ServingState* const state_;
};

}  // namespace memoria

#endif  // MEMORIA_SERVER_GRPC_MEMORY_ADMIN_SERVICE_H_
