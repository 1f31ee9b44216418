#include "server/metrics/metrics_registry.h"

#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <string_view>

namespace memoria {
namespace {

// Lock-free add for atomic<double> (fetch_add on floating atomics is C++20 but not lock-free
// everywhere; a CAS loop is).
void AtomicAdd(std::atomic<double>& target, double v) {
  double current = target.load(std::memory_order_relaxed);
  while (!target.compare_exchange_weak(current, current + v, std::memory_order_relaxed)) {
  }
}

// Sample values and `le` bounds as Prometheus' Go parser reads them: shortest round-trip
// decimal, "+Inf", "-Inf", "NaN".
void AppendValue(std::string& out, double v) {
  if (std::isnan(v)) {
    out += "NaN";
  } else if (std::isinf(v)) {
    out += v > 0 ? "+Inf" : "-Inf";
  } else {
    char buf[32];
    auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), v);
    out.append(buf, end);
  }
}

// HELP text escapes backslash and newline; label values also escape the double quote.
void AppendEscaped(std::string& out, const std::string& text, bool quote) {
  for (char c : text) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '"' && quote) {
      out += "\\\"";
    } else {
      out += c;
    }
  }
}

// `name{a="x",b="y"}` or `name` without labels; `extra` (the histogram's le) goes last.
void AppendSeriesName(std::string& out, const std::string& name, const MetricLabels& labels,
                      const char* extra_name = nullptr, const std::string& extra_value = "") {
  out += name;
  if (labels.empty() && extra_name == nullptr) return;
  out += '{';
  bool first = true;
  auto append_label = [&](const std::string& key, const std::string& value) {
    if (!first) out += ',';
    first = false;
    out += key;
    out += "=\"";
    AppendEscaped(out, value, /*quote=*/true);
    out += '"';
  };
  for (const auto& [key, value] : labels) append_label(key, value);
  if (extra_name != nullptr) append_label(extra_name, extra_value);
  out += '}';
}

}  // namespace

void Counter::Increment(double v) { AtomicAdd(value_, v); }

void Gauge::Add(double v) { AtomicAdd(value_, v); }

Histogram::Histogram(std::vector<double> upper_bounds)
    : upper_bounds_(std::move(upper_bounds)),
      counts_(new std::atomic<uint64_t>[upper_bounds_.size() + 1]) {
  for (size_t i = 0; i <= upper_bounds_.size(); ++i) counts_[i].store(0);
}

void Histogram::Observe(double v) {
  // Prometheus buckets are inclusive upper bounds: v lands in the first bound >= v.
  size_t bucket = 0;
  while (bucket < upper_bounds_.size() && v > upper_bounds_[bucket]) ++bucket;
  counts_[bucket].fetch_add(1, std::memory_order_relaxed);
  AtomicAdd(sum_, v);
}

Histogram::Snapshot Histogram::Read() const {
  // Buckets and sum are read one by one while others observe, so a snapshot may be off by the
  // observations in flight; Prometheus tolerates that, and count is derived from the buckets so
  // _count always equals the +Inf bucket.
  Snapshot snapshot;
  snapshot.upper_bounds = upper_bounds_;
  snapshot.cumulative_counts.resize(upper_bounds_.size() + 1);
  uint64_t running = 0;
  for (size_t i = 0; i <= upper_bounds_.size(); ++i) {
    running += counts_[i].load(std::memory_order_relaxed);
    snapshot.cumulative_counts[i] = running;
  }
  snapshot.count = running;
  snapshot.sum = sum_.load(std::memory_order_relaxed);
  return snapshot;
}

std::vector<double> LatencyBuckets() {
  return {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
          0.25,   0.5,   1.0,    2.5,   5.0,  10.0,  30.0, 60.0};
}

struct MetricsRegistry::Series {
  std::unique_ptr<Counter> counter;
  std::unique_ptr<Gauge> gauge;
  std::unique_ptr<Histogram> histogram;
  std::function<double()> read;
};

struct MetricsRegistry::Family {
  std::string help;
  const char* type;
  std::map<MetricLabels, Series> series;  // sorted by labels: stable output
};

MetricsRegistry::MetricsRegistry() = default;
MetricsRegistry::~MetricsRegistry() = default;

MetricsRegistry::Family& MetricsRegistry::FamilyFor(const std::string& name,
                                                   const std::string& help, const char* type) {
  auto& family = families_[name];
  if (family == nullptr) {
    family = std::make_unique<Family>();
    family->help = help;
    family->type = type;
  } else if (std::string_view(family->type) != type) {
    // Two kinds of series under one name is a bug in the code registering them.
    std::fprintf(stderr, "metric %s registered as both %s and %s\n", name.c_str(), family->type,
                 type);
    std::abort();
  }
  return *family;
}

Counter* MetricsRegistry::AddCounter(const std::string& name, const std::string& help,
                                     const MetricLabels& labels) {
  std::lock_guard<std::mutex> lock(mu_);
  Series& series = FamilyFor(name, help, "counter").series[labels];
  if (series.counter == nullptr) series.counter = std::make_unique<Counter>();
  return series.counter.get();
}

Gauge* MetricsRegistry::AddGauge(const std::string& name, const std::string& help,
                                 const MetricLabels& labels) {
  std::lock_guard<std::mutex> lock(mu_);
  Series& series = FamilyFor(name, help, "gauge").series[labels];
  if (series.gauge == nullptr) series.gauge = std::make_unique<Gauge>();
  return series.gauge.get();
}

Histogram* MetricsRegistry::AddHistogram(const std::string& name, const std::string& help,
                                         std::vector<double> upper_bounds,
                                         const MetricLabels& labels) {
  std::lock_guard<std::mutex> lock(mu_);
  Series& series = FamilyFor(name, help, "histogram").series[labels];
  if (series.histogram == nullptr) {
    series.histogram = std::make_unique<Histogram>(std::move(upper_bounds));
  }
  return series.histogram.get();
}

void MetricsRegistry::AddCallback(const std::string& name, const std::string& help,
                                  std::function<double()> read, bool counter,
                                  const MetricLabels& labels) {
  std::lock_guard<std::mutex> lock(mu_);
  FamilyFor(name, help, counter ? "counter" : "gauge").series[labels].read = std::move(read);
}

std::string MetricsRegistry::Render() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::string out;
  for (const auto& [name, family] : families_) {
    out += "# HELP ";
    out += name;
    out += ' ';
    AppendEscaped(out, family->help, /*quote=*/false);
    out += "\n# TYPE ";
    out += name;
    out += ' ';
    out += family->type;
    out += '\n';
    for (const auto& [labels, series] : family->series) {
      if (series.histogram != nullptr) {
        Histogram::Snapshot snapshot = series.histogram->Read();
        const std::string bucket_name = name + "_bucket";
        for (size_t i = 0; i < snapshot.cumulative_counts.size(); ++i) {
          std::string le;
          AppendValue(le, i < snapshot.upper_bounds.size()
                              ? snapshot.upper_bounds[i]
                              : std::numeric_limits<double>::infinity());
          AppendSeriesName(out, bucket_name, labels, "le", le);
          out += ' ';
          out += std::to_string(snapshot.cumulative_counts[i]);
          out += '\n';
        }
        AppendSeriesName(out, name + "_sum", labels);
        out += ' ';
        AppendValue(out, snapshot.sum);
        out += '\n';
        AppendSeriesName(out, name + "_count", labels);
        out += ' ';
        out += std::to_string(snapshot.count);
        out += '\n';
        continue;
      }
      double value = 0;
      if (series.counter != nullptr) {
        value = series.counter->value();
      } else if (series.gauge != nullptr) {
        value = series.gauge->value();
      } else if (series.read) {
        value = series.read();
      }
      AppendSeriesName(out, name, labels);
      out += ' ';
      AppendValue(out, value);
      out += '\n';
    }
  }
  return out;
}

}  // namespace memoria
