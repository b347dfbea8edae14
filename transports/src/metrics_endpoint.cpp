#include "transports/metrics_endpoint.hpp"

#include "transports/http_server.hpp"

#include <boost/beast/http/field.hpp>
#include <boost/beast/http/status.hpp>

#include <cctype>
#include <charconv>
#include <stdexcept>

namespace ferry::transports {

namespace http = boost::beast::http;

std::pair<std::string, std::uint16_t> parse_host_port(std::string_view s) {
  const auto bad = [&] {
    return std::invalid_argument("invalid metrics address '" + std::string(s) + "' (expected HOST:PORT, e.g. 127.0.0.1:9464)");
  };
  const auto colon = s.rfind(':');
  if (colon == std::string_view::npos) throw bad();
  std::string host(s.substr(0, colon));
  const auto port_text = s.substr(colon + 1);
  unsigned port = 0;
  auto [p, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (ec != std::errc() || p != port_text.data() + port_text.size() || port_text.empty() || port > 65535) throw bad();
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  if (host.empty()) host = "0.0.0.0";
  if (host.find(':') != std::string::npos && s.front() != '[') throw bad();  // IPv6 needs brackets
  return {host, static_cast<std::uint16_t>(port)};
}

std::string endpoint_label(std::string_view target) {
  if (target.starts_with("http://") || target.starts_with("https://")) return "signed_url";
  target = target.substr(0, target.find_first_of("?#"));
  std::string out;
  std::size_t i = 0;
  while (i < target.size()) {
    const auto slash = target.find('/', i);
    const auto seg = target.substr(i, slash == std::string_view::npos ? std::string_view::npos : slash - i);
    bool digit = false;
    for (char c : seg) digit = digit || std::isdigit(static_cast<unsigned char>(c));
    out += (digit && seg.size() >= 8) || seg.size() > 40 ? std::string_view(":id") : seg;
    if (slash == std::string_view::npos) break;
    out += '/';
    i = slash + 1;
  }
  return out.empty() ? "/" : out;
}

request_metrics::request_metrics(engine::metrics_registry& r, std::string side)
    : side_(std::move(side)),
      requests_(r.counters("ferry_http_requests_total",
                           "HTTP attempts by side, method, endpoint (ids replaced by :id) and status (or why no "
                           "response came).",
                           {"side", "method", "endpoint", "status"})),
      retries_(r.counters("ferry_http_retries_total", "HTTP calls retried by the client, by side, method and endpoint.",
                          {"side", "method", "endpoint"})),
      throttles_(r.counters("ferry_http_throttles_total", "Answers 429 and 503 (throttling) by side, endpoint and status.",
                            {"side", "endpoint", "status"})) {}

void request_metrics::on_attempt(std::string_view method, std::string_view target, unsigned status,
                                 std::string_view outcome) {
  const auto endpoint = endpoint_label(target);
  const std::string code = status ? std::to_string(status) : std::string(outcome);
  requests_.with({side_, method, endpoint, code}).inc();
  if (status == 429 || status == 503) throttles_.with({side_, endpoint, code}).inc();
}

void request_metrics::on_retry(std::string_view method, std::string_view target) {
  retries_.with({side_, method, endpoint_label(target)}).inc();
}

struct metrics_server::impl {
  http_server server;
  impl(boost::asio::any_io_executor ex, http_server_config cfg, http_handler h)
      : server(std::move(ex), std::move(cfg), std::move(h)) {}
};

metrics_server::metrics_server(boost::asio::any_io_executor ex, std::string_view address,
                               engine::metrics_registry& registry) {
  auto [host, port] = parse_host_port(address);
  host_ = host;
  http_server_config cfg;
  cfg.address = host;
  cfg.port = port;
  cfg.body_limit = 4096;
  cfg.idle_timeout = std::chrono::seconds(30);
  http_handler handler = [&registry](http_request& req) -> boost::asio::awaitable<http_reply> {
    http_reply reply;
    auto& res = reply.response;
    res.version(req.version());
    const auto target = std::string_view(req.target().data(), req.target().size());
    if (target.substr(0, target.find('?')) != "/metrics") {
      res.result(http::status::not_found);
      res.set(http::field::content_type, "text/plain; charset=utf-8");
      res.body() = "not found: the metrics are at /metrics\n";
    } else if (req.method() != http::verb::get && req.method() != http::verb::head) {
      res.result(http::status::method_not_allowed);
      res.set(http::field::allow, "GET, HEAD");
    } else {
      res.result(http::status::ok);
      res.set(http::field::content_type, "text/plain; version=0.0.4; charset=utf-8");
      if (req.method() == http::verb::get) res.body() = registry.render();
    }
    res.prepare_payload();
    co_return reply;
  };
  impl_ = std::make_unique<impl>(std::move(ex), std::move(cfg), std::move(handler));
}

metrics_server::~metrics_server() { stop(); }
void metrics_server::start() { impl_->server.start(); }
void metrics_server::stop() { impl_->server.stop(); }
std::uint16_t metrics_server::port() const { return impl_->server.port(); }

}  // namespace ferry::transports
