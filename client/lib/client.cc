#include "client/lib/client.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "grpcpp/grpcpp.h"

namespace memoria {
namespace {

// Lists of documents and long completions with logprobs outgrow gRPC's 4 MiB default.
constexpr int kMaxReceiveBytes = 64 << 20;

}  // namespace

absl::Status FromGrpcStatus(const grpc::Status& status, const std::string& call) {
  if (status.ok()) return absl::OkStatus();
  // grpc::StatusCode and absl::StatusCode share their numbering (google.rpc.Code).
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                      absl::StrCat(call, ": ", status.error_message()));
}

absl::StatusOr<std::unique_ptr<Client>> Client::Connect(const std::string& target,
                                                        const ClientOptions& options) {
  if (target.empty()) return absl::InvalidArgumentError("empty server address");
  if (!options.tls && !options.tls_root_certs.empty()) {
    return absl::InvalidArgumentError("TLS root certificates given without TLS");
  }
  std::shared_ptr<grpc::ChannelCredentials> credentials;
  if (options.tls) {
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = options.tls_root_certs;
    credentials = grpc::SslCredentials(ssl);
  } else {
    credentials = grpc::InsecureChannelCredentials();
  }
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(kMaxReceiveBytes);
  std::shared_ptr<grpc::Channel> channel = grpc::CreateCustomChannel(target, credentials, args);
  if (channel == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("cannot make a channel to '", target, "'"));
  }
  return std::unique_ptr<Client>(new Client(target, options, std::move(channel)));
}

Client::Client(std::string target, ClientOptions options, std::shared_ptr<grpc::Channel> channel)
    : target_(std::move(target)),
      options_(std::move(options)),
      channel_(std::move(channel)),
      generation_(v1::Generation::NewStub(channel_)),
      admin_(v1::MemoryAdmin::NewStub(channel_)),
      health_(grpc::health::v1::Health::NewStub(channel_)) {}

std::unique_ptr<grpc::ClientContext> Client::NewContext() const {
  auto context = std::make_unique<grpc::ClientContext>();
  if (options_.deadline != absl::InfiniteDuration()) {
    context->set_deadline(absl::ToChronoTime(absl::Now() + options_.deadline));
  }
  if (!options_.admin_token.empty()) {
    context->AddMetadata("authorization", absl::StrCat("Bearer ", options_.admin_token));
  }
  return context;
}

absl::Status Client::Generate(const v1::GenerateRequest& request,
                              const std::function<void(const v1::GenerateResponse&)>& on_response) {
  std::unique_ptr<grpc::ClientContext> context = NewContext();
  std::unique_ptr<grpc::ClientReader<v1::GenerateResponse>> reader =
      generation_->Generate(context.get(), request);
  v1::GenerateResponse response;
  while (reader->Read(&response)) on_response(response);
  return FromGrpcStatus(reader->Finish(), "Generate");
}

absl::StatusOr<v1::TokenizeResponse> Client::Tokenize(const v1::TokenizeRequest& request) {
  std::unique_ptr<grpc::ClientContext> context = NewContext();
  v1::TokenizeResponse response;
  grpc::Status status = generation_->Tokenize(context.get(), request, &response);
  if (!status.ok()) return FromGrpcStatus(status, "Tokenize");
  return response;
}

absl::StatusOr<v1::ModelInfoResponse> Client::ModelInfo() {
  std::unique_ptr<grpc::ClientContext> context = NewContext();
  v1::ModelInfoResponse response;
  grpc::Status status = generation_->ModelInfo(context.get(), v1::ModelInfoRequest(), &response);
  if (!status.ok()) return FromGrpcStatus(status, "ModelInfo");
  return response;
}

absl::StatusOr<v1::IngestDocumentResponse> Client::IngestDocument(
    const v1::IngestDocumentRequest& document) {
  std::unique_ptr<grpc::ClientContext> context = NewContext();
  v1::IngestDocumentResponse response;
  grpc::Status status = admin_->IngestDocument(context.get(), document, &response);
  if (!status.ok()) return FromGrpcStatus(status, "IngestDocument");
  return response;
}

absl::StatusOr<v1::IngestDocumentsResponse> Client::IngestDocuments(
    const std::function<bool(v1::IngestDocumentRequest*)>& next) {
  std::unique_ptr<grpc::ClientContext> context = NewContext();
  v1::IngestDocumentsResponse response;
  std::unique_ptr<grpc::ClientWriter<v1::IngestDocumentRequest>> writer =
      admin_->IngestDocuments(context.get(), &response);
  v1::IngestDocumentRequest document;
  while (next(&document)) {
    // A failed write means the stream is broken; Finish says why.
    if (!writer->Write(document)) break;
    document.Clear();
  }
  writer->WritesDone();
  grpc::Status status = writer->Finish();
  if (!status.ok()) return FromGrpcStatus(status, "IngestDocuments");
  return response;
}

absl::Status Client::DeleteDocument(const std::string& id) {
  std::unique_ptr<grpc::ClientContext> context = NewContext();
  v1::DeleteDocumentRequest request;
  request.set_id(id);
  v1::DeleteDocumentResponse response;
  return FromGrpcStatus(admin_->DeleteDocument(context.get(), request, &response),
                        "DeleteDocument");
}

absl::StatusOr<v1::DocumentInfo> Client::GetDocument(const std::string& id) {
  std::unique_ptr<grpc::ClientContext> context = NewContext();
  v1::GetDocumentRequest request;
  request.set_id(id);
  v1::DocumentInfo response;
  grpc::Status status = admin_->GetDocument(context.get(), request, &response);
  if (!status.ok()) return FromGrpcStatus(status, "GetDocument");
  return response;
}

absl::StatusOr<v1::ListDocumentsResponse> Client::ListDocuments(
    const v1::ListDocumentsRequest& request) {
  std::unique_ptr<grpc::ClientContext> context = NewContext();
  v1::ListDocumentsResponse response;
  grpc::Status status = admin_->ListDocuments(context.get(), request, &response);
  if (!status.ok()) return FromGrpcStatus(status, "ListDocuments");
  return response;
}

absl::StatusOr<v1::StatsResponse> Client::Stats() {
  std::unique_ptr<grpc::ClientContext> context = NewContext();
  v1::StatsResponse response;
  grpc::Status status = admin_->Stats(context.get(), v1::StatsRequest(), &response);
  if (!status.ok()) return FromGrpcStatus(status, "Stats");
  return response;
}

absl::StatusOr<grpc::health::v1::HealthCheckResponse::ServingStatus> Client::Health(
    const std::string& service) {
  std::unique_ptr<grpc::ClientContext> context = NewContext();
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(service);
  grpc::health::v1::HealthCheckResponse response;
  grpc::Status status = health_->Check(context.get(), request, &response);
  if (!status.ok()) return FromGrpcStatus(status, "Health");
  return response.status();
}

}  // namespace memoria
