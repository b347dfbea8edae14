#include "pipelines/archive/archive_source.hpp"

#include "../json_fields.hpp"

#include "pipelines/resources/specs.hpp"
#include "pipelines/streams/row_rewriter.hpp"

#include "engine/json_parse.hpp"

#include <boost/json.hpp>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <optional>
#include <stdexcept>

namespace ferry::pipelines::archive {

namespace asio = boost::asio;
namespace json = boost::json;
namespace fs = std::filesystem;

namespace {

std::string percent_decode(std::string_view s) {
  auto hex = [](char c) { return std::isdigit(static_cast<unsigned char>(c)) ? c - '0' : std::tolower(c) - 'a' + 10; };
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && std::isxdigit(static_cast<unsigned char>(s[i + 1])) &&
        std::isxdigit(static_cast<unsigned char>(s[i + 2]))) {
      out += static_cast<char>(hex(s[i + 1]) * 16 + hex(s[i + 2]));
      i += 2;
    } else {
      out += s[i] == '+' ? ' ' : s[i];
    }
  }
  return out;
}

resources::api_reply reply(int status, std::string body, std::string error = {}) {
  resources::api_reply r;
  r.status = status;
  r.outcome = status >= 200 && status < 300 ? engine::io_outcome::ok
              : status == 404                ? engine::io_outcome::not_found
                                             : engine::io_outcome::fatal;
  r.body = std::move(body);
  r.error = std::move(error);
  return r;
}

}  // namespace

archive_resource_api::archive_resource_api(fs::path dir, const manifest& m) : dir_(std::move(dir)) {
  for (const auto& [path, f] : m.resources) {
    auto v = ferry::engine::parse_json(read_file(dir_ / f.path));
    auto& list = by_path_[path];
    if (auto* objs = v.as_object().if_contains("objects"); objs && objs->is_array())
      for (auto& o : objs->as_array())
        if (o.is_object()) list.push_back(std::move(o.as_object()));
  }
}

std::string archive_resource_api::describe() const { return "archive " + dir_.string(); }

asio::awaitable<resources::api_reply> archive_resource_api::call(std::string method, std::string target, std::string) {
  co_return answer(method, target);
}

resources::api_reply archive_resource_api::answer(const std::string& method, const std::string& target) const {
  if (method != "GET") return reply(405, {}, method + " " + target + ": the archive is read-only");
  const auto q = target.find('?');
  const std::string path = target.substr(0, q);
  std::vector<std::pair<std::string, std::string>> filters;
  std::size_t limit = SIZE_MAX;
  std::string after;
  if (q != std::string::npos) {
    std::string_view rest = std::string_view(target).substr(q + 1);
    while (!rest.empty()) {
      auto amp = rest.find('&');
      auto kv = rest.substr(0, amp);
      rest = amp == std::string_view::npos ? std::string_view() : rest.substr(amp + 1);
      auto eq = kv.find('=');
      std::string k = percent_decode(kv.substr(0, eq));
      std::string v = eq == std::string_view::npos ? std::string() : percent_decode(kv.substr(eq + 1));
      if (k == "limit") limit = static_cast<std::size_t>(std::max(1L, std::atol(v.c_str())));
      else if (k == "starting_after") after = v;
      else filters.emplace_back(std::move(k), std::move(v));
    }
  }
  if (auto it = by_path_.find(path); it != by_path_.end()) {
    json::array page;
    bool started = after.empty();
    for (const auto& o : it->second) {
      if (!started) {
        started = str_field(o, "id") == after;
        continue;
      }
      bool match = std::all_of(filters.begin(), filters.end(), [&](const auto& f) {
        auto* v = o.if_contains(f.first);
        return v && v->is_string() && v->as_string() == f.second;
      });
      if (!match) continue;
      if (page.size() >= limit) break;
      page.push_back(o);
    }
    return reply(200, json::serialize(json::object{{"objects", std::move(page)}}));
  }
  const auto slash = path.rfind('/');
  if (slash != std::string::npos)
    if (auto it = by_path_.find(path.substr(0, slash)); it != by_path_.end()) {
      const std::string id = path.substr(slash + 1);
      for (const auto& o : it->second)
        if (str_field(o, "id") == id) return reply(200, json::serialize(o));
    }
  return reply(404, R"({"error":"not in the archive"})", "GET " + path + ": not in the archive");
}

// ---- event source -------------------------------------------------------------------------------

namespace {

/// A parsed page query (the subset btql_query.cpp builds).
struct parsed_query {
  bool keys_only = false;
  std::string kind;
  std::vector<std::string> ids;
  std::string created_after, created_before, after_key;
  bool inclusive = false;
  std::size_t limit = 1000;
};

/// Reads a BTQL string literal at `s[i]` (a quote): `\\` and `\'` escapes.
std::optional<std::string> literal(std::string_view s, std::size_t& i) {
  if (i >= s.size() || s[i] != '\'') return std::nullopt;
  std::string out;
  for (++i; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 1 < s.size()) out += s[++i];
    else if (s[i] == '\'') {
      ++i;
      return out;
    } else out += s[i];
  }
  return std::nullopt;
}

bool parse_from(std::string_view v, parsed_query& q) {
  const auto open = v.find('(');
  if (open == std::string_view::npos) return false;
  q.kind = std::string(v.substr(0, open));
  std::size_t i = open + 1;
  for (;;) {
    while (i < v.size() && (v[i] == ' ' || v[i] == ',')) ++i;
    if (i < v.size() && v[i] == ')') return true;
    auto id = literal(v, i);
    if (!id) return false;
    q.ids.push_back(std::move(*id));
  }
}

bool parse_filter(std::string_view v, parsed_query& q) {
  std::size_t i = 0;
  while (i < v.size()) {
    while (i < v.size() && v[i] == ' ') ++i;
    if (v.substr(i).starts_with("and ")) i += 4;
    const auto sp = v.find(' ', i);
    if (sp == std::string_view::npos) return false;
    const auto field = v.substr(i, sp - i);
    const auto sp2 = v.find(' ', sp + 1);
    if (sp2 == std::string_view::npos) return false;
    const auto op = v.substr(sp + 1, sp2 - sp - 1);
    i = sp2 + 1;
    auto lit = literal(v, i);
    if (!lit) return false;
    if (field == "created" && op == ">=") q.created_after = resources::comparable_time(*lit);
    else if (field == "created" && op == "<") q.created_before = resources::comparable_time(*lit);
    else if (field == "_pagination_key" && (op == ">" || op == ">=")) {
      q.after_key = *lit;
      q.inclusive = op == ">=";
    } else return false;
  }
  return true;
}

std::optional<parsed_query> parse_query(std::string_view text) {
  parsed_query q;
  bool from = false;
  while (!text.empty()) {
    const auto nl = text.find('\n');
    const auto line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    const auto colon = line.find(": ");
    if (colon == std::string_view::npos) return std::nullopt;
    const auto key = line.substr(0, colon), v = line.substr(colon + 2);
    if (key == "select") q.keys_only = v == "_pagination_key";
    else if (key == "from") from = parse_from(v, q);
    else if (key == "filter") {
      if (!parse_filter(v, q)) return std::nullopt;
    } else if (key == "limit") q.limit = static_cast<std::size_t>(std::max(1L, std::atol(std::string(v).c_str())));
    else if (key != "sort" || v != "_pagination_key asc") return std::nullopt;
  }
  if (!from) return std::nullopt;
  return q;
}

streams::call_result result(int status, std::string body, std::string error = {}) {
  streams::call_result r;
  r.status = status;
  r.outcome = status == 200 ? engine::io_outcome::ok : engine::io_outcome::fatal;
  r.body = std::move(body);
  r.error = std::move(error);
  return r;
}

}  // namespace

archive_event_source::archive_event_source(fs::path dir, const manifest& m) : dir_(std::move(dir)), attachments_(m.attachments) {
  for (const auto& s : m.streams) streams_[s.kind + "/" + s.object_id] = s;
}

asio::awaitable<std::string> archive_event_source::download_attachment(std::string key, std::string, std::string,
                                                                       std::uint64_t max_bytes) {
  auto it = attachments_.find(key);
  if (it == attachments_.end()) throw streams::stream_error("attachment " + key + ": not in the archive " + dir_.string());
  if (it->second.file.bytes > max_bytes)
    throw streams::stream_error("attachment " + key + ": " + std::to_string(it->second.file.bytes) +
                                " bytes exceed MIGRATION_ATTACHMENT_MAX_BYTES (" + std::to_string(max_bytes) + ")");
  try {
    co_return read_attachment(dir_, it->second);
  } catch (const std::exception& e) {
    throw streams::stream_error(std::string("attachment ") + key + ": " + e.what());
  }
}

asio::awaitable<streams::call_result> archive_event_source::btql(std::string body) {
  try {
    co_return answer(body);
  } catch (const std::exception& e) {
    co_return result(500, {}, e.what());  // a chunk that fails its checksum or does not decode
  }
}

std::shared_ptr<const std::vector<archive_event_source::row>> archive_event_source::chunk(const std::string& stream,
                                                                                          const file_entry& f) {
  {
    std::lock_guard lock(mu_);
    if (auto it = cache_.find(stream); it != cache_.end() && it->second.first == f.path) return it->second.second;
  }
  auto rows = std::make_shared<std::vector<row>>();
  for (auto& line : read_chunk(dir_, f)) {
    auto v = ferry::engine::parse_json(line);
    rows->push_back({str_field(v.as_object(), "_pagination_key"),
                     resources::comparable_time(str_field(v.as_object(), "created")), std::move(line)});
  }
  std::lock_guard lock(mu_);
  cache_[stream] = {f.path, rows};
  return rows;
}

streams::call_result archive_event_source::answer(const std::string& body) {
  std::error_code ec;
  auto v = ferry::engine::parse_json(body, ec);
  std::optional<parsed_query> q;
  if (!ec && v.is_object())
    if (auto* t = v.as_object().if_contains("query"); t && t->is_string()) q = parse_query(t->as_string());
  if (!q) return result(400, {}, "the archive source cannot answer this BTQL query");
  std::vector<const row*> picked;
  std::vector<std::shared_ptr<const std::vector<row>>> hold;  // keeps picked rows alive
  for (const auto& id : q->ids) {
    const std::string key = q->kind + "/" + id;
    auto it = streams_.find(key);
    if (it == streams_.end()) return result(404, {}, "stream " + key + " is not in the archive");
    std::size_t n = 0;
    for (const auto& c : it->second.chunks) {
      if (n >= q->limit) break;
      if (!q->after_key.empty() && (q->inclusive ? c.last_key < q->after_key : c.last_key <= q->after_key)) continue;
      auto rows = chunk(key, c);
      hold.push_back(rows);
      for (const auto& r : *rows) {
        if (n >= q->limit) break;
        if (!q->after_key.empty() && (q->inclusive ? r.key < q->after_key : r.key <= q->after_key)) continue;
        if (!q->created_after.empty() && r.created < q->created_after) continue;
        if (!q->created_before.empty() && r.created >= q->created_before) continue;
        picked.push_back(&r);
        ++n;
      }
    }
  }
  std::sort(picked.begin(), picked.end(), [](const row* a, const row* b) { return a->key < b->key; });
  if (picked.size() > q->limit) picked.resize(q->limit);
  std::string out = "{\"data\":[";
  for (std::size_t i = 0; i < picked.size(); ++i) {
    if (i) out += ',';
    if (q->keys_only) out += json::serialize(json::object{{"_pagination_key", picked[i]->key}});
    else out += picked[i]->line;
  }
  out += "]}";
  return result(200, std::move(out));
}

}  // namespace ferry::pipelines::archive
