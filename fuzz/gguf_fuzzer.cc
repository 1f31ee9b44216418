// libFuzzer target for the GGUF reader: any input must parse or fail with a Status, and whatever
// parses must keep the promises GgufFile makes (tensor bytes inside the input, sizes consistent).

#include <cstdint>
#include <cstdlib>

#include "engine/gguf/ggml_type.h"
#include "engine/gguf/gguf_file.h"

namespace {

void Check(bool condition) {
  if (!condition) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  absl::StatusOr<std::unique_ptr<memoria::GgufFile>> parsed = memoria::GgufFile::Parse(data, size);
  if (!parsed.ok()) {
    Check(!parsed.status().message().empty());
    return 0;
  }
  const memoria::GgufFile& file = **parsed;
  Check(file.alignment() != 0 && (file.alignment() & (file.alignment() - 1)) == 0);
  for (const memoria::GgufTensorInfo& info : file.tensors()) {
    Check(!info.dims.empty() && info.dims.size() <= 4);
    Check(info.size_bytes ==
          memoria::GgmlRowBytes(info.type, info.dims[0]) * static_cast<uint64_t>(info.Rows()));
    Check(info.size_bytes > 0 && info.data >= data && info.data + info.size_bytes <= data + size);
    Check(info.offset % file.alignment() == 0);
    Check(info.NumElements() > 0);
    // Touch both ends so that ASan sees any lie about the bounds.
    volatile uint8_t sink = info.data[0] ^ info.data[info.size_bytes - 1];
    (void)sink;
    Check(file.FindTensor(info.name) == &info);
  }
  // The typed getters must reject, never crash on, whatever type each key holds.
  for (const auto& [key, value] : file.metadata()) {
    Check(file.Find(key) != nullptr);
    (void)file.GetString(key).ok();
    (void)file.GetInt(key).ok();
    (void)file.GetUint(key).ok();
    (void)file.GetFloat(key).ok();
    (void)file.GetBool(key).ok();
    (void)file.GetStringArray(key).ok();
    (void)file.GetFloatArray(key).ok();
    (void)file.GetInt32Array(key).ok();
    (void)value.ArraySize();
  }
  return 0;
}
