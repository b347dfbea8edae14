// ferry: CLI wiring only. Every command's behaviour lives in pipelines/ or emulator/; this file maps
// flags onto layered settings (flag > env > .env > config file > default) and calls them.
#include "engine/log.hpp"
#include "emulator/replay.hpp"
#include "emulator/seed.hpp"
#include "emulator/serve.hpp"
#include "engine/settings.hpp"
#include "engine/url.hpp"
#include "pipelines/cluster.hpp"
#include "pipelines/archive.hpp"
#include "pipelines/copy.hpp"
#include "pipelines/migrate.hpp"
#include "pipelines/migrate_config.hpp"
#include "pipelines/resources/http_api.hpp"
#include "pipelines/status_watch.hpp"
#include "pipelines/streams/entry.hpp"

#include <CLI/CLI.hpp>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace {

using ferry::engine::config_error;
using ferry::engine::setting_source;
using ferry::engine::settings;

constexpr int exit_ok = 0;
constexpr int exit_failed = 1;         // the command ran and something failed (or differed)
constexpr int exit_usage = 2;          // bad input: flags, config, environment

// A command-line flag that feeds one setting key.
struct flag_spec {
  std::string flag;  // "--dest-url"
  std::string key;   // "dest.url"
  std::string help;
  bool is_switch = false;  // present => "true"
};

// Flags shared by every command that talks to a source and a destination.
const std::vector<flag_spec> connection_flags = {
    {"--source-url", "source.url", "source API base URL [BT_SOURCE_URL]"},
    {"--dest-url", "dest.url", "destination API base URL [BT_DEST_URL]"},
    {"--state-dir,-s", "state_dir", "migration state directory (RocksDB) [MIGRATION_STATE_DIR]"},
    {"--ca-file", "ca_file", "PEM file of CAs to trust for HTTPS [MIGRATION_CA_FILE]"},
    {"--insecure", "insecure", "disable TLS certificate verification (warns) [MIGRATION_INSECURE]", true},
    {"--max-concurrent-requests", "max_concurrent_requests",
     "HTTP requests in flight per side, 1-200 [MIGRATION_MAX_CONCURRENT_REQUESTS]"},
    {"--request-timeout", "request_timeout",
     "total time of one HTTP attempt (connect, send, wait, read), e.g. 120s; each retry gets its own "
     "[MIGRATION_REQUEST_TIMEOUT]"},
};

const std::vector<flag_spec> migrate_flags = {
    {"--resources,-r", "resources", "comma list of resource types, or all [MIGRATION_RESOURCES]"},
    {"--projects,-p", "projects",
     "comma list of project names; a name with commas or outer spaces in double quotes (\"a, b\",c) "
     "[MIGRATION_PROJECTS]"},
    {"--exclude", "exclude", "comma list of resource types or project names to skip [MIGRATION_EXCLUDE]"},
    {"--created-after", "created_after", "only rows/objects created at or after this date [MIGRATION_CREATED_AFTER]"},
    {"--created-before", "created_before", "only rows/objects created before this date [MIGRATION_CREATED_BEFORE]"},
    {"--on-name-conflict", "on_name_conflict", "adopt | abort | update an existing destination object"},
    {"--dry-run,-n", "dry_run", "print the plan; write nothing to the destination", true},
    {"--follow", "follow",
     "after the bulk copy, copy new and updated rows every --follow-interval (resources re-listed each round) "
     "until SIGINT/SIGTERM (in-flight batches commit; exit 130) [MIGRATION_FOLLOW]",
     true},
    {"--follow-interval", "follow_interval", "pause between follow rounds, 100ms-24h, e.g. 5s [MIGRATION_FOLLOW_INTERVAL]"},
    {"--until-caught-up", "until_caught_up",
     "follow until one round copies no row in any stream (the cut-over pass; exit 0); implies --follow "
     "[MIGRATION_UNTIL_CAUGHT_UP]",
     true},
    {"--logs-fetch-limit", "logs_fetch_limit", "BTQL page size for project logs [MIGRATION_LOGS_FETCH_LIMIT]"},
    {"--events-fetch-limit", "events_fetch_limit",
     "BTQL page size for logs, experiment and dataset events unless a kind's own limit is set "
     "[MIGRATION_EVENTS_FETCH_LIMIT]"},
    {"--logs-insert-batch-size", "insert_batch_rows", "rows per /logs3 request [MIGRATION_LOGS_INSERT_BATCH_SIZE]"},
    {"--max-concurrent-streams", "max_concurrent_streams", "event streams copied at once"},
    {"--max-slices-per-stream", "max_slices_per_stream",
     "slices a large stream is copied by in parallel, 1-64, 1 = off [MIGRATION_MAX_SLICES_PER_STREAM]"},
    {"--max-requests-per-second", "max_requests_per_s", "request rate cap per side, 0 = none"},
    {"--max-bytes-per-second", "max_bytes_per_s", "byte rate cap per side, e.g. 50MB, 0 = none"},
    {"--copy-attachments", "copy_attachments", "copy attachment bytes to the destination", true},
    {"--record", "record_dir", "record every HTTP exchange (redacted) into this directory"},
    {"--report", "report_path", "path of migration_report.json (default: in the state dir)"},
    {"--acl-map-users", "acl_map_users", "map ACL users by email", true},
    {"--acl-auto-invite-users", "acl_auto_invite_users", "invite ACL users missing in the destination", true},
    {"--group-map-users", "group_map_users", "map group members by email", true},
    {"--group-auto-invite-users", "group_auto_invite_users", "invite group members missing in the destination", true},
};

// Observability of `ferry migrate` (README "Metrics").
const std::vector<flag_spec> metrics_flags = {
    {"--metrics-addr", "metrics_addr",
     "serve Prometheus metrics on HOST:PORT at /metrics while migrating; port 0 picks one (logged) "
     "[MIGRATION_METRICS_ADDR]"},
    {"--metrics-linger", "metrics_linger",
     "keep serving the final metrics this long after the run, e.g. 30s [MIGRATION_METRICS_LINGER]"},
    {"--metrics-shard", "metrics_shard", "add the label shard=VALUE to every metric [MIGRATION_METRICS_SHARD]"},
};

// Holds the parsed values of flag_specs until the settings are built.
struct flag_values {
  std::map<std::string, std::string> values;  // key -> value
  std::map<std::string, std::string> names;   // key -> "--flag"
  std::map<std::string, bool> switches;
};

void add_flags(CLI::App* cmd, const std::vector<flag_spec>& specs, flag_values& out) {
  for (const auto& f : specs) {
    const std::string long_name = f.flag.substr(0, f.flag.find(','));
    out.names[f.key] = long_name;
    if (f.is_switch) {
      cmd->add_flag_callback(
          f.flag, [&out, key = f.key] { out.values[key] = "true"; }, f.help);
    } else {
      cmd->add_option_function<std::string>(
          f.flag, [&out, key = f.key](const std::string& v) { out.values[key] = v; }, f.help);
    }
  }
}

struct global_options {
  std::string config_file;
  std::string env_file = ".env";
  std::string log_level;
  std::string log_format;
  bool show_config = false;
};

// Prints every setting with its effective value (its documented default when unset) and where it came
// from; secrets are never shown, and URL passwords are redacted like everything else printed.
void print_settings(const settings& s) {
  for (const auto& b : s.schema()) {
    const auto* e = s.find(b.key);
    std::string value = e ? e->value : b.default_text;
    if (b.secret && e) value = "[REDACTED]";
    char line[512];
    std::snprintf(line, sizeof line, "%-26s = %-32s (%s)\n", b.key.c_str(), value.c_str(),
                  e ? e->where.c_str() : "default");
    std::cout << line;
  }
  std::cout.flush();
}

// --project NAME (repeatable): names taken exactly, added to --projects' list with the list quoting.
void add_project_flags(const std::vector<std::string>& names, flag_values& flags) {
  if (names.empty()) return;
  std::string list;
  for (const auto& n : names) list += (list.empty() ? "" : ",") + ferry::engine::quote_list_item(n);
  auto& v = flags.values["projects"];
  flags.names["projects"] = v.empty() ? "--project" : "--projects/--project";
  v = v.empty() ? list : v + "," + list;
}

// The command line as a shell would take it back: arguments with anything but [A-Za-z0-9_./:=@%+,-]
// single-quoted.
std::string shell_command(int argc, char** argv) {
  std::string out;
  for (int i = 0; i < argc; ++i) {
    std::string a = argv[i];
    const bool plain = !a.empty() && a.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                                         "0123456789_./:=@%+,-") == std::string::npos;
    if (!plain) {
      std::string q = "'";
      for (char c : a) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
      a = q + "'";
    }
    out += (i ? " " : "") + a;
  }
  return out;
}

// Every line a command prints to stdout/stderr goes through the redactor (registered secrets, Bearer
// tokens, URL passwords, URL signatures), whoever wrote it.
struct redacted_standard_streams {
  ferry::engine::redacting_streambuf out{std::cout.rdbuf()};
  ferry::engine::redacting_streambuf err{std::cerr.rdbuf()};
  std::streambuf* old_out = std::cout.rdbuf(&out);
  std::streambuf* old_err = std::cerr.rdbuf(&err);
  ~redacted_standard_streams() {
    std::cout.flush();
    std::cerr.flush();
    std::cout.rdbuf(old_out);
    std::cerr.rdbuf(old_err);
  }
};

// Proxy URLs come from the environment (transports read them); their passwords are secrets too.
void register_proxy_passwords() {
  for (const char* name : {"HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"})
    if (const char* v = std::getenv(name)) ferry::engine::register_url_password(v);
}

// Builds the layered settings for a command: defaults < config file < .env < environment < flags.
settings build_settings(const global_options& g, const flag_values& flags) {
  settings s(ferry::pipelines::migrate_settings_schema());
  if (!g.config_file.empty()) s.load_file(g.config_file);
  s.load_dotenv(g.env_file);
  s.load_env();
  for (const auto& [key, value] : flags.values) s.set(key, value, setting_source::flag, flags.names.at(key));
  if (!g.log_level.empty()) s.set("log_level", g.log_level, setting_source::flag, "--log-level");
  if (!g.log_format.empty()) s.set("log_format", g.log_format, setting_source::flag, "--log-format");
  return s;
}

void init_logs(const ferry::pipelines::migrate_config& c) {
  ferry::engine::log_config lc;
  lc.level = c.log_level;
  lc.format = ferry::engine::parse_log_format(c.log_format);
  ferry::engine::init_logging(lc);
}


}  // namespace

int main(int argc, char** argv) {
#if defined(__GLIBC__)
  // Pages and batches are MB-sized buffers freed at the rate they are allocated. glibc raises its mmap
  // threshold to the largest freed block (up to 32 MiB), after which such buffers come from the heap
  // and the freed space is kept: RSS then tracks the worst moment, not what is live. A fixed threshold
  // bounds that; its value trades CPU for RSS (ferry migrate into bench_sink, 1M log rows of 1.3 KB, and
  // 4 streams with 100 KB-1.4 MB outliers, 772 MB; /usr/bin/time):
  //   256 KiB: every ~1.3 MB page is mmapped, zero-filled by page faults, unmapped: 6.3-7.2 CPU-us/event
  //            (half of it sys), outliers 164-171 MB peak;
  //   2 MiB:   ordinary pages and batches reuse heap space, outlier pages are still mapped: 4.5-5.0
  //            CPU-us/event, outliers 221-228 MB peak;
  //   32 MiB:  4.2-5.1 CPU-us/event, but 175-189 MB peak already with 250 MB of outliers.
  mallopt(M_MMAP_THRESHOLD, 2 << 20);
  mallopt(M_TRIM_THRESHOLD, 32 << 20);
#endif
  redacted_standard_streams redacted;
  register_proxy_passwords();
  CLI::App app{
      "ferry: moves a whole Braintrust organization (resources and event streams) from one API deployment to "
      "another, fast, resumably, without losing or duplicating a row.\n"
      "Configuration: flags > environment > .env > --config file > defaults; API keys come from BT_SOURCE_API_KEY "
      "and BT_DEST_API_KEY (environment, .env or config file, never flags)."};
  app.require_subcommand(1);
  app.set_version_flag("--version", "ferry 0.1.0");
  global_options g;
  app.add_option("--config,-c", g.config_file, "YAML or JSON config file (keys as in configs/migrate.example.yaml)")
      ->check(CLI::ExistingFile);
  app.add_option("--env-file", g.env_file, "dotenv file to read (missing is fine)")->capture_default_str();
  app.add_option("--log-level,-l", g.log_level, "trace, debug, info, warn, error [LOG_LEVEL]");
  app.add_option("--log-format,-f", g.log_format, "text or json [LOG_FORMAT]");
  app.add_flag("--show-config", g.show_config,
               "print the effective settings and where each came from (secrets redacted), then exit");

  flag_values flags;
  auto* migrate = app.add_subcommand("migrate", "migrate resources and event streams from source to destination");
  add_flags(migrate, connection_flags, flags);
  add_flags(migrate, migrate_flags, flags);
  add_flags(migrate, metrics_flags, flags);
  std::vector<std::string> project_names;
  migrate->add_option("--project", project_names,
                      "one project name, taken exactly (commas and outer spaces kept); repeatable, adds to --projects")
      ->allow_extra_args(false);
  migrate->footer(
      "Catch-up and cut-over: a re-run with the same state dir resumes every stream at its cursor and copies rows\n"
      "added or updated since. 1. ferry migrate (bulk, source live)  2. ferry migrate --follow (one catch-up round\n"
      "every --follow-interval; SIGINT/SIGTERM commit and exit 130)  3. stop the source's writers  4. ferry migrate\n"
      "--until-caught-up (rounds until one copies no row; exit 0)  5. ferry verify.");

  auto* validate = app.add_subcommand(
      "validate", "check connectivity, auth and permissions on both sides, and destination retention hazards");
  add_flags(validate, connection_flags, flags);

  auto* serve = app.add_subcommand(
      "serve",
      "run the Braintrust-compatible API emulator; API keys it accepts come from FERRY_SERVE_API_KEYS "
      "(comma list of KEY or KEY:ORG_NAME; default one key 'ferry-emulator-key' for org 'emu-org')");
  ferry::emulator::serve_options serve_opts;
  std::uint64_t serve_fault_seed = 0, serve_id_seed = 0;
  serve->add_option("--address", serve_opts.address, "address to listen on")->capture_default_str();
  serve->add_option("--port", serve_opts.port, "port to listen on; 0 picks a free one (printed)")->capture_default_str();
  serve->add_option("--data", serve_opts.data_dir, "RocksDB data directory (default: in memory)");
  serve->add_option("--fault", serve_opts.fault_specs,
                    "inject a fault, e.g. 'path=/btql,kind=status,status=429,rate=0.1,retry_after=1' "
                    "(repeatable; see emulator/README.md)");
  serve->add_option("--faults-file", serve_opts.faults_file, "YAML/JSON file with a `faults:` list")
      ->check(CLI::ExistingFile);
  serve->add_option("--logs3-max-bytes", serve_opts.logs3_payload_max_bytes,
                    "logs3_payload_max_bytes advertised by GET /version")->capture_default_str();
  serve->add_option("--threads", serve_opts.threads, "server threads")->capture_default_str();
  auto* fault_seed_opt = serve->add_option("--fault-seed", serve_fault_seed, "seed of the fault injector's RNG");
  auto* id_seed_opt =
      serve->add_option("--id-seed", serve_id_seed, "make generated ids and timestamps deterministic from this seed");
  auto* seed = app.add_subcommand(
      "seed",
      "fill an emulator (or any Braintrust API) with a realistic, deterministic organization through its HTTP API; "
      "the key comes from FERRY_SEED_API_KEY, else BT_SOURCE_API_KEY (environment or .env)");
  ferry::emulator::seed_options seed_opts;
  seed->add_option("--url", seed_opts.url, "API base URL to fill (default: BT_SOURCE_URL)");
  seed->add_option("--projects", seed_opts.projects, "projects to create")->capture_default_str();
  seed->add_option("--events", seed_opts.events_per_project, "project log rows per project")->capture_default_str();
  seed->add_option("--experiments", seed_opts.experiments_per_project, "experiments per project")
      ->capture_default_str();
  seed->add_option("--datasets", seed_opts.datasets_per_project, "datasets per project")->capture_default_str();
  seed->add_option("--experiment-events", seed_opts.events_per_experiment, "rows per experiment")
      ->capture_default_str();
  seed->add_option("--dataset-events", seed_opts.events_per_dataset, "rows per dataset")->capture_default_str();
  seed->add_option("--seed", seed_opts.seed, "generator seed: same seed, same organization")->capture_default_str();
  seed->add_option("--attachment-ratio", seed_opts.attachment_ratio, "share of log rows with an attachment")
      ->capture_default_str();
  seed->add_option("--large-ratio", seed_opts.large_payload_ratio, "share of rows of 100 KB+")->capture_default_str();
  seed->add_option("--payload-min", seed_opts.payload_min, "fewest text bytes per payload field of an ordinary row")
      ->capture_default_str();
  seed->add_option("--payload-max", seed_opts.payload_max, "most text bytes per payload field (700/1900: ~2 KB rows)")
      ->capture_default_str();
  seed->add_option("--batch-rows", seed_opts.batch_rows, "rows per /logs3 request")->capture_default_str();
  seed->add_option("--ca-file", seed_opts.ca_file, "PEM file of trusted CAs for an https --url (default: system CAs)");
  seed->add_flag("--insecure", seed_opts.insecure, "skip TLS certificate verification (warns; prefer --ca-file)");
  auto* verify = app.add_subcommand("verify", "compare source and destination: every stream row by row (by object and id, canonical hashes), every resource type (roles, groups, ACLs, env vars, AI secret metadata, projects and their objects...) field by field through the id map (else by name) with every destination reference checked, copied attachments; exit 1 on any difference, 130 when interrupted (never equal)");
  add_flags(verify, connection_flags, flags);
  auto* status = app.add_subcommand("status", "show each stream's cursor, counters and last error from a state dir");
  add_flags(status, {{"--state-dir,-s", "state_dir", "migration state directory [MIGRATION_STATE_DIR]"}}, flags);
  bool status_json = false;
  status->add_flag("--json", status_json, "one JSON object per stream instead of text");
  // Plans and shards (pipelines/cluster.hpp; README "Running on a cluster"): ferry plan, migrate --plan
  // [--phase resources | --shard I/N], finalize, status --plan.
  const std::string cluster_exit_codes =
      "Exit codes: 0 done; 1 retryable failure (run the same command again: it resumes); 2 configuration error\n"
      "(bad flags, config, plan file, options differing from the plan's: do not retry; Kubernetes podFailurePolicy\n"
      "FailIndex on exit code 2); 75 this shard/phase is running in another process (retry later); 130 interrupted.";
  const std::vector<flag_spec> plan_run_flags = {
      {"--plan", "plan", "run as the plan file says: --phase resources once, then each shard [FERRY_PLAN]"},
      {"--phase", "phase", "with --plan: resources (creates objects, copies no stream; once, before the shards) or "
                           "shard (default) [FERRY_PHASE]"},
      {"--shard", "shard",
       "with --plan: this shard as I/N, 0-based [FERRY_SHARD; else JOB_COMPLETION_INDEX + FERRY_SHARD_COUNT, or "
       "SLURM_ARRAY_TASK_ID + SLURM_ARRAY_TASK_COUNT]"},
  };
  add_flags(migrate, plan_run_flags, flags);
  migrate->footer(migrate->get_footer() + "\n\nWith --plan: " + cluster_exit_codes);
  auto* plan = app.add_subcommand(
      "plan", "read both sides (GET/BTQL only) and write a plan file: work units (org and project resources, every "
              "event stream with its rows and bytes counted), options fingerprint, shard assignment, hash");
  add_flags(plan, connection_flags, flags);
  add_flags(plan, migrate_flags, flags);
  plan->add_option("--project", project_names, "one project name, taken exactly; repeatable, adds to --projects")
      ->allow_extra_args(false);
  add_flags(plan, {{"--out,-o", "plan", "plan file to write (default ferry-plan.json) [FERRY_PLAN]"},
                   {"--shards", "shard_count", "shards to assign the stream units to, by size [FERRY_SHARD_COUNT]"}},
            flags);
  plan->footer(cluster_exit_codes);
  auto* finalize = app.add_subcommand(
      "finalize", "after every shard of a plan finished: ACLs and automations (left out until now, so automations "
                  "never act on copied rows), then verify the whole organization");
  add_flags(finalize, connection_flags, flags);
  add_flags(finalize, migrate_flags, flags);
  finalize->add_option("--project", project_names, "one project name, taken exactly; repeatable, adds to --projects")
      ->allow_extra_args(false);
  add_flags(finalize, {{"--plan", "plan", "the plan file the shards ran [FERRY_PLAN]"}}, flags);
  finalize->footer(cluster_exit_codes);
  add_flags(status, {{"--plan", "plan", "every phase and shard of this plan, under --state-dir [FERRY_PLAN]"}}, flags);

  bool status_watch = false;
  double status_interval_s = 2;
  status->add_flag("--watch", status_watch,
                   "show the state again every --interval (redrawn in place on a TTY, lines otherwise) until SIGINT");
  status->add_option("--interval", status_interval_s, "seconds between two reads with --watch")
      ->capture_default_str()
      ->check(CLI::Range(0.1, 3600.0));
  auto* replay = app.add_subcommand(
      "replay",
      "serve a recording made with `migrate --record DIR` as a source API (requests matched by method, path, query "
      "and normalised body; identical requests answered in recorded order)");
  ferry::emulator::replay_options replay_opts;
  std::uint64_t replay_fault_seed = 0;
  replay->add_option("dir", replay_opts.dir, "the recording directory")->required()->check(CLI::ExistingDirectory);
  replay->add_option("--address", replay_opts.address, "address to listen on")->capture_default_str();
  replay->add_option("--port", replay_opts.port, "port to listen on; 0 picks a free one (printed)")
      ->capture_default_str();
  replay->add_flag("--loop", replay_opts.loop, "start a request's answers again from the first once all were served");
  replay->add_option("--speed", replay_opts.speed,
                     "replay recorded durations as latency divided by X (0 = as fast as possible)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  replay->add_option("--side", replay_opts.side, "which side of the recording to serve (source or dest)")
      ->capture_default_str();
  replay->add_option("--fault", replay_opts.fault_specs, "inject an emulator fault on top (repeatable; as for serve)");
  replay->add_option("--faults-file", replay_opts.faults_file, "YAML/JSON file with a `faults:` list");
  auto* replay_fault_seed_opt = replay->add_option("--fault-seed", replay_fault_seed, "seed of the fault injector");
  replay->add_option("--threads", replay_opts.threads, "server threads")->capture_default_str();

  // Org archives: `export --to DIR` (source side) and `import --from DIR` (destination side).
  ferry::pipelines::archive_options archive_opts;
  double archive_progress_seconds = 5;
  auto* export_cmd = app.add_subcommand(
      "export", "write the source organization (resources + every stream + the attachments rows reference) to a "
                "portable archive directory: manifest with sha256 checksums, resources as JSON, streams as zstd "
                "JSONL chunks, attachment bytes; resumable");
  add_flags(export_cmd, connection_flags, flags);
  add_flags(export_cmd, migrate_flags, flags);
  export_cmd->add_option("--to", archive_opts.dir, "archive directory to write")->required();
  export_cmd->add_option("--chunk-rows", archive_opts.chunk_rows, "rows per stream chunk")->capture_default_str();
  auto* import_cmd = app.add_subcommand(
      "import", "migrate an archive written by `ferry export` into the destination (checksums checked first; "
                "resumable from the state dir; re-import is idempotent)");
  add_flags(import_cmd, connection_flags, flags);
  add_flags(import_cmd, migrate_flags, flags);
  import_cmd->add_option("--from", archive_opts.dir, "archive directory to read")
      ->required()
      ->check(CLI::ExistingDirectory);
  for (auto* cmd : {export_cmd, import_cmd}) {
    add_flags(cmd, metrics_flags, flags);
    cmd->add_option("--progress-interval", archive_progress_seconds, "seconds between progress log lines")
        ->check(CLI::PositiveNumber)
        ->capture_default_str();
  }
  verify->add_option("--archive", archive_opts.dir,
                     "compare this archive with the destination instead: streams row by row, attachment bytes, "
                     "resources field by field, through the id maps of the state dir (an import's)")
      ->check(CLI::ExistingDirectory);
  auto run_archive = [&]() {
    add_project_flags(project_names, flags);
    auto s = build_settings(g, flags);
    auto cfg = ferry::pipelines::load_migrate_config(s);
    init_logs(cfg);
    ferry::pipelines::run_options ro;
    ro.resume_command = shell_command(argc, argv);
    ro.progress_interval = std::chrono::milliseconds(static_cast<long>(archive_progress_seconds * 1000));
    if (export_cmd->parsed()) return ferry::pipelines::run_export(cfg, archive_opts, ro);
    if (import_cmd->parsed()) return ferry::pipelines::run_import(cfg, archive_opts, ro);
    return ferry::pipelines::run_verify_archive(cfg, archive_opts, ro);
  };
  // ferry copy (issue 18): rows between connectors (jsonl, sqlite, postgresql), resumable from its own state dir.
  ferry::pipelines::copy_options copy_opts;
  auto* copy_cmd = app.add_subcommand(
      "copy", "copy rows from a source URI to a sink URI (jsonl:///dir, sqlite:///file.db?table=T, "
              "postgresql://user@host:port/db?table=T[&key=COL], braintrust://HOST/PROJECT/logs|experiment/NAME|"
              "dataset/NAME; source only: redis://host:port/db?match=P), cursor "
              "committed per acknowledged batch; "
              "a re-run with the same --state-dir resumes");
  copy_cmd->add_option("--from", copy_opts.from, "source URI")->required();
  copy_cmd->add_option("--to", copy_opts.to, "sink URI")->required();
  copy_cmd->add_option("--transform", copy_opts.transform_file, "YAML transform file (rename, drop, cast, move_prefix, "
                                                                "filter, source_id, set)");
  copy_cmd->add_option("--state-dir,-s", copy_opts.state_dir, "copy state directory (RocksDB)")->capture_default_str();
  copy_cmd->add_option("--batch-rows", copy_opts.batch_rows, "rows per page and per sink batch")
      ->capture_default_str()
      ->check(CLI::Range(1, 100000));
  copy_cmd->add_flag("--dry-run", copy_opts.dry_run,
                     "print the plan and, SQLite -> PostgreSQL, the converted schema's DDL; write nothing");
  copy_cmd->add_flag("--allow-lossy", copy_opts.allow_lossy, "accept the lossy schema conversions --dry-run lists");
  copy_cmd->add_flag("--rollback", copy_opts.rollback,
                     "undo this copy (same --from/--to/--state-dir): drop the sink table it created, remove its state");
  copy_cmd->add_flag("--verify", copy_opts.verify,
                     "after the copy, read both sides again and compare them row by row (one DIFF line per "
                     "difference, exit 1 when any)");
  copy_cmd->add_option("--metrics-addr", copy_opts.metrics_addr,
                       "serve Prometheus metrics on HOST:PORT while the copy runs (port 0: a free one, logged)");
  double copy_metrics_linger_s = 0, copy_progress_s = 5;
  copy_cmd->add_option("--metrics-linger", copy_metrics_linger_s, "seconds to keep serving the final metrics after the copy")
      ->check(CLI::Range(0.0, 86400.0));
  copy_cmd->add_option("--progress-interval", copy_progress_s, "seconds between progress lines (0: after every batch)")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 86400.0));

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // CLI11 has its own exit codes (105 for a failed check...); every bad flag or argument is exit 2 here.
    const int rc = app.exit(e);
    return rc == 0 ? exit_ok : exit_usage;
  }

  try {
    if (export_cmd->parsed() || import_cmd->parsed() || (verify->parsed() && !archive_opts.dir.empty())) return run_archive();
    if (migrate->parsed() || validate->parsed() || verify->parsed() || status->parsed() || plan->parsed() ||
        finalize->parsed()) {
      add_project_flags(project_names, flags);
      auto s = build_settings(g, flags);
      auto cfg = ferry::pipelines::load_migrate_config(s);
      if (g.show_config) {
        print_settings(s);
        return exit_ok;
      }
      init_logs(cfg);
      if (migrate->parsed()) {
        ferry::pipelines::run_options ro;
        ro.resume_command = shell_command(argc, argv);
        return ferry::pipelines::run_migrate(cfg, ro);
      }
      if (plan->parsed() || finalize->parsed()) {
        ferry::pipelines::run_options ro;
        ro.resume_command = shell_command(argc, argv);
        return plan->parsed() ? ferry::pipelines::run_plan(cfg, ro) : ferry::pipelines::run_finalize(cfg, ro);
      }
      if (status->parsed() && !cfg.plan_path.empty())
        return ferry::pipelines::run_plan_status(cfg, status_json, std::cout, std::cerr);
      if (validate->parsed()) return ferry::pipelines::resources::run_validate(cfg, std::cout);
      if (verify->parsed()) return ferry::pipelines::run_verify(cfg);
      if (status_watch) {
        ferry::pipelines::status_watch_options wo;
        wo.interval = std::chrono::milliseconds(static_cast<std::int64_t>(status_interval_s * 1000));
        return ferry::pipelines::run_status_watch(cfg.state_dir, wo, std::cout, std::cerr);
      }
      return ferry::pipelines::streams::run_status(cfg.state_dir, status_json, std::cout, std::cerr);
    }
    if (copy_cmd->parsed()) {
      // The settings give braintrust:// sides their keys (BT_SOURCE_API_KEY, BT_DEST_API_KEY) and HTTP policy.
      const auto copy_cfg = ferry::pipelines::load_migrate_config(build_settings(g, flags));
      init_logs(copy_cfg);
      copy_opts.config = &copy_cfg;
      copy_opts.metrics_linger = std::chrono::milliseconds(static_cast<std::int64_t>(copy_metrics_linger_s * 1000));
      copy_opts.progress_interval = std::chrono::milliseconds(static_cast<std::int64_t>(copy_progress_s * 1000));
      return ferry::pipelines::run_copy(copy_opts, std::cout);
    }
    if (serve->parsed()) {
      if (const char* keys = std::getenv("FERRY_SERVE_API_KEYS")) {
        std::string list = keys, item;
        for (std::size_t start = 0; start <= list.size();) {
          const std::size_t comma = std::min(list.find(',', start), list.size());
          item = list.substr(start, comma - start);
          if (!item.empty()) serve_opts.api_keys.push_back(item);
          start = comma + 1;
        }
      }
      if (*fault_seed_opt) serve_opts.fault_seed = serve_fault_seed;
      if (*id_seed_opt) serve_opts.id_seed = serve_id_seed;
      return ferry::emulator::run_serve(serve_opts);
    }
    if (seed->parsed()) {
      // The key and default URL come from the same layered sources as migrate (env > .env > config file).
      auto s = build_settings(g, flags);
      settings seed_keys({{"seed.api_key", {"FERRY_SEED_API_KEY"}, true, "key of the org to fill"}});
      seed_keys.load_dotenv(g.env_file);
      seed_keys.load_env();
      seed_opts.api_key = seed_keys.get_string("seed.api_key", s.get_string("source.api_key"));
      if (seed_opts.url.empty()) seed_opts.url = s.get_string("source.url");
      if (seed_opts.ca_file.empty()) seed_opts.ca_file = s.get_string("ca_file");  // MIGRATION_CA_FILE, SSL_CERT_FILE
      if (!seed_opts.insecure) seed_opts.insecure = s.get_bool("insecure", false);
      if (seed_opts.url.empty())
        throw config_error("seed: no URL to fill: pass --url or set BT_SOURCE_URL");
      if (seed_opts.api_key.empty())
        throw config_error("seed: no API key: set FERRY_SEED_API_KEY or BT_SOURCE_API_KEY (environment or .env)");
      return ferry::emulator::run_seed(seed_opts);
    }
    if (replay->parsed()) {
      if (*replay_fault_seed_opt) replay_opts.fault_seed = replay_fault_seed;
      return ferry::emulator::run_replay(replay_opts);
    }
  } catch (const config_error& e) {
    std::cerr << "ferry: error: " << e.what() << std::endl;
    return exit_usage;
  } catch (const std::exception& e) {
    std::cerr << "ferry: error: " << e.what() << std::endl;
    return exit_failed;
  }
  return exit_ok;
}
