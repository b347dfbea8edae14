// Everything that touches the socket server: emulator::start/stop and `ferry serve` (run_serve).
#include "emulator/serve.hpp"

#include "emulator/emulator.hpp"
#include "engine/log.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>

#include <malloc.h>

#include <csignal>
#include <cstdio>
#include <iostream>
#include <thread>

namespace ferry::emulator {

void emulator::start() {
  if (server_) return;
  transports::http_server_config sc;
  sc.address = cfg_.address;
  sc.port = cfg_.port;
  sc.body_limit = cfg_.body_limit;
  server_ = {new transports::http_server(ex_, sc, [this](transports::http_request& r) { return handle(r); }),
             [](transports::http_server* s) {
               s->stop();
               delete s;
             }};
  server_->start();
  bound_port_ = server_->port();
  rest_->set_base_url(base_url());
  engine::logger("emulator")->info("listening url={} orgs={} data={}", base_url(), orgs_.size(),
                                   cfg_.data_dir.empty() ? std::string("memory") : cfg_.data_dir);
}

void emulator::stop() {
  if (server_) server_->stop();
}

emulator_config make_emulator_config(const serve_options& opts) {
  emulator_config cfg;
  cfg.address = opts.address;
  cfg.port = opts.port;
  cfg.data_dir = opts.data_dir;
  cfg.logs3_payload_max_bytes = opts.logs3_payload_max_bytes;
  cfg.id_seed = opts.id_seed;
  for (const auto& k : opts.api_keys) {
    api_key_entry e;
    auto colon = k.find(':');
    e.api_key = k.substr(0, colon);
    if (colon != std::string::npos) e.org_name = k.substr(colon + 1);
    if (e.api_key.empty()) throw std::invalid_argument("--api-key: empty key in '" + k + "' (use KEY or KEY:ORG_NAME)");
    if (e.org_name.empty()) throw std::invalid_argument("--api-key: empty org name in '" + k + "' (use KEY:ORG_NAME)");
    cfg.api_keys.push_back(std::move(e));
  }
  if (cfg.api_keys.empty()) cfg.api_keys.push_back({"ferry-emulator-key", "emu-org", ""});
  std::optional<std::uint64_t> seed;
  if (!opts.faults_file.empty()) {
    auto file = load_fault_file(opts.faults_file);
    cfg.faults = std::move(file.faults);
    seed = file.seed;
  }
  for (const auto& spec : opts.fault_specs) cfg.faults.push_back(parse_fault_spec(spec));
  if (opts.fault_seed) seed = opts.fault_seed;
  cfg.fault_seed = seed.value_or(1);
  return cfg;
}

int run_serve(const serve_options& opts) {
  emulator_config cfg;
  try {
    cfg = make_emulator_config(opts);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ferry serve: %s\n", e.what());
    return 2;
  }
  // Every /logs3 and BTQL page is a ~1-2 MB buffer (request body, parsed rows, RocksDB write batch, reply).
  // Above glibc's mmap threshold each one was mapped, zero-filled by page faults and unmapped per request:
  // 18% of the destination's CPU in the bench. Keep such buffers on the heap and let freed ones be reused.
  // (`ferry serve` is a process of its own: this touches no other component's allocator settings.)
  ::mallopt(M_MMAP_THRESHOLD, 32 << 20);
  ::mallopt(M_TRIM_THRESHOLD, 256 << 20);
  const unsigned threads = opts.threads == 0 ? 1 : opts.threads;
  boost::asio::io_context ioc(static_cast<int>(threads));
  std::unique_ptr<emulator> emu;
  try {
    emu = std::make_unique<emulator>(ioc.get_executor(), cfg);
    emu->start();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ferry serve: %s\n", e.what());
    return 1;
  }
  std::cout << "ferry serve: listening on " << emu->base_url() << " (org " << emu->orgs().front().org_name
            << ", data " << (cfg.data_dir.empty() ? std::string("memory") : cfg.data_dir) << ")" << std::endl;

  run_until_signal(ioc, threads, [&](int sig) {
    engine::logger("emulator")->info("stopping signal={}", sig);
    emu->stop();
  });
  emu.reset();
  return 0;
}

void run_until_signal(boost::asio::io_context& ioc, unsigned threads, const std::function<void(int)>& on_signal) {
  boost::asio::signal_set signals(ioc, SIGINT, SIGTERM);
  signals.async_wait([&](const boost::system::error_code& ec, int sig) {
    if (ec) return;
    on_signal(sig);
    ioc.stop();
  });
  std::vector<std::thread> pool;
  for (unsigned i = 1; i < threads; ++i) pool.emplace_back([&] { ioc.run(); });
  ioc.run();
  for (auto& t : pool) t.join();
}

}  // namespace ferry::emulator
