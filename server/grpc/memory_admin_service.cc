#include "server/grpc/memory_admin_service.h"

#include <chrono>
#include <string>

#include "absl/strings/str_cat.h"
#include "engine/util/status_macros.h"
#include "memstore/codec.h"
#include "server/grpc/status_util.h"
#include "server/request_log.h"
#include "server/scheduler/prompt.h"

namespace memoria {
namespace {

namespace v1 = memoria::v1;

constexpr char kDefaultCollection[] = "default";
constexpr int32_t kDefaultPageSize = 100;
constexpr int32_t kMaxPageSize = 1000;
constexpr size_t kMaxIdBytes = 512;

void ToProto(const DocumentInfo& info, v1::DocumentInfo* out) {
  out->set_id(info.id);
  out->set_collection(info.collection);
  out->set_title(info.title);
  out->set_metadata(info.metadata);
  for (uint64_t r : info.reference_ids) out->add_reference_ids(r);
  out->set_memory_bytes(info.memory_bytes);
}

// Equal-time comparison: the token check must not leak how much of a guess was right.
bool SameSecret(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

double MillisSince(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

grpc::Status MemoryAdminService::Admit(const grpc::ServerContext& context) const {
  if (!state_->admin_token.empty()) {
    const auto& metadata = context.client_metadata();
    auto it = metadata.find("authorization");
    const std::string expected = "Bearer " + state_->admin_token;
    if (it == metadata.end() ||
        !SameSecret(std::string_view(it->second.data(), it->second.size()), expected)) {
      return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                          "admin calls need 'authorization: Bearer <token>' metadata");
    }
  }
  if (!state_->IsReady()) {
    return grpc::Status(grpc::StatusCode::UNAVAILABLE, "the server is still loading");
  }
  if (state_->store == nullptr) {
    return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                        "the server runs without a memory store (start it with --store DIR)");
  }
  return grpc::Status::OK;
}

absl::Status MemoryAdminService::Ingest(const v1::IngestDocumentRequest& request,
                                        v1::IngestDocumentResponse* response) {
  if (request.id().empty()) return absl::InvalidArgumentError("document id is empty");
  if (request.id().size() > kMaxIdBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("document id is ", request.id().size(), " bytes; at most ", kMaxIdBytes));
  }
  if (request.text().empty()) {
    return absl::InvalidArgumentError(absl::StrCat("document '", request.id(), "' has no text"));
  }
  MEMORIA_RETURN_IF_ERROR(CheckUtf8("document text", request.text()));
  ServerMetrics& metrics = *state_->metrics;
  const auto t0 = std::chrono::steady_clock::now();
  MEMORIA_ASSIGN_OR_RETURN(std::vector<CompiledReference> references,
                           state_->scheduler->Compile(request.text()));
  const double compile_ms = MillisSince(t0);
  Document doc;
  doc.id = request.id();
  doc.collection = request.collection().empty() ? kDefaultCollection : request.collection();
  doc.title = request.title();
  doc.metadata = request.metadata();
  doc.references = std::move(references);
  const auto t1 = std::chrono::steady_clock::now();
  MEMORIA_ASSIGN_OR_RETURN(DocumentInfo info, state_->store->Put(doc));
  const double store_ms = MillisSince(t1);
  ToProto(info, response->mutable_document());
  response->set_compile_ms(compile_ms);
  response->set_store_ms(store_ms);
  metrics.ingested_documents->Increment();
  metrics.ingested_references->Increment(static_cast<double>(info.reference_ids.size()));
  metrics.ingest_seconds->Observe((compile_ms + store_ms) / 1000.0);
  LogEvent("ingest", {{"document_id", info.id},
                      {"collection", info.collection},
                      {"references", absl::StrCat(info.reference_ids.size())},
                      {"compile_ms", absl::StrCat(compile_ms)},
                      {"store_ms", absl::StrCat(store_ms)}});
  return absl::OkStatus();
}

grpc::Status MemoryAdminService::IngestDocument(grpc::ServerContext* context,
                                                const v1::IngestDocumentRequest* request,
                                                v1::IngestDocumentResponse* response) {
  if (grpc::Status s = Admit(*context); !s.ok()) return s;
  absl::Status s = Ingest(*request, response);
  if (!s.ok()) state_->metrics->ingest_failures->Increment();
  return ToGrpcStatus(s);
}

grpc::Status MemoryAdminService::IngestDocuments(
    grpc::ServerContext* context, grpc::ServerReader<v1::IngestDocumentRequest>* reader,
    v1::IngestDocumentsResponse* response) {
  if (grpc::Status s = Admit(*context); !s.ok()) return s;
  v1::IngestDocumentRequest request;
  while (reader->Read(&request)) {
    if (context->IsCancelled()) return grpc::Status(grpc::StatusCode::CANCELLED, "cancelled");
    v1::IngestResult* result = response->add_results();
    result->set_id(request.id());
    v1::IngestDocumentResponse one;
    absl::Status s = Ingest(request, &one);
    result->set_code(static_cast<int32_t>(s.code()));
    result->set_message(std::string(s.message()));
    if (s.ok()) {
      *result->mutable_document() = one.document();
      response->set_succeeded(response->succeeded() + 1);
    } else {
      state_->metrics->ingest_failures->Increment();
      response->set_failed(response->failed() + 1);
    }
  }
  return grpc::Status::OK;
}

grpc::Status MemoryAdminService::DeleteDocument(grpc::ServerContext* context,
                                                const v1::DeleteDocumentRequest* request,
                                                v1::DeleteDocumentResponse*) {
  if (grpc::Status s = Admit(*context); !s.ok()) return s;
  if (request->id().empty()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "document id is empty");
  }
  absl::Status s = state_->store->Delete(request->id());
  if (s.ok()) LogEvent("delete", {{"document_id", request->id()}});
  return ToGrpcStatus(s);
}

grpc::Status MemoryAdminService::GetDocument(grpc::ServerContext* context,
                                             const v1::GetDocumentRequest* request,
                                             v1::DocumentInfo* response) {
  if (grpc::Status s = Admit(*context); !s.ok()) return s;
  if (request->id().empty()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "document id is empty");
  }
  absl::StatusOr<DocumentInfo> info = state_->store->Get(request->id());
  if (!info.ok()) return ToGrpcStatus(info.status());
  ToProto(*info, response);
  return grpc::Status::OK;
}

grpc::Status MemoryAdminService::ListDocuments(grpc::ServerContext* context,
                                               const v1::ListDocumentsRequest* request,
                                               v1::ListDocumentsResponse* response) {
  if (grpc::Status s = Admit(*context); !s.ok()) return s;
  int32_t page_size = request->page_size() == 0 ? kDefaultPageSize : request->page_size();
  if (page_size < 0 || page_size > kMaxPageSize) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        absl::StrCat("page_size must be in [1, ", kMaxPageSize, "], got ",
                                     request->page_size()));
  }
  absl::StatusOr<ListPage> page =
      state_->store->List(request->collection(), request->page_token(), page_size);
  if (!page.ok()) return ToGrpcStatus(page.status());
  for (const DocumentInfo& info : page->documents) ToProto(info, response->add_documents());
  response->set_next_page_token(page->next_page_token);
  return grpc::Status::OK;
}

grpc::Status MemoryAdminService::Stats(grpc::ServerContext* context, const v1::StatsRequest*,
                                       v1::StatsResponse* response) {
  if (grpc::Status s = Admit(*context); !s.ok()) return s;
  const StoreStats stats = state_->store->Stats();
  response->set_documents(stats.documents);
  response->set_references(stats.references);
  response->set_memory_bytes(stats.memory_bytes);
  response->set_page_cache_hits(stats.page_cache_hits);
  response->set_page_cache_misses(stats.page_cache_misses);
  response->set_page_cache_bytes(stats.page_cache_bytes);
  response->set_index_kind(stats.index_kind);
  response->set_model(state_->model_description);
  response->set_codec(CodecName(state_->store->codec().options().kind));
  return grpc::Status::OK;
}

}  // namespace memoria
