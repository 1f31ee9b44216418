#include "server/metrics/server_metrics.h"

namespace memoria {
namespace {

// Powers of two up to the largest batch the model accepts (max_batch_tokens is at most a few
// thousand rows).
std::vector<double> PowersOfTwo(int32_t max_exponent) {
  std::vector<double> bounds;
  for (int32_t e = 0; e <= max_exponent; ++e) bounds.push_back(static_cast<double>(1 << e));
  return bounds;
}

}  // namespace

ServerMetrics::ServerMetrics(MetricsRegistry* r) : registry(r) {
  const std::string requests = "memoria_requests_total";
  const std::string requests_help = "Generation requests by how they ended.";
  requests_ok = r->AddCounter(requests, requests_help, {{"outcome", "ok"}});
  requests_cancelled = r->AddCounter(requests, requests_help, {{"outcome", "cancelled"}});
  requests_rejected = r->AddCounter(requests, requests_help, {{"outcome", "rejected"}});
  requests_invalid = r->AddCounter(requests, requests_help, {{"outcome", "invalid"}});
  requests_failed = r->AddCounter(requests, requests_help, {{"outcome", "failed"}});
  queue_depth = r->AddGauge("memoria_queue_depth", "Accepted requests waiting for a batch slot.");
  running_sequences = r->AddGauge("memoria_running_sequences",
                                  "Sequences in the running batch (prefilling or decoding).");
  batch_tokens = r->AddHistogram("memoria_batch_tokens", "Token rows per forward pass.",
                                 PowersOfTwo(13));
  batch_sequences = r->AddHistogram("memoria_batch_sequences", "Sequences per forward pass.",
                                    PowersOfTwo(9));
  ttft_seconds = r->AddHistogram("memoria_time_to_first_token_seconds",
                                 "From acceptance to the first generated token.",
                                 LatencyBuckets());
  inter_token_seconds = r->AddHistogram("memoria_inter_token_seconds",
                                        "Between consecutive generated tokens of a sequence.",
                                        LatencyBuckets());
  queue_seconds = r->AddHistogram("memoria_queue_seconds",
                                  "From acceptance to admission into the running batch.",
                                  LatencyBuckets());
  prompt_tokens = r->AddCounter("memoria_prompt_tokens_total", "Prompt tokens prefilled.");
  generated_tokens =
      r->AddCounter("memoria_generated_tokens_total", "Tokens generated (rate() is tokens/s).");
  kv_pages_used = r->AddGauge("memoria_kv_pages_used", "KV cache pages held by sequences.");
  kv_pages_total = r->AddGauge("memoria_kv_pages_total", "KV cache pages in the pool.");
  retrieval_seconds = r->AddHistogram(
      "memoria_retrieval_seconds", "One memory retrieval: query vector, search and page loads.",
      LatencyBuckets());
  retrievals = r->AddCounter("memoria_retrievals_total", "Memory retrievals run.");
  ingested_documents =
      r->AddCounter("memoria_ingested_documents_total", "Documents compiled into memory.");
  ingested_references = r->AddCounter("memoria_ingested_references_total",
                                      "References stored by document ingestion.");
  ingest_failures =
      r->AddCounter("memoria_ingest_failures_total", "Documents whose ingestion failed.");
  ingest_seconds = r->AddHistogram("memoria_ingest_seconds",
                                   "Per document: compile and store.", LatencyBuckets());
}

}  // namespace memoria
