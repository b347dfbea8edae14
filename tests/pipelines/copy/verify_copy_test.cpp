// `ferry copy --verify` (verify_copy) over in-memory connectors, the copy's metrics, and the
// braintrust:// URI checks that need no server.
#include "pipelines/copy/copy_stream.hpp"
#include "pipelines/copy/verify.hpp"

#include "engine/metrics.hpp"
#include "stores/state_store.hpp"

#include <boost/json.hpp>

#include <doctest/doctest.h>

#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

using namespace ferry::pipelines::copy;
namespace json = boost::json;

namespace {

/// Rows given as JSON objects, one page of `limit` rows after the cursor (the row's index).
class list_source final : public source {
 public:
  explicit list_source(std::vector<json::object> rows, std::string key = "id") : rows_(std::move(rows)), key_(std::move(key)) {}
  page read_after(const std::string& cursor, std::size_t limit) override {
    page p;
    std::size_t i = cursor.empty() ? 0 : std::stoul(cursor) + 1;
    for (; i < rows_.size() && p.rows.size() < limit; ++i) {
      const auto& k = rows_[i].at(key_);
      p.rows.push_back(row{std::to_string(i), k.is_string() ? std::string(k.get_string()) : json::serialize(k), rows_[i]});
    }
    p.end = i >= rows_.size();
    return p;
  }
  std::string key_field() const override { return key_; }

 private:
  std::vector<json::object> rows_;
  std::string key_;
};

/// Stores nothing; as_stored moves every field but `id` under "doc" (a sink that maps fields).
class mapping_sink final : public sink {
 public:
  void write_batch(std::uint64_t, const std::vector<json::object>&) override {}
  json::object as_stored(json::object row) const override {
    json::object out{{"id", row.at("id")}, {"doc", json::object{}}};
    for (auto& [k, v] : row)
      if (k != "id") out["doc"].as_object()[k] = v;
    return out;
  }
};

class plain_sink final : public sink {
 public:
  void write_batch(std::uint64_t, const std::vector<json::object>&) override {}
};

std::vector<json::object> objs(std::initializer_list<const char*> texts) {
  std::vector<json::object> out;
  for (const char* t : texts) out.push_back(json::parse(t).as_object());
  return out;
}

}  // namespace

TEST_CASE("verify_copy: equal sides, whatever the order, key order of objects and number spelling") {
  list_source src(objs({R"({"id":1,"a":{"x":1,"y":[1,2]},"n":2.0})", R"({"id":2,"a":null})"}));
  list_source back(objs({R"({"id":2,"extra":"sink's own column"})", R"({"n":2,"a":{"y":[1,2],"x":1.0},"id":1})"}));
  plain_sink dst;
  std::ostringstream out;
  const auto c = verify_copy(src, nullptr, dst, back, 1, out);
  CHECK(out.str() == "");
  CHECK(c.differences == 0);
  CHECK(c.expected == 2);
  CHECK(c.read_back == 2);
}

TEST_CASE("verify_copy: one DIFF line per difference, naming the key (and the fields)") {
  list_source src(objs({R"({"id":"a","v":1,"w":"x"})", R"({"id":"b","v":2})", R"({"id":"c","v":3})", R"({"id":"d","v":4})"}));
  list_source back(objs({R"({"id":"a","v":1,"w":"changed"})", R"({"id":"b","v":2})", R"({"id":"b","v":2})",
                         R"({"id":"z","v":9})", R"({"id":"c"})"}));
  plain_sink dst;
  std::ostringstream out;
  const auto c = verify_copy(src, nullptr, dst, back, 2, out);
  CHECK(out.str() ==
        "DIFF id=a: fields differ: w\n"
        "DIFF id=b: twice in the sink\n"
        "DIFF id=z: only in the sink\n"
        "DIFF id=c: fields differ: v\n"
        "DIFF id=d: missing in the sink\n");
  CHECK(c.differences == 5);
}

TEST_CASE("verify_copy: the transform applies (filtered rows are not expected) and the sink's stored form is compared") {
  list_source src(objs({R"({"id":1,"keep":true,"s":"x"})", R"({"id":2,"keep":false,"s":"y"})"}));
  list_source back(objs({R"({"id":1,"doc":{"keep":true,"s":"x","tag":"t"}})"}));
  mapping_sink dst;
  const auto tf = transform::parse("rules:\n  - filter: {field: keep, op: eq, value: true}\n  - set: {field: tag, value: t}\n", "t");
  std::ostringstream out;
  CHECK(verify_copy(src, &tf, dst, back, 10, out).differences == 0);
  CHECK(out.str() == "");
}

TEST_CASE("verify_copy: a sink without objects or booleans (JSON text, 0/1) compares equal; other types do not") {
  list_source src(objs({R"({"id":1,"o":{"k":[1]},"b":true,"s":"{\"k\":[1]}"})"}));
  list_source same(objs({R"({"id":1,"o":"{\"k\": [1]}","b":1,"s":"{\"k\":[1]}"})"}));
  list_source other(objs({R"({"id":1,"o":"{\"k\": [2]}","b":2,"s":{"k":[1]}})"}));
  plain_sink dst;
  std::ostringstream a, b;
  CHECK(verify_copy(src, nullptr, dst, same, 10, a).differences == 0);
  list_source src2(objs({R"({"id":1,"o":{"k":[1]},"b":true,"s":"{\"k\":[1]}"})"}));
  CHECK(verify_copy(src2, nullptr, dst, other, 10, b).differences == 1);
  CHECK(b.str() == "DIFF id=1: fields differ: b, o, s\n");
}

TEST_CASE("copy_stream: metrics count the rows, bytes and requests of the copy pair") {
  ferry::engine::metrics_registry reg;
  auto store = ferry::stores::state_store::open_memory();
  list_source src(objs({R"({"id":1})", R"({"id":2})", R"({"id":3})"}));
  plain_sink dst;
  copy_observe obs;
  obs.metrics = &reg;
  obs.from_label = "jsonl";
  obs.to_label = "braintrust";
  obs.progress_interval = std::chrono::milliseconds(0);
  const auto counts = copy_stream(src, dst, nullptr, store, 2, 1, "fake", obs);
  CHECK(counts.written == 3);
  const auto text = reg.render();
  CHECK(text.find("ferry_copy_rows_total{from=\"jsonl\",to=\"braintrust\"} 3\n") != std::string::npos);
  CHECK(text.find("ferry_copy_bytes_total{from=\"jsonl\",to=\"braintrust\"} 24\n") != std::string::npos);  // {"id":1} x 3
  CHECK(text.find("ferry_copy_requests_total{from=\"jsonl\",to=\"braintrust\",op=\"write\"} 2\n") != std::string::npos);
  CHECK(text.find("ferry_copy_requests_total{from=\"jsonl\",to=\"braintrust\",op=\"read\"} 2\n") != std::string::npos);
}

TEST_CASE("braintrust:// URIs: a key in the URI, a missing key, a bad path are one line each, before any request") {
  const connector_context none;
  auto err = [&](const std::string& text, bool as_sink) {
    try {
      if (as_sink) open_sink(parse_uri(text), none);
      else open_source(parse_uri(text), none);
    } catch (const copy_error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  ::setenv("BT_SOURCE_API_KEY", "k", 1);
  CHECK(err("braintrust://me:sk-secret@api.example/p/logs", false) ==
        "braintrust://me:[REDACTED]@api.example/p/logs: an API key or user in the URI is refused: set BT_SOURCE_API_KEY "
        "(source) or BT_DEST_API_KEY (sink)");
  CHECK(err("braintrust://api.example/p/logs?api_key=sk-1", false).find("an API key in the URI is refused") != std::string::npos);
  CHECK(err("braintrust://api.example/p/tables/x", false).find(": not a Braintrust object path (braintrust://HOST") !=
        std::string::npos);
  CHECK(err("braintrust://api.example/p/dataset/", false).find("not a Braintrust object path") != std::string::npos);
  ::unsetenv("BT_DEST_API_KEY");
  CHECK(err("braintrust+http://127.0.0.1:1/p/dataset/d", true) ==
        "braintrust+http://127.0.0.1:1/p/dataset/d: no API key: set BT_DEST_API_KEY (keys are never taken from the URI)");
  ::unsetenv("BT_SOURCE_API_KEY");
}
