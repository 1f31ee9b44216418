#include "memstore/memory_blob.h"

#include <algorithm>
#include <atomic>
#include <array>
#include <bit>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace memoria {

static_assert(std::endian::native == std::endian::little,
              "memory blobs are little-endian and read with memcpy");

namespace {

// Layout in docs/memory_blob.md.
constexpr char kMagic[4] = {'M', 'M', 'E', 'M'};
constexpr uint8_t kVersion = 1;
constexpr size_t kHeaderBytes = 4 + 1 + 1 + 2 + 2 + 2;  // magic, version, codec, dims, n_layers
constexpr size_t kTrailerBytes = 4;                     // CRC32C
// Layer ids are model layer indices; no supported model comes near this, and the bound keeps a
// corrupt id from sizing anything downstream.
constexpr int32_t kMaxLayerId = 4096;

// CRC32C (Castagnoli, reflected polynomial 0x82F63B78), one table lookup per byte. Blobs are tens
// of KiB and read once per page-cache miss, so the simple form is fast enough.
constexpr std::array<uint32_t, 256> MakeCrcTable() {
  std::array<uint32_t, 256> table{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    table[i] = c;
  }
  return table;
}
constexpr std::array<uint32_t, 256> kCrcTable = MakeCrcTable();

uint32_t Crc32c(std::string_view data) {
  uint32_t crc = 0xFFFFFFFFu;
  for (char ch : data) crc = kCrcTable[(crc ^ static_cast<uint8_t>(ch)) & 0xFF] ^ (crc >> 8);
  return crc ^ 0xFFFFFFFFu;
}

[[noreturn]] void Die(const std::string& message) {
  std::fprintf(stderr, "memoria: EncodeMemoryBlob: %s\n", message.c_str());
  std::abort();
}

void PutU16(std::string* out, uint32_t v) {
  const uint16_t x = static_cast<uint16_t>(v);
  out->append(reinterpret_cast<const char*>(&x), sizeof x);
}

// Reads fixed-size fields off the front of a blob, failing with DataLoss instead of reading past
// its end.
class Reader {
 public:
  explicit Reader(std::string_view data) : data_(data) {}

  size_t remaining() const { return data_.size(); }

  absl::Status Bytes(size_t n, const char* what, std::string_view* out) {
    if (n > data_.size()) {
      return absl::DataLossError(absl::StrCat("memory blob: truncated ", what, " (", n,
                                              " bytes needed, ", data_.size(), " left)"));
    }
    *out = data_.substr(0, n);
    data_.remove_prefix(n);
    return absl::OkStatus();
  }

  absl::Status U16(const char* what, uint16_t* out) {
    std::string_view b;
    if (absl::Status s = Bytes(sizeof *out, what, &b); !s.ok()) return s;
    std::memcpy(out, b.data(), sizeof *out);
    return absl::OkStatus();
  }

 private:
  std::string_view data_;
};

template <typename T>
size_t HeapBytes(const std::vector<T>& v) {
  return v.capacity() * sizeof(T);
}

}  // namespace

std::string EncodeMemoryBlob(const ReferenceKv& memory, const VectorCodec& codec) {
  // A malformed ReferenceKv is a bug in the compiler that produced it, not bad input.
  const int32_t head_dim = memory.head_dim;
  if (head_dim != codec.options().dim) {
    Die(absl::StrCat("head_dim ", head_dim, " != codec dim ", codec.options().dim));
  }
  if (head_dim <= 0 || head_dim > 0xFFFF || memory.n_kv_heads <= 0 || memory.n_kv_heads > 0xFFFF) {
    Die(absl::StrCat("shape head_dim=", head_dim, " n_kv_heads=", memory.n_kv_heads));
  }
  if (memory.heads.size() != memory.layers.size() * memory.n_kv_heads) {
    Die(absl::StrCat(memory.heads.size(), " heads for ", memory.layers.size(), " layers x ",
                     memory.n_kv_heads, " kv heads"));
  }
  for (size_t i = 0; i < memory.layers.size(); ++i) {
    const int32_t id = memory.layers[i];
    if (id < 0 || id >= kMaxLayerId || (i > 0 && id <= memory.layers[i - 1])) {
      Die(absl::StrCat("layer ids must ascend within [0, ", kMaxLayerId, "), got ", id));
    }
  }

  std::string out(kMagic, sizeof kMagic);
  out.push_back(static_cast<char>(kVersion));
  out.push_back(static_cast<char>(codec.options().kind));
  PutU16(&out, head_dim);
  PutU16(&out, memory.n_kv_heads);
  PutU16(&out, memory.layers.size());
  for (int32_t id : memory.layers) PutU16(&out, id);
  for (const ReferenceKv::Head& head : memory.heads) {
    const size_t count = head.positions.size();
    if (count > 0xFFFF || head.keys.size() != count * head_dim ||
        head.values.size() != count * head_dim) {
      Die(absl::StrCat("head with ", count, " positions, ", head.keys.size(), " key and ",
                       head.values.size(), " value floats"));
    }
    PutU16(&out, count);
    for (int32_t p : head.positions) {
      if (p < 0 || p > 0xFFFF) Die(absl::StrCat("position ", p, " outside [0, 65535]"));
      PutU16(&out, p);
    }
    codec.Encode(head.keys, &out);
    codec.Encode(head.values, &out);
  }
  const uint32_t crc = Crc32c(out);
  out.append(reinterpret_cast<const char*>(&crc), sizeof crc);
  return out;
}

absl::StatusOr<std::shared_ptr<const MemoryPage>> MemoryPage::Decode(std::string_view blob,
                                                                      const VectorCodec& codec,
                                                                      int32_t n_kv_heads,
                                                                      int32_t head_dim) {
  if (codec.options().dim != head_dim) {
    return absl::InvalidArgumentError(absl::StrCat("memory blob: codec dim ", codec.options().dim,
                                                   " != expected head_dim ", head_dim));
  }
  if (blob.size() < kHeaderBytes + kTrailerBytes) {
    return absl::DataLossError(absl::StrCat("memory blob: truncated (", blob.size(), " bytes)"));
  }
  // The checksum comes first so that every later check reads bytes known to be what was written.
  const std::string_view body = blob.substr(0, blob.size() - kTrailerBytes);
  uint32_t stored_crc;
  std::memcpy(&stored_crc, blob.data() + body.size(), sizeof stored_crc);
  if (Crc32c(body) != stored_crc) return absl::DataLossError("memory blob: checksum mismatch");

  Reader in(body);
  std::string_view magic;
  if (absl::Status s = in.Bytes(sizeof kMagic, "magic", &magic); !s.ok()) return s;
  if (magic != std::string_view(kMagic, sizeof kMagic)) {
    return absl::DataLossError("memory blob: bad magic");
  }
  std::string_view version_and_kind;
  if (absl::Status s = in.Bytes(2, "version", &version_and_kind); !s.ok()) return s;
  const uint8_t version = static_cast<uint8_t>(version_and_kind[0]);
  const uint8_t kind = static_cast<uint8_t>(version_and_kind[1]);
  if (version != kVersion) {
    return absl::DataLossError(absl::StrCat("memory blob: unsupported version ", version));
  }
  if (kind != static_cast<uint8_t>(codec.options().kind)) {
    return absl::DataLossError(absl::StrCat("memory blob: codec kind ", kind, ", store uses ",
                                            CodecName(codec.options().kind)));
  }
  uint16_t blob_head_dim, blob_kv_heads, n_layers;
  if (absl::Status s = in.U16("head_dim", &blob_head_dim); !s.ok()) return s;
  if (absl::Status s = in.U16("n_kv_heads", &blob_kv_heads); !s.ok()) return s;
  if (absl::Status s = in.U16("n_layers", &n_layers); !s.ok()) return s;
  if (blob_head_dim != head_dim || blob_kv_heads != n_kv_heads) {
    return absl::DataLossError(absl::StrCat("memory blob: shape head_dim=", blob_head_dim,
                                            " n_kv_heads=", blob_kv_heads, ", expected head_dim=",
                                            head_dim, " n_kv_heads=", n_kv_heads));
  }
  if (n_layers > kMaxLayerId) {
    return absl::DataLossError(absl::StrCat("memory blob: ", n_layers, " layers"));
  }

  std::shared_ptr<MemoryPage> page(new MemoryPage);
  ReferenceKv& memory = page->memory_;
  memory.head_dim = head_dim;
  memory.n_kv_heads = n_kv_heads;
  memory.layers.resize(n_layers);
  for (uint16_t i = 0; i < n_layers; ++i) {
    uint16_t id;
    if (absl::Status s = in.U16("layer id", &id); !s.ok()) return s;
    if (id >= kMaxLayerId || (i > 0 && id <= memory.layers[i - 1])) {
      return absl::DataLossError(absl::StrCat("memory blob: layer id ", id, " at index ", i,
                                              " is not ascending below ", kMaxLayerId));
    }
    memory.layers[i] = id;
  }

  const size_t vector_bytes = codec.EncodedBytes();
  memory.heads.resize(static_cast<size_t>(n_layers) * n_kv_heads);
  for (size_t h = 0; h < memory.heads.size(); ++h) {
    ReferenceKv::Head& head = memory.heads[h];
    uint16_t count;
    if (absl::Status s = in.U16("entry count", &count); !s.ok()) return s;
    // Check the whole head fits before allocating for it.
    const size_t need = count * (sizeof(uint16_t) + 2 * vector_bytes);
    if (need > in.remaining()) {
      return absl::DataLossError(absl::StrCat("memory blob: layer ", memory.layers[h / n_kv_heads],
                                              " head ", h % n_kv_heads, " claims ", count,
                                              " entries (", need, " bytes), ", in.remaining(),
                                              " bytes left"));
    }
    std::string_view positions, keys, values;
    if (absl::Status s = in.Bytes(count * sizeof(uint16_t), "positions", &positions); !s.ok()) {
      return s;
    }
    if (absl::Status s = in.Bytes(count * vector_bytes, "keys", &keys); !s.ok()) return s;
    if (absl::Status s = in.Bytes(count * vector_bytes, "values", &values); !s.ok()) return s;
    head.positions.resize(count);
    for (uint16_t i = 0; i < count; ++i) {
      uint16_t p;
      std::memcpy(&p, positions.data() + i * sizeof p, sizeof p);
      head.positions[i] = p;
    }
    head.keys.resize(static_cast<size_t>(count) * head_dim);
    head.values.resize(static_cast<size_t>(count) * head_dim);
    if (absl::Status s = codec.Decode(keys, count, head.keys.data()); !s.ok()) {
      return absl::DataLossError(absl::StrCat("memory blob: layer ", memory.layers[h / n_kv_heads],
                                              " head ", h % n_kv_heads, " keys: ", s.message()));
    }
    if (absl::Status s = codec.Decode(values, count, head.values.data()); !s.ok()) {
      return absl::DataLossError(absl::StrCat("memory blob: layer ", memory.layers[h / n_kv_heads],
                                              " head ", h % n_kv_heads, " values: ",
                                              s.message()));
    }
  }
  if (in.remaining() != 0) {
    return absl::DataLossError(
        absl::StrCat("memory blob: ", in.remaining(), " trailing bytes after the last head"));
  }
  return std::shared_ptr<const MemoryPage>(std::move(page));
}

MemoryPage::MemoryPage() {
  static std::atomic<uint64_t> next_serial{1};
  serial_ = next_serial.fetch_add(1, std::memory_order_relaxed);
}

size_t MemoryPage::bytes() const {
  size_t n = sizeof(*this) + HeapBytes(memory_.layers) + HeapBytes(memory_.heads);
  for (const ReferenceKv::Head& head : memory_.heads) {
    n += HeapBytes(head.positions) + HeapBytes(head.keys) + HeapBytes(head.values);
  }
  return n;
}

MemoryEntries MemoryPage::Entries(int32_t layer, int32_t kv_head) const {
  MemoryEntries entries;
  if (kv_head < 0 || kv_head >= memory_.n_kv_heads) return entries;
  auto it = std::lower_bound(memory_.layers.begin(), memory_.layers.end(), layer);
  if (it == memory_.layers.end() || *it != layer) return entries;
  const ReferenceKv::Head& head = memory_.At(it - memory_.layers.begin(), kv_head);
  if (head.positions.empty()) return entries;
  entries.count = static_cast<int32_t>(head.positions.size());
  entries.type = GgmlType::kF32;
  entries.keys = head.keys.data();
  entries.values = head.values.data();
  entries.positions = head.positions.data();
  // Unique for this page's (layer, head): device-side caches key uploaded entries by it.
  const auto head_index = static_cast<uint64_t>((it - memory_.layers.begin()) * memory_.n_kv_heads + kv_head);
  entries.page_id = (serial_ << 20) | head_index;
  return entries;
}

void AddToView(const std::shared_ptr<const MemoryPage>& page, MemoryView* view) {
  const ReferenceKv& memory = page->memory();
  // Decode checked n_kv_heads against the model; a layer id the model lacks can only come from a
  // store built for another model, and skipping it beats indexing past the view.
  const int32_t n_kv_heads = std::min(memory.n_kv_heads, view->n_kv_heads());
  for (int32_t layer : memory.layers) {
    if (layer >= view->n_layers()) break;
    for (int32_t g = 0; g < n_kv_heads; ++g) {
      MemoryEntries entries = page->Entries(layer, g);
      if (entries.count > 0) view->Add(layer, g, entries);
    }
  }
  view->KeepAlive(page);
}

}  // namespace memoria
