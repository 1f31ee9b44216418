#ifndef MEMORIA_MEMSTORE_ROCKS_STORE_H_
#define MEMORIA_MEMSTORE_ROCKS_STORE_H_

// The MemoryStore implementation: RocksDB is the source of truth, a FAISS VectorIndex is derived
// from it. Private to memstore/ and its tests; everyone else uses MemoryStore::Open. The on-disk
// layout is described in docs/storage.md.

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "memstore/memory_store.h"
#include "memstore/page_cache.h"
#include "memstore/vector_index.h"

namespace rocksdb {
class DB;
class ColumnFamilyHandle;
}  // namespace rocksdb

namespace memoria {

struct DocumentRecord;  // a documents column family value (rocks_store.cc)

// Knobs that are not part of the public options because only tests and benchmarks turn them.
struct RocksStoreTuning {
  // Writes (Put or Delete) between saves of the FAISS index. A crash costs the next open at most
  // this many writes of catch-up; a save costs a full write of the index file.
  int64_t index_save_interval = 1000;
  // IVF lists scanned per Retrieve once the store exceeds flat_index_max (VectorIndex::Options).
  int32_t ivf_nprobe = VectorIndex::Options().ivf_nprobe;
};

// How Open obtained the vector index.
struct IndexRecovery {
  enum class Kind {
    kCreated,   // new store
    kLoaded,    // the saved index agreed with RocksDB exactly
    kCaughtUp,  // the saved index was reconciled with RocksDB (vectors added or dropped)
    kRebuilt,   // no usable saved index: rebuilt from the vectors column family
  };
  Kind kind = Kind::kCreated;
  uint64_t saved_sequence = 0;  // RocksDB sequence number stored with the loaded index
  int64_t added = 0;            // vectors added from RocksDB by catch-up or rebuild
  int64_t dropped = 0;          // index entries RocksDB no longer has
  std::string reason;           // why a saved index was not used (kRebuilt)
};

class RocksStore final : public MemoryStore {
 public:
  static absl::StatusOr<std::unique_ptr<RocksStore>> Open(const MemoryStoreOptions& options,
                                                          const RocksStoreTuning& tuning,
                                                          const std::string& path,
                                                          const ModelFingerprint& fingerprint);
  // Saves the vector index when it changed since the last save, then closes RocksDB.
  ~RocksStore() override;

  const VectorCodec& codec() const override { return *codec_; }
  absl::StatusOr<DocumentInfo> Put(const Document& document) override;
  absl::Status Delete(const std::string& document_id) override;
  absl::StatusOr<DocumentInfo> Get(const std::string& document_id) const override;
  absl::StatusOr<StoredReference> GetReference(uint64_t reference_id) const override;
  absl::StatusOr<ListPage> List(const std::string& collection, const std::string& page_token,
                                int32_t page_size) const override;
  StoreStats Stats() const override;
  absl::StatusOr<std::vector<RetrievedReference>> Retrieve(
      const std::vector<float>& query, int32_t k, const std::vector<std::string>& collections,
      float min_score) const override;
  absl::StatusOr<std::vector<std::shared_ptr<const MemoryPage>>> Load(
      const std::vector<uint64_t>& reference_ids) const override;

  const IndexRecovery& index_recovery() const { return recovery_; }
  // Writes the vector index file now (as on close).
  absl::Status SaveIndex();

  // Where the pieces live under the store's path.
  static std::string DbPath(const std::string& path) { return path + "/db"; }
  static std::string IndexPath(const std::string& path) { return path + "/faiss.index"; }

 private:
  struct Handles;

  RocksStore(const MemoryStoreOptions& options, const RocksStoreTuning& tuning,
             const std::string& path, const ModelFingerprint& fingerprint);

  absl::Status OpenDb();
  absl::Status LoadOrCreateMeta();
  absl::Status LoadDocumentsAndIndex();
  absl::Status RebuildIndex(const std::unordered_map<uint64_t, uint32_t>& expected);
  absl::Status AddVectorsFromDb(const std::vector<uint64_t>& ids,
                                const std::unordered_map<uint64_t, uint32_t>& expected,
                                VectorIndex* index);
  absl::Status Validate(const Document& document) const;
  absl::StatusOr<bool> ReadDocument(const std::string& id, DocumentRecord* record) const;
  absl::Status SaveIndexLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu_);
  uint32_t TagLocked(const std::string& collection) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // --- constant after Open ---
  MemoryStoreOptions options_;  // fixed fields as stored
  const RocksStoreTuning tuning_;
  const std::string path_;
  const ModelFingerprint fingerprint_;
  std::unique_ptr<rocksdb::DB> db_;
  std::unique_ptr<Handles> cf_;
  // Trained in place by the first Put of a PQ store, before any memory exists to decode.
  std::unique_ptr<VectorCodec> codec_;
  IndexRecovery recovery_;
  mutable PageCache page_cache_;

  // --- writers (Put, Delete, saving the index); acquired before mu_ ---
  absl::Mutex write_mu_;
  uint64_t next_reference_id_ ABSL_GUARDED_BY(write_mu_) = 1;
  bool codec_ready_ ABSL_GUARDED_BY(write_mu_) = false;      // trained, or needs no training
  bool codec_persisted_ ABSL_GUARDED_BY(write_mu_) = true;   // its state is in meta
  int64_t unsaved_writes_ ABSL_GUARDED_BY(write_mu_) = 0;    // since the index was saved

  // --- shared with readers ---
  mutable absl::Mutex mu_;
  std::unique_ptr<VectorIndex> index_ ABSL_GUARDED_BY(mu_);
  // Not OK once updating the index failed after a committed write; Retrieve reports it until a
  // reopen rebuilds the index from RocksDB.
  absl::Status index_status_ ABSL_GUARDED_BY(mu_);
  std::unordered_map<std::string, uint32_t> collection_tags_ ABSL_GUARDED_BY(mu_);
  int64_t documents_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t references_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t memory_bytes_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace memoria

#endif  // MEMORIA_MEMSTORE_ROCKS_STORE_H_
