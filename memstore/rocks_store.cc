#include "memstore/rocks_store.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <string_view>
#include <utility>

#include <rocksdb/db.h>
#include <rocksdb/options.h>
#include <rocksdb/write_batch.h>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "engine/util/status_macros.h"

namespace memoria {

// The value of the documents column family (see docs/storage.md).
struct DocumentRecord {
  std::string collection, title, metadata;
  int64_t memory_bytes = 0;
  std::vector<uint64_t> reference_ids;
};

struct RocksStore::Handles {
  std::vector<rocksdb::ColumnFamilyHandle*> all;  // owned, destroyed before the DB closes
  rocksdb::ColumnFamilyHandle* documents = nullptr;
  rocksdb::ColumnFamilyHandle* collections = nullptr;
  rocksdb::ColumnFamilyHandle* references = nullptr;
  rocksdb::ColumnFamilyHandle* memories = nullptr;
  rocksdb::ColumnFamilyHandle* vectors = nullptr;
  rocksdb::ColumnFamilyHandle* meta = nullptr;
};

namespace {

constexpr uint32_t kSchemaVersion = 1;
constexpr size_t kMaxNameBytes = 1024;  // ids and collection names are shorter than this
constexpr int32_t kDefaultPageSize = 100;
constexpr int32_t kMaxPageSize = 1000;
constexpr int32_t kMaxK = 1024;
constexpr int32_t kMaxBlobU16 = 0xFFFF;  // memory blobs store counts and positions as u16
constexpr size_t kVectorBatch = 4096;   // vectors read per MultiGet when filling the index

// Column families, in the order they are opened (RocksDB's default one holds nothing).
constexpr const char* kColumnFamilies[] = {"documents", "collections", "references",
                                           "memories",  "vectors",     "meta"};

// Keys of the meta column family.
constexpr char kMetaSchema[] = "schema_version";
constexpr char kMetaFingerprint[] = "fingerprint";
constexpr char kMetaFixedOptions[] = "fixed_options";
constexpr char kMetaCodecState[] = "codec_state";
constexpr char kMetaNextReferenceId[] = "next_reference_id";

// --- value encoding: little-endian fixed-width integers, u32-length-prefixed strings ---

void PutU32(std::string* out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out->push_back(static_cast<char>(v >> (8 * i)));
}
void PutU64(std::string* out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out->push_back(static_cast<char>(v >> (8 * i)));
}
void PutString(std::string* out, std::string_view s) {
  PutU32(out, static_cast<uint32_t>(s.size()));
  out->append(s);
}

// Reads what the Put* functions wrote; any overrun sets !ok() instead of reading past the end.
class RecordReader {
 public:
  explicit RecordReader(std::string_view in) : in_(in) {}
  uint32_t U32() { return static_cast<uint32_t>(Fixed(4)); }
  uint64_t U64() { return Fixed(8); }
  uint8_t U8() { return static_cast<uint8_t>(Fixed(1)); }
  std::string String() {
    const uint32_t size = U32();
    if (!ok_ || size > in_.size()) return Fail<std::string>();
    std::string s(in_.substr(0, size));
    in_.remove_prefix(size);
    return s;
  }
  bool ok() const { return ok_; }
  // Everything read and nothing left over.
  bool done() const { return ok_ && in_.empty(); }
  size_t left() const { return in_.size(); }

 private:
  uint64_t Fixed(int bytes) {
    if (!ok_ || in_.size() < static_cast<size_t>(bytes)) return Fail<uint64_t>();
    uint64_t v = 0;
    for (int i = 0; i < bytes; ++i) v |= uint64_t{static_cast<uint8_t>(in_[i])} << (8 * i);
    in_.remove_prefix(bytes);
    return v;
  }
  template <typename T>
  T Fail() {
    ok_ = false;
    return T{};
  }
  std::string_view in_;
  bool ok_ = true;
};

// Reference ids are big-endian keys so that iteration visits them in numeric order.
std::string ReferenceKey(uint64_t id) {
  std::string key(8, '\0');
  for (int i = 0; i < 8; ++i) key[i] = static_cast<char>(id >> (56 - 8 * i));
  return key;
}

// collections column family: "<collection>\0<document id>" -> "" (collections hold no NUL).
std::string CollectionPrefix(absl::string_view collection) {
  return absl::StrCat(collection, absl::string_view("\0", 1));
}

std::string EncodeDocument(const DocumentRecord& d) {
  std::string out;
  PutString(&out, d.collection);
  PutString(&out, d.title);
  PutString(&out, d.metadata);
  PutU64(&out, static_cast<uint64_t>(d.memory_bytes));
  PutU32(&out, static_cast<uint32_t>(d.reference_ids.size()));
  for (uint64_t id : d.reference_ids) PutU64(&out, id);
  return out;
}
bool DecodeDocument(std::string_view in, DocumentRecord* d) {
  RecordReader r(in);
  d->collection = r.String();
  d->title = r.String();
  d->metadata = r.String();
  d->memory_bytes = static_cast<int64_t>(r.U64());
  const uint32_t n = r.U32();
  if (!r.ok() || r.left() != size_t{n} * 8) return false;
  d->reference_ids.resize(n);
  for (uint64_t& id : d->reference_ids) id = r.U64();
  return r.done();
}

std::string EncodeReference(const std::string& document_id, const CompiledReference& ref) {
  std::string out;
  PutString(&out, document_id);
  PutU32(&out, static_cast<uint32_t>(ref.token_begin));
  PutU32(&out, static_cast<uint32_t>(ref.token_end));
  PutString(&out, ref.text);
  return out;
}
bool DecodeReference(std::string_view in, StoredReference* ref) {
  RecordReader r(in);
  ref->document_id = r.String();
  ref->token_begin = static_cast<int32_t>(r.U32());
  ref->token_end = static_cast<int32_t>(r.U32());
  ref->text = r.String();
  return r.done();
}

std::string EncodeFingerprint(const ModelFingerprint& f) {
  std::string out;
  PutString(&out, f.description);
  PutU64(&out, f.tensor_hash);
  PutU32(&out, static_cast<uint32_t>(f.n_layers));
  PutU32(&out, static_cast<uint32_t>(f.n_kv_heads));
  PutU32(&out, static_cast<uint32_t>(f.head_dim));
  return out;
}
bool DecodeFingerprint(std::string_view in, ModelFingerprint* f) {
  RecordReader r(in);
  f->description = r.String();
  f->tensor_hash = r.U64();
  f->n_layers = static_cast<int32_t>(r.U32());
  f->n_kv_heads = static_cast<int32_t>(r.U32());
  f->head_dim = static_cast<int32_t>(r.U32());
  return r.done();
}

// The options fixed at creation: the codec and the retrieval vector length.
std::string EncodeFixedOptions(const CodecOptions& c, int32_t retrieval_dim) {
  std::string out;
  out.push_back(static_cast<char>(c.kind));
  for (int32_t v : {c.dim, c.int4_group, c.pq_subvectors, c.pq_bits, retrieval_dim}) {
    PutU32(&out, static_cast<uint32_t>(v));
  }
  return out;
}
bool DecodeFixedOptions(std::string_view in, CodecOptions* c, int32_t* retrieval_dim) {
  RecordReader r(in);
  const uint8_t kind = r.U8();
  c->kind = static_cast<CodecKind>(kind);
  c->dim = static_cast<int32_t>(r.U32());
  c->int4_group = static_cast<int32_t>(r.U32());
  c->pq_subvectors = static_cast<int32_t>(r.U32());
  c->pq_bits = static_cast<int32_t>(r.U32());
  *retrieval_dim = static_cast<int32_t>(r.U32());
  return r.done() && kind <= static_cast<uint8_t>(CodecKind::kPq);
}

std::string EncodeU64(uint64_t v) {
  std::string out;
  PutU64(&out, v);
  return out;
}

bool SameCodec(const CodecOptions& a, const CodecOptions& b) {
  return a.kind == b.kind && a.dim == b.dim && a.int4_group == b.int4_group &&
         a.pq_subvectors == b.pq_subvectors && a.pq_bits == b.pq_bits;
}
std::string DescribeFixed(const CodecOptions& c, int32_t retrieval_dim) {
  return absl::StrCat("codec=", CodecName(c.kind), " dim=", c.dim, " int4_group=", c.int4_group,
                      " pq_subvectors=", c.pq_subvectors, " pq_bits=", c.pq_bits,
                      " retrieval_dim=", retrieval_dim);
}

absl::Status FromRocks(const rocksdb::Status& s, absl::string_view what) {
  if (s.ok()) return absl::OkStatus();
  std::string message = absl::StrCat(what, ": ", s.ToString());
  if (s.IsNotFound()) return absl::NotFoundError(message);
  if (s.IsCorruption()) return absl::DataLossError(message);
  if (s.IsIOError()) return absl::UnavailableError(message);
  if (s.IsInvalidArgument()) return absl::InvalidArgumentError(message);
  return absl::InternalError(message);
}

bool AllFinite(std::span<const float> values) {
  return std::all_of(values.begin(), values.end(), [](float x) { return std::isfinite(x); });
}

absl::Status CheckName(absl::string_view field, const std::string& value) {
  if (value.empty() || value.size() >= kMaxNameBytes) {
    return absl::InvalidArgumentError(absl::StrCat(field, " must be 1..", kMaxNameBytes - 1,
                                                   " bytes, got ", value.size()));
  }
  return absl::OkStatus();
}

DocumentInfo InfoOf(const std::string& id, DocumentRecord record) {
  DocumentInfo info;
  info.id = id;
  info.collection = std::move(record.collection);
  info.title = std::move(record.title);
  info.metadata = std::move(record.metadata);
  info.reference_ids = std::move(record.reference_ids);
  info.memory_bytes = record.memory_bytes;
  return info;
}

// Releases a RocksDB snapshot when a read finishes.
class ScopedSnapshot {
 public:
  explicit ScopedSnapshot(rocksdb::DB* db) : db_(db), snapshot_(db->GetSnapshot()) {}
  ~ScopedSnapshot() { db_->ReleaseSnapshot(snapshot_); }
  const rocksdb::Snapshot* get() const { return snapshot_; }

 private:
  rocksdb::DB* db_;
  const rocksdb::Snapshot* snapshot_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<MemoryStore>> MemoryStore::Open(const MemoryStoreOptions& options,
                                                               const std::string& path,
                                                               const ModelFingerprint& fingerprint) {
  MEMORIA_ASSIGN_OR_RETURN(std::unique_ptr<RocksStore> store,
                           RocksStore::Open(options, RocksStoreTuning{}, path, fingerprint));
  return std::unique_ptr<MemoryStore>(std::move(store));
}

RocksStore::RocksStore(const MemoryStoreOptions& options, const RocksStoreTuning& tuning,
                       const std::string& path, const ModelFingerprint& fingerprint)
    : options_(options),
      tuning_(tuning),
      path_(path),
      fingerprint_(fingerprint),
      page_cache_(options.page_cache_bytes) {}

absl::StatusOr<std::unique_ptr<RocksStore>> RocksStore::Open(const MemoryStoreOptions& options,
                                                             const RocksStoreTuning& tuning,
                                                             const std::string& path,
                                                             const ModelFingerprint& fingerprint) {
  if (fingerprint.n_layers <= 0 || fingerprint.n_kv_heads <= 0 || fingerprint.head_dim <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "fingerprint: n_layers, n_kv_heads and head_dim must be positive (", fingerprint.ToString(),
        ")"));
  }
  std::unique_ptr<RocksStore> store(new RocksStore(options, tuning, path, fingerprint));
  MEMORIA_RETURN_IF_ERROR(store->OpenDb());
  MEMORIA_RETURN_IF_ERROR(store->LoadOrCreateMeta());
  MEMORIA_RETURN_IF_ERROR(store->LoadDocumentsAndIndex());
  return store;
}

RocksStore::~RocksStore() {
  {
    absl::MutexLock writer(&write_mu_);
    if (unsaved_writes_ > 0) {
      // Nothing to report to from a destructor; an unsaved index is caught up at the next open.
      SaveIndexLocked().IgnoreError();
    }
  }
  if (db_ == nullptr) return;
  for (rocksdb::ColumnFamilyHandle* handle : cf_->all) {
    // Destroying a handle of an open DB only frees memory; its status carries nothing to act on.
    db_->DestroyColumnFamilyHandle(handle).PermitUncheckedError();
  }
  // Every acknowledged write is already in the WAL; Close only flushes caches.
  db_->Close().PermitUncheckedError();
}

absl::Status RocksStore::OpenDb() {
  const std::string db_path = DbPath(path_);
  std::error_code error;
  if (!std::filesystem::exists(db_path, error)) {
    if (!options_.create_if_missing) {
      return absl::NotFoundError(absl::StrCat("no memory store at ", path_));
    }
    std::filesystem::create_directories(db_path, error);
    if (error) {
      return absl::UnavailableError(absl::StrCat("create ", db_path, ": ", error.message()));
    }
  }
  rocksdb::DBOptions db_options;
  db_options.create_if_missing = true;
  db_options.create_missing_column_families = true;
  std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
  descriptors.emplace_back(rocksdb::kDefaultColumnFamilyName, rocksdb::ColumnFamilyOptions());
  for (const char* name : kColumnFamilies) {
    rocksdb::ColumnFamilyOptions cf_options;
    if (std::string_view(name) == "memories") {
      // Memory blobs are tens of KB: kept in blob files, compactions move only their pointers.
      cf_options.enable_blob_files = true;
      cf_options.min_blob_size = 4096;
    }
    descriptors.emplace_back(name, cf_options);
  }
  cf_ = std::make_unique<Handles>();
  rocksdb::DB* db = nullptr;
  MEMORIA_RETURN_IF_ERROR(FromRocks(rocksdb::DB::Open(db_options, db_path, descriptors, &cf_->all, &db),
                                    absl::StrCat("open ", db_path)));
  db_.reset(db);
  cf_->documents = cf_->all[1];
  cf_->collections = cf_->all[2];
  cf_->references = cf_->all[3];
  cf_->memories = cf_->all[4];
  cf_->vectors = cf_->all[5];
  cf_->meta = cf_->all[6];
  return absl::OkStatus();
}

absl::Status RocksStore::LoadOrCreateMeta() {
  const rocksdb::ReadOptions read;
  std::string value;
  rocksdb::Status s = db_->Get(read, cf_->meta, kMetaSchema, &value);
  absl::MutexLock writer(&write_mu_);
  CodecOptions requested = options_.codec;
  const bool codec_default = SameCodec(requested, CodecOptions{});
  if (requested.dim == 0) requested.dim = fingerprint_.head_dim;

  if (s.IsNotFound()) {
    // A new store; documents without meta would be a store whose meta was lost.
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(read, cf_->documents));
    it->SeekToFirst();
    if (it->Valid()) return absl::DataLossError(absl::StrCat(path_, ": meta lost, documents exist"));
    MEMORIA_RETURN_IF_ERROR(FromRocks(it->status(), "scan documents"));
    if (options_.retrieval_dim <= 0) {
      return absl::InvalidArgumentError("retrieval_dim must be positive to create a store");
    }
    if (requested.dim != fingerprint_.head_dim) {
      return absl::InvalidArgumentError(absl::StrCat("codec.dim ", requested.dim,
                                                     " differs from the model's head_dim ",
                                                     fingerprint_.head_dim));
    }
    MEMORIA_ASSIGN_OR_RETURN(codec_, VectorCodec::Create(requested));
    rocksdb::WriteBatch batch;
    std::string schema;
    PutU32(&schema, kSchemaVersion);
    batch.Put(cf_->meta, kMetaSchema, schema);
    batch.Put(cf_->meta, kMetaFingerprint, EncodeFingerprint(fingerprint_));
    batch.Put(cf_->meta, kMetaFixedOptions, EncodeFixedOptions(requested, options_.retrieval_dim));
    batch.Put(cf_->meta, kMetaNextReferenceId, EncodeU64(1));
    rocksdb::WriteOptions write;
    write.sync = true;
    MEMORIA_RETURN_IF_ERROR(FromRocks(db_->Write(write, &batch), "create store meta"));
    options_.codec = requested;
    codec_ready_ = !codec_->NeedsTraining();
    next_reference_id_ = 1;
    return absl::OkStatus();
  }
  MEMORIA_RETURN_IF_ERROR(FromRocks(s, "read meta"));

  RecordReader schema(value);
  const uint32_t version = schema.U32();
  if (!schema.done()) return absl::DataLossError(absl::StrCat(path_, ": corrupt schema version"));
  if (version != kSchemaVersion) {
    return absl::FailedPreconditionError(absl::StrCat(
        path_, ": store schema version ", version, ", this build reads ", kSchemaVersion));
  }
  auto read_meta = [&](const char* key, std::string* out) -> absl::Status {
    rocksdb::Status status = db_->Get(read, cf_->meta, key, out);
    if (status.IsNotFound()) {
      return absl::DataLossError(absl::StrCat(path_, ": meta \"", key, "\" is missing"));
    }
    return FromRocks(status, absl::StrCat("read meta ", key));
  };
  ModelFingerprint stored;
  MEMORIA_RETURN_IF_ERROR(read_meta(kMetaFingerprint, &value));
  if (!DecodeFingerprint(value, &stored)) {
    return absl::DataLossError(absl::StrCat(path_, ": corrupt model fingerprint"));
  }
  if (!(stored == fingerprint_)) {
    return absl::FailedPreconditionError(absl::StrCat(
        path_, " holds memories of model [", stored.ToString(), "] (", stored.n_layers,
        " layers, ", stored.n_kv_heads, " KV heads, head_dim ", stored.head_dim,
        "), not of this model [", fingerprint_.ToString(), "]"));
  }
  CodecOptions stored_codec;
  int32_t stored_dim = 0;
  MEMORIA_RETURN_IF_ERROR(read_meta(kMetaFixedOptions, &value));
  if (!DecodeFixedOptions(value, &stored_codec, &stored_dim)) {
    return absl::DataLossError(absl::StrCat(path_, ": corrupt fixed options"));
  }
  if ((!codec_default && !SameCodec(requested, stored_codec)) ||
      (options_.retrieval_dim != 0 && options_.retrieval_dim != stored_dim)) {
    return absl::FailedPreconditionError(absl::StrCat(
        path_, " was created with ", DescribeFixed(stored_codec, stored_dim), "; opened with ",
        DescribeFixed(codec_default ? stored_codec : requested,
                      options_.retrieval_dim != 0 ? options_.retrieval_dim : stored_dim)));
  }
  options_.codec = stored_codec;
  options_.retrieval_dim = stored_dim;
  auto codec = VectorCodec::Create(stored_codec);
  if (!codec.ok()) {
    return absl::DataLossError(absl::StrCat(path_, ": stored codec options unusable: ",
                                            codec.status().message()));
  }
  codec_ = std::move(*codec);
  codec_ready_ = !codec_->NeedsTraining();
  if (!codec_ready_) {
    s = db_->Get(read, cf_->meta, kMetaCodecState, &value);
    if (s.ok()) {
      if (absl::Status loaded = codec_->LoadState(value); !loaded.ok()) {
        return absl::DataLossError(absl::StrCat(path_, ": codec state: ", loaded.message()));
      }
      codec_ready_ = true;
    } else if (!s.IsNotFound()) {
      return FromRocks(s, "read codec state");
    }
  }
  MEMORIA_RETURN_IF_ERROR(read_meta(kMetaNextReferenceId, &value));
  RecordReader next(value);
  next_reference_id_ = next.U64();
  if (!next.done() || next_reference_id_ == 0) {
    return absl::DataLossError(absl::StrCat(path_, ": corrupt next reference id"));
  }
  return absl::OkStatus();
}

absl::Status RocksStore::LoadDocumentsAndIndex() {
  absl::MutexLock writer(&write_mu_);
  std::unordered_map<uint64_t, uint32_t> expected;  // reference id -> collection tag
  {
    absl::MutexLock lock(&mu_);
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), cf_->documents));
    DocumentRecord record;
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      if (!DecodeDocument(it->value().ToStringView(), &record)) {
        return absl::DataLossError(
            absl::StrCat(path_, ": corrupt record of document \"", it->key().ToString(), "\""));
      }
      const uint32_t tag = TagLocked(record.collection);
      for (uint64_t id : record.reference_ids) expected.emplace(id, tag);
      ++documents_;
      references_ += static_cast<int64_t>(record.reference_ids.size());
      memory_bytes_ += record.memory_bytes;
    }
    MEMORIA_RETURN_IF_ERROR(FromRocks(it->status(), "scan documents"));
  }

  VectorIndex::Options index_options;
  index_options.dim = options_.retrieval_dim;
  index_options.flat_max = options_.flat_index_max;
  index_options.ivf_nprobe = tuning_.ivf_nprobe;
  const std::string file = IndexPath(path_);
  uint64_t sequence = 0;
  auto loaded = VectorIndex::Load(index_options, file, &sequence);
  absl::Status usable = loaded.status();
  if (loaded.ok()) {
    VectorIndex& index = **loaded;
    const int64_t slots = index.size();
    auto missing = index.Reconcile(expected);
    usable = missing.status();
    if (missing.ok()) usable = AddVectorsFromDb(*missing, expected, &index);
    if (usable.ok()) {
      recovery_.saved_sequence = sequence;
      recovery_.added = static_cast<int64_t>(missing->size());
      recovery_.dropped = slots - (index.size() - recovery_.added);
      // Entries removed before the save are dropped again here; an index saved at the current
      // sequence number needed nothing else.
      const bool exact = recovery_.added == 0 && sequence == db_->GetLatestSequenceNumber();
      recovery_.kind = exact ? IndexRecovery::Kind::kLoaded : IndexRecovery::Kind::kCaughtUp;
      absl::MutexLock lock(&mu_);
      index_ = std::move(*loaded);
    }
  }
  if (!usable.ok()) {
    const bool fresh = absl::IsNotFound(usable) && expected.empty();
    recovery_.kind = fresh ? IndexRecovery::Kind::kCreated : IndexRecovery::Kind::kRebuilt;
    recovery_.reason = std::string(usable.message());
    auto index = VectorIndex::Create(index_options);
    if (!index.ok()) return index.status();
    std::vector<uint64_t> ids;
    ids.reserve(expected.size());
    for (const auto& [id, tag] : expected) ids.push_back(id);
    std::sort(ids.begin(), ids.end());
    MEMORIA_RETURN_IF_ERROR(AddVectorsFromDb(ids, expected, index->get()));
    recovery_.added = static_cast<int64_t>(ids.size());
    absl::MutexLock lock(&mu_);
    index_ = std::move(*index);
  }
  if (recovery_.kind == IndexRecovery::Kind::kCaughtUp ||
      recovery_.kind == IndexRecovery::Kind::kRebuilt) {
    // Saving now spares the next open the same work; failing to only costs that work again.
    SaveIndexLocked().IgnoreError();
  }
  return absl::OkStatus();
}

absl::Status RocksStore::AddVectorsFromDb(const std::vector<uint64_t>& ids,
                                          const std::unordered_map<uint64_t, uint32_t>& expected,
                                          VectorIndex* index) {
  const size_t dim = options_.retrieval_dim;
  for (size_t begin = 0; begin < ids.size(); begin += kVectorBatch) {
    const size_t n = std::min(kVectorBatch, ids.size() - begin);
    std::vector<std::string> keys(n);
    std::vector<rocksdb::Slice> slices(n);
    for (size_t i = 0; i < n; ++i) {
      keys[i] = ReferenceKey(ids[begin + i]);
      slices[i] = keys[i];
    }
    std::vector<std::string> values;
    std::vector<rocksdb::Status> statuses =
        db_->MultiGet(rocksdb::ReadOptions(), std::vector<rocksdb::ColumnFamilyHandle*>(n, cf_->vectors),
                      slices, &values);
    std::vector<float> vectors(n * dim);
    std::vector<uint32_t> tags(n);
    for (size_t i = 0; i < n; ++i) {
      const uint64_t id = ids[begin + i];
      if (statuses[i].IsNotFound()) {
        return absl::DataLossError(absl::StrCat(path_, ": reference ", id, " has no vector"));
      }
      MEMORIA_RETURN_IF_ERROR(FromRocks(statuses[i], absl::StrCat("read vector ", id)));
      if (values[i].size() != dim * sizeof(float)) {
        return absl::DataLossError(absl::StrCat(path_, ": vector of reference ", id, " has ",
                                                values[i].size(), " bytes, expected ",
                                                dim * sizeof(float)));
      }
      std::memcpy(vectors.data() + i * dim, values[i].data(), values[i].size());
      tags[i] = expected.at(id);
    }
    MEMORIA_RETURN_IF_ERROR(index->Add(std::span(ids).subspan(begin, n), tags, vectors));
  }
  return absl::OkStatus();
}

absl::Status RocksStore::SaveIndex() {
  absl::MutexLock writer(&write_mu_);
  return SaveIndexLocked();
}

absl::Status RocksStore::SaveIndexLocked() {
  absl::ReaderMutexLock lock(&mu_);
  if (index_ == nullptr) return absl::FailedPreconditionError("no vector index");
  // Never persist an index known to disagree with RocksDB.
  MEMORIA_RETURN_IF_ERROR(index_status_);
  // write_mu_ excludes commits, so the index reflects exactly this sequence number.
  MEMORIA_RETURN_IF_ERROR(index_->Save(IndexPath(path_), db_->GetLatestSequenceNumber()));
  unsaved_writes_ = 0;
  return absl::OkStatus();
}

uint32_t RocksStore::TagLocked(const std::string& collection) {
  return collection_tags_.try_emplace(collection, static_cast<uint32_t>(collection_tags_.size()))
      .first->second;
}

absl::Status RocksStore::Validate(const Document& document) const {
  MEMORIA_RETURN_IF_ERROR(CheckName("document id", document.id));
  MEMORIA_RETURN_IF_ERROR(CheckName("collection", document.collection));
  if (document.collection.find('\0') != std::string::npos) {
    return absl::InvalidArgumentError("collection must not contain NUL bytes");
  }
  const int32_t head_dim = fingerprint_.head_dim;
  for (size_t i = 0; i < document.references.size(); ++i) {
    const CompiledReference& ref = document.references[i];
    const std::string field = absl::StrCat("references[", i, "]");
    auto invalid = [&](absl::string_view what) {
      return absl::InvalidArgumentError(absl::StrCat(field, ".", what));
    };
    if (ref.token_begin < 0 || ref.token_end < ref.token_begin) {
      return invalid(absl::StrCat("token_begin/token_end: bad span [", ref.token_begin, ", ",
                                  ref.token_end, ")"));
    }
    if (ref.vector.size() != static_cast<size_t>(options_.retrieval_dim)) {
      return invalid(absl::StrCat("vector: ", ref.vector.size(),
                                  " floats, the store's retrieval_dim is ", options_.retrieval_dim));
    }
    if (!AllFinite(ref.vector)) return invalid("vector: not finite");
    const ReferenceKv& kv = ref.memory;
    if (kv.head_dim != head_dim || kv.n_kv_heads != fingerprint_.n_kv_heads) {
      return invalid(absl::StrCat("memory: head_dim ", kv.head_dim, " n_kv_heads ", kv.n_kv_heads,
                                  ", the model has head_dim ", head_dim, " n_kv_heads ",
                                  fingerprint_.n_kv_heads));
    }
    for (size_t l = 0; l < kv.layers.size(); ++l) {
      if (kv.layers[l] < 0 || kv.layers[l] >= fingerprint_.n_layers ||
          (l > 0 && kv.layers[l] <= kv.layers[l - 1])) {
        return invalid(absl::StrCat("memory.layers: not ascending within [0, ",
                                    fingerprint_.n_layers, ")"));
      }
    }
    if (kv.heads.size() != kv.layers.size() * kv.n_kv_heads) {
      return invalid(absl::StrCat("memory.heads: ", kv.heads.size(), " heads for ",
                                  kv.layers.size(), " layers x ", kv.n_kv_heads, " KV heads"));
    }
    for (const ReferenceKv::Head& head : kv.heads) {
      const size_t floats = head.positions.size() * head_dim;
      if (head.keys.size() != floats || head.values.size() != floats) {
        return invalid("memory.heads: keys/values are not positions x head_dim floats");
      }
      if (head.positions.size() > kMaxBlobU16 ||
          std::any_of(head.positions.begin(), head.positions.end(),
                      [](int32_t p) { return p < 0 || p > kMaxBlobU16; })) {
        return invalid(absl::StrCat("memory.heads: positions must be at most ", kMaxBlobU16,
                                    ", each in [0, ", kMaxBlobU16, "]"));
      }
      if (!AllFinite(head.keys) || !AllFinite(head.values)) {
        return invalid("memory.heads: keys/values not finite");
      }
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<bool> RocksStore::ReadDocument(const std::string& id, DocumentRecord* record) const {
  std::string value;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), cf_->documents, id, &value);
  if (s.IsNotFound()) return false;
  MEMORIA_RETURN_IF_ERROR(FromRocks(s, absl::StrCat("read document ", id)));
  if (!DecodeDocument(value, record)) {
    return absl::DataLossError(absl::StrCat("corrupt record of document \"", id, "\""));
  }
  return true;
}

absl::StatusOr<DocumentInfo> RocksStore::Put(const Document& document) {
  MEMORIA_RETURN_IF_ERROR(Validate(document));
  absl::MutexLock writer(&write_mu_);
  DocumentRecord old;
  MEMORIA_ASSIGN_OR_RETURN(const bool replacing, ReadDocument(document.id, &old));

  if (!codec_ready_) {
    // PQ learns its centroids from the store's first document, keys and values together.
    std::vector<float> training;
    for (const CompiledReference& ref : document.references) {
      for (const ReferenceKv::Head& head : ref.memory.heads) {
        training.insert(training.end(), head.keys.begin(), head.keys.end());
        training.insert(training.end(), head.values.begin(), head.values.end());
      }
    }
    const int64_t have = static_cast<int64_t>(training.size()) / fingerprint_.head_dim;
    const int64_t need = int64_t{1} << options_.codec.pq_bits;
    if (have < need) {
      return absl::FailedPreconditionError(absl::StrCat(
          "the PQ codec is trained on the store's first document, which has ", have,
          " key/value vectors; training needs at least ", need,
          " (2^pq_bits): put a longer document first, or use fewer pq_bits or another codec"));
    }
    // No memory exists before this document, so no reader decodes with codec_ while it trains.
    MEMORIA_RETURN_IF_ERROR(codec_->Train(training));
    codec_ready_ = true;
    codec_persisted_ = false;
  }

  // One batch: the old version's rows go, the new version's rows come, with fresh reference ids.
  rocksdb::WriteBatch batch;
  if (replacing) {
    for (uint64_t id : old.reference_ids) {
      const std::string key = ReferenceKey(id);
      batch.Delete(cf_->references, key);
      batch.Delete(cf_->memories, key);
      batch.Delete(cf_->vectors, key);
    }
    batch.Delete(cf_->collections, CollectionPrefix(old.collection) + document.id);
  }
  DocumentRecord record{document.collection, document.title, document.metadata, 0, {}};
  const size_t n = document.references.size();
  const size_t dim = options_.retrieval_dim;
  std::vector<float> vectors(n * dim);
  for (size_t i = 0; i < n; ++i) {
    const CompiledReference& ref = document.references[i];
    const uint64_t id = next_reference_id_ + i;
    const std::string key = ReferenceKey(id);
    record.reference_ids.push_back(id);
    batch.Put(cf_->references, key, EncodeReference(document.id, ref));
    const std::string blob = EncodeMemoryBlob(ref.memory, *codec_);
    record.memory_bytes += static_cast<int64_t>(blob.size());
    batch.Put(cf_->memories, key, blob);
    std::copy(ref.vector.begin(), ref.vector.end(), vectors.begin() + i * dim);
    batch.Put(cf_->vectors, key,
              rocksdb::Slice(reinterpret_cast<const char*>(ref.vector.data()), dim * sizeof(float)));
  }
  batch.Put(cf_->documents, document.id, EncodeDocument(record));
  batch.Put(cf_->collections, CollectionPrefix(document.collection) + document.id, "");
  batch.Put(cf_->meta, kMetaNextReferenceId, EncodeU64(next_reference_id_ + n));
  if (!codec_persisted_) batch.Put(cf_->meta, kMetaCodecState, codec_->SerializeState());
  rocksdb::WriteOptions write;
  write.sync = options_.sync_writes;
  MEMORIA_RETURN_IF_ERROR(
      FromRocks(db_->Write(write, &batch), absl::StrCat("write document ", document.id)));
  next_reference_id_ += n;
  codec_persisted_ = true;

  {
    absl::MutexLock lock(&mu_);
    const std::vector<uint32_t> tags(n, TagLocked(document.collection));
    if (index_status_.ok()) {
      absl::Status updated = index_->Remove(old.reference_ids);
      if (updated.ok()) updated = index_->Add(record.reference_ids, tags, vectors);
      if (!updated.ok()) {
        index_status_ = absl::InternalError(absl::StrCat(
            "vector index is out of date (reopen the store to rebuild it): ", updated.message()));
      }
    }
    documents_ += replacing ? 0 : 1;
    references_ += static_cast<int64_t>(n) - static_cast<int64_t>(old.reference_ids.size());
    memory_bytes_ += record.memory_bytes - old.memory_bytes;
  }
  for (uint64_t id : old.reference_ids) page_cache_.Erase(id);
  if (++unsaved_writes_ >= tuning_.index_save_interval) {
    // The document is committed either way; a failed save only lengthens the next open.
    SaveIndexLocked().IgnoreError();
  }
  return InfoOf(document.id, std::move(record));
}

absl::Status RocksStore::Delete(const std::string& document_id) {
  absl::MutexLock writer(&write_mu_);
  DocumentRecord old;
  MEMORIA_ASSIGN_OR_RETURN(const bool found, ReadDocument(document_id, &old));
  if (!found) return absl::NotFoundError(absl::StrCat("document \"", document_id, "\" not found"));
  rocksdb::WriteBatch batch;
  for (uint64_t id : old.reference_ids) {
    const std::string key = ReferenceKey(id);
    batch.Delete(cf_->references, key);
    batch.Delete(cf_->memories, key);
    batch.Delete(cf_->vectors, key);
  }
  batch.Delete(cf_->collections, CollectionPrefix(old.collection) + document_id);
  batch.Delete(cf_->documents, document_id);
  rocksdb::WriteOptions write;
  write.sync = options_.sync_writes;
  MEMORIA_RETURN_IF_ERROR(
      FromRocks(db_->Write(write, &batch), absl::StrCat("delete document ", document_id)));
  {
    absl::MutexLock lock(&mu_);
    if (index_status_.ok()) {
      if (absl::Status removed = index_->Remove(old.reference_ids); !removed.ok()) {
        index_status_ = absl::InternalError(absl::StrCat(
            "vector index is out of date (reopen the store to rebuild it): ", removed.message()));
      }
    }
    --documents_;
    references_ -= static_cast<int64_t>(old.reference_ids.size());
    memory_bytes_ -= old.memory_bytes;
  }
  for (uint64_t id : old.reference_ids) page_cache_.Erase(id);
  if (++unsaved_writes_ >= tuning_.index_save_interval) {
    // The delete is committed either way; a failed save only lengthens the next open.
    SaveIndexLocked().IgnoreError();
  }
  return absl::OkStatus();
}

absl::StatusOr<DocumentInfo> RocksStore::Get(const std::string& document_id) const {
  DocumentRecord record;
  MEMORIA_ASSIGN_OR_RETURN(const bool found, ReadDocument(document_id, &record));
  if (!found) return absl::NotFoundError(absl::StrCat("document \"", document_id, "\" not found"));
  return InfoOf(document_id, std::move(record));
}

absl::StatusOr<StoredReference> RocksStore::GetReference(uint64_t reference_id) const {
  std::string value;
  rocksdb::Status s =
      db_->Get(rocksdb::ReadOptions(), cf_->references, ReferenceKey(reference_id), &value);
  if (s.IsNotFound()) return absl::NotFoundError(absl::StrCat("reference ", reference_id, " not found"));
  MEMORIA_RETURN_IF_ERROR(FromRocks(s, absl::StrCat("read reference ", reference_id)));
  StoredReference ref;
  ref.id = reference_id;
  if (!DecodeReference(value, &ref)) {
    return absl::DataLossError(absl::StrCat("corrupt record of reference ", reference_id));
  }
  return ref;
}

absl::StatusOr<ListPage> RocksStore::List(const std::string& collection,
                                          const std::string& page_token, int32_t page_size) const {
  if (page_size < 0) return absl::InvalidArgumentError("page_size must not be negative");
  if (page_size == 0) page_size = kDefaultPageSize;
  page_size = std::min(page_size, kMaxPageSize);
  // The token is the id of the next page's first document, base64 so that it is printable.
  std::string start;
  if (!page_token.empty() && !absl::WebSafeBase64Unescape(page_token, &start)) {
    return absl::InvalidArgumentError("malformed page_token");
  }
  ScopedSnapshot snapshot(db_.get());
  rocksdb::ReadOptions read;
  read.snapshot = snapshot.get();

  // The ids of this page plus the next page's first, in id order.
  std::vector<std::string> ids;
  if (collection.empty()) {
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(read, cf_->documents));
    for (it->Seek(start); it->Valid() && ids.size() <= static_cast<size_t>(page_size); it->Next()) {
      ids.emplace_back(it->key().ToStringView());
    }
    MEMORIA_RETURN_IF_ERROR(FromRocks(it->status(), "list documents"));
  } else {
    const std::string prefix = CollectionPrefix(collection);
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(read, cf_->collections));
    for (it->Seek(prefix + start);
         it->Valid() && it->key().starts_with(prefix) && ids.size() <= static_cast<size_t>(page_size);
         it->Next()) {
      ids.emplace_back(it->key().ToStringView().substr(prefix.size()));
    }
    MEMORIA_RETURN_IF_ERROR(FromRocks(it->status(), "list collection"));
  }
  ListPage page;
  if (ids.size() > static_cast<size_t>(page_size)) {
    page.next_page_token = absl::WebSafeBase64Escape(ids.back());
    ids.pop_back();
  }
  for (const std::string& id : ids) {
    std::string value;
    MEMORIA_RETURN_IF_ERROR(
        FromRocks(db_->Get(read, cf_->documents, id, &value), absl::StrCat("read document ", id)));
    DocumentRecord record;
    if (!DecodeDocument(value, &record)) {
      return absl::DataLossError(absl::StrCat("corrupt record of document \"", id, "\""));
    }
    page.documents.push_back(InfoOf(id, std::move(record)));
  }
  return page;
}

StoreStats RocksStore::Stats() const {
  StoreStats stats;
  {
    absl::ReaderMutexLock lock(&mu_);
    stats.documents = documents_;
    stats.references = references_;
    stats.memory_bytes = memory_bytes_;
    stats.index_kind = index_->kind();
  }
  const PageCache::Counters cache = page_cache_.counters();
  stats.page_cache_hits = cache.hits;
  stats.page_cache_misses = cache.misses;
  stats.page_cache_bytes = cache.bytes;
  return stats;
}

absl::StatusOr<std::vector<RetrievedReference>> RocksStore::Retrieve(
    const std::vector<float>& query, int32_t k, const std::vector<std::string>& collections,
    float min_score) const {
  if (query.size() != static_cast<size_t>(options_.retrieval_dim)) {
    return absl::InvalidArgumentError(absl::StrCat("query has ", query.size(),
                                                   " floats, the store's retrieval_dim is ",
                                                   options_.retrieval_dim));
  }
  if (!AllFinite(query)) return absl::InvalidArgumentError("query is not finite");
  if (k <= 0) return absl::InvalidArgumentError(absl::StrCat("k must be positive, got ", k));
  k = std::min(k, kMaxK);

  std::vector<VectorIndex::Hit> hits;
  {
    absl::ReaderMutexLock lock(&mu_);
    MEMORIA_RETURN_IF_ERROR(index_status_);
    std::vector<uint32_t> tags;
    for (const std::string& name : collections) {
      if (auto found = collection_tags_.find(name); found != collection_tags_.end()) {
        tags.push_back(found->second);
      }
    }
    // Only unknown collections named: nothing can match (an empty tag list would mean all).
    if (!collections.empty() && tags.empty()) return std::vector<RetrievedReference>{};
    MEMORIA_ASSIGN_OR_RETURN(hits, index_->Search(query, k, tags));
  }
  while (!hits.empty() && hits.back().score < min_score) hits.pop_back();

  // The document of each hit. A reference deleted since the search has no row and is dropped.
  const size_t n = hits.size();
  std::vector<std::string> keys(n);
  std::vector<rocksdb::Slice> slices(n);
  for (size_t i = 0; i < n; ++i) {
    keys[i] = ReferenceKey(hits[i].id);
    slices[i] = keys[i];
  }
  std::vector<std::string> values;
  std::vector<rocksdb::Status> statuses = db_->MultiGet(
      rocksdb::ReadOptions(), std::vector<rocksdb::ColumnFamilyHandle*>(n, cf_->references), slices,
      &values);
  std::vector<RetrievedReference> results;
  results.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    if (statuses[i].IsNotFound()) continue;
    MEMORIA_RETURN_IF_ERROR(FromRocks(statuses[i], absl::StrCat("read reference ", hits[i].id)));
    StoredReference ref;
    if (!DecodeReference(values[i], &ref)) {
      return absl::DataLossError(absl::StrCat("corrupt record of reference ", hits[i].id));
    }
    results.push_back(RetrievedReference{hits[i].id, std::move(ref.document_id), hits[i].score});
  }
  return results;
}

absl::StatusOr<std::vector<std::shared_ptr<const MemoryPage>>> RocksStore::Load(
    const std::vector<uint64_t>& reference_ids) const {
  std::vector<std::shared_ptr<const MemoryPage>> pages(reference_ids.size());
  std::vector<size_t> misses;
  for (size_t i = 0; i < reference_ids.size(); ++i) {
    pages[i] = page_cache_.Lookup(reference_ids[i]);
    if (pages[i] == nullptr) misses.push_back(i);
  }
  if (misses.empty()) return pages;
  std::vector<std::string> keys(misses.size());
  std::vector<rocksdb::Slice> slices(misses.size());
  for (size_t m = 0; m < misses.size(); ++m) {
    keys[m] = ReferenceKey(reference_ids[misses[m]]);
    slices[m] = keys[m];
  }
  std::vector<std::string> blobs;
  std::vector<rocksdb::Status> statuses = db_->MultiGet(
      rocksdb::ReadOptions(),
      std::vector<rocksdb::ColumnFamilyHandle*>(misses.size(), cf_->memories), slices, &blobs);
  for (size_t m = 0; m < misses.size(); ++m) {
    const uint64_t id = reference_ids[misses[m]];
    if (statuses[m].IsNotFound()) {
      return absl::NotFoundError(absl::StrCat("reference ", id, " not found"));
    }
    MEMORIA_RETURN_IF_ERROR(FromRocks(statuses[m], absl::StrCat("read memory ", id)));
    auto page = MemoryPage::Decode(blobs[m], *codec_, fingerprint_.n_kv_heads, fingerprint_.head_dim);
    if (!page.ok()) {
      return absl::DataLossError(
          absl::StrCat("memory of reference ", id, ": ", page.status().message()));
    }
    page_cache_.Insert(id, *page);
    pages[misses[m]] = std::move(*page);
  }
  return pages;
}

}  // namespace memoria
