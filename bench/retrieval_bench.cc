// retrieval_bench: latency of top-5 inner-product retrieval, flat vs HNSW, and ingest speed.
//
// Vectors are random unit vectors of --dim floats (default 256: a 1B model's 2048-dim embedding
// would need 8 GB at 1M references; the search cost scales linearly with dim). Index rows drive
// VectorIndex directly (N references without N RocksDB documents); the store rows go through
// MemoryStore::Put/Retrieve with a realistic 1B-model memory per reference (8 memory layers x 8 KV
// heads x 8 kept tokens x head_dim 64, int8 codec).
//
//   retrieval_bench [--sizes=100000,1000000] [--dim=256] [--queries=1000] [--docs=500]
//                   [--ef_search=128] [--ef_construction=64] [--hnsw_max=1000000]
//                   [--dir=/tmp/retrieval_bench]
//
// Query q is stored vector q plus Gaussian noise of norm 0.5, renormalized: like a retrieval query,
// it has a few true neighbours. (Queries drawn at random from 256 dimensions have none, a
// worst case for HNSW that real embeddings, of low intrinsic dimension, do not present.)
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "memstore/rocks_store.h"
#include "memstore/vector_index.h"

namespace memoria {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point since) {
  return std::chrono::duration<double>(Clock::now() - since).count();
}

double Percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * v.size()))];
}

void FillUnitVectors(int64_t n, int32_t dim, uint64_t seed, std::vector<float>* out) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal;
  out->resize(n * dim);
  for (int64_t i = 0; i < n; ++i) {
    float* v = out->data() + i * dim;
    double norm = 0;
    for (int32_t d = 0; d < dim; ++d) {
      v[d] = normal(rng);
      norm += double{v[d]} * v[d];
    }
    for (int32_t d = 0; d < dim; ++d) v[d] = static_cast<float>(v[d] / std::sqrt(norm));
  }
}

struct Flags {
  std::vector<int64_t> sizes = {100000, 1000000};
  int32_t dim = 256;
  int32_t queries = 1000;
  int32_t docs = 500;
  int64_t hnsw_max = 1000000;  // larger sizes get the flat row only (HNSW builds take long)
  int32_t ef_search = VectorIndex::Options().hnsw_ef_search;
  int32_t ef_construction = VectorIndex::Options().hnsw_ef_construction;
  std::string dir = "/tmp/retrieval_bench";
};

bool ParseFlags(int argc, char** argv, Flags* flags) {
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const size_t eq = arg.find('=');
    const std::string name = arg.substr(0, eq);
    const std::string value = eq == std::string::npos ? "" : arg.substr(eq + 1);
    bool ok = true;
    if (name == "--sizes") {
      flags->sizes.clear();
      for (absl::string_view s : absl::StrSplit(value, ',')) {
        int64_t n = 0;
        ok = ok && absl::SimpleAtoi(s, &n) && n > 0;
        flags->sizes.push_back(n);
      }
    } else if (name == "--dim") {
      ok = absl::SimpleAtoi(value, &flags->dim) && flags->dim > 0;
    } else if (name == "--queries") {
      ok = absl::SimpleAtoi(value, &flags->queries) && flags->queries > 0;
    } else if (name == "--docs") {
      ok = absl::SimpleAtoi(value, &flags->docs) && flags->docs > 0;
    } else if (name == "--hnsw_max") {
      ok = absl::SimpleAtoi(value, &flags->hnsw_max);
    } else if (name == "--ef_search") {
      ok = absl::SimpleAtoi(value, &flags->ef_search) && flags->ef_search > 0;
    } else if (name == "--ef_construction") {
      ok = absl::SimpleAtoi(value, &flags->ef_construction) && flags->ef_construction > 0;
    } else if (name == "--dir") {
      flags->dir = value;
    } else {
      ok = false;
    }
    if (!ok) {
      std::fprintf(stderr, "bad flag %s\n", arg.c_str());
      return false;
    }
  }
  return true;
}

// One index row: build an index of n vectors, then time Search(k=5) per query; recall@5 is
// measured against the exact answers in `truth` (empty for the flat row, which is exact).
int IndexRow(const Flags& flags, int64_t n, bool hnsw, const std::vector<float>& data,
             const std::vector<float>& queries, std::vector<std::vector<uint64_t>>* truth) {
  VectorIndex::Options options;
  options.dim = flags.dim;
  options.flat_max = hnsw ? 0 : n;  // 0: the first Add already builds the HNSW graph
  options.hnsw_ef_search = flags.ef_search;
  options.hnsw_ef_construction = flags.ef_construction;
  auto index = VectorIndex::Create(options);
  if (!index.ok()) return std::fprintf(stderr, "%s\n", index.status().ToString().c_str()), 1;
  std::vector<uint64_t> ids(n);
  for (int64_t i = 0; i < n; ++i) ids[i] = static_cast<uint64_t>(i + 1);
  const std::vector<uint32_t> tags(n, 0);
  const auto build_start = Clock::now();
  absl::Status added = (*index)->Add(ids, tags, std::span(data).first(n * flags.dim));
  if (!added.ok()) return std::fprintf(stderr, "%s\n", added.ToString().c_str()), 1;
  const double build_s = Seconds(build_start);

  std::vector<double> latency_ms;
  int64_t found = 0;
  for (int32_t q = 0; q < flags.queries; ++q) {
    const auto start = Clock::now();
    auto hits = (*index)->Search(std::span(queries).subspan(q * flags.dim, flags.dim), 5, {});
    latency_ms.push_back(1e3 * Seconds(start));
    if (!hits.ok()) return std::fprintf(stderr, "%s\n", hits.status().ToString().c_str()), 1;
    std::vector<uint64_t> got;
    for (const VectorIndex::Hit& hit : *hits) got.push_back(hit.id);
    if (!hnsw) {
      truth->push_back(got);
    } else {
      const std::set<uint64_t> exact((*truth)[q].begin(), (*truth)[q].end());
      for (uint64_t id : got) found += exact.count(id);
    }
  }
  const double recall = hnsw ? static_cast<double>(found) / (5.0 * flags.queries) : 1.0;
  std::printf("| %9lld | %-5s | %9.1f | %8.3f | %8.3f | %9.3f |\n", static_cast<long long>(n),
              (*index)->kind(), build_s, Percentile(latency_ms, 0.5), Percentile(latency_ms, 0.99),
              recall);
  std::fflush(stdout);
  return 0;
}

// Ingest through Put (one document of 8 references per call) and Retrieve through the store.
int StoreRows(const Flags& flags) {
  ModelFingerprint fingerprint;
  fingerprint.description = "bench 1B-like L=16 H=32/8 hd=64";
  fingerprint.n_layers = 16;
  fingerprint.n_kv_heads = 8;
  fingerprint.head_dim = 64;
  constexpr int32_t kRefsPerDoc = 8;
  constexpr int32_t kKept = 8;

  std::mt19937_64 rng(1);
  std::uniform_real_distribution<float> uniform(-1, 1);
  ReferenceKv memory;
  memory.head_dim = fingerprint.head_dim;
  memory.n_kv_heads = fingerprint.n_kv_heads;
  for (int32_t l = 0; l < fingerprint.n_layers / 2; ++l) memory.layers.push_back(l);
  memory.heads.resize(memory.layers.size() * memory.n_kv_heads);
  for (ReferenceKv::Head& head : memory.heads) {
    for (int32_t e = 0; e < kKept; ++e) {
      head.positions.push_back(e + 1);
      for (int32_t d = 0; d < fingerprint.head_dim; ++d) {
        head.keys.push_back(uniform(rng));
        head.values.push_back(uniform(rng));
      }
    }
  }
  std::vector<float> vectors;
  FillUnitVectors(int64_t{flags.docs} * kRefsPerDoc, flags.dim, 7, &vectors);

  std::printf("\n| store ingest (Put)      | docs | refs/s  | MB/s of memories |\n");
  std::printf("|-------------------------|------|---------|------------------|\n");
  for (bool sync : {true, false}) {
    const std::string path = flags.dir + (sync ? "/store_sync" : "/store_nosync");
    std::filesystem::remove_all(path);
    MemoryStoreOptions options;
    options.codec.kind = CodecKind::kInt8;
    options.retrieval_dim = flags.dim;
    options.sync_writes = sync;
    auto store = MemoryStore::Open(options, path, fingerprint);
    if (!store.ok()) return std::fprintf(stderr, "%s\n", store.status().ToString().c_str()), 1;
    int64_t bytes = 0;
    const auto start = Clock::now();
    for (int32_t i = 0; i < flags.docs; ++i) {
      Document doc;
      doc.id = "doc" + std::to_string(i);
      doc.collection = "bench";
      for (int32_t j = 0; j < kRefsPerDoc; ++j) {
        CompiledReference ref;
        ref.memory = memory;
        const float* v = vectors.data() + (int64_t{i} * kRefsPerDoc + j) * flags.dim;
        ref.vector.assign(v, v + flags.dim);
        doc.references.push_back(std::move(ref));
      }
      auto info = (*store)->Put(doc);
      if (!info.ok()) return std::fprintf(stderr, "%s\n", info.status().ToString().c_str()), 1;
      bytes += info->memory_bytes;
    }
    const double s = Seconds(start);
    std::printf("| sync_writes=%-5s        | %4d | %7.0f | %16.1f |\n", sync ? "true" : "false",
                flags.docs, flags.docs * kRefsPerDoc / s, bytes / s / 1e6);

    if (!sync) {
      std::vector<float> queries;
      FillUnitVectors(flags.queries, flags.dim, 11, &queries);
      std::vector<double> retrieve_ms, load_ms;
      for (int32_t q = 0; q < flags.queries; ++q) {
        const std::vector<float> query(queries.begin() + q * flags.dim,
                                       queries.begin() + (q + 1) * flags.dim);
        auto t = Clock::now();
        auto hits = (*store)->Retrieve(query, 5, {"bench"}, -1.0f);
        retrieve_ms.push_back(1e3 * Seconds(t));
        if (!hits.ok()) return std::fprintf(stderr, "%s\n", hits.status().ToString().c_str()), 1;
        std::vector<uint64_t> ids;
        for (const RetrievedReference& hit : *hits) ids.push_back(hit.reference_id);
        t = Clock::now();
        auto pages = (*store)->Load(ids);
        load_ms.push_back(1e3 * Seconds(t));
        if (!pages.ok()) return std::fprintf(stderr, "%s\n", pages.status().ToString().c_str()), 1;
      }
      const StoreStats stats = (*store)->Stats();
      std::printf("\nstore Retrieve(k=5) over %lld refs: p50 %.3f ms, p99 %.3f ms; Load(5 pages): "
                  "p50 %.3f ms, p99 %.3f ms (page cache %lld hits / %lld misses)\n",
                  static_cast<long long>(stats.references), Percentile(retrieve_ms, 0.5),
                  Percentile(retrieve_ms, 0.99), Percentile(load_ms, 0.5),
                  Percentile(load_ms, 0.99), static_cast<long long>(stats.page_cache_hits),
                  static_cast<long long>(stats.page_cache_misses));
    }
  }
  return 0;
}

int Main(int argc, char** argv) {
  Flags flags;
  if (!ParseFlags(argc, argv, &flags)) return 2;
  std::filesystem::create_directories(flags.dir);
  const int64_t max_n = *std::max_element(flags.sizes.begin(), flags.sizes.end());
  std::vector<float> data, queries;
  FillUnitVectors(max_n, flags.dim, 3, &data);
  FillUnitVectors(flags.queries, flags.dim, 5, &queries);
  for (int64_t q = 0; q < flags.queries; ++q) {
    float* v = queries.data() + q * flags.dim;
    const float* near = data.data() + (q % max_n) * flags.dim;
    double norm = 0;
    for (int32_t d = 0; d < flags.dim; ++d) {
      v[d] = near[d] + 0.5f * v[d];
      norm += double{v[d]} * v[d];
    }
    for (int32_t d = 0; d < flags.dim; ++d) v[d] = static_cast<float>(v[d] / std::sqrt(norm));
  }

  std::printf("retrieval_bench: dim %d, %d queries near stored vectors, top-5, random unit vectors, HNSW M=%d "
              "efConstruction=%d efSearch=%d, %u hardware threads\n\n",
              flags.dim, flags.queries, VectorIndex::Options().hnsw_m, flags.ef_construction,
              flags.ef_search, std::thread::hardware_concurrency());
  std::printf("| refs      | index | build s   | p50 ms   | p99 ms   | recall@5  |\n");
  std::printf("|-----------|-------|-----------|----------|----------|-----------|\n");
  for (int64_t n : flags.sizes) {
    std::vector<std::vector<uint64_t>> truth;
    if (int rc = IndexRow(flags, n, /*hnsw=*/false, data, queries, &truth)) return rc;
    if (n > flags.hnsw_max) continue;
    if (int rc = IndexRow(flags, n, /*hnsw=*/true, data, queries, &truth)) return rc;
  }
  return StoreRows(flags);
}

}  // namespace
}  // namespace memoria

int main(int argc, char** argv) { return memoria::Main(argc, argv); }
