#ifndef MEMORIA_SERVER_SERVING_STATE_H_
#define MEMORIA_SERVER_SERVING_STATE_H_

#include <atomic>
#include <string>

#include "engine/model/model.h"
#include "memstore/memory_store.h"
#include "server/metrics/server_metrics.h"
#include "server/scheduler/scheduler.h"

namespace memoria {

// What the front ends (gRPC services, HTTP) share. The front ends start before the model is
// loaded so that health probes answer NOT_SERVING meanwhile: every pointer below is set before
// `ready` turns true (release), and read only after seeing it true (acquire).
struct ServingState {
  std::atomic<bool> ready{false};
  Model* model = nullptr;
  Scheduler* scheduler = nullptr;
  MemoryStore* store = nullptr;        // null: the server runs without memory
  const CompilerOptions* compiler = nullptr;
  ServerMetrics* metrics = nullptr;
  std::string model_description;      // the store's model fingerprint, for Stats
  std::string admin_token;             // empty: admin RPCs are open

  bool IsReady() const { return ready.load(std::memory_order_acquire); }
};

}  // namespace memoria

#endif  // MEMORIA_SERVER_SERVING_STATE_H_
