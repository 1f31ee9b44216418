#include <algorithm>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "engine/sampling/sampler.h"

namespace memoria {

namespace {

// Length of the longest suffix of `text` that is a proper prefix of `stop` (a full occurrence is
// found by the search in Push, not here).
size_t PartialMatchLength(std::string_view text, std::string_view stop) {
  for (size_t len = std::min(text.size(), stop.size() - 1); len > 0; --len) {
    if (text.substr(text.size() - len) == stop.substr(0, len)) return len;
  }
  return 0;
}

}  // namespace

StopStringMatcher::StopStringMatcher(std::vector<std::string> stops) : stops_(std::move(stops)) {
  // An empty stop string would match before any text; it is taken as no stop at all.
  stops_.erase(std::remove(stops_.begin(), stops_.end(), std::string()), stops_.end());
}

StopStringMatcher::Result StopStringMatcher::Push(std::string_view delta) {
  held_.append(delta);
  Result result;

  // The earliest completed stop string wins, whichever of them it is.
  size_t stop_at = std::string::npos;
  for (const std::string& stop : stops_) stop_at = std::min(stop_at, held_.find(stop));
  if (stop_at != std::string::npos) {
    result.text = held_.substr(0, stop_at);
    result.stopped = true;
    held_.clear();
    return result;
  }

  // Hold back only what could still grow into a stop string: the longest suffix that is a
  // prefix of one. Everything before it can never be part of a match.
  size_t hold = 0;
  for (const std::string& stop : stops_) hold = std::max(hold, PartialMatchLength(held_, stop));
  result.text = held_.substr(0, held_.size() - hold);
  held_.erase(0, held_.size() - hold);
  return result;
}

std::string StopStringMatcher::Flush() {
  std::string rest = std::move(held_);
  held_.clear();
  return rest;
}

}  // namespace memoria
