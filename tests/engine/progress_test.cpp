#include "engine/progress.hpp"

#include "engine/log.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <cctype>
#include <sstream>
#include <string>
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

// A minimal terminal (printable bytes, CR, LF with scrolling, CSI n A, CSI J, CSI K) that records every
// row as it leaves the screen or as the test ends: enough to see what an operator sees.
struct mini_terminal {
  std::size_t height;
  std::vector<std::string> screen;
  std::vector<std::string> scrolled;  // rows that scrolled off the top
  std::size_t row = 0, col = 0;
  explicit mini_terminal(std::size_t h) : height(h), screen(h) {}
  void feed(std::string_view bytes) {
    for (std::size_t i = 0; i < bytes.size(); ++i) {
      const char c = bytes[i];
      if (c == '\r') {
        col = 0;
      } else if (c == '\n') {
        col = 0;
        if (row + 1 < height) {
          ++row;
        } else {
          scrolled.push_back(screen.front());
          screen.erase(screen.begin());
          screen.emplace_back();
        }
      } else if (c == '\033' && i + 1 < bytes.size() && bytes[i + 1] == '[') {
        std::size_t j = i + 2, n = 0;
        bool has_n = false;
        while (j < bytes.size() && std::isdigit(static_cast<unsigned char>(bytes[j]))) {
          n = n * 10 + static_cast<std::size_t>(bytes[j] - '0');
          has_n = true;
          ++j;
        }
        const char op = bytes[j];
        if (op == 'A') row -= std::min(row, has_n ? n : 1);
        if (op == 'K') screen[row].resize(std::min(screen[row].size(), col));
        if (op == 'J') {
          screen[row].resize(std::min(screen[row].size(), col));
          for (std::size_t r = row + 1; r < height; ++r) screen[r].clear();
        }
        i = j;
      } else {
        if (screen[row].size() <= col) screen[row].resize(col + 1, ' ');
        screen[row][col++] = c;
      }
    }
  }
  std::vector<std::string> all_rows() const {
    auto out = scrolled;
    out.insert(out.end(), screen.begin(), screen.end());
    return out;
  }
};

TEST_CASE("status area: layout cuts lines to the width and caps the streams shown") {
  const std::vector<std::string> streams = {"logs:p1 10 rows/s 50%", "logs:p2 20 rows/s", "dataset_events:d1",
                                            "experiment_events:e1"};
  auto lines = layout_status("ferry migrate: 100 rows", streams, 12, 4);
  REQUIRE(lines.size() == 4);
  CHECK(lines[0] == "ferry migra");  // 11 columns: the last column stays free, so no line wraps
  CHECK(lines[0].size() == 11);
  CHECK(lines[1] == "  logs:p1 1");
  CHECK(lines[3] == "  ... and 2");
  CHECK(layout_status("h", streams, 200, 10).size() == 5);
  CHECK(layout_status("h", streams, 200, 10)[4] == "  experiment_events:e1");
  CHECK(layout_status("h", {}, 200, 10) == std::vector<std::string>{"h"});
  // A multi-byte character is never cut in half.
  auto utf = layout_status("\xC3\xA9\xC3\xA9\xC3\xA9", {}, 3, 2);
  CHECK(utf[0] == "\xC3\xA9\xC3\xA9");
}

TEST_CASE("status area: log lines go above the area and never share a row with a status line") {
  std::ostringstream out;
  status_area area(out);
  mini_terminal term(8);
  auto step = [&] {
    term.feed(out.str());
    out.str("");
  };
  for (int i = 0; i < 30; ++i) {
    area.update({"STATUS total " + std::to_string(i), "STATUS  logs:p" + std::to_string(i % 3)});
    step();
    area.print_above("LOG line " + std::to_string(i));
    step();
    area.print_above("LOG second " + std::to_string(i) + "\n");
    step();
  }
  const auto rows = term.all_rows();
  std::size_t logs = 0;
  for (const auto& r : rows) {
    INFO(r);
    const bool log = r.find("LOG") != std::string::npos, status = r.find("STATUS") != std::string::npos;
    CHECK_FALSE((log && status));
    if (log) ++logs;
    CHECK(r.find("LOG", 1) == std::string::npos);  // one log line per row
  }
  CHECK(logs == 60);  // every log line reached the terminal once
  // The area is the last two rows on the screen, the log lines in order above it.
  const auto& s = term.screen;
  CHECK(s[s.size() - 3] == "STATUS total 29");
  CHECK(s[s.size() - 2] == "STATUS  logs:p2");
  CHECK(s[s.size() - 4] == "LOG second 29");
  area.clear();
  step();
  for (const auto& r : term.screen) CHECK(r.find("STATUS") == std::string::npos);
}

TEST_CASE("status area: the log sink writes above the active area") {
  init_logging(log_config{});
  std::ostringstream out;
  status_area area(out);
  area.update({"STATUS x"});
  set_active_status_area(&area);
  logger("engine")->info("hello from the sink");
  set_active_status_area(nullptr);
  const auto s = out.str();
  const auto erase = s.find(status_area::erase_bytes(1), 1);
  const auto log = s.find("[engine] hello from the sink\n");
  REQUIRE(erase != std::string::npos);
  REQUIRE(log != std::string::npos);
  CHECK(erase < log);
  CHECK(s.rfind("STATUS x\033[K\n") > log);  // redrawn below the line
}

TEST_CASE("progress: with a metrics registry, stream counters and gauges feed the stream's series") {
  metrics_registry m;
  {
    progress_registry reg(&m);
    auto& s = reg.stream("logs:p1");
    s.add_rows(7);
    s.add_bytes(700);
    s.add_retries();
    s.set_page_size(500);
    s.set_slices(4);
    s.add_slice_splits(2);
    s.set_lag_seconds(2.5);
    CHECK(reg.active() == std::vector<std::string>{"logs:p1"});
    s.set_finished();
    CHECK(reg.active().empty());
  }
  progress_registry next_round(&m);  // a --follow round: the counters keep counting, the gauges keep their values
  next_round.stream("logs:p1").add_rows(3);
  next_round.stream("logs:p2");  // a new stream: one slice, lag unknown
  const auto text = m.render();
  CHECK(text.find("ferry_rows_copied_total{stream=\"logs:p1\"} 10\n") != std::string::npos);
  CHECK(text.find("ferry_bytes_copied_total{stream=\"logs:p1\"} 700\n") != std::string::npos);
  CHECK(text.find("ferry_stream_retries_total{stream=\"logs:p1\"} 1\n") != std::string::npos);
  CHECK(text.find("ferry_page_size_rows{stream=\"logs:p1\"} 500\n") != std::string::npos);
  CHECK(text.find("ferry_slices{stream=\"logs:p1\"} 4\n") != std::string::npos);
  CHECK(text.find("ferry_stream_slice_splits_total{stream=\"logs:p1\"} 2\n") != std::string::npos);
  CHECK(text.find("# TYPE ferry_stream_slice_splits_total counter\n") != std::string::npos);
  CHECK(text.find("ferry_lag_seconds{stream=\"logs:p1\"} 2.5\n") != std::string::npos);
  CHECK(text.find("ferry_slices{stream=\"logs:p2\"} 1\n") != std::string::npos);
  CHECK(text.find("ferry_lag_seconds{stream=\"logs:p2\"} NaN\n") != std::string::npos);
}
