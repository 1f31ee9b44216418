#ifndef MEMORIA_MEMSTORE_MEMORY_STORE_H_
#define MEMORIA_MEMSTORE_MEMORY_STORE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "memstore/codec.h"
#include "memstore/memory_blob.h"

namespace memoria {

// Identifies the model whose K/V a store holds. Memories from one model are meaningless to
// another, so a store refuses to open with a different fingerprint.
struct ModelFingerprint {
  std::string description;  // "llama L=16 D=2048 H=32/8 hd=64 V=128256"
  uint64_t tensor_hash = 0; // hash of every tensor's bytes
  int32_t n_layers = 0;
  int32_t n_kv_heads = 0;
  int32_t head_dim = 0;
  bool operator==(const ModelFingerprint&) const = default;
  std::string ToString() const;
};

struct MemoryStoreOptions {
  // --- fixed when the store is created (later opens must agree or leave them default) ---
  CodecOptions codec;            // codec.dim is the model's head_dim
  int32_t retrieval_dim = 0;     // length of retrieval vectors (model embedding or caller's)
  // --- may change between opens ---
  bool create_if_missing = true;
  // Bytes of decoded memory pages kept in the LRU page cache.
  size_t page_cache_bytes = size_t{256} << 20;
  // Below this many references retrieval scans exactly (flat inner product); above it an IVF
  // index answers (approximate, much faster at 1M; crossing it trains the IVF, which takes
  // seconds to minutes).
  int64_t flat_index_max = 100000;
  // fsync the WAL on every document write (acknowledged writes survive power loss, not only
  // kill -9). Off only for benchmarks.
  bool sync_writes = true;
};

// One reference of a document, compiled (see MemoryCompiler): its tokens' span in the document,
// its text, its memory and its retrieval vector (L2-normalized).
struct CompiledReference {
  int32_t token_begin = 0;
  int32_t token_end = 0;
  std::string text;
  ReferenceKv memory;
  std::vector<float> vector;
};

struct Document {
  std::string id;          // caller-chosen, unique in the store, non-empty
  std::string collection;  // tenant; retrieval filters by it; non-empty
  std::string title;
  std::string metadata;    // opaque to the store (e.g. JSON)
  std::vector<CompiledReference> references;
};

struct DocumentInfo {
  std::string id, collection, title, metadata;
  std::vector<uint64_t> reference_ids;
  int64_t memory_bytes = 0;  // encoded memories of all references
};

struct StoredReference {
  uint64_t id = 0;
  std::string document_id;
  int32_t token_begin = 0, token_end = 0;
  std::string text;
};

struct RetrievedReference {
  uint64_t reference_id = 0;
  std::string document_id;
  float score = 0;  // inner product with the query (cosine for normalized vectors)
};

struct StoreStats {
  int64_t documents = 0;
  int64_t references = 0;
  int64_t memory_bytes = 0;  // encoded memories
  int64_t page_cache_hits = 0;
  int64_t page_cache_misses = 0;
  int64_t page_cache_bytes = 0;
  std::string index_kind;    // "flat" or "ivf"
};

struct ListPage {
  std::vector<DocumentInfo> documents;
  std::string next_page_token;  // empty at the end
};

// The persistent bank of explicit memories: RocksDB is the source of truth (documents,
// references, memories, vectors, metadata in column families; layout in docs/storage.md) and a
// FAISS index over the reference vectors is derived from it. A document becomes visible
// atomically (one synced write batch) or not at all. Thread-safe: any number of readers
// (Get, List, Retrieve, Load) run concurrently with one writer at a time.
class MemoryStore {
 public:
  // Opens or creates the store at `path` for the model `fingerprint`. A store created for another
  // model, or with other fixed options, is refused (FailedPrecondition naming both). On open the
  // FAISS index is loaded and caught up with RocksDB, or rebuilt.
  static absl::StatusOr<std::unique_ptr<MemoryStore>> Open(const MemoryStoreOptions& options,
                                                           const std::string& path,
                                                           const ModelFingerprint& fingerprint);
  virtual ~MemoryStore() = default;

  // The codec memories are encoded with (PQ: trained on the store's first document).
  virtual const VectorCodec& codec() const = 0;

  // Stores the document, replacing any document with the same id, atomically. Returns its info.
  virtual absl::StatusOr<DocumentInfo> Put(const Document& document) = 0;
  // Removes the document and everything of it; NotFound when absent.
  virtual absl::Status Delete(const std::string& document_id) = 0;
  virtual absl::StatusOr<DocumentInfo> Get(const std::string& document_id) const = 0;
  virtual absl::StatusOr<StoredReference> GetReference(uint64_t reference_id) const = 0;
  // Documents of a collection ("" = all) in id order, page_size at a time.
  virtual absl::StatusOr<ListPage> List(const std::string& collection, const std::string& page_token,
                                        int32_t page_size) const = 0;
  virtual StoreStats Stats() const = 0;

  // The k references most similar to `query` (retrieval_dim floats) among the given collections
  // (empty = all), with score >= min_score, best first.
  virtual absl::StatusOr<std::vector<RetrievedReference>> Retrieve(
      const std::vector<float>& query, int32_t k, const std::vector<std::string>& collections,
      float min_score) const = 0;
  // Decoded memory pages of the references (page cache first, then RocksDB), in order.
  virtual absl::StatusOr<std::vector<std::shared_ptr<const MemoryPage>>> Load(
      const std::vector<uint64_t>& reference_ids) const = 0;
};

}  // namespace memoria

#endif  // MEMORIA_MEMSTORE_MEMORY_STORE_H_
