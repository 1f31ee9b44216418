#include "memstore/vector_index.h"

#include <fcntl.h>
#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <exception>
#include <filesystem>
#include <unordered_set>

#include <faiss/IndexFlat.h>
#include <faiss/IndexIDMap.h>
#include <faiss/IndexIVFFlat.h>
#include <faiss/impl/IDSelector.h>
#include <faiss/impl/io.h>
#include <faiss/index_io.h>

#include "absl/strings/str_cat.h"

namespace memoria {
namespace {

using faiss_idx_t = faiss::Index::idx_t;

// The file is FAISS's own serialization followed by this trailer, so one rename publishes both
// the index and the RocksDB sequence number it reflects.
constexpr uint64_t kTrailerMagic = 0x5845444e49534d46;  // "FMSINDEX" little-endian
constexpr uint32_t kTrailerVersion = 1;
struct Trailer {
  uint64_t magic;
  uint32_t version;
  uint32_t reserved;
  uint64_t sequence;
  uint64_t payload_bytes;
  uint64_t checksum;  // FNV-1a 64 of the payload
};
static_assert(sizeof(Trailer) == 40);

constexpr uint64_t kFnvOffset = 0xcbf29ce484222325ull;
uint64_t Fnv1a(uint64_t hash, const void* data, size_t size) {
  const auto* bytes = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < size; ++i) hash = (hash ^ bytes[i]) * 0x100000001b3ull;
  return hash;
}

// Streams FAISS's serialization to a file while checksumming it.
class ChecksumWriter : public faiss::IOWriter {
 public:
  explicit ChecksumWriter(FILE* file) : file_(file) {}
  size_t operator()(const void* ptr, size_t size, size_t nitems) override {
    const size_t written = std::fwrite(ptr, size, nitems, file_);
    checksum_ = Fnv1a(checksum_, ptr, size * written);
    bytes_ += size * written;
    return written;
  }
  uint64_t checksum() const { return checksum_; }
  uint64_t bytes() const { return bytes_; }

 private:
  FILE* file_;
  uint64_t checksum_ = kFnvOffset;
  uint64_t bytes_ = 0;
};

// Feeds FAISS at most `limit` bytes of a file (the payload, not the trailer).
class LimitedReader : public faiss::IOReader {
 public:
  LimitedReader(FILE* file, uint64_t limit) : file_(file), left_(limit) {}
  size_t operator()(void* ptr, size_t size, size_t nitems) override {
    if (size == 0) return 0;
    nitems = std::min<uint64_t>(nitems, left_ / size);
    const size_t read = std::fread(ptr, size, nitems, file_);
    left_ -= read * size;
    return read;
  }
  uint64_t left() const { return left_; }

 private:
  FILE* file_;
  uint64_t left_;
};

// Accepts FAISS slots that are live and, when `allowed` is given, carry an allowed tag.
class SlotFilter : public faiss::IDSelector {
 public:
  SlotFilter(const std::vector<uint32_t>& slot_tags, uint32_t dead, const std::vector<char>* allowed)
      : slot_tags_(slot_tags), dead_(dead), allowed_(allowed) {}
  bool is_member(idx_t slot) const override {
    const uint32_t tag = slot_tags_[slot];
    if (tag == dead_) return false;
    return allowed_ == nullptr || (tag < allowed_->size() && (*allowed_)[tag]);
  }

 private:
  const std::vector<uint32_t>& slot_tags_;
  uint32_t dead_;
  const std::vector<char>* allowed_;
};

// FAISS parallelizes a search over its queries with OpenMP. For the single query of a Search
// that only costs thread wake-ups, so a Search runs on the calling thread alone.
class SingleThreadedOpenMp {
 public:
  SingleThreadedOpenMp() : saved_(omp_get_max_threads()) { omp_set_num_threads(1); }
  ~SingleThreadedOpenMp() { omp_set_num_threads(saved_); }

 private:
  int saved_;
};

// IVF shape. A search scans all nlist centroids plus nprobe lists of N / nlist vectors, and
// building assigns each vector against every centroid (N x nlist inner products), so nlist trades
// build time against search time; 2 sqrt(N) lists (2000 at 1M) keep both a few ms per search
// and a 1M build within minutes on this FAISS (generic, no AVX2, reference BLAS). k-means gets
// 16 points per centroid (FAISS warns below 39; IVF recall barely notices, nprobe absorbs it)
// and 8 iterations: training is the other build cost.
constexpr double kListsPerSqrtN = 2.0;
constexpr int64_t kTrainPointsPerList = 16;
constexpr int kTrainIterations = 8;

int64_t ListsFor(int64_t n) {
  return std::clamp<int64_t>(std::llround(kListsPerSqrtN * std::sqrt(static_cast<double>(n))), 1,
                             std::max<int64_t>(n, 1));
}

const faiss::IndexIVF* AsIvf(const faiss::Index* index) {
  return dynamic_cast<const faiss::IndexIVF*>(index);
}

std::unique_ptr<faiss::IndexIDMap2> WrapInIdMap(faiss::Index* base) {
  auto index = std::make_unique<faiss::IndexIDMap2>(base);
  index->own_fields = true;
  return index;
}

// An empty index for `total` vectors: flat up to flat_max, else an IVF trained on an evenly
// strided sample of `data` (total x dim floats).
std::unique_ptr<faiss::IndexIDMap2> MakeIndex(const VectorIndex::Options& options, int64_t total,
                                              const float* data) {
  const int64_t d = options.dim;
  if (total <= options.flat_max) return WrapInIdMap(new faiss::IndexFlatIP(d));
  const int64_t nlist = ListsFor(total);
  auto quantizer = std::make_unique<faiss::IndexFlatIP>(d);
  auto ivf = std::make_unique<faiss::IndexIVFFlat>(quantizer.get(), d, nlist,
                                                   faiss::METRIC_INNER_PRODUCT);
  quantizer.release();
  ivf->own_fields = true;
  ivf->cp.niter = kTrainIterations;
  ivf->cp.spherical = true;  // unit-norm vectors: centroids on the sphere suit inner product
  // The sample is sized here; FAISS must neither warn about it nor subsample it again.
  ivf->cp.min_points_per_centroid = 1;
  ivf->cp.max_points_per_centroid = static_cast<int>(kTrainPointsPerList);
  const int64_t n_train = std::min(total, kTrainPointsPerList * nlist);
  std::vector<float> sample(n_train * d);
  for (int64_t i = 0; i < n_train; ++i) {
    const float* row = data + (i * total / n_train) * d;
    std::copy(row, row + d, sample.begin() + i * d);
  }
  ivf->train(n_train, sample.data());
  return WrapInIdMap(ivf.release());
}

absl::Status FaissError(const char* what, const std::exception& e) {
  return absl::InternalError(absl::StrCat("vector index ", what, ": ", e.what()));
}

// Makes a rename durable.
void SyncDirectory(const std::string& file) {
  const std::string dir = std::filesystem::path(file).parent_path().string();
  const int fd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd < 0) return;  // Best effort: the index is derived data and is rebuilt if lost.
  ::fsync(fd);
  ::close(fd);
}

}  // namespace

VectorIndex::VectorIndex(const Options& options) : options_(options) {}
VectorIndex::~VectorIndex() = default;

bool VectorIndex::is_ivf() const { return AsIvf(index_->index) != nullptr; }

int64_t VectorIndex::ivf_lists() const {
  const faiss::IndexIVF* ivf = AsIvf(index_->index);
  return ivf == nullptr ? 0 : static_cast<int64_t>(ivf->nlist);
}

bool VectorIndex::NeedsRebuild(int64_t total) const {
  if (const faiss::IndexIVF* ivf = AsIvf(index_->index)) {
    return ListsFor(total) > 2 * static_cast<int64_t>(ivf->nlist);  // grown 4x since training
  }
  return total > options_.flat_max;
}

absl::StatusOr<std::unique_ptr<VectorIndex>> VectorIndex::Create(const Options& options) {
  if (options.dim <= 0) return absl::InvalidArgumentError("vector index: dim must be positive");
  std::unique_ptr<VectorIndex> index(new VectorIndex(options));
  try {
    index->index_ = MakeIndex(options, /*total=*/0, nullptr);
  } catch (const std::exception& e) {
    return FaissError("create", e);
  }
  return index;
}

absl::StatusOr<std::unique_ptr<VectorIndex>> VectorIndex::Load(const Options& options,
                                                               const std::string& file,
                                                               uint64_t* sequence) {
  std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(file.c_str(), "rb"), &std::fclose);
  if (f == nullptr) {
    if (errno == ENOENT) return absl::NotFoundError(absl::StrCat(file, " does not exist"));
    return absl::UnavailableError(absl::StrCat("open ", file, ": ", std::strerror(errno)));
  }
  // Trailer first, then the checksum over the whole payload, so FAISS never parses bytes that
  // are not exactly what Save wrote.
  if (fseeko(f.get(), 0, SEEK_END) != 0) return absl::UnavailableError("seek " + file);
  const off_t size = ftello(f.get());
  Trailer trailer;
  if (size < static_cast<off_t>(sizeof(Trailer)) ||
      fseeko(f.get(), size - static_cast<off_t>(sizeof(Trailer)), SEEK_SET) != 0 ||
      std::fread(&trailer, sizeof(trailer), 1, f.get()) != 1) {
    return absl::DataLossError(absl::StrCat(file, ": truncated (", size, " bytes)"));
  }
  if (trailer.magic != kTrailerMagic || trailer.version != kTrailerVersion ||
      trailer.payload_bytes != static_cast<uint64_t>(size) - sizeof(Trailer)) {
    return absl::DataLossError(absl::StrCat(file, ": bad trailer"));
  }
  std::rewind(f.get());
  uint64_t checksum = kFnvOffset;
  std::vector<char> chunk(1 << 20);
  for (uint64_t left = trailer.payload_bytes; left > 0;) {
    const size_t want = std::min<uint64_t>(left, chunk.size());
    if (std::fread(chunk.data(), 1, want, f.get()) != want) {
      return absl::DataLossError(absl::StrCat(file, ": short read"));
    }
    checksum = Fnv1a(checksum, chunk.data(), want);
    left -= want;
  }
  if (checksum != trailer.checksum) return absl::DataLossError(file + ": checksum mismatch");

  std::rewind(f.get());
  LimitedReader reader(f.get(), trailer.payload_bytes);
  std::unique_ptr<faiss::Index> raw;
  try {
    raw.reset(faiss::read_index(&reader));
  } catch (const std::exception& e) {
    return absl::DataLossError(absl::StrCat(file, ": ", e.what()));
  }
  auto* map = dynamic_cast<faiss::IndexIDMap2*>(raw.get());
  auto* ivf = map == nullptr ? nullptr : dynamic_cast<faiss::IndexIVFFlat*>(map->index);
  const bool base_ok = map != nullptr && map->index != nullptr &&
                       (dynamic_cast<const faiss::IndexFlat*>(map->index) != nullptr ||
                        (ivf != nullptr && ivf->is_trained && ivf->quantizer != nullptr &&
                         ivf->metric_type == faiss::METRIC_INNER_PRODUCT));
  if (!base_ok || reader.left() != 0 || raw->d != options.dim ||
      raw->metric_type != faiss::METRIC_INNER_PRODUCT ||
      static_cast<faiss_idx_t>(map->id_map.size()) != raw->ntotal) {
    return absl::DataLossError(
        absl::StrCat(file, ": not an inner-product ID-mapped flat/IVF index of dim ", options.dim));
  }
  std::unique_ptr<VectorIndex> index(new VectorIndex(options));
  raw.release();
  index->index_.reset(map);
  index->index_->own_fields = true;
  index->slot_tags_.assign(map->ntotal, 0);
  index->live_per_tag_.assign(1, map->ntotal);
  index->live_ = map->ntotal;
  if (ivf != nullptr) {
    // Removal deleted vectors from the lists but kept their slots in the id map: only slots
    // found in a list are live.
    index->slot_tags_.assign(map->ntotal, kDead);
    index->live_per_tag_.assign(1, 0);
    index->live_ = 0;
    index->dead_ = map->ntotal;
    for (size_t list = 0; list < ivf->nlist; ++list) {
      const size_t n = ivf->invlists->list_size(list);
      const faiss_idx_t* slots = ivf->invlists->get_ids(list);
      for (size_t i = 0; i < n; ++i) {
        if (slots[i] < 0 || slots[i] >= map->ntotal || index->slot_tags_[slots[i]] != kDead) {
          return absl::DataLossError(absl::StrCat(file, ": bad IVF slot ", slots[i]));
        }
        --index->dead_;
        index->MarkLive(slots[i], 0);
      }
      ivf->invlists->release_ids(list, slots);
    }
  }
  *sequence = trailer.sequence;
  return index;
}

absl::Status VectorIndex::Save(const std::string& file, uint64_t sequence) const {
  const std::string tmp = file + ".tmp";
  FILE* f = std::fopen(tmp.c_str(), "wb");
  if (f == nullptr) {
    return absl::UnavailableError(absl::StrCat("create ", tmp, ": ", std::strerror(errno)));
  }
  ChecksumWriter writer(f);
  try {
    faiss::write_index(index_.get(), &writer);
  } catch (const std::exception& e) {
    std::fclose(f);
    return FaissError("write", e);
  }
  const Trailer trailer{kTrailerMagic, kTrailerVersion, 0, sequence, writer.bytes(),
                        writer.checksum()};
  const bool ok = std::fwrite(&trailer, sizeof(trailer), 1, f) == 1 && std::fflush(f) == 0 &&
                  ::fsync(fileno(f)) == 0;
  const bool closed = std::fclose(f) == 0;
  if (!ok || !closed || std::rename(tmp.c_str(), file.c_str()) != 0) {
    return absl::UnavailableError(absl::StrCat("write ", file, ": ", std::strerror(errno)));
  }
  SyncDirectory(file);
  return absl::OkStatus();
}

void VectorIndex::MarkLive(int64_t slot, uint32_t tag) {
  if (tag >= live_per_tag_.size()) live_per_tag_.resize(tag + 1, 0);
  slot_tags_[slot] = tag;
  ++live_per_tag_[tag];
  ++live_;
}

void VectorIndex::MarkDead(int64_t slot) {
  --live_per_tag_[slot_tags_[slot]];
  slot_tags_[slot] = kDead;
  --live_;
  ++dead_;
}

absl::Status VectorIndex::Add(std::span<const uint64_t> ids, std::span<const uint32_t> tags,
                              std::span<const float> vectors) {
  const size_t n = ids.size();
  if (tags.size() != n || vectors.size() != n * options_.dim) {
    return absl::InvalidArgumentError("vector index Add: ids, tags and vectors disagree in count");
  }
  if (n == 0) return absl::OkStatus();
  if (NeedsRebuild(live_ + static_cast<int64_t>(n))) return Rebuild(ids, tags, vectors);
  std::vector<faiss_idx_t> labels(ids.begin(), ids.end());
  const int64_t first = index_->ntotal;
  try {
    index_->add_with_ids(static_cast<faiss_idx_t>(n), vectors.data(), labels.data());
  } catch (const std::exception& e) {
    return FaissError("add", e);
  }
  slot_tags_.resize(first + n);
  for (size_t i = 0; i < n; ++i) MarkLive(first + i, tags[i]);
  return absl::OkStatus();
}

absl::Status VectorIndex::Remove(std::span<const uint64_t> ids) {
  std::vector<faiss_idx_t> slots;
  for (uint64_t id : ids) {
    auto found = index_->rev_map.find(static_cast<faiss_idx_t>(id));
    if (found != index_->rev_map.end() && slot_tags_[found->second] != kDead) {
      MarkDead(found->second);
      slots.push_back(found->second);
    }
  }
  return DropDeadSlots(slots);
}

absl::Status VectorIndex::DropDeadSlots(std::span<const faiss_idx_t> slots) {
  const bool ivf = is_ivf();
  if (ivf && !slots.empty()) {
    // An IVF search never meets these vectors again; flat slots are only skipped by the filter.
    // FAISS scans every list for them (a few ms at 1M): its id -> list hashtable (DirectMap)
    // goes wrong in 1.7.3 when ids are added through IndexIDMap2.
    try {
      faiss::IDSelectorBatch selector(slots.size(), slots.data());
      index_->index->remove_ids(selector);
    } catch (const std::exception& e) {
      return FaissError("remove", e);
    }
  }
  // Compaction: dead flat slots still cost search time; dead IVF slots only their id-map entries
  // (and compacting an IVF retrains it).
  if (dead_ * (ivf ? 2 : 5) > index_->ntotal) return Rebuild({}, {}, {});
  return absl::OkStatus();
}

absl::StatusOr<std::vector<uint64_t>> VectorIndex::Reconcile(
    const std::unordered_map<uint64_t, uint32_t>& expected) {
  std::unordered_set<uint64_t> present;
  std::vector<faiss_idx_t> dropped;
  const std::vector<uint32_t> was = std::move(slot_tags_);
  slot_tags_.assign(index_->ntotal, kDead);
  live_per_tag_.clear();
  live_ = 0;
  dead_ = index_->ntotal;
  for (int64_t slot = 0; slot < index_->ntotal; ++slot) {
    if (was[slot] == kDead) continue;  // already gone (from an IVF's lists too)
    const uint64_t id = static_cast<uint64_t>(index_->id_map[slot]);
    auto want = expected.find(id);
    if (want == expected.end() || !present.insert(id).second) {
      dropped.push_back(slot);
      continue;
    }
    --dead_;
    MarkLive(slot, want->second);
  }
  std::vector<uint64_t> missing;
  for (const auto& [id, tag] : expected) {
    if (!present.contains(id)) missing.push_back(id);
  }
  std::sort(missing.begin(), missing.end());
  if (is_ivf() && live_ + static_cast<int64_t>(missing.size()) <= options_.flat_max) {
    if (absl::Status status = Rebuild({}, {}, {}); !status.ok()) return status;
  } else if (absl::Status status = DropDeadSlots(dropped); !status.ok()) {
    return status;
  }
  return missing;
}

absl::Status VectorIndex::Rebuild(std::span<const uint64_t> ids, std::span<const uint32_t> tags,
                                  std::span<const float> vectors) {
  const int64_t d = options_.dim;
  const int64_t total = live_ + static_cast<int64_t>(ids.size());
  std::vector<float> data(total * d);
  std::vector<faiss_idx_t> labels;
  std::vector<uint32_t> new_tags;
  labels.reserve(total);
  new_tags.reserve(total);
  auto keep = [&](int64_t slot, const float* vector) {
    std::copy(vector, vector + d, data.begin() + labels.size() * d);
    labels.push_back(index_->id_map[slot]);
    new_tags.push_back(slot_tags_[slot]);
  };
  try {
    if (const faiss::IndexIVF* ivf = AsIvf(index_->index)) {
      // IndexIVFFlat's codes are the vectors themselves; without a direct map (see
      // DropDeadSlots) the lists are read rather than reconstructing slot by slot.
      const faiss::InvertedLists* lists = ivf->invlists;
      for (size_t list = 0; list < ivf->nlist; ++list) {
        const size_t n = lists->list_size(list);
        const faiss_idx_t* slots = lists->get_ids(list);
        const uint8_t* codes = lists->get_codes(list);
        for (size_t i = 0; i < n; ++i) {
          if (slot_tags_[slots[i]] == kDead) continue;
          keep(slots[i], reinterpret_cast<const float*>(codes + i * lists->code_size));
        }
        lists->release_codes(list, codes);
        lists->release_ids(list, slots);
      }
    } else {
      std::vector<float> vector(d);
      for (int64_t slot = 0; slot < index_->ntotal; ++slot) {
        if (slot_tags_[slot] == kDead) continue;
        index_->index->reconstruct(slot, vector.data());
        keep(slot, vector.data());
      }
    }
    std::copy(vectors.begin(), vectors.end(), data.begin() + labels.size() * d);
    labels.insert(labels.end(), ids.begin(), ids.end());
    new_tags.insert(new_tags.end(), tags.begin(), tags.end());
    auto fresh = MakeIndex(options_, total, data.data());
    fresh->add_with_ids(total, data.data(), labels.data());
    index_ = std::move(fresh);
  } catch (const std::exception& e) {
    return FaissError("rebuild", e);
  }
  slot_tags_.assign(total, kDead);
  live_per_tag_.clear();
  live_ = 0;
  dead_ = 0;
  for (int64_t slot = 0; slot < total; ++slot) MarkLive(slot, new_tags[slot]);
  return absl::OkStatus();
}

absl::StatusOr<std::vector<VectorIndex::Hit>> VectorIndex::Search(
    std::span<const float> query, int32_t k, std::span<const uint32_t> tags) const {
  if (query.size() != static_cast<size_t>(options_.dim)) {
    return absl::InvalidArgumentError(
        absl::StrCat("query has ", query.size(), " floats, the index ", options_.dim));
  }
  // How many vectors may match bounds k, so that a short answer from IVF (the nprobe lists
  // nearest the query may hold fewer than k vectors of a small collection) is detected and
  // completed by scanning every list.
  std::vector<char> allowed;
  int64_t eligible = live_;
  if (!tags.empty()) {
    allowed.assign(live_per_tag_.size(), 0);
    eligible = 0;
    for (uint32_t tag : tags) {
      if (tag < allowed.size() && !allowed[tag]) {
        allowed[tag] = 1;
        eligible += live_per_tag_[tag];
      }
    }
  }
  const int64_t want = std::min<int64_t>(k, eligible);
  if (want <= 0) return std::vector<Hit>{};

  SlotFilter filter(slot_tags_, kDead, tags.empty() ? nullptr : &allowed);
  // Dead slots are gone from an IVF's lists, so an IVF needs the filter only for tags.
  const bool filtered = !tags.empty() || (dead_ > 0 && !is_ivf());
  std::vector<float> scores(want);
  std::vector<faiss_idx_t> slots(want, -1);
  SingleThreadedOpenMp one_thread;
  try {
    if (const faiss::IndexIVF* ivf = AsIvf(index_->index)) {
      faiss::SearchParametersIVF params;
      params.nprobe = std::min<size_t>(std::max(options_.ivf_nprobe, 1), ivf->nlist);
      params.sel = filtered ? &filter : nullptr;
      ivf->search(1, query.data(), want, scores.data(), slots.data(), &params);
      if (std::count_if(slots.begin(), slots.end(), [](faiss_idx_t s) { return s >= 0; }) < want) {
        params.nprobe = ivf->nlist;
        ivf->search(1, query.data(), want, scores.data(), slots.data(), &params);
      }
    } else {
      faiss::SearchParameters params;
      params.sel = &filter;
      index_->index->search(1, query.data(), want, scores.data(), slots.data(),
                            filtered ? &params : nullptr);
    }
  } catch (const std::exception& e) {
    return FaissError("search", e);
  }
  std::vector<Hit> hits;
  hits.reserve(want);
  for (int64_t i = 0; i < want; ++i) {
    if (slots[i] < 0) continue;
    hits.push_back(Hit{static_cast<uint64_t>(index_->id_map[slots[i]]), scores[i]});
  }
  return hits;
}

}  // namespace memoria
