// Over-the-wire tests of the emulator's event side, SDK calls, every fault kind and `ferry seed`, with the
// production http_client / api_client against the whole emulator on 127.0.0.1:0.
#include "emulator/seed.hpp"

#include "wire_support.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/array.hpp>

#include <map>
#include <set>

using namespace ferry::test::wire_names;

namespace {

/// A /logs3 body of `n` rows for one object; `extra` fields are added to every row.
std::string logs3_rows(const json::object& object_ids, int first, int n, std::size_t filler = 10,
                       const json::object& extra = {}) {
  json::array rows;
  for (int i = first; i < first + n; ++i) {
    json::object r = object_ids;
    r["id"] = "row-" + std::to_string(i);
    r["input"] = jo("n", i, "text", std::string(filler, 'x'));
    for (const auto& kv : extra) r[kv.key()] = kv.value();
    rows.push_back(std::move(r));
  }
  return json::serialize(jo("rows", std::move(rows), "api_version", 2));
}

std::string text_query(std::string_view from, std::string_view after_key, int limit) {
  std::string q = "select: *\nfrom: " + std::string(from) + " spans\n";
  if (!after_key.empty()) q += "filter: _pagination_key > '" + std::string(after_key) + "'\n";
  return q + "sort: _pagination_key asc\nlimit: " + std::to_string(limit);
}

}  // namespace

TEST_CASE("wire events: /logs3 writes, _is_merge deep merge, _object_delete, then BTQL reads them back") {
  wire w;
  w.run([&]() -> asio::awaitable<void> {
    const auto o = co_await make_objects(*w.api, "events-project");
    const json::object logs = jo("project_id", o.project, "log_id", "g");
    auto wrote = co_await w.api->logs3(logs3_rows(logs, 0, 3));
    REQUIRE_MESSAGE(wrote.ok(), wrote.error);
    CHECK(json::parse(wrote.body).at("ids").as_array().size() == 3);

    json::object merge = logs;
    merge["id"] = "row-0";
    merge["_is_merge"] = true;
    merge["metadata"] = jo("merged", true);
    json::object del = logs;
    del["id"] = "row-1";
    del["_object_delete"] = true;
    auto second = co_await w.api->logs3(
        json::serialize(jo("rows", ja(merge, del), "api_version", 2)));
    REQUIRE(second.ok());

    auto page = co_await w.api->btql(text_query("project_logs('" + o.project + "')", "", 100));
    REQUIRE_MESSAGE(page.ok(), page.error);
    std::map<std::string, json::object> rows;
    for (auto& r : page.rows) rows[str(r.at("id"))] = r.as_object();
    REQUIRE(rows.size() == 2);
    CHECK(rows.contains("row-2"));
    const auto& merged = rows.at("row-0");
    CHECK(merged.at("metadata").at("merged") == true);
    CHECK(merged.at("input").at("n") == 0);  // the merge kept the original fields
    for (std::string_view f : {"id", "_xact_id", "created", "org_id", "project_id", "log_id", "span_id", "root_span_id",
                               "_pagination_key"})
      CHECK_MESSAGE(merged.contains(f), "missing " << f);
    CHECK(str(merged.at("_xact_id")).size() == str(rows.at("row-2").at("_xact_id")).size());
    CHECK(str(merged.at("_xact_id")) > str(rows.at("row-2").at("_xact_id")));

    auto unknown = co_await w.api->logs3(logs3_rows(jo("dataset_id", "00000000-0000-4000-8000-000000000000"), 0, 1));
    CHECK(unknown.status == 404);
    CHECK(unknown.outcome == io_outcome::not_found);
  }());
}

TEST_CASE("wire events: REST insert row_ids and the fetch cursor loop in both forms") {
  wire w;
  w.run([&]() -> asio::awaitable<void> {
    const auto o = co_await make_objects(*w.api, "events-project");
    json::array events;
    for (int i = 0; i < 5; ++i) events.push_back(jo("id", "ev-" + std::to_string(i), "input", i));
    auto ins = co_await w.api->post_json("/v1/experiment/" + o.experiment + "/insert", jo("events", events));
    REQUIRE_MESSAGE(ins.ok(), ins.error);
    const auto& row_ids = ins.json.at("row_ids").as_array();
    REQUIRE(row_ids.size() == 5);
    CHECK(row_ids[3] == "ev-3");

    std::set<std::string> seen;
    json::object req = jo("limit", 2);
    for (int page = 0; page < 10; ++page) {
      auto f = co_await w.api->post_json("/v1/experiment/" + o.experiment + "/fetch", req);
      REQUIRE(f.ok());
      for (const auto& e : f.json.at("events").as_array()) {
        CHECK(str(e.at("experiment_id")) == o.experiment);
        seen.insert(str(e.at("id")));
      }
      auto* c = f.json.as_object().if_contains("cursor");
      if (!c || c->is_null()) break;
      req["cursor"] = *c;
    }
    CHECK(seen.size() == 5);
    auto get_form = co_await w.api->get_json("/v1/experiment/" + o.experiment + "/fetch", qp("limit", "10"));
    REQUIRE(get_form.ok());
    CHECK(get_form.json.at("events").as_array().size() == 5);
    {
      auto aw1 = co_await w.api->post_json("/v1/dataset/00000000-0000-4000-8000-000000000000/insert",
                                     jo("events", ja()));
      CHECK(aw1
              .status == 404);
    }
  }());
}

TEST_CASE("wire btql: text form keyset paging and JSON-AST cursor paging both reach the end exactly once") {
  wire w;
  w.run([&]() -> asio::awaitable<void> {
    const auto o = co_await make_objects(*w.api, "events-project");
    for (int b = 0; b < 5; ++b)
      {
        auto aw2 = co_await w.api->logs3(logs3_rows(jo("dataset_id", o.dataset), b * 5, 5));
        REQUIRE(aw2.ok());
      }

    std::vector<std::string> keys, ids;
    std::string last;
    for (int page = 0; page < 20; ++page) {
      auto r = co_await w.api->btql(text_query("dataset('" + o.dataset + "')", last, 7));
      REQUIRE_MESSAGE(r.ok(), r.error);
      if (r.rows.empty()) break;
      for (const auto& row : r.rows) {
        keys.push_back(str(row.at("_pagination_key")));
        ids.push_back(str(row.at("id")));
      }
      last = keys.back();
    }
    CHECK(ids.size() == 25);
    CHECK(std::set<std::string>(ids.begin(), ids.end()).size() == 25);
    CHECK(std::is_sorted(keys.begin(), keys.end()));

    std::set<std::string> ast_ids;
    std::optional<std::string> cursor;
    int pages = 0;
    for (; pages < 20; ++pages) {
      json::object q = json::parse(R"({"select":[{"op":"star"}],"from":{"op":"function","name":{"op":"ident",
          "name":["dataset"]},"args":[{"op":"literal","value":""}]},"limit":10})").as_object();
      q["from"].as_object()["args"].as_array()[0].as_object()["value"] = o.dataset;
      if (cursor) q["cursor"] = *cursor;
      auto r = co_await w.api->btql_raw(json::serialize(jo("query", q, "fmt", "json")));
      REQUIRE_MESSAGE(r.ok(), r.error);
      for (const auto& row : r.rows) CHECK(ast_ids.insert(str(row.at("id"))).second);
      cursor = r.cursor;
      if (!cursor) break;
    }
    CHECK(ast_ids.size() == 25);
    CHECK(pages == 2);  // 10 + 10 + 5: the short last page has a null cursor

    auto bad = co_await w.api->btql("select: *\nfrom: nowhere('x') spans");
    CHECK(bad.status == 400);
    CHECK(bad.outcome == io_outcome::fatal);
  }());
}

TEST_CASE("wire events: /version, 413 above logs3_payload_max_bytes, and the overflow upload") {
  wire w;  // logs3_payload_max_bytes = 64 KiB
  w.run([&]() -> asio::awaitable<void> {
    const auto o = co_await make_objects(*w.api, "events-project");
    const auto max_bytes = co_await w.api->version();
    CHECK(max_bytes == std::optional<std::uint64_t>(64 * 1024));
    const auto big = logs3_rows(jo("dataset_id", o.dataset), 0, 40, 2000);
    REQUIRE(big.size() > 64 * 1024);
    auto direct = co_await w.api->logs3(big);
    CHECK(direct.status == 413);
    CHECK(direct.outcome == io_outcome::fatal);
    CHECK(direct.attempts == 1);

    json::array descr;
    for (int i = 0; i < 40; ++i)
      descr.push_back(jo("object_ids", jo("dataset_id", o.dataset), "is_delete", false, "input_row", jo("byte_size", 2000)));
    auto ov = co_await w.api->post_json(
        "/logs3/overflow", jo("content_type", "application/json", "size_bytes", big.size(), "rows", descr));
    REQUIRE_MESSAGE(ov.ok(), ov.error);
    std::vector<std::pair<std::string, std::string>> headers;
    if (auto* h = ov.json.as_object().if_contains("headers"); h && h->is_object())
      for (const auto& kv : h->as_object()) headers.emplace_back(kv.key(), str(kv.value()));
    auto put = co_await w.api->signed_put(str(ov.json.at("signedUrl")), big, headers);
    REQUIRE_MESSAGE(put.ok(), put.error);
    auto ingest = co_await w.api->logs3(json::serialize(jo("rows", jo("type", "logs3_overflow", "key", ov.json.at("key"), "size_bytes", big.size()), "api_version", 2)));
    REQUIRE_MESSAGE(ingest.ok(), ingest.error);
    auto rows = co_await w.api->btql(text_query("dataset('" + o.dataset + "')", "", 1000));
    CHECK(rows.rows.size() == 40);
  }());
}

TEST_CASE("wire attachments: upload URL, signed PUT without auth, status, download URL, signed GET") {
  wire w;
  w.run([&]() -> asio::awaitable<void> {
    const auto org_id = w.server.emu.orgs()[0].org_id;
    auto up = co_await w.api->attachment_upload_url("att-1", "notes.txt", "text/plain", org_id);
    REQUIRE_MESSAGE(up.ok(), up.error);
    const auto signed_url = str(up.json.at("signedUrl"));
    CHECK(signed_url.rfind(w.base_url(), 0) == 0);
    std::vector<std::pair<std::string, std::string>> headers;
    for (const auto& kv : up.json.at("headers").as_object()) headers.emplace_back(kv.key(), str(kv.value()));
    {
      auto aw3 = co_await w.api->signed_put(signed_url, "attachment bytes", headers);
      REQUIRE(aw3.ok());
    }
    auto st = co_await w.api->attachment_status("att-1", org_id, "done");
    REQUIRE_MESSAGE(st.ok(), st.error);
    auto info = co_await w.api->attachment_info("att-1", "notes.txt", "text/plain", org_id);
    REQUIRE(info.ok());
    CHECK(str(info.json.at("status").at("upload_status")) == "done");
    auto got = co_await w.api->signed_get(str(info.json.at("downloadUrl")));
    REQUIRE(got.ok());
    CHECK(got.body == "attachment bytes");
    auto tampered = co_await w.api->signed_get(str(info.json.at("downloadUrl")) + "x");
    CHECK(tampered.status == 403);
    {
      auto aw4 = co_await w.api->attachment_info("no-such", "f", "text/plain", org_id);
      CHECK(aw4.status == 404);
    }
  }());
}

TEST_CASE("wire sdk: apikey login and project / dataset / experiment register") {
  wire w;
  w.run([&]() -> asio::awaitable<void> {
    auto login = co_await w.api->post_json("/api/apikey/login", json::object{});
    REQUIRE(login.ok());
    const auto& info = login.json.at("org_info").at(0);
    CHECK(str(info.at("name")) == "wire-org");
    CHECK(str(info.at("api_url")) == w.base_url());
    auto proj = co_await w.api->post_json("/api/project/register", jo("project_name", "sdk-project"));
    REQUIRE(proj.ok());
    const auto pid = str(proj.json.at("project").at("id"));
    auto ds = co_await w.api->post_json("/api/dataset/register",
                                        jo("project_name", "sdk-project", "dataset_name", "sdk-ds"));
    REQUIRE(ds.ok());
    CHECK(str(ds.json.at("project").at("id")) == pid);
    auto ex = co_await w.api->post_json("/api/experiment/register",
                                        jo("project_id", pid, "experiment_name", "sdk-exp"));
    REQUIRE(ex.ok());
    CHECK(str(ex.json.at("experiment").at("project_id")) == pid);
    // What the SDK registered is what the REST API lists.
    {
      auto aw5 = co_await w.api->list_objects("/v1/experiment", qp("project_id", pid));
      CHECK(aw5.size() == 1);
    }
    {
      auto aw6 = co_await w.api->list_objects("/v1/dataset", qp("project_id", pid));
      CHECK(aw6.size() == 1);
    }
    {
      auto aw7 = co_await w.api->post_json("/api/project/register", jo("project_name", "x", "org_id", "other"));
      CHECK(aw7
              .status == 403);
    }
  }());
}

// ---- faults on the wire ----------------------------------------------------------------------------

TEST_CASE("wire faults: 429 with Retry-After is seen by the client, honoured, and retried to success") {
  wire w(wire_config({parse_fault_spec("path=/v1/project,kind=status,status=429,retry_after=2,count=2")}));
  w.run([&]() -> asio::awaitable<void> {
    auto once = co_await w.api->get_json("/v1/project", {}, no_retry());
    CHECK(once.status == 429);
    CHECK(once.outcome == io_outcome::throttled);
    REQUIRE(once.retry_after.has_value());
    CHECK(*once.retry_after == std::chrono::seconds(2));
    auto retried = co_await w.api->get_json("/v1/project");
    CHECK(retried.ok());
    CHECK(retried.attempts == 2);
  }());
  CHECK(w.clock.sleep_count() == 1);
  CHECK(w.clock.slept_total() >= std::chrono::seconds(2));
  CHECK(w.server.emu.faults().stats().faults_by_kind.at("status") == 2);
}

TEST_CASE("wire faults: BTQL above the LIMIT threshold gets 504 or 500 (transient); below it is served") {
  wire w(wire_config({parse_fault_spec("path=/btql,kind=btql_limit,limit_above=100,status=504")}));
  w.run([&]() -> asio::awaitable<void> {
    const auto o = co_await make_objects(*w.api, "events-project");
    const auto from = "dataset('" + o.dataset + "')";
    auto big = co_await w.api->btql(text_query(from, "", 500), no_retry());
    CHECK(big.status == 504);
    CHECK(big.outcome == io_outcome::transient);
    auto ok = co_await w.api->btql(text_query(from, "", 100), no_retry());
    CHECK(ok.ok());
  }());
  wire w500(wire_config({parse_fault_spec("path=/btql,kind=btql_limit,limit_above=10,status=500")}));
  w500.run([&]() -> asio::awaitable<void> {
    auto r = co_await w500.api->btql("select: *\nfrom: dataset('x') spans\nlimit: 11", no_retry());
    CHECK(r.status == 500);
    CHECK(r.outcome == io_outcome::transient);
  }());
}

TEST_CASE("wire faults: 413 above a request size is fatal; smaller requests pass") {
  wire w(wire_config({parse_fault_spec("method=POST,path=/logs3,kind=size,max_bytes=2000")}));
  w.run([&]() -> asio::awaitable<void> {
    const auto o = co_await make_objects(*w.api, "events-project");
    auto big = co_await w.api->logs3(logs3_rows(jo("dataset_id", o.dataset), 0, 10, 500));
    CHECK(big.status == 413);
    CHECK(big.outcome == io_outcome::fatal);
    CHECK(big.attempts == 1);
    {
      auto aw8 = co_await w.api->logs3(logs3_rows(jo("dataset_id", o.dataset), 0, 1));
      CHECK(aw8.ok());
    }
  }());
}

TEST_CASE("wire faults: added latency is served late - a short client timeout classifies it timed_out") {
  wire w(wire_config({parse_fault_spec("path=/v1/role,kind=latency,latency_ms=300")}));
  w.run([&]() -> asio::awaitable<void> {
    auto late = co_await w.api->get_json("/v1/role", {},
                                         no_retry(std::chrono::milliseconds(30)));
    CHECK(late.outcome == io_outcome::timed_out);
    CHECK(late.status == 0);
    auto served = co_await w.api->get_json("/v1/role");
    CHECK(served.ok());
  }());
  CHECK(w.server.emu.faults().stats().faults_by_kind.at("latency") == 2);
}

TEST_CASE("wire faults: dropped connections and truncated bodies are transient and retried") {
  wire w(wire_config({parse_fault_spec("path=/v1/group,kind=drop,count=2"),
                      parse_fault_spec("path=/v1/project,kind=truncate,count=2")}));
  w.run([&]() -> asio::awaitable<void> {
    // Fresh connections, so that the client's silent retry of a stale keep-alive connection cannot apply.
    w.http->close_idle();
    auto dropped = co_await w.api->get_json("/v1/group", {}, no_retry());
    CHECK(dropped.outcome == io_outcome::transient);
    CHECK(dropped.status == 0);
    w.http->close_idle();
    auto retried = co_await w.api->get_json("/v1/group");
    CHECK(retried.ok());
    CHECK(retried.attempts == 2);

    w.http->close_idle();
    auto cut = co_await w.api->get_json("/v1/project", {}, no_retry());
    CHECK(cut.outcome == io_outcome::transient);
    w.http->close_idle();
    auto whole = co_await w.api->get_json("/v1/project");
    CHECK(whole.ok());
    CHECK(whole.attempts == 2);
  }());
  const auto stats = w.server.emu.faults().stats();
  CHECK(stats.faults_by_kind.at("drop") == 2);
  CHECK(stats.faults_by_kind.at("truncate") == 2);
}

// ---- ferry seed over HTTP ---------------------------------------------------------------------------

namespace {

ferry::emulator::seed_options small_seed() {
  ferry::emulator::seed_options o;
  o.projects = 2;
  o.events_per_project = 40;
  o.experiments_per_project = 2;
  o.datasets_per_project = 1;
  o.events_per_experiment = 10;
  o.events_per_dataset = 8;
  o.seed = 11;
  o.attachment_ratio = 0.1;
  o.large_payload_ratio = 0.05;
  o.batch_rows = 16;
  return o;
}

struct seeded_over_http {
  wire w;
  ferry::emulator::seed_summary summary;
  std::map<std::string, std::size_t> objects;  // type -> count
  std::map<std::string, std::size_t> rows;     // "<type>:<name>" -> live rows
  std::string snapshot;                        // every listing and every stream, ids included

  explicit seeded_over_http(std::vector<ferry::emulator::fault_spec> faults = {}) : w(config(std::move(faults))) {
    auto opts = small_seed();
    opts.url = w.base_url();
    opts.api_key = ferry::test::wire_key;
    w.run([](seeded_over_http& self, ferry::emulator::seed_options o) -> asio::awaitable<void> {
      self.summary = co_await ferry::emulator::seed_org(ferry::emulator::http_transport(*self.w.http, o.api_key), o);
      co_await self.read_back();
    }(*this, std::move(opts)));
  }
  static ferry::emulator::emulator_config config(std::vector<ferry::emulator::fault_spec> faults) {
    auto c = wire_config(std::move(faults));
    c.id_seed = 99;
    c.logs3_payload_max_bytes = 6u << 20;
    return c;
  }
  asio::awaitable<void> read_back() {
    for (std::string type : {"project", "experiment", "dataset", "prompt", "function", "project_score", "project_tag",
                             "span_iframe", "project_automation", "role", "group", "ai_secret"}) {
      auto list = co_await w.api->list_objects("/v1/" + type, {}, 7);
      objects[type] = list.size();
      for (const auto& o : list) snapshot += json::serialize(o) + "\n";
      if (type != "project" && type != "experiment" && type != "dataset") continue;
      for (const auto& o : list) {
        const auto from = (type == "project" ? std::string("project_logs") : type) + "('" + str(o.at("id")) + "')";
        std::string last;
        auto& n = rows[type + ":" + str(o.at("name"))];
        for (;;) {
          auto page = co_await w.api->btql(text_query(from, last, 25));
          REQUIRE_MESSAGE(page.ok(), page.error);
          if (page.rows.empty()) break;
          n += page.rows.size();
          for (const auto& r : page.rows) snapshot += json::serialize(r) + "\n";
          last = str(page.rows.back().at("_pagination_key"));
        }
      }
    }
    auto acls = co_await w.api->list_objects("/v1/acl/list_org", {});
    objects["acl"] = acls.size();
    for (const auto& a : acls) snapshot += json::serialize(a) + "\n";
  }
};

}  // namespace

TEST_CASE("wire seed: ferry seed over real sockets fills every type and stream, deterministically") {
  seeded_over_http a;
  const auto& s = a.summary;
  CHECK(a.objects.at("project") == 2);
  CHECK(a.objects.at("experiment") == 4);
  CHECK(a.objects.at("dataset") == 2);
  CHECK(a.objects.at("function") == s.functions);
  CHECK(a.objects.at("prompt") == s.prompts);
  CHECK(a.objects.at("acl") == s.acls);
  for (auto type : {"project_score", "project_tag", "span_iframe", "project_automation", "role", "group", "ai_secret"})
    CHECK_MESSAGE(a.objects.at(type) > 0, type);
  std::size_t logs = 0, exp_rows = 0, ds_rows = 0;
  for (const auto& [k, n] : a.rows) {
    CHECK_MESSAGE(n > 0, k);
    if (k.starts_with("project:")) logs += n;
    if (k.starts_with("experiment:")) exp_rows += n;
    if (k.starts_with("dataset:")) ds_rows += n;
  }
  // Merges update rows in place and deletes remove them: each dataset loses one row to a delete, the
  // project logs lose the rest of the deletes.
  CHECK(ds_rows == 2 * (8 - 1));
  CHECK(logs == 2 * 40 - (s.deletes - 2));
  CHECK(exp_rows == 4 * 10);
  CHECK(s.log_rows + s.experiment_rows + s.dataset_rows == 2 * 40 + 4 * 10 + 2 * (8 + 2) + (s.merges - 2) + (s.deletes - 2));
  CHECK(s.attachments > 0);

  // The same seed into another emulator with the same id seed: the same organization, byte for byte.
  seeded_over_http b;
  CHECK(b.summary.line() == s.line());
  CHECK(b.snapshot == a.snapshot);
}

TEST_CASE("wire seed: throttled and dropped calls are retried and give the same organization as a clean run") {
  seeded_over_http clean;
  seeded_over_http faulty({parse_fault_spec("path=/logs3,kind=status,status=429,retry_after=0,count=3"),
                           parse_fault_spec("path=/v1/,kind=drop,count=2")});
  const auto stats = faulty.w.server.emu.faults().stats();
  CHECK(stats.faults_by_kind.at("status") == 3);
  CHECK(stats.faults_by_kind.at("drop") == 2);
  CHECK(faulty.summary.requests > clean.summary.requests);
  CHECK(faulty.snapshot == clean.snapshot);
}
