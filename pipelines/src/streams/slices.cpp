#include "pipelines/streams/slices.hpp"

#include "pipelines/streams/row_rewriter.hpp"  // stream_error

#include "engine/json_parse.hpp"
#include "engine/log.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/experimental/parallel_group.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <optional>

namespace ferry::pipelines::streams {

namespace asio = boost::asio;

namespace {

constexpr std::uint64_t kBase = 95;  // printable ASCII, ' ' .. '~'
constexpr std::size_t kDigits = 6;   // 95^6 < 2^40: products with a part count stay far below 2^64

std::uint64_t digit(const std::string& s, std::size_t i) {
  if (i >= s.size()) return 0;
  const auto c = static_cast<unsigned char>(s[i]);
  return c < 0x20 ? 0 : c > 0x7e ? kBase - 1 : c - 0x20;
}

std::string json_text(const boost::json::value* v) {
  return v && v->is_string() ? std::string(v->get_string()) : std::string();
}

// The probe's answer into w (rows, id_min, id_max); false when the body is not one row with a count.
bool read_probe(const std::string& body, slice_window& w) {
  boost::system::error_code ec;
  auto v = ferry::engine::parse_json(body, ec);
  if (ec || !v.is_object()) return false;
  const auto* d = v.get_object().if_contains("data");
  if (!d || !d->is_array() || d->get_array().empty() || !d->get_array().front().is_object()) return false;
  const auto& row = d->get_array().front().get_object();
  const auto* n = row.if_contains("n");
  if (!n || !n->is_number()) return false;
  ec = {};
  w.rows = n->to_number<std::uint64_t>(ec);
  if (ec) return false;
  w.id_min = json_text(row.if_contains("id_min"));
  w.id_max = json_text(row.if_contains("id_max"));
  return true;
}

// One probe of [from, to) within q's filters.
asio::awaitable<slice_window> probe(event_source& source, page_query q, std::string from, std::string to,
                                    engine::retry_config retry, const engine::clock& clk) {
  q.id_from = from;
  q.id_to = to;
  const std::string body = build_btql_body(build_slice_probe_query(q));
  call_result last;
  slice_window w;
  engine::retry_policy policy(retry);
  co_await engine::with_retry(
      policy, clk,
      [&](int) -> asio::awaitable<engine::attempt_result> {
        last = co_await source.btql(body);
        engine::attempt_result a;
        a.outcome = last.outcome;
        a.retry_after = last.retry_after;
        a.detail = last.status ? "HTTP " + std::to_string(last.status) : last.error;
        // A 200 whose body is not the one-row answer (cut short by a proxy or the network) is retried.
        if (a.outcome == engine::io_outcome::ok && !read_probe(last.body, w)) {
          a.outcome = engine::io_outcome::transient;
          a.detail = "the answer is not one row with a count";
          last.outcome = a.outcome;
          last.error = a.detail;
        }
        co_return a;
      },
      engine::retry_hooks{"POST /btql (slice probe)", {}});
  if (last.outcome != engine::io_outcome::ok)
    throw stream_error("slice probe failed: HTTP " + std::to_string(last.status) + " " + last.error);
  co_return w;
}

// Probes every [cuts[i], cuts[i+1]) at once.
asio::awaitable<std::vector<slice_window>> probe_all(event_source& source, const page_query& q,
                                                     const std::vector<std::pair<std::string, std::string>>& ranges,
                                                     const engine::retry_config& retry, const engine::clock& clk) {
  auto ex = co_await asio::this_coro::executor;
  using op_type = decltype(asio::co_spawn(ex, std::declval<asio::awaitable<slice_window>>(), asio::deferred));
  std::vector<op_type> ops;
  for (const auto& [from, to] : ranges) ops.push_back(asio::co_spawn(ex, probe(source, q, from, to, retry, clk), asio::deferred));
  auto [order, errors, windows] =
      co_await asio::experimental::make_parallel_group(std::move(ops)).async_wait(asio::experimental::wait_for_all(), asio::use_awaitable);
  (void)order;
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
  co_return std::move(windows);
}

// How long one one-row page read of q's stream took; nullopt when it failed (the layout then goes on).
asio::awaitable<std::optional<std::chrono::microseconds>> ping(event_source& source, page_query q) {
  q.limit = 1;
  const std::string body = build_btql_body(build_page_query(q));
  const auto t0 = std::chrono::steady_clock::now();
  auto r = co_await source.btql(body);
  if (r.outcome != engine::io_outcome::ok) co_return std::nullopt;
  co_return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0);
}

}  // namespace

bool slow_enough_to_slice(std::chrono::microseconds ping, const slice_config& cfg) {
  return ping >= cfg.min_source_latency;
}

std::vector<std::string> interpolate_ids(const std::string& lo, const std::string& hi, std::size_t parts) {
  std::vector<std::string> out;
  if (parts < 2 || !(lo < hi)) return out;
  std::size_t p = 0;
  while (p < lo.size() && p < hi.size() && lo[p] == hi[p]) ++p;
  std::uint64_t a = 0, b = 0;
  for (std::size_t j = 0; j < kDigits; ++j) {
    a = a * kBase + digit(lo, p + j);
    b = b * kBase + digit(hi, p + j);
  }
  if (b <= a + 1) return out;
  for (std::size_t k = 1; k < parts; ++k) {
    std::uint64_t v = a + (b - a) * k / parts;
    std::string cut = hi.substr(0, p);
    std::string tail(kDigits, ' ');
    for (std::size_t j = kDigits; j-- > 0; v /= kBase) tail[j] = static_cast<char>(0x20 + v % kBase);
    while (!tail.empty() && tail.back() == ' ') tail.pop_back();  // "ab" rather than "ab  ": same rows apart from ids ending in spaces
    cut += tail;
    // Strictly above lo (lo's rows go left) and at most hi (hi's rows go right): both sides non-empty.
    if (lo < cut && cut <= hi && (out.empty() || out.back() < cut)) out.push_back(std::move(cut));
  }
  return out;
}

namespace {

void log_quick_source(std::chrono::microseconds took, const slice_config& cfg, std::string_view what) {
  engine::logger("pipeline")->info("slices not used: the source answered {} in {:.1f} ms (< {} ms: nothing to "
                                   "overlap); the stream is copied as one slice",
                                   what, static_cast<double>(took.count()) / 1000.0, cfg.min_source_latency.count());
}

// Rounds: every window above half the target is cut into ~3 parts per target's worth (at most 64 probes a
// round), all probed at once; a part that turns out large is cut again in the next round.
asio::awaitable<std::vector<slice_window>> refine_windows(event_source& source, const page_query& q,
                                                          std::vector<slice_window> windows, std::uint64_t target,
                                                          const engine::retry_config& retry, const engine::clock& clk) {
  for (int round = 0; round < 3; ++round) {
    std::vector<slice_window> next;
    std::vector<std::pair<std::string, std::string>> ranges;
    std::vector<std::size_t> range_of;  // next[i] -> its index in ranges, or npos (kept as probed)
    for (auto& w : windows) {
      std::vector<std::string> cuts;
      if (w.rows * 2 > target && ranges.size() < 64) {
        const auto parts = std::min<std::uint64_t>(3 * ((w.rows + target - 1) / target), 65 - ranges.size());
        cuts = interpolate_ids(w.id_min, w.id_max, static_cast<std::size_t>(parts));
      }
      if (cuts.empty()) {
        next.push_back(std::move(w));
        range_of.push_back(std::string::npos);
        continue;
      }
      std::string from = w.id_from;
      cuts.push_back(w.id_to);
      for (auto& c : cuts) {
        range_of.push_back(ranges.size());
        ranges.emplace_back(from, c);
        next.emplace_back();
        from = c;
      }
    }
    windows = std::move(next);  // (kept windows moved in, placeholders for the parts probed below)
    if (ranges.empty()) break;
    auto probed = co_await probe_all(source, q, ranges, retry, clk);
    for (std::size_t i = 0; i < windows.size(); ++i)
      if (range_of[i] != std::string::npos) {
        windows[i] = std::move(probed[range_of[i]]);
        windows[i].id_from = ranges[range_of[i]].first;  // (set here: the window a probe answered for)
        windows[i].id_to = ranges[range_of[i]].second;
      }
  }
  co_return windows;
}

// Whether the probed parts of `whole` add up to it; when not (rows written between the probes, or a
// server whose string order is not ours) no layout is made from them: a layout is only kept when it
// provably partitions what was counted.
bool parts_add_up(const slice_window& whole, const std::vector<slice_window>& parts) {
  std::uint64_t sum = 0;
  for (const auto& w : parts) sum += w.rows;
  if (sum == whole.rows) return true;
  engine::logger("pipeline")->info("slices not used: the probes counted {} rows in parts and {} in the whole "
                                   "(rows written meanwhile?); the rows are copied by one slice",
                                   sum, whole.rows);
  return false;
}

// The fast-source rule, first sample (slices.hpp): true when a one-row page read answered under
// min_source_latency (logged; the stream stays one slice). `took`: that read's time (nullopt: none).
asio::awaitable<bool> quick_source(event_source& source, const page_query& q, const slice_config& cfg,
                                   std::optional<std::chrono::microseconds>& took) {
  took.reset();
  if (cfg.min_source_latency.count() <= 0) co_return false;
  took = co_await ping(source, q);
  if (took && !slow_enough_to_slice(*took, cfg)) {
    log_quick_source(*took, cfg, "a one-row page");
    co_return true;
  }
  co_return false;
}

}  // namespace

std::vector<slice_window> balance_windows(std::vector<slice_window> windows, std::size_t parts, std::uint64_t min_rows) {
  if (windows.empty()) return windows;
  std::vector<std::uint64_t> before(windows.size() + 1, 0);  // rows before window i
  for (std::size_t i = 0; i < windows.size(); ++i) before[i + 1] = before[i] + windows[i].rows;
  const std::uint64_t total = before.back();
  // Group j ends at the window boundary whose rows before it are nearest to j/parts of the total.
  std::vector<std::size_t> ends;
  for (std::size_t j = 1; j < parts; ++j) {
    const std::uint64_t want = total * j / parts;
    std::size_t best = 0;
    for (std::size_t i = 1; i < windows.size(); ++i) {
      const auto dist = [&](std::size_t x) { return before[x] > want ? before[x] - want : want - before[x]; };
      if (best == 0 || dist(i) < dist(best)) best = i;
    }
    if (best > 0 && (ends.empty() || best > ends.back())) ends.push_back(best);
  }
  ends.push_back(windows.size());
  std::vector<slice_window> out;
  std::size_t from = 0;
  for (auto end : ends) {
    slice_window g = windows[from];
    g.rows = before[end] - before[from];
    g.id_to = windows[end - 1].id_to;
    out.push_back(std::move(g));
    from = end;
  }
  // A group under min_rows joins its smaller neighbour.
  for (std::size_t i = 0; out.size() > 1 && i < out.size();) {
    if (out[i].rows >= min_rows) {
      ++i;
      continue;
    }
    const bool left = i + 1 == out.size() || (i > 0 && out[i - 1].rows <= out[i + 1].rows);
    const std::size_t a = left ? i - 1 : i;
    out[a].id_to = out[a + 1].id_to;
    out[a].rows += out[a + 1].rows;
    out.erase(out.begin() + static_cast<std::ptrdiff_t>(a + 1));
    i = a;
  }
  return out;
}

asio::awaitable<std::vector<stores::stream_slice>> plan_slices(event_source& source, page_query q, const slice_config& cfg,
                                                               engine::retry_config retry, const engine::clock& clk) {
  std::vector<stores::stream_slice> none;
  if (cfg.max_slices < 2) co_return none;
  q.id_from.reset();
  q.id_to.reset();
  q.after_key.reset();
  // A fast source is told apart first by one one-row page read (the read path every page takes; a
  // local source answers in ~1 ms), then by the whole-stream probe's time (a second sample, free).
  std::optional<std::chrono::microseconds> took;
  if (co_await quick_source(source, q, cfg, took)) co_return none;
  const auto t0 = std::chrono::steady_clock::now();
  auto root = co_await probe(source, q, "", "", retry, clk);
  if (root.rows < 2 * static_cast<std::uint64_t>(cfg.min_slice_rows)) co_return none;
  if (cfg.min_source_latency.count() > 0) {
    const auto probe_took = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0);
    if (!took || probe_took < *took) took = probe_took;
    if (!slow_enough_to_slice(*took, cfg)) {
      log_quick_source(*took, cfg, "its probe");
      co_return none;
    }
  }
  const std::uint64_t target = std::max<std::uint64_t>(
      cfg.min_slice_rows, (root.rows + cfg.max_slices - 1) / cfg.max_slices);
  std::vector<slice_window> whole{root};  // (named first: GCC 12 and temporaries in a co_await expression)
  auto parts = co_await refine_windows(source, q, std::move(whole), target, retry, clk);
  if (!parts_add_up(root, parts)) co_return none;
  // As many slices as asked (each at least min_slice_rows), cut at the probed boundaries nearest to
  // equal shares: "at least the target" grouping gave 6 slices for 8 with ~3 parts a target.
  const auto count = std::min<std::uint64_t>(cfg.max_slices, root.rows / std::max<std::size_t>(cfg.min_slice_rows, 1));
  auto merged = balance_windows(std::move(parts), static_cast<std::size_t>(count), cfg.min_slice_rows);
  if (merged.size() < 2) co_return none;
  std::vector<stores::stream_slice> out;
  for (auto& w : merged) {
    stores::stream_slice s;
    s.id_from = w.id_from;
    s.id_to = w.id_to;
    out.push_back(std::move(s));
  }
  out.front().id_from.clear();
  out.back().id_to.clear();
  co_return out;
}

asio::awaitable<std::vector<slice_window>> plan_split(event_source& source, page_query q, std::size_t parts,
                                                      std::size_t min_slice_rows, engine::retry_config retry,
                                                      const engine::clock& clk) {
  const std::string from = q.id_from.value_or(""), to = q.id_to.value_or("");
  auto rest = co_await probe(source, q, from, to, retry, clk);
  rest.id_from = from;
  rest.id_to = to;
  const auto min_rows = static_cast<std::uint64_t>(std::max<std::size_t>(min_slice_rows, 1));
  std::vector<slice_window> one{rest};  // (named first: GCC 12 and temporaries in a co_await expression)
  if (parts < 2 || rest.rows < 2 * min_rows) co_return one;
  const std::uint64_t target = std::max<std::uint64_t>(min_rows, (rest.rows + parts - 1) / parts);
  auto probed = co_await refine_windows(source, q, one, target, retry, clk);
  if (!parts_add_up(rest, probed)) co_return one;
  auto out = balance_windows(std::move(probed), parts, min_rows);
  if (out.size() < 2) co_return one;
  co_return out;
}

asio::awaitable<std::vector<std::uint64_t>> count_left(event_source& source, const std::vector<page_query>& qs,
                                                      engine::retry_config retry, const engine::clock& clk) {
  std::vector<std::uint64_t> rows;
  if (qs.empty()) co_return rows;
  auto ex = co_await asio::this_coro::executor;
  using op_type = decltype(asio::co_spawn(ex, std::declval<asio::awaitable<slice_window>>(), asio::deferred));
  std::vector<op_type> ops;
  for (const auto& q : qs)
    ops.push_back(asio::co_spawn(ex, probe(source, q, q.id_from.value_or(""), q.id_to.value_or(""), retry, clk), asio::deferred));
  auto [order, errors, windows] =
      co_await asio::experimental::make_parallel_group(std::move(ops)).async_wait(asio::experimental::wait_for_all(), asio::use_awaitable);
  (void)order;
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
  for (const auto& w : windows) rows.push_back(w.rows);
  co_return rows;
}

slice_pacer::slice_pacer(std::size_t cap) : cap_(std::max<std::size_t>(1, cap)), k_(std::min<std::size_t>(2, cap_)) {}

std::size_t slice_pacer::on_tick(double bytes_per_s, bool throttled, double page_ms, bool memory_full) {
  if (throttled) {
    slow_start_ = false;
    k_ = std::max<std::size_t>(1, k_ / 2);
    rate_at_change_ = bytes_per_s;
    return k_;
  }
  if (page_ms > 0) {
    if (best_page_ms_ == 0 || page_ms < best_page_ms_) best_page_ms_ = page_ms;
    else if (page_ms > 2 * best_page_ms_ && k_ > 1) {
      slow_start_ = false;
      --k_;
      rate_at_change_ = bytes_per_s;
      return k_;
    }
  }
  // The memory budget bound (a reader waited, or one more slice's share would not fit): another slice
  // would only wait for the bytes the running ones hold; K holds until they free some.
  if (k_ < cap_ && !memory_full && bytes_per_s >= rate_at_change_ * 1.05) {
    // Doubling until the first tick without a gain (or a throttle), then one at a time.
    k_ = std::min(cap_, slow_start_ ? 2 * k_ : k_ + 1);
    rate_at_change_ = bytes_per_s;
  } else {
    slow_start_ = false;
  }
  return k_;
}

}  // namespace ferry::pipelines::streams
