#include "engine/util/huge_pages.h"

#include <sys/mman.h>

#include <cstdlib>

namespace memoria {

void* AllocateHugePages(size_t bytes) {
  const size_t rounded = RoundUpToHugePages(bytes);
  void* p = std::aligned_alloc(kHugePageBytes, rounded);
  // Advisory: the memory is usable whatever the kernel makes of it.
  if (p != nullptr) madvise(p, rounded, MADV_HUGEPAGE);
  return p;
}

}  // namespace memoria
