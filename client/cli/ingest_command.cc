// memoria ingest: stores files as documents in a memoria-server's memory store.
//
// One IngestDocument call per file rather than one IngestDocuments stream: the server compiles
// one document at a time anyway, and a call per file gives a true progress bar and each file's
// result the moment it is known, instead of everything at the end of the stream.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "client/cli/commands.h"
#include "client/cli/server_flags.h"
#include "engine/util/status_macros.h"

namespace memoria::cli {
namespace {

namespace fs = std::filesystem;

struct InputFile {
  fs::path path;
  std::string id;  // the document id
};

bool IsHidden(const fs::path& p) {
  const std::string name = p.filename().string();
  return !name.empty() && name[0] == '.';
}

// Files named by the arguments, directories walked recursively (hidden entries skipped). A
// document's id is its path relative to the directory argument, or a file argument's name.
absl::StatusOr<std::vector<InputFile>> CollectFiles(const std::vector<std::string>& arguments) {
  std::vector<InputFile> files;
  for (const std::string& argument : arguments) {
    const fs::path root(argument);
    std::error_code ec;
    if (fs::is_regular_file(root, ec)) {
      files.push_back({root, root.filename().string()});
      continue;
    }
    if (!fs::is_directory(root, ec)) {
      return absl::NotFoundError(absl::StrCat("'", argument, "' is not a file or directory"));
    }
    std::vector<InputFile> found;
    for (auto it = fs::recursive_directory_iterator(root, ec);
         !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
      if (IsHidden(it->path())) {
        if (it->is_directory()) it.disable_recursion_pending();
        continue;
      }
      if (!it->is_regular_file()) continue;
      found.push_back({it->path(), it->path().lexically_relative(root).generic_string()});
    }
    if (ec) return absl::InternalError(absl::StrCat("walking '", argument, "': ", ec.message()));
    // Directory order is the file system's; sorted ids make runs repeatable.
    std::sort(found.begin(), found.end(),
              [](const InputFile& a, const InputFile& b) { return a.id < b.id; });
    files.insert(files.end(), found.begin(), found.end());
  }
  return files;
}

absl::StatusOr<std::string> ReadFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read '", path.string(), "'"));
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// A one-line bar on a terminal's stderr; nothing when stderr is a file or pipe.
class ProgressBar {
 public:
  explicit ProgressBar(size_t total) : total_(total), enabled_(::isatty(STDERR_FILENO) == 1) {}

  void Show(size_t done, const std::string& current) {
    if (!enabled_) return;
    constexpr int kWidth = 30;
    const int filled = total_ == 0 ? kWidth : static_cast<int>(kWidth * done / total_);
    std::fprintf(stderr, "\r\033[K[%s%s] %zu/%zu %s", std::string(filled, '#').c_str(),
                 std::string(kWidth - filled, ' ').c_str(), done, total_, current.c_str());
    std::fflush(stderr);
  }

  // Clears the bar so a result line can be printed in its place.
  void Clear() {
    if (!enabled_) return;
    std::fputs("\r\033[K", stderr);
    std::fflush(stderr);
  }

 private:
  const size_t total_;
  const bool enabled_;
};

// Failures that every following file would hit too.
bool Hopeless(const absl::Status& status) {
  return absl::IsUnavailable(status) || absl::IsUnauthenticated(status) ||
         absl::IsPermissionDenied(status);
}

}  // namespace

absl::Status IngestCommand(const std::vector<std::string>& args) {
  std::vector<std::string> inputs;
  MEMORIA_ASSIGN_OR_RETURN(Flags flags,
                           ParseServerFlags(args, {"--collection", "--id"}, {}, &inputs));
  if (inputs.empty()) return absl::InvalidArgumentError("no FILE or DIR to ingest");
  MEMORIA_ASSIGN_OR_RETURN(std::vector<InputFile> files, CollectFiles(inputs));
  if (files.empty()) return absl::NotFoundError("no files found");
  if (flags.Has("--id")) {
    if (files.size() != 1) return absl::InvalidArgumentError("--id needs exactly one file");
    files[0].id = flags.String("--id");
  }
  MEMORIA_ASSIGN_OR_RETURN(std::unique_ptr<Client> client, ConnectFromFlags(flags));

  ProgressBar progress(files.size());
  size_t failed = 0;
  absl::Status first_failure;
  for (size_t i = 0; i < files.size(); ++i) {
    const InputFile& file = files[i];
    progress.Show(i, file.id);
    absl::StatusOr<v1::IngestDocumentResponse> result;
    absl::StatusOr<std::string> text = ReadFile(file.path);
    if (text.ok()) {
      v1::IngestDocumentRequest request;
      request.set_id(file.id);
      request.set_collection(flags.String("--collection"));
      request.set_title(file.path.filename().string());
      request.set_text(*std::move(text));
      result = client->IngestDocument(request);
    } else {
      result = text.status();
    }
    progress.Clear();
    if (result.ok()) {
      const v1::DocumentInfo& doc = result->document();
      std::printf("ok      %s  (%d references, %.1f KiB, compile %.0f ms)\n", file.id.c_str(),
                  doc.reference_ids_size(), doc.memory_bytes() / 1024.0, result->compile_ms());
    } else {
      std::printf("FAILED  %s  %s\n", file.id.c_str(), result.status().ToString().c_str());
      if (failed++ == 0) first_failure = result.status();
    }
    std::fflush(stdout);
    if (!result.ok() && Hopeless(result.status())) {
      failed += files.size() - i - 1;
      break;
    }
  }
  progress.Clear();
  if (failed == 0) {
    std::fprintf(stderr, "ingested %zu documents\n", files.size());
    return absl::OkStatus();
  }
  return absl::Status(first_failure.code(),
                      absl::StrCat(failed, " of ", files.size(), " files not ingested; first: ",
                                   std::string(first_failure.message())));
}

}  // namespace memoria::cli
