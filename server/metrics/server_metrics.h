#ifndef MEMORIA_SERVER_METRICS_SERVER_METRICS_H_
#define MEMORIA_SERVER_METRICS_SERVER_METRICS_H_

#include "server/metrics/metrics_registry.h"

namespace memoria {

// The series the server exports at /metrics, registered once. Names follow Prometheus
// conventions: memoria_ prefix, base units (seconds, bytes), _total for counters.
struct ServerMetrics {
  explicit ServerMetrics(MetricsRegistry* registry);

  MetricsRegistry* registry;
  // Generation requests by how they ended.
  Counter* requests_ok;
  Counter* requests_cancelled;      // client cancel or deadline
  Counter* requests_rejected;       // queue full (RESOURCE_EXHAUSTED)
  Counter* requests_invalid;        // bad input (INVALID_ARGUMENT and friends)
  Counter* requests_failed;         // internal errors
  Gauge* queue_depth;               // accepted, waiting for a slot
  Gauge* running_sequences;         // admitted: prefilling or decoding
  Histogram* batch_tokens;          // token rows per forward pass
  Histogram* batch_sequences;       // sequences per forward pass
  Histogram* ttft_seconds;          // accepted -> first token
  Histogram* inter_token_seconds;   // between consecutive tokens of a sequence
  Histogram* queue_seconds;         // accepted -> admitted
  Counter* prompt_tokens;
  Counter* generated_tokens;        // rate() of it is tokens/s
  Gauge* kv_pages_used;
  Gauge* kv_pages_total;
  Histogram* retrieval_seconds;     // query vector + search + page load
  Counter* retrievals;
  Counter* ingested_documents;
  Counter* ingested_references;
  Counter* ingest_failures;
  Histogram* ingest_seconds;        // per document: compile + store
};

}  // namespace memoria

#endif  // MEMORIA_SERVER_METRICS_SERVER_METRICS_H_
