// verify_tally on grouped streams (several experiments or datasets fetched per query): rows are keyed by
// (object, id), the destination object translated back through the id map, so repeated ids across the
// objects of a group are not false differences and a row written into the wrong object is caught.
#include "pipelines/streams/verify.hpp"

#include <boost/json.hpp>
#include <doctest/doctest.h>

using namespace ferry::pipelines::streams;
namespace json = boost::json;

namespace {
json::object row(std::string_view object, std::string_view id, int input) {
  return json::object{{"experiment_id", object}, {"id", id}, {"input", input}};
}
verify_tally grouped() { return verify_tally("experiments group", stream_kind::experiment, {{"d1", "s1"}, {"d2", "s2"}}); }
}  // namespace

TEST_CASE("verify grouped: one id in two experiments of a group, each copied into its twin, is equal") {
  // Before: keyed by id alone, the second source row replaced the first and the destination rows
  // counted as mismatched/extra (a false difference).
  auto t = grouped();
  t.add_source(row("s1", "r", 1));
  t.add_source(row("s2", "r", 2));
  t.add_dest(row("d2", "r", 2));
  t.add_dest(row("d1", "r", 1));
  auto r = t.finish();
  INFO(r.summary());
  CHECK(r.ok());
  CHECK(r.source_digest == r.dest_digest);
}

TEST_CASE("verify grouped: a row written into the wrong experiment of the group is missing there and extra here") {
  // Before: keyed by id alone, the row matched its source row whatever object it landed in: ok.
  auto t = grouped();
  t.add_source(row("s1", "a", 1));
  t.add_source(row("s2", "b", 2));
  t.add_dest(row("d1", "a", 1));
  t.add_dest(row("d1", "b", 2));  // belongs in d2
  auto r = t.finish();
  INFO(r.summary());
  CHECK_FALSE(r.ok());
  CHECK(r.missing == 1);
  CHECK(r.extra == 1);
  CHECK(r.missing_ids == std::vector<std::string>{"s2/b"});
  CHECK(r.extra_ids == std::vector<std::string>{"s1/b"});
}

TEST_CASE("verify grouped: a destination row of an object the id map does not pair is extra, named by its id") {
  auto t = grouped();
  t.add_source(row("s1", "a", 1));
  t.add_dest(row("d1", "a", 1));
  t.add_dest(row("d9", "a", 1));
  auto r = t.finish();
  CHECK(r.extra == 1);
  CHECK(r.extra_ids == std::vector<std::string>{"dest:d9/a"});
}

TEST_CASE("verify grouped: the object field follows the kind") {
  CHECK(object_field(stream_kind::project_logs) == "project_id");
  CHECK(object_field(stream_kind::experiment) == "experiment_id");
  CHECK(object_field(stream_kind::dataset) == "dataset_id");
  verify_tally t("datasets", stream_kind::dataset, {{"d1", "s1"}, {"d2", "s2"}});
  t.add_source(json::object{{"dataset_id", "s1"}, {"id", "x"}, {"input", 1}});
  t.add_source(json::object{{"dataset_id", "s2"}, {"id", "x"}, {"input", 2}});
  t.add_dest(json::object{{"dataset_id", "d1"}, {"id", "x"}, {"input", 2}});  // contents swapped between objects
  t.add_dest(json::object{{"dataset_id", "d2"}, {"id", "x"}, {"input", 1}});
  auto r = t.finish();
  CHECK(r.mismatched == 2);
}
