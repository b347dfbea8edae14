#include "engine/settings.hpp"

#include "engine/dotenv.hpp"
#include "engine/log.hpp"
#include "engine/url.hpp"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

namespace ferry::engine {
namespace {

std::string trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return std::string(s);
}

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

std::optional<double> parse_number(std::string_view s) {
  const std::string t = trim(s);
  if (t.empty()) return std::nullopt;
  char* end = nullptr;
  const double v = std::strtod(t.c_str(), &end);
  if (end != t.c_str() + t.size() || !std::isfinite(v)) return std::nullopt;
  return v;
}

// Splits "250ms" into (250, "ms").
std::pair<std::string, std::string> split_unit(std::string_view s) {
  const std::string t = trim(s);
  std::size_t i = 0;
  while (i < t.size() && (std::isdigit(static_cast<unsigned char>(t[i])) || t[i] == '.' || t[i] == '-' || t[i] == '+'))
    ++i;
  return {t.substr(0, i), lower(trim(std::string_view(t).substr(i)))};
}

void flatten(const YAML::Node& node, const std::string& prefix, std::vector<std::pair<std::string, std::string>>& out,
             const std::string& file) {
  if (node.IsMap()) {
    std::set<std::string> seen;  // yaml-cpp keeps both entries of a key written twice
    for (const auto& kv : node) {
      const std::string k = kv.first.as<std::string>();
      const std::string full = prefix.empty() ? k : prefix + "." + k;
      if (!seen.insert(k).second)
        throw config_error("config file " + file + ": key '" + full + "' is given twice (line " +
                           std::to_string(kv.first.Mark().line + 1) + ")");
      flatten(kv.second, full, out, file);
    }
  } else if (node.IsSequence()) {
    std::string joined;
    bool first = true;
    for (const auto& item : node) {
      if (!item.IsScalar())
        throw config_error("config file " + file + ": key '" + prefix + "' must be a list of plain values");
      if (!first) joined += ",";
      first = false;
      joined += quote_list_item(item.as<std::string>());
    }
    out.emplace_back(prefix, joined);
  } else if (node.IsScalar()) {
    out.emplace_back(prefix, node.as<std::string>());
  } else if (node.IsNull()) {
    // `key:` with no value means "not set": leave the lower layers in charge.
  }
}

}  // namespace

std::optional<std::chrono::milliseconds> parse_duration(std::string_view s) {
  auto [num, unit] = split_unit(s);
  auto v = parse_number(num);
  if (!v || *v < 0) return std::nullopt;
  double ms = 0;
  if (unit.empty() || unit == "s" || unit == "sec" || unit == "secs" || unit == "seconds") ms = *v * 1000;
  else if (unit == "ms") ms = *v;
  else if (unit == "m" || unit == "min" || unit == "minutes") ms = *v * 60'000;
  else if (unit == "h" || unit == "hours") ms = *v * 3'600'000;
  else return std::nullopt;
  // Above ~100 years a deadline computed in nanoseconds from now would overflow: not a duration.
  if (ms > 3.2e12) return std::nullopt;
  return std::chrono::milliseconds(static_cast<std::int64_t>(std::llround(ms)));
}

std::optional<std::uint64_t> parse_bytes(std::string_view s) {
  auto [num, unit] = split_unit(s);
  auto v = parse_number(num);
  if (!v || *v < 0) return std::nullopt;
  double mult = 1;
  if (unit.empty() || unit == "b") mult = 1;
  else if (unit == "kib" || unit == "k") mult = 1024.0;
  else if (unit == "mib" || unit == "m") mult = 1024.0 * 1024;
  else if (unit == "gib" || unit == "g") mult = 1024.0 * 1024 * 1024;
  else if (unit == "kb") mult = 1e3;
  else if (unit == "mb") mult = 1e6;
  else if (unit == "gb") mult = 1e9;
  else return std::nullopt;
  return static_cast<std::uint64_t>(std::llround(*v * mult));
}

std::string format_duration(std::chrono::milliseconds d) {
  const auto ms = d.count();
  if (ms % 3'600'000 == 0 && ms != 0) return std::to_string(ms / 3'600'000) + "h";
  if (ms % 60'000 == 0 && ms != 0) return std::to_string(ms / 60'000) + "m";
  if (ms % 1000 == 0) return std::to_string(ms / 1000) + "s";
  return std::to_string(ms) + "ms";
}

std::string quote_list_item(std::string_view item) {
  const bool plain = !item.empty() && item.find_first_of(",\"") == std::string_view::npos &&
                     !std::isspace(static_cast<unsigned char>(item.front())) &&
                     !std::isspace(static_cast<unsigned char>(item.back()));
  if (plain) return std::string(item);
  std::string out = "\"";
  for (char c : item) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

std::optional<bool> parse_bool(std::string_view s) {
  const std::string l = lower(trim(s));
  if (l == "1" || l == "true" || l == "yes" || l == "y" || l == "on") return true;
  if (l == "0" || l == "false" || l == "no" || l == "n" || l == "off") return false;
  return std::nullopt;
}

settings::settings(std::vector<setting_binding> schema) : schema_(std::move(schema)) {}

const setting_binding* settings::binding(std::string_view key) const {
  for (const auto& b : schema_)
    if (b.key == key) return &b;
  return nullptr;
}

void settings::set(std::string_view key, std::string value, setting_source source, std::string where) {
  const setting_binding* b = binding(key);
  if (!b) throw config_error("unknown setting '" + std::string(key) + "' from " + where);
  if (b->secret) register_secret(trim(value));
  register_url_password(value);  // http://user:password@host: the password is a secret wherever it is
  auto it = values_.find(key);
  if (it != values_.end() && it->second.source > source) return;
  values_[std::string(key)] = entry{std::move(value), source, std::move(where)};
}

void settings::load_env(const std::function<const char*(const char*)>& getenv_fn) {
  auto get = getenv_fn ? getenv_fn : [](const char* n) -> const char* { return std::getenv(n); };
  for (const auto& b : schema_) {
    for (const auto& name : b.env_names) {
      if (const char* v = get(name.c_str())) {
        set(b.key, v, setting_source::env, "env " + name);
        break;
      }
    }
  }
}

void settings::load_dotenv(const std::string& path, const std::function<const char*(const char*)>& getenv_fn) {
  std::error_code ec;
  const auto status = std::filesystem::status(path, ec);
  if (status.type() == std::filesystem::file_type::not_found) return;
  if (status.type() == std::filesystem::file_type::directory)
    throw config_error("env file " + path + ": is a directory, not a file (check --env-file)");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw config_error("env file " + path + ": cannot be read (check the path and permissions)");
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string text = ss.str();
  if (text.find('\0') != std::string::npos)
    throw config_error("env file " + path + ": not a text file (it contains NUL bytes)");
  for (auto& e : parse_dotenv(text, path, getenv_fn)) {
    for (const auto& b : schema_) {
      if (std::find(b.env_names.begin(), b.env_names.end(), e.name) != b.env_names.end()) {
        set(b.key, std::move(e.value), setting_source::dotenv, path + ":" + std::to_string(e.line));
        break;
      }
    }
    // Names we do not know are left alone: a shared .env holds other tools' variables too.
  }
}

void settings::load_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw config_error("config file " + path + ": cannot be read (check the path and permissions)");
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string text = ss.str();
  if (text.find('\0') != std::string::npos)
    throw config_error("config file " + path + ": not a text file (it contains NUL bytes); expected YAML or JSON");
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    throw config_error("config file " + path + ": syntax error at line " + std::to_string(e.mark.line + 1) + ": " +
                       e.msg);
  }
  if (root.IsNull()) {
    // Empty, comments or document markers only: no settings. Anything else that loads as nothing (a
    // stray '%' directive line, say) is not a config file.
    std::istringstream lines(text);
    for (std::string line; std::getline(lines, line);) {
      const std::string t = trim(line);
      if (t.empty() || t.front() == '#' || t == "---" || t == "...") continue;
      throw config_error("config file " + path + ": expected a map of settings at the top level");
    }
    return;
  }
  if (!root.IsMap()) throw config_error("config file " + path + ": expected a map of settings at the top level");
  std::vector<std::pair<std::string, std::string>> flat;
  flatten(root, "", flat, path);
  std::map<std::string, std::string> written_as;  // setting key -> how the file spelled it
  for (auto& [k, v] : flat) {
    const setting_binding* b = binding(k);
    if (!b) {
      for (const auto& cand : schema_)
        if (std::find(cand.env_names.begin(), cand.env_names.end(), k) != cand.env_names.end()) b = &cand;
    }
    if (!b) throw config_error("config file " + path + ": unknown key '" + k + "'");
    if (auto [it, fresh] = written_as.emplace(b->key, k); !fresh)
      throw config_error("config file " + path + ": key '" + b->key + "' is given twice (as '" + it->second +
                         "' and '" + k + "')");
    set(b->key, v, setting_source::file, path);
  }
}

const settings::entry* settings::find(std::string_view key) const {
  auto it = values_.find(key);
  return it == values_.end() ? nullptr : &it->second;
}

std::string settings::where(std::string_view key) const {
  const entry* e = find(key);
  return e ? e->where : "default";
}

void settings::fail(std::string_view key, const entry& e, std::string_view expected) const {
  const setting_binding* b = binding(key);
  const std::string shown = (b && b->secret) ? std::string("[REDACTED]") : redact(e.value);
  throw config_error("invalid " + std::string(key) + " from " + e.where + ": expected " + std::string(expected) +
                     ", got '" + shown + "'");
}

std::string settings::get_string(std::string_view key, std::string def) const {
  const entry* e = find(key);
  return e ? trim(e->value) : def;
}

std::optional<std::string> settings::get_optional(std::string_view key) const {
  const entry* e = find(key);
  if (!e) return std::nullopt;
  return trim(e->value);
}

std::int64_t settings::get_int(std::string_view key, std::int64_t def, std::int64_t min, std::int64_t max) const {
  const entry* e = find(key);
  if (!e) return def;
  const std::string t = trim(e->value);
  std::int64_t v = 0;
  auto [p, ec] = std::from_chars(t.data(), t.data() + t.size(), v);
  const std::string expected = "an integer from " + std::to_string(min) + " to " + std::to_string(max);
  if (ec != std::errc{} || p != t.data() + t.size() || v < min || v > max) fail(key, *e, expected);
  return v;
}

double settings::get_double(std::string_view key, double def, double min, double max) const {
  const entry* e = find(key);
  if (!e) return def;
  auto v = parse_number(e->value);
  if (!v || *v < min || *v > max) {
    std::ostringstream os;
    os << "a number from " << min << " to " << max;
    fail(key, *e, os.str());
  }
  return *v;
}

bool settings::get_bool(std::string_view key, bool def) const {
  const entry* e = find(key);
  if (!e) return def;
  auto v = parse_bool(e->value);
  if (!v) fail(key, *e, "true/false (1, yes, on / 0, no, off)");
  return *v;
}

std::chrono::milliseconds settings::get_duration(std::string_view key, std::chrono::milliseconds def,
                                                 std::chrono::milliseconds min, std::chrono::milliseconds max) const {
  const entry* e = find(key);
  if (!e) return def;
  auto v = parse_duration(e->value);
  if (!v || *v < min || *v > max)
    fail(key, *e,
         "a duration from " + format_duration(min) + " to " + format_duration(max) +
             " such as 500ms, 30s, 5m or a number of seconds");
  return *v;
}

std::uint64_t settings::get_bytes(std::string_view key, std::uint64_t def, std::uint64_t min,
                                  std::uint64_t max) const {
  const entry* e = find(key);
  if (!e) return def;
  auto v = parse_bytes(e->value);
  if (!v || *v < min || *v > max)
    fail(key, *e, "a size from " + std::to_string(min) + " to " + std::to_string(max) + " bytes (e.g. 6MiB, 64KiB)");
  return *v;
}

std::vector<std::string> settings::get_list(std::string_view key) const {
  std::vector<std::string> out;
  const entry* e = find(key);
  if (!e) return out;
  const std::string_view v = e->value;
  for (std::size_t i = 0; i <= v.size();) {
    while (i < v.size() && std::isspace(static_cast<unsigned char>(v[i]))) ++i;
    if (i < v.size() && v[i] == '"') {
      std::string item;
      std::size_t j = i + 1;
      for (;; ++j) {
        if (j >= v.size()) fail(key, *e, "a comma list whose quoted items are closed (\"a, b\",c)");
        if (v[j] != '"') item += v[j];
        else if (j + 1 < v.size() && v[j + 1] == '"') item += v[j++];
        else break;
      }
      ++j;  // past the closing quote: only spaces may come before the next comma
      while (j < v.size() && std::isspace(static_cast<unsigned char>(v[j]))) ++j;
      if (j < v.size() && v[j] != ',') fail(key, *e, "a comma after a quoted item (\"a, b\",c)");
      out.push_back(std::move(item));
      i = j + 1;
      continue;
    }
    const std::size_t comma = std::min(v.find(',', i), v.size());
    std::string t = trim(v.substr(i, comma - i));
    if (!t.empty()) out.push_back(std::move(t));
    i = comma + 1;
  }
  return out;
}

}  // namespace ferry::engine
