#include "engine/retry.hpp"

#include "engine/log.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <limits>
#include <random>

namespace ferry::engine {
namespace asio = boost::asio;
using std::chrono::duration_cast;
using std::chrono::milliseconds;

namespace {

// One generator per thread, seeded once: std::random_device is a syscall (getrandom) and a fresh
// mt19937_64 is 2.5 KB of state to initialise, which cost ~1.3% of the migrator's CPU when done per call.
double thread_uniform01() {
  thread_local std::mt19937_64 gen{(std::uint64_t{std::random_device{}()} << 32) ^ std::random_device{}()};
  return std::uniform_real_distribution<double>(0.0, 1.0)(gen);
}

}  // namespace

// A plain function pointer fits std::function's small buffer: no allocation per policy either.
retry_policy::retry_policy(retry_config cfg) : cfg_(cfg), uniform01_(&thread_uniform01) {}

retry_policy::retry_policy(retry_config cfg, std::uint64_t seed) : cfg_(cfg) {
  auto gen = std::make_shared<std::mt19937_64>(seed);
  uniform01_ = [gen] { return std::uniform_real_distribution<double>(0.0, 1.0)(*gen); };
}

retry_policy::retry_policy(retry_config cfg, std::function<double()> uniform01)
    : cfg_(cfg), uniform01_(std::move(uniform01)) {}

void retry_policy::start(steady_time now) {
  if (cfg_.overall_timeout > milliseconds::zero()) cap_deadline(now + cfg_.overall_timeout);
}

void retry_policy::cap_deadline(steady_time parent_deadline) {
  if (!deadline_ || parent_deadline < *deadline_) deadline_ = parent_deadline;
}

steady_duration retry_policy::backoff_cap(int attempt) const {
  const steady_duration base = cfg_.base_delay;
  const steady_duration cap = cfg_.max_delay;
  if (base <= steady_duration::zero()) return steady_duration::zero();
  steady_duration d = base;
  // Doubling stops at the cap, so a large attempt number cannot overflow.
  for (int k = 1; k < attempt && d < cap; ++k) d = (d > cap / 2) ? cap : d * 2;
  return std::min(d, cap);
}

retry_decision retry_policy::next(int attempt, steady_time now, io_outcome outcome,
                                  std::optional<steady_duration> retry_after) {
  retry_decision d;
  if (outcome == io_outcome::ok) {
    d.reason = "succeeded";
    return d;
  }
  if (!is_retryable(outcome)) {
    d.reason = "outcome " + std::string(to_string(outcome)) + " is not retryable";
    return d;
  }
  if (attempt >= cfg_.max_attempts) {
    d.reason = "gave up after " + std::to_string(attempt) + " attempts (max_attempts=" +
               std::to_string(cfg_.max_attempts) + "), last outcome " + std::string(to_string(outcome));
    return d;
  }
  const steady_duration cap = backoff_cap(attempt);
  const double u = std::clamp(uniform01_ ? uniform01_() : 1.0, 0.0, 1.0);
  steady_duration delay = duration_cast<steady_duration>(std::chrono::duration<double, steady_duration::period>(
      static_cast<double>(cap.count()) * u));
  bool from_server = false;
  if (retry_after && *retry_after > delay) {
    delay = *retry_after;
    from_server = true;
  }
  if (deadline_ && now + delay > *deadline_) {
    const steady_duration left = std::max(steady_duration::zero(), *deadline_ - now);
    d.reason = "retry delay " + format_duration(delay) + (from_server ? " (Retry-After)" : "") +
               " would pass the overall deadline (" + format_duration(left) + " left) after " +
               std::to_string(attempt) + " attempts, last outcome " + std::string(to_string(outcome));
    d.delay = delay;
    return d;
  }
  d.allowed = true;
  d.delay = delay;
  d.reason = "retry after " + format_duration(delay) + (from_server ? " (Retry-After)" : "") + " (" +
             std::string(to_string(outcome)) + ")";
  return d;
}

namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

bool parse_uint(std::string_view s, int& out) {
  if (s.empty()) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc{} && p == s.data() + s.size();
}

// IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT" (RFC 9110 §5.6.7), the form servers must send.
std::optional<system_time> parse_imf_fixdate(std::string_view s) {
  if (s.size() != 29 || s[3] != ',' || s[4] != ' ' || s[7] != ' ' || s[11] != ' ' || s[16] != ' ' ||
      s[19] != ':' || s[22] != ':' || s[25] != ' ' || s.substr(26) != "GMT")
    return std::nullopt;
  static constexpr std::array<std::string_view, 7> days = {"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"};
  if (std::find(days.begin(), days.end(), s.substr(0, 3)) == days.end()) return std::nullopt;
  static constexpr std::array<std::string_view, 12> months = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                                              "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  const auto mit = std::find(months.begin(), months.end(), s.substr(8, 3));
  if (mit == months.end()) return std::nullopt;
  int day = 0, year = 0, hh = 0, mm = 0, ss = 0;
  if (!parse_uint(s.substr(5, 2), day) || !parse_uint(s.substr(12, 4), year) || !parse_uint(s.substr(17, 2), hh) ||
      !parse_uint(s.substr(20, 2), mm) || !parse_uint(s.substr(23, 2), ss))
    return std::nullopt;
  if (hh > 23 || mm > 59 || ss > 60) return std::nullopt;
  const std::chrono::year_month_day ymd{std::chrono::year{year},
                                        std::chrono::month{static_cast<unsigned>(mit - months.begin() + 1)},
                                        std::chrono::day{static_cast<unsigned>(day)}};
  if (!ymd.ok()) return std::nullopt;
  const auto tp = std::chrono::sys_days{ymd} + std::chrono::hours(hh) + std::chrono::minutes(mm) +
                  std::chrono::seconds(ss);
  return std::chrono::time_point_cast<system_time::duration>(tp);
}

}  // namespace

std::optional<steady_duration> parse_retry_after(std::string_view value, system_time now) {
  const std::string_view v = trim(value);
  if (v.empty()) return std::nullopt;
  if (std::isdigit(static_cast<unsigned char>(v.front()))) {
    // delta-seconds; fractions are not in the RFC but some proxies send them, so accept them.
    double secs = 0;
    auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), secs);
    if (ec != std::errc{} || p != v.data() + v.size() || !std::isfinite(secs) || secs < 0) return std::nullopt;
    secs = std::min(secs, 1e9);  // ~31 years: beyond any deadline, and far from overflow
    return duration_cast<steady_duration>(std::chrono::duration<double>(secs));
  }
  auto when = parse_imf_fixdate(v);
  if (!when) return std::nullopt;
  if (*when <= now) return steady_duration::zero();
  return duration_cast<steady_duration>(*when - now);
}

std::string format_duration(steady_duration d) {
  const auto ms = duration_cast<milliseconds>(d).count();
  std::array<char, 48> buf{};
  if (ms < 0) return "-" + format_duration(-d);
  if (ms < 1000) {
    if (ms == 0 && d > steady_duration::zero()) {
      std::snprintf(buf.data(), buf.size(), "%lldus",
                    static_cast<long long>(duration_cast<std::chrono::microseconds>(d).count()));
    } else {
      std::snprintf(buf.data(), buf.size(), "%lldms", static_cast<long long>(ms));
    }
  } else if (ms < 60'000) {
    std::snprintf(buf.data(), buf.size(), "%.2fs", static_cast<double>(ms) / 1000.0);
  } else if (ms < 3'600'000) {
    std::snprintf(buf.data(), buf.size(), "%lldm%02llds", static_cast<long long>(ms / 60'000),
                  static_cast<long long>((ms / 1000) % 60));
  } else {
    std::snprintf(buf.data(), buf.size(), "%lldh%02lldm", static_cast<long long>(ms / 3'600'000),
                  static_cast<long long>((ms / 60'000) % 60));
  }
  return buf.data();
}

asio::awaitable<retry_result> with_retry(retry_policy& policy, const clock& clk,
                                         std::function<asio::awaitable<attempt_result>(int attempt)> op,
                                         retry_hooks hooks) {
  policy.start(clk.now());
  retry_result result;
  for (int attempt = 1;; ++attempt) {
    result.last = co_await op(attempt);
    result.attempts = attempt;
    if (result.last.outcome == io_outcome::ok) {
      result.reason = "ok";
      co_return result;
    }
    retry_decision d = policy.next(attempt, clk.now(), result.last.outcome, result.last.retry_after);
    if (!d.allowed) {
      result.reason = std::move(d.reason);
      if (!result.last.detail.empty()) result.reason += " (" + result.last.detail + ")";
      co_return result;
    }
    if (hooks.on_retry) hooks.on_retry(attempt, result.last, d);
    logger("engine")->debug("retry what={} attempt={}/{} outcome={} detail={} delay={}", hooks.what, attempt,
                            policy.config().max_attempts, to_string(result.last.outcome), result.last.detail,
                            format_duration(d.delay));
    co_await clk.sleep_for(d.delay);
  }
}

}  // namespace ferry::engine
