// retrieval_bench: latency and recall of top-5 inner-product retrieval, flat vs IVF, and ingest
// speed.
//
// Vectors: --dim floats (default 576, the retrieval dim of a hidden-size-576 model), drawn from a
// mixture of --clusters Gaussian clusters (default 1000: real embeddings are clustered, uniform
// random vectors are not), each vector = unit centre + noise of norm ~1, renormalized. Query q is
// stored vector q plus Gaussian noise of norm 0.5, renormalized, so it has true neighbours.
// Index rows drive VectorIndex directly (N references without N RocksDB documents) the way the
// store does: vectors are added in batches of 4096 and the index switches from flat to IVF (and
// retrains) on its own when it crosses flat_max (100000, as the store's default) or grows 4x. The
// store rows go through MemoryStore::Put/Retrieve with a realistic 1B-model memory per reference.
//
//   retrieval_bench [--sizes=100000,1000000] [--dim=576] [--clusters=1000] [--queries=1000]
//                   [--flat_queries=1000] [--nprobes=16,32,48,64] [--docs=500]
//                   [--dir=/tmp/retrieval_bench]
//
// --flat_queries times only that many queries on the flat rows (1M flat takes ~0.5 s a query).
// Recall@5 is measured against exact top-5 computed here by brute force.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
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

double ResidentMb() {
  long pages = 0, resident = 0;
  std::ifstream("/proc/self/statm") >> pages >> resident;
  return resident * static_cast<double>(sysconf(_SC_PAGESIZE)) / (1 << 20);
}

void Normalize(float* v, int32_t dim) {
  double norm = 0;
  for (int32_t d = 0; d < dim; ++d) norm += double{v[d]} * v[d];
  for (int32_t d = 0; d < dim; ++d) v[d] = static_cast<float>(v[d] / std::sqrt(norm));
}

void FillUnitVectors(int64_t n, int32_t dim, uint64_t seed, std::vector<float>* out) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal;
  out->resize(n * dim);
  for (int64_t i = 0; i < n; ++i) {
    float* v = out->data() + i * dim;
    for (int32_t d = 0; d < dim; ++d) v[d] = normal(rng);
    Normalize(v, dim);
  }
}

// n unit vectors around `clusters` random unit centres: centre + noise of expected norm 1.
void FillClusteredVectors(int64_t n, int32_t dim, int32_t clusters, uint64_t seed,
                          std::vector<float>* out) {
  std::vector<float> centres;
  FillUnitVectors(clusters, dim, seed + 1, &centres);
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f / std::sqrt(static_cast<float>(dim)));
  std::uniform_int_distribution<int32_t> pick(0, clusters - 1);
  out->resize(n * dim);
  for (int64_t i = 0; i < n; ++i) {
    float* v = out->data() + i * dim;
    const float* centre = centres.data() + int64_t{pick(rng)} * dim;
    for (int32_t d = 0; d < dim; ++d) v[d] = centre[d] + normal(rng);
    Normalize(v, dim);
  }
}

// Exact top-5 ids (1-based, as the index rows number them) of each query over the first n rows,
// by brute force on all hardware threads: queries are processed in blocks, transposed so that
// the inner loop vectorizes.
std::vector<std::set<uint64_t>> ExactTop5(const std::vector<float>& data, int64_t n, int32_t dim,
                                          const std::vector<float>& queries, int32_t nq) {
  constexpr int32_t kBlock = 16;
  std::vector<std::set<uint64_t>> truth(nq);
  const int32_t blocks = (nq + kBlock - 1) / kBlock;
  auto work = [&](int32_t first_block, int32_t step) {
    std::vector<float> qt(int64_t{dim} * kBlock);
    for (int32_t b = first_block; b < blocks; b += step) {
      const int32_t q0 = b * kBlock, m = std::min(kBlock, nq - q0);
      std::fill(qt.begin(), qt.end(), 0.0f);
      for (int32_t j = 0; j < m; ++j) {
        for (int32_t d = 0; d < dim; ++d) qt[d * kBlock + j] = queries[(int64_t{q0} + j) * dim + d];
      }
      std::vector<std::vector<std::pair<float, uint64_t>>> best(m);
      for (int64_t r = 0; r < n; ++r) {
        const float* row = data.data() + r * dim;
        float acc[kBlock] = {};
        for (int32_t d = 0; d < dim; ++d) {
          for (int32_t j = 0; j < kBlock; ++j) acc[j] += row[d] * qt[d * kBlock + j];
        }
        for (int32_t j = 0; j < m; ++j) {
          auto& top = best[j];
          if (top.size() < 5 || acc[j] > top.front().first) {
            top.emplace_back(acc[j], static_cast<uint64_t>(r + 1));
            std::push_heap(top.begin(), top.end(), std::greater<>());
            if (top.size() > 5) {
              std::pop_heap(top.begin(), top.end(), std::greater<>());
              top.pop_back();
            }
          }
        }
      }
      for (int32_t j = 0; j < m; ++j) {
        for (const auto& [score, id] : best[j]) truth[q0 + j].insert(id);
      }
    }
  };
  const int32_t threads = std::max(1u, std::thread::hardware_concurrency());
  std::vector<std::thread> pool;
  for (int32_t t = 0; t < threads; ++t) pool.emplace_back(work, t, threads);
  for (std::thread& t : pool) t.join();
  return truth;
}

struct Flags {
  std::vector<int64_t> sizes = {100000, 1000000};
  int32_t dim = 576;
  int32_t clusters = 1000;
  int32_t queries = 1000;
  int32_t flat_queries = 1000;
  std::vector<int64_t> nprobes = {16, 32, 48, 64};
  int32_t docs = 500;
  std::string dir = "/tmp/retrieval_bench";
};

bool ParseList(const std::string& value, std::vector<int64_t>* out) {
  out->clear();
  for (absl::string_view s : absl::StrSplit(value, ',')) {
    int64_t n = 0;
    if (!absl::SimpleAtoi(s, &n) || n <= 0) return false;
    out->push_back(n);
  }
  return true;
}

bool ParseFlags(int argc, char** argv, Flags* flags) {
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const size_t eq = arg.find('=');
    const std::string name = arg.substr(0, eq);
    const std::string value = eq == std::string::npos ? "" : arg.substr(eq + 1);
    bool ok = true;
    if (name == "--sizes") {
      ok = ParseList(value, &flags->sizes);
    } else if (name == "--nprobes") {
      ok = ParseList(value, &flags->nprobes);
    } else if (name == "--dim") {
      ok = absl::SimpleAtoi(value, &flags->dim) && flags->dim > 0;
    } else if (name == "--clusters") {
      ok = absl::SimpleAtoi(value, &flags->clusters) && flags->clusters > 0;
    } else if (name == "--queries") {
      ok = absl::SimpleAtoi(value, &flags->queries) && flags->queries > 0;
    } else if (name == "--flat_queries") {
      ok = absl::SimpleAtoi(value, &flags->flat_queries) && flags->flat_queries > 0;
    } else if (name == "--docs") {
      ok = absl::SimpleAtoi(value, &flags->docs) && flags->docs > 0;
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

// Index rows for n vectors: builds the index as the store would (batches of 4096, flat_max
// 100000 or n - 1 so that the ivf row is an IVF), then times Search(k=5) per query for each
// nprobe (IVF) or once (flat).
int IndexRows(const Flags& flags, int64_t n, bool ivf, const std::vector<float>& data,
              const std::vector<float>& queries, const std::vector<std::set<uint64_t>>& truth) {
  constexpr int64_t kBatch = 4096;
  VectorIndex::Options options;
  options.dim = flags.dim;
  options.flat_max = ivf ? std::min<int64_t>(options.flat_max, n - 1) : n;
  const double rss_before = ResidentMb();
  auto index = VectorIndex::Create(options);
  if (!index.ok()) return std::fprintf(stderr, "%s\n", index.status().ToString().c_str()), 1;
  const auto build_start = Clock::now();
  std::vector<uint64_t> ids;
  const std::vector<uint32_t> tags(kBatch, 0);
  for (int64_t begin = 0; begin < n; begin += kBatch) {
    const int64_t m = std::min(kBatch, n - begin);
    ids.resize(m);
    for (int64_t i = 0; i < m; ++i) ids[i] = static_cast<uint64_t>(begin + i + 1);
    absl::Status added = (*index)->Add(ids, std::span(tags).first(m),
                                       std::span(data).subspan(begin * flags.dim, m * flags.dim));
    if (!added.ok()) return std::fprintf(stderr, "%s\n", added.ToString().c_str()), 1;
  }
  const double build_s = Seconds(build_start);
  const double memory_mb = ResidentMb() - rss_before;

  const int32_t nq = ivf ? flags.queries : std::min(flags.queries, flags.flat_queries);
  const std::vector<int64_t> nprobes = ivf ? flags.nprobes : std::vector<int64_t>{0};
  for (int64_t nprobe : nprobes) {
    if (ivf) (*index)->set_ivf_nprobe(static_cast<int32_t>(nprobe));
    std::vector<double> latency_ms;
    int64_t found = 0;
    for (int32_t q = 0; q < nq; ++q) {
      const auto start = Clock::now();
      auto hits = (*index)->Search(std::span(queries).subspan(q * flags.dim, flags.dim), 5, {});
      latency_ms.push_back(1e3 * Seconds(start));
      if (!hits.ok()) return std::fprintf(stderr, "%s\n", hits.status().ToString().c_str()), 1;
      for (const VectorIndex::Hit& hit : *hits) found += truth[q].count(hit.id);
    }
    const std::string kind = ivf ? std::string("ivf ") + std::to_string((*index)->ivf_lists()) +
                                       "/" + std::to_string(nprobe)
                                 : std::string("flat");
    std::printf("| %9lld | %-15s | %7.1f | %8.0f | %5d | %8.3f | %8.3f | %9.3f |\n",
                static_cast<long long>(n), kind.c_str(), build_s, memory_mb, nq,
                Percentile(latency_ms, 0.5), Percentile(latency_ms, 0.99),
                static_cast<double>(found) / (5.0 * nq));
    std::fflush(stdout);
  }
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
  FillClusteredVectors(max_n, flags.dim, flags.clusters, 3, &data);
  FillUnitVectors(flags.queries, flags.dim, 5, &queries);
  for (int64_t q = 0; q < flags.queries; ++q) {
    float* v = queries.data() + q * flags.dim;
    const float* near = data.data() + (q % max_n) * flags.dim;
    for (int32_t d = 0; d < flags.dim; ++d) v[d] = near[d] + 0.5f * v[d];
    Normalize(v, flags.dim);
  }

  std::printf("retrieval_bench: dim %d, %d Gaussian clusters, %d queries near stored vectors, "
              "top-5, %u hardware threads (builds use them all through OpenMP, a Search one)\n\n",
              flags.dim, flags.clusters, flags.queries, std::thread::hardware_concurrency());
  std::printf("| refs      | index lists/nprobe | build s | RSS MB | queries | p50 ms | p99 ms | "
              "recall@5 |\n");
  std::printf("|-----------|-----------------|---------|----------|-------|----------|----------|"
              "-----------|\n");
  for (int64_t n : flags.sizes) {
    const auto start = Clock::now();
    const auto truth = ExactTop5(data, n, flags.dim, queries, flags.queries);
    std::fprintf(stderr, "exact top-5 of %lld refs: %.1f s\n", static_cast<long long>(n),
                 Seconds(start));
    if (int rc = IndexRows(flags, n, /*ivf=*/false, data, queries, truth)) return rc;
    if (int rc = IndexRows(flags, n, /*ivf=*/true, data, queries, truth)) return rc;
  }
  return StoreRows(flags);
}

}  // namespace
}  // namespace memoria

int main(int argc, char** argv) { return memoria::Main(argc, argv); }
