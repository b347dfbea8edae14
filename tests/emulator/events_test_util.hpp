#pragma once
// Helpers for the event-side emulator tests: a map-backed kv_store (the interface's contract, no stores
// implementation needed), a fixture owning an events_api, and request/reply shortcuts that call
// handle_now() directly (no sockets).

#include "emulator/events.hpp"

#include <boost/beast/http/field.hpp>
#include <boost/beast/http/verb.hpp>
#include <boost/json.hpp>
#include <boost/url/parse.hpp>

#include <doctest/doctest.h>

#include <map>
#include <mutex>
#include <set>
#include <string>

namespace ferry::test {

/// kv_store over std::map, thread-safe by one mutex; scans copy the range and visit it without the lock.
class map_kv_store : public stores::kv_store {
 public:
  explicit map_kv_store(std::vector<std::string> cfs) {
    for (auto& c : cfs) data_[c];
  }
  std::optional<std::string> get(std::string_view cf, std::string_view key) const override {
    std::lock_guard l(mu_);
    const auto& m = table(cf);
    auto it = m.find(std::string(key));
    if (it == m.end()) return std::nullopt;
    return it->second;
  }
  void put(std::string_view cf, std::string_view key, std::string_view value, bool = false) override {
    std::lock_guard l(mu_);
    table(cf)[std::string(key)] = std::string(value);
  }
  void del(std::string_view cf, std::string_view key, bool = false) override {
    std::lock_guard l(mu_);
    table(cf).erase(std::string(key));
  }
  void write(const stores::write_batch& batch, bool) override {
    std::lock_guard l(mu_);
    ++writes;
    for (const auto& op : batch.ops()) {
      if (op.value) table(op.cf)[op.key] = *op.value;
      else table(op.cf).erase(op.key);
    }
  }
  void scan(std::string_view cf, std::string_view from, std::string_view to,
            const std::function<bool(std::string_view, std::string_view)>& visit) const override {
    std::vector<std::pair<std::string, std::string>> range;
    {
      std::lock_guard l(mu_);
      const auto& m = table(cf);
      for (auto it = m.lower_bound(std::string(from)); it != m.end() && (to.empty() || it->first < to); ++it)
        range.push_back(*it);
    }
    for (const auto& [k, v] : range)
      if (!visit(k, v)) break;
  }
  void scan_reverse(std::string_view cf, std::string_view from, std::string_view to,
                    const std::function<bool(std::string_view, std::string_view)>& visit) const override {
    std::vector<std::pair<std::string, std::string>> range;
    {
      std::lock_guard l(mu_);
      const auto& m = table(cf);
      auto it = from.empty() ? m.end() : m.lower_bound(std::string(from));
      while (it != m.begin()) {
        --it;
        if (!to.empty() && it->first < to) break;
        range.push_back(*it);
      }
    }
    for (const auto& [k, v] : range)
      if (!visit(k, v)) break;
  }
  std::size_t size(std::string_view cf) const {
    std::lock_guard l(mu_);
    return table(cf).size();
  }
  mutable int writes = 0;

 private:
  std::map<std::string, std::string>& table(std::string_view cf) {
    auto it = data_.find(std::string(cf));
    if (it == data_.end()) throw stores::store_error("map_kv_store: unknown column family " + std::string(cf));
    return it->second;
  }
  const std::map<std::string, std::string>& table(std::string_view cf) const {
    return const_cast<map_kv_store*>(this)->table(cf);
  }
  mutable std::mutex mu_;
  std::map<std::string, std::map<std::string, std::string>> data_;
};

struct reply_view {
  unsigned status = 0;
  std::string body;
  std::string content_type;
  boost::json::value json() const {
    boost::system::error_code ec;
    auto v = boost::json::parse(body, ec);
    if (ec) FAIL("reply body is not JSON: " << body.substr(0, 200));
    return v;
  }
};

/// One org ("org-1"), known objects: project p1, p2; experiment e1, e2; dataset d1, d2 (all in org-1),
/// and project "other-org-project" belonging to org-2.
struct events_fixture {
  explicit events_fixture(emulator::events_config cfg = default_config())
      : store(emulator::events_api::column_families()),
        api(store, lookup(), std::move(cfg)) {
    ctx.org_id = "org-1";
    ctx.org_name = "emu-org";
    ctx.base_url = "http://127.0.0.1:1234";
  }

  static emulator::events_config default_config() {
    emulator::events_config cfg;
    cfg.now_iso = [] { return std::string("2024-05-01T00:00:00.000Z"); };
    return cfg;
  }

  static emulator::object_lookup lookup() {
    return [](std::string_view type, std::string_view id, std::string_view org) {
      static const std::set<std::pair<std::string, std::string>> org1 = {
          {"project", "p1"}, {"project", "p2"}, {"experiment", "e1"}, {"experiment", "e2"},
          {"dataset", "d1"}, {"dataset", "d2"}};
      if (type == "project" && id == "other-org-project") return org == "org-2";
      return org == "org-1" && org1.count({std::string(type), std::string(id)}) > 0;
    };
  }

  reply_view call(boost::beast::http::verb method, std::string_view target, std::string body = {},
                  bool json_content_type = true) {
    transports::http_request req{method, target, 11};
    if (json_content_type && !body.empty()) req.set(boost::beast::http::field::content_type, "application/json");
    req.body() = std::move(body);
    req.prepare_payload();
    auto reply = api.handle_now(req, ctx);
    REQUIRE_MESSAGE(reply.has_value(), "no handler for " << target);
    reply_view v;
    v.status = reply->response.result_int();
    v.body = reply->response.body();
    if (auto it = reply->response.find(boost::beast::http::field::content_type); it != reply->response.end())
      v.content_type = std::string(it->value());
    return v;
  }
  reply_view post(std::string_view target, const boost::json::value& body) {
    return call(boost::beast::http::verb::post, target, boost::json::serialize(body));
  }
  reply_view post(std::string_view target, std::string body) {
    return call(boost::beast::http::verb::post, target, std::move(body));
  }
  reply_view post(std::string_view target, const char* body) { return post(target, std::string(body)); }
  reply_view get(std::string_view target) { return call(boost::beast::http::verb::get, target); }

  /// POST /logs3 with these rows; REQUIREs 200 and returns the ids.
  std::vector<std::string> logs3(const boost::json::array& rows) {
    boost::json::object body;
    body["rows"] = rows;
    body["api_version"] = 2;
    auto r = post("/logs3", body);
    REQUIRE_MESSAGE(r.status == 200, r.body);
    std::vector<std::string> ids;
    const auto reply = r.json();
    for (const auto& id : reply.at("ids").as_array()) ids.emplace_back(id.as_string());
    return ids;
  }

  /// POST /btql with text; REQUIREs 200 and returns the parsed reply.
  boost::json::object btql(const std::string& text) {
    boost::json::object body;
    body["query"] = text;
    body["fmt"] = "json";
    auto r = post("/btql", body);
    REQUIRE_MESSAGE(r.status == 200, r.body);
    return r.json().as_object();
  }

  map_kv_store store;
  emulator::events_api api;
  emulator::request_context ctx;
};

inline boost::json::value parse(std::string_view s) { return boost::json::parse(s); }

/// The path+query of a signed URL handed out by the emulator (base_url is http://127.0.0.1:1234).
inline std::string target_of(std::string_view url) {
  auto u = boost::urls::parse_uri(url);
  REQUIRE(u.has_value());
  return std::string(u->encoded_target());
}

}  // namespace ferry::test
