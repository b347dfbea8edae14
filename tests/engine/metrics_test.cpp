#include "engine/metrics.hpp"

#include <doctest/doctest.h>

#include <string>

using namespace ferry::engine;

TEST_CASE("metrics: counters and gauges render in the text exposition format 0.0.4") {
  metrics_registry r;
  auto& rows = r.counters("ferry_rows_copied_total", "Rows copied.", {"stream"});
  rows.with({"logs:p1"}).inc(5);
  rows.with({"logs:p1"}).inc();
  rows.with({"dataset_events:d1"}).inc(2);
  r.gauges("ferry_page_size_rows", "Page size.", {"stream"}).with({"logs:p1"}).set(250);
  r.gauges("ferry_lag_seconds", "Lag.", {"stream"}).with({"logs:p1"}).set(1.5);
  const auto text = r.render();
  CHECK(text ==
        "# HELP ferry_lag_seconds Lag.\n"
        "# TYPE ferry_lag_seconds gauge\n"
        "ferry_lag_seconds{stream=\"logs:p1\"} 1.5\n"
        "# HELP ferry_page_size_rows Page size.\n"
        "# TYPE ferry_page_size_rows gauge\n"
        "ferry_page_size_rows{stream=\"logs:p1\"} 250\n"
        "# HELP ferry_rows_copied_total Rows copied.\n"
        "# TYPE ferry_rows_copied_total counter\n"
        "ferry_rows_copied_total{stream=\"dataset_events:d1\"} 2\n"
        "ferry_rows_copied_total{stream=\"logs:p1\"} 6\n");
}

TEST_CASE("metrics: label values and help texts are escaped; constant labels come first") {
  metrics_registry r;
  r.set_const_label("shard", "3");
  r.counters("x_total", "a \\ b\nc", {"name"}).with({"q\"uo\\te\nnl"}).inc();
  r.gauges("y", "no labels").with({}).set(-2);
  const auto text = r.render();
  CHECK(text.find("# HELP x_total a \\\\ b\\nc\n") != std::string::npos);
  CHECK(text.find("x_total{shard=\"3\",name=\"q\\\"uo\\\\te\\nnl\"} 1\n") != std::string::npos);
  CHECK(text.find("y{shard=\"3\"} -2\n") != std::string::npos);
}

TEST_CASE("metrics: a family is registered once; another type or other labels is a programming error") {
  metrics_registry r;
  auto& a = r.counters("a_total", "A.", {"side"});
  CHECK(&r.counters("a_total", "A.", {"side"}) == &a);
  CHECK(&a.with({"source"}) == &a.with(std::vector<std::string>{"source"}));
  CHECK_THROWS_AS(r.gauges("a_total", "A.", {"side"}), std::logic_error);
  CHECK_THROWS_AS(r.counters("a_total", "A.", {"other"}), std::logic_error);
  CHECK_THROWS_AS(a.with({"x", "y"}), std::invalid_argument);
  CHECK_THROWS_AS(r.counters("bad-name", "B."), std::invalid_argument);
  CHECK_THROWS_AS(r.counters("c_total", "C.", {"__reserved"}), std::invalid_argument);
}

TEST_CASE("metrics: sample values as Prometheus parses them") {
  CHECK(format_sample_value(0) == "0");
  CHECK(format_sample_value(12345678901234.0) == "12345678901234");
  CHECK(format_sample_value(0.25) == "0.25");
  CHECK(format_sample_value(0.34) == "0.34");  // the shortest form that reads back exactly
  CHECK(format_sample_value(1.0 / 0.0) == "+Inf");
  CHECK(format_sample_value(-1.0 / 0.0) == "-Inf");
  CHECK(format_sample_value(0.0 / 0.0) == "NaN");
}

TEST_CASE("metrics: process RSS and CPU seconds come from /proc/self at each render") {
  metrics_registry r;
  add_process_metrics(r);
  const auto s = read_process_stats();
  CHECK(s.rss_bytes > 1'000'000);  // a running test binary holds more than 1 MB
  CHECK(s.cpu_seconds >= 0);
  const auto text = r.render();
  CHECK(text.find("# TYPE process_cpu_seconds_total counter\n") != std::string::npos);
  CHECK(text.find("# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes ") != std::string::npos);
  CHECK(text.find("process_resident_memory_bytes 0\n") == std::string::npos);
}
