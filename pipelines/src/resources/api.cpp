#include "pipelines/resources/api.hpp"

#include "transports/api_client.hpp"
#include "engine/json_parse.hpp"

#include <boost/asio/use_awaitable.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <set>

namespace ferry::pipelines::resources {

namespace asio = boost::asio;
namespace json = boost::json;


asio::awaitable<json::value> resource_client::send(std::string method, std::string target, std::string body) const {
  std::string what = method + " " + target.substr(0, target.find('?'));
  api_reply r = co_await api_->call(std::move(method), std::move(target), std::move(body));
  if (r.outcome != engine::io_outcome::ok || r.status < 200 || r.status >= 300) {
    std::string msg = what + ": ";
    if (r.status) msg += std::to_string(r.status) + ": ";
    std::string detail = r.error;
    if (detail.empty()) {
      // Prefer the server's {"error": ...} message; else the first 300 bytes of the body.
      std::error_code ec;
      auto v = ferry::engine::parse_json(r.body, ec);
      if (!ec && v.is_object() && v.as_object().contains("error") && v.as_object().at("error").is_string())
        detail = std::string(v.as_object().at("error").as_string());
      else
        detail = r.body.substr(0, 300);
    }
    msg += detail.empty() ? std::string(engine::to_string(r.outcome)) : detail;
    throw api_failure(r.status, r.outcome == engine::io_outcome::ok ? engine::io_outcome::fatal : r.outcome, msg);
  }
  if (r.body.empty()) co_return json::value();
  std::error_code ec;
  auto v = ferry::engine::parse_json(r.body, ec);
  if (ec) throw api_failure(r.status, engine::io_outcome::fatal, what + ": response is not JSON: " + ec.message());
  co_return v;
}

asio::awaitable<std::vector<json::object>> resource_client::list(std::string path, query_params q,
                                                                 std::size_t page, paging mode) const {
  std::vector<json::object> out;
  std::set<std::string> seen;
  std::string after;
  for (;;) {
    query_params qp = q;
    // Without cursors a limit could only truncate: ask for everything in one request.
    if (mode == paging::cursor) qp.emplace_back("limit", std::to_string(page));
    if (!after.empty()) qp.emplace_back("starting_after", after);
    json::value v = co_await send("GET", transports::with_query(path, qp), {});
    json::array* arr = nullptr;
    if (v.is_array()) {
      arr = &v.as_array();
    } else if (v.is_object()) {
      auto it = v.as_object().find("objects");
      if (it != v.as_object().end() && it->value().is_array()) arr = &it->value().as_array();
    }
    if (!arr || arr->empty()) break;
    std::string last;
    for (auto& o : *arr) {
      if (!o.is_object()) continue;
      if (auto id = o.as_object().find("id"); id != o.as_object().end() && id->value().is_string()) {
        last = std::string(id->value().as_string());
        // A server that ignores starting_after answers the same page again: fail loudly, never loop or
        // return a silently partial listing.
        if (!seen.insert(last).second)
          throw api_failure(200, engine::io_outcome::fatal,
                            "GET " + path + ": the server repeated object " + last + " after starting_after=" + after +
                                "; the list cannot be paged to its end");
      }
      out.push_back(std::move(o.as_object()));
    }
    if (mode == paging::single) break;
    // The server chooses the page size (a proxy may cap it below `page`): only an empty page ends the list.
    if (last.empty())
      throw api_failure(200, engine::io_outcome::fatal, "GET " + path + ": a page without object ids cannot be continued");
    after = last;
  }
  co_return out;
}

asio::awaitable<json::value> resource_client::get(std::string target) const {
  co_return co_await send("GET", std::move(target), {});
}

asio::awaitable<json::object> resource_client::post(std::string path, const json::object& body) const {
  json::value v = co_await send("POST", path, json::serialize(body));
  if (!v.is_object()) throw api_failure(200, engine::io_outcome::fatal, "POST " + path + ": response is not an object");
  co_return std::move(v.as_object());
}

asio::awaitable<json::object> resource_client::patch(std::string path, const json::object& body) const {
  json::value v = co_await send("PATCH", path, json::serialize(body));
  if (!v.is_object()) throw api_failure(200, engine::io_outcome::fatal, "PATCH " + path + ": response is not an object");
  co_return std::move(v.as_object());
}

}  // namespace ferry::pipelines::resources
