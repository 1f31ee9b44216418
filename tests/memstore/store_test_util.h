#ifndef MEMORIA_TESTS_MEMSTORE_STORE_TEST_UTIL_H_
#define MEMORIA_TESTS_MEMSTORE_STORE_TEST_UTIL_H_

// Small deterministic documents for the memory store tests.

#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include <map>
#include <memory>
#include <set>

#include <rocksdb/db.h>

#include "gtest/gtest.h"
#include "memstore/memory_store.h"
#include "memstore/rocks_store.h"

namespace memoria::testing {

// A toy model: 4 layers, 2 KV heads of 8 dims; memories in layers 0 and 1.
inline ModelFingerprint TestFingerprint() {
  ModelFingerprint f;
  f.description = "test L=4 H=4/2 hd=8";
  f.tensor_hash = 0x1234abcd;
  f.n_layers = 4;
  f.n_kv_heads = 2;
  f.head_dim = 8;
  return f;
}

inline MemoryStoreOptions TestOptions(int32_t retrieval_dim = 16) {
  MemoryStoreOptions o;
  o.codec.kind = CodecKind::kF32;
  o.retrieval_dim = retrieval_dim;
  return o;
}

inline std::vector<float> RandomUnitVector(int32_t dim, std::mt19937_64& rng) {
  std::normal_distribution<float> normal;
  std::vector<float> v(dim);
  double norm = 0;
  for (float& x : v) {
    x = normal(rng);
    norm += double{x} * x;
  }
  for (float& x : v) x = static_cast<float>(x / std::sqrt(norm));
  return v;
}

// `entries` kept tokens per (layer, head), values derived from `seed`.
inline ReferenceKv RandomMemory(uint64_t seed, int32_t entries = 3) {
  const ModelFingerprint f = TestFingerprint();
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> uniform(-1, 1);
  ReferenceKv kv;
  kv.head_dim = f.head_dim;
  kv.n_kv_heads = f.n_kv_heads;
  kv.layers = {0, 1};
  kv.heads.resize(kv.layers.size() * kv.n_kv_heads);
  for (ReferenceKv::Head& head : kv.heads) {
    for (int32_t e = 0; e < entries; ++e) {
      head.positions.push_back(e + 1);
      for (int32_t d = 0; d < f.head_dim; ++d) {
        head.keys.push_back(uniform(rng));
        head.values.push_back(uniform(rng));
      }
    }
  }
  return kv;
}

// A document whose content is a function of (id, version): `n_refs` references with random
// unit vectors and memories; reference j's text is "<id> v<version> r<j>".
inline Document MakeDocument(const std::string& id, const std::string& collection,
                             uint64_t version, int32_t n_refs, int32_t retrieval_dim = 16) {
  Document doc;
  doc.id = id;
  doc.collection = collection;
  doc.title = "title of " + id;
  doc.metadata = "{\"v\":" + std::to_string(version) + "}";
  std::mt19937_64 rng(std::hash<std::string>{}(id) * 31 + version);
  for (int32_t j = 0; j < n_refs; ++j) {
    CompiledReference ref;
    ref.token_begin = j * 128;
    ref.token_end = j * 128 + 100;
    ref.text = id + " v" + std::to_string(version) + " r" + std::to_string(j);
    ref.memory = RandomMemory(rng());
    ref.vector = RandomUnitVector(retrieval_dim, rng);
    doc.references.push_back(std::move(ref));
  }
  return doc;
}

// Direct access to a closed store's RocksDB, to inspect or damage it on purpose.
class RawDb {
 public:
  explicit RawDb(const std::string& store_path) {
    const std::string db_path = RocksStore::DbPath(store_path);
    std::vector<std::string> names;
    EXPECT_TRUE(rocksdb::DB::ListColumnFamilies(rocksdb::DBOptions(), db_path, &names).ok());
    std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
    for (const std::string& name : names) {
      descriptors.emplace_back(name, rocksdb::ColumnFamilyOptions());
    }
    rocksdb::DB* db = nullptr;
    const rocksdb::Status s =
        rocksdb::DB::Open(rocksdb::DBOptions(), db_path, descriptors, &handles_, &db);
    EXPECT_TRUE(s.ok()) << s.ToString();
    db_.reset(db);
    for (size_t i = 0; i < handles_.size(); ++i) by_name_[names[i]] = handles_[i];
  }
  ~RawDb() {
    for (rocksdb::ColumnFamilyHandle* h : handles_) {
      EXPECT_TRUE(db_->DestroyColumnFamilyHandle(h).ok());
    }
  }
  void Put(const std::string& cf, const std::string& key, const std::string& value) {
    EXPECT_TRUE(db_->Put(rocksdb::WriteOptions(), by_name_.at(cf), key, value).ok());
  }
  std::string Get(const std::string& cf, const std::string& key) {
    std::string value;
    EXPECT_TRUE(db_->Get(rocksdb::ReadOptions(), by_name_.at(cf), key, &value).ok());
    return value;
  }
  std::set<std::string> Keys(const std::string& cf) {
    std::set<std::string> keys;
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), by_name_.at(cf)));
    for (it->SeekToFirst(); it->Valid(); it->Next()) keys.insert(it->key().ToString());
    EXPECT_TRUE(it->status().ok());
    return keys;
  }
  // The key of a reference id in the references, memories and vectors column families.
  static std::string Key(uint64_t id) {
    std::string key(8, '\0');
    for (int i = 0; i < 8; ++i) key[i] = static_cast<char>(id >> (56 - 8 * i));
    return key;
  }

 private:
  std::unique_ptr<rocksdb::DB> db_;
  std::vector<rocksdb::ColumnFamilyHandle*> handles_;
  std::map<std::string, rocksdb::ColumnFamilyHandle*> by_name_;
};

}  // namespace memoria::testing

#endif  // MEMORIA_TESTS_MEMSTORE_STORE_TEST_UTIL_H_
