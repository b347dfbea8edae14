// `ferry plan`, `ferry migrate --plan`, `ferry finalize`, `ferry status --plan` (pipelines/cluster.hpp).
#include "cluster_run.hpp"

#include "dry_run.hpp"
#include "plan_file.hpp"
#include "reports.hpp"

#include "pipelines/cluster.hpp"
#include "pipelines/resources/api.hpp"
#include "pipelines/streams/checkpoint_store.hpp"

#include "engine/json_parse.hpp"
#include "engine/log.hpp"
#include "engine/runtime.hpp"
#include "engine/settings.hpp"
#include "stores/state_store.hpp"

#include <boost/json.hpp>

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <thread>
#include <array>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <set>
#include <sstream>

namespace ferry::pipelines {

namespace asio = boost::asio;
namespace json = boost::json;
namespace fs = std::filesystem;

namespace {

std::ostream& out_of(const run_options& ro) { return ro.out ? *ro.out : std::cout; }
std::ostream& err_of(const run_options& ro) { return ro.err ? *ro.err : std::cerr; }

/// One process per role: an flock on <root>/<role>.lock, held for the object's lifetime (the kernel
/// releases it when the process dies, whatever the signal).
class role_lock {
 public:
  /// nullopt when another process holds it (`holder`: what it wrote, "pid N"); throws when the lock
  /// file cannot be opened.
  static std::optional<role_lock> try_acquire(const fs::path& p, std::string& holder) {
    const int fd = ::open(p.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) throw std::runtime_error("cannot open lock file " + p.string() + ": " + std::strerror(errno));
    // A few tries: `status --plan` probes with a shared lock for microseconds (holder_of), which must not
    // read as another process running this role.
    int rc = -1, e = 0;
    for (int attempt = 0; attempt < 5; ++attempt) {
      if (attempt > 0) std::this_thread::sleep_for(std::chrono::milliseconds(20));
      rc = ::flock(fd, LOCK_EX | LOCK_NB);
      e = errno;
      if (rc == 0 || e != EWOULDBLOCK) break;
    }
    if (rc != 0) {
      char buf[128] = {};
      const auto n = ::pread(fd, buf, sizeof buf - 1, 0);
      holder = n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : std::string();
      while (!holder.empty() && (holder.back() == '\n' || holder.back() == ' ')) holder.pop_back();
      ::close(fd);
      if (e == EWOULDBLOCK) return std::nullopt;
      throw std::runtime_error("cannot lock " + p.string() + ": " + std::strerror(e));
    }
    // The pid only names the holder in a refusal; a failed write leaves the lock as good.
    const std::string me = "pid " + std::to_string(::getpid()) + "\n";
    if (::ftruncate(fd, 0) == 0) {
      const auto written = ::pwrite(fd, me.data(), me.size(), 0);
      (void)written;
    }
    return role_lock(fd);
  }
  /// Who holds the lock at `p` now ("pid N"), or nullopt when nobody does. Opens read-only and creates
  /// nothing (status writes nothing); a shared lock conflicts only with a holder's exclusive one.
  static std::optional<std::string> holder_of(const fs::path& p) {
    const int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return std::nullopt;
    std::optional<std::string> who;
    if (::flock(fd, LOCK_SH | LOCK_NB) != 0) {
      char buf[128] = {};
      const auto n = ::pread(fd, buf, sizeof buf - 1, 0);
      who = n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : std::string("unknown pid");
      while (!who->empty() && (who->back() == '\n' || who->back() == ' ')) who->pop_back();
    }
    ::close(fd);  // also releases the shared lock when it was taken
    return who;
  }
  role_lock(role_lock&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  role_lock& operator=(role_lock&&) = delete;
  ~role_lock() {
    if (fd_ >= 0) ::close(fd_);
  }

 private:
  explicit role_lock(int fd) : fd_(fd) {}
  int fd_ = -1;
};

/// A destination that answers reads and refuses every write: a shard finds the objects the resources
/// phase made, by name, and never makes one (N shards running the same DAG cannot create duplicates).
class create_nothing_api : public resources::resource_api {
 public:
  explicit create_nothing_api(std::unique_ptr<resources::resource_api> inner) : inner_(std::move(inner)) {}
  asio::awaitable<resources::api_reply> call(std::string method, std::string target, std::string body) override {
    if (method == "GET") co_return co_await inner_->call(std::move(method), std::move(target), std::move(body));
    resources::api_reply r;
    r.outcome = engine::io_outcome::fatal;
    r.error = "not in the destination, and a shard creates nothing: the resources phase (ferry migrate --plan FILE "
              "--phase resources) must finish first; this shard then resumes when run again";
    co_return r;
  }
  std::string describe() const override { return inner_->describe(); }

 private:
  std::unique_ptr<resources::resource_api> inner_;
};

/// The plan of cfg.plan_path, checked against this run's options; throws engine::config_error.
plan_doc checked_plan(const migrate_config& cfg) {
  if (cfg.plan_path.empty()) throw engine::config_error("no plan file: pass --plan FILE (made by `ferry plan --out FILE`)");
  auto plan = load_plan(cfg.plan_path);
  auto diffs = option_differences(plan, cfg);
  if (!diffs.empty()) {
    std::string all;
    for (const auto& d : diffs) all += (all.empty() ? "" : "; ") + d;
    throw engine::config_error("plan file " + cfg.plan_path + " was made with other options: " + all +
                               ": run with the plan's options or make a new plan");
  }
  return plan;
}

/// The config of one role: its own state dir under the plan's root, its report there; ACLs and
/// automations left to finalize; a shard adopts (it never updates or aborts on a name it finds).
migrate_config role_config(const migrate_config& cfg, const plan_doc& plan, const std::string& role) {
  migrate_config r = cfg;
  r.state_dir = (plan_state_root(cfg, plan) / role).string();
  r.report_path.clear();
  if (!cfg.record_dir.empty()) r.record_dir = (fs::path(cfg.record_dir) / role).string();
  if (role != "finalize")
    for (const char* t : {"acls", "project_automations"})
      if (std::find(r.exclude.begin(), r.exclude.end(), t) == r.exclude.end()) r.exclude.emplace_back(t);
  if (role.rfind("shard-", 0) == 0) r.on_name_conflict = name_conflict_policy::adopt;
  if (role.rfind("shard-", 0) != 0) r.follow = r.until_caught_up = false;  // phases run once
  return r;
}

/// Records how a role's last run ended (<root>/<role>.result.json) for `status --plan`.
void record_result(const fs::path& root, const std::string& role, int rc) {
  write_json(root / (role + ".result.json"), json::object{{"role", role}, {"exit_code", rc}});
}

/// Runs `body` as `role` of the plan: the plan root created (0700), the role's lock held.
template <class Body>
int as_role(const migrate_config& cfg, const plan_doc& plan, const std::string& role, const std::string& command,
            std::ostream& err, Body body) {
  const auto root = plan_state_root(cfg, plan);
  std::error_code ec;
  const bool made_state_dir = !fs::exists(cfg.state_dir, ec);
  fs::create_directories(root, ec);
  if (ec) {
    err << "ferry " << command << ": cannot create " << root.string() << ": " << ec.message() << '\n';
    return exit_config;
  }
  // The state names the org's objects: what Ferry creates is 0700 (an existing state dir, e.g. a volume's
  // mount point, is left as it is; the role's state dir guard checks its own parent, the plan root).
  if (made_state_dir) fs::permissions(cfg.state_dir, fs::perms::owner_all, fs::perm_options::replace, ec);
  fs::permissions(root, fs::perms::owner_all, fs::perm_options::replace, ec);
  std::string holder;
  auto lock = role_lock::try_acquire(root / (role + ".lock"), holder);
  if (!lock) {
    const std::string what = role.rfind("shard-", 0) == 0
                                 ? "shard " + role.substr(6) + "/" + std::to_string(plan.shards)
                                 : "the " + role + " phase";
    err << "ferry " << command << ": " << what << " of plan " << plan.hash.substr(0, 16)
        << " is already running in another process (" << (holder.empty() ? "unknown pid" : holder) << ", lock "
        << (root / (role + ".lock")).string() << "); not starting it twice\n";
    return exit_busy;
  }
  const int rc = body();
  record_result(root, role, rc);
  return rc;
}

}  // namespace

int run_planned(const migrate_config& cfg, const run_options& ro, migration_fn migrate) {
  auto& err = err_of(ro);
  plan_doc plan;
  std::string role;
  try {
    plan = checked_plan(cfg);
    if (cfg.dry_run) throw engine::config_error("--dry-run cannot be combined with --plan (`ferry plan` is the dry run)");
    if (cfg.phase == "resources") {
      role = "resources";
    } else {
      if (!cfg.shard_index && plan.shards != 1)
        throw engine::config_error("--plan needs --shard I/N (or JOB_COMPLETION_INDEX + FERRY_SHARD_COUNT, or a Slurm "
                                   "array), or --phase resources");
      if (cfg.shard_index && cfg.shard_count != plan.shards)
        throw engine::config_error("shard " + std::to_string(*cfg.shard_index) + "/" + std::to_string(cfg.shard_count) +
                                   ": the plan has " + std::to_string(plan.shards) + " shard(s)");
      role = shard_role(cfg.shard_index.value_or(0));
    }
  } catch (const engine::config_error& e) {
    err << "ferry migrate: " << e.what() << '\n';
    return exit_config;
  }
  return as_role(cfg, plan, role, "migrate", err, [&] {
    const auto rcfg = role_config(cfg, plan, role);
    auto c = open_run_context(rcfg, ro, "migrate", state_use::guarded);
    if (!c) return exit_config;
    shard_units units = role == "resources" ? shard_units() : shard_units(plan, cfg.shard_index.value_or(0));
    c->units = &units;
    if (role != "resources") c->dst.res = std::make_unique<create_nothing_api>(std::move(c->dst.res));
    std::uint64_t rows = 0;
    for (const auto& u : units.units()) rows += u.rows;
    engine::logger("pipeline")->info("plan={} role={} stream_units={} estimated_rows={} state_dir={}", plan.hash.substr(0, 16),
                                     role, units.units().size(), rows, rcfg.state_dir);
    return migrate(*c);
  });
}

namespace {

/// One role's streams as recorded in its state dir (read-only, beside a running process); empty when
/// it has no state yet.
std::map<std::string, streams::stream_state> recorded_streams(const fs::path& dir) {
  std::map<std::string, streams::stream_state> out;
  if (!fs::exists(dir / "CURRENT")) return out;
  auto st = stores::state_store::open_read_only(dir.string());
  for (auto& s : streams::checkpoint_store(st).all()) out[s.stream_id] = s;
  return out;
}

struct shard_progress {
  std::size_t units = 0, done = 0, failed = 0, started = 0;
  std::uint64_t rows = 0, estimated_rows = 0;
  std::vector<std::string> errors;
};

std::vector<shard_progress> progress_of(const migrate_config& cfg, const plan_doc& plan) {
  std::vector<shard_progress> p(plan.shards);
  const auto root = plan_state_root(cfg, plan);
  for (std::size_t i = 0; i < plan.shards; ++i) {
    const auto streams = recorded_streams(root / shard_role(i));
    const shard_units mine(plan, i);
    for (const auto& u : mine.units()) {
      auto& s = p[i];
      ++s.units;
      s.estimated_rows += u.rows;
      auto it = streams.find(u.id);
      if (it == streams.end()) continue;
      ++s.started;
      s.rows += it->second.counters.rows;
      if (!it->second.last_error.empty()) {
        ++s.failed;
        s.errors.push_back(u.id + ": " + it->second.last_error);
      } else if (it->second.done) {
        ++s.done;
      }
    }
  }
  return p;
}

}  // namespace

int finalize_planned(const migrate_config& cfg, const run_options& ro, migration_fn migrate) {
  auto& err = err_of(ro);
  plan_doc plan;
  try {
    plan = checked_plan(cfg);
  } catch (const engine::config_error& e) {
    err << "ferry finalize: " << e.what() << '\n';
    return exit_config;
  }
  return as_role(cfg, plan, "finalize", "finalize", err, [&] {
    std::vector<shard_progress> progress;
    try {
      progress = progress_of(cfg, plan);
    } catch (const std::exception& e) {
      err << "ferry finalize: cannot read the shards' state: " << e.what() << '\n';
      return exit_retryable;
    }
    bool waiting = false;
    for (std::size_t i = 0; i < progress.size(); ++i)
      if (progress[i].done < progress[i].units) {
        err << "ferry finalize: shard " << i << "/" << plan.shards << " has not finished: " << progress[i].done << " of "
            << progress[i].units << " stream(s) done" << (progress[i].errors.empty() ? "" : ", first error: ")
            << (progress[i].errors.empty() ? "" : progress[i].errors.front()) << '\n';
        waiting = true;
      }
    if (waiting) return exit_retryable;
    const auto rcfg = role_config(cfg, plan, "finalize");
    int rc = exit_config;
    {
      auto c = open_run_context(rcfg, ro, "finalize", state_use::guarded);
      if (!c) return exit_config;
      shard_units none;
      c->units = &none;
      rc = migrate(*c);
    }
    if (rc != exit_done) return rc;
    out_of(ro) << "finalize: verifying the whole organization (every stream, every shard)\n";
    return run_verify(rcfg, ro);
  });
}

namespace {

std::string role_result(const fs::path& root, const std::string& role) {
  if (auto who = role_lock::holder_of(root / (role + ".lock"))) return "running (" + *who + ")";
  std::ifstream in(root / (role + ".result.json"));
  if (!in) return fs::exists(root / role) ? "started" : "not started";
  std::stringstream ss;
  ss << in.rdbuf();
  boost::system::error_code ec;
  auto v = ferry::engine::parse_json(ss.str(), ec);
  if (ec || !v.is_object() || !v.as_object().contains("exit_code")) return "unknown";
  const auto rc = v.as_object().at("exit_code").to_number<int>();
  return rc == 0 ? "done" : "exit " + std::to_string(rc);
}

}  // namespace

int run_plan_status(const migrate_config& cfg, bool as_json, std::ostream& out, std::ostream& err) {
  plan_doc plan;
  std::vector<shard_progress> progress;
  try {
    plan = load_plan(cfg.plan_path.empty() ? std::string("ferry-plan.json") : cfg.plan_path);
    progress = progress_of(cfg, plan);
  } catch (const engine::config_error& e) {
    err << "ferry status: " << e.what() << '\n';
    return exit_config;
  } catch (const std::exception& e) {
    err << "ferry status: " << e.what() << '\n';
    return exit_retryable;
  }
  const auto root = plan_state_root(cfg, plan);
  json::array shards;
  std::uint64_t rows = 0, estimated = 0;
  std::size_t units = 0, done = 0;
  for (std::size_t i = 0; i < progress.size(); ++i) {
    const auto& p = progress[i];
    rows += p.rows;
    estimated += p.estimated_rows;
    units += p.units;
    done += p.done;
    json::array errors;
    for (const auto& e : p.errors) errors.emplace_back(e);
    shards.push_back(json::object{{"shard", i},
                                  {"state", role_result(root, shard_role(i))},
                                  {"streams", p.units},
                                  {"started", p.started},
                                  {"done", p.done},
                                  {"failed", p.failed},
                                  {"rows", p.rows},
                                  {"estimated_rows", p.estimated_rows},
                                  {"errors", std::move(errors)}});
  }
  json::object doc{{"plan", plan.hash.substr(0, 16)},
                   {"state_root", root.string()},
                   {"resources", role_result(root, "resources")},
                   {"shards", std::move(shards)},
                   {"finalize", role_result(root, "finalize")},
                   {"streams", units},
                   {"streams_done", done},
                   {"rows", rows},
                   {"estimated_rows", estimated}};
  if (as_json) {
    out << json::serialize(doc) << '\n';
    return exit_done;
  }
  out << "plan " << plan.hash.substr(0, 16) << " (" << root.string() << "): " << plan.shards << " shard(s), " << units
      << " stream(s)\n";
  out << "resources: " << doc["resources"].as_string().c_str() << '\n';
  for (const auto& v : doc["shards"].as_array()) {
    const auto& s = v.as_object();
    out << "shard " << s.at("shard").as_uint64() << "/" << plan.shards << ": " << s.at("state").as_string().c_str() << ", "
        << s.at("done").as_uint64() << "/" << s.at("streams").as_uint64() << " stream(s) done, "
        << s.at("failed").as_uint64() << " failed, rows " << s.at("rows").as_uint64() << " of ~"
        << s.at("estimated_rows").as_uint64() << '\n';
    for (const auto& e : s.at("errors").as_array()) out << "  error " << e.as_string().c_str() << '\n';
  }
  out << "finalize: " << doc["finalize"].as_string().c_str() << '\n';
  out << "total: " << done << "/" << units << " stream(s) done, rows " << rows << " of ~" << estimated << '\n';
  return exit_done;
}

namespace {

/// The resource units of a plan from the dry run's resources report: the organization's own objects,
/// one unit per project (its objects), and what finalize creates (ACLs, automations).
std::vector<plan_unit> resource_units(const resources::migration_report& report) {
  std::map<std::string, std::string> project_ids;  // name -> source id
  std::map<std::string, std::uint64_t> per_scope;
  std::uint64_t final_objects = 0;
  for (const auto& e : report.entries()) {
    if (e.status == resources::object_status::skipped || e.status == resources::object_status::failed) continue;
    if (e.type == "project") project_ids[e.name] = e.source_id;
    if (e.type == "acl" || e.type == "project_automation") ++final_objects;
    else ++per_scope[e.type == "project" ? "organization" : e.scope];
  }
  std::vector<plan_unit> out;
  plan_unit org;
  org.id = "org";
  org.kind = "org_resources";
  org.phase = "resources";
  org.objects = per_scope["organization"];
  out.push_back(org);
  for (const auto& [name, id] : project_ids) {
    plan_unit u;
    u.id = "project:" + id;
    u.kind = "project_resources";
    u.phase = "resources";
    u.name = name;
    u.objects = per_scope["project:" + name];
    out.push_back(u);
  }
  plan_unit fin;
  fin.id = "finalize";
  fin.kind = "final_resources";
  fin.phase = "finalize";
  fin.objects = final_objects;
  out.push_back(fin);
  return out;
}

/// The plan document once the dry run's runtime returned; `failures` gets one line per stream not
/// counted (such a plan is not written: its estimates and so its shards would be wrong).
plan_doc build_plan(const migrate_config& cfg, dry_run_planner& planner, const resources::migration_report& report,
                    std::vector<std::string>& failures) {
  plan_doc doc;
  doc.options = options_of(cfg);
  doc.shards = cfg.shard_count;
  doc.units = resource_units(report);
  std::vector<plan_unit> streams;
  for (auto& s : planner.counted_streams()) {
    if (!s.rows) {
      failures.push_back("stream " + s.spec.stream_id + ": " + s.error);
      continue;
    }
    plan_unit u;
    u.id = s.spec.stream_id;
    u.kind = "stream";
    u.phase = "shards";
    u.stream_kind = std::string(streams::resource_name(s.spec.kind));
    u.source_ids = s.spec.source_ids;
    u.rows = *s.rows;
    u.bytes = s.bytes;
    streams.push_back(std::move(u));
  }
  std::sort(streams.begin(), streams.end(), [](const plan_unit& a, const plan_unit& b) { return a.id < b.id; });
  assign_shards(streams, doc.shards);
  doc.units.insert(doc.units.end() - 1, streams.begin(), streams.end());  // before the finalize unit
  return doc;
}

void print_plan(std::ostream& out, const plan_doc& doc, const fs::path& path) {
  std::vector<std::array<std::uint64_t, 3>> per(doc.shards, {0, 0, 0});
  for (const auto& u : doc.units)
    if (u.shard >= 0) {
      auto& p = per[static_cast<std::size_t>(u.shard)];
      ++p[0];
      p[1] += u.rows;
      p[2] += u.bytes;
    }
  for (std::size_t i = 0; i < per.size(); ++i)
    out << "  shard " << i << "/" << doc.shards << ": " << per[i][0] << " stream(s), " << per[i][1] << " rows, ~"
        << mb(per[i][2]) << " MB\n";
  out << "plan: " << path.string() << " hash=" << doc.hash.substr(0, 16) << " units=" << doc.units.size() << '\n';
}

}  // namespace

int run_plan(const migrate_config& cfg, const run_options& ro) {
  auto& out = out_of(ro);
  auto& err = err_of(ro);
  const fs::path path = cfg.plan_path.empty() ? fs::path("ferry-plan.json") : fs::path(cfg.plan_path);
  // The dry run's reads only: the resources DAG plans (GETs), it must not create anything.
  migrate_config pcfg = cfg;
  pcfg.dry_run = true;
  pcfg.follow = pcfg.until_caught_up = false;
  auto c = open_run_context(pcfg, ro, "plan", state_use::memory);
  if (!c) return exit_config;
  resources::migration_report report;
  report.set_dry_run(true);
  dry_run_planner planner(*c, report);
  std::vector<std::string> failures;
  auto plan = [&]() -> asio::awaitable<void> {
    auto problems = co_await probe_sides(c->src, c->dst, cfg);
    if (!problems.empty()) {
      failures = std::move(problems);
      co_return;
    }
    co_await planner.plan();
  };
  c->rt->spawn(c->rt->executor(), plan(), [&](std::exception_ptr e) {
    if (e && !engine::is_cancellation(e)) failures.push_back("plan aborted: " + engine::what_of(e));
  });
  c->rt->run();
  if (c->rt->phase() != engine::shutdown_phase::running) {
    err << "ferry plan: interrupted; no plan written\n";
    return exit_interrupted;
  }
  for (const auto& e : planner.discovery_errors()) failures.push_back(e);
  auto doc = build_plan(cfg, planner, report, failures);
  for (const auto& e : report.entries())
    if (e.status == resources::object_status::failed) failures.push_back(e.type + " " + e.name + ": " + e.reason);
  if (!failures.empty() || planner.resources_rc() != 0) {
    for (const auto& f : failures) err << "ferry plan: " << f << '\n';
    err << "ferry plan: no plan written (" << failures.size() << " failure(s))\n";
    return planner.resources_rc() == 2 ? exit_config : exit_retryable;
  }
  auto werr = write_json(path, to_json(doc));
  if (!werr.empty()) {
    err << "ferry plan: " << werr << '\n';
    return exit_retryable;
  }
  print_plan(out, doc, path);
  return exit_done;
}

}  // namespace ferry::pipelines
