#include "emulator/faults.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <string>

using namespace ferry::emulator;

TEST_CASE("faults: compact spec parses every key, and errors name the key") {
  auto f = parse_fault_spec("method=POST, path=/btql,kind=status,status=503,rate=0.25,retry_after=2,after=3,count=4");
  CHECK(f.method == "post");
  CHECK(f.path_prefix == "/btql");
  CHECK(f.kind == fault_kind::status);
  CHECK(f.effective_status() == 503);
  CHECK(f.rate == doctest::Approx(0.25));
  CHECK(f.retry_after_seconds == 2u);
  CHECK(f.after == 3);
  CHECK(f.count == 4u);
  CHECK(parse_fault_spec("kind=btql_limit,limit_above=500").effective_status() == 504);
  CHECK(parse_fault_spec("kind=size,max_bytes=10").effective_status() == 413);
  CHECK(parse_fault_spec("kind=latency,latency_ms=5").latency.count() == 5);

  auto error_of = [](const char* s) {
    try {
      parse_fault_spec(s);
    } catch (const fault_config_error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  CHECK(error_of("kind=nope").find("kind") != std::string::npos);
  CHECK(error_of("kind=status,rate=2").find("rate") != std::string::npos);
  CHECK(error_of("kind=status,colour=red").find("colour") != std::string::npos);
  CHECK(error_of("path=/x").find("missing kind") != std::string::npos);
  CHECK(error_of("kind=size").find("max_bytes") != std::string::npos);
  CHECK(error_of("kind=status,path=btql").find("path") != std::string::npos);
}

TEST_CASE("faults: YAML and JSON files give the same list; errors name the entry") {
  auto y = parse_fault_text("seed: 7\nfaults:\n  - {path: /btql, kind: status, status: 429, rate: 0.5}\n"
                            "  - path: /logs3\n    kind: drop\n");
  CHECK(y.seed == 7u);
  REQUIRE(y.faults.size() == 2);
  CHECK(y.faults[1].kind == fault_kind::drop);
  auto j = parse_fault_text(R"({"faults":[{"path":"/btql","kind":"status","status":429,"rate":0.5}]})");
  REQUIRE(j.faults.size() == 1);
  CHECK(j.faults[0].rate == doctest::Approx(0.5));
  CHECK_THROWS_WITH_AS(parse_fault_text("faults:\n  - {kind: bogus}\n", "f.yaml"),
                       doctest::Contains("f.yaml: faults[0]"), fault_config_error);
  CHECK_THROWS_AS(load_fault_file("/nonexistent/faults.yaml"), fault_config_error);
}

TEST_CASE("faults: btql limit is read from text, JSON text query and JSON AST") {
  CHECK(btql_limit_of(R"({"query":"select: *\nfrom: project_logs('x') spans\nlimit: 1000","fmt":"json"})") == 1000u);
  CHECK(btql_limit_of(R"({"query":{"select":[{"op":"star"}],"limit":250}})") == 250u);
  CHECK(btql_limit_of("select: *\nLIMIT: 7") == 7u);
  CHECK(!btql_limit_of(R"({"query":"select: *"})"));
  CHECK(!btql_limit_of(R"([1,2])"));
}

TEST_CASE("faults: each kind is injected with rate=1 and only where it matches") {
  fault_injector inj({parse_fault_spec("path=/btql,kind=status,status=429,retry_after=1,count=1"),
                      parse_fault_spec("path=/btql,kind=btql_limit,limit_above=500"),
                      parse_fault_spec("method=POST,path=/logs3,kind=size,max_bytes=10"),
                      parse_fault_spec("path=/v1/project,kind=latency,latency_ms=20"),
                      parse_fault_spec("path=/drop,kind=drop"), parse_fault_spec("path=/trunc,kind=truncate")});
  auto d = inj.decide("POST", "/btql", R"({"query":"limit: 10"})");
  CHECK(d.status == 429u);
  CHECK(d.retry_after == 1u);
  d = inj.decide("POST", "/btql", R"({"query":"limit: 10"})");  // count=1 exhausted, small limit
  CHECK(!d.status);
  d = inj.decide("POST", "/btql", R"({"query":"limit: 1000"})");
  CHECK(d.status == 504u);
  CHECK(!inj.decide("POST", "/logs3", "tiny").status);
  CHECK(inj.decide("POST", "/logs3", "a body above ten bytes").status == 413u);
  CHECK(!inj.decide("GET", "/logs3", "a body above ten bytes").status);  // method mismatch
  d = inj.decide("GET", "/v1/project?limit=1", "");
  CHECK(d.delay.count() == 20);
  CHECK(!d.status);
  CHECK(inj.decide("GET", "/drop", "").drop);
  CHECK(inj.decide("GET", "/trunc", "").truncate);
  CHECK(!inj.decide("GET", "/other", "").status);

  auto s = inj.stats();
  CHECK(s.requests == 10);
  CHECK(s.faults == 6);
  CHECK(s.faults_by_kind["status"] == 1);
  CHECK(s.faults_by_kind["btql_limit"] == 1);
  CHECK(s.requests_by_path["/btql"] == 3);
  CHECK(inj.stats_json().find("\"faults\":6") != std::string::npos);
}

TEST_CASE("faults: fractional rates are deterministic for a seed and roughly honoured") {
  auto run = [](std::uint64_t seed) {
    fault_injector inj({parse_fault_spec("path=/btql,kind=status,rate=0.3")}, seed);
    std::string pattern;
    for (int i = 0; i < 200; ++i) pattern += inj.decide("POST", "/btql", "").status ? 'x' : '.';
    return pattern;
  };
  const auto a = run(5);
  CHECK(a == run(5));
  CHECK(a != run(6));
  const auto hits = std::count(a.begin(), a.end(), 'x');
  CHECK(hits > 20);
  CHECK(hits < 120);
}

TEST_CASE("faults: after lets the first requests through") {
  fault_injector inj({parse_fault_spec("path=/,kind=status,status=500,after=2")});
  CHECK(!inj.decide("GET", "/a", "").status);
  CHECK(!inj.decide("GET", "/b", "").status);
  CHECK(inj.decide("GET", "/c", "").status == 500u);
}

TEST_CASE("faults: stats normalize ids in paths") {
  CHECK(normalize_path("/v1/project/0b1c2d3e-aaaa-4bbb-8ccc-123456789abc") == "/v1/project/{id}");
  CHECK(normalize_path("/v1/project_logs/0b1c2d3e-aaaa-4bbb-8ccc-123456789abc/insert") == "/v1/project_logs/{id}/insert");
  CHECK(normalize_path("/btql") == "/btql");
  CHECK(normalize_path("/") == "/");
}
