// Over-the-wire tests of the event side's fidelity to the real service (issue 15): versioned reads,
// feedback (comments, audit_data, unknown ids), _array_delete, /xact-id, dataset restore and snapshots,
// experiment summaries with scores, and the BTQL the SDKs and CLIs send. The whole emulator runs on
// 127.0.0.1:0 and the production api_client speaks to it.
#include "wire_support.hpp"

#include <boost/json.hpp>

#include <map>
#include <set>
#include <tuple>

using namespace ferry::test::wire_names;

namespace {

asio::awaitable<void> logs3(ferry::transports::api_client& api, json::array rows) {
  auto r = co_await api.logs3(json::serialize(jo("rows", std::move(rows), "api_version", 2)));
  REQUIRE_MESSAGE(r.ok(), r.body);
}

/// POST /btql with this query (text or AST) and optional version; returns the whole reply (REQUIREs 200).
asio::awaitable<json::object> btql_value(ferry::transports::api_client& api, json::value query, std::string version) {
  json::object body = jo("query", query, "fmt", "json");
  if (!version.empty()) body["version"] = version;
  auto r = co_await api.post_json("/btql", body);
  REQUIRE_MESSAGE(r.ok(), r.body);
  co_return r.json.as_object();
}
asio::awaitable<json::object> btql(ferry::transports::api_client& api, std::string text, std::string version = {}) {
  co_return co_await btql_value(api, json::string(text), std::move(version));
}
asio::awaitable<json::object> btql(ferry::transports::api_client& api, json::object ast, std::string version = {}) {
  co_return co_await btql_value(api, std::move(ast), std::move(version));
}

std::map<std::string, json::object> by_id(const json::value& rows) {
  std::map<std::string, json::object> out;
  for (const auto& r : rows.as_array()) out[str(r.at("id"))] = r.as_object();
  return out;
}

std::string max_xact(const json::value& rows) {
  std::string best;
  for (const auto& r : rows.as_array()) best = std::max(best, str(r.at("_xact_id")));
  return best;
}

}  // namespace

TEST_CASE("wire fidelity: version= returns each row as it was then, through BTQL (both forms) and fetch") {
  wire w;
  w.run([&]() -> asio::awaitable<void> {
    const auto o = co_await make_objects(*w.api, "fidelity");
    const json::object ds = jo("dataset_id", o.dataset);
    json::object a = ds, b = ds, c = ds;
    a["id"] = "a";
    a["input"] = "a1";
    b["id"] = "b";
    b["input"] = "b1";
    c["id"] = "c";
    c["input"] = "c1";
    co_await logs3(*w.api, ja(a, b, c));
    const std::string from = "dataset('" + o.dataset + "')";
    auto first = co_await btql(*w.api, "select: *\nfrom: " + from + " spans");
    const std::string v1 = max_xact(first.at("data"));

    // After v1: a replaced, b merged, c deleted, d inserted, feedback on b.
    json::object a2 = ds, b2 = ds, c2 = ds, d = ds;
    a2["id"] = "a";
    a2["input"] = "a2";
    b2["id"] = "b";
    b2["_is_merge"] = true;
    b2["expected"] = "b-expected";
    c2["id"] = "c";
    c2["_object_delete"] = true;
    d["id"] = "d";
    d["input"] = "d1";
    co_await logs3(*w.api, ja(a2, b2, c2, d));
    auto fb = co_await w.api->post_json("/v1/dataset/" + o.dataset + "/feedback",
                                        jo("feedback", ja(jo("id", "b", "tags", ja("t")))));
    REQUIRE_MESSAGE(fb.ok(), fb.body);

    auto now = by_id((co_await btql(*w.api, "select: *\nfrom: " + from + " spans")).at("data"));
    CHECK(now.size() == 3);
    CHECK(str(now.at("a").at("input")) == "a2");
    CHECK(now.at("b").at("tags") == ja("t"));

    // Pinned at v1, the text form, the JSON-AST form (the SDK) and the fetch endpoint agree.
    auto text = by_id((co_await btql(*w.api, "select: *\nfrom: " + from + " spans", v1)).at("data"));
    const json::object ast_q = jo("select", ja(jo("op", "star")), "from",
                                  jo("op", "function", "name", jo("op", "ident", "name", ja("dataset")), "args",
                                     ja(jo("op", "literal", "value", o.dataset))));
    auto ast = by_id((co_await btql(*w.api, ast_q, v1)).at("data"));
    auto fetched = co_await w.api->get_json("/v1/dataset/" + o.dataset + "/fetch", qp("version", v1));
    REQUIRE(fetched.ok());
    auto fetch_rows = by_id(fetched.json.at("events"));
    for (const auto* rows : {&text, &ast, &fetch_rows}) {
      REQUIRE(rows->size() == 3);
      CHECK(str(rows->at("a").at("input")) == "a1");
      CHECK_FALSE(rows->at("b").contains("expected"));
      CHECK_FALSE(rows->at("b").contains("tags"));  // feedback did not move b out of v1
      CHECK(str(rows->at("c").at("input")) == "c1");
      CHECK_FALSE(rows->contains("d"));
      for (const auto& [id, r] : *rows) CHECK(str(r.at("_xact_id")) <= v1);
    }
    // Paging a pinned read with limit 1 meets every row once.
    std::set<std::string> seen;
    std::optional<std::string> cursor;
    for (int page = 0; page < 10; ++page) {
      json::object q = ast_q;
      q["limit"] = 1;
      if (cursor) q["cursor"] = *cursor;
      auto r = co_await btql(*w.api, q, v1);
      for (const auto& row : r.at("data").as_array()) CHECK(seen.insert(str(row.at("id"))).second);
      if (r.at("cursor").is_null()) break;
      cursor = str(r.at("cursor"));
    }
    CHECK(seen == std::set<std::string>{"a", "b", "c"});
    auto bad = co_await w.api->post_json("/btql", jo("query", "select: *\nfrom: " + from, "version", "latest"));
    CHECK(bad.status == 400);
  }());
}

TEST_CASE("wire fidelity: feedback keeps metadata out of the row, shows comments and audit_data, refuses unknown ids") {
  wire w;
  w.run([&]() -> asio::awaitable<void> {
    const auto o = co_await make_objects(*w.api, "fidelity");
    const json::object ex = jo("experiment_id", o.experiment);
    json::object r1 = ex, r2 = ex;
    r1["id"] = "r1";
    r1["metadata"] = jo("model", "m");
    r1["scores"] = jo("acc", 0.5);
    r2["id"] = "r2";
    co_await logs3(*w.api, ja(r1, r2));

    // The REST feedback endpoint.
    auto fb = co_await w.api->post_json(
        "/v1/experiment/" + o.experiment + "/feedback",
        jo("feedback", ja(jo("id", "r1", "scores", jo("human", 1), "comment", "looks right", "metadata",
                             jo("user_id", "u-1"), "source", "app"))));
    REQUIRE_MESSAGE(fb.ok(), fb.body);
    // What the SDK's logFeedback sends through /logs3: a merge row and a comment row.
    json::object merge = ex, comment = ex;
    merge["id"] = "r2";
    merge["_is_merge"] = true;
    merge["scores"] = jo("human", 0);
    merge["_audit_source"] = "external";
    merge["_audit_metadata"] = jo("user_id", "u-2");
    comment["id"] = "comment-1";
    comment["created"] = "2024-05-01T00:00:00.000Z";
    comment["origin"] = jo("id", "r2");
    comment["comment"] = jo("text", "wrong");
    comment["_audit_source"] = "external";
    co_await logs3(*w.api, ja(merge, comment));

    auto rows = by_id((co_await btql(*w.api, "select: *\nfrom: experiment('" + o.experiment + "') spans")).at("data"));
    REQUIRE(rows.size() == 2);  // the comment is not a row of its own
    const auto& a = rows.at("r1");
    CHECK(a.at("scores") == jo("acc", 0.5, "human", 1));
    CHECK(a.at("metadata") == jo("model", "m"));  // feedback metadata is not the row's metadata
    REQUIRE(a.at("comments").as_array().size() == 1);
    CHECK(a.at("comments").at(0).at("comment") == jo("text", "looks right"));
    CHECK(str(a.at("comments").at(0).at("source")) == "app");
    REQUIRE(a.at("audit_data").as_array().size() == 1);
    const auto& audit = a.at("audit_data").at(0);
    CHECK(str(audit.at("source")) == "app");
    CHECK(audit.at("metadata") == jo("user_id", "u-1"));
    CHECK(str(audit.at("audit_data").at("action")) == "merge");
    CHECK(str(audit.at("_xact_id")) == str(a.at("_xact_id")));
    const auto& b = rows.at("r2");
    CHECK(b.at("scores") == jo("human", 0));
    CHECK_FALSE(b.contains("_audit_source"));
    CHECK(b.at("comments").at(0).at("comment") == jo("text", "wrong"));
    CHECK(str(b.at("comments").at(0).at("id")) == "comment-1");
    CHECK(b.at("audit_data").at(0).at("metadata") == jo("user_id", "u-2"));

    // Unknown ids are refused and leave no phantom row; so are fields the spec does not list.
    auto unknown = co_await w.api->post_json("/v1/experiment/" + o.experiment + "/feedback",
                                             jo("feedback", ja(jo("id", "nope", "scores", jo("x", 1)))));
    CHECK(unknown.status == 400);
    CHECK(unknown.body.find("nope") != std::string::npos);
    json::object orphan = comment;
    orphan["origin"] = jo("id", "nope");
    auto orphan_r = co_await w.api->logs3(json::serialize(jo("rows", ja(orphan), "api_version", 2)));
    CHECK(orphan_r.status == 400);
    auto ds_scores = co_await w.api->post_json("/v1/dataset/" + o.dataset + "/feedback",
                                               jo("feedback", ja(jo("id", "x", "scores", jo("x", 1)))));
    CHECK(ds_scores.status == 400);
    auto after = co_await btql(*w.api, "select: *\nfrom: experiment('" + o.experiment + "') spans");
    CHECK(after.at("data").as_array().size() == 2);
    // Clients cannot write the server's comments/audit_data.
    json::object forged = ex;
    forged["id"] = "r3";
    forged["comments"] = ja(jo("comment", jo("text", "forged")));
    forged["audit_data"] = ja(jo("source", "app"));
    co_await logs3(*w.api, ja(forged));
    auto r3 = by_id((co_await btql(*w.api, "select: *\nfrom: experiment('" + o.experiment + "') spans")).at("data")).at("r3");
    CHECK_FALSE(r3.contains("comments"));
    CHECK_FALSE(r3.contains("audit_data"));
  }());
}

TEST_CASE("wire fidelity: _array_delete removes values from arrays in a merge; malformed is 400") {
  wire w;
  w.run([&]() -> asio::awaitable<void> {
    const auto o = co_await make_objects(*w.api, "fidelity");
    json::object row = jo("project_id", o.project, "log_id", "g", "id", "r", "tags", ja("a", "b", "c"));
    row["metadata"] = jo("list", ja(1, 2, 3, 2));
    co_await logs3(*w.api, ja(row));
    json::object merge = jo("project_id", o.project, "log_id", "g", "id", "r", "_is_merge", true);
    merge["metadata"] = jo("extra", true);
    merge["_array_delete"] = ja(jo("path", ja("tags"), "delete", ja("b")), jo("path", ja("metadata", "list"), "delete", ja(2)),
                                jo("path", ja("missing"), "delete", ja(1)));
    co_await logs3(*w.api, ja(merge));
    auto r = (co_await btql(*w.api, "select: *\nfrom: project_logs('" + o.project + "') spans")).at("data").at(0);
    CHECK(r.at("tags") == ja("a", "c"));
    CHECK(r.at("metadata") == jo("list", ja(1, 3), "extra", true));
    CHECK_FALSE(r.as_object().contains("_array_delete"));
    merge["_array_delete"] = ja(jo("path", "tags"));
    auto bad = co_await w.api->logs3(json::serialize(jo("rows", ja(merge), "api_version", 2)));
    CHECK(bad.status == 400);
  }());
}

TEST_CASE("wire fidelity: /xact-id, dataset restore (preview and apply), and the SDK's dataset_snapshot calls") {
  wire w;
  w.run([&]() -> asio::awaitable<void> {
    const auto o = co_await make_objects(*w.api, "fidelity");
    const json::object ds = jo("dataset_id", o.dataset);
    json::object a = ds, b = ds;
    a["id"] = "a";
    a["input"] = "a1";
    b["id"] = "b";
    b["input"] = "b1";
    co_await logs3(*w.api, ja(a, b));
    auto x = co_await w.api->call(boost::beast::http::verb::get, "/xact-id", "");
    REQUIRE(x.ok());
    const std::string v1 = x.body;  // the SDK reads the body as text
    CHECK(v1.size() == 19);
    const std::string from = "select: *\nfrom: dataset('" + o.dataset + "') spans";
    CHECK(max_xact((co_await btql(*w.api, from)).at("data")) <= v1);

    json::object a2 = ds, b2 = ds, c = ds;
    a2["id"] = "a";
    a2["input"] = "a2";
    b2["id"] = "b";
    b2["_object_delete"] = true;
    c["id"] = "c";
    co_await logs3(*w.api, ja(a2, b2, c));
    const std::string restore = "/v1/dataset/" + o.dataset + "/restore";
    auto preview = co_await w.api->post_json(restore + "/preview", jo("version", v1));
    REQUIRE_MESSAGE(preview.ok(), preview.body);
    CHECK(preview.json == jo("rows_to_restore", 2, "rows_to_delete", 1));
    auto done = co_await w.api->post_json(restore, jo("version", v1));
    REQUIRE_MESSAGE(done.ok(), done.body);
    CHECK(done.json.at("rows_restored") == 2);
    CHECK(done.json.at("rows_deleted") == 1);
    CHECK(str(done.json.at("xact_id")) > v1);
    auto rows = by_id((co_await btql(*w.api, from)).at("data"));
    REQUIRE(rows.size() == 2);
    CHECK(str(rows.at("a").at("input")) == "a1");
    CHECK(str(rows.at("b").at("input")) == "b1");
    auto again = co_await w.api->post_json(restore, jo("version", v1));
    json::object nothing = jo("rows_restored", 0, "rows_deleted", 0);
    nothing["xact_id"] = nullptr;
    CHECK(again.json == nothing);
    CHECK((co_await w.api->post_json(restore, jo("nope", 1))).status == 400);

    // Snapshots through the SDK's /api paths and the REST resource see the same objects.
    auto reg = co_await w.api->post_json("/api/dataset_snapshot/register",
                                         jo("dataset_id", o.dataset, "dataset_snapshot_name", "s1", "xact_id", v1));
    REQUIRE_MESSAGE(reg.ok(), reg.body);
    CHECK(reg.json.at("found_existing") == false);
    const std::string sid = str(reg.json.at("dataset_snapshot").at("id"));
    auto reg2 = co_await w.api->post_json("/api/dataset_snapshot/register",
                                          jo("dataset_id", o.dataset, "dataset_snapshot_name", "s1", "xact_id", v1));
    CHECK(reg2.json.at("found_existing") == true);
    CHECK(str(reg2.json.at("dataset_snapshot").at("id")) == sid);
    auto got = co_await w.api->post_json("/api/dataset_snapshot/get", jo("dataset_id", o.dataset, "xact_id", v1));
    REQUIRE(got.ok());
    REQUIRE(got.json.as_array().size() == 1);
    CHECK(str(got.json.at(0).at("name")) == "s1");
    auto none = co_await w.api->post_json("/api/dataset_snapshot/get", jo("dataset_id", o.dataset, "name", "s2"));
    CHECK(none.json.as_array().empty());
    auto patched = co_await w.api->post_json("/api/dataset_snapshot/patch_id", jo("id", sid, "description", "first"));
    REQUIRE_MESSAGE(patched.ok(), patched.body);
    auto rest = co_await w.api->get_json("/v1/dataset_snapshot/" + sid);
    CHECK(str(rest.json.at("description")) == "first");
    auto deleted = co_await w.api->post_json("/api/dataset_snapshot/delete_id", jo("id", sid));
    REQUIRE(deleted.ok());
    auto gone = co_await w.api->post_json("/api/dataset_snapshot/get", jo("dataset_id", o.dataset));
    CHECK(gone.json.as_array().empty());
  }());
}

TEST_CASE("wire fidelity: experiment summaries carry scores, metrics and the comparison experiment") {
  wire w;
  w.run([&]() -> asio::awaitable<void> {
    const auto o = co_await make_objects(*w.api, "fidelity");
    auto span = [](const std::string& exp, const std::string& id, int input, double acc, double end) {
      json::object r = jo("experiment_id", exp, "id", id, "input", input, "span_id", id, "root_span_id", id);
      r["scores"] = jo("acc", acc);
      r["metrics"] = jo("start", 10.0, "end", end, "tokens", 100);
      return r;
    };
    // base: input 1 -> 0.5, input 2 -> 1.0; e2 (base_exp_id = base): input 1 -> 1.0, input 2 -> 0.5, plus a child
    // span of trace 1 with another score.
    co_await logs3(*w.api, ja(span(o.experiment, "b1", 1, 0.5, 12), span(o.experiment, "b2", 2, 1.0, 14)));
    auto e2 = co_await w.api->post_json("/v1/experiment", jo("project_id", o.project, "name", "e2", "base_exp_id", o.experiment));
    REQUIRE_MESSAGE(e2.ok(), e2.body);
    const std::string e2id = str(e2.json.at("id"));
    json::object child = jo("experiment_id", e2id, "id", "c1", "span_id", "c1", "root_span_id", "n1", "span_parents", ja("n1"));
    child["scores"] = jo("fact", 0.25);
    co_await logs3(*w.api, ja(span(e2id, "n1", 1, 1.0, 11), span(e2id, "n2", 2, 0.5, 11), child));

    auto cmp = co_await w.api->get_json("/experiment-comparison2", qp("experiment_id", e2id, "base_experiment_id", o.experiment));
    REQUIRE_MESSAGE(cmp.ok(), cmp.body);
    const auto& acc = cmp.json.at("scores").at("acc");
    CHECK(acc.at("score").to_number<double>() == doctest::Approx(0.75));
    CHECK(acc.at("diff").to_number<double>() == doctest::Approx(0.0));
    CHECK(acc.at("improvements") == 1);
    CHECK(acc.at("regressions") == 1);
    CHECK(cmp.json.at("scores").at("fact").at("score").to_number<double>() == doctest::Approx(0.25));
    const auto& duration = cmp.json.at("metrics").at("duration");
    CHECK(duration.at("metric").to_number<double>() == doctest::Approx(1.0));
    CHECK(str(duration.at("unit")) == "s");
    CHECK(duration.at("diff").to_number<double>() == doctest::Approx(-2.0));
    CHECK(duration.at("improvements") == 2);  // lower is better
    CHECK(cmp.json.at("metrics").at("tokens").at("metric").to_number<double>() == doctest::Approx(100));

    auto sum = co_await w.api->get_json("/v1/experiment/" + e2id + "/summarize", qp("summarize_scores", "true"));
    REQUIRE_MESSAGE(sum.ok(), sum.body);
    CHECK(str(sum.json.at("comparison_experiment_name")) == "e");
    CHECK(sum.json.at("scores").at("acc") == acc);
    auto meta_only = co_await w.api->get_json("/v1/experiment/" + e2id + "/summarize");
    CHECK_FALSE(meta_only.json.as_object().contains("scores"));
    // Without base_exp_id the newest earlier experiment of the project is the comparison.
    auto e3 = co_await w.api->post_json("/v1/experiment", jo("project_id", o.project, "name", "e3"));
    auto s3 = co_await w.api->get_json("/v1/experiment/" + str(e3.json.at("id")) + "/summarize", qp("summarize_scores", "true"));
    CHECK(str(s3.json.at("comparison_experiment_name")) == "e2");
    CHECK(s3.json.at("scores").as_object().empty());
    // /experiment-comparison2 without a base: no diffs.
    auto alone = co_await w.api->get_json("/experiment-comparison2", qp("experiment_id", o.experiment));
    CHECK_FALSE(alone.json.at("scores").at("acc").as_object().contains("diff"));
    auto ds = co_await w.api->get_json("/v1/dataset/" + o.dataset + "/summarize", qp("summarize_data", "true"));
    CHECK(ds.json.at("data_summary").at("total_records") == 0);
  }());
}

TEST_CASE("wire fidelity: BTQL column lists, or, other fields, desc sorts, aggregates, SQL, shapes, pipes, cursor") {
  wire w;
  w.run([&]() -> asio::awaitable<void> {
    const auto o = co_await make_objects(*w.api, "fidelity");
    json::array rows;
    for (int i = 0; i < 6; ++i) {
      json::object r = jo("project_id", o.project, "log_id", "g", "id", "r" + std::to_string(i), "input", i);
      r["metadata"] = jo("kind", i % 2 ? "odd" : "even");
      r["root_span_id"] = i < 3 ? "t1" : "t" + std::to_string(i);
      r["span_id"] = "r" + std::to_string(i);
      if (i == 1 || i == 2) r["span_parents"] = ja("r0");
      rows.push_back(std::move(r));
    }
    co_await logs3(*w.api, std::move(rows));
    const std::string from = "project_logs('" + o.project + "')";

    // Column list, or, a filter on another field, a descending sort, limit and the cursor.
    const std::string q = "select: id, input as n, metadata.kind\nfrom: " + from +
                          " spans\nfilter: input >= 3 or id = 'r0'\nsort: input desc\nlimit: 3";
    auto page1 = co_await btql(*w.api, q);
    auto& d1 = page1.at("data").as_array();
    REQUIRE(d1.size() == 3);
    CHECK(d1[0] == jo("id", "r5", "n", 5, "kind", "odd"));
    CHECK(d1[2].at("n") == 3);
    for (auto key : {"schema", "cursor", "freshness_state", "realtime_state"}) CHECK_MESSAGE(page1.contains(key), key);
    CHECK(page1.at("schema").at("items").at("properties").as_object().contains("n"));
    REQUIRE(page1.at("cursor").is_string());
    auto page2 = co_await btql(*w.api, q + "\ncursor: '" + str(page1.at("cursor")) + "'");
    REQUIRE(page2.at("data").as_array().size() == 1);
    CHECK(page2.at("data").at(0).at("id") == "r0");
    CHECK(page2.at("cursor").is_null());

    // Aggregates with dimensions, in BTQL and SQL.
    auto agg = co_await btql(*w.api, "measures: count(1) as c, max(input) as top\ndimensions: metadata.kind as kind\nfrom: " + from);
    std::map<std::string, json::value> counts;
    for (const auto& r : agg.at("data").as_array()) counts[str(r.at("kind"))] = r;
    CHECK(counts.at("even") == jo("kind", "even", "c", 3, "top", 4));
    CHECK(counts.at("odd") == jo("kind", "odd", "c", 3, "top", 5));
    auto sql = co_await btql(*w.api, "SELECT count(*) AS n FROM " + from + " WHERE metadata.kind = 'odd'");
    CHECK(sql.at("data") == ja(jo("n", 3)));
    auto sql_rows = co_await btql(*w.api, "SELECT id FROM " + from + " ORDER BY input DESC LIMIT 2");
    CHECK(sql_rows.at("data") == ja(jo("id", "r5"), jo("id", "r4")));
    auto distinct = co_await btql(*w.api, "from: " + from + " spans | measures: count_distinct(root_span_id) as total_traces");
    CHECK(distinct.at("data") == ja(jo("total_traces", 4)));

    // bt's pipe-separated span lookups, and the traces and summary shapes.
    auto trace = co_await btql(*w.api, "select: * | from: " + from + " spans | filter: root_span_id = 't1' | preview_length: -1 | sort: _pagination_key ASC | limit: 10");
    CHECK(trace.at("data").as_array().size() == 3);
    auto traces = co_await btql(*w.api, "select: id\nfrom: " + from + " traces\nfilter: id = 'r2'");
    std::set<std::string> spans;
    for (const auto& r : traces.at("data").as_array()) spans.insert(str(r.at("id")));
    CHECK(spans == std::set<std::string>{"r0", "r1", "r2"});
    auto summary = co_await btql(*w.api, "select: id\nfrom: " + from + " summary\nfilter: input <= 3");
    CHECK(summary.at("data") == ja(jo("id", "r0"), jo("id", "r3")));

    // The JSON AST: or, not, includes, a sort on another field.
    json::object ast = jo("from", jo("op", "function", "name", jo("op", "ident", "name", ja("project_logs")), "args",
                                     ja(jo("op", "literal", "value", o.project))));
    ast["select"] = ja(jo("expr", jo("op", "ident", "name", ja("id")), "alias", "id"));
    auto ident = [](std::string_view n) { return jo("op", "ident", "name", ja(n)); };
    ast["filter"] = jo("op", "or", "left", jo("op", "eq", "left", ident("id"), "right", jo("op", "literal", "value", "r1")),
                       "right", jo("op", "not", "expr", jo("op", "lt", "left", ident("input"), "right", jo("op", "literal", "value", 5))));
    ast["sort"] = ja(jo("expr", ident("input"), "dir", "desc"));
    auto astr = co_await btql(*w.api, ast);
    CHECK(astr.at("data") == ja(jo("id", "r5"), jo("id", "r1")));

    // The SDK's SpanFetcher filter: and-children, or of isnull/ne, in with a literal list, sub.
    json::object span_q = ast;
    span_q.erase("sort");
    span_q["select"] = ja(jo("op", "star"));
    auto lit = [](const json::value& v) { return jo("op", "literal", "value", v); };
    json::object in_types = jo("op", "in", "left", jo("op", "ident", "name", ja("span_attributes", "type")));
    in_types["right"] = lit(ja("llm", "task"));
    json::object elapsed = jo("op", "sub", "left", jo("op", "ident", "name", ja("metrics", "end")), "right",
                              jo("op", "ident", "name", ja("metrics", "start")));
    span_q["filter"] = jo("op", "and", "children",
                          ja(jo("op", "eq", "left", ident("root_span_id"), "right", lit(json::string("t9"))),
                             jo("op", "or", "children",
                                ja(jo("op", "isnull", "expr", jo("op", "ident", "name", ja("span_attributes", "purpose"))),
                                   jo("op", "ne", "left", jo("op", "ident", "name", ja("span_attributes", "purpose")), "right",
                                      lit(json::string("scorer"))))),
                             in_types, jo("op", "ge", "left", elapsed, "right", lit(2))));
    json::array t9;
    for (auto [id, type, purpose, end] : {std::tuple{"s1", "llm", "", 5}, std::tuple{"s2", "task", "scorer", 5},
                                          std::tuple{"s3", "tool", "", 5}, std::tuple{"s4", "task", "", 1}}) {
      json::object r = jo("project_id", o.project, "log_id", "g", "id", id, "root_span_id", "t9", "span_id", id);
      r["span_attributes"] = jo("type", type);
      if (*purpose) r["span_attributes"].as_object()["purpose"] = purpose;
      r["metrics"] = jo("start", 0, "end", end);
      t9.push_back(std::move(r));
    }
    co_await logs3(*w.api, std::move(t9));
    auto spans_r = co_await btql(*w.api, span_q);
    REQUIRE(spans_r.at("data").as_array().size() == 1);
    CHECK(str(spans_r.at("data").at(0).at("id")) == "s1");

    // Version pinning on the general path; what is not served stays a clear 400.
    auto v = max_xact((co_await btql(*w.api, "select: *\nfrom: " + from + " spans")).at("data"));
    co_await logs3(*w.api, ja(jo("project_id", o.project, "log_id", "g", "id", "late", "input", 99)));
    auto pinned = co_await btql(*w.api, "select: id\nfrom: " + from + " spans\nfilter: input > 4", v);
    CHECK(pinned.at("data") == ja(jo("id", "r5")));
    // (project_prompts is served since getPromptVersions needs it, wire_sdk_calls_test.cpp; not as traces.)
    for (std::string bad : {"select: upper(id)\nfrom: " + from, "select: *\nfrom: prompt_session('" + o.project + "')",
                            "select: *\nfrom: project_prompts('" + o.project + "') traces",
                            "select: *\nfrom: " + from + "\npivot: x", "SELECT * FROM " + from + " OFFSET 3"}) {
      auto r = co_await w.api->post_json("/btql", jo("query", bad));
      CHECK_MESSAGE(r.status == 400, bad);
    }
  }());
}

TEST_CASE("wire fidelity: slice probes (count, min(id), max(id) over id and created windows) answer as over parsed rows") {
  // The emulator answers queries that read only id, created and _pagination_key from the stored keys;
  // the same query with a measure on another field parses every row: both must agree.
  wire w;
  w.run([&]() -> asio::awaitable<void> {
    const auto o = co_await make_objects(*w.api, "probes");
    json::array rows;
    for (int i = 0; i < 12; ++i) {
      json::object r = jo("project_id", o.project, "log_id", "g", "id", std::string(1, static_cast<char>('a' + i)) + "-row",
                          "input", i);
      r["created"] = "2026-01-" + std::string(i < 9 ? "0" : "") + std::to_string(i + 1) + "T00:00:00Z";
      rows.push_back(std::move(r));
    }
    co_await logs3(*w.api, std::move(rows));
    const std::string from = "project_logs('" + o.project + "') spans";
    auto probe = [&](const std::string& filter, bool parsed) -> asio::awaitable<json::value> {
      std::string text = std::string("measures: count(1) as n, min(id) as id_min, max(id) as id_max") +
                         (parsed ? ", max(input) as top" : "") + "\nfrom: " + from +
                         (filter.empty() ? "" : "\nfilter: " + filter);
      auto r = co_await btql(*w.api, std::move(text));
      json::object d = r.at("data").at(0).as_object();
      d.erase("top");
      co_return json::value(d);
    };
    const std::vector<std::string> filters{"", "id >= 'c' and id < 'h'", "id < 'c'", "id >= 'k-row'",
                                           "created >= '2026-01-05T00:00:00Z' and id < 'g'", "id >= 'x'"};
    for (const auto& f : filters) {
      auto light = co_await probe(f, false);
      auto full = co_await probe(f, true);
      CHECK_MESSAGE(light == full, f);
    }
    // (arguments and results named first: GCC 12 and temporaries of a co_await expression)
    const std::string all, window = "id >= 'c' and id < 'h'";
    auto whole = co_await probe(all, false);
    CHECK(whole == jo("n", 12, "id_min", "a-row", "id_max", "l-row"));
    auto part = co_await probe(window, false);
    CHECK(part == jo("n", 5, "id_min", "c-row", "id_max", "g-row"));
    // A row updated later keeps its id (a full replace with another created): still counted once.
    json::array update = ja(jo("project_id", o.project, "log_id", "g", "id", "c-row", "input", 99, "created",
                               "2031-01-01T00:00:00Z"));
    co_await logs3(*w.api, std::move(update));
    auto again = co_await probe(window, false);
    CHECK(again == part);
    // A deleted row is no longer counted (the id index and the general path agree).
    json::array del = ja(jo("project_id", o.project, "log_id", "g", "id", "d-row", "_object_delete", true));
    co_await logs3(*w.api, std::move(del));
    auto after_delete = co_await probe(window, false);
    auto after_delete_full = co_await probe(window, true);
    CHECK(after_delete == jo("n", 4, "id_min", "c-row", "id_max", "g-row"));
    CHECK(after_delete == after_delete_full);
  }());
}
