#include "server/scheduler/generation_stream.h"

#include <chrono>
#include <utility>

namespace memoria {

void GenerationStream::Push(GenerationEvent event) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    events_.push_back(std::move(event));
  }
  cv_.notify_one();
}

bool GenerationStream::Next(GenerationEvent* event, absl::Duration timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  if (!cv_.wait_for(lock, absl::ToChronoNanoseconds(timeout), [&] { return !events_.empty(); })) {
    return false;
  }
  *event = std::move(events_.front());
  events_.pop_front();
  // Merge what else is queued, up to the next retrieval (a message carries one) or the finish.
  while (!events_.empty() && !event->finish.has_value()) {
    GenerationEvent& next = events_.front();
    if (next.retrieval.has_value() && event->retrieval.has_value()) break;
    if (next.retrieval.has_value() && !event->tokens.empty()) break;  // it applies to later tokens
    if (next.retrieval.has_value()) event->retrieval = std::move(next.retrieval);
    event->text += next.text;
    for (SampledToken& t : next.tokens) event->tokens.push_back(std::move(t));
    event->finish = std::move(next.finish);
    events_.pop_front();
  }
  return true;
}

}  // namespace memoria
