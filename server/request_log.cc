#include "server/request_log.h"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace memoria {
namespace {

void AppendJsonString(std::string_view s, std::string* out) {
  out->push_back('"');
  for (char c : s) {
    switch (c) {
      case '"': out->append("\\\""); break;
      case '\\': out->append("\\\\"); break;
      case '\n': out->append("\\n"); break;
      case '\r': out->append("\\r"); break;
      case '\t': out->append("\\t"); break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          absl::StrAppend(out, absl::StrFormat("\\u%04x", c));
        } else {
          out->push_back(c);
        }
    }
  }
  out->push_back('"');
}

}  // namespace

std::string NewRequestId() {
  static const uint64_t process_salt = std::random_device{}() * 0x9E3779B97F4A7C15ull;
  static std::atomic<uint64_t> counter{0};
  uint64_t x = process_salt + counter.fetch_add(1) * 0xBF58476D1CE4E5B9ull;
  x ^= x >> 31;  // spread consecutive counters over all digits
  return absl::StrFormat("req-%016x", x);
}

void LogEvent(std::string_view event, const LogFields& fields) {
  std::string line = "{\"ts\":";
  AppendJsonString(absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(), absl::UTCTimeZone()),
                   &line);
  line += ",\"event\":";
  AppendJsonString(event, &line);
  for (const auto& [key, value] : fields) {
    line.push_back(',');
    AppendJsonString(key, &line);
    line.push_back(':');
    AppendJsonString(value, &line);
  }
  line += "}\n";
  // One fwrite per line: stdio locks the stream, so lines stay whole.
  std::fwrite(line.data(), 1, line.size(), stderr);
}

}  // namespace memoria
