// URI parsing, the scheme dispatch and the key checks every sink shares.
#include "pipelines/copy/connector.hpp"

#include "engine/url.hpp"

#include <boost/json/serialize.hpp>

#include <simdjson.h>

#include <set>

namespace ferry::pipelines::copy {

namespace json = boost::json;

namespace {

std::string percent_decode(const std::string& s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size()) {
      const auto hex = s.substr(i + 1, 2);
      char* end = nullptr;
      const long v = std::strtol(hex.c_str(), &end, 16);
      if (end == hex.c_str() + 2) {
        out.push_back(static_cast<char>(v));
        i += 2;
        continue;
      }
    }
    out.push_back(s[i] == '+' ? ' ' : s[i]);
  }
  return out;
}

}  // namespace

std::string uri::redacted() const { return engine::redact_url_passwords(text); }

uri parse_uri(const std::string& text) {
  uri u;
  u.text = text;
  const auto sep = text.find("://");
  if (sep == std::string::npos || sep == 0)
    throw copy_error("'" + u.redacted() + "': not a connector URI (jsonl:///dir, sqlite:///file.db?table=T, "
                     "postgresql://user@host:port/db?table=T)");
  u.scheme = text.substr(0, sep);
  for (auto& c : u.scheme) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (u.scheme == "postgres") u.scheme = "postgresql";
  const auto q = text.find('?', sep + 3);
  u.base = text.substr(0, q);
  u.path = percent_decode(text.substr(sep + 3, q == std::string::npos ? std::string::npos : q - sep - 3));
  if (q != std::string::npos) {
    const std::string query = text.substr(q + 1);
    std::size_t start = 0;
    while (start <= query.size()) {
      const auto amp = std::min(query.find('&', start), query.size());
      const auto item = query.substr(start, amp - start);
      if (!item.empty()) {
        const auto eq = item.find('=');
        const auto k = percent_decode(item.substr(0, eq));
        if (u.params.count(k)) throw copy_error(u.redacted() + ": query parameter '" + k + "' given twice");
        u.params[k] = eq == std::string::npos ? "" : percent_decode(item.substr(eq + 1));
      }
      start = amp + 1;
    }
  }
  return u;
}

std::unique_ptr<source> open_source(const uri& u) {
  if (u.scheme == "jsonl") return open_jsonl_source(u);
  if (u.scheme == "sqlite") return open_sqlite_source(u);
  if (u.scheme == "postgresql") return open_postgres_source(u);
  if (u.scheme == "redis") return open_redis_source(u);
  throw copy_error(u.redacted() + ": unknown source scheme '" + u.scheme + "' (jsonl, sqlite, postgresql, redis)");
}

std::unique_ptr<sink> open_sink(const uri& u) {
  if (u.scheme == "jsonl") return open_jsonl_sink(u);
  if (u.scheme == "sqlite") return open_sqlite_sink(u);
  if (u.scheme == "postgresql") return open_postgres_sink(u);
  if (u.scheme == "redis") throw copy_error(u.redacted() + ": redis is a source only (no redis sink yet)");
  throw copy_error(u.redacted() + ": unknown sink scheme '" + u.scheme + "' (jsonl, sqlite, postgresql)");
}

namespace {

json::value to_value(simdjson::dom::element e) {
  switch (e.type()) {
    case simdjson::dom::element_type::ARRAY: {
      simdjson::dom::array arr;
      if (e.get(arr)) return nullptr;  // (cannot happen: the type was checked)
      json::array a;
      for (auto x : arr) a.push_back(to_value(x));
      return a;
    }
    case simdjson::dom::element_type::OBJECT: {
      simdjson::dom::object obj;
      if (e.get(obj)) return nullptr;
      json::object o(obj.size());  // no rehash while filling
      for (auto [k, x] : obj) o[k] = to_value(x);
      return o;
    }
    case simdjson::dom::element_type::INT64: return e.get_int64().value_unsafe();
    case simdjson::dom::element_type::UINT64: return e.get_uint64().value_unsafe();
    case simdjson::dom::element_type::DOUBLE: return e.get_double().value_unsafe();
    case simdjson::dom::element_type::STRING: return json::string(e.get_string().value_unsafe());
    case simdjson::dom::element_type::BOOL: return e.get_bool().value_unsafe();
    default: return nullptr;
  }
}

}  // namespace

bool valid_utf8(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    const std::size_t n = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
    if (n == 0 || i + n > s.size()) return false;
    for (std::size_t k = 1; k < n; ++k)
      if ((static_cast<unsigned char>(s[i + k]) >> 6) != 0x2) return false;
    i += n;
  }
  return true;
}

json::value parse_json(std::string_view text, const std::string& where) {
  // simdjson reads numbers exactly (correctly rounded doubles); Boost.JSON 1.81 does not.
  thread_local simdjson::dom::parser parser;
  simdjson::padded_string padded(text);
  auto doc = parser.parse(padded);
  if (doc.error()) throw copy_error(where + ": not JSON (" + simdjson::error_message(doc.error()) + ")");
  return to_value(doc.value_unsafe());
}

std::string key_text(const json::object& row, const std::string& key, const std::string& where, std::size_t index) {
  const auto* v = row.if_contains(key);
  if (!v || v->is_null() || v->is_object() || v->is_array())
    throw copy_error(where + ": row " + std::to_string(index + 1) + " of the batch has no usable key field '" + key +
                     "' (missing, null, object or array): " + json::serialize(row).substr(0, 200));
  return v->is_string() ? std::string(v->get_string()) : json::serialize(*v);
}

void check_unique_keys(const std::vector<json::object>& rows, const std::string& key, const std::string& where) {
  std::set<std::string> seen;
  for (std::size_t i = 0; i < rows.size(); ++i) {
    auto k = key_text(rows[i], key, where, i);
    if (!seen.insert(k).second)
      throw copy_error(where + ": key " + key + "=" + k + " appears twice in one batch (duplicate key values)");
  }
}

}  // namespace ferry::pipelines::copy
