#pragma once
// The Braintrust-compatible API server behind `ferry serve`: auth, routing, fault injection, REST resources
// (rest_store), the event side (events_api) and the HTTP server, over one kv_store (RocksDB with a data
// dir, memory otherwise).
//
// Routing of one request, in order:
//   faults (counted for /_emulator/stats; may delay, fail, drop or truncate) ->
//   GET /v1 "Hello, World!" and GET /_emulator/stats (no auth) ->
//   the event side's public paths (signed-URL targets, no auth) ->
//   auth: `Authorization: Bearer <key>` -> organization, else 401 {"error"} ->
//   /api/* SDK calls -> /v1 REST resources -> the event side -> 404 {"error"}.
//
// Lifecycle: construct (opens the store; throws stores::store_error naming the data dir), `start()` binds
// (throws std::runtime_error naming address:port), the executor's threads serve, `stop()` closes the server
// (idempotent). `handle()` may be called without start() (tests call it directly). Destroy after the
// io_context has stopped running its handlers. Thread-safety: handle() runs concurrently on any number of
// connections; rest_store, events_api and fault_injector are thread-safe.

#include "emulator/events.hpp"
#include "emulator/faults.hpp"
#include "emulator/rest.hpp"
#include "stores/kv_store.hpp"
#include "transports/http_server.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace ferry::emulator {

struct api_key_entry {
  std::string api_key;
  std::string org_name = "emu-org";
  std::string org_id;  // empty: assigned once by the store and remembered in the data dir
};

struct emulator_config {
  std::string address = "127.0.0.1";
  std::uint16_t port = 0;  // 0 = any free port; read it back with port()
  std::string data_dir;    // empty = in memory
  std::vector<api_key_entry> api_keys;  // at least one
  std::uint64_t logs3_payload_max_bytes = 6u << 20;
  std::uint64_t max_span_bytes = 20u << 20;  // one stored row above this gets 413 naming it (also via overflow)
  std::size_t body_limit = 64u << 20;  // the HTTP server's request body limit (413 above)
  std::vector<fault_spec> faults;
  std::uint64_t fault_seed = 1;
  /// Deterministic ids and `created` timestamps (seed determinism tests, reproducible demos); unset = random.
  std::optional<std::uint64_t> id_seed;
};

class emulator {
 public:
  emulator(boost::asio::any_io_executor ex, emulator_config cfg);
  ~emulator();
  emulator(const emulator&) = delete;
  emulator& operator=(const emulator&) = delete;

  void start();
  void stop();
  /// The bound port after start(), the configured one before.
  std::uint16_t port() const;
  /// "http://<address>:<port>" (the URL the org's api_url and signed URLs use).
  std::string base_url() const;

  /// Serves one request (what the HTTP server calls).
  boost::asio::awaitable<transports::http_reply> handle(transports::http_request& req);

  /// The organization of an API key, or nullopt.
  std::optional<org_identity> org_for_key(std::string_view api_key) const;
  const std::vector<org_identity>& orgs() const { return orgs_; }

  rest_store& rest() { return *rest_; }
  events_api& events() { return *events_; }
  fault_injector& faults() { return faults_; }
  stores::kv_store& store() { return *store_; }

 private:
  boost::asio::awaitable<transports::http_reply> serve(transports::http_request& req);
  /// POST /function/code (`braintrust push`): a bundle id and a signed PUT URL for the code bundle (stored like
  /// an attachment under the bundle id).
  rest_reply function_code_slot(std::string_view method, std::string_view body, const request_context& ctx);

  boost::asio::any_io_executor ex_;
  emulator_config cfg_;
  std::unique_ptr<stores::kv_store> store_;
  std::unique_ptr<rest_store> rest_;
  std::unique_ptr<events_api> events_;
  fault_injector faults_;
  std::vector<std::pair<std::string, org_identity>> keys_;  // api key -> org
  std::vector<org_identity> orgs_;
  // Created by start(); its deleter lives with the server code so that handler-only users (tests) do not
  // link the socket server.
  // The deleter stops the server before deleting it.
  std::unique_ptr<transports::http_server, void (*)(transports::http_server*)> server_{nullptr, nullptr};
  std::uint16_t bound_port_ = 0;
};

/// A reply with the status and a JSON body (Content-Type application/json).
transports::http_reply json_reply(unsigned status, std::string body, unsigned version = 11, bool keep_alive = true);

/// The part of a fault decision applied before a request is served (the emulator and `ferry replay`):
/// waits the delay, then answers a drop or an injected status (`{"error": ...}`, Retry-After). nullopt:
/// serve the request. Either way the caller marks its final reply truncate_body when `d.truncate`.
boost::asio::awaitable<std::optional<transports::http_reply>> injected_reply(const fault_decision& d,
                                                                             const transports::http_request& req);

}  // namespace ferry::emulator
