#ifndef MEMORIA_ENGINE_QUANT_QUANT_INTERNAL_H_
#define MEMORIA_ENGINE_QUANT_QUANT_INTERNAL_H_

// Helpers shared by the quantizers and the kernels of every instruction set (not a public API).

#include <cstdint>

#include "engine/gguf/ggml_type.h"

namespace memoria {

// Callers validate types before reaching the kernels, so an unknown type here is a bug: abort.
[[noreturn]] void DieUnsupportedType(const char* function, GgmlType type);

// Unpacks the 12 bytes of 6-bit Q4_K scales and mins into 8 of each (sub-block order).
void UnpackQ4KScales(const uint8_t* packed, uint8_t* scales, uint8_t* mins);

}  // namespace memoria

#endif  // MEMORIA_ENGINE_QUANT_QUANT_INTERNAL_H_
