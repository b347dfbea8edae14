#include "engine/progress.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <limits>
#include <sys/ioctl.h>
#include <unistd.h>

namespace ferry::engine {

progress_counts& progress_counts::operator+=(const progress_counts& o) {
  rows += o.rows;
  bytes += o.bytes;
  requests += o.requests;
  retries += o.retries;
  return *this;
}

std::optional<std::uint64_t> stream_progress::total_rows() const {
  const auto t = total_rows_.load(std::memory_order_relaxed);
  if (t == 0) return std::nullopt;
  return t;
}

progress_counts stream_progress::snapshot() const {
  return {rows_.load(std::memory_order_relaxed), bytes_.load(std::memory_order_relaxed),
          requests_.load(std::memory_order_relaxed), retries_.load(std::memory_order_relaxed)};
}

stream_metrics stream_metrics::of(metrics_registry& r, const std::string& name) {
  const std::vector<std::string> stream{name};
  stream_metrics m;
  m.rows = &r.counters("ferry_rows_copied_total", "Event rows written to the destination and acknowledged.",
                       {"stream"}).with(stream);
  m.bytes = &r.counters("ferry_bytes_copied_total", "Bytes of /logs3 request bodies acknowledged by the destination.",
                        {"stream"}).with(stream);
  m.retries = &r.counters("ferry_stream_retries_total", "Page reads and batch writes a stream retried.", {"stream"})
                   .with(stream);
  m.page_size = &r.gauges("ferry_page_size_rows", "Current BTQL page size (LIMIT) of the stream's reader.", {"stream"})
                     .with(stream);
  m.write_concurrency = &r.gauges("ferry_write_concurrency",
                                  "Batches the stream may have in flight to /logs3 (AIMD-sized).", {"stream"})
                             .with(stream);
  m.lag_rows = &r.gauges("ferry_lag_rows", "Rows the stream still has to copy to catch up with the source.", {"stream"})
                    .with(stream);
  m.lag_seconds = &r.gauges("ferry_lag_seconds",
                            "Age of the oldest source row the stream has not copied yet, in seconds (0 when caught up; "
                            "NaN until measured).",
                            {"stream"})
                       .with(stream);
  m.slice_splits = &r.counters("ferry_stream_slice_splits_total",
                                "Running slices of the stream split at a commit boundary (its slots were idle).",
                                {"stream"})
                        .with(stream);
  auto& slices = r.gauges("ferry_slices", "Slices the stream is split into (1 when not sliced).", {"stream"});
  const bool first = slices.find(stream) == nullptr;  // a --follow round finds the series of the last one
  m.slices = &slices.with(stream);
  // Until measured: one slice, and an unknown lag (NaN, which Prometheus stores and graphs as a gap).
  if (first) {
    m.slices->set(1);
    m.lag_seconds->set(std::numeric_limits<double>::quiet_NaN());
  }
  return m;
}

stream_progress& progress_registry::stream(const std::string& name) {
  std::lock_guard lock(mu_);
  auto& p = streams_[name];
  if (!p) p = metrics_ ? std::make_unique<stream_progress>(stream_metrics::of(*metrics_, name))
                       : std::make_unique<stream_progress>();
  return *p;
}

std::vector<std::string> progress_registry::active() const {
  std::lock_guard lock(mu_);
  std::vector<std::string> out;
  for (const auto& [name, p] : streams_)
    if (!p->finished()) out.push_back(name);
  return out;
}

std::vector<std::pair<std::string, progress_counts>> progress_registry::snapshot() const {
  std::lock_guard lock(mu_);
  std::vector<std::pair<std::string, progress_counts>> out;
  out.reserve(streams_.size());
  for (const auto& [name, p] : streams_) out.emplace_back(name, p->snapshot());
  return out;
}

progress_counts progress_registry::total() const {
  progress_counts sum;
  for (const auto& [name, c] : snapshot()) sum += c;
  return sum;
}

rate_eta estimate(std::uint64_t count, std::optional<std::uint64_t> total, std::chrono::nanoseconds elapsed) {
  rate_eta r;
  const double secs = std::chrono::duration<double>(elapsed).count();
  if (secs > 0) r.per_second = static_cast<double>(count) / secs;
  if (total && *total > 0) {
    r.fraction = std::min(1.0, static_cast<double>(count) / static_cast<double>(*total));
    if (count >= *total) {
      r.eta = std::chrono::seconds(0);
    } else if (r.per_second > 0) {
      const double left = static_cast<double>(*total - count) / r.per_second;
      r.eta = std::chrono::seconds(static_cast<std::int64_t>(std::ceil(std::min(left, 1e12))));
    }
  } else if (total && *total == 0) {
    r.fraction = 1.0;
    r.eta = std::chrono::seconds(0);
  }
  return r;
}

std::string format_count(double v) {
  std::array<char, 32> buf{};
  if (v >= 1e9) std::snprintf(buf.data(), buf.size(), "%.1fG", v / 1e9);
  else if (v >= 1e6) std::snprintf(buf.data(), buf.size(), "%.1fM", v / 1e6);
  else if (v >= 1e3) std::snprintf(buf.data(), buf.size(), "%.1fk", v / 1e3);
  else std::snprintf(buf.data(), buf.size(), "%.0f", v);
  return buf.data();
}

std::string format_rate_eta(const rate_eta& r, const std::string& unit) {
  std::string out = format_count(r.per_second) + " " + unit + "/s";
  if (r.fraction) out += ", " + std::to_string(static_cast<int>(std::floor(*r.fraction * 100))) + "%";
  if (r.eta) {
    const auto s = r.eta->count();
    std::array<char, 48> buf{};
    if (s >= 3600) std::snprintf(buf.data(), buf.size(), "%lldh%02lldm", static_cast<long long>(s / 3600),
                                 static_cast<long long>((s / 60) % 60));
    else if (s >= 60) std::snprintf(buf.data(), buf.size(), "%lldm%02llds", static_cast<long long>(s / 60),
                                    static_cast<long long>(s % 60));
    else std::snprintf(buf.data(), buf.size(), "%llds", static_cast<long long>(s));
    out += " eta ";
    out += buf.data();
  }
  return out;
}

std::vector<std::string> layout_status(const std::string& header, const std::vector<std::string>& streams,
                                       std::size_t width, std::size_t max_lines) {
  const std::size_t cols = width > 1 ? width - 1 : 1;
  auto cut = [cols](std::string s) {
    if (s.size() <= cols) return s;
    // Count columns as code points (each 1 wide: stream names and numbers); cut before a lead byte.
    std::size_t points = 0, i = 0;
    for (; i < s.size(); ++i) {
      if ((static_cast<unsigned char>(s[i]) & 0xC0) == 0x80) continue;
      if (points == cols) break;
      ++points;
    }
    s.resize(i);
    return s;
  };
  std::vector<std::string> out;
  if (max_lines == 0) return out;
  out.push_back(cut(header));
  const std::size_t room = max_lines - 1;
  const bool overflow = streams.size() > room;
  const std::size_t shown = overflow ? (room > 0 ? room - 1 : 0) : streams.size();
  for (std::size_t i = 0; i < shown; ++i) out.push_back(cut("  " + streams[i]));
  if (overflow && room > 0) out.push_back(cut("  ... and " + std::to_string(streams.size() - shown) + " more stream(s)"));
  return out;
}

std::optional<std::pair<std::size_t, std::size_t>> terminal_size(int fd) {
  if (::isatty(fd) != 1) return std::nullopt;
  winsize ws{};
  if (::ioctl(fd, TIOCGWINSZ, &ws) != 0 || ws.ws_col == 0 || ws.ws_row == 0) return std::make_pair(80, 24);
  return std::make_pair(static_cast<std::size_t>(ws.ws_col), static_cast<std::size_t>(ws.ws_row));
}

std::string status_area::erase_bytes(std::size_t rows) {
  if (rows == 0) return "\r\033[J";
  return "\r\033[" + std::to_string(rows) + "A\033[J";
}

std::string status_area::draw_bytes(const std::vector<std::string>& lines) {
  std::string out;
  for (const auto& l : lines) {
    out += l;
    out += "\033[K\n";
  }
  return out;
}

void status_area::update(std::vector<std::string> lines) {
  std::lock_guard lk(mu_);
  std::string bytes = erase_bytes(lines_.size()) + draw_bytes(lines);
  lines_ = std::move(lines);
  out_ << bytes << std::flush;
}

void status_area::print_above(std::string_view text) {
  std::lock_guard lk(mu_);
  std::string bytes = erase_bytes(lines_.size());
  bytes += text;
  if (text.empty() || text.back() != '\n') bytes += '\n';
  bytes += draw_bytes(lines_);
  out_ << bytes << std::flush;
}

void status_area::clear() {
  std::lock_guard lk(mu_);
  if (lines_.empty()) return;
  out_ << erase_bytes(lines_.size()) << std::flush;
  lines_.clear();
}

namespace {
std::mutex active_area_mu;
status_area* active_area = nullptr;
}  // namespace

void set_active_status_area(status_area* area) {
  std::lock_guard lk(active_area_mu);
  active_area = area;
}

bool print_above_active_area(std::string_view text) {
  std::lock_guard lk(active_area_mu);
  if (!active_area) return false;
  active_area->print_above(text);
  return true;
}

}  // namespace ferry::engine
