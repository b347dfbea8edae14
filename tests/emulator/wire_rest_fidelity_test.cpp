// Issue 15's REST fidelity over real sockets (127.0.0.1:0) with the production api_client: prompts are
// functions, unknown ids and unknown query parameters are 400 (classified fatal, never retried), '+' in a
// raw query string is a space, numbers keep their spelling, a deleted project's children disappear, PATCH
// deep-merges, and the push endpoints answer. rest_fidelity_test.cpp has the exhaustive cases.
#include "wire_support.hpp"

#include <boost/asio/use_awaitable.hpp>

using namespace ferry::test::wire_names;

TEST_CASE("wire rest fidelity: prompts are functions, strict references and query parameters, number spelling") {
  wire w;
  w.run([&]() -> asio::awaitable<void> {
    auto p = co_await w.api->post_json("/v1/project", jo("name", "my project"));
    REQUIRE(p.ok());
    const auto pid = str(p.json.at("id"));

    // '+' in a raw query string is a space (the SDKs' form encoding).
    auto plus = co_await w.api->call(http::verb::get, "/v1/project?project_name=my+project", "");
    REQUIRE(plus.ok());
    CHECK(json::parse(plus.body).at("objects").as_array().size() == 1);

    // A prompt IS a function.
    auto pr = co_await w.api->post_json("/v1/prompt", jo("project_id", pid, "name", "Greeter", "slug", "greet"));
    REQUIRE(pr.ok());
    auto fns = co_await w.api->get_json("/v1/function", qp("project_id", pid));
    REQUIRE(fns.ok());
    REQUIRE(fns.json.at("objects").as_array().size() == 1);
    CHECK(fns.json.at("objects").at(0).at("function_data").at("type") == "prompt");
    auto clash = co_await w.api->post_json(
        "/v1/function",
        jo("project_id", pid, "name", "x", "slug", "greet", "function_data", jo("type", "code")), no_retry());
    CHECK(clash.status == 409);

    // An id that does not exist in the org: 400 naming the field, fatal for the client.
    auto bad = co_await w.api->post_json(
        "/v1/experiment", jo("project_id", pid, "name", "e", "base_exp_id", pid), no_retry());
    CHECK(bad.status == 400);
    CHECK(bad.outcome == io_outcome::fatal);
    CHECK(bad.body.find("base_exp_id") != std::string::npos);

    // An unknown list filter is refused, not ignored.
    auto unknown = co_await w.api->get_json("/v1/project", qp("name", "my project"), no_retry());
    CHECK(unknown.status == 400);

    // Numbers keep their spelling; PATCH deep-merges metadata and ignores nulls.
    auto ds = co_await w.api->post_json(
        "/v1/dataset", jo("project_id", pid, "name", "d", "metadata", jo("rate", 0.5, "keep", "k")));
    REQUIRE(ds.ok());
    CHECK(ds.body.find("\"rate\":0.5") != std::string::npos);
    const auto did = str(ds.json.at("id"));
    auto patch = json::parse(R"({"metadata":{"more":1,"keep":null}})");
    auto patched = co_await w.api->patch_json("/v1/dataset/" + did, patch);
    REQUIRE(patched.ok());
    CHECK(patched.body.find(R"("metadata":{"rate":0.5,"keep":"k","more":1})") != std::string::npos);

    // Deleting the project removes its dataset and prompt from lists and reads.
    REQUIRE((co_await w.api->del("/v1/project/" + pid)).ok());
    auto gone = co_await w.api->get_json("/v1/dataset/" + did, {}, no_retry());
    CHECK(gone.status == 404);
    auto datasets = co_await w.api->get_json("/v1/dataset");
    CHECK(datasets.json.at("objects").as_array().empty());
    auto prompts = co_await w.api->get_json("/v1/prompt");
    CHECK(prompts.json.at("objects").as_array().empty());
  }());
}

TEST_CASE("wire rest fidelity: braintrust push endpoints and the bundle upload URL") {
  wire w;
  w.run([&]() -> asio::awaitable<void> {
    auto p = co_await w.api->post_json("/v1/project", jo("name", "push"));
    REQUIRE(p.ok());
    const auto pid = str(p.json.at("id"));
    auto slot = co_await w.api->post_json("/function/code", jo("runtime_context", jo("runtime", "node", "version", "20")));
    REQUIRE(slot.ok());
    const auto url = str(slot.json.at("url"));
    CHECK(url.starts_with(w.base_url() + "/_signed/"));
    // The signed URL takes the bundle without auth.
    ferry::transports::http_request_spec put_spec;
    put_spec.verb = http::verb::put;
    put_spec.target = url;
    put_spec.body = "bundle-bytes";
    auto put = co_await w.http->send(put_spec);
    CHECK(put.status == 200);

    auto fn = jo("project_id", pid, "name", "Scorer", "slug", "scorer", "function_data",
                 jo("type", "code", "data", jo("type", "bundle", "bundle_id", str(slot.json.at("bundleId")))));
    auto ins = co_await w.api->post_json("/insert-functions", jo("functions", ja(fn)));
    REQUIRE(ins.ok());
    CHECK(ins.json.at("functions").as_array().size() == 1);
    auto again = co_await w.api->post_json("/insert-functions", jo("functions", ja(fn)), no_retry());
    CHECK(again.status == 409);  // if_exists defaults to error
  }());
}
