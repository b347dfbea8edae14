// URI parsing, the scheme dispatch and the key checks every sink shares.
#include "pipelines/copy/connector.hpp"

#include "engine/json_parse.hpp"
#include "engine/url.hpp"

#include <boost/json/serialize.hpp>

#include <map>
#include <set>

namespace ferry::pipelines::copy {

namespace json = boost::json;

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

std::string uri::redacted() const { return engine::redact_url_passwords(text); }

uri parse_uri(const std::string& text) {
  uri u;
  u.text = text;
  const auto sep = text.find("://");
  if (sep == std::string::npos || sep == 0)
    throw copy_error("'" + u.redacted() + "': not a connector URI (jsonl:///dir, sqlite:///file.db?table=T, "
                     "postgresql://user@host:port/db?table=T, braintrust://host/PROJECT/logs)");
  u.scheme = text.substr(0, sep);
  for (auto& c : u.scheme) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (u.scheme == "postgres") u.scheme = "postgresql";
  if (u.scheme == "braintrust+https") u.scheme = "braintrust";
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

namespace {
bool is_braintrust(const uri& u) { return u.scheme == "braintrust" || u.scheme == "braintrust+http"; }
}  // namespace

std::unique_ptr<source> open_source(const uri& u, const connector_context& ctx) {
  if (is_braintrust(u)) return open_braintrust_source(u, ctx);
  if (u.scheme == "jsonl") return open_jsonl_source(u);
  if (u.scheme == "sqlite") return open_sqlite_source(u);
  if (u.scheme == "postgresql") return open_postgres_source(u);
  if (u.scheme == "redis") return open_redis_source(u);
  throw copy_error(u.redacted() + ": unknown source scheme '" + u.scheme + "' (jsonl, sqlite, postgresql, redis, braintrust)");
}

std::unique_ptr<sink> open_sink(const uri& u, const connector_context& ctx) {
  if (is_braintrust(u)) return open_braintrust_sink(u, ctx);
  if (u.scheme == "jsonl") return open_jsonl_sink(u);
  if (u.scheme == "sqlite") return open_sqlite_sink(u);
  if (u.scheme == "postgresql") return open_postgres_sink(u);
  if (u.scheme == "redis") throw copy_error(u.redacted() + ": redis is a source only (no redis sink yet)");
  throw copy_error(u.redacted() + ": unknown sink scheme '" + u.scheme + "' (jsonl, sqlite, postgresql, braintrust)");
}

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
  boost::system::error_code ec;
  auto v = engine::parse_json(text, ec);  // exact doubles (Boost.JSON 1.81's own parse is not)
  if (ec) throw copy_error(where + ": not JSON (" + ec.message() + ")");
  return v;
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

std::vector<std::pair<std::string, json::value>> batch_columns(const std::vector<json::object>& rows) {
  std::vector<std::pair<std::string, json::value>> cols;
  std::map<std::string, std::size_t, std::less<>> at;
  for (const auto& r : rows)
    for (const auto& [k, v] : r) {
      auto [it, fresh] = at.try_emplace(std::string(k), cols.size());
      if (fresh) cols.emplace_back(std::string(k), nullptr);
      auto& type = cols[it->second].second;
      if (type.is_null() || ((type.is_int64() || type.is_uint64()) && v.is_double())) type = v;
    }
  return cols;
}

}  // namespace ferry::pipelines::copy
