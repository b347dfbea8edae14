#include "stores/state_store.hpp"

#include "test_support.hpp"

#include <doctest/doctest.h>

#include <string>
#include <tuple>
#include <vector>

using ferry::stores::state_store;
using ferry::test::temp_dir;

TEST_CASE("state_store: dropped-field records round-trip, replace, erase and survive a reopen") {
  temp_dir dir;
  const state_store::dropped_fields exp = {{"dataset_version", "no destination version"},
                                           {"parameters_version", "a reason with \"quotes\" and\nnewline"}};
  {
    auto st = state_store::open(dir.path().string());
    st.put_id("experiment", "e1", "d1");
    st.put_dropped("experiment", "e1", exp);
    st.put_dropped("view", "v1", {{"options.projectId", "id has no mapping"}});
    st.put_dropped("view", "v2", {{"user_id", "x"}});
    st.put_dropped("view", "v2", {});  // nothing dropped any more: the record goes
    CHECK(st.get_dropped("view", "v2").empty());
    CHECK(st.get_dropped("view", "nope").empty());
  }
  auto st = state_store::open_read_only(dir.path().string());
  CHECK(st.get_dropped("experiment", "e1") == exp);
  std::vector<std::tuple<std::string, std::string, std::size_t>> seen;
  st.for_each_dropped([&](std::string_view t, std::string_view s, const state_store::dropped_fields& f) {
    seen.emplace_back(std::string(t), std::string(s), f.size());
    return true;
  });
  CHECK(seen == std::vector<std::tuple<std::string, std::string, std::size_t>>{{"experiment", "e1", 2}, {"view", "v1", 1}});
  // The id map next to the records is untouched by them.
  CHECK(st.get_id("experiment", "e1") == "d1");
  CHECK(st.count_ids("experiment") == 1);
}
