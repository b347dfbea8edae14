// bench_logs3: the destination emulator's CPU per event on /logs3 ingest, without sockets or a migrator.
// It replays the destination side of a recording (`ferry migrate --record DIR` against a destination
// `ferry serve --id-seed N`) into a fresh in-process emulator with the same id seed (so the recorded
// project ids exist again): every non-/logs3 request first, in recorded order, then the /logs3 bodies
// (as recorded, or re-cut into --batch-rows rows per request), each through emulator::handle().
// Prints CPU-µs per event of the whole process (RocksDB's background threads included, as bench/run
// counts `ferry serve`) and of the calling thread alone; --json FILE writes the same figures.
//   bench_logs3 --recording DIR --data DIR [--id-seed 7] [--batch-rows N] [--requests N] [--json FILE]
// --data is deleted and re-created. To see where the time goes without the set-up (reading the
// recording): `mkfifo ctl; perf record -D -1 --control fifo:ctl -g bench_logs3 ... --perf-ctl ctl` (the
// driver writes enable/disable around the /logs3 phase), or valgrind --tool=callgrind with --requests N.
#include "bench_common.hpp"

#include "emulator/emulator.hpp"
#include "transports/recorder.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <simdjson.h>

#include <malloc.h>
#include <time.h>

#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

namespace asio = boost::asio;
namespace http = boost::beast::http;
namespace fb = ferry::bench;
namespace em = ferry::emulator;
namespace tr = ferry::transports;

namespace {

// The rows of the recorded /logs3 bodies, minified, in order; `sizes` gets each body's row count.
std::vector<std::string> rows_of(const std::vector<std::string>& bodies, std::vector<std::size_t>& sizes) {
  simdjson::dom::parser parser;
  std::vector<std::string> rows;
  for (const auto& b : bodies) {
    simdjson::dom::element doc = parser.parse(b);
    const std::size_t before = rows.size();
    for (simdjson::dom::element r : doc["rows"].get_array()) rows.push_back(simdjson::minify(r));
    sizes.push_back(rows.size() - before);
  }
  return rows;
}

struct request {
  std::string body;
  std::size_t rows = 0;
};

// The rows cut into requests of sizes[0], sizes[1], ... rows (the last size repeats).
std::vector<request> batches(const std::vector<std::string>& rows, const std::vector<std::size_t>& sizes) {
  std::vector<request> out;
  for (std::size_t i = 0, n = 0; i < rows.size(); ++n) {
    const std::size_t per = std::max<std::size_t>(1, sizes[std::min(n, sizes.size() - 1)]);
    request r{R"({"rows":[)", 0};
    for (; r.rows < per && i < rows.size(); ++r.rows, ++i) {
      if (r.rows) r.body.push_back(',');
      r.body += rows[i];
    }
    r.body += R"(],"api_version":2})";
    out.push_back(std::move(r));
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  fb::flags f(argc, argv);
  const std::string recording = f.str("recording");
  const std::string data = f.str("data");
  if (recording.empty() || data.empty()) {
    std::fprintf(stderr, "usage: bench_logs3 --recording DIR --data DIR [--id-seed 7] [--batch-rows N] [--requests N]\n");
    return 2;
  }
  // As `ferry serve` (serve.cpp): large request buffers stay on the heap.
  ::mallopt(M_MMAP_THRESHOLD, 32 << 20);
  ::mallopt(M_TRIM_THRESHOLD, 256 << 20);

  std::vector<tr::exchange_record> setup;
  std::vector<std::string> bodies;
  tr::for_each_exchange(recording, [&](tr::exchange_record&& e) {
    if (e.side != "dest") return;
    if (e.method == "POST" && e.target.starts_with("/logs3")) bodies.push_back(std::move(e.request_body));
    else setup.push_back(std::move(e));
  });
  std::vector<std::size_t> sizes;
  auto rows = rows_of(bodies, sizes);
  bodies = {};
  if (const auto per = static_cast<std::size_t>(f.num("batch-rows", 0)); per > 0) sizes = {per};
  auto requests = batches(rows, sizes);
  rows = {};  // (freed before the ingest: a heap full of small live strings would slow its allocations)
  if (const auto n = static_cast<std::size_t>(f.num("requests", 0)); n > 0 && n < requests.size()) requests.resize(n);

  std::filesystem::remove_all(data);
  asio::io_context ioc;
  em::emulator_config cfg;
  cfg.data_dir = data;
  cfg.id_seed = static_cast<std::uint64_t>(f.num("id-seed", 7));
  cfg.api_keys.push_back({"ferry-emulator-key", "emu-org", ""});
  std::filesystem::create_directories(data);
  em::emulator emu(ioc.get_executor(), cfg);

  const std::string ctl_path = f.str("perf-ctl");
  auto perf_ctl = [&](const char* cmd) {
    if (ctl_path.empty()) return;
    if (std::FILE* ctl = std::fopen(ctl_path.c_str(), "w")) {
      std::fputs(cmd, ctl);
      std::fclose(ctl);
    }
  };
  std::size_t events = 0, failed = 0;
  double cpu = 0, thread_cpu = 0, wall = 0;
  auto send = [&](const std::string& method, const std::string& target, std::string body) -> asio::awaitable<unsigned> {
    tr::http_request req{http::string_to_verb(method), target, 11};
    req.set(http::field::authorization, "Bearer ferry-emulator-key");
    req.set(http::field::content_type, "application/json");
    req.body() = std::move(body);
    req.prepare_payload();
    auto r = co_await emu.handle(req);
    co_return r.response.result_int();
  };
  asio::co_spawn(
      ioc,
      [&]() -> asio::awaitable<void> {
        for (auto& e : setup) co_await send(e.method, e.target, e.request_body);
        perf_ctl("enable\n");
        const double c0 = fb::cpu_s(), t0 = fb::thread_cpu_s(), w0 = fb::wall_s();
        for (auto& r : requests) {
          events += r.rows;
          const auto status = co_await send("POST", "/logs3", std::move(r.body));
          if (status != 200) ++failed;
        }
        cpu = fb::cpu_s() - c0;
        thread_cpu = fb::thread_cpu_s() - t0;
        wall = fb::wall_s() - w0;
        perf_ctl("disable\n");
      },
      asio::detached);
  ioc.run();

  const double per_event = cpu * 1e6 / static_cast<double>(std::max<std::size_t>(events, 1));
  const double per_event_thread = thread_cpu * 1e6 / static_cast<double>(std::max<std::size_t>(events, 1));
  boost::json::object o{{"events", events}, {"requests", requests.size()}, {"failed", failed},
                        {"cpu_us_per_event", per_event}, {"thread_cpu_us_per_event", per_event_thread},
                        {"wall_s", wall}, {"load", fb::loadavg()}};
  fb::emit(f, o,
           "bench_logs3: " + std::to_string(events) + " events in " + std::to_string(requests.size()) + " requests (" +
               std::to_string(failed) + " failed): " + fb::fmt(per_event, 2) + " CPU-us/event (process), " +
               fb::fmt(per_event_thread, 2) + " (handler thread), wall " + fb::fmt(wall, 2) + " s, load " + fb::loadavg());
  return failed ? 1 : 0;
}
