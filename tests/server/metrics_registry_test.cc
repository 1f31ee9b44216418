#include "server/metrics/metrics_registry.h"

#include <cmath>
#include <limits>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "server/metrics/server_metrics.h"
#include "tests/server/prometheus_text.h"

namespace memoria {
namespace {

using ::memoria::testing::Exposition;

using ::memoria::testing::ParsePrometheusText;

TEST(MetricsRegistryTest, RendersCountersAndGaugesWithHelpAndType) {
  MetricsRegistry registry;
  Counter* ok = registry.AddCounter("test_requests_total", "Requests.", {{"outcome", "ok"}});
  Counter* bad = registry.AddCounter("test_requests_total", "Requests.", {{"outcome", "bad"}});
  Gauge* depth = registry.AddGauge("test_queue_depth", "Waiting requests.");
  ok->Increment();
  ok->Increment(2);
  bad->Increment(0.5);
  depth->Set(7);
  depth->Add(-2.25);

  const Exposition parsed = ParsePrometheusText(registry.Render());
  EXPECT_EQ(parsed.type.at("test_requests_total"), "counter");
  EXPECT_EQ(parsed.type.at("test_queue_depth"), "gauge");
  EXPECT_EQ(parsed.help.at("test_requests_total"), "Requests.");
  EXPECT_EQ(parsed.samples.at("test_requests_total{outcome=\"ok\"}"), 3.0);
  EXPECT_EQ(parsed.samples.at("test_requests_total{outcome=\"bad\"}"), 0.5);
  EXPECT_EQ(parsed.samples.at("test_queue_depth"), 4.75);
  // Families come out sorted by name, so scrapes diff cleanly.
  EXPECT_EQ(parsed.families_in_order,
            (std::vector<std::string>{"test_queue_depth", "test_requests_total"}));
}

TEST(MetricsRegistryTest, SameNameAndLabelsReturnTheSameSeries) {
  MetricsRegistry registry;
  Counter* a = registry.AddCounter("test_total", "help", {{"k", "v"}});
  Counter* b = registry.AddCounter("test_total", "other help", {{"k", "v"}});
  Counter* c = registry.AddCounter("test_total", "help", {{"k", "w"}});
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
}

TEST(MetricsRegistryTest, HistogramBucketsAreCumulativeWithInfSumAndCount) {
  MetricsRegistry registry;
  Histogram* h = registry.AddHistogram("test_latency_seconds", "Latency.", {0.1, 1, 10},
                                       {{"op", "gen"}});
  for (double v : {0.05, 0.1, 0.5, 2.0, 20.0, 30.0}) h->Observe(v);

  const Exposition parsed = ParsePrometheusText(registry.Render());
  EXPECT_EQ(parsed.type.at("test_latency_seconds"), "histogram");
  auto bucket = [&](const std::string& le) {
    return parsed.samples.at("test_latency_seconds_bucket{op=\"gen\",le=\"" + le + "\"}");
  };
  EXPECT_EQ(bucket("0.1"), 2);  // upper bounds are inclusive
  EXPECT_EQ(bucket("1"), 3);
  EXPECT_EQ(bucket("10"), 4);
  EXPECT_EQ(bucket("+Inf"), 6);
  EXPECT_DOUBLE_EQ(parsed.samples.at("test_latency_seconds_sum{op=\"gen\"}"), 52.65);
  EXPECT_EQ(parsed.samples.at("test_latency_seconds_count{op=\"gen\"}"), 6);

  const Histogram::Snapshot snapshot = h->Read();
  EXPECT_EQ(snapshot.cumulative_counts, (std::vector<uint64_t>{2, 3, 4, 6}));
  EXPECT_EQ(snapshot.count, 6u);
}

TEST(MetricsRegistryTest, EscapesLabelValuesAndHelp) {
  MetricsRegistry registry;
  const std::string nasty = "a\"b\\c\nd";
  registry.AddGauge("test_info", "Help with \\ and\nnewline.", {{"path", nasty}})->Set(1);
  const std::string text = registry.Render();
  // Each sample stays on one line.
  EXPECT_NE(text.find("test_info{path=\"a\\\"b\\\\c\\nd\"} 1\n"), std::string::npos) << text;
  EXPECT_NE(text.find("# HELP test_info Help with \\\\ and\\nnewline.\n"), std::string::npos);
  const Exposition parsed = ParsePrometheusText(text);
  EXPECT_EQ(parsed.samples.at("test_info{path=\"" + nasty + "\"}"), 1);
  EXPECT_EQ(parsed.help.at("test_info"), "Help with \\ and\nnewline.");
}

TEST(MetricsRegistryTest, SpecialValuesRenderAsPrometheusReadsThem) {
  MetricsRegistry registry;
  registry.AddGauge("test_inf", "h")->Set(std::numeric_limits<double>::infinity());
  registry.AddGauge("test_nan", "h")->Set(std::nan(""));
  registry.AddGauge("test_small", "h")->Set(1e-9);
  registry.AddGauge("test_big", "h")->Set(12345678901234.0);
  const std::string text = registry.Render();
  EXPECT_NE(text.find("test_inf +Inf\n"), std::string::npos) << text;
  EXPECT_NE(text.find("test_nan NaN\n"), std::string::npos) << text;
  const Exposition parsed = ParsePrometheusText(text);
  EXPECT_EQ(parsed.samples.at("test_small"), 1e-9);
  EXPECT_EQ(parsed.samples.at("test_big"), 12345678901234.0);
}

TEST(MetricsRegistryTest, CallbacksAreReadAtRenderTime) {
  MetricsRegistry registry;
  double pages = 3;
  registry.AddCallback("test_pages", "Pages.", [&pages] { return pages; });
  registry.AddCallback("test_hits_total", "Hits.", [] { return 42.0; }, /*counter=*/true);
  EXPECT_EQ(ParsePrometheusText(registry.Render()).samples.at("test_pages"), 3);
  pages = 8;
  const Exposition parsed = ParsePrometheusText(registry.Render());
  EXPECT_EQ(parsed.samples.at("test_pages"), 8);
  EXPECT_EQ(parsed.type.at("test_hits_total"), "counter");
  EXPECT_EQ(parsed.samples.at("test_hits_total"), 42);
}

TEST(MetricsRegistryTest, ConcurrentUpdatesLoseNothing) {
  MetricsRegistry registry;
  Counter* counter = registry.AddCounter("test_total", "h");
  Gauge* gauge = registry.AddGauge("test_gauge", "h");
  Histogram* histogram = registry.AddHistogram("test_hist", "h", {1, 2});
  constexpr int kThreads = 8;
  constexpr int kPerThread = 20000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        counter->Increment();
        gauge->Add(t % 2 == 0 ? 1.0 : -0.5);
        histogram->Observe(static_cast<double>(i % 3));  // 0, 1, 2
        if (i % 1000 == 0) ParsePrometheusText(registry.Render());  // rendering races with updates
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(counter->value(), kThreads * kPerThread);
  EXPECT_EQ(gauge->value(), (kThreads / 2) * kPerThread * 0.5);
  const Histogram::Snapshot snapshot = histogram->Read();
  EXPECT_EQ(snapshot.count, static_cast<uint64_t>(kThreads * kPerThread));
  EXPECT_EQ(snapshot.sum, kThreads * (kPerThread / 3 * 3.0 + 0 + 1));  // 20000 = 3*6666 + 2
}

TEST(ServerMetricsTest, RegistersEverySeriesUnderMemoriaNames) {
  MetricsRegistry registry;
  ServerMetrics metrics(&registry);
  metrics.requests_ok->Increment();
  metrics.ttft_seconds->Observe(0.2);
  const Exposition parsed = ParsePrometheusText(registry.Render());
  for (const auto& [name, type] : parsed.type) {
    EXPECT_EQ(name.rfind("memoria_", 0), 0u) << name;
    if (type == "counter") {
      EXPECT_TRUE(name.ends_with("_total")) << name;
    }
  }
  EXPECT_EQ(parsed.samples.at("memoria_requests_total{outcome=\"ok\"}"), 1);
  EXPECT_EQ(parsed.samples.at("memoria_requests_total{outcome=\"rejected\"}"), 0);
  EXPECT_EQ(parsed.samples.at("memoria_time_to_first_token_seconds_count"), 1);
  EXPECT_EQ(parsed.type.at("memoria_batch_tokens"), "histogram");
  // Every field is registered: a null one would crash the scheduler at its first update.
  const std::vector<const void*> fields = {
      metrics.requests_ok,        metrics.requests_cancelled, metrics.requests_rejected,
      metrics.requests_invalid,   metrics.requests_failed,    metrics.queue_depth,
      metrics.running_sequences,  metrics.batch_tokens,       metrics.batch_sequences,
      metrics.ttft_seconds,       metrics.inter_token_seconds, metrics.queue_seconds,
      metrics.prompt_tokens,      metrics.generated_tokens,   metrics.kv_pages_used,
      metrics.kv_pages_total,     metrics.retrieval_seconds,  metrics.retrievals,
      metrics.ingested_documents, metrics.ingested_references, metrics.ingest_failures,
      metrics.ingest_seconds};
  for (const void* field : fields) EXPECT_NE(field, nullptr);
}

}  // namespace
}  // namespace memoria
