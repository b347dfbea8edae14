// `ferry export --to DIR` (see pipelines/archive.hpp): list the resources, write them, then copy every
// selected stream into zstd JSONL chunks, each chunk recorded with its cursor in one synced commit.
#include "pipelines/archive.hpp"

#include "pipelines/archive/format.hpp"

#include "progress.hpp"

#include "../for_each_bounded.hpp"
#include "../json_fields.hpp"
#include "../run/plan.hpp"
#include "../run/run_context.hpp"
#include "../run/sides.hpp"

#include "pipelines/resources/org_migrator.hpp"
#include "pipelines/resources/specs.hpp"
#include "pipelines/streams/discovery.hpp"
#include "pipelines/streams/http_stream_io.hpp"
#include "pipelines/streams/page_reader.hpp"

#include "engine/json_parse.hpp"
#include "engine/log.hpp"
#include "engine/runtime.hpp"
#include "stores/state_store.hpp"

#include <boost/asio/this_coro.hpp>
#include <boost/json.hpp>

#include <algorithm>
#include <atomic>
#include <iostream>
#include <mutex>
#include <set>

namespace ferry::pipelines {

namespace asio = boost::asio;
namespace json = boost::json;
namespace fs = std::filesystem;
using resources::resource_client;

namespace {

constexpr std::string_view k_state_type = "archive_export";  // state key: "<kind>/<object id>"
constexpr std::string_view k_attachment_type = "archive_attachment";  // state key: source key -> entry JSON
constexpr std::size_t k_downloads_in_flight = 4;  // per stream (memory: as many attachments held at once)

/// Every listed object per API path, first listing order, each id once.
struct collections {
  std::map<std::string, std::vector<json::object>> by_path;
  std::map<std::string, std::set<std::string>> ids;
  void add(const std::string& path, std::vector<json::object> objs) {
    auto& list = by_path[path];
    auto& seen = ids[path];
    for (auto& o : objs) {
      const auto id = str_field(o, "id");
      if (!id.empty() && !seen.insert(id).second) continue;
      list.push_back(std::move(o));
    }
  }
  std::vector<json::object> of(const std::string& path) const {
    auto it = by_path.find(path);
    return it == by_path.end() ? std::vector<json::object>{} : it->second;
  }
};

json::object options_json(const migrate_config& cfg) {
  auto arr = [](const std::vector<std::string>& v) { return json::value_from(v); };
  return {{"projects", arr(cfg.projects)},
          {"resources", arr(cfg.resources)},
          {"exclude", arr(cfg.exclude)},
          {"created_after", cfg.created_after.value_or("")},
          {"created_before", cfg.created_before.value_or("")}};
}

struct exporter {
  const migrate_config& cfg;
  const archive_options& a;
  fs::path dir;
  stores::state_store& st;
  side& src;
  collections coll;
  std::vector<archive::stream_entry> streams;  // planned, filled as they finish
  std::map<std::string, archive::file_entry> resource_files;
  std::vector<std::string> errors;
  std::mutex mu;  // errors
  std::optional<streams::http_event_source> attachments_src;  // once the source org is known
  engine::progress_registry& progress;  // rows and bytes of the chunks recorded (progress lines, metrics)
  std::atomic<std::uint64_t> attachments_written{0};
  std::atomic<std::size_t> streams_done{0}, streams_planned{0};

  // ---- resources ----------------------------------------------------------------------------------
  asio::awaitable<void> list_into(const std::string& path, resources::query_params q, resource_client::paging mode) {
    resource_client c(*src.res);
    coll.add(path, co_await c.list(path, std::move(q), 1000, mode));
  }

  /// Optional listings (organization, users): a deployment that does not offer them is not a failure.
  asio::awaitable<void> try_list(const std::string& path, resource_client::paging mode) {
    try {
      co_await list_into(path, {}, mode);
    } catch (const resources::api_failure& f) {
      engine::logger("pipeline")->info("export: {} not listed: {}", path, f.what());
    }
  }

  std::string org_id() const {
    for (const auto& o : coll.of("/v1/organization"))
      if (auto id = str_field(o, "id"); !id.empty()) return id;
    for (const auto& p : coll.of("/v1/project"))
      if (auto id = str_field(p, "org_id"); !id.empty()) return id;
    return {};
  }

  /// The source ids of a parent kind (list_mode::parent_object).
  std::vector<std::string> parent_ids(const resources::parent_kind& p) const {
    if (p.type == "organization") return {org_id()};
    std::vector<std::string> ids;
    for (const auto& o : coll.of(resources::spec_of(p.type).path)) ids.push_back(str_field(o, "id"));
    return ids;
  }

  asio::awaitable<void> list_type(const resources::resource_spec& spec) {
    const auto mode = spec.cursors ? resource_client::paging::cursor : resource_client::paging::single;
    switch (spec.list) {
      case resources::list_mode::project_param:
        for (const auto& p : coll.of("/v1/project"))
          co_await list_into(spec.path, one_param("project_id", str_field(p, "id")), mode);
        break;
      case resources::list_mode::parent_object:
        for (const auto& parent : spec.parents)
          for (const auto& id : parent_ids(parent))
            if (!id.empty()) {
              resources::query_params q;  // (not braced in the call: GCC 12 coroutine arguments)
              q.emplace_back("object_type", parent.type);
              q.emplace_back("object_id", id);
              co_await list_into(spec.path, std::move(q), mode);
            }
        break;
      case resources::list_mode::acl_list_org: co_await list_into("/v1/acl/list_org", {}, mode); break;
      case resources::list_mode::path_assignment: break;  // read per object: not archived yet (README)
      default: co_await list_into(spec.path, {}, mode); break;  // org-wide (filtered locally on import)
    }
  }

  /// Environment assignments are read per object (GET /environment-object/<type>/<id>), as the
  /// migrator reads them: each exported object's list is kept under its own path (an empty one too), so
  /// the import answers the same requests from the archive. Only when the source has environments.
  asio::awaitable<void> list_environment_assignments() {
    const auto& spec = resources::spec_of("environment_object");
    if (coll.of(resources::spec_of("environment").path).empty()) co_return;
    const auto mode = spec.cursors ? resource_client::paging::cursor : resource_client::paging::single;
    for (const auto& parent : spec.parents) {
      const auto& pspec = resources::spec_of(parent.type);
      const auto types = resources::types_sharing_ids(parent.type);
      for (const auto& o : coll.of(pspec.path))
        for (const auto& t : types) co_await list_into(spec.path + "/" + t + "/" + str_field(o, "id"), {}, mode);
    }
  }

  asio::awaitable<void> list_resources() {
    co_await try_list("/v1/organization", resource_client::paging::single);
    co_await try_list("/v1/user", resource_client::paging::cursor);
    const auto opts = resources::options_from(resources_view(cfg));
    resource_client c(*src.res);
    std::vector<json::object> chosen;
    for (auto& p : co_await c.list("/v1/project", {}, 100)) {
      const auto name = str_field(p, "name");
      if (!opts.projects.empty() && std::find(opts.projects.begin(), opts.projects.end(), name) == opts.projects.end())
        continue;
      if (std::find(opts.exclude_projects.begin(), opts.exclude_projects.end(), name) != opts.exclude_projects.end())
        continue;
      chosen.push_back(std::move(p));
    }
    coll.add("/v1/project", std::move(chosen));
    const bool all = resources_selected(cfg);
    for (const auto& spec : resources::resource_specs()) {
      if (spec.type == "project") continue;
      const bool stream_owner = spec.type == "experiment" || spec.type == "dataset";
      if (all ? !opts.types.count(spec.type) : !stream_owner) continue;
      co_await list_type(spec);
    }
    co_await list_environment_assignments();
    // Project-scoped types listed org-wide keep only the exported projects' objects.
    std::set<std::string> projects = coll.ids["/v1/project"];
    for (auto& [path, objs] : coll.by_path)
      std::erase_if(objs, [&](const json::object& o) {
        auto* pid = o.if_contains("project_id");
        return path != "/v1/project" && pid && pid->is_string() && !projects.count(std::string(pid->as_string()));
      });
  }

  void write_resources() {
    for (const auto& [path, objs] : coll.by_path) {
      json::array arr;
      for (const auto& o : objs) arr.push_back(o);
      const std::string text = json::serialize(json::object{{"path", path}, {"objects", std::move(arr)}}) + "\n";
      archive::file_entry f{archive::resource_file_name(path), archive::sha256_hex(text), text.size(), objs.size(), {}, {}};
      archive::write_file_durably(dir / f.path, text);
      resource_files[path] = std::move(f);
    }
  }

  // ---- streams ------------------------------------------------------------------------------------
  void plan_streams() {
    const auto sel = streams::selection_from(cfg);
    auto add = [&](streams::stream_kind k, const std::string& path) {
      for (const auto& o : coll.of(path))
        streams.push_back({std::string(streams::object_type_name(k)), str_field(o, "id"), 0, {}});
    };
    if (sel.logs) add(streams::stream_kind::project_logs, "/v1/project");
    if (sel.experiments) add(streams::stream_kind::experiment, "/v1/experiment");
    if (sel.datasets) add(streams::stream_kind::dataset, "/v1/dataset");
  }

  /// The recorded progress of a stream (chunks, rows, cursor = last key of the last chunk, done).
  std::pair<archive::stream_entry, bool> load(const archive::stream_entry& s) {
    auto v = st.get_id(k_state_type, s.kind + "/" + s.object_id);
    if (!v) return {s, false};
    auto o = ferry::engine::parse_json(*v).as_object();
    return {archive::stream_from_json(o), o.contains("done") && o.at("done").as_bool()};
  }

  /// The commit: the chunk file is already durable; its entry and the new cursor go in one synced write.
  void record(const archive::stream_entry& s, bool done) {
    auto o = archive::to_json(s);
    o["done"] = done;
    st.put_id(k_state_type, s.kind + "/" + s.object_id, json::serialize(o), true);
  }

  /// A resume starts after the last recorded chunk: chunk files the state does not list (a partial chunk
  /// of a killed run) are removed.
  void discard_unrecorded(const archive::stream_entry& s) {
    const fs::path d = dir / "streams" / s.kind / s.object_id;
    std::set<std::string> keep;
    for (const auto& c : s.chunks) keep.insert((dir / c.path).filename().string());
    std::error_code ec;
    if (!fs::is_directory(d, ec)) return;
    for (const auto& f : fs::directory_iterator(d))
      if (!keep.count(f.path().filename().string())) fs::remove(f.path(), ec);
  }

  /// Every attachment the rows of a page reference and the state does not record (this run, another
  /// stream, a killed run) is downloaded from the source (a few at once) and written to attachments/
  /// (named by its sha256: equal bytes, one file); then the directory is synced and the page's entries
  /// recorded in one synced write, before any row of the page joins a chunk: a recorded chunk never
  /// references bytes the archive does not hold. Two streams archiving one key write the same bytes
  /// under the same name and record the same entry.
  asio::awaitable<void> archive_attachments(const json::array& rows) {
    std::map<std::string, archive::attachment_ref> todo;  // by key: each once
    for (const auto& v : rows)
      for (auto& r : archive::attachment_refs(v))
        if (!st.get_id(k_attachment_type, r.key)) todo.emplace(r.key, std::move(r));
    if (todo.empty()) co_return;
    std::vector<const archive::attachment_ref*> refs;
    for (const auto& kv : todo) refs.push_back(&kv.second);
    std::vector<std::pair<std::string, std::string>> entries(refs.size());  // key -> entry JSON
    co_await for_each_bounded(co_await asio::this_coro::executor, refs.size(), k_downloads_in_flight,
                              [&](std::size_t i) -> asio::awaitable<void> {
                                entries[i] = co_await archive_attachment(*refs[i]);
                              });
    archive::sync_dir(dir / "attachments");
    st.put_ids(k_attachment_type, entries, true);
    attachments_written += entries.size();
  }

  /// One attachment downloaded and written (not yet synced into its directory): its state entry.
  asio::awaitable<std::pair<std::string, std::string>> archive_attachment(const archive::attachment_ref& r) {
    auto bytes = co_await attachments_src->download_attachment(r.key, r.filename, r.content_type, cfg.attachment_max_bytes);
    const auto sha = archive::sha256_hex(bytes);
    const archive::attachment_entry a{r.key, r.filename, r.content_type,
                                      {archive::attachment_file_name(sha), sha, bytes.size(), 0, {}, {}}};
    archive::write_file_durably(dir / a.file.path, bytes, false);
    co_return std::pair{r.key, json::serialize(archive::to_json(a))};
  }

  void flush(archive::stream_entry& s, std::string& lines, std::uint64_t& n, std::string& first, const std::string& last) {
    if (n == 0) return;
    const std::string frame = archive::zstd_compress(lines);
    archive::file_entry f{archive::chunk_file_name(s.kind, s.object_id, s.chunks.size()), archive::sha256_hex(frame),
                          frame.size(), n, first, last};
    archive::write_file_durably(dir / f.path, frame);
    s.chunks.push_back(std::move(f));
    s.rows += n;
    record(s, false);
    auto& p = progress.stream(s.kind + ":" + s.object_id);
    p.add_rows(n);
    p.add_bytes(frame.size());
    lines.clear();
    n = 0;
    first.clear();
  }

  std::size_t fetch_limit(streams::stream_kind k) const {
    const int l = k == streams::stream_kind::project_logs ? cfg.logs_fetch_limit
                  : k == streams::stream_kind::experiment ? cfg.experiment_fetch_limit
                                                          : cfg.dataset_fetch_limit;
    return static_cast<std::size_t>(std::max(l, 1));
  }

  asio::awaitable<void> export_stream(archive::stream_entry& planned) {
    auto [s, done] = load(planned);
    discard_unrecorded(s);
    if (done) {
      planned = std::move(s);
      ++streams_done;
      co_return;
    }
    const auto kind = archive::kind_of(s.kind);
    streams::page_query q;
    q.kind = kind;
    q.object_ids = {s.object_id};
    q.created_after = cfg.created_after;
    q.created_before = cfg.created_before;
    if (!s.chunks.empty()) q.after_key = s.chunks.back().last_key;
    auto ro = src.reads;
    ro.sizes.initial_limit = fetch_limit(kind);
    streams::page_reader reader(*src.api, ro);
    std::string lines, first, last;
    std::uint64_t n = 0;
    bool confirming_end = false;
    for (;;) {
      if ((co_await asio::this_coro::cancellation_state).cancelled() != asio::cancellation_type::none) co_return;
      auto page = co_await reader.next(q, false);
      if (!page.ok()) throw std::runtime_error("stream " + s.kind + ":" + s.object_id + ": BTQL read failed: " + page.error);
      if (page.rows.empty()) {  // the end counts once a second read of the same cursor is empty too
        if (confirming_end) break;
        confirming_end = true;
        continue;
      }
      confirming_end = false;
      co_await archive_attachments(page.rows);
      for (const auto& v : page.rows) {
        if (!v.is_object()) continue;
        const auto key = str_field(v.as_object(), "_pagination_key");
        if (key.empty()) throw std::runtime_error("stream " + s.kind + ":" + s.object_id + ": row without _pagination_key");
        if (!last.empty() && key <= last) throw std::runtime_error("stream " + s.kind + ":" + s.object_id + ": keys did not advance past " + last);
        if (n == 0) first = key;
        last = key;
        lines += json::serialize(v);
        lines += '\n';
        if (++n >= a.chunk_rows || lines.size() >= a.chunk_bytes) flush(s, lines, n, first, last);
      }
      q.after_key = last;
    }
    flush(s, lines, n, first, last);
    record(s, true);
    ++streams_done;
    engine::logger("pipeline")->info("export stream end stream={}:{} rows={} chunks={}", s.kind, s.object_id, s.rows,
                                     s.chunks.size());
    planned = std::move(s);
  }

  asio::awaitable<void> run() {
    co_await list_resources();
    write_resources();
    attachments_src.emplace(*src.api, org_id());
    plan_streams();
    streams_planned = streams.size();
    auto ex = co_await asio::this_coro::executor;
    co_await for_each_bounded(ex, streams.size(), static_cast<std::size_t>(std::max(cfg.max_concurrent_streams, 1)),
                              [this](std::size_t i) -> asio::awaitable<void> {
                                try {
                                  co_await export_stream(streams[i]);
                                } catch (const std::exception& e) {
                                  std::lock_guard lock(mu);
                                  errors.push_back(e.what());
                                }
                              });
  }

  archive::manifest to_manifest() const {
    archive::manifest m;
    m.source_url = cfg.source.url;
    m.options = options_json(cfg);
    m.options_fingerprint = archive::sha256_hex(json::serialize(m.options));
    m.resources = resource_files;
    m.streams = streams;
    st.for_each_id(k_attachment_type, [&](std::string_view key, std::string_view entry) {
      m.attachments[std::string(key)] = archive::attachment_from_json(std::string(key), ferry::engine::parse_json(entry).as_object());
      return true;
    });
    return m;
  }

  /// Files in attachments/ the manifest does not list (a killed run's writes before their record, a
  /// temp file) are removed, so a resumed archive holds what an uninterrupted one does.
  void drop_unlisted_attachments(const archive::manifest& m) const {
    std::set<std::string> keep;
    for (const auto& [key, a] : m.attachments) keep.insert(a.file.path);
    std::error_code ec;
    if (!fs::is_directory(dir / "attachments", ec)) return;
    for (const auto& f : fs::directory_iterator(dir / "attachments"))
      if (!keep.count("attachments/" + f.path().filename().string())) fs::remove(f.path(), ec);
  }

  archive::progress_counts counts() const {
    return {progress.total().rows, streams_done.load(), streams_planned.load(), attachments_written.load(), std::nullopt};
  }
};

}  // namespace

int run_export(const migrate_config& cfg, const archive_options& a, const run_options& ro) {
  std::ostream& out = ro.out ? *ro.out : std::cout;
  std::ostream& err = ro.err ? *ro.err : std::cerr;
  if (cfg.dry_run || cfg.follow || cfg.until_caught_up) {
    err << "ferry export: --dry-run, --follow and --until-caught-up are not supported (an archive is one snapshot)\n";
    return 2;
  }
  if (cfg.source.url.empty() || cfg.source.api_key.empty()) {
    err << "ferry export: no source: set BT_SOURCE_URL and BT_SOURCE_API_KEY\n";
    return 2;
  }
  engine::register_secret(cfg.source.api_key);
  const fs::path dir(a.dir);
  const fs::path state_dir = dir / ".export-state";
  std::error_code ec;
  if (fs::exists(dir / archive::manifest_name, ec)) {
    out << "ferry export: " << a.dir << " is a complete archive already (remove it to export again)\n";
    return 0;
  }
  try {
    (void)resources::options_from(resources_view(cfg));  // a bad selection name is exit 2, before any file
    fs::create_directories(dir);
    fs::permissions(dir, fs::perms::owner_all, fs::perm_options::replace);
    std::optional<stores::state_store> st;
    st.emplace(stores::state_store::open(state_dir.string()));
    const auto fp = archive::sha256_hex(json::serialize(options_json(cfg)));
    st->check_and_record_meta({{"source_url", cfg.source.url}, {"options_fingerprint", fp}});
    archive::archive_metrics metrics(cfg);
    engine::progress_registry progress(metrics.registry());
    engine::runtime rt(runtime_config_for(ro));
    if (ro.on_runtime) ro.on_runtime(rt);
    side src = make_side(rt.executor(), side_role::source, cfg, {}, metrics.registry());
    exporter e{cfg, a, dir, *st, src, {}, {}, {}, {}, {}, {}, progress, {0}, {0}, {0}};
    archive::progress_ticker ticker("export", [&e] { return e.counts(); }, ro.progress_interval);
    rt.spawn(rt.executor(), ticker.run());
    rt.spawn(rt.executor(), e.run(), [&](std::exception_ptr p) {
      if (p && !engine::is_cancellation(p)) e.errors.push_back("export aborted: " + engine::what_of(p));
      ticker.stop();
    });
    rt.run();
    if (rt.phase() != engine::shutdown_phase::running) {
      err << "ferry export: interrupted; resume with the same command (" << ro.resume_command << ")\n";
      return 130;
    }
    if (!e.errors.empty()) {
      for (const auto& line : e.errors) err << "ferry export: " << line << '\n';
      return 1;
    }
    const auto m = e.to_manifest();
    e.drop_unlisted_attachments(m);
    archive::write_manifest(dir, m);
    std::uint64_t rows = 0;
    for (const auto& s : m.streams) rows += s.rows;
    st.reset();
    fs::remove_all(state_dir, ec);
    out << "ferry export: " << m.resources.size() << " resource file(s), " << m.streams.size() << " stream(s), " << rows
        << " row(s), " << m.attachments.size() << " attachment(s) to " << a.dir << '\n';
    out.flush();
    metrics.linger(rt);
    return 0;
  } catch (const std::exception& e) {
    err << "ferry export: " << e.what() << '\n';
    return 2;
  }
}

}  // namespace ferry::pipelines
