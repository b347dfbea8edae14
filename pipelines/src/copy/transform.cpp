// The YAML transform (see pipelines/copy/transform.hpp): parsed once into rules, applied per row.
#include "pipelines/copy/transform.hpp"

#include <boost/json.hpp>

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <charconv>
#include <fstream>
#include <set>
#include <sstream>

namespace ferry::pipelines::copy {

namespace json = boost::json;

namespace {

using rule = transform::rule;

/// A YAML node as JSON: quoted scalars are strings; plain scalars are null, integers, floats, booleans
/// or strings, in that order.
json::value to_json(const YAML::Node& n) {
  if (n.IsNull()) return nullptr;
  if (n.IsSequence()) {
    json::array a;
    for (const auto& e : n) a.push_back(to_json(e));
    return a;
  }
  if (n.IsMap()) {
    json::object o;
    for (const auto& kv : n) o[kv.first.as<std::string>()] = to_json(kv.second);
    return o;
  }
  const auto s = n.Scalar();
  if (n.Tag() == "!") return json::string(s);
  std::int64_t i = 0;
  if (auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), i); ec == std::errc() && p == s.data() + s.size())
    return i;
  double d = 0;
  if (auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), d); ec == std::errc() && p == s.data() + s.size())
    return d;
  if (s == "true" || s == "false") return s == "true";
  return json::string(s);
}

std::string short_json(const json::value& v) { return json::serialize(v).substr(0, 80); }

struct rule_error {
  const std::string& name;
  const rule& r;
  const row& rw;
  [[noreturn]] void operator()(const std::string& what) const {
    throw copy_error("transform " + name + " " + r.label + ": row " + rw.source_id + ": " + what);
  }
};

json::value cast_value(const json::value& v, const std::string& to, const rule_error& fail) {
  if (v.is_null()) return v;
  if (to == "string") return v.is_string() ? v : json::value(json::serialize(v));
  if (to == "json") {
    if (!v.is_string()) return v;
    try {
      return parse_json(v.get_string(), "");
    } catch (const copy_error&) {
      fail("value " + short_json(v) + " is not JSON text");
    }
  }
  if (to == "int") {
    if (v.is_int64() || v.is_uint64()) return v;
    if (v.is_bool()) return v.get_bool() ? 1 : 0;
    if (v.is_double() && v.get_double() == static_cast<double>(static_cast<std::int64_t>(v.get_double())))
      return static_cast<std::int64_t>(v.get_double());
    if (v.is_string()) {
      std::int64_t i = 0;
      const auto s = v.get_string();
      if (auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), i); ec == std::errc() && p == s.data() + s.size())
        return i;
    }
    fail("value " + short_json(v) + " is not an integer");
  }
  if (to == "float") {
    if (v.is_number()) return v.to_number<double>();
    if (v.is_string()) {
      double d = 0;
      const auto s = v.get_string();
      if (auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), d); ec == std::errc() && p == s.data() + s.size())
        return d;
    }
    fail("value " + short_json(v) + " is not a number");
  }
  // bool
  if (v.is_bool()) return v;
  if (v.is_string() && (v.get_string() == "true" || v.get_string() == "false")) return v.get_string() == "true";
  if ((v.is_int64() || v.is_uint64()) && (v.to_number<std::int64_t>() == 0 || v.to_number<std::int64_t>() == 1))
    return v.to_number<std::int64_t>() == 1;
  fail("value " + short_json(v) + " is not a boolean (true, false, 0, 1)");
}

/// -1, 0, 1; numbers with numbers, strings with strings, otherwise an error naming both.
int compare(const json::value& x, const json::value& y, const rule_error& fail) {
  if (x.is_number() && y.is_number()) {
    const double a = x.to_number<double>(), b = y.to_number<double>();
    return a < b ? -1 : a > b ? 1 : 0;
  }
  if (x.is_string() && y.is_string()) {
    const auto c = x.get_string().compare(y.get_string());
    return c < 0 ? -1 : c > 0 ? 1 : 0;
  }
  fail("cannot order " + short_json(x) + " against " + short_json(y) + " (numbers with numbers, strings with strings)");
}

bool equal(const json::value& x, const json::value& y) {
  if (x.is_number() && y.is_number()) return x.to_number<double>() == y.to_number<double>();
  return x == y;
}

bool keep(const rule& r, const json::object& f, const rule_error& fail) {
  const auto* v = f.if_contains(r.a);
  if (r.b == "exists") return v != nullptr;
  if (r.b == "missing") return v == nullptr;
  if (!v) return false;  // a comparison with a missing field does not match
  if (r.b == "eq") return equal(*v, r.value);
  if (r.b == "ne") return !equal(*v, r.value);
  if (r.b == "in") {
    const auto& a = r.value.as_array();
    return std::any_of(a.begin(), a.end(), [&](const json::value& e) { return equal(*v, e); });
  }
  const int c = compare(*v, r.value, fail);
  if (r.b == "lt") return c < 0;
  if (r.b == "le") return c <= 0;
  if (r.b == "gt") return c > 0;
  return c >= 0;  // ge
}

void move_prefix(const rule& r, json::object& f, const rule_error& fail) {
  std::vector<std::string> names;
  for (const auto& [k, _] : f)
    if (std::string_view(k).starts_with(r.a)) names.emplace_back(k);
  for (const auto& n : names) {
    const auto target = r.b + n.substr(r.a.size());
    if (f.contains(target)) fail("field '" + n + "' would become '" + target + "', which exists");
    auto v = std::move(f.at(n));
    f.erase(n);
    f[target] = std::move(v);
  }
}

// ---- parsing ----------------------------------------------------------------------------------

struct parse_ctx {
  const std::string& name;
  std::size_t index;
  [[noreturn]] void fail(const std::string& what) const {
    throw copy_error("transform " + name + ": rule " + std::to_string(index) + ": " + what);
  }
  std::string text(const YAML::Node& m, const char* key) const {
    if (!m.IsMap() || !m[key] || !m[key].IsScalar()) fail(std::string("needs '") + key + "' (a text)");
    return m[key].Scalar();
  }
};

rule parse_rule(const std::string& kind, const YAML::Node& body, const parse_ctx& c) {
  rule r{};
  if (kind == "rename") {
    r = {rule::kind::rename, c.text(body, "from"), c.text(body, "to"), {}, {}, {}};
    r.label = "rename " + r.a + " to " + r.b;
  } else if (kind == "drop") {
    r.k = rule::kind::drop;
    if (body.IsScalar()) r.fields.push_back(body.Scalar());
    else if (body.IsSequence()) for (const auto& e : body) r.fields.push_back(e.as<std::string>());
    else c.fail("drop needs a field name or a list of them");
    r.label = "drop";
    for (const auto& f : r.fields) r.label += " " + f;
  } else if (kind == "cast") {
    r = {rule::kind::cast, c.text(body, "field"), c.text(body, "to"), {}, {}, {}};
    static const std::set<std::string> types{"int", "float", "string", "bool", "json"};
    if (!types.count(r.b)) c.fail("cast to '" + r.b + "': not one of int, float, string, bool, json");
    r.label = "cast " + r.a + " to " + r.b;
  } else if (kind == "move_prefix") {
    r = {rule::kind::move_prefix, c.text(body, "from"), c.text(body, "to"), {}, {}, {}};
    if (r.a.empty()) c.fail("move_prefix needs a non-empty 'from'");
    r.label = "move_prefix " + r.a + " to " + r.b;
  } else if (kind == "filter") {
    r = {rule::kind::filter, c.text(body, "field"), c.text(body, "op"), {}, {}, {}};
    static const std::set<std::string> ops{"eq", "ne", "lt", "le", "gt", "ge", "in", "exists", "missing"};
    if (!ops.count(r.b)) c.fail("filter op '" + r.b + "': not one of eq ne lt le gt ge in exists missing");
    if (r.b != "exists" && r.b != "missing") {
      if (!body["value"]) c.fail("filter op " + r.b + " needs a 'value'");
      r.value = to_json(body["value"]);
      if (r.b == "in" && !r.value.is_array()) c.fail("filter op in needs a list as its 'value'");
    }
    r.label = "filter " + r.a + " " + r.b + (r.value.is_null() ? "" : " " + short_json(r.value));
  } else if (kind == "source_id") {
    r = {rule::kind::source_id, c.text(body, "field"), {}, {}, {}, {}};
    r.label = "source_id into " + r.a;
  } else if (kind == "set") {
    r = {rule::kind::set, c.text(body, "field"), {}, {}, {}, {}};
    if (!body["value"]) c.fail("set needs a 'value'");
    r.value = to_json(body["value"]);
    r.label = "set " + r.a;
  } else {
    c.fail("unknown rule '" + kind + "' (rename, drop, cast, move_prefix, filter, source_id, set)");
  }
  r.label = "rule " + std::to_string(c.index) + " (" + r.label + ")";
  return r;
}

}  // namespace

transform transform::load(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw copy_error("transform " + path + ": cannot read the file");
  std::stringstream ss;
  ss << in.rdbuf();
  return parse(ss.str(), path);
}

transform transform::parse(const std::string& yaml, const std::string& name) {
  transform t;
  t.name_ = name;
  YAML::Node root;
  try {
    root = YAML::Load(yaml);
  } catch (const YAML::Exception& e) {
    throw copy_error("transform " + name + ": not YAML: " + e.what());
  }
  if (!root.IsMap() || !root["rules"] || !root["rules"].IsSequence())
    throw copy_error("transform " + name + ": needs a top-level 'rules:' list");
  for (const auto& k : root)
    if (k.first.as<std::string>() != "rules")
      throw copy_error("transform " + name + ": unknown top-level key '" + k.first.as<std::string>() + "'");
  std::size_t i = 0;
  for (const auto& item : root["rules"]) {
    parse_ctx c{name, ++i};
    if (!item.IsMap() || item.size() != 1) c.fail("each rule is a map with one key (the rule's name)");
    const auto kv = *item.begin();
    t.rules_.push_back(parse_rule(kv.first.as<std::string>(), kv.second, c));
  }
  return t;
}

bool transform::apply(row& rw) const {
  auto& f = rw.fields;
  for (const auto& r : rules_) {
    const rule_error fail{name_, r, rw};
    switch (r.k) {
      case rule::kind::rename:
        if (auto* v = f.if_contains(r.a); v && r.a != r.b) {
          if (f.contains(r.b)) fail("field '" + r.b + "' exists already");
          auto moved = std::move(*v);
          f.erase(r.a);
          f[r.b] = std::move(moved);
        }
        break;
      case rule::kind::drop:
        for (const auto& n : r.fields) f.erase(n);
        break;
      case rule::kind::cast:
        if (auto* v = f.if_contains(r.a)) *v = cast_value(*v, r.b, fail);
        break;
      case rule::kind::move_prefix: move_prefix(r, f, fail); break;
      case rule::kind::filter:
        if (!keep(r, f, fail)) return false;
        break;
      case rule::kind::source_id: f[r.a] = rw.source_id; break;
      case rule::kind::set: f[r.a] = r.value; break;
    }
  }
  return true;
}

}  // namespace ferry::pipelines::copy
