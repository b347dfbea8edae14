#pragma once
// A coroutine HTTP/1.1 server on Beast: accepts on an address:port (port 0 = any free port), serves
// keep-alive connections, and hands each parsed request to one handler coroutine. Used by the
// emulator (`ferry serve`), by replay, and by loopback tests as a scripted fake upstream.
//
// Lifecycle: construct, `start()` (binds, throws std::runtime_error naming address:port on failure),
// then the io_context's threads drive it; `stop()` closes the acceptor and every open connection
// (idempotent; safe from any thread). Each connection runs on its own strand; the handler may be
// called concurrently for different connections, never for one connection twice at once.

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

namespace ferry::transports {

using http_request = boost::beast::http::request<boost::beast::http::string_body>;
using http_response = boost::beast::http::response<boost::beast::http::string_body>;

/// What the server does with a reply: send it, or misbehave on purpose (fault injection).
enum class reply_action {
  send,            // write the response normally
  drop,            // close the connection without writing anything
  truncate_body,   // write the headers (with the full Content-Length) and half the body, then close
};

struct http_reply {
  http_response response;
  reply_action action = reply_action::send;
};

using http_handler = std::function<boost::asio::awaitable<http_reply>(http_request&)>;

struct http_server_config {
  std::string address = "127.0.0.1";
  std::uint16_t port = 0;                       // 0 picks a free port; read it back with port()
  std::size_t body_limit = 64u << 20;           // larger request bodies get 413
  std::chrono::milliseconds idle_timeout{60'000};
  // Extensions (compatible): gzip large response bodies for clients that send Accept-Encoding: gzip.
  bool gzip_responses = true;
  std::size_t gzip_min_bytes = 1024;            // bodies of at most this many bytes are sent as is
  std::size_t header_limit = 64u << 10;         // request line + headers; larger => 431 and close
};

class http_server {
 public:
  http_server(boost::asio::any_io_executor ex, http_server_config cfg, http_handler handler);
  ~http_server();
  http_server(const http_server&) = delete;
  http_server& operator=(const http_server&) = delete;

  void start();
  void stop();
  std::uint16_t port() const;
  /// Requests served since start (for tests and the emulator's stats).
  std::uint64_t requests_served() const;
  /// TCP connections accepted since start (tests count keep-alive reuse with it).
  std::uint64_t connections_accepted() const;
  /// Connections open right now.
  std::size_t open_connections() const;

 private:
  struct impl;
  std::shared_ptr<impl> impl_;
};

}  // namespace ferry::transports
