#include "emulator/btql.hpp"

#include <boost/json.hpp>

#include <doctest/doctest.h>

using namespace ferry::emulator;

namespace {

std::string parse_error(std::string_view text) {
  try {
    parse_btql_text(text);
  } catch (const btql_error& e) {
    return e.what();
  }
  return "(no error)";
}

std::string ast_error(std::string_view json_text) {
  try {
    parse_btql_ast(boost::json::parse(json_text).as_object());
  } catch (const btql_error& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

TEST_CASE("btql text: the reference tool's full query parses into every clause") {
  auto q = parse_btql_text(
      "select: *\nfrom: project_logs('p-1') spans\nfilter: created >= '2024-01-01T00:00:00Z' and created < "
      "'2024-02-01T00:00:00Z' and _pagination_key > 'p00001'\nsort: _pagination_key asc\nlimit: 1000");
  CHECK(q.select_star);
  CHECK(q.object_type == "project_logs");
  REQUIRE(q.object_ids == std::vector<std::string>{"p-1"});
  REQUIRE(q.filters.size() == 3);
  CHECK(q.filters[0].field == btql_field::created);
  CHECK(q.filters[0].op == btql_op::ge);
  CHECK(q.filters[0].value == "2024-01-01T00:00:00Z");
  CHECK(q.filters[1].op == btql_op::lt);
  CHECK(q.filters[2].field == btql_field::pagination_key);
  CHECK(q.filters[2].op == btql_op::gt);
  CHECK(q.filters[2].value == "p00001");
  CHECK_FALSE(q.descending);
  REQUIRE(q.limit.has_value());
  CHECK(*q.limit == 1000);
}

TEST_CASE("btql text: grouped from, select _pagination_key, desc sort, id and _xact_id filters") {
  auto q = parse_btql_text(
      "select: _pagination_key\nfrom: dataset('a', 'b','c') spans\nfilter: id = 'x' and _xact_id <= '1000' and "
      "_pagination_key >= 'k'\nsort: _pagination_key desc\nlimit: 1");
  CHECK_FALSE(q.select_star);
  CHECK(q.object_type == "dataset");
  CHECK(q.object_ids == std::vector<std::string>{"a", "b", "c"});
  REQUIRE(q.filters.size() == 3);
  CHECK(q.filters[0].field == btql_field::id);
  CHECK(q.filters[0].op == btql_op::eq);
  CHECK(q.filters[1].field == btql_field::xact_id);
  CHECK(q.filters[1].op == btql_op::le);
  CHECK(q.filters[2].op == btql_op::ge);
  CHECK(q.descending);
  CHECK(*q.limit == 1);
}

TEST_CASE("btql text: literals decode \\\\ and \\' escapes and round-trip through btql_quote") {
  const std::string nasty = "it's a \\ path";
  auto q = parse_btql_text("select: *\nfrom: experiment(" + btql_quote("e'1") + ")\nfilter: id = " +
                           btql_quote(nasty));
  CHECK(q.object_ids.front() == "e'1");
  CHECK(q.filters.front().value == nasty);
  CHECK(btql_quote("a'b\\c") == "'a\\'b\\\\c'");
}

TEST_CASE("btql text: clauses may be in any order, limit 0 is allowed, no sort means ascending") {
  auto q = parse_btql_text("from: experiment('e') spans\nlimit: 0\nselect: *");
  CHECK(q.object_type == "experiment");
  CHECK(*q.limit == 0);
  CHECK_FALSE(q.descending);
  CHECK(q.filters.empty());
}

TEST_CASE("btql text: parse errors name the clause at fault") {
  CHECK(parse_error("select: *") == "from clause: missing");
  CHECK(parse_error("from: dataset('d')") == "select clause: missing");
  CHECK(parse_error("select: *\nfrom: dataset('d')\nfilter: metadata = upper('x')").find("filter clause") == 0);
  CHECK(parse_error("select: *\nfrom: dataset('d')\nfilter: id ~ 'x'").find("filter clause") == 0);
  CHECK(parse_error("select: *\nfrom: dataset('d')\nfilter: id = 'x' xor id = 'y'").find("filter clause") == 0);
  CHECK(parse_error("select: *\nfrom: dataset('d')\nfilter: id = 'x").find("filter clause: unterminated") == 0);
  CHECK(parse_error("select: *\nfrom: widgets('d')").find("from clause") == 0);
  CHECK(parse_error("select: *\nfrom: dataset(d)").find("from clause") == 0);
  CHECK(parse_error("select: *\nfrom: dataset('d') topics").find("from clause") == 0);
  CHECK(parse_error("select: input,\nfrom: dataset('d')").find("select clause") == 0);
  CHECK(parse_error("select: *\nfrom: dataset('d')\nsort: created asc desc").find("sort clause") == 0);
  CHECK(parse_error("select: *\nfrom: dataset('d')\nsort: _pagination_key up").find("sort clause") == 0);
  CHECK(parse_error("select: *\nfrom: dataset('d')\nlimit: many").find("limit clause") == 0);
  CHECK(parse_error("select: *\nfrom: dataset('d')\nlimit: -1").find("limit clause") == 0);
  CHECK(parse_error("select: *\nfrom: dataset('d')\nlimit: 1 2").find("limit clause") == 0);
  CHECK(parse_error("select: *\nfrom: dataset('d')\ndimensions: x").find("dimensions: need at least one measure") == 0);
  CHECK(parse_error("select: *\nfrom: dataset('d')\nunpivot: x").find("unpivot clause: not supported") == 0);
  CHECK(parse_error("select: *\nselect: *\nfrom: dataset('d')") == "select clause: given twice");
  CHECK(parse_error("* from dataset").find("must start with a clause") != std::string::npos);
}

TEST_CASE("btql AST: the JS SDK's dataset fetch parses (star, function from, limit, cursor)") {
  auto q = parse_btql_ast(boost::json::parse(R"({"select":[{"op":"star"}],
      "from":{"op":"function","name":{"op":"ident","name":["dataset"]},"args":[{"op":"literal","value":"d-1"}]},
      "limit":4,"cursor":"abc"})").as_object());
  CHECK(q.select_star);
  CHECK(q.object_type == "dataset");
  CHECK(q.object_ids == std::vector<std::string>{"d-1"});
  CHECK(*q.limit == 4);
  CHECK(*q.cursor == "abc");
}

TEST_CASE("btql AST: filter and sort nodes, null cursor, no limit") {
  auto q = parse_btql_ast(boost::json::parse(R"({"select":[{"expr":{"op":"ident","name":["_pagination_key"]},"alias":"k"}],
      "from":{"op":"function","name":{"op":"ident","name":["experiment"]},"args":[{"op":"literal","value":"e1"},{"op":"literal","value":"e2"}]},
      "filter":{"op":"and","left":{"op":"gt","left":{"op":"ident","name":["_pagination_key"]},"right":{"op":"literal","value":"p1"}},
                "right":{"op":"le","left":{"op":"ident","name":["created"]},"right":{"op":"literal","value":"2025"}}},
      "sort":[{"expr":{"op":"ident","name":["_pagination_key"]},"dir":"desc"}],
      "cursor":null})").as_object());
  CHECK_FALSE(q.select_star);
  CHECK(q.object_ids.size() == 2);
  REQUIRE(q.filters.size() == 2);
  CHECK(q.filters[0].field == btql_field::pagination_key);
  CHECK(q.filters[0].op == btql_op::gt);
  CHECK(q.filters[1].field == btql_field::created);
  CHECK(q.descending);
  CHECK_FALSE(q.limit.has_value());
  CHECK_FALSE(q.cursor.has_value());
}

TEST_CASE("btql AST: errors name the member at fault") {
  CHECK(ast_error(R"({"select":[{"op":"star"}]})") == "from: missing");
  CHECK(ast_error(R"({"from":{"op":"function","name":{"op":"ident","name":["prompts"]},"args":[{"op":"literal","value":"x"}]}})")
            .find("from:") == 0);
  CHECK(ast_error(R"({"from":{"op":"function","name":{"op":"ident","name":["dataset"]},"args":[]}})").find("from:") == 0);
  CHECK(ast_error(R"({"from":{"op":"function","name":{"op":"ident","name":["dataset"]},"args":[{"op":"literal","value":"d"}]},"limit":-3})")
            .find("limit:") == 0);
  CHECK(ast_error(R"({"from":{"op":"function","name":{"op":"ident","name":["dataset"]},"args":[{"op":"literal","value":"d"}]},"filter":{"op":"or"}})")
            .find("filter:") == 0);
}

TEST_CASE("btql text: Ferry's and the reference tool's page queries stay on the key-range path") {
  for (const char* text :
       {"select: *\nfrom: project_logs('p') spans\nfilter: created >= '2024-01-01T00:00:00Z' and created < "
        "'2024-02-01T00:00:00Z' and _pagination_key > 'p1'\nsort: _pagination_key asc\nlimit: 1000",
        "select: _pagination_key\nfrom: experiment('a', 'b') spans\nfilter: _pagination_key >= 'p1'\nsort: "
        "_pagination_key asc\nlimit: 1",
        "select: * | from: project_logs('p') spans | filter: _pagination_key < 'p9' | sort: _pagination_key DESC | "
        "limit: 5",
        "SELECT * FROM dataset('d') LIMIT 5"}) {
    const auto q = parse_btql_text(text);
    CHECK_FALSE_MESSAGE(q.general, text);
  }
}

TEST_CASE("btql text: SQL and bt's pipe form parse into columns, filters, sorts, dimensions and measures") {
  auto q = parse_btql_text("SELECT metadata.kind AS kind, count(*) AS n FROM project_logs('p') traces WHERE input > 1 "
                           "OR NOT (id = 'x') GROUP BY metadata.kind ORDER BY n DESC LIMIT 3");
  CHECK(q.general);
  CHECK(q.shape == "traces");
  REQUIRE(q.dimensions.size() == 1);
  CHECK(q.dimensions[0].alias == "kind");
  CHECK(q.dimensions[0].expr.path == std::vector<std::string>{"metadata", "kind"});
  REQUIRE(q.measures.size() == 1);
  CHECK(q.measures[0].expr.name == "count");
  REQUIRE(q.filter_expr.has_value());
  CHECK(q.filter_expr->name == "or");
  REQUIRE(q.sort.size() == 1);
  CHECK(q.sort[0].descending);
  CHECK(*q.limit == 3);
  auto p = parse_btql_text("select: root_span_id, span_id | from: project_logs('p') spans | filter: span_id = 's' | "
                           "preview_length: -1 | limit: 1");
  CHECK(p.general);
  REQUIRE(p.columns.size() == 2);
  CHECK(p.columns[1].alias == "span_id");
  CHECK(parse_error("select: *\nfrom: dataset('d')\nmeasures: input").find("measures: 'input' is not an aggregate") == 0);
  CHECK(parse_error("SELECT * FROM dataset('d') HAVING 1").find("sql: having") == 0);
}

TEST_CASE("btql text: NOW() and INTERVAL fold into a literal time, so bt sync's page query stays on the key-range path") {
  const auto q = parse_btql_text(
      "select: * | from: project_logs('p') spans | limit: 100 | sort: _pagination_key DESC | filter: created >= NOW() - "
      "INTERVAL 259200 SECOND",
      "2024-03-04T05:06:07.089Z");
  CHECK_FALSE(q.general);
  CHECK(q.descending);
  REQUIRE(q.filters.size() == 1);
  CHECK(q.filters[0].field == btql_field::created);
  CHECK(q.filters[0].op == btql_op::ge);
  CHECK(q.filters[0].value == "2024-03-01T05:06:07.089Z");
  // A minus between values is subtraction, a minus before a number (after an operator) is its sign.
  const auto n = parse_btql_text("select: *\nfrom: dataset('d')\nfilter: input-1 > -2 and _xact_id = 5", "2024-01-01T00:00:00Z");
  REQUIRE(n.filter_expr);
  CHECK(n.filter_expr->args[0].args[0].name == "sub");
  CHECK(n.filter_expr->args[0].args[1].value == -2);
  // Errors name the clause (also in bt's one-line pipe form).
  CHECK(parse_error("select: * | from: dataset('d') | filter: created > NOW() - INTERVAL 1 YEAR").starts_with("filter clause: "));
  CHECK(parse_error("select: * | from: dataset('d') | filter: created > 1 % 2").starts_with("filter clause: "));
}

TEST_CASE("btql_shift_time: calendar arithmetic, formats and refusals") {
  CHECK(btql_shift_time("2024-02-28T23:00:00Z", 3600000000LL * 25) == "2024-03-01T00:00:00.000Z");  // leap day
  CHECK(btql_shift_time("2023-03-01", -86400000000LL) == "2023-02-28T00:00:00.000Z");
  CHECK(btql_shift_time("2024-01-01T00:00:00.5+00:00", 1) == "2024-01-01T00:00:00.500001Z");
  CHECK(btql_shift_time("1970-01-01T00:00:00Z", -1000) == "1969-12-31T23:59:59.999Z");
  CHECK_FALSE(btql_shift_time("2024-01-01T00:00:00+02:00", 0));
  CHECK_FALSE(btql_shift_time("yesterday", 0));
  CHECK_FALSE(btql_shift_time("2024-13-01", 0));
}
