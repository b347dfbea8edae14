#include "engine/metrics.hpp"

#include <array>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <unistd.h>

namespace ferry::engine {

namespace {

bool valid_name(std::string_view n, bool label) {
  if (n.empty()) return false;
  if (label && n.starts_with("__")) return false;
  for (std::size_t i = 0; i < n.size(); ++i) {
    const char c = n[i];
    const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (!label && c == ':');
    if (!alpha && !(i > 0 && c >= '0' && c <= '9')) return false;
  }
  return true;
}

template <class Metric>
Metric& find_or_add(std::mutex& mu, std::map<std::vector<std::string>, std::unique_ptr<Metric>>& series,
                    std::vector<std::string> key, std::size_t want, const std::string& name) {
  if (key.size() != want)
    throw std::invalid_argument("metric " + name + ": " + std::to_string(key.size()) + " label value(s) for " +
                                std::to_string(want) + " label(s)");
  std::lock_guard lk(mu);
  auto& slot = series[std::move(key)];
  if (!slot) slot = std::make_unique<Metric>();
  return *slot;
}

template <class Metric>
double read(const Metric& m) {
  return static_cast<double>(m.value());
}

}  // namespace

template <class Metric>
Metric& metric_family<Metric>::with(std::initializer_list<std::string_view> values) {
  std::vector<std::string> key;
  key.reserve(values.size());
  for (auto v : values) key.emplace_back(v);
  return find_or_add(mu_, series_, std::move(key), label_names_.size(), name_);
}

template <class Metric>
Metric& metric_family<Metric>::with(const std::vector<std::string>& values) {
  return find_or_add(mu_, series_, values, label_names_.size(), name_);
}

template <class Metric>
Metric* metric_family<Metric>::find(const std::vector<std::string>& values) const {
  std::lock_guard lk(mu_);
  auto it = series_.find(values);
  return it == series_.end() ? nullptr : it->second.get();
}

template <class Metric>
std::vector<std::pair<std::vector<std::string>, double>> metric_family<Metric>::snapshot() const {
  std::lock_guard lk(mu_);
  std::vector<std::pair<std::vector<std::string>, double>> out;
  out.reserve(series_.size());
  for (const auto& [labels, m] : series_) out.emplace_back(labels, read(*m));
  return out;
}

template class metric_family<metric_counter>;
template class metric_family<metric_gauge>;

metrics_registry::entry& metrics_registry::family_entry(const std::string& name, metric_type type, bool computed,
                                                        const std::string& help,
                                                        std::vector<std::string>& label_names) {
  if (!valid_name(name, false)) throw std::invalid_argument("invalid metric name '" + name + "'");
  for (const auto& l : label_names)
    if (!valid_name(l, true)) throw std::invalid_argument("metric " + name + ": invalid label name '" + l + "'");
  auto [it, added] = families_.try_emplace(name);
  entry& e = it->second;
  if (added) {
    e.type = type;
    e.computed = computed;
    if (type == metric_type::counter && !computed)
      e.counters = std::make_unique<metric_family<metric_counter>>(name, help, label_names);
    else
      e.gauges = std::make_unique<metric_family<metric_gauge>>(name, help, label_names);
    return e;
  }
  const auto& have = e.counters ? e.counters->label_names() : e.gauges->label_names();
  if (e.type != type || e.computed != computed || have != label_names)
    throw std::logic_error("metric " + name + " registered twice with another type or other labels");
  return e;
}

metric_family<metric_counter>& metrics_registry::counters(const std::string& name, const std::string& help,
                                                          std::vector<std::string> label_names) {
  std::lock_guard lk(mu_);
  return *family_entry(name, metric_type::counter, false, help, label_names).counters;
}

metric_family<metric_gauge>& metrics_registry::gauges(const std::string& name, const std::string& help,
                                                      std::vector<std::string> label_names) {
  std::lock_guard lk(mu_);
  return *family_entry(name, metric_type::gauge, false, help, label_names).gauges;
}

metric_family<metric_gauge>& metrics_registry::computed_counters(const std::string& name, const std::string& help,
                                                                 std::vector<std::string> label_names) {
  std::lock_guard lk(mu_);
  return *family_entry(name, metric_type::counter, true, help, label_names).gauges;
}

void metrics_registry::set_const_label(const std::string& name, const std::string& value) {
  if (!valid_name(name, true)) throw std::invalid_argument("invalid label name '" + name + "'");
  std::lock_guard lk(mu_);
  for (auto& [n, v] : const_labels_)
    if (n == name) {
      v = value;
      return;
    }
  const_labels_.emplace_back(name, value);
}

void metrics_registry::add_collector(std::function<void(metrics_registry&)> collect) {
  std::lock_guard lk(mu_);
  collectors_.push_back(std::move(collect));
}

namespace {

void render_series(std::string& out, const std::string& name, const std::vector<std::string>& label_names,
                   const std::vector<std::pair<std::string, std::string>>& const_labels,
                   const std::vector<std::string>& values, double v) {
  out += name;
  bool first = true;
  auto label = [&](const std::string& n, const std::string& val) {
    out += first ? '{' : ',';
    first = false;
    out += n;
    out += "=\"";
    out += escape_label_value(val);
    out += '"';
  };
  for (const auto& [n, val] : const_labels) label(n, val);
  for (std::size_t i = 0; i < label_names.size(); ++i) label(label_names[i], values[i]);
  if (!first) out += '}';
  out += ' ';
  out += format_sample_value(v);
  out += '\n';
}

template <class Family>
void render_family(std::string& out, const Family& f, std::string_view type,
                   const std::vector<std::pair<std::string, std::string>>& const_labels) {
  out += "# HELP " + f.name() + " " + escape_help(f.help()) + "\n";
  out += "# TYPE " + f.name() + " " + std::string(type) + "\n";
  for (const auto& [values, v] : f.snapshot()) render_series(out, f.name(), f.label_names(), const_labels, values, v);
}

}  // namespace

std::string metrics_registry::render() {
  std::vector<std::function<void(metrics_registry&)>> collectors;
  {
    std::lock_guard lk(mu_);
    collectors = collectors_;
  }
  for (auto& c : collectors) c(*this);  // they register and set series: outside our lock
  std::lock_guard lk(mu_);
  std::string out;
  for (const auto& [name, e] : families_) {
    const std::string_view type = e.type == metric_type::counter ? "counter" : "gauge";
    if (e.counters) render_family(out, *e.counters, type, const_labels_);
    else render_family(out, *e.gauges, type, const_labels_);
  }
  return out;
}

std::string escape_label_value(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

std::string escape_help(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\') out += "\\\\";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

std::string format_sample_value(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  std::array<char, 40> buf{};
  if (v == std::floor(v) && std::fabs(v) < 1e15) {
    std::snprintf(buf.data(), buf.size(), "%.0f", v);
    return buf.data();
  }
  auto [end, ec] = std::to_chars(buf.data(), buf.data() + buf.size(), v);  // shortest exact form
  return std::string(buf.data(), ec == std::errc() ? end : buf.data());
}

process_stats read_process_stats() {
  process_stats s;
  const long page = ::sysconf(_SC_PAGESIZE);
  const long ticks = ::sysconf(_SC_CLK_TCK);
  if (std::ifstream statm("/proc/self/statm"); statm) {
    std::uint64_t size = 0, resident = 0;
    if (statm >> size >> resident && page > 0) s.rss_bytes = resident * static_cast<std::uint64_t>(page);
  }
  if (std::ifstream stat("/proc/self/stat"); stat) {
    std::string line;
    std::getline(stat, line);
    // The command name (field 2) may hold spaces and parentheses: fields are counted after the last ')'.
    const auto close = line.rfind(')');
    if (close != std::string::npos && ticks > 0) {
      std::istringstream rest(line.substr(close + 2));
      std::string field;
      double utime = 0, stime = 0;
      for (int i = 3; i <= 15 && rest >> field; ++i) {
        if (i == 14) utime = std::stod(field);
        if (i == 15) stime = std::stod(field);
      }
      s.cpu_seconds = (utime + stime) / static_cast<double>(ticks);
    }
  }
  return s;
}

void add_process_metrics(metrics_registry& r) {
  auto& rss = r.gauges("process_resident_memory_bytes", "Resident memory size in bytes.").with({});
  auto& cpu = r.computed_counters("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.")
                  .with({});
  r.add_collector([&rss, &cpu](metrics_registry&) {
    const auto s = read_process_stats();
    rss.set(static_cast<double>(s.rss_bytes));
    cpu.set(s.cpu_seconds);
  });
}

}  // namespace ferry::engine
