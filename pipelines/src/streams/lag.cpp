#include "pipelines/streams/lag.hpp"

#include "engine/civil_date.hpp"
#include "engine/json_parse.hpp"

#include <boost/json.hpp>

#include <charconv>
#include <cstdio>

namespace ferry::pipelines::streams {

namespace json = boost::json;

namespace {
constexpr std::string_view lag_type = "follow_lag";

bool digits(std::string_view t, std::size_t at, std::size_t n, int& out) {
  if (at + n > t.size()) return false;
  auto [p, ec] = std::from_chars(t.data() + at, t.data() + at + n, out);
  return ec == std::errc() && p == t.data() + at + n;
}
}  // namespace

std::optional<double> iso_seconds(std::string_view t) {
  int y = 0, mo = 0, d = 0, h = 0, mi = 0, s = 0;
  if (!digits(t, 0, 4, y) || t.size() < 19 || t[4] != '-' || !digits(t, 5, 2, mo) || t[7] != '-' || !digits(t, 8, 2, d) ||
      (t[10] != 'T' && t[10] != ' ') || !digits(t, 11, 2, h) || t[13] != ':' || !digits(t, 14, 2, mi) || t[16] != ':' ||
      !digits(t, 17, 2, s) || mo < 1 || mo > 12 || d < 1 || d > 31)
    return std::nullopt;
  double frac = 0;
  std::size_t i = 19;
  if (i < t.size() && t[i] == '.') {
    double scale = 0.1;
    for (++i; i < t.size() && t[i] >= '0' && t[i] <= '9'; ++i, scale /= 10) frac += (t[i] - '0') * scale;
  }
  const auto rest = t.substr(i);
  if (!rest.empty() && rest != "Z" && rest != "+00:00" && rest != "+0000") return std::nullopt;
  return static_cast<double>(engine::days_from_civil(y, static_cast<unsigned>(mo), static_cast<unsigned>(d)) * 86400 +
                             h * 3600 + mi * 60 + s) +
         frac;
}

stream_lag measure_lag(std::uint64_t copied, std::string_view newest, const std::optional<stream_lag>& before) {
  stream_lag lag;
  lag.rows = copied;
  const std::string baseline = before ? before->newest_created : std::string();
  lag.newest_created = std::string(newest) > baseline ? std::string(newest) : baseline;
  if (copied == 0) {
    lag.seconds = 0.0;
    return lag;
  }
  const auto now_s = iso_seconds(newest), then_s = iso_seconds(baseline);
  if (now_s && then_s) lag.seconds = std::max(0.0, *now_s - *then_s);
  return lag;
}

std::string describe(const stream_lag& lag) {
  char secs[32] = "n/a";
  if (lag.seconds) std::snprintf(secs, sizeof secs, "%.1f", *lag.seconds);
  return "lag_rows=" + std::to_string(lag.rows) + " lag_seconds=" + secs;
}

void save_lag(stores::state_store& st, std::string_view stream_id, const stream_lag& lag) {
  json::object o{{"rows", lag.rows}, {"newest_created", lag.newest_created}};
  if (lag.seconds) o["seconds"] = *lag.seconds;
  st.put_id(lag_type, stream_id, json::serialize(o));
}

std::map<std::string, stream_lag> load_lags(const stores::state_store& st) {
  std::map<std::string, stream_lag> out;
  st.for_each_id(lag_type, [&](std::string_view id, std::string_view value) {
    boost::system::error_code ec;
    auto v = ferry::engine::parse_json(value, ec);
    if (ec || !v.is_object()) return true;
    const auto& o = v.get_object();
    stream_lag lag;
    if (const auto* r = o.if_contains("rows"); r && r->is_number()) lag.rows = r->to_number<std::uint64_t>();
    if (const auto* s = o.if_contains("seconds"); s && s->is_number()) lag.seconds = s->to_number<double>();
    if (const auto* n = o.if_contains("newest_created"); n && n->is_string()) lag.newest_created = n->get_string();
    out.emplace(std::string(id), std::move(lag));
    return true;
  });
  return out;
}

}  // namespace ferry::pipelines::streams
