#include "stores/state_store.hpp"

#include "stores/kv_store.hpp"
#include "store_errors.hpp"
#include "test_support.hpp"

#include <doctest/doctest.h>

#include <optional>
#include <string>

using ferry::stores::state_store;
using ferry::test::temp_dir;

// RocksDB writes CURRENT, then creates the missing column families one by one: a SIGKILL during the first
// open of a state dir (seen in the resource-phase kill test) leaves a database with only some of Ferry's
// column families and no 'meta'. That is Ferry's own state being created, not another program's.
TEST_CASE("state_store: a state dir whose creation was interrupted between column families is adopted") {
  temp_dir tmp("ferry-state");
  const auto dir = tmp.str() + "/s";
  { auto kv = ferry::stores::kv_store::open_rocksdb(dir, {"cursors", "id_map"}, {}); }
  CHECK(ferry::test::error_of([&] { state_store::open_read_only(dir); }).find("no state yet") != std::string::npos);
  auto st = state_store::open(dir);
  st.put_id("project", "s", "d");
  CHECK(st.get_id("project", "s") == std::optional<std::string>("d"));
}

TEST_CASE("state_store: a database with Ferry's column family names but data and no 'meta' is still refused") {
  temp_dir tmp("ferry-state");
  const auto dir = tmp.str() + "/s";
  {
    auto kv = ferry::stores::kv_store::open_rocksdb(dir, {"cursors"}, {});
    kv->put("cursors", "k", "v", true);
  }
  CHECK(ferry::test::error_of([&] { state_store::open(dir); }).find("another program") != std::string::npos);
}
