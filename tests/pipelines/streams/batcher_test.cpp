#include "pipelines/streams/batcher.hpp"
#include "pipelines/streams/overflow.hpp"

#include <boost/json.hpp>
#include <doctest/doctest.h>

#include <string>

using namespace ferry::pipelines::streams;

namespace {
event_row row(int i, std::size_t size = 10) {
  event_row r;
  r.id = "r" + std::to_string(i);
  r.key = "k" + std::to_string(1000 + i);
  r.json = "{\"id\":\"" + r.id + "\",\"p\":\"" + std::string(size, 'x') + "\"}";
  return r;
}
}  // namespace

TEST_CASE("batcher: bounded by rows") {
  batcher b({.max_rows = 3, .max_bytes = 1 << 20}, 1);
  std::vector<batch> out;
  for (int i = 0; i < 7; ++i) b.add(row(i), out);
  REQUIRE(out.size() == 2);
  CHECK(out[0].seq == 1);
  CHECK(out[1].seq == 2);
  CHECK(out[0].rows.size() == 3);
  CHECK(out[1].first_key() == "k1003");
  auto tail = b.flush();
  REQUIRE(tail);
  CHECK(tail->seq == 3);
  CHECK(tail->rows.size() == 1);
  CHECK_FALSE(b.flush());
}

TEST_CASE("batcher: bounded by bytes, never exceeding the cap with several rows") {
  const std::size_t row_bytes = row(0, 100).json.size();
  const std::size_t cap = logs3_overhead_bytes + 3 * row_bytes + 2;  // exactly three rows fit
  batcher b({.max_rows = 100, .max_bytes = cap}, 5);
  std::vector<batch> out;
  for (int i = 0; i < 10; ++i) b.add(row(i, 100), out);
  if (auto t = b.flush()) out.push_back(std::move(*t));
  std::size_t total = 0;
  for (auto& x : out) {
    CHECK(x.body_bytes <= cap);
    CHECK(x.body_bytes == logs3_body(x.rows).size());
    total += x.rows.size();
  }
  CHECK(total == 10);
  CHECK(out.front().rows.size() == 3);
  CHECK(out.front().seq == 5);
}

TEST_CASE("batcher: a row bigger than the cap travels alone") {
  batcher b({.max_rows = 100, .max_bytes = 200}, 1);
  std::vector<batch> out;
  b.add(row(0, 10), out);
  b.add(row(1, 500), out);
  b.add(row(2, 10), out);
  REQUIRE(out.size() == 2);
  CHECK(out[0].rows.size() == 1);
  CHECK(out[1].rows.size() == 1);
  CHECK(out[1].rows[0].id == "r1");
}

TEST_CASE("logs3_body: valid JSON with api_version 2; split_range halves left first") {
  std::vector<event_row> rows{row(1), row(2), row(3)};
  auto v = boost::json::parse(logs3_body(rows, 1, 3)).as_object();
  CHECK(v.at("api_version").as_int64() == 2);
  CHECK(v.at("rows").as_array().size() == 2);
  CHECK(logs3_body_size(rows, 0, 3) == logs3_body(rows).size());
  auto [l, r] = split_range(0, 5);
  CHECK(l == std::pair<std::size_t, std::size_t>{0, 2});
  CHECK(r == std::pair<std::size_t, std::size_t>{2, 5});
}

TEST_CASE("spill: largest eligible fields first until the row fits") {
  std::vector<field_size> f{{"id", 10, false},        {"input", 5'000'000, false}, {"output", 9'000'000, false},
                            {"metadata", 70'000, false}, {"expected", 1'000, false}, {"scores", 8'000'000, false},
                            {"error", 3'000'000, true}};
  SUBCASE("one field is enough") { CHECK(choose_spill_fields(f, 20'000'000, 18'874'368) == std::vector<std::string>{"output"}); }
  SUBCASE("two needed; scores is never spilled, nor an existing attachment, nor a small field") {
    CHECK(choose_spill_fields(f, 30'000'000, 18'874'368) == std::vector<std::string>{"output", "input"});
    CHECK(choose_spill_fields(f, 35'000'000, 10'000) == std::vector<std::string>{"output", "input", "metadata"});
  }
  SUBCASE("a row under the limit spills nothing") { CHECK(choose_spill_fields(f, 1000, 18'874'368).empty()); }
}

TEST_CASE("spill helpers: measure, read and replace a top-level field") {
  std::string r = R"({"id":"x","input":{"big":"abc"},"output":[1,2],"n":5,"att":{"type":"braintrust_attachment","key":"k"}})";
  auto sizes = measure_fields(r);
  REQUIRE(sizes.size() == 5);
  CHECK(sizes[1].name == "input");
  CHECK(sizes[1].bytes == std::string(R"({"big":"abc"})").size());
  CHECK(sizes[4].is_attachment);
  CHECK_FALSE(sizes[1].is_attachment);
  CHECK(field_raw(r, "output") == std::optional<std::string>("[1,2]"));
  CHECK_FALSE(field_raw(r, "nope"));
  auto replaced = replace_field(r, "input", R"({"type":"braintrust_attachment"})");
  auto v = boost::json::parse(replaced).as_object();
  CHECK(v.at("input").as_object().at("type").as_string() == "braintrust_attachment");
  CHECK(v.at("n").as_int64() == 5);
  CHECK_THROWS_AS(replace_field(r, "zzz", "1"), stream_error);
}

TEST_CASE("batcher: a row's riders (its comment rows) follow it in the same request and count in its size") {
  std::vector<event_row> rows{row(1), row(2), row(3)};
  rows[1].riders = R"(,{"id":"c1","comment":{"text":"t"},"origin":{"id":"r2"}},{"id":"c2","comment":{},"origin":{"id":"r2"}})";
  auto v = boost::json::parse(logs3_body(rows, 0, 3)).as_object();
  const auto& out = v.at("rows").as_array();
  REQUIRE(out.size() == 5);
  CHECK(out[1].as_object().at("id").as_string() == "r2");
  CHECK(out[2].as_object().at("id").as_string() == "c1");
  CHECK(out[3].as_object().at("id").as_string() == "c2");
  CHECK(out[4].as_object().at("id").as_string() == "r3");
  CHECK(logs3_body_size(rows, 0, 3) == logs3_body(rows).size());
  CHECK(logs3_body_size(rows, 1, 2) == logs3_body(rows, 1, 2).size());
  // The batcher's byte bound sees the riders: a cap that fits r2 alone but not with its comments closes
  // the batch before r2, and r2 keeps its riders in its own batch.
  batcher b({100, logs3_overhead_bytes + rows[0].json.size() + 1 + rows[1].json.size() + 5}, 1);
  std::vector<batch> done;
  for (auto& r : rows) b.add(r, done);
  if (auto last = b.flush()) done.push_back(std::move(*last));
  REQUIRE(done.size() >= 2);
  CHECK(done[0].rows.size() == 1);
  CHECK(done[1].rows[0].id == "r2");
  CHECK(done[1].rows[0].riders == rows[1].riders);
  for (const auto& x : done) CHECK(x.body_bytes == logs3_body(x.rows).size());
}

// The overflow request declares every row of the payload, a row's riders (its comment rows) included:
// the server counts the uploaded rows against the declaration, so a big row with comments failed.
TEST_CASE("overflow request: a row's riders are declared as rows of their own") {
  std::vector<event_row> rows(2);
  rows[0].json = R"({"id":"r1","project_id":"p","log_id":"g","input":1})";
  rows[1].json = R"({"id":"r2","project_id":"p","log_id":"g","input":2})";
  rows[1].riders = R"(,{"id":"c1","project_id":"p","log_id":"g","comment":{"text":"t"},"origin":{"id":"r2"}})";
  const auto body = logs3_body(rows);
  const auto req = boost::json::parse(overflow_request(rows, 0, rows.size(), body.size())).as_object();
  const auto& meta = req.at("rows").as_array();
  REQUIRE(meta.size() == 3);
  CHECK(meta[2].at("has_comment").as_bool());
  CHECK(meta[2].at("object_ids").at("log_id").as_string() == "g");
  CHECK_FALSE(meta[1].at("has_comment").as_bool());
}
