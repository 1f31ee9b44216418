// memoria delete / get / list / stats: the memory store of a memoria-server.
#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/cli/commands.h"
#include "client/cli/server_flags.h"
#include "engine/util/status_macros.h"

namespace memoria::cli {
namespace {

// The single positional argument of `delete ID` and `get ID`.
absl::StatusOr<std::string> OnlyId(const std::vector<std::string>& positional) {
  if (positional.size() != 1) {
    return absl::InvalidArgumentError(absl::StrCat("expected one document ID, got ",
                                                   positional.size()));
  }
  return positional[0];
}

}  // namespace

absl::Status DeleteCommand(const std::vector<std::string>& args) {
  std::vector<std::string> positional;
  MEMORIA_ASSIGN_OR_RETURN(Flags flags, ParseServerFlags(args, {}, {}, &positional));
  MEMORIA_ASSIGN_OR_RETURN(std::string id, OnlyId(positional));
  MEMORIA_ASSIGN_OR_RETURN(std::unique_ptr<Client> client, ConnectFromFlags(flags));
  MEMORIA_RETURN_IF_ERROR(client->DeleteDocument(id));
  std::printf("deleted %s\n", id.c_str());
  return absl::OkStatus();
}

absl::Status GetCommand(const std::vector<std::string>& args) {
  std::vector<std::string> positional;
  MEMORIA_ASSIGN_OR_RETURN(Flags flags, ParseServerFlags(args, {}, {}, &positional));
  MEMORIA_ASSIGN_OR_RETURN(std::string id, OnlyId(positional));
  MEMORIA_ASSIGN_OR_RETURN(std::unique_ptr<Client> client, ConnectFromFlags(flags));
  MEMORIA_ASSIGN_OR_RETURN(v1::DocumentInfo doc, client->GetDocument(id));
  std::printf("id: %s\ncollection: %s\ntitle: %s\nmetadata: %s\nreferences: %d\n"
              "memory_bytes: %lld\n",
              doc.id().c_str(), doc.collection().c_str(), doc.title().c_str(),
              doc.metadata().c_str(), doc.reference_ids_size(),
              static_cast<long long>(doc.memory_bytes()));
  return absl::OkStatus();
}

absl::Status ListCommand(const std::vector<std::string>& args) {
  MEMORIA_ASSIGN_OR_RETURN(Flags flags, ParseServerFlags(args, {"--collection"}, {}));
  MEMORIA_ASSIGN_OR_RETURN(std::unique_ptr<Client> client, ConnectFromFlags(flags));
  v1::ListDocumentsRequest request;
  request.set_collection(flags.String("--collection"));
  request.set_page_size(1000);
  std::vector<v1::DocumentInfo> documents;
  do {
    MEMORIA_ASSIGN_OR_RETURN(v1::ListDocumentsResponse page, client->ListDocuments(request));
    for (v1::DocumentInfo& doc : *page.mutable_documents()) documents.push_back(std::move(doc));
    request.set_page_token(page.next_page_token());
  } while (!request.page_token().empty());

  // Columns as wide as their widest cell.
  int id_width = 2, collection_width = 10;
  for (const v1::DocumentInfo& doc : documents) {
    id_width = std::max(id_width, static_cast<int>(doc.id().size()));
    collection_width = std::max(collection_width, static_cast<int>(doc.collection().size()));
  }
  std::printf("%-*s  %-*s  %10s  %12s  %s\n", id_width, "ID", collection_width, "COLLECTION",
              "REFERENCES", "MEMORY_BYTES", "TITLE");
  for (const v1::DocumentInfo& doc : documents) {
    std::printf("%-*s  %-*s  %10d  %12lld  %s\n", id_width, doc.id().c_str(), collection_width,
                doc.collection().c_str(), doc.reference_ids_size(),
                static_cast<long long>(doc.memory_bytes()), doc.title().c_str());
  }
  std::fprintf(stderr, "%zu documents\n", documents.size());
  return absl::OkStatus();
}

absl::Status StatsCommand(const std::vector<std::string>& args) {
  MEMORIA_ASSIGN_OR_RETURN(Flags flags, ParseServerFlags(args, {}, {}));
  MEMORIA_ASSIGN_OR_RETURN(std::unique_ptr<Client> client, ConnectFromFlags(flags));
  MEMORIA_ASSIGN_OR_RETURN(v1::StatsResponse stats, client->Stats());
  std::printf("documents: %lld\nreferences: %lld\nmemory_bytes: %lld\n"
              "page_cache_hits: %lld\npage_cache_misses: %lld\npage_cache_bytes: %lld\n"
              "index: %s\nmodel: %s\ncodec: %s\n",
              static_cast<long long>(stats.documents()), static_cast<long long>(stats.references()),
              static_cast<long long>(stats.memory_bytes()),
              static_cast<long long>(stats.page_cache_hits()),
              static_cast<long long>(stats.page_cache_misses()),
              static_cast<long long>(stats.page_cache_bytes()), stats.index_kind().c_str(),
              stats.model().c_str(), stats.codec().c_str());
  return absl::OkStatus();
}

}  // namespace memoria::cli
