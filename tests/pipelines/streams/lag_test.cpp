// Issue 14 item 2: --follow's lag per stream in rows and seconds (streams/lag.hpp).
#include "pipelines/streams/lag.hpp"

#include "stores/state_store.hpp"

#include <doctest/doctest.h>

using namespace ferry::pipelines::streams;

TEST_CASE("lag: ISO-8601 UTC times as seconds since the epoch") {
  CHECK(iso_seconds("1970-01-01T00:00:00Z") == 0.0);
  CHECK(iso_seconds("2026-01-02T03:04:05.250Z") == doctest::Approx(1767323045.25));
  CHECK(iso_seconds("2026-01-02T03:04:05+00:00") == doctest::Approx(1767323045.0));
  CHECK(iso_seconds("2026-01-02 03:04:05") == doctest::Approx(1767323045.0));
  CHECK_FALSE(iso_seconds("2026-01-02T03:04:05+02:00"));
  CHECK_FALSE(iso_seconds("yesterday"));
  CHECK_FALSE(iso_seconds(""));
}

TEST_CASE("lag: seconds from the newest row copied before to the newest the round copied") {
  auto first = measure_lag(10, "2026-01-01T00:00:00Z", std::nullopt);
  CHECK(first.rows == 10);
  CHECK_FALSE(first.seconds);  // no baseline yet
  CHECK(describe(first) == "lag_rows=10 lag_seconds=n/a");
  auto second = measure_lag(3, "2026-01-01T00:01:30.5Z", first);
  CHECK(second.seconds == doctest::Approx(90.5));
  CHECK(second.newest_created == "2026-01-01T00:01:30.5Z");
  CHECK(describe(second) == "lag_rows=3 lag_seconds=90.5");
  auto idle = measure_lag(0, "", second);
  CHECK(idle.seconds == 0.0);
  CHECK(idle.newest_created == second.newest_created);  // the baseline carries over
  auto updates_only = measure_lag(2, "2025-12-01T00:00:00Z", second);  // updates keep their old created
  CHECK(updates_only.seconds == 0.0);
  CHECK(updates_only.newest_created == second.newest_created);

  auto st = ferry::stores::state_store::open_memory();
  save_lag(st, "logs:p1", second);
  save_lag(st, "logs:p2", first);
  auto back = load_lags(st);
  REQUIRE(back.size() == 2);
  CHECK(back.at("logs:p1").rows == 3);
  CHECK(back.at("logs:p1").seconds == doctest::Approx(90.5));
  CHECK(back.at("logs:p1").newest_created == second.newest_created);
  CHECK_FALSE(back.at("logs:p2").seconds);
}
