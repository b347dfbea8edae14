#include "pipelines/copy/transform.hpp"

#include <boost/json.hpp>

#include <doctest/doctest.h>

#include <string>

using namespace ferry::pipelines::copy;
namespace json = boost::json;

namespace {

row make_row(const std::string& fields_json, const std::string& id = "7") {
  row r;
  r.source_id = id;
  r.fields = json::parse(fields_json).as_object();
  return r;
}

/// Applies `yaml` to `in`; returns the row's fields as JSON text, or "dropped".
std::string run(const std::string& yaml, const std::string& in) {
  auto t = transform::parse(yaml, "t.yaml");
  auto r = make_row(in);
  return t.apply(r) ? json::serialize(r.fields) : "dropped";
}

std::string error_of(const std::string& yaml, const std::string& in = "{}") {
  try {
    auto t = transform::parse(yaml, "t.yaml");
    auto r = make_row(in);
    t.apply(r);
  } catch (const copy_error& e) {
    return e.what();
  }
  return "no error";
}

}  // namespace

TEST_CASE("transform rename: moves the value, leaves rows without the field alone, refuses to overwrite") {
  const std::string y = "rules:\n  - rename: {from: a, to: b}\n";
  CHECK(run(y, R"({"a":1,"c":2})") == R"({"c":2,"b":1})");
  CHECK(run(y, R"({"c":2})") == R"({"c":2})");
  CHECK(error_of(y, R"({"a":1,"b":2})") == "transform t.yaml rule 1 (rename a to b): row 7: field 'b' exists already");
}

TEST_CASE("transform drop: one field or a list") {
  CHECK(run("rules:\n  - drop: a\n", R"({"a":1,"b":2})") == R"({"b":2})");
  CHECK(run("rules:\n  - drop: [a, b]\n", R"({"a":1,"b":2,"c":3})") == R"({"c":3})");
}

TEST_CASE("transform cast: each target type, null kept, errors name the rule, the row and the value") {
  const auto cast = [](const std::string& to, const std::string& v) {
    return run("rules:\n  - cast: {field: x, to: " + to + "}\n", R"({"x":)" + v + "}");
  };
  CHECK(cast("int", R"("42")") == R"({"x":42})");
  CHECK(cast("int", "3E0") == R"({"x":3})");
  CHECK(cast("int", "true") == R"({"x":1})");
  CHECK(cast("float", R"("2.5")") == R"({"x":2.5E0})");
  CHECK(cast("string", "12") == R"({"x":"12"})");
  CHECK(cast("string", R"({"a":1})") == R"({"x":"{\"a\":1}"})");
  CHECK(cast("bool", R"("false")") == R"({"x":false})");
  CHECK(cast("bool", "1") == R"({"x":true})");
  CHECK(cast("json", R"("{\"a\":[1,2]}")") == R"({"x":{"a":[1,2]}})");
  CHECK(cast("int", "null") == R"({"x":null})");
  CHECK(error_of("rules:\n  - cast: {field: x, to: int}\n", R"({"x":"4x"})") ==
        "transform t.yaml rule 1 (cast x to int): row 7: value \"4x\" is not an integer");
  CHECK(error_of("rules:\n  - cast: {field: x, to: int}\n", R"({"x":2.5})") ==
        "transform t.yaml rule 1 (cast x to int): row 7: value 2.5E0 is not an integer");
  CHECK(error_of("rules:\n  - cast: {field: x, to: json}\n", R"({"x":"{nope"})") ==
        "transform t.yaml rule 1 (cast x to json): row 7: value \"{nope\" is not JSON text");
  CHECK(error_of("rules:\n  - cast: {field: x, to: date}\n") ==
        "transform t.yaml: rule 1: cast to 'date': not one of int, float, string, bool, json");
}

TEST_CASE("transform move_prefix: every field of the namespace moves, others stay, collisions refused") {
  const std::string y = "rules:\n  - move_prefix: {from: \"sys/\", to: \"legacy_sys/\"}\n";
  CHECK(run(y, R"({"sys/a":1,"sys/b":{"c":2},"system":3})") == R"({"system":3,"legacy_sys/a":1,"legacy_sys/b":{"c":2}})");
  CHECK(error_of(y, R"({"sys/a":1,"legacy_sys/a":2})") ==
        "transform t.yaml rule 1 (move_prefix sys/ to legacy_sys/): row 7: field 'sys/a' would become 'legacy_sys/a', which exists");
}

TEST_CASE("transform filter: keeps matching rows; each operator; missing fields never match a comparison") {
  const auto keeps = [](const std::string& op, const std::string& value, const std::string& row) {
    return run("rules:\n  - filter: {field: x, op: " + op + (value.empty() ? "" : ", value: " + value) + "}\n", row) != "dropped";
  };
  CHECK(keeps("eq", "ok", R"({"x":"ok"})"));
  CHECK_FALSE(keeps("eq", "ok", R"({"x":"no"})"));
  CHECK(keeps("eq", "3", R"({"x":3.0})"));           // numbers compare by value
  CHECK_FALSE(keeps("eq", "\"3\"", R"({"x":3})"));   // a quoted YAML scalar is a string
  CHECK(keeps("ne", "ok", R"({"x":"no"})"));
  CHECK(keeps("lt", "10", R"({"x":9})"));
  CHECK_FALSE(keeps("lt", "10", R"({"x":10})"));
  CHECK(keeps("le", "10", R"({"x":10})"));
  CHECK(keeps("gt", "b", R"({"x":"c"})"));
  CHECK(keeps("ge", "2.5", R"({"x":2.5})"));
  CHECK(keeps("in", "[a, b]", R"({"x":"b"})"));
  CHECK_FALSE(keeps("in", "[a, b]", R"({"x":"c"})"));
  CHECK(keeps("exists", "", R"({"x":null})"));
  CHECK(keeps("missing", "", R"({"y":1})"));
  CHECK_FALSE(keeps("gt", "1", R"({"y":1})"));
  CHECK(error_of("rules:\n  - filter: {field: x, op: lt, value: 5}\n", R"({"x":"abc"})") ==
        "transform t.yaml rule 1 (filter x lt 5): row 7: cannot order \"abc\" against 5 (numbers with numbers, strings with strings)");
  CHECK(error_of("rules:\n  - filter: {field: x, op: like, value: 5}\n") ==
        "transform t.yaml: rule 1: filter op 'like': not one of eq ne lt le gt ge in exists missing");
}

TEST_CASE("transform source_id and set: the source key and constants into named fields") {
  CHECK(run("rules:\n  - source_id: {field: origin_id}\n", R"({"a":1})") == R"({"a":1,"origin_id":"7"})");
  CHECK(run("rules:\n  - set: {field: v, value: 2}\n  - set: {field: s, value: two}\n  - set: {field: l, value: [1, x]}\n",
            "{}") == R"({"v":2,"s":"two","l":[1,"x"]})");
}

TEST_CASE("transform: rules run in order and a filter stops the rest") {
  const std::string y =
      "rules:\n  - rename: {from: a, to: b}\n  - filter: {field: b, op: gt, value: 1}\n  - set: {field: c, value: 1}\n";
  CHECK(run(y, R"({"a":2})") == R"({"b":2,"c":1})");
  CHECK(run(y, R"({"a":1})") == "dropped");
}

TEST_CASE("transform load errors name the file and the rule") {
  CHECK(error_of("rules: 3\n") == "transform t.yaml: needs a top-level 'rules:' list");
  CHECK(error_of("rulez: []\n") == "transform t.yaml: needs a top-level 'rules:' list");
  CHECK(error_of("rules: []\nextra: 1\n") == "transform t.yaml: unknown top-level key 'extra'");
  CHECK(error_of("rules:\n  - drop: a\n  - explode: {}\n") ==
        "transform t.yaml: rule 2: unknown rule 'explode' (rename, drop, cast, move_prefix, filter, source_id, set)");
  CHECK(error_of("rules:\n  - rename: {from: a}\n") == "transform t.yaml: rule 1: needs 'to' (a text)");
  CHECK(error_of("rules: [\n") .find("transform t.yaml: not YAML") == 0);
  CHECK(std::string(error_of("rules:\n  - set: {field: a}\n")) == "transform t.yaml: rule 1: set needs a 'value'");
}

TEST_CASE("connector uri: scheme, path and decoded parameters; passwords redacted") {
  const auto u = parse_uri("postgresql://me:s3cret@127.0.0.1:5432/db?table=my%20t&key=id");
  CHECK(u.scheme == "postgresql");
  CHECK(u.base == "postgresql://me:s3cret@127.0.0.1:5432/db");
  CHECK(u.param("table") == "my t");
  CHECK(u.param("key") == "id");
  CHECK(u.redacted().find("s3cret") == std::string::npos);
  CHECK(parse_uri("sqlite:///tmp/a.db?table=t").path == "/tmp/a.db");
  CHECK(parse_uri("postgres://h/db").scheme == "postgresql");
  CHECK_THROWS_AS(parse_uri("no-scheme"), copy_error);
  CHECK_THROWS_WITH_AS(parse_uri("jsonl:///d?key=a&key=b"), "jsonl:///d?key=a&key=b: query parameter 'key' given twice",
                       copy_error);
}

TEST_CASE("connector parse_json reads doubles exactly (Boost.JSON 1.81's parser is off by one ulp on some)") {
  const auto v = parse_json(R"({"x":90.28571428571429})", "t");
  CHECK(v.at("x").as_double() == 90.28571428571429);
  CHECK_THROWS_WITH_AS(parse_json("{", "f line 2"), doctest::Contains("f line 2: not JSON"), copy_error);
}
