#include <algorithm>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <set>
#include <thread>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "memstore/page_cache.h"
#include "memstore/rocks_store.h"
#include "tests/memstore/store_test_util.h"
#include "tests/test_support.h"

namespace memoria {
namespace {

using ::memoria::testing::MakeDocument;
using ::memoria::testing::RawDb;
using ::memoria::testing::RandomMemory;
using ::memoria::testing::RandomUnitVector;
using ::memoria::testing::TempDir;
using ::memoria::testing::TestFingerprint;
using ::memoria::testing::TestOptions;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::unique_ptr<RocksStore> OpenStore(const std::string& path,
                                      const MemoryStoreOptions& options = TestOptions(),
                                      const RocksStoreTuning& tuning = {}) {
  auto store = RocksStore::Open(options, tuning, path, TestFingerprint());
  EXPECT_TRUE(store.ok()) << store.status();
  return store.ok() ? std::move(*store) : nullptr;
}

// The top hit of the reference's own vector, searched among all collections.
uint64_t TopHit(const MemoryStore& store, const std::vector<float>& vector) {
  auto hits = store.Retrieve(vector, 1, {}, -1.0f);
  EXPECT_TRUE(hits.ok()) << hits.status();
  return hits.ok() && !hits->empty() ? (*hits)[0].reference_id : 0;
}

std::vector<std::string> Ids(const ListPage& page) {
  std::vector<std::string> ids;
  for (const DocumentInfo& d : page.documents) ids.push_back(d.id);
  return ids;
}

TEST(StoreTest, PutGetReferenceLoad) {
  auto store = OpenStore(TempDir("store_put_get"));
  ASSERT_NE(store, nullptr);
  const Document doc = MakeDocument("doc-1", "books", 1, 3);
  auto info = store->Put(doc);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->id, "doc-1");
  ASSERT_EQ(info->reference_ids.size(), 3u);
  EXPECT_GT(info->memory_bytes, 0);

  auto got = store->Get("doc-1");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->collection, "books");
  EXPECT_EQ(got->title, doc.title);
  EXPECT_EQ(got->metadata, doc.metadata);
  EXPECT_EQ(got->reference_ids, info->reference_ids);
  EXPECT_EQ(got->memory_bytes, info->memory_bytes);

  for (size_t j = 0; j < 3; ++j) {
    auto ref = store->GetReference(info->reference_ids[j]);
    ASSERT_TRUE(ref.ok()) << ref.status();
    EXPECT_EQ(ref->document_id, "doc-1");
    EXPECT_EQ(ref->text, doc.references[j].text);
    EXPECT_EQ(ref->token_begin, doc.references[j].token_begin);
    EXPECT_EQ(ref->token_end, doc.references[j].token_end);
    EXPECT_EQ(TopHit(*store, doc.references[j].vector), info->reference_ids[j]);
  }
  auto pages = store->Load(info->reference_ids);
  ASSERT_TRUE(pages.ok()) << pages.status();
  ASSERT_EQ(pages->size(), 3u);
  for (size_t j = 0; j < 3; ++j) {  // kF32 round-trips exactly
    const ReferenceKv& kv = (*pages)[j]->memory();
    EXPECT_EQ(kv.layers, doc.references[j].memory.layers);
    ASSERT_EQ(kv.heads.size(), doc.references[j].memory.heads.size());
    EXPECT_EQ(kv.heads[3].keys, doc.references[j].memory.heads[3].keys);
    EXPECT_EQ(kv.heads[3].values, doc.references[j].memory.heads[3].values);
    EXPECT_EQ(kv.heads[3].positions, doc.references[j].memory.heads[3].positions);
  }

  const StoreStats stats = store->Stats();
  EXPECT_EQ(stats.documents, 1);
  EXPECT_EQ(stats.references, 3);
  EXPECT_EQ(stats.memory_bytes, info->memory_bytes);
  EXPECT_EQ(stats.index_kind, "flat");

  EXPECT_TRUE(absl::IsNotFound(store->Get("nope").status()));
  EXPECT_TRUE(absl::IsNotFound(store->GetReference(999).status()));
  EXPECT_TRUE(absl::IsNotFound(store->Load({info->reference_ids[0], 999}).status()));
}

TEST(StoreTest, ListPagesInIdOrderPerCollection) {
  auto store = OpenStore(TempDir("store_list"));
  ASSERT_NE(store, nullptr);
  for (const char* id : {"e", "a", "d", "b", "c"}) {
    ASSERT_TRUE(store->Put(MakeDocument(id, std::string(id) < "c" ? "x" : "y", 1, 1)).ok());
  }
  auto first = store->List("", "", 2);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_THAT(Ids(*first), ElementsAre("a", "b"));
  ASSERT_FALSE(first->next_page_token.empty());
  auto second = store->List("", first->next_page_token, 2);
  ASSERT_TRUE(second.ok());
  EXPECT_THAT(Ids(*second), ElementsAre("c", "d"));
  auto third = store->List("", second->next_page_token, 2);
  ASSERT_TRUE(third.ok());
  EXPECT_THAT(Ids(*third), ElementsAre("e"));
  EXPECT_TRUE(third->next_page_token.empty());

  auto x = store->List("x", "", 10);
  ASSERT_TRUE(x.ok());
  EXPECT_THAT(Ids(*x), ElementsAre("a", "b"));
  auto y1 = store->List("y", "", 2);
  ASSERT_TRUE(y1.ok());
  EXPECT_THAT(Ids(*y1), ElementsAre("c", "d"));
  auto y2 = store->List("y", y1->next_page_token, 2);
  ASSERT_TRUE(y2.ok());
  EXPECT_THAT(Ids(*y2), ElementsAre("e"));
  EXPECT_EQ(y2->documents[0].collection, "y");
  auto none = store->List("xy", "", 10);  // a prefix of no collection's name boundary
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->documents.empty());

  EXPECT_TRUE(absl::IsInvalidArgument(store->List("", "%%%", 2).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(store->List("", "", -1).status()));
}

TEST(StoreTest, DeleteRemovesEverything) {
  auto store = OpenStore(TempDir("store_delete"));
  ASSERT_NE(store, nullptr);
  const Document doc = MakeDocument("gone", "c", 1, 2);
  auto info = store->Put(doc);
  ASSERT_TRUE(info.ok());
  ASSERT_TRUE(store->Put(MakeDocument("kept", "c", 1, 2)).ok());
  ASSERT_TRUE(store->Load(info->reference_ids).ok());  // cached now

  ASSERT_TRUE(store->Delete("gone").ok());
  EXPECT_TRUE(absl::IsNotFound(store->Get("gone").status()));
  EXPECT_TRUE(absl::IsNotFound(store->Delete("gone")));
  for (uint64_t id : info->reference_ids) {
    EXPECT_TRUE(absl::IsNotFound(store->GetReference(id).status()));
    EXPECT_TRUE(absl::IsNotFound(store->Load({id}).status()));
  }
  for (const CompiledReference& ref : doc.references) {
    auto hits = store->Retrieve(ref.vector, 10, {}, -1.0f);
    ASSERT_TRUE(hits.ok());
    for (const RetrievedReference& hit : *hits) EXPECT_EQ(hit.document_id, "kept");
  }
  auto listed = store->List("c", "", 10);
  ASSERT_TRUE(listed.ok());
  EXPECT_THAT(Ids(*listed), ElementsAre("kept"));
  EXPECT_EQ(store->Stats().documents, 1);
  EXPECT_EQ(store->Stats().references, 2);
}

TEST(StoreTest, RePutReplacesOldReferences) {
  auto store = OpenStore(TempDir("store_reput"));
  ASSERT_NE(store, nullptr);
  const Document v1 = MakeDocument("doc", "old-coll", 1, 3);
  auto info1 = store->Put(v1);
  ASSERT_TRUE(info1.ok());
  const Document v2 = MakeDocument("doc", "new-coll", 2, 2);
  auto info2 = store->Put(v2);
  ASSERT_TRUE(info2.ok());

  ASSERT_EQ(info2->reference_ids.size(), 2u);
  // Fresh ids: never reused, so nothing can confuse an old id with a new reference.
  EXPECT_GT(info2->reference_ids.front(), info1->reference_ids.back());
  for (uint64_t id : info1->reference_ids) {
    EXPECT_TRUE(absl::IsNotFound(store->GetReference(id).status()));
    EXPECT_TRUE(absl::IsNotFound(store->Load({id}).status()));
  }
  for (const CompiledReference& ref : v1.references) {
    auto hits = store->Retrieve(ref.vector, 5, {}, -1.0f);
    ASSERT_TRUE(hits.ok());
    for (const RetrievedReference& hit : *hits) {
      EXPECT_THAT(info2->reference_ids, ::testing::Contains(hit.reference_id));
    }
  }
  for (size_t j = 0; j < 2; ++j) {
    EXPECT_EQ(TopHit(*store, v2.references[j].vector), info2->reference_ids[j]);
    EXPECT_EQ(store->GetReference(info2->reference_ids[j])->text, v2.references[j].text);
  }
  EXPECT_EQ(store->Get("doc")->collection, "new-coll");
  EXPECT_TRUE(store->List("old-coll", "", 10)->documents.empty());
  EXPECT_THAT(Ids(*store->List("new-coll", "", 10)), ElementsAre("doc"));
  EXPECT_EQ(store->Stats().documents, 1);
  EXPECT_EQ(store->Stats().references, 2);
  EXPECT_EQ(store->Stats().memory_bytes, info2->memory_bytes);
}

TEST(StoreTest, CollectionsIsolateRetrieval) {
  auto store = OpenStore(TempDir("store_collections"));
  ASSERT_NE(store, nullptr);
  Document a = MakeDocument("in-a", "a", 1, 1);
  Document b = MakeDocument("in-b", "b", 1, 1);
  b.references[0].vector = a.references[0].vector;  // identical vectors, different tenants
  const uint64_t ref_a = store->Put(a)->reference_ids[0];
  const uint64_t ref_b = store->Put(b)->reference_ids[0];
  const std::vector<float>& q = a.references[0].vector;

  auto only_a = store->Retrieve(q, 5, {"a"}, -1.0f);
  ASSERT_TRUE(only_a.ok());
  ASSERT_EQ(only_a->size(), 1u);
  EXPECT_EQ((*only_a)[0].reference_id, ref_a);
  EXPECT_EQ((*only_a)[0].document_id, "in-a");
  auto only_b = store->Retrieve(q, 5, {"b"}, -1.0f);
  ASSERT_TRUE(only_b.ok());
  ASSERT_EQ(only_b->size(), 1u);
  EXPECT_EQ((*only_b)[0].reference_id, ref_b);
  EXPECT_EQ(store->Retrieve(q, 5, {"a", "b"}, -1.0f)->size(), 2u);
  EXPECT_EQ(store->Retrieve(q, 5, {}, -1.0f)->size(), 2u);
  EXPECT_TRUE(store->Retrieve(q, 5, {"unknown"}, -1.0f)->empty());
}

TEST(StoreTest, KAndMinScore) {
  auto store = OpenStore(TempDir("store_k"), TestOptions(4));
  ASSERT_NE(store, nullptr);
  // Reference j's vector is (cos t_j, sin t_j, 0, 0), so its score against e0 is cos t_j.
  Document doc = MakeDocument("angles", "c", 1, 5, 4);
  const std::vector<float> scores = {1.0f, 0.9f, 0.6f, 0.3f, -0.5f};
  for (size_t j = 0; j < scores.size(); ++j) {
    doc.references[j].vector = {scores[j], std::sqrt(1 - scores[j] * scores[j]), 0, 0};
  }
  auto info = store->Put(doc);
  ASSERT_TRUE(info.ok());
  const std::vector<float> query = {1, 0, 0, 0};

  auto top3 = store->Retrieve(query, 3, {}, -1.0f);
  ASSERT_TRUE(top3.ok());
  ASSERT_EQ(top3->size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ((*top3)[i].reference_id, info->reference_ids[i]);
    EXPECT_NEAR((*top3)[i].score, scores[i], 1e-5);
  }
  auto above = store->Retrieve(query, 5, {}, 0.5f);
  ASSERT_TRUE(above.ok());
  EXPECT_EQ(above->size(), 3u);
  EXPECT_EQ(store->Retrieve(query, 100, {}, -1.0f)->size(), 5u);
  EXPECT_TRUE(store->Retrieve(query, 5, {}, 1.5f)->empty());

  EXPECT_TRUE(absl::IsInvalidArgument(store->Retrieve(query, 0, {}, 0).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(store->Retrieve({1, 0}, 3, {}, 0).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(store->Retrieve({NAN, 0, 0, 0}, 3, {}, 0).status()));
}

TEST(StoreTest, InvalidDocumentsNameTheField) {
  auto store = OpenStore(TempDir("store_invalid"));
  ASSERT_NE(store, nullptr);
  auto expect_invalid = [&](const Document& doc, const std::string& field) {
    auto put = store->Put(doc);
    EXPECT_TRUE(absl::IsInvalidArgument(put.status())) << put.status();
    EXPECT_THAT(put.status().message(), HasSubstr(field));
  };
  Document doc = MakeDocument("ok", "c", 1, 2);
  Document bad = doc;
  bad.id = "";
  expect_invalid(bad, "document id");
  bad.id = std::string(1024, 'x');
  expect_invalid(bad, "document id");
  bad = doc;
  bad.collection = "";
  expect_invalid(bad, "collection");
  bad.collection = std::string("a\0b", 3);
  expect_invalid(bad, "collection");
  bad = doc;
  bad.references[1].vector.pop_back();
  expect_invalid(bad, "references[1].vector");
  bad = doc;
  bad.references[0].vector[3] = INFINITY;
  expect_invalid(bad, "references[0].vector");
  bad = doc;
  bad.references[1].memory.head_dim = 4;
  expect_invalid(bad, "references[1].memory");
  bad = doc;
  bad.references[0].memory.n_kv_heads = 1;
  expect_invalid(bad, "references[0].memory");
  bad = doc;
  bad.references[0].memory.layers = {1, 0};
  expect_invalid(bad, "references[0].memory.layers");
  bad = doc;
  bad.references[0].memory.layers = {0, 4};  // the model has 4 layers
  expect_invalid(bad, "references[0].memory.layers");
  bad = doc;
  bad.references[0].memory.heads[2].keys.pop_back();
  expect_invalid(bad, "references[0].memory.heads");
  bad = doc;
  bad.references[0].token_end = -1;
  expect_invalid(bad, "references[0].token");
  EXPECT_EQ(store->Stats().documents, 0);
  EXPECT_TRUE(store->Put(doc).ok());
}

TEST(StoreTest, OpenRefusesAnotherModelOrFixedOptions) {
  const std::string path = TempDir("store_fingerprint");
  { ASSERT_NE(OpenStore(path), nullptr); }

  ModelFingerprint other = TestFingerprint();
  other.tensor_hash ^= 1;
  auto refused = MemoryStore::Open(TestOptions(), path, other);
  ASSERT_TRUE(absl::IsFailedPrecondition(refused.status())) << refused.status();
  EXPECT_THAT(refused.status().message(), HasSubstr(TestFingerprint().ToString()));
  EXPECT_THAT(refused.status().message(), HasSubstr(other.ToString()));

  MemoryStoreOptions int8 = TestOptions();
  int8.codec.kind = CodecKind::kInt8;
  int8.codec.int4_group = 8;
  auto codec = MemoryStore::Open(int8, path, TestFingerprint());
  ASSERT_TRUE(absl::IsFailedPrecondition(codec.status())) << codec.status();
  EXPECT_THAT(codec.status().message(), HasSubstr("codec=f32"));
  EXPECT_THAT(codec.status().message(), HasSubstr("codec=int8"));

  auto dim = MemoryStore::Open(TestOptions(32), path, TestFingerprint());
  EXPECT_TRUE(absl::IsFailedPrecondition(dim.status())) << dim.status();

  // Fixed options left at their defaults adopt the stored ones.
  MemoryStoreOptions defaults;
  auto adopted = MemoryStore::Open(defaults, path, TestFingerprint());
  ASSERT_TRUE(adopted.ok()) << adopted.status();
  EXPECT_EQ((*adopted)->codec().options().kind, CodecKind::kF32);

  MemoryStoreOptions no_create = TestOptions();
  no_create.create_if_missing = false;
  EXPECT_TRUE(absl::IsNotFound(
      MemoryStore::Open(no_create, TempDir("store_absent"), TestFingerprint()).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(
      MemoryStore::Open(TestOptions(0), TempDir("store_no_dim"), TestFingerprint()).status()));
}

TEST(StoreTest, CorruptMetaIsDataLoss) {
  const std::string path = TempDir("store_meta_corrupt");
  { ASSERT_NE(OpenStore(path), nullptr); }
  {
    RawDb raw(path);
    raw.Put("meta", "fingerprint", "garbage");
  }
  auto store = MemoryStore::Open(TestOptions(), path, TestFingerprint());
  EXPECT_TRUE(absl::IsDataLoss(store.status())) << store.status();
}

// Every document's references are retrievable by their own vectors and nothing else is.
void ExpectIndexAgreesWithDocuments(const MemoryStore& store, const std::vector<Document>& docs) {
  std::set<uint64_t> all;
  for (const Document& doc : docs) {
    auto info = store.Get(doc.id);
    ASSERT_TRUE(info.ok()) << info.status();
    ASSERT_EQ(info->reference_ids.size(), doc.references.size());
    for (size_t j = 0; j < doc.references.size(); ++j) {
      EXPECT_EQ(TopHit(store, doc.references[j].vector), info->reference_ids[j]);
      all.insert(info->reference_ids[j]);
    }
  }
  auto hits = store.Retrieve(docs[0].references[0].vector, 1000, {}, -2.0f);
  ASSERT_TRUE(hits.ok());
  std::set<uint64_t> returned;
  for (const RetrievedReference& hit : *hits) returned.insert(hit.reference_id);
  EXPECT_EQ(returned, all);
}

TEST(StoreTest, ReopenKeepsEverythingAndLoadsTheSavedIndex) {
  const std::string path = TempDir("store_reopen");
  std::vector<Document> docs;
  for (int i = 0; i < 20; ++i) docs.push_back(MakeDocument("d" + std::to_string(i), "c", 1, 3));
  {
    auto store = OpenStore(path);
    ASSERT_NE(store, nullptr);
    EXPECT_EQ(store->index_recovery().kind, IndexRecovery::Kind::kCreated);
    for (const Document& doc : docs) ASSERT_TRUE(store->Put(doc).ok());
    ASSERT_TRUE(store->Delete("d19").ok());
  }
  docs.pop_back();
  auto store = OpenStore(path);
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->index_recovery().kind, IndexRecovery::Kind::kLoaded)
      << store->index_recovery().reason;
  EXPECT_EQ(store->Stats().documents, 19);
  EXPECT_EQ(store->Stats().references, 57);
  ExpectIndexAgreesWithDocuments(*store, docs);
  auto pages = store->Load(store->Get("d7")->reference_ids);
  ASSERT_TRUE(pages.ok()) << pages.status();
  EXPECT_EQ((*pages)[2]->memory().heads[0].keys, docs[7].references[2].memory.heads[0].keys);
  // Reference ids continue after the reopen instead of restarting.
  auto info = store->Put(MakeDocument("new", "c", 1, 1));
  ASSERT_TRUE(info.ok());
  EXPECT_GT(info->reference_ids[0], 60u);
}

TEST(StoreTest, MissingOrCorruptIndexFileIsRebuilt) {
  const std::string path = TempDir("store_rebuild");
  const std::string file = RocksStore::IndexPath(path);
  std::vector<Document> docs;
  for (int i = 0; i < 10; ++i) docs.push_back(MakeDocument("d" + std::to_string(i), "c", 1, 2));
  {
    auto store = OpenStore(path);
    ASSERT_NE(store, nullptr);
    for (const Document& doc : docs) ASSERT_TRUE(store->Put(doc).ok());
  }
  ASSERT_TRUE(std::filesystem::remove(file));
  {
    auto store = OpenStore(path);
    ASSERT_NE(store, nullptr);
    EXPECT_EQ(store->index_recovery().kind, IndexRecovery::Kind::kRebuilt);
    EXPECT_EQ(store->index_recovery().added, 20);
    ExpectIndexAgreesWithDocuments(*store, docs);
  }
  ASSERT_TRUE(std::filesystem::exists(file));  // the rebuilt index was saved
  {
    std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(std::filesystem::file_size(file) / 2));
    f.put('\x5a').put('\xa5');
  }
  {
    auto store = OpenStore(path);
    ASSERT_NE(store, nullptr);
    EXPECT_EQ(store->index_recovery().kind, IndexRecovery::Kind::kRebuilt);
    EXPECT_THAT(store->index_recovery().reason, HasSubstr("checksum"));
    ExpectIndexAgreesWithDocuments(*store, docs);
  }
  std::filesystem::resize_file(file, 100);
  {
    auto store = OpenStore(path);
    ASSERT_NE(store, nullptr);
    EXPECT_EQ(store->index_recovery().kind, IndexRecovery::Kind::kRebuilt);
    ExpectIndexAgreesWithDocuments(*store, docs);
  }
}

TEST(StoreTest, StaleIndexFileIsCaughtUp) {
  // An index saved before later writes (as after a crash) gains the new references and loses
  // the deleted ones.
  const std::string path = TempDir("store_catch_up");
  const std::string file = RocksStore::IndexPath(path);
  std::vector<Document> docs;
  for (int i = 0; i < 12; ++i) docs.push_back(MakeDocument("d" + std::to_string(i), "c", 1, 2));
  {
    auto store = OpenStore(path);
    ASSERT_NE(store, nullptr);
    for (int i = 0; i < 8; ++i) ASSERT_TRUE(store->Put(docs[i]).ok());
    ASSERT_TRUE(store->SaveIndex().ok());
    std::filesystem::copy_file(file, file + ".stale");
    for (int i = 8; i < 12; ++i) ASSERT_TRUE(store->Put(docs[i]).ok());
    ASSERT_TRUE(store->Delete("d0").ok());
  }
  std::filesystem::rename(file + ".stale", file);
  docs.erase(docs.begin());
  auto store = OpenStore(path);
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->index_recovery().kind, IndexRecovery::Kind::kCaughtUp);
  EXPECT_EQ(store->index_recovery().added, 8);
  EXPECT_EQ(store->index_recovery().dropped, 2);
  ExpectIndexAgreesWithDocuments(*store, docs);
}

TEST(StoreTest, CrossingFlatMaxSwitchesToIvfWithGoodRecall) {
  const std::string path = TempDir("store_ivf");
  MemoryStoreOptions options = TestOptions(32);
  options.flat_index_max = 150;
  options.sync_writes = false;
  // Uniformly random 32-dim vectors (no clusters) in ~25 lists: the worst case for IVF, so this
  // scans 20 of them (the default 8 suits clustered data, retrieval_bench).
  RocksStoreTuning tuning;
  tuning.ivf_nprobe = 20;
  auto store = OpenStore(path, options, tuning);
  ASSERT_NE(store, nullptr);
  std::vector<Document> docs;
  std::map<uint64_t, std::vector<float>> vectors;
  for (int i = 0; i < 100; ++i) {
    docs.push_back(MakeDocument("d" + std::to_string(i), i % 2 ? "odd" : "even", 1, 4, 32));
    auto info = store->Put(docs.back());
    ASSERT_TRUE(info.ok());
    for (size_t j = 0; j < 4; ++j) vectors[info->reference_ids[j]] = docs.back().references[j].vector;
    if (i == 30) {
      EXPECT_EQ(store->Stats().index_kind, "flat");
    }
  }
  EXPECT_EQ(store->Stats().index_kind, "ivf");

  // Recall@5 against exact inner product over the same vectors.
  std::mt19937_64 rng(7);
  int found = 0;
  const int queries = 50;
  for (int q = 0; q < queries; ++q) {
    const std::vector<float> query = RandomUnitVector(32, rng);
    std::vector<std::pair<float, uint64_t>> exact;
    for (const auto& [id, v] : vectors) {
      exact.emplace_back(std::inner_product(v.begin(), v.end(), query.begin(), 0.0f), id);
    }
    std::sort(exact.rbegin(), exact.rend());
    auto hits = store->Retrieve(query, 5, {}, -1.0f);
    ASSERT_TRUE(hits.ok());
    ASSERT_EQ(hits->size(), 5u);
    for (const RetrievedReference& hit : *hits) {
      for (int i = 0; i < 5; ++i) found += exact[i].second == hit.reference_id;
      EXPECT_NEAR(hit.score, std::inner_product(query.begin(), query.end(),
                                                vectors[hit.reference_id].begin(), 0.0f), 1e-4);
    }
  }
  EXPECT_GE(found, queries * 5 * 95 / 100);

  // Deleting 40% compacts; deleted ids never come back and collections still filter.
  for (int i = 0; i < 40; ++i) ASSERT_TRUE(store->Delete("d" + std::to_string(i)).ok());
  docs.erase(docs.begin(), docs.begin() + 40);
  std::set<uint64_t> live;
  for (const Document& doc : docs) {
    auto info = store->Get(doc.id);
    ASSERT_TRUE(info.ok());
    live.insert(info->reference_ids.begin(), info->reference_ids.end());
  }
  for (int q = 0; q < 20; ++q) {
    auto hits = store->Retrieve(RandomUnitVector(32, rng), 20, {"odd"}, -1.0f);
    ASSERT_TRUE(hits.ok());
    EXPECT_EQ(hits->size(), 20u);
    for (const RetrievedReference& hit : *hits) {
      EXPECT_TRUE(live.contains(hit.reference_id));
      EXPECT_EQ(std::stoi(hit.document_id.substr(1)) % 2, 1) << hit.document_id;
    }
  }
  ExpectIndexAgreesWithDocuments(*store, docs);
  store.reset();
  store = OpenStore(path, options, tuning);
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->index_recovery().kind, IndexRecovery::Kind::kLoaded);
  EXPECT_EQ(store->Stats().index_kind, "ivf");
  ExpectIndexAgreesWithDocuments(*store, docs);
}

TEST(StoreTest, CorruptMemoryIsDataLossNotACrash) {
  const std::string path = TempDir("store_corrupt_memory");
  std::vector<uint64_t> ids;
  {
    auto store = OpenStore(path);
    ASSERT_NE(store, nullptr);
    ids = store->Put(MakeDocument("doc", "c", 1, 3))->reference_ids;
  }
  {
    RawDb raw(path);
    raw.Put("memories", RawDb::Key(ids[0]), "definitely not a memory blob");
    std::string blob = raw.Get("memories", RawDb::Key(ids[1]));
    blob[blob.size() / 2] ^= 0x40;  // one flipped bit: the checksum must catch it
    raw.Put("memories", RawDb::Key(ids[1]), blob);
  }
  auto store = OpenStore(path);
  ASSERT_NE(store, nullptr);
  EXPECT_TRUE(absl::IsDataLoss(store->Load({ids[0]}).status())) << store->Load({ids[0]}).status();
  auto flipped = store->Load({ids[2], ids[1]});
  EXPECT_TRUE(absl::IsDataLoss(flipped.status())) << flipped.status();
  EXPECT_THAT(flipped.status().message(), HasSubstr(std::to_string(ids[1])));
  EXPECT_TRUE(store->Load({ids[2]}).ok());
}

TEST(StoreTest, PageCacheCountsHitsAndStaysBounded) {
  MemoryStoreOptions options = TestOptions();
  auto store = OpenStore(TempDir("store_cache"), options);
  ASSERT_NE(store, nullptr);
  auto info = store->Put(MakeDocument("doc", "c", 1, 20));
  ASSERT_TRUE(info.ok());
  const uint64_t a = info->reference_ids[0];
  auto first = store->Load({a});
  ASSERT_TRUE(first.ok());
  auto second = store->Load({a});
  ASSERT_TRUE(second.ok());
  EXPECT_EQ((*first)[0], (*second)[0]);  // the same shared page
  StoreStats stats = store->Stats();
  EXPECT_EQ(stats.page_cache_misses, 1);
  EXPECT_EQ(stats.page_cache_hits, 1);
  const int64_t page_bytes = static_cast<int64_t>((*first)[0]->bytes());
  EXPECT_EQ(stats.page_cache_bytes, page_bytes);

  // A cache of about three pages never holds more, however many are loaded.
  const std::string path = TempDir("store_cache_small");
  options.page_cache_bytes = static_cast<size_t>(page_bytes * 3 + page_bytes / 2);
  store = OpenStore(path, options);
  ASSERT_NE(store, nullptr);
  info = store->Put(MakeDocument("doc", "c", 1, 20));
  ASSERT_TRUE(info.ok());
  for (uint64_t id : info->reference_ids) {
    ASSERT_TRUE(store->Load({id}).ok());
    EXPECT_LE(store->Stats().page_cache_bytes, static_cast<int64_t>(options.page_cache_bytes));
  }
  EXPECT_EQ(store->Stats().page_cache_misses, 20);
  ASSERT_TRUE(store->Load({info->reference_ids.back()}).ok());  // most recent: still cached
  EXPECT_EQ(store->Stats().page_cache_hits, 1);
  ASSERT_TRUE(store->Load({info->reference_ids.front()}).ok());  // evicted long ago
  EXPECT_EQ(store->Stats().page_cache_misses, 21);
}

TEST(PageCacheTest, EvictsLeastRecentlyUsed) {
  auto codec = VectorCodec::Create(CodecOptions{CodecKind::kF32, 8});
  ASSERT_TRUE(codec.ok());
  auto page = [&](uint64_t seed) {
    auto decoded = MemoryPage::Decode(EncodeMemoryBlob(RandomMemory(seed), **codec), **codec, 2, 8);
    EXPECT_TRUE(decoded.ok()) << decoded.status();
    return *decoded;
  };
  const size_t bytes = page(1)->bytes();
  PageCache cache(2 * bytes);
  cache.Insert(1, page(1));
  cache.Insert(2, page(2));
  EXPECT_NE(cache.Lookup(1), nullptr);  // 1 is now more recent than 2
  cache.Insert(3, page(3));             // evicts 2
  EXPECT_EQ(cache.Lookup(2), nullptr);
  EXPECT_NE(cache.Lookup(1), nullptr);
  EXPECT_NE(cache.Lookup(3), nullptr);
  cache.Erase(3);
  EXPECT_EQ(cache.Lookup(3), nullptr);
  const PageCache::Counters c = cache.counters();
  EXPECT_EQ(c.hits, 3);
  EXPECT_EQ(c.misses, 2);
  EXPECT_EQ(c.entries, 1);
  EXPECT_EQ(c.bytes, static_cast<int64_t>(bytes));
  PageCache tiny(bytes / 2);  // a page larger than the cache is not kept
  tiny.Insert(1, page(1));
  EXPECT_EQ(tiny.counters().entries, 0);
}

TEST(StoreTest, PqCodecTrainsOnTheFirstDocumentAndPersists) {
  const std::string path = TempDir("store_pq");
  MemoryStoreOptions options = TestOptions();
  options.codec.kind = CodecKind::kPq;
  options.codec.pq_subvectors = 2;
  options.codec.pq_bits = 6;  // 64 centroids: needs 64 training vectors
  Document big = MakeDocument("big", "c", 1, 2);
  for (CompiledReference& ref : big.references) ref.memory = RandomMemory(ref.token_begin + 5, 10);
  std::vector<uint64_t> ids;
  {
    auto store = OpenStore(path, options);
    ASSERT_NE(store, nullptr);
    // 1 reference x 2 layers x 2 heads x 3 entries x (key + value) = 24 vectors: too few.
    auto refused = store->Put(MakeDocument("small", "c", 1, 1));
    ASSERT_TRUE(absl::IsFailedPrecondition(refused.status())) << refused.status();
    EXPECT_THAT(refused.status().message(), HasSubstr("PQ"));
    auto info = store->Put(big);  // 2 x 2 x 2 x 10 x 2 = 160 vectors
    ASSERT_TRUE(info.ok()) << info.status();
    ids = info->reference_ids;
    ASSERT_TRUE(store->Put(MakeDocument("small", "c", 1, 1)).ok());  // trained now
  }
  auto store = OpenStore(path, options);
  ASSERT_NE(store, nullptr);
  auto pages = store->Load(ids);
  ASSERT_TRUE(pages.ok()) << pages.status();
  // PQ is lossy; decoded values must still resemble the originals.
  const std::vector<float>& want = big.references[0].memory.heads[1].keys;
  const std::vector<float>& got = (*pages)[0]->memory().heads[1].keys;
  ASSERT_EQ(got.size(), want.size());
  double err = 0, norm = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    err += (got[i] - want[i]) * (got[i] - want[i]);
    norm += want[i] * want[i];
  }
  EXPECT_LT(err, 0.5 * norm);
}

TEST(StoreTest, ReadersRunConcurrentlyWithAWriter) {
  MemoryStoreOptions options = TestOptions();
  options.sync_writes = false;
  auto store = OpenStore(TempDir("store_concurrent"), options);
  ASSERT_NE(store, nullptr);
  const Document fixed = MakeDocument("fixed", "c", 1, 2);
  const std::vector<uint64_t> fixed_ids = store->Put(fixed)->reference_ids;
  std::atomic<bool> done{false};
  std::vector<std::thread> readers;
  std::atomic<int> failures{0};
  for (int t = 0; t < 3; ++t) {
    readers.emplace_back([&] {
      while (!done.load()) {
        if (TopHit(*store, fixed.references[1].vector) != fixed_ids[1]) ++failures;
        if (!store->Load(fixed_ids).ok() || !store->Get("fixed").ok()) ++failures;
        if (!store->List("", "", 10).ok()) ++failures;
      }
    });
  }
  for (int i = 0; i < 150; ++i) {
    ASSERT_TRUE(store->Put(MakeDocument("w" + std::to_string(i % 20), "c", i, 2)).ok());
  }
  done = true;
  for (std::thread& t : readers) t.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(store->Stats().documents, 21);
  EXPECT_EQ(store->Stats().references, 42);
}

}  // namespace
}  // namespace memoria
