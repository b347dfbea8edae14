#include "run_context.hpp"

#include "engine/log.hpp"
#include "engine/url.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>

#include <algorithm>
#include <filesystem>
#include <iostream>
#include <map>
#include <utility>

namespace ferry::pipelines {

namespace {

/// One line naming what to fix when an endpoint is not configured; empty when fine.
std::string check_endpoints(const migrate_config& cfg) {
  if (cfg.source.url.empty()) return "no source URL: set BT_SOURCE_URL";
  if (cfg.dest.url.empty()) return "no destination URL: set BT_DEST_URL";
  if (cfg.source.api_key.empty()) return "no source API key: set BT_SOURCE_API_KEY (environment or .env)";
  if (cfg.dest.api_key.empty()) return "no destination API key: set BT_DEST_API_KEY (environment or .env)";
  return {};
}

/// The state a command runs on; throws with one line (a refused resume says how to go on).
void open_state(run_context& c, state_use use) {
  const auto& cfg = c.cfg;
  if (use == state_use::memory) {
    c.state.emplace(stores::state_store::open_memory());
    return;
  }
  if (use == state_use::read_if_exists) {
    if (std::filesystem::exists(std::filesystem::path(cfg.state_dir) / "CURRENT"))
      c.state.emplace(stores::state_store::open_read_only(cfg.state_dir));  // reads only: no free space needed
    return;
  }
  stores::state_store_options so;
  so.kv.min_free_bytes = cfg.state_min_free_bytes;
  c.state.emplace(stores::state_store::open(cfg.state_dir, so));
  std::map<std::string, std::string> fingerprint{{"source_url", cfg.source.url},
                                                 {"dest_url", cfg.dest.url},
                                                 {"created_after", cfg.created_after.value_or("")},
                                                 {"created_before", cfg.created_before.value_or("")}};
  // Recorded once any run copies attachments (never as "false": runs may turn it on later), so that
  // verify knows to check them.
  if (cfg.copy_attachments) fingerprint["copy_attachments"] = "true";
  try {
    c.state->check_and_record_meta(fingerprint);
  } catch (const std::exception& e) {
    throw std::runtime_error(std::string(e.what()) + " (keep the original settings to resume, or use another state dir)");
  }
}

/// The org ids both keys resolve to (either "" when the deployment does not tell), on a private
/// io_context before the run's runtime exists.
std::pair<std::string, std::string> organizations(const migrate_config& cfg) {
  namespace asio = boost::asio;
  asio::io_context local;
  auto src = make_side(local.get_executor(), side_role::source, cfg);
  auto dst = make_side(local.get_executor(), side_role::destination, cfg);
  std::pair<std::string, std::string> ids;
  auto done = asio::co_spawn(
      local,
      [&]() -> asio::awaitable<void> {
        ids.first = co_await organization_id(src);
        ids.second = co_await organization_id(dst);
      },
      asio::use_future);
  local.run();
  done.get();
  return ids;
}

/// Throws when the state dir cannot be created at its path (a file on the way), without creating anything:
/// a local problem is named before the same-org check asks both deployments.
void check_state_path(const std::string& dir) {
  std::filesystem::path prefix;
  for (const auto& part : std::filesystem::absolute(dir).lexically_normal()) {
    prefix /= part;
    std::error_code ec;
    const auto st = std::filesystem::status(prefix, ec);
    if (!std::filesystem::exists(st)) return;  // created by the open, after the same-org check
    if (!std::filesystem::is_directory(st))
      throw std::runtime_error("state dir " + dir + ": cannot create directory: " + prefix.string() + " is not a directory");
  }
}

/// One line refusing a migration of an organization onto itself, else "".
std::string same_org_refusal(const migrate_config& cfg) {
  if (engine::url_identity(cfg.source.url) != engine::url_identity(cfg.dest.url)) return {};
  std::string why = "the same API key";
  if (cfg.source.api_key != cfg.dest.api_key) {
    auto [src_org, dst_org] = organizations(cfg);
    if (src_org.empty() || dst_org.empty()) {
      engine::logger("pipeline")->warn("source and destination are one deployment; could not tell their organizations apart");
      return {};
    }
    if (src_org != dst_org) return {};  // two organizations of one deployment: allowed
    why = "organization " + src_org;
  }
  return "source " + cfg.source.url + " and destination " + cfg.dest.url + " are the same deployment and " + why +
         ": refusing to migrate an organization onto itself (copying between organizations of one deployment is "
         "allowed)";
}

/// --metrics-addr: the shard label, the process metrics, then the endpoint (its URL logged: with port 0
/// the log is where the port is found).
void start_metrics(run_context& c) {
  if (c.cfg.metrics_addr.empty()) return;
  if (!c.cfg.metrics_shard.empty()) c.metrics.set_const_label("shard", c.cfg.metrics_shard);
  engine::add_process_metrics(c.metrics);
  // Each side's global request semaphore (AIMD may resize it): its size and the permits held. The sides
  // outlive the endpoint (run_context's member order), the only caller of render().
  auto& limit = c.metrics.gauges("ferry_http_concurrency_limit", "Capacity of the side's global request semaphore.", {"side"});
  auto& in_flight = c.metrics.gauges("ferry_http_requests_in_flight", "HTTP requests of the side in flight.", {"side"});
  c.metrics.add_collector([&limit, &in_flight, src = c.src.api, dst = c.dst.api](engine::metrics_registry&) {
    for (auto [name, api] : {std::pair{"source", src}, std::pair{"destination", dst}}) {
      limit.with({name}).set(static_cast<double>(api->request_semaphore().capacity()));
      in_flight.with({name}).set(static_cast<double>(api->request_semaphore().in_use()));
    }
  });
  try {
    c.metrics_http = std::make_unique<metrics_service>(c.cfg.metrics_addr, c.metrics);
  } catch (const std::exception& e) {
    throw std::runtime_error("metrics_addr " + c.cfg.metrics_addr + ": " + e.what());
  }
  engine::logger("pipeline")->info("metrics url={}", c.metrics_http->url());
}

}  // namespace

run_context::run_context(const migrate_config& c, const run_options& r)
    : cfg(c), ro(r), out(r.out ? *r.out : std::cout), err(r.err ? *r.err : std::cerr) {}

std::unique_ptr<run_context> open_run_context(const migrate_config& cfg, const run_options& ro, std::string_view command,
                                              state_use use) {
  auto c = std::make_unique<run_context>(cfg, ro);
  if (auto e = check_endpoints(cfg); !e.empty()) {
    c->err << "ferry " << command << ": " << e << '\n';
    return nullptr;
  }
  engine::register_secret(cfg.source.api_key);
  engine::register_secret(cfg.dest.api_key);
  try {
    // Local input first, without network: an existing state dir is opened (lock, free space, resume
    // guard) before the same-org check; a new one is created after it (a refused run writes nothing).
    const bool existing = use == state_use::guarded &&
                          std::filesystem::exists(std::filesystem::path(cfg.state_dir) / "CURRENT");
    if (existing) open_state(*c, use);
    else if (use == state_use::guarded) check_state_path(cfg.state_dir);
    if (use != state_use::read_if_exists)
      if (auto refusal = same_org_refusal(cfg); !refusal.empty()) {
        c->err << "ferry " << command << ": " << refusal << '\n';
        return nullptr;
      }
    if (!existing) open_state(*c, use);
    // --record: every exchange of both sides, redacted (migrate only).
    if (use == state_use::guarded || use == state_use::memory)
      if (!cfg.record_dir.empty()) c->recorder.emplace(cfg.record_dir);
    c->rt = std::make_unique<engine::runtime>(runtime_config_for(ro));
    auto observer = [&](const char* name) {
      return c->recorder ? c->recorder->observer(name) : transports::exchange_observer{};
    };
    c->src = make_side(c->rt->executor(), side_role::source, cfg, observer("source"), c->metrics_or_null());
    c->dst = make_side(c->rt->executor(), side_role::destination, cfg, observer("dest"), c->metrics_or_null());
    if (use == state_use::guarded) start_metrics(*c);
    // A shutdown ends the clients' backoff and Retry-After waits: cancellation does not reach them all.
    c->rt->on_shutdown([src = c->src.api, dst = c->dst.api](engine::shutdown_phase, const std::string&) {
      src->abort_waits();
      dst->abort_waits();
    });
  } catch (const std::exception& e) {
    c->err << "ferry " << command << ": " << e.what() << '\n';
    return nullptr;
  }
  if (ro.on_runtime) ro.on_runtime(*c->rt);
  return c;
}

engine::runtime_config runtime_config_for(const run_options& ro) {
  engine::runtime_config rc;
  rc.threads = std::max<std::size_t>(ro.threads, 1);
  rc.shutdown_grace = ro.shutdown_grace;
  rc.handle_signals = ro.handle_signals;
  return rc;
}

}  // namespace ferry::pipelines
