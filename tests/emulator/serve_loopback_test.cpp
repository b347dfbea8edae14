// Loopback tests: the emulator behind the real socket server on 127.0.0.1:0, spoken to with raw HTTP/1.1.
#include "emulator/emulator.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/executor_work_guard.hpp>

#include <doctest/doctest.h>

#include <chrono>
#include <string>
#include <thread>

using namespace ferry::emulator;
namespace asio = boost::asio;

namespace {

/// An emulator served by one background thread for the duration of a test.
struct running {
  asio::io_context ctx;
  asio::executor_work_guard<asio::io_context::executor_type> work{ctx.get_executor()};
  emulator emu;
  std::thread thread;

  explicit running(emulator_config cfg) : emu(ctx.get_executor(), std::move(cfg)) {
    emu.start();
    thread = std::thread([this] { ctx.run(); });
  }
  ~running() {
    asio::post(ctx, [this] { emu.stop(); });
    work.reset();
    ctx.stop();
    thread.join();
  }

  /// Sends one request with `Connection: close` and returns everything the server wrote before closing.
  std::string exchange(const std::string& method, const std::string& target, const std::string& body = "",
                       const std::string& key = "loop-key") {
    asio::ip::tcp::iostream s;
    s.expires_after(std::chrono::seconds(5));
    s.connect("127.0.0.1", std::to_string(emu.port()));
    REQUIRE(s);
    s << method << " " << target << " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n";
    if (!key.empty()) s << "Authorization: Bearer " << key << "\r\n";
    s << "Content-Type: application/json\r\nContent-Length: " << body.size() << "\r\n\r\n" << body;
    s.flush();
    std::string out((std::istreambuf_iterator<char>(s)), std::istreambuf_iterator<char>());
    return out;
  }
};

emulator_config config() {
  emulator_config c;
  c.api_keys = {{"loop-key", "loop-org", ""}};
  return c;
}

}  // namespace

TEST_CASE("serve loopback: hello, auth and a REST round trip over a real socket") {
  running r(config());
  CHECK(r.emu.port() != 0);
  CHECK(r.emu.base_url() == "http://127.0.0.1:" + std::to_string(r.emu.port()));
  auto hello = r.exchange("GET", "/v1", "", "");
  CHECK(hello.starts_with("HTTP/1.1 200"));
  CHECK(hello.ends_with("Hello, World!"));
  CHECK(r.exchange("GET", "/v1/project", "", "").starts_with("HTTP/1.1 401"));
  auto created = r.exchange("POST", "/v1/project", R"({"name":"over-the-wire"})");
  CHECK(created.starts_with("HTTP/1.1 200"));
  CHECK(created.find("\"name\":\"over-the-wire\"") != std::string::npos);
  auto login = r.exchange("POST", "/api/apikey/login");
  CHECK(login.find("\"api_url\":\"" + r.emu.base_url() + "\"") != std::string::npos);
}

TEST_CASE("serve loopback: injected faults reach the wire (status, drop, truncate)") {
  auto cfg = config();
  cfg.faults = {parse_fault_spec("path=/v1/role,kind=status,status=429,retry_after=2"),
                parse_fault_spec("path=/v1/group,kind=drop"), parse_fault_spec("path=/v1/project,kind=truncate")};
  running r(cfg);
  auto throttled = r.exchange("GET", "/v1/role");
  CHECK(throttled.starts_with("HTTP/1.1 429"));
  CHECK(throttled.find("Retry-After: 2") != std::string::npos);
  CHECK(r.exchange("GET", "/v1/group").empty());
  auto truncated = r.exchange("GET", "/v1/project");
  REQUIRE(truncated.starts_with("HTTP/1.1 200"));
  const auto header_end = truncated.find("\r\n\r\n");
  const auto length_at = truncated.find("Content-Length: ");
  REQUIRE(length_at != std::string::npos);
  const auto declared = std::stoul(truncated.substr(length_at + 16));
  CHECK(truncated.size() - (header_end + 4) < declared);
}
