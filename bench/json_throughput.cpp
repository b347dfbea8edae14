// bench_json: the JSON floor of a migration on this machine, on realistic BTQL pages.
//   - Boost.JSON parse into a monotonic arena (what api_client does with a page), MB/s
//   - Boost.JSON serialize of the parsed page, MB/s
//   - simdjson on-demand parse touching every field (what row_rewriter does), MB/s
//   - parse+serialize CPU-us per event: the "bare" cost a migrator cannot go below if it used a DOM,
//     the denominator of bench/run's "migrator cost / bare parse+serialize" ratio.
// Input: a generated page (--rows, default 1000 rows of ~2 KB) or a real page (--input FILE, e.g. a
// /btql response captured from the source emulator, so the ratio is over the very same bytes).
// Output: one line on stdout and --json FILE. Median of --runs runs of about --seconds each.
#include "bench_common.hpp"

#include <boost/json.hpp>
#include <simdjson.h>

#include <cstdio>
#include <exception>
#include <string>

namespace json = boost::json;
namespace fb = ferry::bench;

namespace {

std::uint64_t touch(simdjson::ondemand::value v);

std::uint64_t touch_object(simdjson::ondemand::object o) {
  std::uint64_t n = 0;
  for (auto field : o) {
    std::string_view k = field.unescaped_key();
    n += k.size() + touch(field.value());
  }
  return n;
}

// Visits every value (strings are unescaped, numbers parsed), as a full rewrite would.
std::uint64_t touch(simdjson::ondemand::value v) {
  switch (v.type()) {
    case simdjson::ondemand::json_type::object:
      return touch_object(v.get_object());
    case simdjson::ondemand::json_type::array: {
      std::uint64_t n = 0;
      for (auto e : v.get_array()) n += touch(e.value());
      return n;
    }
    case simdjson::ondemand::json_type::string:
      return std::string_view(v.get_string()).size();
    case simdjson::ondemand::json_type::number:
      return static_cast<std::uint64_t>(double(v.get_double()) != 0);
    case simdjson::ondemand::json_type::boolean:
      return bool(v.get_bool()) ? 1 : 0;
    case simdjson::ondemand::json_type::null:
      return v.is_null() ? 1 : 0;
  }
  return 0;
}

// Runs `op` repeatedly for about `seconds`; returns seconds per call (wall; single thread).
template <typename Op>
double per_call(Op&& op, double seconds) {
  op();  // warm-up
  std::uint64_t calls = 0;
  const double t0 = fb::wall_s();
  double t = t0;
  do {
    op();
    ++calls;
    t = fb::wall_s();
  } while (t - t0 < seconds);
  return (t - t0) / static_cast<double>(calls);
}

}  // namespace

int main(int argc, char** argv) try {
  fb::flags f(argc, argv);
  const auto runs = static_cast<int>(f.num("runs", 5));
  const double seconds = f.num("seconds", 0.4);
  std::string page = f.has("input") ? fb::read_file(f.str("input"))
                                    : fb::make_page(static_cast<std::size_t>(f.num("rows", 1000)), 0, 42,
                                                    "c0ffee00-0000-4000-8000-000000000001");
  std::size_t rows = 0;
  {
    auto v = json::parse(page);
    auto* d = v.as_object().if_contains("data");
    if (!d || !d->is_array()) throw std::runtime_error("input is not a BTQL page {\"data\": [...]}");
    rows = d->as_array().size();
  }
  const double mb = static_cast<double>(page.size()) / 1e6;

  std::vector<double> parse_s, ser_s, simd_s, both_s;
  std::size_t out_bytes = 0;
  simdjson::ondemand::parser sp;
  simdjson::padded_string padded(page);
  for (int r = 0; r < runs; ++r) {
    parse_s.push_back(per_call(
        [&] {
          json::monotonic_resource mr;
          json::value v = json::parse(page, &mr);
          fb::keep(v.as_object().size());
        },
        seconds));
    json::monotonic_resource keep_mr;
    json::value parsed = json::parse(page, &keep_mr);
    ser_s.push_back(per_call(
        [&] {
          std::string s = json::serialize(parsed);
          out_bytes = s.size();
          fb::keep(s.size());
        },
        seconds));
    simd_s.push_back(per_call(
        [&] {
          auto doc = sp.iterate(padded);
          fb::keep(touch_object(doc.get_object()));
        },
        seconds));
    both_s.push_back(per_call(
        [&] {
          json::monotonic_resource mr;
          json::value v = json::parse(page, &mr);
          std::string s = json::serialize(v);
          fb::keep(s.size());
        },
        seconds));
  }
  const double parse_mbs = mb / fb::median(parse_s);
  const double ser_mbs = static_cast<double>(out_bytes) / 1e6 / fb::median(ser_s);
  const double simd_mbs = mb / fb::median(simd_s);
  const double both_us_per_event = fb::median(both_s) * 1e6 / static_cast<double>(rows);
  const double bytes_per_event = static_cast<double>(page.size()) / static_cast<double>(rows);

  json::object out{{"bench", "json_throughput"},
                   {"input", f.has("input") ? f.str("input") : "generated"},
                   {"page_bytes", page.size()},
                   {"rows", rows},
                   {"bytes_per_event", bytes_per_event},
                   {"runs", runs},
                   {"boost_json_parse_mb_s", parse_mbs},
                   {"boost_json_serialize_mb_s", ser_mbs},
                   {"simdjson_ondemand_mb_s", simd_mbs},
                   {"parse_serialize_us_per_event", both_us_per_event}};
  fb::emit(f, std::move(out),
           "json: page=" + fb::fmt(mb, 2) + "MB rows=" + std::to_string(rows) + " bytes/event=" +
               fb::fmt(bytes_per_event, 0) + " boost.json parse=" + fb::fmt(parse_mbs, 0) +
               "MB/s serialize=" + fb::fmt(ser_mbs, 0) + "MB/s simdjson=" + fb::fmt(simd_mbs, 0) +
               "MB/s parse+serialize=" + fb::fmt(both_us_per_event, 2) + "us/event");
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "bench_json: error: %s\n", e.what());
  return 1;
}
