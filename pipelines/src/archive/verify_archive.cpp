// `ferry verify --archive DIR` (see pipelines/archive.hpp): every archived stream against the destination,
// row by row, through the import's id maps; the attachment bytes each archived row references against
// the bytes the destination row's reference resolves to; then the archived resources field by field
// with `ferry verify`'s resource oracle (run/resource_verify.hpp), the archive as its source side.
#include "pipelines/archive.hpp"

#include "pipelines/archive/archive_source.hpp"
#include "pipelines/archive/format.hpp"

#include "../json_fields.hpp"
#include "../run/plan.hpp"
#include "../run/resource_verify.hpp"
#include "../run/run_context.hpp"
#include "../run/sides.hpp"

#include "pipelines/resources/api.hpp"
#include "pipelines/streams/http_stream_io.hpp"
#include "pipelines/streams/page_reader.hpp"
#include "pipelines/streams/verify.hpp"

#include "engine/json_parse.hpp"
#include "engine/log.hpp"
#include "engine/runtime.hpp"
#include "stores/state_store.hpp"

#include <boost/json.hpp>

#include <iostream>
#include <unordered_map>

namespace ferry::pipelines {

namespace asio = boost::asio;
namespace fs = std::filesystem;
namespace json = boost::json;

namespace {

/// A reference of an archived row and the destination row's reference at the same place.
struct attachment_pair {
  std::string row_id;
  archive::attachment_ref source;
  archive::attachment_ref dest;
};

struct archive_verifier {
  run_context& c;
  fs::path dir;
  const archive::manifest& m;
  std::optional<streams::http_event_source> dst_attachments;  // once the destination org is known
  std::unordered_map<std::string, std::string> dest_sha;      // destination key -> sha256 of its bytes (or "!why")
  std::vector<std::string> failures;
  std::size_t diffs = 0;               // streams with differences
  std::size_t attachment_diffs = 0;
  std::size_t attachments_compared = 0;
  std::size_t resource_objects = 0, resource_diffs = 0;

  std::string stream_name(streams::stream_kind k, const std::string& id) const {
    return std::string(streams::resource_name(k)) + ":" + id;
  }

  /// Rows whose references must be checked: archived row id -> its references (only rows holding any).
  using refs_by_row = std::unordered_map<std::string, std::vector<archive::attachment_ref>>;

  asio::awaitable<void> compare(const archive::stream_entry& s) {
    const auto kind = archive::kind_of(s.kind);
    std::string dest_id = s.object_id;
    if (c.state)
      if (auto mapped = c.state->get_id(id_type(kind), s.object_id)) dest_id = *mapped;
    streams::verify_tally tally(stream_name(kind, s.object_id), kind, {{dest_id, s.object_id}});
    refs_by_row refs;
    for (const auto& ch : s.chunks)
      for (const auto& line : archive::read_chunk(dir, ch)) {
        auto v = ferry::engine::parse_json(line);
        if (line.find("braintrust_attachment") != std::string::npos) {
          if (auto r = archive::attachment_refs(v); !r.empty()) refs[str_field(v.as_object(), "id")] = std::move(r);
          inline_archived_spills(v.as_object());
        }
        tally.add_source(v.as_object());
      }
    // Rows a copy spilled to attachments (above the per-row limit) compare as the rows they hold, as
    // `ferry verify` compares them: their fields read back from the destination's attachments.
    std::vector<attachment_pair> pairs;
    std::vector<json::object> spilled;
    streams::page_query q;
    q.kind = kind;
    q.object_ids = {dest_id};
    q.limit = static_cast<std::size_t>(std::max(c.cfg.logs_fetch_limit, 1));
    co_await streams::read_all(*c.dst.api, q, c.dst.reads, [&](const json::object& row) {
      pair_references(refs, row, pairs);
      if (!streams::spilled_fields(row).empty()) return spilled.push_back(row);
      tally.add_dest(row);
    });
    for (auto& row : spilled) {
      for (const auto& f : streams::spilled_fields(row)) {
        const std::string content =
            co_await dst_attachments->download_attachment(f.key, f.filename, f.content_type, c.cfg.attachment_max_bytes);
        streams::inline_spilled(row, f, content);
      }
      tally.add_dest(row);
    }
    const auto rep = tally.finish();
    if (!rep.ok()) ++diffs;
    c.out << (rep.ok() ? "ok   " : "DIFF ") << rep.summary() << '\n';
    co_await compare_bytes(stream_name(kind, s.object_id), pairs);
  }

  /// The destination row's references, paired by place with the archived row's; a reference missing
  /// there is a difference now (a missing row is the tally's).
  void pair_references(refs_by_row& refs, const json::object& row, std::vector<attachment_pair>& pairs) {
    auto it = refs.find(str_field(row, "id"));
    if (it == refs.end()) return;
    const auto dest = archive::attachment_refs(json::value(row));
    for (const auto& r : it->second) {
      auto d = std::find_if(dest.begin(), dest.end(), [&](const archive::attachment_ref& x) { return x.path == r.path; });
      if (d != dest.end()) {
        pairs.push_back({it->first, r, *d});
        continue;
      }
      ++attachment_diffs;
      c.out << "DIFF attachment " << archived_file(r.key) << " row " << it->first << " at " << r.path
            << ": the destination row holds no attachment reference there\n";
    }
    refs.erase(it);
  }

  /// An archived row's spilled fields (a source that holds spilled rows) read back from attachments/.
  void inline_archived_spills(json::object& row) const {
    for (const auto& f : streams::spilled_fields(row))
      if (auto a = m.attachments.find(f.key); a != m.attachments.end())
        streams::inline_spilled(row, f, archive::read_attachment(dir, a->second));
  }

  std::string archived_file(const std::string& key) const {
    auto a = m.attachments.find(key);
    return (a == m.attachments.end() ? std::string("(not archived)") : a->second.file.path) + " (source key " + key + ")";
  }

  /// Each pair's destination bytes (downloaded once per key) against the archived file's sha256.
  asio::awaitable<void> compare_bytes(const std::string& stream, const std::vector<attachment_pair>& pairs) {
    std::size_t bad = 0, compared = 0;
    for (const auto& p : pairs) {
      auto a = m.attachments.find(p.source.key);
      if (a == m.attachments.end()) continue;  // a format 1 archive holds references only
      auto [it, fresh] = dest_sha.try_emplace(p.dest.key);
      if (fresh) {
        try {
          auto bytes = co_await dst_attachments->download_attachment(p.dest.key, p.dest.filename, p.dest.content_type,
                                                                     c.cfg.attachment_max_bytes);
          it->second = archive::sha256_hex(bytes);
        } catch (const std::exception& e) {
          if (engine::is_cancellation(std::current_exception())) throw;
          it->second = std::string("!") + e.what();
        }
      }
      ++compared;
      if (it->second == a->second.file.sha256) continue;
      ++bad;
      c.out << "DIFF attachment " << archived_file(p.source.key) << " row " << p.row_id << " at " << p.source.path
            << ": the destination's attachment " << p.dest.key
            << (it->second.starts_with("!") ? " cannot be read: " + it->second.substr(1)
                                            : " holds other bytes (sha256 " + it->second + ")")
            << '\n';
    }
    attachment_diffs += bad;
    attachments_compared += compared;
    if (!pairs.empty())
      c.out << (bad ? "DIFF " : "ok   ") << "attachments stream=" << stream << " compared=" << compared << " differing=" << bad
            << '\n';
  }

  /// The archive's organization: its organization listing, else a project's org_id (as the export's).
  static std::string archive_org(const fs::path& dir, const archive::manifest& m) {
    for (const char* path : {"/v1/organization", "/v1/project"}) {
      auto f = m.resources.find(path);
      if (f == m.resources.end()) continue;
      const auto v = ferry::engine::parse_json(archive::read_file(dir / f->second.path));
      for (const auto& o : v.at("objects").as_array())
        if (auto id = str_field(o.as_object(), path == std::string("/v1/project") ? "org_id" : "id"); !id.empty()) return id;
    }
    return {};
  }

  /// The resources: one DIFF line per difference (type, object, field), ok per type otherwise.
  asio::awaitable<void> compare_resources() {
    archive::archive_resource_api source(dir, m);
    auto r = co_await verify_resources_from(c, source, archive_org(dir, m));
    for (const auto& t : r.checks) {
      const auto& o = t.as_object();
      if (o.at("differences").to_number<std::uint64_t>() == 0)
        c.out << "ok   resources type=" << str_field(o, "type").substr(7) << " objects=" << o.at("objects").to_number<std::uint64_t>()
              << '\n';
    }
    for (const auto& d : r.diffs) c.out << "DIFF " << d << '\n';
    for (const auto& n : r.notes) c.out << "NOTE " << n << '\n';
    for (auto& f : r.failures) failures.push_back(std::move(f));
    resource_objects = r.objects;
    resource_diffs = r.diffs.size();
  }

  asio::awaitable<void> run() {
    dst_attachments.emplace(*c.dst.api, co_await organization_id(c.dst));
    for (const auto& s : m.streams) {
      if ((co_await asio::this_coro::cancellation_state).cancelled() != asio::cancellation_type::none) co_return;
      try {
        co_await compare(s);
      } catch (const std::exception& e) {
        if (engine::is_cancellation(std::current_exception())) throw;
        failures.push_back("stream " + s.kind + ":" + s.object_id + ": " + e.what());
      }
    }
    try {
      co_await compare_resources();
    } catch (const std::exception& e) {
      if (engine::is_cancellation(std::current_exception())) throw;
      failures.push_back(std::string("resources: ") + e.what());
    }
  }
};

/// verify compares what the archive holds: its selection, unless the command names one of its own.
migrate_config with_archive_selection(const migrate_config& cfg, const archive::manifest& m) {
  migrate_config v = cfg;
  if (!cfg.projects.empty() || !cfg.resources.empty() || !cfg.exclude.empty() || cfg.created_after || cfg.created_before)
    return v;
  auto list = [&](const char* k) {
    std::vector<std::string> out;
    if (auto* a = m.options.if_contains(k); a && a->is_array())
      for (const auto& x : a->as_array())
        if (x.is_string()) out.emplace_back(x.as_string());
    return out;
  };
  v.projects = list("projects");
  v.resources = list("resources");
  v.exclude = list("exclude");
  if (auto t = str_field(m.options, "created_after"); !t.empty()) v.created_after = t;
  if (auto t = str_field(m.options, "created_before"); !t.empty()) v.created_before = t;
  return v;
}

}  // namespace

int run_verify_archive(const migrate_config& cfg, const archive_options& a, const run_options& ro) {
  std::ostream& err = ro.err ? *ro.err : std::cerr;
  if (cfg.dest.url.empty() || cfg.dest.api_key.empty()) {
    err << "ferry verify: no deployment to compare the archive with: set BT_DEST_URL and BT_DEST_API_KEY\n";
    return 2;
  }
  engine::register_secret(cfg.dest.api_key);
  archive::manifest m;
  migrate_config vcfg;
  std::unique_ptr<run_context> c;
  try {
    m = archive::read_and_check(a.dir);
    vcfg = with_archive_selection(cfg, m);
    c = std::make_unique<run_context>(vcfg, ro);
    if (fs::exists(fs::path(cfg.state_dir) / "CURRENT")) c->state.emplace(stores::state_store::open_read_only(cfg.state_dir));
  } catch (const std::exception& e) {
    err << "ferry verify: " << e.what() << '\n';
    return 2;
  }
  c->rt = std::make_unique<engine::runtime>(runtime_config_for(ro));
  if (ro.on_runtime) ro.on_runtime(*c->rt);
  c->dst = make_side(c->rt->executor(), side_role::destination, vcfg);
  archive_verifier v{*c, a.dir, m, {}, {}, {}, 0, 0, 0, 0, 0};
  c->rt->spawn(c->rt->executor(), v.run(), [&](std::exception_ptr e) {
    if (e && !engine::is_cancellation(e)) v.failures.push_back("verify aborted: " + engine::what_of(e));
  });
  c->rt->run();
  for (const auto& f : v.failures) err << "ferry verify: " << f << '\n';
  const bool interrupted = c->rt->phase() != engine::shutdown_phase::running;
  c->out << "verify --archive: " << m.streams.size() << " stream(s), " << v.diffs << " with differences, "
         << v.attachments_compared << " attachment(s) compared, " << v.attachment_diffs << " differing, "
         << v.resource_objects << " resource object(s), " << v.resource_diffs << " resource difference(s), "
         << v.failures.size() << " failure(s)" << (interrupted ? ", interrupted" : "") << '\n';
  if (interrupted) return 130;
  return v.diffs == 0 && v.attachment_diffs == 0 && v.resource_diffs == 0 && v.failures.empty() ? 0 : 1;
}

}  // namespace ferry::pipelines
