#include "pipelines/resources/http_api.hpp"

#include "pipelines/resources/entry.hpp"

#include "engine/log.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/beast/http/verb.hpp>

#include <exception>
#include <stdexcept>

namespace ferry::pipelines::resources {

namespace asio = boost::asio;

asio::awaitable<api_reply> client_resource_api::call(std::string method, std::string target, std::string body) {
  auto r = co_await client_.api().call(boost::beast::http::string_to_verb(method), std::move(target), std::move(body));
  api_reply out;
  out.status = static_cast<int>(r.status);
  out.outcome = r.outcome;
  out.body = std::move(r.body);
  out.error = engine::redact(r.error);  // the client's line: method, URL, status, the server's words
  co_return out;
}

http_sides::http_sides() = default;
http_sides::http_sides(http_sides&&) noexcept = default;
http_sides& http_sides::operator=(http_sides&&) noexcept = default;
http_sides::~http_sides() {
  // The apis point into the clients: drop them first.
  source.reset();
  dest.reset();
}

namespace {

std::unique_ptr<transports::braintrust_client> make_client(const migrate_config& cfg, side_role which,
                                                           asio::any_io_executor ex, transports::exchange_observer obs) {
  const bool src = which == side_role::source;
  const endpoint_config& ep = src ? cfg.source : cfg.dest;
  const std::string side = src ? "source" : "destination";
  const std::string var_prefix = src ? "BT_SOURCE" : "BT_DEST";
  if (ep.url.empty())
    throw std::invalid_argument(side + ": no API URL: set " + var_prefix + "_URL (e.g. https://api.braintrust.dev)");
  if (ep.api_key.empty()) throw std::invalid_argument(side + ": no API key: set " + var_prefix + "_API_KEY");
  return std::make_unique<transports::braintrust_client>(std::move(ex), side_config_for(cfg, which, std::move(obs)));
}

}  // namespace

http_sides make_http_sides(const migrate_config& cfg, asio::any_io_executor ex,
                           transports::exchange_observer source_observer, transports::exchange_observer dest_observer) {
  // Keys first, so that nothing below (errors included) can print them.
  if (!cfg.source.api_key.empty()) engine::register_secret(cfg.source.api_key);
  if (!cfg.dest.api_key.empty()) engine::register_secret(cfg.dest.api_key);
  http_sides s;
  s.source_client = make_client(cfg, side_role::source, ex, std::move(source_observer));
  s.dest_client = make_client(cfg, side_role::destination, ex, std::move(dest_observer));
  s.source = std::make_unique<client_resource_api>(*s.source_client);
  s.dest = std::make_unique<client_resource_api>(*s.dest_client);
  return s;
}

int run_validate(const migrate_config& cfg, std::ostream& out) {
  asio::io_context ctx;
  http_sides sides;
  try {
    sides = make_http_sides(cfg, ctx.get_executor());
  } catch (const std::exception& e) {
    out << "FAIL config: " << engine::redact(e.what()) << "\n";
    return 1;
  }
  std::vector<check_result> results;
  std::exception_ptr err;
  asio::co_spawn(ctx, validate(cfg, *sides.source, *sides.dest),
                 [&](std::exception_ptr e, std::vector<check_result> r) {
                   err = e;
                   results = std::move(r);
                 });
  ctx.run();
  if (err) {
    try {
      std::rethrow_exception(err);
    } catch (const std::exception& e) {
      out << "FAIL validate: " << engine::redact(e.what()) << "\n";
    }
    return 1;
  }
  return print_checks(results, out);
}

}  // namespace ferry::pipelines::resources
