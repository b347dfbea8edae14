#include "engine/aimd.hpp"

#include <doctest/doctest.h>

#include <stdexcept>

using namespace ferry::engine;
using namespace std::chrono_literals;

TEST_CASE("aimd: additive increase up to max, multiplicative decrease down to min") {
  manual_clock clk;
  aimd_config c;
  c.min = 2;
  c.max = 10;
  c.initial = 8;
  aimd_controller a(c);
  CHECK(a.value() == 8);
  CHECK(a.on_success(10ms, clk.now()) == 9);
  CHECK(a.on_success(10ms, clk.now()) == 10);
  CHECK(a.on_success(10ms, clk.now()) == 10);
  CHECK(a.on_throttle(clk.now()) == 5);
  CHECK(a.on_throttle(clk.now()) == 2);  // 2.5 floors to 2
  CHECK(a.on_throttle(clk.now()) == 2);  // never below min
}

TEST_CASE("aimd: one burst of throttles halves only once within the cooldown") {
  manual_clock clk;
  aimd_config c;
  c.min = 1;
  c.max = 64;
  c.initial = 32;
  c.cooldown_successes = 3;
  c.cooldown = 2s;
  aimd_controller a(c);
  CHECK(a.on_throttle(clk.now()) == 16);
  for (int i = 0; i < 10; ++i) CHECK(a.on_throttle(clk.now()) == 16);  // the rest of the burst
  CHECK(a.decreases() == 1);
  SUBCASE("after enough successes the next throttle decreases again") {
    for (int i = 0; i < 3; ++i) a.on_success(1ms, clk.now());
    CHECK(a.value() == 19);
    CHECK(a.on_throttle(clk.now()) == 9);
  }
  SUBCASE("after the cooldown time the next throttle decreases again") {
    clk.advance(2s);
    CHECK(a.on_throttle(clk.now()) == 8);
  }
}

TEST_CASE("aimd: slow successes hold the value when a latency target is set") {
  manual_clock clk;
  aimd_config c;
  c.initial = 4;
  c.latency_target = 100ms;
  aimd_controller a(c);
  CHECK(a.on_success(500ms, clk.now()) == 4);
  CHECK(a.on_success(50ms, clk.now()) == 5);
}

TEST_CASE("aimd: page size shrinks on failure and grows back in steps") {
  manual_clock clk;
  aimd_config c;
  c.min = 100;
  c.max = 1000;
  c.initial = 1000;
  c.additive_step = 100;
  c.successes_per_step = 2;
  c.failure_factor = 0.25;
  aimd_controller a(c);
  CHECK(a.on_failure(clk.now()) == 250);
  CHECK(a.on_success(1ms, clk.now()) == 250);
  CHECK(a.on_success(1ms, clk.now()) == 350);
  for (int i = 0; i < 20; ++i) a.on_success(1ms, clk.now());
  CHECK(a.value() == 1000);
}

TEST_CASE("aimd: inconsistent configs are rejected with the field named") {
  aimd_config c;
  c.min = 10;
  c.max = 5;
  CHECK_THROWS_WITH_AS(aimd_controller{c}, doctest::Contains("max"), std::invalid_argument);
  c = {};
  c.decrease_factor = 1.5;
  CHECK_THROWS_WITH_AS(aimd_controller{c}, doctest::Contains("decrease_factor"), std::invalid_argument);
  c = {};
  c.initial = 1000;  // clamped into range, not an error
  CHECK(aimd_controller(c).value() == 64);
}
