#pragma once
// In-memory fakes of the source (BTQL) and destination (/logs3) for pipeline unit tests: no sockets.
// The source understands exactly the query shapes build_page_query / build_preflight_query produce.

#include "pipelines/streams/stream_io.hpp"

#include <boost/json.hpp>

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace ferry::test {

struct fake_row {
  std::string id;
  std::string key;
  std::string created;
  std::string extra;  // raw JSON fields appended to the row object, e.g. R"("input":1)"
};

inline std::string quoted_after(const std::string& q, const std::string& marker) {
  auto p = q.find(marker);
  if (p == std::string::npos) return {};
  p += marker.size();
  std::string out;
  for (; p < q.size() && q[p] != '\''; ++p) {
    if (q[p] == '\\') ++p;
    out += q[p];
  }
  return out;
}

class fake_source : public pipelines::streams::event_source {
 public:
  std::vector<fake_row> rows;  // sorted by key
  std::string object_field = "project_id";
  std::string object_id = "sp";
  std::vector<std::size_t> limits_seen;
  int calls = 0;
  /// Fault hook: (call number, limit) -> a result to return instead of the page.
  std::function<std::optional<pipelines::streams::call_result>(int, std::size_t)> fault;

  boost::asio::awaitable<pipelines::streams::call_result> btql(std::string body) override {
    ++calls;
    auto q = std::string(boost::json::parse(body).as_object().at("query").as_string());
    std::size_t limit = std::stoul(q.substr(q.find("limit: ") + 7));
    limits_seen.push_back(limit);
    if (fault)
      if (auto r = fault(calls, limit)) co_return *r;
    std::string gt = quoted_after(q, "_pagination_key > '");
    std::string ge = quoted_after(q, "_pagination_key >= '");
    std::string created_ge = quoted_after(q, "created >= '");
    std::string created_lt = quoted_after(q, "created < '");
    bool keys_only = q.rfind("select: _pagination_key", 0) == 0;
    std::string out = "{\"data\":[";
    std::size_t n = 0;
    for (const auto& r : rows) {
      if (n == limit) break;
      if (!gt.empty() && !(r.key > gt)) continue;
      if (!ge.empty() && !(r.key >= ge)) continue;
      if (!created_ge.empty() && !(r.created >= created_ge)) continue;
      if (!created_lt.empty() && !(r.created < created_lt)) continue;
      if (n++) out += ',';
      if (keys_only) {
        out += "{\"_pagination_key\":\"" + r.key + "\"}";
        continue;
      }
      out += "{\"id\":\"" + r.id + "\",\"_pagination_key\":\"" + r.key + "\",\"_xact_id\":\"1\",\"created\":\"" + r.created +
             "\",\"" + object_field + "\":\"" + object_id + "\"";
      if (!r.extra.empty()) out += "," + r.extra;
      out += '}';
    }
    out += "]}";
    pipelines::streams::call_result res;
    res.status = 200;
    res.body = std::move(out);
    co_return res;
  }
};

class fake_sink : public pipelines::streams::event_sink {
 public:
  std::map<std::string, std::string> rows;      // id -> last row JSON written
  std::map<std::string, int> inserts;           // id -> times written
  int calls = 0;
  std::size_t max_body = 0;                     // > 0: bodies above get 413 (nothing written)
  std::size_t uploads = 0;
  /// Fault hook: (call number, body) -> a result to return instead of writing.
  std::function<std::optional<pipelines::streams::call_result>(int, const std::string&)> fault;

  std::size_t overflow_cap = 0;  // > 0: payload_max_bytes() states it (the writer then uses overflow)
  std::size_t max_row = 0;       // > 0: a request holding a row above this is 413 (also through overflow)
  int overflows = 0;             // overflow uploads stored
  std::vector<std::size_t> overflow_rows;  // rows per overflow upload

  boost::asio::awaitable<pipelines::streams::call_result> logs3(std::string body) override {
    ++calls;
    if (fault)
      if (auto r = fault(calls, body)) co_return *r;
    if (max_body && body.size() > max_body) co_return status(413);
    co_return store(body);
  }
  /// As strict as the emulator: the request must declare the payload's exact size and one entry per row.
  boost::asio::awaitable<pipelines::streams::call_result> logs3_overflow(std::string payload, std::string request) override {
    ++calls;
    auto req = boost::json::parse(request).as_object();
    auto rows = boost::json::parse(payload).as_object().at("rows").as_array().size();
    if (req.at("content_type") != "application/json" || req.at("size_bytes").to_number<std::size_t>() != payload.size() ||
        req.at("rows").as_array().size() != rows)
      co_return status(400);
    auto res = store(payload);
    if (res.status == 200) {
      ++overflows;
      overflow_rows.push_back(rows);
    }
    co_return res;
  }
  static pipelines::streams::call_result status(int code) {
    pipelines::streams::call_result res;
    res.status = code;
    res.outcome = engine::io_outcome::fatal;
    return res;
  }
  pipelines::streams::call_result store(const std::string& body) {
    pipelines::streams::call_result res;
    auto v = boost::json::parse(body).as_object();
    if (max_row)
      for (auto& r : v.at("rows").as_array())
        if (boost::json::serialize(r).size() > max_row) return status(413);
    for (auto& r : v.at("rows").as_array()) {
      std::string id(r.as_object().at("id").as_string());
      rows[id] = boost::json::serialize(r);
      ++inserts[id];
    }
    res.status = 200;
    res.body = "{}";
    return res;
  }
  boost::asio::awaitable<std::optional<std::uint64_t>> payload_max_bytes() override {
    co_return overflow_cap ? std::optional<std::uint64_t>(overflow_cap) : std::nullopt;
  }
  boost::asio::awaitable<std::string> upload_attachment(std::string filename, std::string content_type, std::string) override {
    ++uploads;
    co_return "{\"type\":\"braintrust_attachment\",\"key\":\"k" + std::to_string(uploads) + "\",\"filename\":\"" + filename +
        "\",\"content_type\":\"" + content_type + "\"}";
  }
};

inline pipelines::streams::call_result http_status(int status, engine::io_outcome o) {
  pipelines::streams::call_result r;
  r.status = status;
  r.outcome = o;
  r.error = "injected";
  return r;
}

inline std::vector<fake_row> make_rows(int n, std::size_t payload = 10) {
  std::vector<fake_row> out;
  for (int i = 0; i < n; ++i) {
    char key[32];
    std::snprintf(key, sizeof key, "p%08d", i);
    char created[40];
    std::snprintf(created, sizeof created, "2026-01-%02dT00:00:00Z", 1 + i % 28);
    out.push_back({"r" + std::to_string(i), key, created, "\"input\":\"" + std::string(payload, 'x') + "\""});
  }
  return out;
}

}  // namespace ferry::test
