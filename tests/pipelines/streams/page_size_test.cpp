#include "pipelines/streams/page_size.hpp"

#include <doctest/doctest.h>

using namespace ferry::pipelines::streams;
using namespace std::chrono_literals;

TEST_CASE("page_size: shrinks on 500/504, floors, then fails at the floor") {
  ferry::engine::manual_clock clk;
  page_size_controller p({.initial_limit = 1000, .min_limit = 25});
  CHECK(p.limit() == 1000);
  std::vector<std::size_t> ladder;
  while (p.on_server_error(clk.now())) ladder.push_back(p.limit());
  CHECK(ladder == std::vector<std::size_t>{500, 250, 125, 62, 31, 25});
  CHECK(p.limit() == 25);
  CHECK_FALSE(p.on_server_error(clk.now()));
}

TEST_CASE("page_size: grows back additively after fast pages, never above the configured limit") {
  ferry::engine::manual_clock clk;
  page_size_controller p({.initial_limit = 800, .min_limit = 25, .slow_page = 10s, .successes_per_step = 1});
  REQUIRE(p.on_server_error(clk.now()));
  REQUIRE(p.on_server_error(clk.now()));
  CHECK(p.limit() == 200);
  p.on_page(100ms, clk.now());
  CHECK(p.limit() == 300);  // + 800/8
  for (int i = 0; i < 20; ++i) p.on_page(100ms, clk.now());
  CHECK(p.limit() == 800);
}

TEST_CASE("page_size: a slow page shrinks the next one") {
  ferry::engine::manual_clock clk;
  page_size_controller p({.initial_limit = 1000, .min_limit = 25, .slow_page = 5s});
  p.on_page(6s, clk.now());
  CHECK(p.limit() == 500);
}

TEST_CASE("page_size: a configured limit at or below the floor cannot shrink") {
  ferry::engine::manual_clock clk;
  page_size_controller p({.initial_limit = 20, .min_limit = 25});
  CHECK(p.limit() == 20);
  CHECK_FALSE(p.on_server_error(clk.now()));
}

TEST_CASE("page bytes estimate: a reader asks for the largest of its last 8 pages, not the last one") {
  using ferry::pipelines::streams::page_bytes_estimate;
  page_bytes_estimate e(1000);
  CHECK(e.expected() == 2 * 2048 * 1000);  // before any page: 2 KB rows, twice
  e.add(1'000'000);
  CHECK(e.expected() == 1'000'000);
  // A large page (1% rows of 100 KB-1.4 MB) among small ones: asked for until 8 pages passed it (the
  // old rule, the last page's bytes, asked 1 MB right after it and a large page overshot the budget).
  e.add(9'000'000);
  for (int i = 0; i < 7; ++i) {
    e.add(1'000'000);
    CHECK(e.expected() == 9'000'000);
  }
  e.add(1'000'000);
  CHECK(e.expected() == 1'000'000);
  e.add(10);
  CHECK(e.expected() == 1'000'000);
  page_bytes_estimate tiny(1);
  for (int i = 0; i < 8; ++i) tiny.add(10);
  CHECK(tiny.expected() == 64u << 10);  // at least 64 KiB
}
