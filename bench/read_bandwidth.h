#ifndef MEMORIA_BENCH_READ_BANDWIDTH_H_
#define MEMORIA_BENCH_READ_BANDWIDTH_H_

#include <cstddef>
#include <cstdint>

namespace memoria {

// The read bandwidth that bounds a decode step: `threads` threads each read a disjoint slice of a
// 512 MiB buffer in 2 MiB pages (as the CPU backend holds weights). A plain 64-bit sum per thread
// is limited by its own instructions on fast memory (on the development VM it reads ~60% of what
// wider loads get), so the probe also runs 4 interleaved streams of 64-byte loads per thread
// (AVX-512 or AVX2), on AVX2 also with each line requested ahead as the decode kernels do, and
// reports the fastest.
class ReadBandwidthProbe {
 public:
  explicit ReadBandwidthProbe(int threads);
  ~ReadBandwidthProbe();
  ReadBandwidthProbe(const ReadBandwidthProbe&) = delete;
  ReadBandwidthProbe& operator=(const ReadBandwidthProbe&) = delete;

  // Bytes per second: best of `passes` reads of the whole buffer with each loop.
  double Measure(int passes = 3);
  size_t bytes() const { return bytes_; }

 private:
  const int threads_;
  const size_t bytes_;
  uint8_t* data_;
};

}  // namespace memoria

#endif  // MEMORIA_BENCH_READ_BANDWIDTH_H_
