#ifndef MEMORIA_MEMSTORE_VECTOR_INDEX_H_
#define MEMORIA_MEMSTORE_VECTOR_INDEX_H_

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "absl/status/statusor.h"

namespace faiss {
struct Index;
template <typename IndexT>
struct IndexIDMap2Template;
}  // namespace faiss

namespace memoria {

// Inner-product nearest-neighbour search over the store's reference vectors, a FAISS index that
// is derived from RocksDB and can always be rebuilt from it. Every vector carries a tag (the
// store's number for its collection) so that a search can be restricted to some tags; removed
// and filtered-out vectors are never returned.
//
// Layout: faiss::IndexIDMap2 (external id = reference id, internal id = slot) over IndexFlatIP
// while the index holds at most `flat_max` vectors, over IndexIVFFlat (inner product, IndexFlatIP
// quantizer of about 2 sqrt(N) lists, k-means on a sample) above it. The IVF is trained when the
// index crosses flat_max and retrained (a rebuild) whenever it has grown 4x since, so lists keep
// about sqrt(N) / 2 vectors. Remove marks the slot dead (searches skip dead slots through a FAISS
// IDSelector) and, for IVF, also deletes the vector from its list; the flat index is compacted
// once dead slots exceed a fifth of all slots, the IVF's slot bookkeeping once they exceed half.
//
// Not thread-safe for mutation: Search (const) may run concurrently with other Searches, and the
// caller excludes Add/Remove/Reconcile from everything else. FAISS exceptions are caught here and
// returned as Status.
class VectorIndex {
 public:
  struct Options {
    int32_t dim = 0;
    int64_t flat_max = 100000;
    // IVF lists scanned per search (capped at the list count). More = better recall, linearly
    // slower: on clustered 576-dim data (retrieval_bench) 8 gives recall@5 0.99 at 100k (632
    // lists) and 1.00 at 1M (1286 lists) with p99 ~4 ms at 1M; 16 costs ~6.5 ms p99 there.
    int32_t ivf_nprobe = 8;
  };
  struct Hit {
    uint64_t id = 0;
    float score = 0;
  };

  // An empty flat index.
  static absl::StatusOr<std::unique_ptr<VectorIndex>> Create(const Options& options);
  // Reads a file written by Save and the RocksDB sequence number saved with it. NotFound when
  // the file is absent; DataLoss when it is truncated, fails its checksum, or holds an index of
  // another shape. Every slot starts live with tag 0: call Reconcile before searching.
  static absl::StatusOr<std::unique_ptr<VectorIndex>> Load(const Options& options,
                                                           const std::string& file,
                                                           uint64_t* sequence);
  ~VectorIndex();

  // Writes the index and `sequence` atomically (temporary file, fsync, rename).
  absl::Status Save(const std::string& file, uint64_t sequence) const;

  // Adds n = ids.size() vectors (n x dim floats) with their tags. Ids must not be live already.
  // May rebuild the index as IVF (training it) when it grows past flat_max or 4x past its last
  // training; at 1M vectors that takes minutes.
  absl::Status Add(std::span<const uint64_t> ids, std::span<const uint32_t> tags,
                   std::span<const float> vectors);
  // Removes the ids (absent ids are ignored). May compact.
  absl::Status Remove(std::span<const uint64_t> ids);
  // Makes the live set equal to `expected` (id -> tag): tags are set from it, ids it lacks are
  // removed, and the expected ids the index lacks are returned (sorted) for the caller to Add.
  absl::StatusOr<std::vector<uint64_t>> Reconcile(
      const std::unordered_map<uint64_t, uint32_t>& expected);

  // The k live vectors of the given tags (empty = any tag) with the largest inner product with
  // `query` (dim floats), best first. Fewer when fewer match.
  absl::StatusOr<std::vector<Hit>> Search(std::span<const float> query, int32_t k,
                                          std::span<const uint32_t> tags) const;

  int64_t size() const { return live_; }  // live vectors
  // IVF lists (0 for a flat index).
  int64_t ivf_lists() const;
  // Changes Options::ivf_nprobe (for tuning); not concurrently with Search.
  void set_ivf_nprobe(int32_t nprobe) { options_.ivf_nprobe = nprobe; }
  bool is_ivf() const;
  const char* kind() const { return is_ivf() ? "ivf" : "flat"; }

 private:
  static constexpr uint32_t kDead = UINT32_MAX;

  explicit VectorIndex(const Options& options);
  // Replaces the FAISS index by one holding the live vectors plus the given new ones: flat or IVF
  // by the resulting size, an IVF trained afresh.
  absl::Status Rebuild(std::span<const uint64_t> ids, std::span<const uint32_t> tags,
                       std::span<const float> vectors);
  void MarkLive(int64_t slot, uint32_t tag);
  void MarkDead(int64_t slot);
  // After `slots` were marked dead: deletes them from an IVF's lists and compacts when dead
  // slots have piled up.
  absl::Status DropDeadSlots(std::span<const int64_t> slots);
  // Whether the index must be rebuilt to hold `total` live vectors (kind or list count is off).
  bool NeedsRebuild(int64_t total) const;

  Options options_;
  std::unique_ptr<faiss::IndexIDMap2Template<faiss::Index>> index_;  // faiss::IndexIDMap2
  std::vector<uint32_t> slot_tags_;     // per FAISS slot: its tag, or kDead
  std::vector<int64_t> live_per_tag_;   // live vectors per tag
  int64_t live_ = 0;
  int64_t dead_ = 0;
};

}  // namespace memoria

#endif  // MEMORIA_MEMSTORE_VECTOR_INDEX_H_
