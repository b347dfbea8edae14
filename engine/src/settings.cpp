#include "engine/settings.hpp"

#include "engine/log.hpp"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <fstream>
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
    for (const auto& kv : node) {
      const std::string k = kv.first.as<std::string>();
      flatten(kv.second, prefix.empty() ? k : prefix + "." + k, out, file);
    }
  } else if (node.IsSequence()) {
    std::string joined;
    for (const auto& item : node) {
      if (!item.IsScalar())
        throw config_error("config file " + file + ": key '" + prefix + "' must be a list of plain values");
      if (!joined.empty()) joined += ",";
      joined += item.as<std::string>();
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

void settings::load_dotenv(const std::string& path) {
  std::ifstream in(path);
  if (!in) return;
  std::string line;
  int lineno = 0;
  while (std::getline(in, line)) {
    ++lineno;
    std::string t = trim(line);
    if (t.empty() || t[0] == '#') continue;
    if (t.rfind("export ", 0) == 0) t = trim(std::string_view(t).substr(7));
    const auto eq = t.find('=');
    if (eq == std::string::npos || eq == 0)
      // The line itself is not echoed: it may hold a secret that was never registered (no '=').
      throw config_error(path + ":" + std::to_string(lineno) + ": expected KEY=VALUE (a line of " +
                         std::to_string(t.size()) + " characters without '=' or with an empty name)");
    const std::string name = trim(std::string_view(t).substr(0, eq));
    std::string value = trim(std::string_view(t).substr(eq + 1));
    if (value.size() >= 2 && (value.front() == '"' || value.front() == '\'') && value.back() == value.front()) {
      value = value.substr(1, value.size() - 2);
    } else if (const auto hash = value.find(" #"); hash != std::string::npos) {
      value = trim(std::string_view(value).substr(0, hash));  // inline comment after an unquoted value
    }
    for (const auto& b : schema_) {
      if (std::find(b.env_names.begin(), b.env_names.end(), name) != b.env_names.end()) {
        set(b.key, value, setting_source::dotenv, path + ":" + std::to_string(lineno));
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
  for (auto& [k, v] : flat) {
    const setting_binding* b = binding(k);
    if (!b) {
      for (const auto& cand : schema_)
        if (std::find(cand.env_names.begin(), cand.env_names.end(), k) != cand.env_names.end()) b = &cand;
    }
    if (!b) throw config_error("config file " + path + ": unknown key '" + k + "'");
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
  const std::string shown = (b && b->secret) ? std::string("[REDACTED]") : e.value;
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

std::chrono::milliseconds settings::get_duration(std::string_view key, std::chrono::milliseconds def) const {
  const entry* e = find(key);
  if (!e) return def;
  auto v = parse_duration(e->value);
  if (!v) fail(key, *e, "a duration such as 500ms, 30s, 5m or a number of seconds");
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
  std::string item;
  std::stringstream ss(e->value);
  while (std::getline(ss, item, ',')) {
    std::string t = trim(item);
    if (!t.empty()) out.push_back(std::move(t));
  }
  return out;
}

}  // namespace ferry::engine
