#pragma once
// A small Prometheus-style metrics registry: counters and gauges, grouped in families that share a
// name, a help text and label names, rendered in the Prometheus text exposition format 0.0.4.
//
// Lifecycle: a registry lives as long as the run that owns it; families and series are created on
// first use and never removed, so every reference handed out stays valid for the registry's lifetime.
// Hot paths look a series up once (`family.with({...})` takes a lock and may allocate) and keep the
// reference: `counter::inc` and `gauge::set/add` are single relaxed atomic operations, no lock and no
// allocation.
// Threading: every member is thread-safe; `render()` may run on any thread while series are updated.
// Collectors (add_collector) run inside render() and must not call render() themselves.
// What goes in: counts, sizes and names (stream ids, sides, endpoint templates); never URLs with keys,
// header values or secrets (label values are rendered as given).

#include <atomic>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace ferry::engine {

class metric_counter {
 public:
  void inc(std::uint64_t n = 1) noexcept { v_.fetch_add(n, std::memory_order_relaxed); }
  std::uint64_t value() const noexcept { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::uint64_t> v_{0};
};

class metric_gauge {
 public:
  void set(double v) noexcept { v_.store(v, std::memory_order_relaxed); }
  void add(double d) noexcept { v_.fetch_add(d, std::memory_order_relaxed); }
  double value() const noexcept { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> v_{0};
};

enum class metric_type { counter, gauge };

/// The series of one metric name, one per combination of label values.
template <class Metric>
class metric_family {
 public:
  metric_family(std::string name, std::string help, std::vector<std::string> label_names)
      : name_(std::move(name)), help_(std::move(help)), label_names_(std::move(label_names)) {}

  /// The series with these label values (one per label name, in order), created on first use.
  /// Throws std::invalid_argument when the count of values differs from the count of label names.
  Metric& with(std::initializer_list<std::string_view> values);
  Metric& with(const std::vector<std::string>& values);
  /// The series with these label values if it exists, else null.
  Metric* find(const std::vector<std::string>& values) const;

  const std::string& name() const { return name_; }
  const std::string& help() const { return help_; }
  const std::vector<std::string>& label_names() const { return label_names_; }
  /// Every series' label values and current value, sorted by label values.
  std::vector<std::pair<std::vector<std::string>, double>> snapshot() const;

 private:
  std::string name_, help_;
  std::vector<std::string> label_names_;
  mutable std::mutex mu_;
  std::map<std::vector<std::string>, std::unique_ptr<Metric>> series_;
};

class metrics_registry {
 public:
  /// The family `name` (created on first call; a later call with the same name returns it, and throws
  /// std::logic_error if the type or label names differ). Names must match [a-zA-Z_:][a-zA-Z0-9_:]*,
  /// label names [a-zA-Z_][a-zA-Z0-9_]* not starting with "__" (std::invalid_argument otherwise).
  metric_family<metric_counter>& counters(const std::string& name, const std::string& help,
                                          std::vector<std::string> label_names = {});
  metric_family<metric_gauge>& gauges(const std::string& name, const std::string& help,
                                      std::vector<std::string> label_names = {});
  /// A counter whose value a collector sets from elsewhere (CPU seconds): gauge series, TYPE counter.
  metric_family<metric_gauge>& computed_counters(const std::string& name, const std::string& help,
                                                 std::vector<std::string> label_names = {});

  /// A label added to every series rendered (e.g. shard="3"); set before scraping starts.
  void set_const_label(const std::string& name, const std::string& value);
  /// Called at the start of every render(), to refresh computed gauges (process RSS, a semaphore's size).
  void add_collector(std::function<void(metrics_registry&)> collect);

  /// Every family in the text exposition format 0.0.4: "# HELP", "# TYPE", then one line per series,
  /// families sorted by name. A family with no series yet renders only its HELP and TYPE lines.
  std::string render();

 private:
  struct entry {
    metric_type type;
    bool computed = false;  // gauge series rendered as a counter
    std::unique_ptr<metric_family<metric_counter>> counters;
    std::unique_ptr<metric_family<metric_gauge>> gauges;
  };
  entry& family_entry(const std::string& name, metric_type type, bool computed, const std::string& help,
                      std::vector<std::string>& label_names);

  std::mutex mu_;  // families_, const_labels_, collectors_
  std::map<std::string, entry> families_;
  std::vector<std::pair<std::string, std::string>> const_labels_;
  std::vector<std::function<void(metrics_registry&)>> collectors_;
};

/// A label value escaped for the exposition format: backslash, double quote and newline.
std::string escape_label_value(std::string_view v);
/// A HELP text escaped for the exposition format: backslash and newline.
std::string escape_help(std::string_view v);
/// A sample value as Prometheus reads it: integers without a fraction, "NaN", "+Inf", "-Inf".
std::string format_sample_value(double v);

/// This process's resident set size and CPU time (user + system), from /proc/self; zeros elsewhere.
struct process_stats {
  std::uint64_t rss_bytes = 0;
  double cpu_seconds = 0;
};
process_stats read_process_stats();
/// Registers process_resident_memory_bytes and process_cpu_seconds_total, refreshed at each render.
void add_process_metrics(metrics_registry& r);

}  // namespace ferry::engine
