#ifndef MEMORIA_ENGINE_UTIL_ROW_SPLIT_H_
#define MEMORIA_ENGINE_UTIL_ROW_SPLIT_H_

#include <algorithm>
#include <cstdint>

namespace memoria {

// The rows of a weight matrix split into ThreadPool tasks, which threads take in order as they
// become free. First one long block per thread (3/4 of the rows together), so each thread's
// weight streams run long enough to get up to speed, then 4 short blocks per thread for the last
// quarter, so that a thread the machine slows down leaves the others waiting for a short block
// only. (Two equal blocks per thread left the threads of a 1B decode waiting for each other ~13%
// of the time; eight equal ones made the streams too short.) Blocks are multiples of `align`
// rows, except the last. One thread gets one block.
class RowSplit {
 public:
  RowSplit(int64_t rows, int n_threads, int64_t align) : rows_(rows) {
    auto round_up = [align](int64_t n) { return std::max(align, (n + align - 1) / align * align); };
    long_block_ = n_threads == 1 ? round_up(rows) : round_up(rows * 3 / (4 * n_threads));
    n_long_ = std::min<int64_t>(n_threads, (rows + long_block_ - 1) / long_block_);
    const int64_t rest = std::max<int64_t>(0, rows - n_long_ * long_block_);
    short_block_ = round_up(rest / (4 * n_threads));
    n_tasks_ = n_long_ + (rest + short_block_ - 1) / short_block_;
  }

  int64_t n_tasks() const { return n_tasks_; }
  int64_t begin(int64_t task) const {
    return task < n_long_ ? task * long_block_
                          : n_long_ * long_block_ + (task - n_long_) * short_block_;
  }
  int64_t end(int64_t task) const {
    return std::min(rows_, begin(task) + (task < n_long_ ? long_block_ : short_block_));
  }

 private:
  int64_t rows_;
  int64_t long_block_, n_long_, short_block_, n_tasks_;
};

}  // namespace memoria

#endif  // MEMORIA_ENGINE_UTIL_ROW_SPLIT_H_
