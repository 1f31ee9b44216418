#ifndef MEMORIA_SERVER_METRICS_METRICS_REGISTRY_H_
#define MEMORIA_SERVER_METRICS_METRICS_REGISTRY_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace memoria {

// Label name -> value of one series, e.g. {{"outcome", "ok"}}.
using MetricLabels = std::map<std::string, std::string>;

// A monotonically increasing value. Lock-free; safe from any thread.
class Counter {
 public:
  void Increment(double v = 1.0);
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0.0};
};

// A value that goes up and down. Lock-free; safe from any thread.
class Gauge {
 public:
  void Set(double v) { value_.store(v, std::memory_order_relaxed); }
  void Add(double v);
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0.0};
};

// Observations counted into fixed cumulative buckets (Prometheus histogram). Safe from any thread.
class Histogram {
 public:
  explicit Histogram(std::vector<double> upper_bounds);  // ascending; +Inf is implicit
  void Observe(double v);
  struct Snapshot {
    std::vector<double> upper_bounds;
    std::vector<uint64_t> cumulative_counts;  // one per bound, then +Inf
    double sum = 0;
    uint64_t count = 0;
  };
  Snapshot Read() const;

 private:
  std::vector<double> upper_bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> counts_;  // per bucket (not cumulative), then +Inf
  std::atomic<double> sum_{0.0};
};

// Latency buckets in seconds, 0.5 ms .. 60 s.
std::vector<double> LatencyBuckets();

// Owns metric series and renders them in the Prometheus text exposition format (version 0.0.4).
// Series are registered at startup and live as long as the registry; registering the same name
// and labels twice returns the same series (the first help text and buckets win). One name holds
// one type: registering it as another aborts (a bug in the registering code). Safe from any
// thread.
class MetricsRegistry {
 public:
  MetricsRegistry();
  ~MetricsRegistry();

  Counter* AddCounter(const std::string& name, const std::string& help,
                      const MetricLabels& labels = {});
  Gauge* AddGauge(const std::string& name, const std::string& help,
                  const MetricLabels& labels = {});
  Histogram* AddHistogram(const std::string& name, const std::string& help,
                          std::vector<double> upper_bounds, const MetricLabels& labels = {});
  // A gauge read when rendered (store sizes, page cache counters owned elsewhere). `counter`
  // renders it with TYPE counter. `read` runs under the registry's lock on the rendering thread:
  // it must be thread-safe and must not call back into the registry.
  void AddCallback(const std::string& name, const std::string& help, std::function<double()> read,
                   bool counter = false, const MetricLabels& labels = {});

  std::string Render() const;

 private:
  struct Series;
  struct Family;
  Family& FamilyFor(const std::string& name, const std::string& help, const char* type);

  mutable std::mutex mu_;
  std::map<std::string, std::unique_ptr<Family>> families_;  // by name: output is sorted
};

}  // namespace memoria

#endif  // MEMORIA_SERVER_METRICS_METRICS_REGISTRY_H_
