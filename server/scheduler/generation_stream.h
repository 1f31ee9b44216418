#ifndef MEMORIA_SERVER_SCHEDULER_GENERATION_STREAM_H_
#define MEMORIA_SERVER_SCHEDULER_GENERATION_STREAM_H_

#include <atomic>
#include <condition_variable>
#include <deque>
#include <mutex>

#include "absl/time/time.h"
#include "server/scheduler/generation_request.h"

namespace memoria {

// The channel between the scheduler's compute thread (producer) and the front end serving one
// request (consumer). The producer never blocks: events queue until the consumer takes them.
// The consumer cancels (client gone, deadline), and the scheduler frees the sequence at its next
// step.
class GenerationStream {
 public:
  // Producer side.
  void Push(GenerationEvent event);
  bool cancelled() const { return cancelled_.load(std::memory_order_acquire); }

  // Consumer side. Waits up to `timeout` for the next event; false on timeout. Consecutive
  // queued events are merged (text and tokens appended) so a slow consumer writes fewer messages.
  bool Next(GenerationEvent* event, absl::Duration timeout);
  void Cancel() { cancelled_.store(true, std::memory_order_release); }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<GenerationEvent> events_;
  std::atomic<bool> cancelled_{false};
};

}  // namespace memoria

#endif  // MEMORIA_SERVER_SCHEDULER_GENERATION_STREAM_H_
