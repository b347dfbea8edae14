// Fault injection (see faults.hpp).
#include "emulator/faults.hpp"
#include "engine/json_parse.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <charconv>

namespace ferry::emulator {

namespace json = boost::json;

std::string_view to_string(fault_kind k) {
  switch (k) {
    case fault_kind::status: return "status";
    case fault_kind::btql_limit: return "btql_limit";
    case fault_kind::size: return "size";
    case fault_kind::latency: return "latency";
    case fault_kind::drop: return "drop";
    case fault_kind::truncate: return "truncate";
  }
  return "unknown";
}

unsigned fault_spec::effective_status() const {
  if (status != 0) return status;
  switch (kind) {
    case fault_kind::btql_limit: return 504;
    case fault_kind::size: return 413;
    default: return 429;
  }
}

namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return std::string(s);
}

std::uint64_t to_u64(std::string_view key, std::string_view v) {
  std::uint64_t out = 0;
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), out);
  if (ec != std::errc() || p != v.data() + v.size() || v.empty())
    throw fault_config_error("fault: " + std::string(key) + " must be a non-negative integer, got '" + std::string(v) +
                             "'");
  return out;
}

double to_rate(std::string_view v) {
  try {
    std::size_t pos = 0;
    double r = std::stod(std::string(v), &pos);
    if (pos == v.size() && r >= 0.0 && r <= 1.0) return r;
  } catch (const std::exception&) {
  }
  throw fault_config_error("fault: rate must be a number between 0 and 1, got '" + std::string(v) + "'");
}

fault_kind to_kind(std::string_view v) {
  for (auto k : {fault_kind::status, fault_kind::btql_limit, fault_kind::size, fault_kind::latency, fault_kind::drop,
                 fault_kind::truncate})
    if (to_string(k) == v) return k;
  throw fault_config_error("fault: unknown kind '" + std::string(v) +
                           "' (expected status, btql_limit, size, latency, drop or truncate)");
}

void set_key(fault_spec& f, bool& kind_set, std::string_view key, std::string_view value) {
  if (key == "method") f.method = lower(value);
  else if (key == "path") f.path_prefix = std::string(value);
  else if (key == "kind") {
    f.kind = to_kind(value);
    kind_set = true;
  } else if (key == "status") {
    auto s = to_u64(key, value);
    if (s < 100 || s > 599) throw fault_config_error("fault: status must be an HTTP status (100-599)");
    f.status = static_cast<unsigned>(s);
  } else if (key == "rate") f.rate = to_rate(value);
  else if (key == "retry_after") f.retry_after_seconds = static_cast<unsigned>(to_u64(key, value));
  else if (key == "limit_above") f.limit_above = to_u64(key, value);
  else if (key == "max_bytes") f.max_bytes = to_u64(key, value);
  else if (key == "latency_ms") f.latency = std::chrono::milliseconds(to_u64(key, value));
  else if (key == "after") f.after = to_u64(key, value);
  else if (key == "count") f.count = to_u64(key, value);
  else
    throw fault_config_error("fault: unknown key '" + std::string(key) +
                             "' (expected method, path, kind, status, rate, retry_after, limit_above, max_bytes, "
                             "latency_ms, after, count)");
}

void validate(const fault_spec& f) {
  if (f.path_prefix.empty() || f.path_prefix.front() != '/')
    throw fault_config_error("fault: path must start with '/', got '" + f.path_prefix + "'");
  if (f.kind == fault_kind::size && f.max_bytes == 0) throw fault_config_error("fault: kind=size needs max_bytes");
  if (f.kind == fault_kind::latency && f.latency.count() == 0)
    throw fault_config_error("fault: kind=latency needs latency_ms");
}

/// Finds `limit: N` in BTQL text (a clause at the start of a line, any case).
std::optional<std::uint64_t> limit_in_text(std::string_view text) {
  std::size_t pos = 0;
  while (pos < text.size()) {
    auto eol = text.find('\n', pos);
    std::string_view line = text.substr(pos, eol == std::string_view::npos ? std::string_view::npos : eol - pos);
    while (!line.empty() && std::isspace(static_cast<unsigned char>(line.front()))) line.remove_prefix(1);
    if (line.size() > 6 && lower(line.substr(0, 6)) == "limit:") {
      line.remove_prefix(6);
      while (!line.empty() && std::isspace(static_cast<unsigned char>(line.front()))) line.remove_prefix(1);
      std::uint64_t n = 0;
      auto [p, ec] = std::from_chars(line.data(), line.data() + line.size(), n);
      if (ec == std::errc() && p != line.data()) return n;
    }
    if (eol == std::string_view::npos) break;
    pos = eol + 1;
  }
  return std::nullopt;
}

}  // namespace

fault_spec parse_fault_spec(std::string_view text) {
  fault_spec f;
  bool kind_set = false;
  std::string_view rest = text;
  while (!rest.empty()) {
    auto comma = rest.find(',');
    auto item = rest.substr(0, comma);
    rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
    auto t = trim(item);
    if (t.empty()) continue;
    auto eq = t.find('=');
    if (eq == std::string::npos) throw fault_config_error("fault: expected key=value, got '" + t + "'");
    set_key(f, kind_set, trim(std::string_view(t).substr(0, eq)), trim(std::string_view(t).substr(eq + 1)));
  }
  if (!kind_set) throw fault_config_error("fault: missing kind in '" + std::string(text) + "'");
  validate(f);
  return f;
}

fault_file parse_fault_text(std::string_view text, std::string_view origin) {
  fault_file out;
  YAML::Node root;
  try {
    root = YAML::Load(std::string(text));
  } catch (const YAML::Exception& e) {
    throw fault_config_error(std::string(origin) + ": not valid YAML/JSON: " + e.what());
  }
  if (!root.IsMap()) throw fault_config_error(std::string(origin) + ": expected a map with a 'faults' list");
  if (auto seed = root["seed"]) out.seed = to_u64("seed", seed.as<std::string>());
  auto list = root["faults"];
  if (!list) return out;
  if (!list.IsSequence()) throw fault_config_error(std::string(origin) + ": 'faults' must be a list");
  std::size_t i = 0;
  for (const auto& item : list) {
    if (!item.IsMap()) throw fault_config_error(std::string(origin) + ": faults[" + std::to_string(i) + "] must be a map");
    fault_spec f;
    bool kind_set = false;
    try {
      for (const auto& kv : item) set_key(f, kind_set, kv.first.as<std::string>(), kv.second.as<std::string>());
      if (!kind_set) throw fault_config_error("fault: missing kind");
      validate(f);
    } catch (const fault_config_error& e) {
      throw fault_config_error(std::string(origin) + ": faults[" + std::to_string(i) + "]: " + e.what());
    } catch (const YAML::Exception& e) {
      throw fault_config_error(std::string(origin) + ": faults[" + std::to_string(i) + "]: " + e.what());
    }
    out.faults.push_back(std::move(f));
    ++i;
  }
  return out;
}

fault_file load_fault_file(const std::string& path) {
  std::string text;
  try {
    YAML::Node probe = YAML::LoadFile(path);
    (void)probe;
  } catch (const YAML::BadFile&) {
    throw fault_config_error("faults file " + path + ": cannot be read");
  } catch (const YAML::Exception&) {
    // Reported with position by parse_fault_text below.
  }
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) throw fault_config_error("faults file " + path + ": cannot be read");
  char buf[4096];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) text.append(buf, n);
  std::fclose(f);
  return parse_fault_text(text, "faults file " + path);
}

std::optional<std::uint64_t> btql_limit_of(std::string_view body) {
  boost::system::error_code ec;
  auto v = ferry::engine::parse_json(body, ec);
  if (ec) return limit_in_text(body);
  if (!v.is_object()) return std::nullopt;
  auto& o = v.as_object();
  auto q = o.find("query");
  if (q == o.end()) return std::nullopt;
  if (q->value().is_string()) return limit_in_text(q->value().get_string());
  if (q->value().is_object()) {
    auto& qo = q->value().get_object();
    auto l = qo.find("limit");
    if (l == qo.end()) return std::nullopt;
    if (l->value().is_uint64()) return l->value().get_uint64();
    if (l->value().is_int64() && l->value().get_int64() >= 0) return static_cast<std::uint64_t>(l->value().get_int64());
    if (l->value().is_double() && l->value().get_double() >= 0) return static_cast<std::uint64_t>(l->value().get_double());
  }
  return std::nullopt;
}

std::string normalize_path(std::string_view path) {
  auto id_like = [](std::string_view seg) {
    if (seg.size() < 8) return false;
    std::size_t hex = 0;
    for (char c : seg) {
      if (std::isxdigit(static_cast<unsigned char>(c))) ++hex;
      else if (c != '-') return false;
    }
    return hex >= 8;
  };
  std::string out;
  std::size_t pos = 0;
  while (pos < path.size()) {
    auto slash = path.find('/', pos + 1);
    auto seg = path.substr(pos + 1, slash == std::string_view::npos ? std::string_view::npos : slash - pos - 1);
    out += '/';
    out += id_like(seg) ? std::string_view("{id}") : seg;
    if (slash == std::string_view::npos) break;
    pos = slash;
  }
  return out.empty() ? std::string("/") : out;
}

fault_injector::fault_injector(std::vector<fault_spec> faults, std::uint64_t seed) : rng_(seed) {
  for (auto& f : faults) faults_.push_back({std::move(f), 0, 0});
}

fault_decision fault_injector::decide(std::string_view method, std::string_view target, std::string_view body) {
  const auto path = target.substr(0, target.find('?'));
  const auto m = lower(method);
  std::lock_guard lock(mutex_);
  ++stats_.requests;
  ++stats_.requests_by_path[normalize_path(path)];
  fault_decision d;
  for (auto& st : faults_) {
    const auto& f = st.spec;
    if (!f.method.empty() && f.method != m) continue;
    if (!path.starts_with(f.path_prefix)) continue;
    // The condition-bound kinds only count requests that meet their condition.
    if (f.kind == fault_kind::btql_limit) {
      auto l = btql_limit_of(body);
      if (!l || *l <= f.limit_above) continue;
    }
    if (f.kind == fault_kind::size && body.size() <= f.max_bytes) continue;
    ++st.matched;
    if (st.matched <= f.after) continue;
    if (f.count && st.injected >= *f.count) continue;
    // Draw only for fractional rates so that rate=1 faults do not shift the others' sequences.
    if (f.rate < 1.0) {
      const double u = std::uniform_real_distribution<double>(0.0, 1.0)(rng_);
      if (u >= f.rate) continue;
    }
    ++st.injected;
    ++stats_.faults;
    ++stats_.faults_by_kind[std::string(to_string(f.kind))];
    const auto reason = std::string(to_string(f.kind)) + " " + f.path_prefix;
    switch (f.kind) {
      case fault_kind::latency:
        d.delay += f.latency;
        if (d.reason.empty()) d.reason = reason;
        continue;  // latency combines with whatever else applies
      case fault_kind::drop:
        d.drop = true;
        break;
      case fault_kind::truncate:
        d.truncate = true;
        break;
      case fault_kind::status:
      case fault_kind::btql_limit:
      case fault_kind::size:
        d.status = f.effective_status();
        d.retry_after = f.retry_after_seconds;
        break;
    }
    d.reason = reason;
    break;  // one terminal fault per request
  }
  return d;
}

fault_injector::stats_snapshot fault_injector::stats() const {
  std::lock_guard lock(mutex_);
  return stats_;
}

std::string fault_injector::stats_json() const {
  auto s = stats();
  json::object o;
  o["requests"] = s.requests;
  o["faults"] = s.faults;
  json::object by_path;
  for (const auto& [k, v] : s.requests_by_path) by_path[k] = v;
  json::object by_kind;
  for (const auto& [k, v] : s.faults_by_kind) by_kind[k] = v;
  o["requests_by_path"] = std::move(by_path);
  o["faults_by_kind"] = std::move(by_kind);
  return json::serialize(o);
}

}  // namespace ferry::emulator
