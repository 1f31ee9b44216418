#ifndef MEMORIA_ENGINE_UTIL_HUGE_PAGES_H_
#define MEMORIA_ENGINE_UTIL_HUGE_PAGES_H_

#include <cstddef>

namespace memoria {

inline constexpr size_t kHugePageBytes = size_t{2} << 20;

// `bytes` rounded up to whole huge pages: what AllocateHugePages(bytes) hands out.
inline constexpr size_t RoundUpToHugePages(size_t bytes) {
  return (bytes + kHugePageBytes - 1) / kHugePageBytes * kHugePageBytes;
}

// Memory for data streamed at full bandwidth (weights, the bandwidth probe): 2 MiB aligned and
// advised onto transparent huge pages. On 4 KiB pages a stream pays a TLB miss every 4 KiB and
// the hardware prefetchers stop at every page boundary (1B Q8_0 decode 15.2 vs 8.6 t/s on one
// thread, docs/performance.md). Without transparent huge pages it still works, only slower to
// stream. `bytes` is rounded up to whole huge pages. Free with std::free; null when out of memory.
void* AllocateHugePages(size_t bytes);

}  // namespace memoria

#endif  // MEMORIA_ENGINE_UTIL_HUGE_PAGES_H_
