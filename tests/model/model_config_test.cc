// ModelConfig's reading of the Memoria-specific keys a model trained for explicit memory carries
// (tools/train/ writes them): memoria.memory_layers, the layers it reads memories in, and
// memoria.retrieval.score_gap, the retrieval score gap it was calibrated with.
#include <algorithm>
#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "engine/gguf/gguf_file.h"
#include "engine/gguf/gguf_writer.h"
#include "engine/model/model_config.h"
#include "tests/test_support.h"

namespace memoria {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

// A 4-layer llama header and its embedding tensor; `declare` adds memoria.memory_layers.
absl::StatusOr<ModelConfig> ConfigOf(const std::string& name,
                                     const std::function<void(GgufWriter&)>& declare) {
  GgufWriter w;
  w.SetString("general.architecture", "llama");
  w.SetUint32("llama.block_count", 4);
  w.SetUint32("llama.embedding_length", 64);
  w.SetUint32("llama.feed_forward_length", 128);
  w.SetUint32("llama.attention.head_count", 4);
  w.SetUint32("llama.context_length", 256);
  declare(w);
  absl::Status added = w.AddTensor("token_embd.weight", GgmlType::kF32, {64, 16},
                                   [](uint8_t* data, size_t size) { std::fill_n(data, size, 0); });
  if (!added.ok()) return added;
  const std::string path = testing::TempDir("model_config") + "/" + name + ".gguf";
  if (absl::Status st = w.WriteFile(path); !st.ok()) return st;
  absl::StatusOr<std::unique_ptr<GgufFile>> file = GgufFile::Open(path);
  if (!file.ok()) return file.status();
  return ModelConfig::FromGguf(**file);
}

TEST(ModelConfigTest, MemoryLayersComeFromTheFile) {
  absl::StatusOr<ModelConfig> none = ConfigOf("none", [](GgufWriter&) {});
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_THAT(none->memory_layers, IsEmpty());

  absl::StatusOr<ModelConfig> declared =
      ConfigOf("declared", [](GgufWriter& w) { w.SetInt32Array("memoria.memory_layers", {1, 3}); });
  ASSERT_TRUE(declared.ok()) << declared.status();
  EXPECT_THAT(declared->memory_layers, ElementsAre(1, 3));
}

TEST(ModelConfigTest, BadMemoryLayersNameTheKey) {
  const std::vector<std::pair<std::string, std::vector<int32_t>>> bad = {
      {"empty", {}}, {"beyond", {0, 4}}, {"negative", {-1, 2}}, {"unsorted", {2, 1}},
      {"repeated", {1, 1}}};
  for (const auto& [name, layers] : bad) {
    absl::StatusOr<ModelConfig> c =
        ConfigOf(name, [&](GgufWriter& w) { w.SetInt32Array("memoria.memory_layers", layers); });
    ASSERT_FALSE(c.ok()) << name;
    EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument) << name;
    EXPECT_THAT(std::string(c.status().message()), HasSubstr("memoria.memory_layers")) << name;
  }
  absl::StatusOr<ModelConfig> text =
      ConfigOf("text", [](GgufWriter& w) { w.SetString("memoria.memory_layers", "0,1"); });
  ASSERT_FALSE(text.ok());
  EXPECT_THAT(std::string(text.status().message()), HasSubstr("memoria.memory_layers"));
}

TEST(ModelConfigTest, RetrievalScoreGapComesFromTheFile) {
  absl::StatusOr<ModelConfig> none = ConfigOf("no_gap", [](GgufWriter&) {});
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_FALSE(none->retrieval_score_gap.has_value());

  absl::StatusOr<ModelConfig> gap =
      ConfigOf("gap", [](GgufWriter& w) { w.SetFloat32("memoria.retrieval.score_gap", 0.05f); });
  ASSERT_TRUE(gap.ok()) << gap.status();
  ASSERT_TRUE(gap->retrieval_score_gap.has_value());
  EXPECT_FLOAT_EQ(*gap->retrieval_score_gap, 0.05f);

  for (float bad : {2.5f, -0.1f, std::nanf("")}) {
    absl::StatusOr<ModelConfig> c =
        ConfigOf("bad_gap", [&](GgufWriter& w) { w.SetFloat32("memoria.retrieval.score_gap", bad); });
    ASSERT_FALSE(c.ok()) << bad;
    EXPECT_THAT(std::string(c.status().message()), HasSubstr("memoria.retrieval.score_gap")) << bad;
  }
}

}  // namespace
}  // namespace memoria
