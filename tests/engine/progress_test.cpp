#include "engine/progress.hpp"

#include <doctest/doctest.h>

#include <thread>
#include <vector>

using namespace ferry::engine;
using namespace std::chrono_literals;

TEST_CASE("progress: counters per stream, snapshot sorted, total summed") {
  progress_registry reg;
  auto& a = reg.stream("project_logs:p1");
  auto& b = reg.stream("dataset:d1");
  a.add_rows(10);
  a.add_bytes(1000);
  a.add_requests();
  b.add_rows(5);
  b.add_retries(2);
  CHECK(&reg.stream("project_logs:p1") == &a);  // stable reference
  auto snap = reg.snapshot();
  REQUIRE(snap.size() == 2);
  CHECK(snap[0].first == "dataset:d1");
  CHECK(snap[1].second == progress_counts{10, 1000, 1, 0});
  CHECK(reg.total() == progress_counts{15, 1000, 1, 2});
}

TEST_CASE("progress: counters are exact under concurrent updates") {
  progress_registry reg;
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t)
    ts.emplace_back([&] {
      for (int i = 0; i < 10000; ++i) reg.stream("s").add_rows(1);
    });
  for (auto& t : ts) t.join();
  CHECK(reg.stream("s").snapshot().rows == 40000);
}

TEST_CASE("progress: rate and eta") {
  auto r = estimate(500, 2000, 10s);
  CHECK(r.per_second == doctest::Approx(50.0));
  REQUIRE(r.eta);
  CHECK(*r.eta == 30s);
  CHECK(*r.fraction == doctest::Approx(0.25));
  CHECK(format_rate_eta(r, "rows") == "50 rows/s, 25% eta 30s");

  auto unknown = estimate(500, std::nullopt, 10s);
  CHECK_FALSE(unknown.eta);
  CHECK_FALSE(unknown.fraction);

  auto no_time = estimate(500, 1000, 0s);
  CHECK(no_time.per_second == 0);
  CHECK_FALSE(no_time.eta);

  auto over = estimate(1200, 1000, 10s);  // more rows than counted (new rows arrived)
  CHECK(*over.fraction == 1.0);
  CHECK(*over.eta == 0s);
  CHECK(format_rate_eta(estimate(123456, 1000000, 10s), "rows") == "12.3k rows/s, 12% eta 1m12s");
}
