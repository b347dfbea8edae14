// braintrust://HOST[:PORT]/PROJECT/{logs | experiment/NAME | dataset/NAME} (braintrust+http:// for plain
// HTTP) as a source and as a sink, on Ferry's own pieces: one transports::braintrust_client per side
// (its retries, semaphore, rate limits, TLS and metrics), the streams' BTQL page reader for reading
// (keyset pages on _pagination_key, retries, adaptive page size) and the /logs3 batch pieces for
// writing (batcher byte bounds, logs3_body, 413 halving, logs3_ack_problem).
//
// The connectors are blocking like the others: each owns an io_context on a thread of its own and
// waits for the client's coroutines there (one call at a time: one connector is used by one coroutine).
//
// Source rows are the BTQL rows as read (cursor: _pagination_key; the end is an empty page confirmed
// by a second empty read, as the stream reader does). Sink rows: `id` as a string (the stable key: a
// re-sent batch overwrites), the fields the object's rows have, system fields (_xact_id,
// _pagination_key, org_id, project_id, log_id, experiment_id, dataset_id, is_root, comments, audit_data,
// other `_` fields) dropped, any other field moved under `metadata` (a null one dropped), and the sink
// object's ids set.
#include "pipelines/copy/connector.hpp"

#include "pipelines/streams/batcher.hpp"
#include "pipelines/streams/btql_query.hpp"
#include "pipelines/streams/page_reader.hpp"
#include "pipelines/streams/stream_runner.hpp"

#include "engine/log.hpp"
#include "engine/retry.hpp"
#include "transports/braintrust_client.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/beast/http/verb.hpp>
#include <boost/json.hpp>

#include <cstdlib>
#include <optional>
#include <set>
#include <thread>

namespace ferry::pipelines::copy {

namespace asio = boost::asio;
namespace json = boost::json;
using streams::stream_kind;

namespace {

/// What a braintrust URI names.
struct bt_target {
  std::string where;    // the URI, for messages
  std::string url;      // https://HOST[:PORT] or http://...
  std::string project;  // name
  stream_kind kind = stream_kind::project_logs;
  std::string name;     // experiment or dataset name
};

std::string kind_word(stream_kind k) {
  return k == stream_kind::dataset ? "dataset" : k == stream_kind::experiment ? "experiment" : "logs";
}

bt_target parse_target(const uri& u) {
  bt_target t;
  t.where = u.redacted();
  const std::string usage = "braintrust://HOST[:PORT]/PROJECT/logs, .../PROJECT/experiment/NAME or .../PROJECT/dataset/NAME";
  const auto rest = u.base.substr(u.base.find("://") + 3);
  const auto slash = rest.find('/');
  const std::string host = rest.substr(0, slash);
  if (host.find('@') != std::string::npos)
    throw copy_error(t.where + ": an API key or user in the URI is refused: set BT_SOURCE_API_KEY (source) or BT_DEST_API_KEY (sink)");
  for (const auto& [k, v] : u.params)
    if (k == "api_key" || k == "key" || k == "token" || k == "apikey")
      throw copy_error(t.where + ": an API key in the URI is refused: set BT_SOURCE_API_KEY (source) or BT_DEST_API_KEY (sink)");
  if (!u.params.empty()) throw copy_error(t.where + ": unknown query parameter '" + u.params.begin()->first + "' (" + usage + ")");
  if (host.empty()) throw copy_error(t.where + ": no host (" + usage + ")");
  t.url = std::string(u.scheme == "braintrust+http" ? "http://" : "https://") + host;
  std::vector<std::string> parts;
  for (std::size_t at = slash == std::string::npos ? rest.size() : slash + 1; at <= rest.size();) {
    const auto next = std::min(rest.find('/', at), rest.size());
    parts.push_back(percent_decode(rest.substr(at, next - at)));
    at = next + 1;
  }
  while (!parts.empty() && parts.back().empty()) parts.pop_back();
  if (parts.size() == 2 && parts[1] == "logs") {
    t.kind = stream_kind::project_logs;
  } else if (parts.size() == 3 && (parts[1] == "experiment" || parts[1] == "dataset") && !parts[2].empty()) {
    t.kind = parts[1] == "dataset" ? stream_kind::dataset : stream_kind::experiment;
    t.name = parts[2];
  } else {
    throw copy_error(t.where + ": not a Braintrust object path (" + usage + ")");
  }
  if (parts[0].empty()) throw copy_error(t.where + ": no project name (" + usage + ")");
  t.project = parts[0];
  return t;
}

/// One side: the client on an io_context of its own, and the object the URI names.
class bt_side {
 public:
  bt_side(const uri& u, const transports::side_config* base, engine::metrics_registry* metrics, bool dest)
      : t_(parse_target(u)), dest_(dest), work_(asio::make_work_guard(ioc_)) {
    transports::side_config cfg = base ? *base : transports::side_config{};
    if (!base) {
      cfg.name = dest ? "destination" : "source";
      const char* k = std::getenv(dest ? "BT_DEST_API_KEY" : "BT_SOURCE_API_KEY");
      cfg.api_key = k ? k : "";
    }
    key_var_ = cfg.name == "destination" ? "BT_DEST_API_KEY" : "BT_SOURCE_API_KEY";
    if (cfg.api_key.empty())
      throw copy_error(t_.where + ": no API key: set " + key_var() + " (keys are never taken from the URI)");
    cfg.url = t_.url;
    if (metrics) cfg.metrics = metrics;
    retry_ = cfg.retry();
    try {
      client_.emplace(ioc_.get_executor(), cfg);
    } catch (const std::exception& e) {
      throw copy_error(t_.where + ": " + e.what());
    }
    thread_ = std::thread([this] { ioc_.run(); });
  }
  ~bt_side() {
    work_.reset();
    ioc_.stop();
    thread_.join();
    client_.reset();
  }
  bt_side(const bt_side&) = delete;
  bt_side& operator=(const bt_side&) = delete;

  template <class T>
  T wait(asio::awaitable<T> aw) {
    return asio::co_spawn(ioc_, std::move(aw), asio::use_future).get();
  }

  const bt_target& target() const { return t_; }
  transports::api_client& api() { return client_->api(); }
  const engine::retry_config& retry() const { return retry_; }
  const std::string& key_var() const { return key_var_; }

  /// The objects of GET `path` with `q` (a name lookup): throws one line naming the URI on failure.
  json::array lookup(const std::string& path, transports::query_params q) {
    auto r = wait(api().get_json(path, q));
    if (!r.ok()) throw copy_error(t_.where + ": GET " + path + " failed: " + r.error + hint(r.status));
    const json::array* objs = nullptr;
    if (const auto* o = r.json.if_object(); o && o->contains("objects") && o->at("objects").is_array())
      objs = &o->at("objects").as_array();
    if (r.json.is_array()) objs = &r.json.as_array();
    if (!objs) throw copy_error(t_.where + ": GET " + path + " answered no list of objects");
    return *objs;
  }
  std::string hint(unsigned status) const {
    return status == 401 || status == 403 ? " (the API key was rejected: check " + key_var() + ")" : "";
  }

  /// The project id (throws when the project does not exist).
  std::string project_id() {
    for (const auto& v : lookup("/v1/project", {{"project_name", t_.project}}))
      if (v.is_object() && v.as_object().contains("id") && v.as_object().at("name") == json::value(t_.project))
        return std::string(v.as_object().at("id").as_string());
    throw copy_error(t_.where + ": project '" + t_.project + "' not found on " + t_.url +
                     (dest_ && t_.kind != stream_kind::project_logs ? " (a sink creates a dataset or experiment only in an existing project)" : ""));
  }
  /// The experiment or dataset id, or "" when it does not exist.
  std::string object_id(const std::string& pid) {
    const std::string type = kind_word(t_.kind);
    for (const auto& v : lookup("/v1/" + type, {{"project_id", pid}, {type + "_name", t_.name}}))
      if (v.is_object() && v.as_object().contains("id") && v.as_object().at("name") == json::value(t_.name))
        return std::string(v.as_object().at("id").as_string());
    return {};
  }
  std::string create_object(const std::string& pid) {
    const std::string type = kind_word(t_.kind);
    auto r = wait(api().post_json("/v1/" + type, json::object{{"project_id", pid}, {"name", t_.name}}));
    const auto* o = r.json.if_object();
    if (!r.ok() || !o || !o->contains("id") || !o->at("id").is_string())
      throw copy_error(t_.where + ": creating " + type + " '" + t_.name + "' failed: " + (r.ok() ? "no id in the answer" : r.error) + hint(r.status));
    engine::logger("pipeline")->info("copy created {} name={} project={}", type, t_.name, t_.project);
    return std::string(o->at("id").as_string());
  }

 private:
  bt_target t_;
  bool dest_;
  std::string key_var_;
  asio::io_context ioc_;
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  std::optional<transports::braintrust_client> client_;
  engine::retry_config retry_;
  std::thread thread_;
};

class braintrust_source final : public source {
 public:
  braintrust_source(const uri& u, const connector_context& ctx) : side_(u, ctx.source_side, ctx.metrics, false) {
    const auto pid = side_.project_id();
    object_id_ = pid;
    if (side_.target().kind != stream_kind::project_logs) {
      object_id_ = side_.object_id(pid);
      if (object_id_.empty())
        throw copy_error(side_.target().where + ": " + kind_word(side_.target().kind) + " '" + side_.target().name +
                         "' not found in project '" + side_.target().project + "'");
    }
  }

  page read_after(const std::string& cursor, std::size_t limit) override {
    if (!reader_) {
      streams::page_reader_options o;
      o.sizes.initial_limit = std::max<std::size_t>(limit, 1);
      o.sizes.min_limit = std::min<std::size_t>(25, o.sizes.initial_limit);
      o.retry = side_.retry();
      reader_.emplace(side_.api(), o);
    }
    streams::page_query q;
    q.kind = side_.target().kind;
    q.object_ids = {object_id_};
    if (!cursor.empty()) q.after_key = cursor;
    page p;
    // The end is an empty page read twice at the same cursor (one empty answer of a loaded source is not).
    for (int empty = 0; empty < 2 && p.rows.empty(); ++empty) p.rows = to_rows(read_page(q), cursor);
    p.end = p.rows.empty();
    return p;
  }

 private:
  /// One page through the streams' page reader (the side's retry policy; a 500/504 halves the page down
  /// to the floor; rows parsed with exact doubles).
  json::array read_page(const streams::page_query& q) {
    auto page = side_.wait(reader_->next(q, false));
    if (!page.ok())
      throw copy_error(side_.target().where + ": BTQL read after " + (q.after_key ? *q.after_key : "(start)") +
                       " failed: " + page.error + side_.hint(page.status));
    return std::move(page.rows);
  }

  /// The page's rows, in key order.
  std::vector<row> to_rows(json::array data, const std::string& cursor) {
    const auto& where = side_.target().where;
    std::vector<row> rows;
    std::string last = cursor;
    for (auto& e : data) {
      if (!e.is_object()) throw copy_error(where + ": BTQL row is not an object");
      auto& o = e.as_object();
      const auto* k = o.if_contains("_pagination_key");
      const auto* id = o.if_contains("id");
      if (!k || !k->is_string() || k->as_string().empty() || !id || !id->is_string())
        throw copy_error(where + ": BTQL row without a string id and _pagination_key: " + json::serialize(o).substr(0, 200));
      row r;
      r.cursor = std::string(k->as_string());
      if (r.cursor <= last) throw copy_error(where + ": BTQL keys did not advance past " + last);
      last = r.cursor;
      r.source_id = std::string(id->as_string());
      r.fields = std::move(o);
      rows.push_back(std::move(r));
    }
    return rows;
  }

  bt_side side_;
  std::string object_id_;
  std::optional<streams::page_reader> reader_;
};

/// The fields a row of the object has (reference-tool.md §3.3, as the stream rewriter keeps them).
const std::set<std::string, std::less<>>& row_fields(stream_kind k) {
  static const std::set<std::string, std::less<>> events{
      "input", "output", "expected", "error", "scores", "metadata", "tags", "metrics", "context", "span_attributes",
      "id", "created", "origin", "facets", "_object_delete", "_is_merge", "_merge_paths", "_array_delete",
      "_parent_id", "span_id", "root_span_id", "span_parents"};
  static const std::set<std::string, std::less<>> dataset{
      "input", "expected", "metadata", "tags", "id", "created", "origin", "facets", "_object_delete", "_is_merge",
      "_merge_paths", "_array_delete", "_parent_id", "span_id", "root_span_id", "span_parents"};
  return k == stream_kind::dataset ? dataset : events;
}

bool is_system_field(std::string_view f) {
  return f.starts_with("_") || f == "org_id" || f == "project_id" || f == "log_id" || f == "experiment_id" ||
         f == "dataset_id" || f == "is_root" || f == "comments" || f == "audit_data";
}

class braintrust_sink final : public sink {
 public:
  braintrust_sink(const uri& u, const connector_context& ctx) : side_(u, ctx.dest_side, ctx.metrics, true) {
    project_id_ = side_.project_id();
    if (side_.target().kind == stream_kind::project_logs) object_id_ = project_id_;
    else object_id_ = side_.object_id(project_id_);
  }

  bool has_table() const override { return true; }  // (a missing dataset or experiment is created, not rolled back)

  json::object as_stored(json::object row) const override {
    const auto& kind = side_.target().kind;
    json::object out;
    json::object extra;
    for (auto& [k, v] : row) {
      if (k == "id") {
        out["id"] = v.is_string() ? v : json::value(json::serialize(v));
      } else if (row_fields(kind).count(k)) {
        out[k] = std::move(v);
      } else if (!is_system_field(k) && !v.is_null()) {
        extra[k] = std::move(v);
      }
    }
    if (!extra.empty()) {
      auto& m = out["metadata"];
      if (m.is_null()) m = json::object{};
      if (!m.is_object()) throw copy_error(side_.target().where + ": row id=" + json::serialize(out["id"]) +
                                           ": fields " + json::serialize(extra).substr(0, 120) +
                                           " go under metadata, which is not an object");
      for (auto& [k, v] : extra) {
        if (m.as_object().contains(k))
          throw copy_error(side_.target().where + ": row id=" + json::serialize(out["id"]) + ": field '" + std::string(k) +
                           "' goes under metadata, which has a '" + std::string(k) + "' already");
        m.as_object()[k] = std::move(v);
      }
    }
    return out;
  }

  void write_batch(std::uint64_t seq, const std::vector<json::object>& rows) override {
    const auto& t = side_.target();
    check_unique_keys(rows, "id", t.where);
    if (object_id_.empty()) object_id_ = side_.create_object(project_id_);
    if (!limits_) {
      const auto stated = side_.wait(side_.api().version());
      limits_.emplace();
      limits_->max_rows = 1'000'000;
      limits_->max_bytes = static_cast<std::size_t>(static_cast<double>(stated.value_or(6u << 20)) * 0.75);
    }
    streams::batcher b(*limits_, 1);
    std::vector<streams::batch> out;
    for (std::size_t i = 0; i < rows.size(); ++i) {
      auto o = as_stored(rows[i]);
      if (t.kind == stream_kind::dataset) o["dataset_id"] = object_id_;
      else if (t.kind == stream_kind::experiment) o["experiment_id"] = object_id_;
      else { o["project_id"] = object_id_; o["log_id"] = "g"; }
      streams::event_row r;
      r.id = std::string(o.at("id").as_string());
      r.key = std::to_string(i);
      r.json = json::serialize(o);
      b.add(std::move(r), out);
    }
    if (auto last = b.flush()) out.push_back(std::move(*last));
    for (auto& part : out) send_range(seq, part.rows, 0, part.rows.size());
  }

 private:
  /// Rows [begin, end) in one POST /logs3 (the client retries throttled and transient answers); a 413
  /// halves the range; a lone row refused is one line naming it (the copy stops: nothing is skipped).
  void send_range(std::uint64_t seq, const std::vector<streams::event_row>& rows, std::size_t begin, std::size_t end) {
    const auto& where = side_.target().where;
    auto r = side_.wait(side_.api().logs3(streams::logs3_body(rows, begin, end)));
    if (r.ok()) {
      if (auto why = streams::logs3_ack_problem(r.body); !why.empty())
        throw copy_error(where + ": batch " + std::to_string(seq) + ": POST /logs3 answered HTTP " + std::to_string(r.status) +
                         " but " + why + " (the batch is not counted as written)");
      return;
    }
    if (r.status == 413 && end - begin >= 2) {
      auto [l, rr] = streams::split_range(begin, end);
      send_range(seq, rows, l.first, l.second);
      send_range(seq, rows, rr.first, rr.second);
      return;
    }
    throw copy_error(where + ": batch " + std::to_string(seq) + (end - begin == 1 ? " row id=" + rows[begin].id : "") +
                     ": POST /logs3 failed: " + r.error + side_.hint(r.status));
  }

  bt_side side_;
  std::string project_id_, object_id_;
  std::optional<streams::batch_limits> limits_;
};

}  // namespace

std::unique_ptr<source> open_braintrust_source(const uri& u, const connector_context& ctx) {
  return std::make_unique<braintrust_source>(u, ctx);
}
std::unique_ptr<sink> open_braintrust_sink(const uri& u, const connector_context& ctx) {
  return std::make_unique<braintrust_sink>(u, ctx);
}

}  // namespace ferry::pipelines::copy
