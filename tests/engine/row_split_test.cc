#include "engine/util/row_split.h"

#include <gtest/gtest.h>

#include <vector>

namespace memoria {
namespace {

// Every row in exactly one task, tasks in order, each starting on a multiple of `align`.
TEST(RowSplitTest, CoversEveryRowOnceInAlignedBlocks) {
  for (int n_threads : {1, 2, 3, 8}) {
    for (int64_t rows : {1, 15, 16, 20, 40, 512, 2048, 2050, 128256}) {
      const RowSplit split(rows, n_threads, 16);
      int64_t next = 0;
      for (int64_t t = 0; t < split.n_tasks(); ++t) {
        EXPECT_EQ(split.begin(t), next) << "rows=" << rows << " threads=" << n_threads;
        EXPECT_EQ(split.begin(t) % 16, 0);
        EXPECT_GT(split.end(t), split.begin(t));
        next = split.end(t);
      }
      EXPECT_EQ(next, rows) << "rows=" << rows << " threads=" << n_threads;
    }
  }
}

TEST(RowSplitTest, OneThreadGetsOneBlock) {
  EXPECT_EQ(RowSplit(2048, 1, 16).n_tasks(), 1);
}

// One long block per thread, then short ones for the last quarter, so that threads finish
// within a short block of each other.
TEST(RowSplitTest, LongBlocksFirstThenShortOnes) {
  const RowSplit split(2048, 2, 16);
  ASSERT_EQ(split.n_tasks(), 2 + 8);
  EXPECT_EQ(split.end(0), 768);
  EXPECT_EQ(split.end(1), 1536);
  for (int64_t t = 2; t < split.n_tasks(); ++t) EXPECT_EQ(split.end(t) - split.begin(t), 64);
}

}  // namespace
}  // namespace memoria
