#pragma once
// The typed configuration of a migration, read from layered settings (flag > env > .env > config file >
// default) with the reference tool's environment variable names, so a braintrust-migrate `.env` works
// unchanged. `migrate_settings_schema()` lists every key; `load_migrate_config` validates into the
// struct and throws engine::config_error (one line naming the key and where its value came from).

#include "engine/settings.hpp"
#include "transports/braintrust_client.hpp"
#include "transports/http_util.hpp"

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace ferry::pipelines {

struct endpoint_config {
  std::string url = "https://api.braintrust.dev";
  std::string api_key;  // secret: registered with the log redactor, never printed
};

enum class name_conflict_policy { adopt, abort, update };

struct migrate_config {
  endpoint_config source;
  endpoint_config dest;
  std::string state_dir = "./ferry-state";
  std::uint64_t state_min_free_bytes = 64u << 20;  // below this much free disk, commits stop cleanly

  // What to migrate.
  std::vector<std::string> resources;  // empty = all
  std::vector<std::string> projects;   // empty = all (exact names)
  std::vector<std::string> exclude;    // resource types or project names to leave out
  std::optional<std::string> created_after;   // canonical "YYYY-MM-DDTHH:MM:SS[.ffffff]Z", inclusive
  std::optional<std::string> created_before;  // exclusive
  name_conflict_policy on_name_conflict = name_conflict_policy::adopt;
  bool dry_run = false;
  /// --follow: after the bulk copy, one more catch-up round every `follow_interval` (resources
  /// re-listed, every stream resumed at its cursor) until a shutdown, or with `until_caught_up` (which
  /// implies follow) until a round in which no stream copied a row: the cut-over pass.
  bool follow = false;
  bool until_caught_up = false;
  std::chrono::milliseconds follow_interval{5000};

  // Event streams.
  // MIGRATION_EVENTS_FETCH_LIMIT / --events-fetch-limit (setting events_fetch_limit) sets all three
  // unless a kind's own setting comes from a source of the same or higher precedence.
  int logs_fetch_limit = 1000;         // BTQL LIMIT start value for project logs
  int experiment_fetch_limit = 1000;   // ... for experiment events
  int dataset_fetch_limit = 1000;      // ... for dataset events
  int min_fetch_limit = 25;            // adaptive page size never goes below this
  int fetch_group_size = 25;           // experiments/datasets grouped per BTQL query
  int insert_batch_rows = 1000;        // rows per /logs3 request (upper bound)
  std::uint64_t insert_max_request_bytes = 6u << 20;  // cap before /version is read
  double insert_request_headroom = 0.75;
  bool copy_attachments = false;
  std::uint64_t attachment_max_bytes = 52'428'800;
  /// Bytes of event rows held at once by all streams together (pages, queued and in-flight batches and
  /// their request bodies); each stream's batch byte cap is derived from its share (see
  /// streams::options_from_config), which is what keeps peak RSS flat whatever the row sizes.
  std::uint64_t memory_budget_bytes = 192u << 20;

  // Concurrency, retry and rate limits: their HTTP meaning is transports::side_config's (see
  // side_config_for below, the only place they are mapped).
  int max_concurrent_requests = 40;   // global request semaphore per side: bounds every request of it
  int max_concurrent_streams = 4;     // event streams copied at once
  /// Slices one stream may be split into and copied by in parallel (streams/slices.hpp); 1 = off.
  int max_slices_per_stream = 16;
  int min_slice_rows = 2000;  // not a setting: rows a slice holds at least (tests lower it)
  /// Not a setting: a source answering a one-row page quicker than this stays one slice (slices.hpp);
  /// 0 = always probe (tests of slicing on loopback).
  int slice_min_latency_ms = 20;
  int max_concurrent_projects = 2;
  int max_concurrent_resources = 5;
  int retry_attempts = 5;                              // retries after the first try (N + 1 attempts)
  std::chrono::milliseconds retry_delay{1000};
  std::chrono::milliseconds retry_after_max{60'000};   // a longer Retry-After is cut to this
  std::chrono::milliseconds request_timeout{120'000};  // the whole of one HTTP attempt
  double max_requests_per_s = 0;       // 0 = unlimited
  std::uint64_t max_bytes_per_s = 0;   // 0 = unlimited

  // Users and ACLs.
  bool acl_map_users = false;
  bool acl_auto_invite_users = false;
  bool group_map_users = false;
  bool group_auto_invite_users = false;

  // Transport.
  // Accept-Encoding: gzip towards both sides; auto = on for https, off for http to loopback/private hosts
  // (transports::accept_gzip_for), where inflating costs more CPU than the bytes it saves.
  transports::gzip_policy accept_gzip = transports::gzip_policy::automatic;
  std::string ca_file;
  bool insecure = false;
  std::string record_dir;  // --record: capture HTTP exchanges (redacted)

  // Plan and shards (pipelines/cluster.hpp): `ferry plan --out`, `migrate --plan [--phase | --shard]`,
  // `finalize --plan`, `status --plan`.
  std::string plan_path;                   // setting `plan`
  std::string phase = "shard";             // "shard" or "resources" (with plan_path)
  std::optional<std::size_t> shard_index;  // --shard I/N, JOB_COMPLETION_INDEX, SLURM_ARRAY_TASK_ID
  std::size_t shard_count = 1;             // --shard I/N, FERRY_SHARD_COUNT, SLURM_ARRAY_TASK_COUNT, plan --shards

  // Output.
  std::string log_level = "info";
  std::string log_format = "text";
  std::string report_path;  // default: <state_dir>/migration_report.json

  // Metrics (README "Metrics"): `ferry migrate` serves GET /metrics on metrics_addr (HOST:PORT; port 0
  // picks one, logged) while it runs, and metrics_linger longer; metrics_shard labels every series.
  std::string metrics_addr;
  std::chrono::milliseconds metrics_linger{0};
  std::string metrics_shard;
};

/// Every setting `ferry migrate` (and validate/verify/status) understands, with its environment names.
std::vector<engine::setting_binding> migrate_settings_schema();

/// Validates the layered settings into a config. Throws engine::config_error naming the key and source.
migrate_config load_migrate_config(const engine::settings& s);

enum class side_role { source, destination };

/// The one mapping from the config to a deployment's HTTP policy (URL, key, TLS, proxy from the
/// environment, gzip, timeout, retries, Retry-After cap, concurrency, rate limits, the --record observer):
/// every client of a side is built from what this returns (transports::braintrust_client).
transports::side_config side_config_for(const migrate_config& cfg, side_role which,
                                        transports::exchange_observer observer = {});

/// "2026-01-15" or ISO-8601 with or without zone/fraction => "2026-01-15T00:00:00Z" (UTC, canonical);
/// nullopt when malformed.
std::optional<std::string> canonical_timestamp(std::string_view text);

}  // namespace ferry::pipelines
