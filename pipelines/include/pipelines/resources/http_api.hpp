#pragma once
// resource_api over a transports::braintrust_client for real runs, and the helpers that build both sides
// of a migration from the config.
//
// client_resource_api: a thin view over the side's api_client: auth, the side's request semaphore and
// rate limits, retries with the side's policy (retry_attempts retries after the first try, Retry-After
// obeyed up to retry_after_max) are the client's. Creates are retried too: every Braintrust create is
// idempotent by name/slug/content (POST returns the existing object). The error of a failed call is the
// client's one line (status, the server's words), passed through the log redactor: a server echoing the
// Authorization header shows [REDACTED].
//
// make_http_sides(cfg, ex): one braintrust_client + client_resource_api per side, each from
// side_config_for(cfg, side) (migrate_config.hpp), the one mapping of the config to HTTP policy; both API
// keys are registered with the log redactor first. Throws std::invalid_argument with one line naming the
// side and what to fix (missing key or URL, unreadable CA file, bad proxy URL). `ferry migrate`,
// `ferry verify` and `ferry validate` all build their sides with it.
//
// run_validate(cfg, out): blocking `ferry validate` — builds the sides on its own io_context, runs
// validate() (entry.hpp) and prints one line per check; 0 when nothing FAILed, 1 otherwise (also for a
// config that cannot build the sides, printed as one FAIL line).
//
// Threading: call() may run concurrently from any strand. The http_sides own their clients; destroy them
// after the io_context stopped running their handlers (no call may be outstanding). The API key never
// appears in errors or logs.

#include "pipelines/migrate_config.hpp"
#include "pipelines/resources/api.hpp"

#include "transports/braintrust_client.hpp"

#include <boost/asio/any_io_executor.hpp>

#include <memory>
#include <ostream>
#include <string>

namespace ferry::pipelines::resources {

class client_resource_api final : public resource_api {
 public:
  explicit client_resource_api(transports::braintrust_client& client) : client_(client) {}
  boost::asio::awaitable<api_reply> call(std::string method, std::string target, std::string body) override;
  std::string describe() const override { return client_.describe(); }

 private:
  transports::braintrust_client& client_;
};

/// Both sides of a migration over HTTP. Movable; owns the clients the apis point into.
struct http_sides {
  http_sides();
  http_sides(http_sides&&) noexcept;
  http_sides& operator=(http_sides&&) noexcept;
  ~http_sides();

  std::unique_ptr<transports::braintrust_client> source_client;
  std::unique_ptr<transports::braintrust_client> dest_client;
  std::unique_ptr<client_resource_api> source;
  std::unique_ptr<client_resource_api> dest;
};

/// Builds both sides from the config (see the file comment). The observers (optional) see every exchange
/// of their side, e.g. a transports::recorder's observer("source") / observer("dest") for --record; what
/// they capture must outlive the sides. Throws std::invalid_argument.
http_sides make_http_sides(const migrate_config& cfg, boost::asio::any_io_executor ex,
                           transports::exchange_observer source_observer = {},
                           transports::exchange_observer dest_observer = {});

/// Blocking `ferry validate` over HTTP (see the file comment).
int run_validate(const migrate_config& cfg, std::ostream& out);

}  // namespace ferry::pipelines::resources
