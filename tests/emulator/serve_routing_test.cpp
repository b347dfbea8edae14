#include "emulator/emulator.hpp"
#include "emulator/serve.hpp"

#include "test_support.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/beast/http/field.hpp>
#include <boost/json.hpp>

#include <doctest/doctest.h>

namespace json = boost::json;
namespace http = boost::beast::http;
using namespace ferry::emulator;

namespace {

struct fixture {
  boost::asio::io_context ctx;
  emulator emu;

  explicit fixture(emulator_config cfg = default_config()) : emu(ctx.get_executor(), std::move(cfg)) {}

  static emulator_config default_config() {
    emulator_config cfg;
    cfg.api_keys = {{"key-a", "org-a", ""}, {"key-b", "org-b", ""}};
    cfg.id_seed = 11;
    return cfg;
  }

  ferry::transports::http_reply call(http::verb method, std::string target, std::string body = "",
                                     std::string key = "key-a") {
    ferry::transports::http_request req{method, target, 11};
    if (!key.empty()) req.set(http::field::authorization, "Bearer " + key);
    req.body() = std::move(body);
    req.prepare_payload();
    return ferry::test::run_coro(ctx, emu.handle(req));
  }
  json::value ok(http::verb method, std::string target, std::string body = "", std::string key = "key-a") {
    auto r = call(method, target, std::move(body), std::move(key));
    INFO(target, " -> ", r.response.body());
    REQUIRE(r.response.result_int() == 200);
    return json::parse(r.response.body());
  }
};

std::string s(const json::value& v) { return std::string(v.as_string()); }

}  // namespace

TEST_CASE("serve: GET /v1 says hello without auth; everything else needs a valid Bearer key") {
  fixture f;
  auto hello = f.call(http::verb::get, "/v1", "", "");
  CHECK(hello.response.result_int() == 200);
  CHECK(hello.response.body() == "Hello, World!");

  auto none = f.call(http::verb::get, "/v1/project", "", "");
  CHECK(none.response.result_int() == 401);
  CHECK(json::parse(none.response.body()).as_object().at("error").is_string());
  CHECK(f.call(http::verb::get, "/v1/project", "", "wrong").response.result_int() == 401);
  CHECK(f.call(http::verb::post, "/logs3", "{}", "wrong").response.result_int() == 401);

  ferry::transports::http_request req{http::verb::get, "/v1/project", 11};
  req.set(http::field::authorization, "Basic a2V5LWE=");
  CHECK(ferry::test::run_coro(f.ctx, f.emu.handle(req)).response.result_int() == 401);

  auto r = f.call(http::verb::get, "/v1/project");
  CHECK(r.response.result_int() == 200);
  CHECK(r.response[http::field::content_type] == "application/json");
  CHECK(f.call(http::verb::get, "/no/such/path").response.result_int() == 404);
}

TEST_CASE("serve: keys map to their own organizations, which do not see each other") {
  fixture f;
  REQUIRE(f.emu.orgs().size() == 2);
  CHECK(f.emu.orgs()[0].org_id != f.emu.orgs()[1].org_id);
  auto p = f.ok(http::verb::post, "/v1/project", R"({"name":"shared-name"})");
  CHECK(s(p.at("org_id")) == f.emu.orgs()[0].org_id);
  CHECK(f.ok(http::verb::get, "/v1/project", "", "key-b").at("objects").as_array().empty());
  CHECK(f.call(http::verb::get, "/v1/project/" + s(p.at("id")), "", "key-b").response.result_int() == 404);
  auto pb = f.ok(http::verb::post, "/v1/project", R"({"name":"shared-name"})", "key-b");
  CHECK(pb.at("id") != p.at("id"));
}

TEST_CASE("serve: SDK login and register calls have the shapes the JS SDK reads") {
  fixture f;
  auto login = f.ok(http::verb::post, "/api/apikey/login");
  auto& info = login.at("org_info").as_array().at(0).as_object();
  CHECK(s(info.at("name")) == "org-a");
  CHECK(s(info.at("id")) == f.emu.orgs()[0].org_id);
  CHECK(s(info.at("api_url")) == f.emu.base_url());
  CHECK(info.at("git_metadata").is_null());

  auto reg = f.ok(http::verb::post, "/api/project/register",
                  R"({"project_name":"emu-proj","org_id":")" + f.emu.orgs()[0].org_id + R"("})");
  const auto pid = s(reg.at("project").at("id"));
  CHECK(f.ok(http::verb::post, "/api/project/register", R"({"project_name":"emu-proj"})").at("project").at("id").as_string() ==
        pid);
  CHECK(f.call(http::verb::post, "/api/project/register", R"({"project_name":"x","org_id":"other"})")
            .response.result_int() == 403);
  CHECK(s(f.ok(http::verb::get, "/api/project?id=" + pid).at("name")) == "emu-proj");

  auto ds = f.ok(http::verb::post, "/api/dataset/register", R"({"project_name":"emu-proj","dataset_name":"d1"})");
  CHECK(s(ds.at("project").at("id")) == pid);
  CHECK(s(ds.at("dataset").at("name")) == "d1");
  CHECK(ds.at("dataset").at("id") ==
        f.ok(http::verb::post, "/api/dataset/register", R"({"project_name":"emu-proj","dataset_name":"d1"})")
            .at("dataset")
            .at("id"));

  auto e1 = f.ok(http::verb::post, "/api/experiment/register",
                 R"({"project_name":"emu-proj","experiment_name":"exp","ancestor_commits":[]})");
  auto e2 = f.ok(http::verb::post, "/api/experiment/register",
                 R"({"project_name":"emu-proj","experiment_name":"exp","base_experiment":"exp"})");
  CHECK(e1.at("experiment").at("id") != e2.at("experiment").at("id"));
  CHECK(e2.at("experiment").at("base_exp_id") == e1.at("experiment").at("id"));
  CHECK(f.call(http::verb::post, "/api/experiment/register",
               R"({"project_name":"emu-proj","base_experiment":"missing"})")
            .response.body()
            .find("base experiment") != std::string::npos);

  auto none = f.call(http::verb::post, "/api/base_experiment/get_id",
                     R"({"id":")" + s(e1.at("experiment").at("id")) + R"("})");
  CHECK(none.response.result_int() == 400);
  auto base = f.ok(http::verb::post, "/api/base_experiment/get_id", R"({"id":")" + s(e2.at("experiment").at("id")) + R"("})");
  CHECK(base.at("base_exp_id") == e1.at("experiment").at("id"));
  CHECK(s(base.at("base_exp_name")) == "exp");

  auto infos = f.ok(http::verb::post, "/api/self/get_object_info",
                    R"({"object_type":"dataset","object_ids":[")" + s(ds.at("dataset").at("id")) + R"("]})");
  REQUIRE(infos.as_array().size() == 1);
  CHECK(s(infos.as_array()[0].at("object_name")) == "d1");
  CHECK(s(infos.as_array()[0].at("parent_object_id")) == pid);
}

TEST_CASE("serve: event paths reach the event side with the key's org") {
  fixture f;
  auto p = f.ok(http::verb::post, "/v1/project", R"({"name":"logs"})");
  const auto pid = s(p.at("id"));
  auto r = f.call(http::verb::post, "/logs3",
                  R"({"rows":[{"id":"r1","project_id":")" + pid + R"(","log_id":"g","input":"hi"}],"api_version":2})");
  CHECK(r.response.result_int() == 200);
  CHECK(f.emu.events().count_rows("project_logs", pid) == 1);
  // A project of another org is not writable with this key.
  auto pb = f.ok(http::verb::post, "/v1/project", R"({"name":"b"})", "key-b");
  auto denied = f.call(http::verb::post, "/logs3",
                       R"({"rows":[{"id":"r1","project_id":")" + s(pb.at("id")) + R"(","log_id":"g"}],"api_version":2})");
  CHECK(denied.response.result_int() != 200);
  CHECK(f.call(http::verb::get, "/version").response.result_int() == 200);
}

TEST_CASE("serve: experiment and dataset summarize") {
  fixture f;
  auto p = f.ok(http::verb::post, "/v1/project", R"({"name":"sum"})");
  const auto pid = s(p.at("id"));
  auto d = f.ok(http::verb::post, "/v1/dataset", R"({"project_id":")" + pid + R"(","name":"d"})");
  const auto did = s(d.at("id"));
  f.ok(http::verb::post, "/logs3",
       R"({"rows":[{"id":"a","dataset_id":")" + did + R"(","input":1},{"id":"b","dataset_id":")" + did +
           R"(","input":2}],"api_version":2})");
  auto ds = f.ok(http::verb::get, "/v1/dataset/" + did + "/summarize?summarize_data=true");
  CHECK(s(ds.at("project_name")) == "sum");
  CHECK(s(ds.at("dataset_name")) == "d");
  CHECK(ds.at("data_summary").at("total_records").to_number<int>() == 2);
  auto e = f.ok(http::verb::post, "/v1/experiment", R"({"project_id":")" + pid + R"(","name":"e"})");
  auto es = f.ok(http::verb::get, "/v1/experiment/" + s(e.at("id")) + "/summarize?summarize_scores=true");
  CHECK(s(es.at("experiment_name")) == "e");
  CHECK(es.at("scores").is_object());
  CHECK(f.call(http::verb::get, "/v1/experiment/" + did + "/summarize").response.result_int() == 404);
}

TEST_CASE("serve: faults wrap every route and show in /_emulator/stats") {
  auto cfg = fixture::default_config();
  cfg.faults = {parse_fault_spec("path=/v1/project,kind=status,status=429,retry_after=3"),
                parse_fault_spec("path=/v1/dataset,kind=drop"), parse_fault_spec("path=/v1/role,kind=truncate"),
                parse_fault_spec("path=/v1/group,kind=latency,latency_ms=1"),
                parse_fault_spec("path=/btql,kind=btql_limit,limit_above=100,status=500")};
  fixture f(cfg);
  auto r = f.call(http::verb::get, "/v1/project");
  CHECK(r.response.result_int() == 429);
  CHECK(r.response[http::field::retry_after] == "3");
  CHECK(f.call(http::verb::get, "/v1/dataset").action == ferry::transports::reply_action::drop);
  auto t = f.call(http::verb::get, "/v1/role");
  CHECK(t.action == ferry::transports::reply_action::truncate_body);
  CHECK(t.response.result_int() == 200);
  CHECK(f.call(http::verb::get, "/v1/group").response.result_int() == 200);
  CHECK(f.call(http::verb::post, "/btql", R"({"query":"select: *\nfrom: project_logs('x') spans\nlimit: 1000"})")
            .response.result_int() == 500);
  auto stats = f.ok(http::verb::get, "/_emulator/stats", "", "");
  CHECK(stats.at("faults").as_int64() == 5);
  CHECK(stats.at("faults_by_kind").at("latency").as_int64() == 1);
  CHECK(stats.at("requests_by_path").at("/v1/project").as_int64() == 1);
}

TEST_CASE("serve: options map onto the emulator config with one-line errors") {
  serve_options o;
  o.api_keys = {"k1", "k2:other-org"};
  o.fault_specs = {"path=/btql,kind=status,rate=0.5"};
  o.fault_seed = 9;
  auto cfg = make_emulator_config(o);
  REQUIRE(cfg.api_keys.size() == 2);
  CHECK(cfg.api_keys[0].org_name == "emu-org");
  CHECK(cfg.api_keys[1].org_name == "other-org");
  CHECK(cfg.faults.size() == 1);
  CHECK(cfg.fault_seed == 9);
  CHECK(make_emulator_config({}).api_keys.at(0).api_key == "ferry-emulator-key");
  serve_options bad;
  bad.api_keys = {":org"};
  CHECK_THROWS_WITH(make_emulator_config(bad), doctest::Contains("--api-key"));
  bad.api_keys = {"k"};
  bad.fault_specs = {"kind=zap"};
  CHECK_THROWS_WITH(make_emulator_config(bad), doctest::Contains("kind"));
}

TEST_CASE("serve: the org id of a name survives a restart on a data dir") {
  ferry::test::temp_dir dir("emu-serve");
  emulator_config cfg;
  cfg.api_keys = {{"k", "persist-org", ""}};
  cfg.data_dir = dir.str();
  std::string org_id, pid;
  {
    fixture f(cfg);
    org_id = f.emu.orgs()[0].org_id;
    pid = s(f.ok(http::verb::post, "/v1/project", R"({"name":"p"})", "k").at("id"));
  }
  fixture f(cfg);
  CHECK(f.emu.orgs()[0].org_id == org_id);
  CHECK(s(f.ok(http::verb::get, "/v1/project/" + pid, "", "k").at("org_id")) == org_id);
}
