// kill -9 of a process writing to the store, then reopen and compare with an oracle.
//
// The child is this test binary re-executed with MEMORIA_STORE_CRASH_DIR set, running only
// StoreCrashTest.ChildWriter: it puts and deletes documents in a loop and appends to an oracle
// log "B <op> <id> <version>" before each operation and "A" after it returns. So every operation
// whose "A" is in the log was acknowledged, and at most one (the last) was in flight at the kill.
// The parent kills it at a random moment, reopens the store and checks: acknowledged operations
// are all visible, the in-flight one is all or nothing, no document is partial (its references,
// memories and vectors all present, nothing orphaned), and the FAISS index agrees with RocksDB.

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>

#include "gtest/gtest.h"
#include "memstore/rocks_store.h"
#include "tests/memstore/store_test_util.h"
#include "tests/test_support.h"

namespace memoria {
namespace {

using ::memoria::testing::MakeDocument;
using ::memoria::testing::RandomUnitVector;
using ::memoria::testing::RawDb;
using ::memoria::testing::TempDir;
using ::memoria::testing::TestFingerprint;
using ::memoria::testing::TestOptions;

constexpr char kDirEnv[] = "MEMORIA_STORE_CRASH_DIR";
constexpr char kVersionEnv[] = "MEMORIA_STORE_CRASH_VERSION";
constexpr int kDocumentIds = 40;

// Saving the index every few writes puts some kills in the middle of a save.
RocksStoreTuning CrashTuning() {
  RocksStoreTuning tuning;
  tuning.index_save_interval = 7;
  return tuning;
}

std::string DocId(int n) { return "doc" + std::to_string(n); }
// Documents move between collections as they are rewritten.
std::string CollectionOf(const std::string& id, uint64_t version) {
  return "c" + std::to_string((std::stoi(id.substr(3)) + version) % 3);
}
int32_t RefsOf(uint64_t version) { return 1 + static_cast<int32_t>(version % 4); }
Document Expected(const std::string& id, uint64_t version) {
  return MakeDocument(id, CollectionOf(id, version), version, RefsOf(version));
}

void Append(int fd, const std::string& line) {
  // write(2) lands in the page cache at once, so the line survives the kill of this process.
  ASSERT_EQ(::write(fd, line.data(), line.size()), static_cast<ssize_t>(line.size()));
}

TEST(StoreCrashTest, ChildWriter) {
  const char* dir = std::getenv(kDirEnv);
  if (dir == nullptr) GTEST_SKIP() << "runs only as the child of KillNineKeepsAcknowledgedWrites";
  const uint64_t first_version = std::stoull(std::getenv(kVersionEnv));
  const int log = ::open((std::string(dir) + "/oracle.log").c_str(),
                         O_WRONLY | O_APPEND | O_CREAT, 0644);
  ASSERT_GE(log, 0);
  auto store = RocksStore::Open(TestOptions(), CrashTuning(), std::string(dir) + "/store",
                                TestFingerprint());
  ASSERT_TRUE(store.ok()) << store.status();
  std::mt19937_64 rng(first_version);
  for (uint64_t version = first_version;; ++version) {
    const std::string id = DocId(static_cast<int>(rng() % kDocumentIds));
    if (rng() % 5 == 0) {
      Append(log, "B del " + id + " " + std::to_string(version) + "\n");
      const absl::Status deleted = (*store)->Delete(id);
      ASSERT_TRUE(deleted.ok() || absl::IsNotFound(deleted)) << deleted;
    } else {
      Append(log, "B put " + id + " " + std::to_string(version) + "\n");
      const auto put = (*store)->Put(Expected(id, version));
      ASSERT_TRUE(put.ok()) << put.status();
    }
    Append(log, "A\n");
  }
}

// What the parent knows of one document id: absent, or present at a version.
using State = std::optional<uint64_t>;

struct Oracle {
  std::map<std::string, State> state;
  // The operation in flight at the kill, if any: its id and the state it would leave.
  std::optional<std::pair<std::string, State>> pending;
};

// Applies the log lines of one round to the oracle.
void ReadRound(const std::string& log_path, size_t* offset, Oracle* oracle) {
  std::ifstream in(log_path);
  in.seekg(static_cast<std::streamoff>(*offset));
  std::string line;
  std::optional<std::pair<std::string, State>> begun;
  while (std::getline(in, line)) {
    if (in.eof()) break;  // a torn last line: the operation was not even begun
    *offset += line.size() + 1;
    std::istringstream fields(line);
    std::string tag, op, id;
    uint64_t version = 0;
    fields >> tag >> op >> id >> version;
    if (tag == "B") {
      begun.emplace(id, op == "put" ? State(version) : State());
    } else {
      ASSERT_EQ(tag, "A");
      ASSERT_TRUE(begun.has_value());
      oracle->state[begun->first] = begun->second;
      begun.reset();
    }
  }
  oracle->pending = begun;
}

// Checks one stored document against the content of its version: every reference complete.
void ExpectComplete(const MemoryStore& store, const DocumentInfo& info, uint64_t version,
                    std::set<uint64_t>* live) {
  const Document want = Expected(info.id, version);
  EXPECT_EQ(info.collection, want.collection);
  EXPECT_EQ(info.metadata, want.metadata);
  ASSERT_EQ(info.reference_ids.size(), want.references.size()) << info.id;
  auto pages = store.Load(info.reference_ids);
  ASSERT_TRUE(pages.ok()) << info.id << ": " << pages.status();
  for (size_t j = 0; j < want.references.size(); ++j) {
    const uint64_t id = info.reference_ids[j];
    live->insert(id);
    auto ref = store.GetReference(id);
    ASSERT_TRUE(ref.ok()) << ref.status();
    EXPECT_EQ(ref->text, want.references[j].text);
    EXPECT_EQ((*pages)[j]->memory().heads[1].keys, want.references[j].memory.heads[1].keys);
    auto hits = store.Retrieve(want.references[j].vector, 1, {info.collection}, -1.0f);
    ASSERT_TRUE(hits.ok()) << hits.status();
    ASSERT_EQ(hits->size(), 1u);
    EXPECT_EQ((*hits)[0].reference_id, id) << info.id << " reference " << j;
  }
}

// Reopens the store and checks it against the oracle; resolves the pending operation.
void Verify(const std::string& store_path, Oracle* oracle) {
  std::set<uint64_t> live;
  std::set<std::string> present;
  {
    auto opened = RocksStore::Open(TestOptions(), CrashTuning(), store_path, TestFingerprint());
    ASSERT_TRUE(opened.ok()) << opened.status();
    const MemoryStore& store = **opened;
    for (int n = 0; n < kDocumentIds; ++n) {
      const std::string id = DocId(n);
      const State before = oracle->state[id];  // absent when never written
      auto info = store.Get(id);
      ASSERT_TRUE(info.ok() || absl::IsNotFound(info.status())) << info.status();
      State found;
      if (info.ok()) {
        found = std::stoull(info->metadata.substr(5));  // {"v":<version>}
        present.insert(id);
      }
      const bool in_flight = oracle->pending.has_value() && oracle->pending->first == id;
      if (found != before) {
        ASSERT_TRUE(in_flight && found == oracle->pending->second)
            << id << " is " << (found ? std::to_string(*found) : "absent") << ", expected "
            << (before ? std::to_string(*before) : "absent");
      }
      oracle->state[id] = found;
      if (found) ExpectComplete(store, *info, *found, &live);
    }
    oracle->pending.reset();

    // The index returns exactly the stored references: nothing deleted, nothing missing.
    std::mt19937_64 rng(live.size());
    auto hits = store.Retrieve(RandomUnitVector(16, rng), 1000, {}, -2.0f);
    ASSERT_TRUE(hits.ok()) << hits.status();
    std::set<uint64_t> returned;
    for (const RetrievedReference& hit : *hits) returned.insert(hit.reference_id);
    EXPECT_EQ(returned, live);
    EXPECT_EQ(store.Stats().references, static_cast<int64_t>(live.size()));
    EXPECT_EQ(store.Stats().documents, static_cast<int64_t>(present.size()));
  }
  // Nothing orphaned: the rows of every column family belong to a present document.
  RawDb raw(store_path);
  std::set<std::string> reference_keys;
  for (uint64_t id : live) reference_keys.insert(RawDb::Key(id));
  EXPECT_EQ(raw.Keys("references"), reference_keys);
  EXPECT_EQ(raw.Keys("memories"), reference_keys);
  EXPECT_EQ(raw.Keys("vectors"), reference_keys);
  EXPECT_EQ(raw.Keys("documents"), present);
  std::set<std::string> collection_keys;
  for (const std::string& id : present) {
    const uint64_t version = *oracle->state[id];
    collection_keys.insert(CollectionOf(id, version) + std::string(1, '\0') + id);
  }
  EXPECT_EQ(raw.Keys("collections"), collection_keys);
}

// Acknowledgements ("A" lines) the oracle log holds after byte `offset`.
int64_t AcknowledgedSince(const std::string& log_path, size_t offset) {
  std::ifstream in(log_path);
  in.seekg(static_cast<std::streamoff>(offset));
  int64_t n = 0;
  std::string line;
  while (std::getline(in, line)) n += line == "A";
  return n;
}

TEST(StoreCrashTest, KillNineKeepsAcknowledgedWrites) {
  const std::string dir = TempDir("store_crash");
  const std::string log_path = dir + "/oracle.log";
  const unsigned seed = std::random_device{}();
  SCOPED_TRACE(::testing::Message() << "seed " << seed);
  std::mt19937 rng(seed);
  Oracle oracle;
  size_t offset = 0;
  int64_t acknowledged = 0;
  for (int round = 0; round < 7; ++round) {
    const pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
      ::setenv(kDirEnv, dir.c_str(), 1);
      ::setenv(kVersionEnv, std::to_string((round + 1) * 1000000).c_str(), 1);
      const int null = ::open("/dev/null", O_WRONLY);
      ::dup2(null, STDOUT_FILENO);
      ::execl("/proc/self/exe", "memstore_tests", "--gtest_filter=StoreCrashTest.ChildWriter",
              static_cast<char*>(nullptr));
      ::_exit(127);
    }
    // The child's start (exec, opening RocksDB and FAISS) takes a while on a loaded machine:
    // kill it a random time after its first acknowledged write of the round, not after its start.
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (AcknowledgedSince(log_path, offset) == 0 && std::chrono::steady_clock::now() < give_up) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    const int delay_ms = 50 + static_cast<int>(rng() % 451);
    std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
    ASSERT_EQ(::kill(child, SIGKILL), 0);
    int status = 0;
    ASSERT_EQ(::waitpid(child, &status, 0), child);
    ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
        << "the child ended on its own (status " << status << ") in round " << round;

    acknowledged += AcknowledgedSince(log_path, offset);
    ASSERT_NO_FATAL_FAILURE(ReadRound(log_path, &offset, &oracle));
    ASSERT_NO_FATAL_FAILURE(Verify(dir + "/store", &oracle)) << "round " << round;
  }
  // The kills must have interrupted real work, or the test proves nothing.
  EXPECT_GT(acknowledged, 50);
  std::cout << "acknowledged operations: " << acknowledged << "\n";
}

}  // namespace
}  // namespace memoria
