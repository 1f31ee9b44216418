#include "memstore/memory_blob.h"

#include <cstring>
#include <limits>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace memoria {
namespace {

using ::testing::HasSubstr;

constexpr int32_t kHeadDim = 32;
constexpr int32_t kKvHeads = 3;

// Bit-at-a-time CRC32C, independent of the table-driven one under test.
uint32_t ReferenceCrc32c(std::string_view data) {
  uint32_t crc = 0xFFFFFFFFu;
  for (char ch : data) {
    crc ^= static_cast<uint8_t>(ch);
    for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0x82F63B78u & (0u - (crc & 1u)));
  }
  return ~crc;
}

// Replaces the trailer so a deliberately malformed body passes the checksum and reaches the
// structural checks behind it.
std::string Reseal(std::string blob) {
  blob.resize(blob.size() - 4);
  const uint32_t crc = ReferenceCrc32c(blob);
  blob.append(reinterpret_cast<const char*>(&crc), 4);
  return blob;
}

std::unique_ptr<VectorCodec> MakeCodec(CodecKind kind, int32_t dim = kHeadDim) {
  CodecOptions o;
  o.kind = kind;
  o.dim = dim;
  o.int4_group = 16;
  o.pq_subvectors = 8;
  o.pq_bits = 6;
  auto codec = VectorCodec::Create(o);
  EXPECT_TRUE(codec.ok()) << codec.status();
  if (!codec.ok()) return nullptr;
  if ((*codec)->NeedsTraining()) {
    std::mt19937 rng(99);
    std::normal_distribution<float> dist;
    std::vector<float> train(1024 * dim);
    for (float& v : train) v = dist(rng);
    EXPECT_TRUE((*codec)->Train(train).ok());
  }
  return std::move(*codec);
}

// Layers {1, 4, 5}, three KV heads, entry counts varying per head (some zero).
ReferenceKv MakeMemory(uint32_t seed, std::vector<int32_t> layers = {1, 4, 5}) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.5f);
  ReferenceKv m;
  m.head_dim = kHeadDim;
  m.n_kv_heads = kKvHeads;
  m.layers = std::move(layers);
  m.heads.resize(m.layers.size() * kKvHeads);
  for (size_t h = 0; h < m.heads.size(); ++h) {
    const int count = static_cast<int>((h * 5 + seed) % 7);  // 0..6
    ReferenceKv::Head& head = m.heads[h];
    for (int i = 0; i < count; ++i) head.positions.push_back(static_cast<int32_t>(1 + 11 * i + h));
    head.keys.resize(count * kHeadDim);
    head.values.resize(count * kHeadDim);
    for (float& v : head.keys) v = dist(rng);
    for (float& v : head.values) v = dist(rng);
  }
  return m;
}

std::vector<float> CodecRoundTrip(const VectorCodec& codec, const std::vector<float>& x) {
  std::string bytes;
  codec.Encode(x, &bytes);
  std::vector<float> y(x.size());
  EXPECT_TRUE(codec.Decode(bytes, x.size() / codec.options().dim, y.data()).ok());
  return y;
}

TEST(MemoryBlobTest, ReferenceCrcMatchesTheStandardCheckValue) {
  EXPECT_EQ(ReferenceCrc32c("123456789"), 0xE3069283u);
}

TEST(MemoryBlobTest, RoundTripsEveryCodec) {
  for (CodecKind kind : {CodecKind::kF32, CodecKind::kF16, CodecKind::kInt8, CodecKind::kInt4,
                         CodecKind::kPq}) {
    SCOPED_TRACE(CodecName(kind));
    auto codec = MakeCodec(kind);
    const ReferenceKv memory = MakeMemory(static_cast<uint32_t>(kind));
    const std::string blob = EncodeMemoryBlob(memory, *codec);

    // Header and trailer as docs/memory_blob.md describes them.
    ASSERT_GE(blob.size(), 16u);
    EXPECT_EQ(blob.substr(0, 4), "MMEM");
    EXPECT_EQ(blob[4], 1);
    EXPECT_EQ(blob[5], static_cast<char>(kind));
    uint32_t crc;
    std::memcpy(&crc, blob.data() + blob.size() - 4, 4);
    EXPECT_EQ(crc, ReferenceCrc32c(std::string_view(blob).substr(0, blob.size() - 4)));
    size_t entries = 0;
    for (const auto& head : memory.heads) entries += head.positions.size();
    EXPECT_EQ(blob.size(), 12 + 2 * memory.layers.size() + 2 * memory.heads.size() +
                               entries * (2 + 2 * codec->EncodedBytes()) + 4);

    auto page = MemoryPage::Decode(blob, *codec, kKvHeads, kHeadDim);
    ASSERT_TRUE(page.ok()) << page.status();
    const ReferenceKv& decoded = (*page)->memory();
    EXPECT_EQ(decoded.head_dim, kHeadDim);
    EXPECT_EQ(decoded.n_kv_heads, kKvHeads);
    EXPECT_EQ(decoded.layers, memory.layers);
    ASSERT_EQ(decoded.heads.size(), memory.heads.size());
    for (size_t h = 0; h < memory.heads.size(); ++h) {
      EXPECT_EQ(decoded.heads[h].positions, memory.heads[h].positions) << h;
      // The page holds exactly what the codec reconstructs, vector by vector.
      EXPECT_EQ(decoded.heads[h].keys, CodecRoundTrip(*codec, memory.heads[h].keys)) << h;
      EXPECT_EQ(decoded.heads[h].values, CodecRoundTrip(*codec, memory.heads[h].values)) << h;
      if (kind == CodecKind::kF32) {
        EXPECT_EQ(decoded.heads[h].keys, memory.heads[h].keys);
        EXPECT_EQ(decoded.heads[h].values, memory.heads[h].values);
      }
    }
    EXPECT_GE((*page)->bytes(), entries * 2 * kHeadDim * sizeof(float));
  }
}

TEST(MemoryBlobTest, RoundTripsAMemoryWithoutLayers) {
  auto codec = MakeCodec(CodecKind::kInt8);
  const std::string blob = EncodeMemoryBlob(MakeMemory(1, {}), *codec);
  EXPECT_EQ(blob.size(), 16u);
  auto page = MemoryPage::Decode(blob, *codec, kKvHeads, kHeadDim);
  ASSERT_TRUE(page.ok()) << page.status();
  EXPECT_TRUE((*page)->memory().layers.empty());
  EXPECT_EQ((*page)->Entries(0, 0).count, 0);
}

TEST(MemoryBlobTest, EverySingleByteFlipIsDetected) {
  auto codec = MakeCodec(CodecKind::kInt8);
  const std::string blob = EncodeMemoryBlob(MakeMemory(3), *codec);
  for (size_t i = 0; i < blob.size(); ++i) {
    for (uint8_t mask : {uint8_t{0x01}, uint8_t{0x80}, uint8_t{0xFF}}) {
      std::string bad = blob;
      bad[i] = static_cast<char>(bad[i] ^ mask);
      auto page = MemoryPage::Decode(bad, *codec, kKvHeads, kHeadDim);
      ASSERT_EQ(page.status().code(), absl::StatusCode::kDataLoss) << i;
      EXPECT_EQ(page.status().message(), "memory blob: checksum mismatch") << i;
    }
  }
}

TEST(MemoryBlobTest, EveryTruncationIsDataLoss) {
  auto codec = MakeCodec(CodecKind::kInt4);
  const std::string blob = EncodeMemoryBlob(MakeMemory(4), *codec);
  for (size_t n = 0; n < blob.size(); ++n) {
    auto page = MemoryPage::Decode(std::string_view(blob).substr(0, n), *codec, kKvHeads, kHeadDim);
    EXPECT_EQ(page.status().code(), absl::StatusCode::kDataLoss) << n;
  }
  EXPECT_EQ(MemoryPage::Decode(blob + '\0', *codec, kKvHeads, kHeadDim).status().code(),
            absl::StatusCode::kDataLoss);
}

TEST(MemoryBlobTest, RejectsBlobsOfAnotherShapeOrCodec) {
  auto f16 = MakeCodec(CodecKind::kF16);
  const std::string blob = EncodeMemoryBlob(MakeMemory(5), *f16);
  EXPECT_TRUE(MemoryPage::Decode(blob, *f16, kKvHeads, kHeadDim).ok());

  auto kv = MemoryPage::Decode(blob, *f16, kKvHeads + 1, kHeadDim);
  EXPECT_EQ(kv.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(kv.status().message()), HasSubstr("n_kv_heads"));

  auto f16_wide = MakeCodec(CodecKind::kF16, 2 * kHeadDim);
  auto dim = MemoryPage::Decode(blob, *f16_wide, kKvHeads, 2 * kHeadDim);
  EXPECT_EQ(dim.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(dim.status().message()), HasSubstr("head_dim"));

  // The codec must match the caller's own expectation before the blob is even read.
  EXPECT_EQ(MemoryPage::Decode(blob, *f16_wide, kKvHeads, kHeadDim).status().code(),
            absl::StatusCode::kInvalidArgument);

  auto int8 = MakeCodec(CodecKind::kInt8);
  auto kind = MemoryPage::Decode(blob, *int8, kKvHeads, kHeadDim);
  EXPECT_EQ(kind.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(kind.status().message()), HasSubstr("codec"));
}

// Structural checks behind the checksum, reached with re-sealed blobs.
TEST(MemoryBlobTest, RejectsMalformedBodiesWithAValidChecksum) {
  auto codec = MakeCodec(CodecKind::kInt8);
  const std::string blob = EncodeMemoryBlob(MakeMemory(6), *codec);  // layers {1, 4, 5}
  auto decode = [&](const std::string& b) {
    return MemoryPage::Decode(b, *codec, kKvHeads, kHeadDim).status();
  };
  auto put16 = [](std::string* b, size_t at, uint16_t v) { std::memcpy(b->data() + at, &v, 2); };
  ASSERT_TRUE(decode(Reseal(blob)).ok());

  std::string magic = blob;
  magic[0] = 'X';
  EXPECT_THAT(std::string(decode(Reseal(magic)).message()), HasSubstr("magic"));

  std::string version = blob;
  version[4] = 2;
  EXPECT_THAT(std::string(decode(Reseal(version)).message()), HasSubstr("version"));

  std::string order = blob;
  put16(&order, 14, 4);  // layers {1, 4, 4}
  put16(&order, 16, 4);
  EXPECT_THAT(std::string(decode(Reseal(order)).message()), HasSubstr("layer id"));

  std::string too_high = blob;
  put16(&too_high, 16, 4096);
  EXPECT_THAT(std::string(decode(Reseal(too_high)).message()), HasSubstr("layer id"));

  std::string layers = blob;
  put16(&layers, 10, 60000);
  EXPECT_EQ(decode(Reseal(layers)).code(), absl::StatusCode::kDataLoss);

  std::string count = blob;
  put16(&count, 18, 65535);  // first head's entry count
  EXPECT_THAT(std::string(decode(Reseal(count)).message()), HasSubstr("claims 65535 entries"));

  std::string trailing = blob;
  trailing.insert(trailing.size() - 4, "zz");
  EXPECT_THAT(std::string(decode(Reseal(trailing)).message()), HasSubstr("trailing"));

  // A NaN scale inside an entry, found by the codec, names the layer and head.
  const ReferenceKv memory = MakeMemory(6);
  ASSERT_GT(memory.heads[0].positions.size(), 0u);
  std::string scale = blob;
  const size_t first_key = 18 + 2 + 2 * memory.heads[0].positions.size();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::memcpy(scale.data() + first_key, &nan, sizeof nan);
  absl::Status s = decode(Reseal(scale));
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(s.message()), HasSubstr("layer 1 head 0 keys"));

  for (const std::string* bad : {&magic, &version, &order, &too_high, &layers, &count, &trailing,
                                 &scale}) {
    EXPECT_EQ(decode(Reseal(*bad)).code(), absl::StatusCode::kDataLoss);
  }
}

TEST(MemoryBlobTest, EntriesPointIntoThePage) {
  auto codec = MakeCodec(CodecKind::kF32);
  const ReferenceKv memory = MakeMemory(7);
  auto page = MemoryPage::Decode(EncodeMemoryBlob(memory, *codec), *codec, kKvHeads, kHeadDim);
  ASSERT_TRUE(page.ok()) << page.status();
  // Device caches key entries by page_id: unique per (page, layer, head), across pages too.
  auto again = MemoryPage::Decode(EncodeMemoryBlob(memory, *codec), *codec, kKvHeads, kHeadDim);
  ASSERT_TRUE(again.ok()) << again.status();
  std::set<uint64_t> page_ids;
  for (size_t l = 0; l < memory.layers.size(); ++l) {
    for (int32_t g = 0; g < kKvHeads; ++g) {
      const ReferenceKv::Head& want = memory.At(l, g);
      const MemoryEntries e = (*page)->Entries(memory.layers[l], g);
      ASSERT_EQ(e.count, static_cast<int32_t>(want.positions.size()));
      if (e.count == 0) continue;
      EXPECT_EQ(e.type, GgmlType::kF32);
      EXPECT_NE(e.page_id, 0u);
      EXPECT_TRUE(page_ids.insert(e.page_id).second);
      EXPECT_TRUE(page_ids.insert((*again)->Entries(memory.layers[l], g).page_id).second);
      EXPECT_EQ(e.keys, (*page)->memory().At(l, g).keys.data());
      EXPECT_EQ(std::vector<float>(static_cast<const float*>(e.keys),
                                   static_cast<const float*>(e.keys) + e.count * kHeadDim),
                want.keys);
      EXPECT_EQ(std::vector<float>(static_cast<const float*>(e.values),
                                   static_cast<const float*>(e.values) + e.count * kHeadDim),
                want.values);
      EXPECT_EQ(std::vector<int32_t>(e.positions, e.positions + e.count), want.positions);
    }
  }
  EXPECT_EQ((*page)->Entries(0, 0).count, 0);  // layer not stored
  EXPECT_EQ((*page)->Entries(2, 1).count, 0);
  EXPECT_EQ((*page)->Entries(1, kKvHeads).count, 0);  // no such head
  EXPECT_EQ((*page)->Entries(1, -1).count, 0);
}

TEST(MemoryBlobTest, AddToViewAddsEveryHeadAndKeepsThePageAlive) {
  auto codec = MakeCodec(CodecKind::kF16);
  const ReferenceKv memory = MakeMemory(8);
  auto decoded = MemoryPage::Decode(EncodeMemoryBlob(memory, *codec), *codec, kKvHeads, kHeadDim);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  std::shared_ptr<const MemoryPage> page = *decoded;
  std::weak_ptr<const MemoryPage> weak = page;

  MemoryView view(/*n_layers=*/8, kKvHeads, MemoryRotation::kStoredPositions);
  AddToView(page, &view);
  AddToView(page, &view);  // a second reference sharing the page
  page.reset();
  decoded = absl::InternalError("dropped");
  ASSERT_FALSE(weak.expired());

  int64_t total = 0;
  for (int32_t layer = 0; layer < 8; ++layer) {
    auto it = std::find(memory.layers.begin(), memory.layers.end(), layer);
    for (int32_t g = 0; g < kKvHeads; ++g) {
      auto entries = view.Entries(layer, g);
      if (it == memory.layers.end()) {
        EXPECT_TRUE(entries.empty());
        continue;
      }
      const ReferenceKv::Head& want = memory.At(it - memory.layers.begin(), g);
      if (want.positions.empty()) {
        EXPECT_TRUE(entries.empty());
        continue;
      }
      ASSERT_EQ(entries.size(), 2u);
      EXPECT_EQ(entries[0].count, static_cast<int32_t>(want.positions.size()));
      EXPECT_EQ(std::vector<int32_t>(entries[1].positions, entries[1].positions + entries[1].count),
                want.positions);
      total += 2 * want.positions.size();
    }
  }
  EXPECT_EQ(view.TotalEntries(), total);
  EXPECT_GT(total, 0);
}

TEST(MemoryBlobDeathTest, EncodingAMalformedMemoryAborts) {
  auto codec = MakeCodec(CodecKind::kF32, 2 * kHeadDim);
  const ReferenceKv memory = MakeMemory(9);
  EXPECT_DEATH(EncodeMemoryBlob(memory, *codec), "head_dim");
}

}  // namespace
}  // namespace memoria
