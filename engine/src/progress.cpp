#include "engine/progress.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>

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

stream_progress& progress_registry::stream(const std::string& name) {
  std::lock_guard lock(mu_);
  auto& p = streams_[name];
  if (!p) p = std::make_unique<stream_progress>();
  return *p;
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

namespace {
std::string human(double v) {
  std::array<char, 32> buf{};
  if (v >= 1e9) std::snprintf(buf.data(), buf.size(), "%.1fG", v / 1e9);
  else if (v >= 1e6) std::snprintf(buf.data(), buf.size(), "%.1fM", v / 1e6);
  else if (v >= 1e3) std::snprintf(buf.data(), buf.size(), "%.1fk", v / 1e3);
  else std::snprintf(buf.data(), buf.size(), "%.0f", v);
  return buf.data();
}
}  // namespace

std::string format_rate_eta(const rate_eta& r, const std::string& unit) {
  std::string out = human(r.per_second) + " " + unit + "/s";
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

}  // namespace ferry::engine
