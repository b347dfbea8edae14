#pragma once
// What resource migration needs from one Braintrust deployment: a JSON request/response call, as a small
// interface so the engine runs against the transports' api_client in production and against in-process
// emulators (or scripted fakes) in tests. Implementations retry throttled/transient outcomes themselves
// (the api_client does), so a reply here is final.
//
// `resource_client` adds the typed helpers on top (list paged to an empty page, get, post,
// patch) and turns failures into `api_failure` exceptions carrying a one-line message
// ("POST /v1/dataset: 403: <server message>"). It never logs bodies (they may hold secrets).
//
// Threading: implementations must accept concurrent calls from several coroutines on any strand.
// Lifetime: the caller keeps the api alive while calls are outstanding.

#include "engine/outcome.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/json/array.hpp>
#include <boost/json/object.hpp>

#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ferry::pipelines::resources {

struct api_reply {
  int status = 0;  // 0: no response (network error, timeout)
  engine::io_outcome outcome = engine::io_outcome::ok;
  std::string body;
  std::string error;  // one line, no secrets
};

class resource_api {
 public:
  virtual ~resource_api() = default;
  /// One request: `target` is an origin-relative path with query string ("/v1/dataset?project_id=..").
  virtual boost::asio::awaitable<api_reply> call(std::string method, std::string target, std::string body) = 0;
  /// The base URL, for messages.
  virtual std::string describe() const = 0;
};

/// A failed call, with the HTTP status (0 when none) and a one-line message naming method and path.
class api_failure : public std::runtime_error {
 public:
  api_failure(int status, engine::io_outcome outcome, const std::string& message)
      : std::runtime_error(message), status_(status), outcome_(outcome) {}
  int status() const { return status_; }
  engine::io_outcome outcome() const { return outcome_; }

 private:
  int status_;
  engine::io_outcome outcome_;
};

using query_params = std::vector<std::pair<std::string, std::string>>;

/// Typed helpers over a resource_api. Cheap to copy (a reference).
class resource_client {
 public:
  explicit resource_client(resource_api& api) : api_(&api) {}
  resource_api& api() const { return *api_; }

  /// How a list endpoint pages: `cursor` (limit + starting_after, the OpenAPI StartingAfter parameter) or
  /// `single` (no cursor parameter, e.g. /v1/env_var: one request without a limit).
  enum class paging { cursor, single };
  /// Every object of a list endpoint; accepts {"objects": [...]} or a bare array (acl/list_org). With
  /// cursors: pages with limit=`page` and starting_after=<last id> until an EMPTY page, whatever page
  /// size the server chooses (a short page is not the end). A server that repeats an object (ignores the
  /// cursor) or a page without ids is an api_failure, never a silently partial list.
  boost::asio::awaitable<std::vector<boost::json::object>> list(std::string path, query_params q,
                                                                std::size_t page = 1000,
                                                                paging mode = paging::cursor) const;
  boost::asio::awaitable<boost::json::value> get(std::string target) const;
  boost::asio::awaitable<boost::json::object> post(std::string path, const boost::json::object& body) const;
  boost::asio::awaitable<boost::json::object> patch(std::string path, const boost::json::object& body) const;
  /// Raw call with failure => api_failure, success => parsed JSON (null for an empty body).
  boost::asio::awaitable<boost::json::value> send(std::string method, std::string target, std::string body) const;

 private:
  resource_api* api_;
};

}  // namespace ferry::pipelines::resources
