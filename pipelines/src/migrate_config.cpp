#include "pipelines/migrate_config.hpp"

#include "transports/metrics_endpoint.hpp"

#include "engine/civil_date.hpp"
#include "engine/log.hpp"
#include "engine/url.hpp"
#include "pipelines/resources/specs.hpp"
#include "run/plan_file.hpp"

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cstdio>

namespace ferry::pipelines {
namespace {

using engine::config_error;
using engine::setting_binding;

using engine::civil_from_days;
using engine::days_from_civil;

bool read_digits(std::string_view s, std::size_t& pos, std::size_t n, int& out) {
  if (pos + n > s.size()) return false;
  out = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const char c = s[pos + i];
    if (!std::isdigit(static_cast<unsigned char>(c))) return false;
    out = out * 10 + (c - '0');
  }
  pos += n;
  return true;
}

bool expect(std::string_view s, std::size_t& pos, char c) {
  if (pos < s.size() && s[pos] == c) {
    ++pos;
    return true;
  }
  return false;
}

int days_in_month(int y, int m) {
  static constexpr std::array<int, 12> dm = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  const bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
  return m == 2 && leap ? 29 : dm[static_cast<std::size_t>(m - 1)];
}

std::optional<std::string> timestamp_setting(const engine::settings& s, std::string_view key) {
  auto raw = s.get_optional(key);
  if (!raw) return std::nullopt;
  if (raw->empty()) throw config_error(std::string(key) + " from " + s.where(key) + " cannot be empty");
  auto canon = canonical_timestamp(*raw);
  if (!canon)
    throw config_error("invalid " + std::string(key) + " from " + s.where(key) +
                       ": expected YYYY-MM-DD like 2026-01-15 or ISO-8601 like 2026-01-15T08:30:00Z, got '" + *raw +
                       "'");
  return canon;
}

// A kind's page size: its own setting, else events_fetch_limit, whichever comes from the source of higher
// precedence (the kind's own wins a tie), so --events-fetch-limit and MIGRATION_EVENTS_FETCH_LIMIT mean
// the same thing, as every other flag and its variable do.
int fetch_limit_setting(const engine::settings& s, std::string_view kind_key) {
  const auto* own = s.find(kind_key);
  const auto* all = s.find("events_fetch_limit");
  const bool use_all = all && (!own || all->source > own->source);
  return static_cast<int>(s.get_int(use_all ? "events_fetch_limit" : kind_key, 1000, 1, 10000));
}


/// A base URL setting: http(s), a host, a port in range; its password (if any) is registered as a secret.
std::string url_setting(const engine::settings& s, std::string_view key, const std::string& def) {
  std::string url = s.get_string(key, def);
  engine::register_url_password(url);
  if (auto why = engine::check_base_url(url))
    throw config_error("invalid " + std::string(key) + " from " + s.where(key) + ": " + *why + ", got '" +
                       engine::redact(url) + "'");
  return url;
}

/// Every name of `key`'s list must be a resource selection name (or `all`); `exclude` is not checked:
/// a name there that is no resource is a project name.
void check_resource_names(const engine::settings& s, std::string_view key, const std::vector<std::string>& names) {
  for (const auto& n : names) {
    if (n == "all" || resources::type_for_selection(n)) continue;
    std::string known;
    for (const auto& k : resources::selection_names()) known += (known.empty() ? "" : ", ") + k;
    throw config_error("invalid " + std::string(key) + " from " + s.where(key) + ": unknown resource '" + n +
                       "' (known: all, " + known + ")");
  }
}

void check_choice(const engine::settings& s, std::string_view key, const std::string& value,
                  std::initializer_list<std::string_view> allowed) {
  std::string l(value);
  std::transform(l.begin(), l.end(), l.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (std::find(allowed.begin(), allowed.end(), l) != allowed.end()) return;
  std::string list;
  for (auto a : allowed) list += (list.empty() ? "" : ", ") + std::string(a);
  throw config_error("invalid " + std::string(key) + " from " + s.where(key) + ": expected one of " + list +
                     ", got '" + value + "'");
}

/// A CA file must load as PEM certificates now, not at the first HTTPS connection.
void check_ca_file(const engine::settings& s, const std::string& path) {
  if (path.empty()) return;
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  if (!ctx) return;
  const int ok = SSL_CTX_load_verify_locations(ctx, path.c_str(), nullptr);
  SSL_CTX_free(ctx);
  if (ok == 1) return;
  ERR_clear_error();
  throw config_error("invalid ca_file from " + s.where("ca_file") + ": '" + path +
                     "' cannot be read as PEM certificates (check the path, its permissions and its contents)");
}
}  // namespace

transports::side_config side_config_for(const migrate_config& cfg, side_role which,
                                        transports::exchange_observer observer) {
  const bool src = which == side_role::source;
  const endpoint_config& ep = src ? cfg.source : cfg.dest;
  transports::side_config c;
  c.name = src ? "source" : "destination";
  c.url = ep.url;
  c.api_key = ep.api_key;
  c.ca_file = cfg.ca_file;
  c.insecure = cfg.insecure;
  c.accept_gzip = cfg.accept_gzip;
  c.proxy = transports::proxy_config::from_env();
  c.request_timeout = cfg.request_timeout;
  c.retry_attempts = cfg.retry_attempts;
  c.retry_delay = cfg.retry_delay;
  c.retry_after_max = cfg.retry_after_max;
  c.max_concurrent_requests = static_cast<std::size_t>(std::max(cfg.max_concurrent_requests, 1));
  // Enough pooled connections that the semaphore, not the pool, is what bounds the side.
  c.max_connections = static_cast<std::size_t>(std::max(64, cfg.max_concurrent_requests + 8 * cfg.max_concurrent_streams));
  c.max_requests_per_s = cfg.max_requests_per_s;
  c.max_bytes_per_s = cfg.max_bytes_per_s;
  c.observer = std::move(observer);
  return c;
}

std::optional<std::string> canonical_timestamp(std::string_view t) {
  while (!t.empty() && std::isspace(static_cast<unsigned char>(t.front()))) t.remove_prefix(1);
  while (!t.empty() && std::isspace(static_cast<unsigned char>(t.back()))) t.remove_suffix(1);
  std::size_t p = 0;
  int y = 0, mo = 0, d = 0, h = 0, mi = 0, sec = 0;
  if (!read_digits(t, p, 4, y) || !expect(t, p, '-') || !read_digits(t, p, 2, mo) || !expect(t, p, '-') ||
      !read_digits(t, p, 2, d))
    return std::nullopt;
  if (mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo)) return std::nullopt;
  std::string frac;
  int offset_min = 0;
  if (p < t.size()) {
    if (t[p] != 'T' && t[p] != 't' && t[p] != ' ') return std::nullopt;
    ++p;
    if (!read_digits(t, p, 2, h) || !expect(t, p, ':') || !read_digits(t, p, 2, mi)) return std::nullopt;
    if (expect(t, p, ':') && !read_digits(t, p, 2, sec)) return std::nullopt;
    if (h > 23 || mi > 59 || sec > 60) return std::nullopt;
    if (expect(t, p, '.')) {
      while (p < t.size() && std::isdigit(static_cast<unsigned char>(t[p]))) frac += t[p++];
      if (frac.empty() || frac.size() > 9) return std::nullopt;
    }
    if (p < t.size()) {
      if (t[p] == 'Z' || t[p] == 'z') {
        ++p;
      } else if (t[p] == '+' || t[p] == '-') {
        const int sign = t[p] == '-' ? -1 : 1;
        ++p;
        int oh = 0, om = 0;
        if (!read_digits(t, p, 2, oh)) return std::nullopt;
        expect(t, p, ':');
        if (!read_digits(t, p, 2, om)) return std::nullopt;
        if (oh > 23 || om > 59) return std::nullopt;
        offset_min = sign * (oh * 60 + om);
      } else {
        return std::nullopt;
      }
    }
    if (p != t.size()) return std::nullopt;
  }
  // Shift to UTC: local time minus the offset.
  std::int64_t total_min = days_from_civil(y, static_cast<unsigned>(mo), static_cast<unsigned>(d)) * 1440 + h * 60 +
                           mi - offset_min;
  const std::int64_t days = total_min >= 0 ? total_min / 1440 : -((-total_min + 1439) / 1440);
  const std::int64_t rem = total_min - days * 1440;
  std::int64_t yy = 0;
  unsigned mm = 0, dd = 0;
  civil_from_days(days, yy, mm, dd);
  while (frac.size() < 6) frac += '0';
  if (frac.size() > 6) frac.resize(6);  // microseconds, as the reference tool's canonical form
  std::array<char, 64> buf{};
  std::snprintf(buf.data(), buf.size(), "%04lld-%02u-%02uT%02lld:%02lld:%02d", static_cast<long long>(yy), mm, dd,
                static_cast<long long>(rem / 60), static_cast<long long>(rem % 60), sec);
  std::string out = buf.data();
  if (frac != "000000") out += "." + frac;
  out += "Z";
  return out;
}

std::vector<setting_binding> migrate_settings_schema() {
  auto schema = std::vector<setting_binding>{
      {"source.url", {"BT_SOURCE_URL"}, false, "source API base URL", "https://api.braintrust.dev"},
      {"source.api_key", {"BT_SOURCE_API_KEY"}, true, "source API key (env/.env/config only)", "(required)"},
      {"dest.url", {"BT_DEST_URL"}, false, "destination API base URL", "https://api.braintrust.dev"},
      {"dest.api_key", {"BT_DEST_API_KEY"}, true, "destination API key (env/.env/config only)", "(required)"},
      {"state_dir", {"MIGRATION_STATE_DIR"}, false, "directory of the migration state (RocksDB)", "./ferry-state"},
      {"resources", {"MIGRATION_RESOURCES"}, false, "comma list of resource types, or all", "all"},
      {"projects", {"MIGRATION_PROJECTS"}, false, "comma list of project names", "all"},
      {"exclude", {"MIGRATION_EXCLUDE"}, false, "comma list of resource types or project names to skip", "none"},
      {"created_after", {"MIGRATION_CREATED_AFTER"}, false, "inclusive lower bound on created", "none"},
      {"created_before", {"MIGRATION_CREATED_BEFORE"}, false, "exclusive upper bound on created", "none"},
      {"on_name_conflict", {"MIGRATION_ON_NAME_CONFLICT"}, false, "adopt | abort | update", "adopt"},
      {"dry_run", {"MIGRATION_DRY_RUN"}, false, "plan only, write nothing", "false"},
      {"follow", {"MIGRATION_FOLLOW"}, false,
       "after the bulk copy, keep copying new rows every follow_interval until stopped", "false"},
      {"follow_interval", {"MIGRATION_FOLLOW_INTERVAL"}, false, "pause between follow rounds (100ms-24h)", "5s"},
      {"until_caught_up", {"MIGRATION_UNTIL_CAUGHT_UP"}, false,
       "follow until one round copies no row in any stream (the cut-over pass); implies follow", "false"},
      {"events_fetch_limit", {"MIGRATION_EVENTS_FETCH_LIMIT"}, false,
       "BTQL page size for logs, experiment and dataset events (a kind's own setting wins at equal precedence)", "1000"},
      {"logs_fetch_limit", {"MIGRATION_LOGS_FETCH_LIMIT"}, false, "BTQL page size for logs", "1000"},
      {"experiment_fetch_limit", {"MIGRATION_EXPERIMENT_EVENTS_FETCH_LIMIT"}, false,
       "BTQL page size for experiment events", "1000"},
      {"dataset_fetch_limit", {"MIGRATION_DATASET_EVENTS_FETCH_LIMIT"}, false, "BTQL page size for dataset events", "1000"},
      {"min_fetch_limit", {"MIGRATION_MIN_FETCH_LIMIT"}, false, "smallest adaptive BTQL page size", "25"},
      {"fetch_group_size", {"MIGRATION_EVENTS_FETCH_GROUP_SIZE"}, false, "experiments/datasets per BTQL query", "25"},
      {"insert_batch_rows",
       {"MIGRATION_INSERT_BATCH_ROWS", "MIGRATION_LOGS_INSERT_BATCH_SIZE", "MIGRATION_EVENTS_FLUSH_MAX_ROWS"}, false,
       "rows per /logs3 request", "1000"},
      {"insert_max_request_bytes", {"MIGRATION_INSERT_MAX_REQUEST_BYTES"}, false, "bytes per /logs3 request", "6MiB"},
      {"insert_request_headroom", {"MIGRATION_INSERT_REQUEST_HEADROOM_RATIO"}, false, "fraction of the byte cap used", "0.75"},
      {"copy_attachments", {"MIGRATION_COPY_ATTACHMENTS"}, false, "copy attachment bytes to the destination", "false"},
      {"attachment_max_bytes", {"MIGRATION_ATTACHMENT_MAX_BYTES"}, false, "largest attachment copied", "52428800"},
      {"memory_budget", {"MIGRATION_MEMORY_BUDGET"}, false,
       "memory of the event streams, all streams and slices together: their rows (pages, batches, request bodies) "
       "hold about half of it, the rest is the process's own", "192MiB"},
      {"state_min_free_bytes", {"MIGRATION_STATE_MIN_FREE_BYTES"}, false,
       "free space the state dir's disk must keep; below it the run stops cleanly (0 = no check)", "64MiB"},
      {"max_concurrent_requests", {"MIGRATION_MAX_CONCURRENT_REQUESTS"}, false,
       "HTTP requests in flight per side, every request (stream pages and batches included)", "40"},
      {"max_concurrent_streams", {"MIGRATION_MAX_CONCURRENT_STREAMS"}, false, "event streams copied at once", "4"},
      {"max_slices_per_stream", {"MIGRATION_MAX_SLICES_PER_STREAM"}, false,
       "slices a large stream is split into and copied by in parallel (adaptive, up to this); 1 = off", "8"},
      {"max_concurrent_projects", {"MIGRATION_MAX_CONCURRENT"}, false, "projects migrated at once", "2"},
      {"max_concurrent_resources", {"MIGRATION_MAX_CONCURRENT_RESOURCES"}, false, "objects of a type created at once", "5"},
      {"retry_attempts", {"MIGRATION_RETRY_ATTEMPTS"}, false, "retries after the first attempt (N + 1 attempts)", "5"},
      {"retry_delay", {"MIGRATION_RETRY_DELAY"}, false, "base retry delay (seconds or 500ms)", "1s"},
      {"retry_after_max", {"MIGRATION_RETRY_AFTER_MAX"}, false, "longest Retry-After obeyed; longer ones are cut", "60s"},
      {"request_timeout", {"MIGRATION_REQUEST_TIMEOUT"}, false,
       "total time for one HTTP attempt (connect, send, wait, read); each retry gets its own", "120s"},
      {"max_requests_per_s", {"MIGRATION_MAX_REQUESTS_PER_SECOND"}, false, "request rate cap per side, 0 = none", "0 (no cap)"},
      {"max_bytes_per_s", {"MIGRATION_MAX_BYTES_PER_SECOND"}, false, "byte rate cap per side, 0 = none", "0 (no cap)"},
      {"acl_map_users", {"MIGRATION_ACL_MAP_USERS"}, false, "map ACL users by email", "false"},
      {"acl_auto_invite_users", {"MIGRATION_ACL_AUTO_INVITE_USERS"}, false, "invite unmapped ACL users", "false"},
      {"group_map_users", {"MIGRATION_GROUP_MAP_USERS"}, false, "map group members by email", "false"},
      {"group_auto_invite_users", {"MIGRATION_GROUP_AUTO_INVITE_USERS"}, false, "invite unmapped group members", "false"},
      {"accept_gzip", {"MIGRATION_ACCEPT_GZIP"}, false,
       "ask servers for gzip: auto (on for https, off for http to loopback/private hosts) | on | off", "auto"},
      {"ca_file", {"MIGRATION_CA_FILE", "SSL_CERT_FILE"}, false, "PEM file of trusted CAs", "system CAs"},
      {"insecure", {"MIGRATION_INSECURE"}, false, "disable TLS verification (warns)", "false"},
      {"record_dir", {"MIGRATION_RECORD_DIR"}, false, "record HTTP exchanges here (redacted)", "none"},
      {"log_level", {"LOG_LEVEL"}, false, "trace|debug|info|warn|error", "info"},
      {"log_format", {"LOG_FORMAT"}, false, "text|json", "text"},
      {"report_path", {"MIGRATION_REPORT_PATH"}, false, "where migration_report.json is written", "<state_dir>/migration_report.json"},
      // Metrics (README "Metrics"): the Prometheus endpoint of `ferry migrate`.
      {"metrics_addr", {"MIGRATION_METRICS_ADDR"}, false, "HOST:PORT serving GET /metrics (port 0 = any; logged)", "none"},
      {"metrics_linger", {"MIGRATION_METRICS_LINGER"}, false,
       "keep serving the final metrics this long after the run (a last scrape; SIGINT ends it)", "0s"},
      {"metrics_shard", {"MIGRATION_METRICS_SHARD"}, false, "value of a `shard` label on every metric", "none"},
  };
  for (auto& b : cluster_settings_schema()) schema.push_back(std::move(b));
  return schema;
}

// One validated read per setting, in the order of the schema above: the function is as long as the list
// of settings (splitting it would only scatter that list).
migrate_config load_migrate_config(const engine::settings& s) {
  migrate_config c;
  c.source.url = url_setting(s, "source.url", c.source.url);
  c.source.api_key = s.get_string("source.api_key");
  c.dest.url = url_setting(s, "dest.url", c.dest.url);
  c.dest.api_key = s.get_string("dest.api_key");
  c.state_dir = s.get_string("state_dir", c.state_dir);
  if (c.state_dir.empty()) throw config_error("state_dir from " + s.where("state_dir") + " cannot be empty");

  c.resources = s.get_list("resources");
  check_resource_names(s, "resources", c.resources);
  if (c.resources.size() == 1 && c.resources[0] == "all") c.resources.clear();
  c.projects = s.get_list("projects");
  c.exclude = s.get_list("exclude");
  c.created_after = timestamp_setting(s, "created_after");
  c.created_before = timestamp_setting(s, "created_before");
  if (c.created_after && c.created_before && *c.created_after >= *c.created_before)
    throw config_error("created_after (" + *c.created_after + ", from " + s.where("created_after") +
                       ") must be earlier than created_before (" + *c.created_before + ", from " +
                       s.where("created_before") + ")");
  const std::string policy = s.get_string("on_name_conflict", "adopt");
  if (policy == "adopt") c.on_name_conflict = name_conflict_policy::adopt;
  else if (policy == "abort") c.on_name_conflict = name_conflict_policy::abort;
  else if (policy == "update") c.on_name_conflict = name_conflict_policy::update;
  else
    throw config_error("invalid on_name_conflict from " + s.where("on_name_conflict") +
                       ": expected adopt, abort or update, got '" + policy + "'");
  c.dry_run = s.get_bool("dry_run", false);
  c.until_caught_up = s.get_bool("until_caught_up", false);
  c.follow = s.get_bool("follow", false) || c.until_caught_up;
  c.follow_interval = s.get_duration("follow_interval", std::chrono::milliseconds(5000), std::chrono::milliseconds(100),
                                     std::chrono::hours(24));
  if (c.follow && c.dry_run)
    throw config_error("follow (from " + s.where(c.until_caught_up ? "until_caught_up" : "follow") +
                       ") cannot be combined with dry_run (from " + s.where("dry_run") + ")");

  c.logs_fetch_limit = fetch_limit_setting(s, "logs_fetch_limit");
  c.experiment_fetch_limit = fetch_limit_setting(s, "experiment_fetch_limit");
  c.dataset_fetch_limit = fetch_limit_setting(s, "dataset_fetch_limit");
  c.min_fetch_limit = static_cast<int>(s.get_int("min_fetch_limit", 25, 1, 10000));
  c.fetch_group_size = static_cast<int>(s.get_int("fetch_group_size", 25, 1, 1000));
  c.insert_batch_rows = static_cast<int>(s.get_int("insert_batch_rows", 1000, 1, 50000));
  c.insert_max_request_bytes = s.get_bytes("insert_max_request_bytes", 6u << 20, 1024, 500ull << 20);
  c.insert_request_headroom = s.get_double("insert_request_headroom", 0.75, 0.05, 1.0);
  c.copy_attachments = s.get_bool("copy_attachments", false);
  c.attachment_max_bytes = s.get_bytes("attachment_max_bytes", 52'428'800, 1, 2'000'000'000);
  c.memory_budget_bytes = s.get_bytes("memory_budget", 192u << 20, 16u << 20, std::uint64_t(1) << 40);
  c.state_min_free_bytes = s.get_bytes("state_min_free_bytes", 64u << 20, 0, std::uint64_t(1) << 50);

  c.max_concurrent_requests = static_cast<int>(s.get_int("max_concurrent_requests", 40, 1, 200));
  c.max_concurrent_streams = static_cast<int>(s.get_int("max_concurrent_streams", 4, 1, 64));
  c.max_slices_per_stream = static_cast<int>(s.get_int("max_slices_per_stream", 16, 1, 64));
  c.max_concurrent_projects = static_cast<int>(s.get_int("max_concurrent_projects", 2, 1, 50));
  c.max_concurrent_resources = static_cast<int>(s.get_int("max_concurrent_resources", 5, 1, 50));
  c.retry_attempts = static_cast<int>(s.get_int("retry_attempts", 5, 0, 20));
  c.retry_delay = s.get_duration("retry_delay", std::chrono::milliseconds(1000), std::chrono::milliseconds(0),
                                 std::chrono::hours(1));
  c.retry_after_max = s.get_duration("retry_after_max", std::chrono::milliseconds(60'000), std::chrono::milliseconds(0),
                                     std::chrono::hours(24));
  c.request_timeout = s.get_duration("request_timeout", std::chrono::milliseconds(120'000),
                                     std::chrono::milliseconds(100), std::chrono::hours(24));
  c.max_requests_per_s = s.get_double("max_requests_per_s", 0, 0, 1e9);
  c.max_bytes_per_s = s.get_bytes("max_bytes_per_s", 0, 0, ~0ull);

  c.acl_map_users = s.get_bool("acl_map_users", false);
  c.acl_auto_invite_users = s.get_bool("acl_auto_invite_users", false);
  c.group_map_users = s.get_bool("group_map_users", false);
  c.group_auto_invite_users = s.get_bool("group_auto_invite_users", false);
  if (c.acl_auto_invite_users && !c.acl_map_users)
    throw config_error("acl_auto_invite_users (from " + s.where("acl_auto_invite_users") +
                       ") requires acl_map_users to also be enabled");
  if (c.group_auto_invite_users && !c.group_map_users)
    throw config_error("group_auto_invite_users (from " + s.where("group_auto_invite_users") +
                       ") requires group_map_users to also be enabled");

  const std::string gzip = s.get_string("accept_gzip", "auto");
  if (auto g = transports::parse_gzip_policy(gzip)) c.accept_gzip = *g;
  else
    throw config_error("invalid accept_gzip from " + s.where("accept_gzip") + ": expected auto, on or off, got '" +
                       gzip + "'");
  c.ca_file = s.get_string("ca_file");
  check_ca_file(s, c.ca_file);
  c.insecure = s.get_bool("insecure", false);
  c.record_dir = s.get_string("record_dir");
  c.log_level = s.get_string("log_level", "info");
  check_choice(s, "log_level", c.log_level, {"trace", "debug", "info", "warn", "warning", "error", "critical", "off"});
  c.log_format = s.get_string("log_format", "text");
  check_choice(s, "log_format", c.log_format, {"text", "json"});
  c.report_path = s.get_string("report_path");
  c.plan_path = s.get_string("plan");
  c.phase = s.get_string("phase", "shard");
  check_choice(s, "phase", c.phase, {"shard", "resources"});
  std::transform(c.phase.begin(), c.phase.end(), c.phase.begin(), [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
  c.shard_count = static_cast<std::size_t>(s.get_int("shard_count", 1, 1, 10000));
  if (!c.plan_path.empty())
    if (auto shard = shard_from_settings(s)) {
      c.shard_index = shard->index;
      c.shard_count = shard->count;
    }
  c.metrics_addr = s.get_string("metrics_addr");
  if (!c.metrics_addr.empty()) {
    try {
      transports::parse_host_port(c.metrics_addr);
    } catch (const std::invalid_argument& e) {
      throw config_error("metrics_addr from " + s.where("metrics_addr") + ": " + e.what());
    }
  }
  c.metrics_linger = s.get_duration("metrics_linger", c.metrics_linger, std::chrono::milliseconds(0), std::chrono::hours(24));
  c.metrics_shard = s.get_string("metrics_shard");
  // A shard of a plan labels its series with its index unless --metrics-shard says otherwise.
  if (c.metrics_shard.empty() && c.shard_index) c.metrics_shard = std::to_string(*c.shard_index);
  return c;
}

}  // namespace ferry::pipelines
