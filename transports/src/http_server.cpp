#include "transports/http_server.hpp"

#include "engine/log.hpp"
#include "transports/codec.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/serializer.hpp>
#include <boost/beast/http/write.hpp>

#include <atomic>
#include <mutex>
#include <stdexcept>
#include <unordered_map>

namespace ferry::transports {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

http_response json_error(unsigned status, std::string_view message, unsigned version) {
  http_response res{static_cast<http::status>(status), version};
  res.set(http::field::content_type, "application/json");
  res.body() = "{\"error\":\"" + engine::json_escape(message) + "\"}";
  return res;
}

bool accepts_gzip(const http_request& req) {
  auto it = req.find(http::field::accept_encoding);
  if (it == req.end()) return false;
  std::string_view v{it->value().data(), it->value().size()};
  // Token match, case-insensitive; "gzip;q=0" is treated as a refusal.
  for (std::size_t pos = 0; pos < v.size();) {
    std::size_t end = v.find(',', pos);
    if (end == std::string_view::npos) end = v.size();
    std::string_view item = v.substr(pos, end - pos);
    pos = end + 1;
    while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
    std::string_view token = item.substr(0, item.find(';'));
    while (!token.empty() && token.back() == ' ') token.remove_suffix(1);
    if (token.size() == 4 && beast::iequals(token, "gzip")) {
      auto q = item.find("q=");
      if (q != std::string_view::npos && item.substr(q + 2).starts_with("0") &&
          item.substr(q + 2).find_first_of("123456789") == std::string_view::npos)
        return false;
      return true;
    }
  }
  return false;
}

}  // namespace

struct http_server::impl : std::enable_shared_from_this<impl> {
  impl(asio::any_io_executor ex, http_server_config c, http_handler h)
      : executor(std::move(ex)), cfg(std::move(c)), handler(std::move(h)), acceptor(asio::make_strand(executor)) {}

  asio::any_io_executor executor;
  http_server_config cfg;
  http_handler handler;
  tcp::acceptor acceptor;  // touched only on its strand after start()
  std::atomic<bool> stopped{false};
  std::atomic<std::uint16_t> bound_port{0};
  std::atomic<std::uint64_t> served{0};
  std::atomic<std::uint64_t> accepted{0};

  mutable std::mutex mu;  // guards connections
  std::uint64_t next_id = 0;
  std::unordered_map<std::uint64_t, std::weak_ptr<beast::tcp_stream>> connections;

  std::shared_ptr<spdlog::logger> log = engine::logger("http");

  void close_stream_on_strand(const std::shared_ptr<beast::tcp_stream>& s) {
    asio::post(s->get_executor(), [s] {
      boost::system::error_code ignored;
      s->socket().shutdown(tcp::socket::shutdown_both, ignored);
      s->socket().close(ignored);
    });
  }

  asio::awaitable<void> accept_loop() {
    auto self = shared_from_this();
    asio::steady_timer backoff(acceptor.get_executor());
    while (!stopped.load()) {
      auto [ec, socket] = co_await acceptor.async_accept(asio::make_strand(executor), use_tuple);
      if (ec) {
        if (ec == asio::error::operation_aborted || stopped.load() || !acceptor.is_open()) break;
        // EMFILE and friends: back off briefly instead of spinning.
        log->warn("http_server accept failed port={} error={}", bound_port.load(), ec.message());
        backoff.expires_after(std::chrono::milliseconds(20));
        co_await backoff.async_wait(use_tuple);
        continue;
      }
      accepted.fetch_add(1, std::memory_order_relaxed);
      auto conn_ex = socket.get_executor();
      asio::co_spawn(conn_ex, session(self, std::move(socket)), asio::detached);
    }
  }

  // Reads and discards what the client is still sending (up to a cap) after an early error reply,
  // so that closing does not reset the connection before the client has read the reply.
  static asio::awaitable<void> linger_close(beast::tcp_stream& stream) {
    boost::system::error_code ec;
    stream.socket().shutdown(tcp::socket::shutdown_send, ec);
    stream.expires_after(std::chrono::seconds(2));
    std::size_t drained = 0;
    static thread_local char sink[16 * 1024];
    while (drained < (256u << 20)) {
      auto [rec, n] = co_await stream.async_read_some(asio::buffer(sink), use_tuple);
      if (rec) break;
      drained += n;
    }
    stream.socket().close(ec);
  }

  static asio::awaitable<void> session(std::shared_ptr<impl> self, tcp::socket socket) {
    boost::system::error_code nd;
    socket.set_option(tcp::no_delay(true), nd);  // replies are written whole; Nagle only adds latency
    auto stream = std::make_shared<beast::tcp_stream>(std::move(socket));
    std::uint64_t id;
    {
      std::lock_guard lk(self->mu);
      id = self->next_id++;
      self->connections.emplace(id, stream);
    }
    // stop() may have run between accept and registration.
    if (self->stopped.load()) {
      boost::system::error_code ignored;
      stream->socket().close(ignored);
    }
    try {
      co_await self->serve(*stream);
    } catch (const std::exception& e) {
      self->log->debug("http_server connection ended error={}", e.what());
    }
    boost::system::error_code ignored;
    stream->socket().close(ignored);
    std::lock_guard lk(self->mu);
    self->connections.erase(id);
  }

  asio::awaitable<void> serve(beast::tcp_stream& stream) {
    beast::flat_buffer buffer;
    buffer.reserve(64 * 1024);  // a fresh flat_buffer reads 512 bytes per syscall otherwise
    for (;;) {
      if (stopped.load()) co_return;
      http::request_parser<http::string_body> parser;
      parser.body_limit(cfg.body_limit);
      parser.header_limit(static_cast<std::uint32_t>(std::min<std::size_t>(cfg.header_limit, UINT32_MAX)));
      stream.expires_after(cfg.idle_timeout);
      auto [ec, n] = co_await http::async_read(stream, buffer, parser, use_tuple);
      (void)n;
      if (ec == http::error::body_limit || ec == http::error::header_limit) {
        const bool body = ec == http::error::body_limit;
        auto res = body ? json_error(413,
                                     "request body exceeds the server limit of " + std::to_string(cfg.body_limit) +
                                         " bytes",
                                     parser.get().version())
                        : json_error(431, "request headers exceed the server limit", 11);
        res.keep_alive(false);
        res.prepare_payload();
        stream.expires_after(cfg.idle_timeout);
        auto [wec, wn] = co_await http::async_write(stream, res, use_tuple);
        (void)wn;
        if (!wec) co_await linger_close(stream);
        co_return;
      }
      if (ec) co_return;  // end_of_stream, timeout, reset, or stop(): nothing to answer

      http_request req = parser.release();
      const bool client_keep_alive = req.keep_alive();
      const bool gzip_ok = cfg.gzip_responses && accepts_gzip(req);
      const unsigned version = req.version();

      http_reply reply;
      std::string failure;
      try {
        reply = co_await handler(req);
      } catch (const std::exception& e) {
        failure = e.what();
      } catch (...) {
        failure = "unknown exception in request handler";
      }
      if (!failure.empty()) {
        log->warn("http_server handler failed target={} error={}", engine::redact(std::string_view(req.target().data(), req.target().size())), failure);
        reply = http_reply{json_error(500, failure, version), reply_action::send};
      }
      served.fetch_add(1, std::memory_order_relaxed);

      if (reply.action == reply_action::drop) co_return;

      auto& res = reply.response;
      res.version(version);
      // The handler may ask to close (Connection: close); otherwise follow the client.
      const bool keep_alive = client_keep_alive && res.keep_alive() &&
                              reply.action == reply_action::send && !stopped.load();
      if (gzip_ok && res.body().size() > cfg.gzip_min_bytes && res.find(http::field::content_encoding) == res.end()) {
        res.body() = gzip_compress(res.body());
        res.set(http::field::content_encoding, "gzip");
        res.set(http::field::vary, "Accept-Encoding");
      }
      res.keep_alive(keep_alive);
      res.prepare_payload();
      stream.expires_after(cfg.idle_timeout);

      if (reply.action == reply_action::truncate_body) {
        // Headers announce the full length; half of the body follows, then the connection closes.
        http::response_serializer<http::string_body> sr{res};
        auto [hec, hn] = co_await http::async_write_header(stream, sr, use_tuple);
        (void)hn;
        if (!hec) {
          const auto& body = res.body();
          co_await asio::async_write(stream, asio::buffer(body.data(), body.size() / 2), use_tuple);
        }
        boost::system::error_code ignored;
        stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
        co_return;
      }

      auto [wec, wn] = co_await http::async_write(stream, res, use_tuple);
      (void)wn;
      if (wec) co_return;
      if (!keep_alive) {
        boost::system::error_code ignored;
        stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
        co_return;
      }
    }
  }
};

http_server::http_server(asio::any_io_executor ex, http_server_config cfg, http_handler handler)
    : impl_(std::make_shared<impl>(std::move(ex), std::move(cfg), std::move(handler))) {}

http_server::~http_server() { stop(); }

void http_server::start() {
  auto& a = impl_->acceptor;
  const auto where = impl_->cfg.address + ":" + std::to_string(impl_->cfg.port);
  boost::system::error_code ec;
  auto addr = asio::ip::make_address(impl_->cfg.address, ec);
  if (ec) throw std::runtime_error("http_server: invalid listen address '" + impl_->cfg.address + "': " + ec.message());
  tcp::endpoint ep{addr, impl_->cfg.port};
  a.open(ep.protocol(), ec);
  if (!ec) a.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) a.bind(ep, ec);
  if (!ec) a.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    boost::system::error_code ignored;
    a.close(ignored);
    throw std::runtime_error("http_server: cannot listen on " + where + ": " + ec.message());
  }
  impl_->bound_port = a.local_endpoint().port();
  impl_->log->debug("http_server listening address={} port={}", impl_->cfg.address, impl_->bound_port.load());
  auto self = impl_;
  asio::co_spawn(a.get_executor(), [self]() -> asio::awaitable<void> { co_await self->accept_loop(); },
                 asio::detached);
}

void http_server::stop() {
  if (!impl_ || impl_->stopped.exchange(true)) return;
  auto self = impl_;
  asio::post(impl_->acceptor.get_executor(), [self] {
    boost::system::error_code ignored;
    self->acceptor.close(ignored);
  });
  std::vector<std::shared_ptr<beast::tcp_stream>> open;
  {
    std::lock_guard lk(impl_->mu);
    for (auto& [id, w] : impl_->connections)
      if (auto s = w.lock()) open.push_back(std::move(s));
  }
  for (auto& s : open) impl_->close_stream_on_strand(s);
}

std::uint16_t http_server::port() const { return impl_->bound_port.load(); }
std::uint64_t http_server::requests_served() const { return impl_->served.load(); }
std::uint64_t http_server::connections_accepted() const { return impl_->accepted.load(); }
std::size_t http_server::open_connections() const {
  std::lock_guard lk(impl_->mu);
  return impl_->connections.size();
}

}  // namespace ferry::transports
