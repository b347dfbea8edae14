#include "transports/http_client.hpp"

#include "engine/log.hpp"
#include "engine/retry.hpp"
#include "engine/semaphore.hpp"
#include "transports/codec.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/stream_traits.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/span_body.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/url/parse.hpp>
#include <boost/url/url.hpp>

#include <openssl/ssl.h>
#include <sys/socket.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <map>
#include <mutex>
#include <stdexcept>

namespace ferry::transports {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using engine::io_outcome;
using engine::steady_time;
using namespace asio::experimental::awaitable_operators;

namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
using out_request = http::request<http::span_body<const char>>;

struct url_parts {
  bool tls = false;
  std::string host;         // without brackets
  std::uint16_t port = 0;
  std::string target;       // origin-form: path + query
  std::string host_header;  // host[:port], brackets for IPv6
  std::string origin() const { return (tls ? "https://" : "http://") + host_header; }
  std::string absolute() const { return origin() + target; }
};

bool iequal(std::string_view a, std::string_view b) {
  return a.size() == b.size() && beast::iequals(a, b);
}

std::optional<url_parts> parse_url(std::string_view s, std::string& error) {
  auto r = boost::urls::parse_uri(s);
  if (!r) {
    error = "malformed URL '" + std::string(s) + "'";
    return std::nullopt;
  }
  const auto& u = *r;
  url_parts p;
  if (iequal(u.scheme(), "https")) p.tls = true;
  else if (!iequal(u.scheme(), "http")) {
    error = "unsupported URL scheme '" + std::string(u.scheme()) + "' (use http or https)";
    return std::nullopt;
  }
  const bool v6 = u.host_type() == boost::urls::host_type::ipv6;
  p.host = std::string(u.host_address());  // decoded; IPv6 without brackets
  if (p.host.empty()) {
    error = "URL has no host: '" + std::string(s) + "'";
    return std::nullopt;
  }
  const std::uint16_t def = p.tls ? 443 : 80;
  p.port = u.has_port() ? u.port_number() : def;
  if (p.port == 0) {
    error = "URL has an invalid port: '" + std::string(s) + "'";
    return std::nullopt;
  }
  p.host_header = v6 ? "[" + p.host + "]" : p.host;
  if (p.port != def) p.host_header += ":" + std::to_string(p.port);
  p.target = u.encoded_path().empty() ? std::string("/") : std::string(u.encoded_path());
  if (u.has_query()) p.target += "?" + std::string(u.encoded_query());
  return p;
}

// For error messages and logs: signed URLs carry credentials in the query.
std::string display_url(const url_parts& u) {
  std::string s = u.absolute();
  auto q = s.find('?');
  if (q != std::string::npos) {
    std::string lower = s.substr(q);
    for (auto& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (lower.find("signature") != std::string::npos || lower.find("sig=") != std::string::npos ||
        lower.find("token") != std::string::npos || lower.find("credential") != std::string::npos)
      s.resize(q);
  }
  return engine::redact(s);
}

bool is_idempotent(http::verb v) {
  return v == http::verb::get || v == http::verb::head || v == http::verb::put || v == http::verb::delete_ ||
         v == http::verb::options;
}

struct connection {
  connection(const asio::any_io_executor& ex, ssl::context& ctx)
      : strand(asio::make_strand(ex)), stream(strand, ctx) {
    buffer.reserve(64 * 1024);  // a fresh flat_buffer reads 512 bytes per syscall otherwise
  }
  asio::strand<asio::any_io_executor> strand;
  ssl::stream<beast::tcp_stream> stream;  // plain connections use next_layer() only
  beast::flat_buffer buffer;
  bool tls = false;
  bool connected = false;
  bool local_peer = false;  // plain TCP straight to a loopback/private address (no proxy)
  steady_time last_used{};
  beast::tcp_stream& tcp() { return stream.next_layer(); }
};

struct origin_pool {
  explicit origin_pool(std::size_t cap) : slots(cap) {}
  engine::semaphore slots;
  std::mutex mu;
  std::vector<std::unique_ptr<connection>> idle;
};

// What happened on the wire for one attempt; runs entirely on the connection's strand.
struct exchange_out {
  boost::system::error_code ec;
  const char* stage = "";       // connect, proxy, tls handshake, write, read
  bool sent = false;            // request fully written
  bool got_bytes = false;       // some response bytes arrived
  bool fatal = false;           // not worth retrying (TLS verification, body limit, proxy 407)
  std::string detail;           // extra context (proxy reply)
  unsigned status = 0;
  bool keep_alive = false;
  http::response<http::string_body> res;
};

std::chrono::steady_clock::duration bounded(std::chrono::milliseconds d, steady_time deadline) {
  auto left = deadline - std::chrono::steady_clock::now();
  if (left < std::chrono::milliseconds(1)) left = std::chrono::milliseconds(1);
  return std::min<std::chrono::steady_clock::duration>(d, left);
}

// A connection the server has closed while it sat idle reads as EOF (or an error) without blocking.
bool peer_closed(connection& c) {
  auto& sock = c.tcp().socket();
  if (!sock.is_open()) return true;
  char b;
  const auto n = ::recv(sock.native_handle(), &b, 1, MSG_PEEK | MSG_DONTWAIT);
  if (n == 0) return true;
  if (n < 0) return !(errno == EAGAIN || errno == EWOULDBLOCK);
  return !c.tls;  // unsolicited bytes on plain HTTP: protocol state unknown. TLS may hold tickets.
}

}  // namespace

struct http_client::impl : std::enable_shared_from_this<impl> {
  impl(asio::any_io_executor ex, http_client_config c)
      : executor(std::move(ex)), cfg(std::move(c)), tls_ctx(ssl::context::tls_client) {
    clk = cfg.clock ? cfg.clock : &engine::real_clock::instance();
    if (cfg.max_connections_per_origin == 0) throw std::invalid_argument("http client: max connections must be > 0");
    if (!cfg.base_url.empty()) {
      std::string err;
      auto b = parse_url(cfg.base_url, err);
      if (!b) throw std::invalid_argument("base URL: " + err);
      base = *b;
      // a path prefix ("/api") is kept; a trailing slash is not (targets start with "/").
      base_prefix = b->target.substr(0, b->target.find('?'));
      while (!base_prefix.empty() && base_prefix.back() == '/') base_prefix.pop_back();
    }
    tls_ctx.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                        ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
    // CAs (the system bundle and --ca-file) are parsed before the first TLS handshake, not here: a
    // bundle is ~50 ms of CPU per client, which plain-http clients (loopback emulators, tests) never
    // need. An unreadable CA file is still reported at start; one that does not parse, at the handshake.
    if (!cfg.ca_file.empty()) {
      std::FILE* f = std::fopen(cfg.ca_file.c_str(), "rb");
      if (!f) throw std::invalid_argument("CA file '" + cfg.ca_file + "': cannot read: " + std::strerror(errno));
      std::fclose(f);
    }
    tls_ctx.set_verify_mode(cfg.insecure ? ssl::verify_none : ssl::verify_peer);
    if (cfg.insecure)
      log->warn("tls certificate verification is disabled (insecure=true); use a CA file instead where possible");
    // Validate proxy URLs up front so a typo fails at start, not on the first request.
    std::string err;
    if (!cfg.proxy.https_proxy.empty() && !parse_proxy_url(cfg.proxy.https_proxy, err))
      throw std::invalid_argument("HTTPS_PROXY: " + err);
    if (!cfg.proxy.http_proxy.empty() && !parse_proxy_url(cfg.proxy.http_proxy, err))
      throw std::invalid_argument("HTTP_PROXY: " + err);
  }

  asio::any_io_executor executor;
  http_client_config cfg;
  ssl::context tls_ctx;
  std::once_flag cas_loaded;  // tls_ctx gets its CAs before the first handshake
  std::string ca_error;       // set once, under cas_loaded: the CA file did not parse
  const engine::clock* clk;
  url_parts base;
  std::string base_prefix;
  std::shared_ptr<spdlog::logger> log = engine::logger("http");

  std::mutex mu;  // guards pools
  std::map<std::string, std::shared_ptr<origin_pool>, std::less<>> pools;

  std::atomic<std::uint64_t> n_requests{0}, n_opened{0}, n_reused{0}, n_stale{0};

  std::string resolve(std::string_view target) const {
    // "scheme://..." is absolute (an unsupported scheme is then reported by parse_url)
    const auto sep = target.find("://");
    if (sep != std::string_view::npos && target.substr(0, sep).find_first_of("/?#") == std::string_view::npos)
      return std::string(target);
    std::string out = base.origin();
    out += base_prefix;
    if (target.empty() || target.front() != '/') out += '/';
    out += target;
    return out;
  }

  std::shared_ptr<origin_pool> pool_for(const std::string& key) {
    std::lock_guard lk(mu);
    auto it = pools.find(key);
    if (it == pools.end()) it = pools.emplace(key, std::make_shared<origin_pool>(cfg.max_connections_per_origin)).first;
    return it->second;
  }

  // ---- wire work, on the connection's strand -----------------------------------------------------

  asio::awaitable<void> connect(connection& c, const url_parts& u, const std::optional<proxy_endpoint>& proxy,
                                steady_time deadline, exchange_out& out) {
    const std::string& host = proxy ? proxy->host : u.host;
    const std::uint16_t port = proxy ? proxy->port : u.port;
    auto& tcp_s = c.tcp();
    out.stage = "connect";
    boost::system::error_code ec;
    auto addr = asio::ip::make_address(host, ec);
    if (!ec) {
      tcp_s.expires_after(bounded(cfg.connect_timeout, deadline));
      auto [cec] = co_await tcp_s.async_connect(tcp::endpoint(addr, port), use_tuple);
      if (cec) {
        out.ec = cec;
        co_return;
      }
    } else {
      out.stage = "resolve";
      tcp::resolver resolver(c.strand);
      asio::steady_timer timer(c.strand);
      timer.expires_after(bounded(cfg.connect_timeout, deadline));
      auto r = co_await (resolver.async_resolve(host, std::to_string(port), use_tuple) || timer.async_wait(use_tuple));
      if (r.index() == 1) {
        out.ec = beast::error::timeout;
        co_return;
      }
      auto [rec, results] = std::get<0>(std::move(r));
      if (rec) {
        out.ec = rec;
        if (rec == asio::error::host_not_found) out.fatal = true;
        co_return;
      }
      out.stage = "connect";
      tcp_s.expires_after(bounded(cfg.connect_timeout, deadline));
      auto [cec, ep] = co_await tcp_s.async_connect(results, use_tuple);
      (void)ep;
      if (cec) {
        out.ec = cec;
        co_return;
      }
    }
    tcp_s.socket().set_option(tcp::no_delay(true), ec);
    n_opened.fetch_add(1, std::memory_order_relaxed);
    if (!proxy) {
      const auto peer = tcp_s.socket().remote_endpoint(ec);
      c.local_peer = !ec && is_local_host(peer.address().to_string());
    }

    if (proxy && u.tls) {
      out.stage = "proxy CONNECT";
      http::request<http::empty_body> creq{http::verb::connect, u.host_header.find(':') == std::string::npos
                                                                    ? u.host_header + ":" + std::to_string(u.port)
                                                                    : u.host_header,
                                           11};
      creq.set(http::field::host, creq.target());
      creq.set(http::field::user_agent, cfg.user_agent);
      if (!proxy->authorization.empty()) creq.set(http::field::proxy_authorization, proxy->authorization);
      tcp_s.expires_after(bounded(cfg.connect_timeout, deadline));
      auto [wec, wn] = co_await http::async_write(tcp_s, creq, use_tuple);
      (void)wn;
      if (wec) {
        out.ec = wec;
        co_return;
      }
      http::response_parser<http::empty_body> p;
      p.skip(true);  // a CONNECT reply has no body, whatever its headers say
      tcp_s.expires_after(bounded(cfg.connect_timeout, deadline));
      auto [rec, rn] = co_await http::async_read_header(tcp_s, c.buffer, p, use_tuple);
      (void)rn;
      if (rec) {
        out.ec = rec;
        co_return;
      }
      const unsigned st = p.get().result_int();
      if (st != 200) {
        out.ec = asio::error::connection_refused;
        out.detail = "proxy replied " + std::to_string(st) + " " + std::string(p.get().reason());
        out.fatal = st == 407 || (st >= 400 && st < 500);
        co_return;
      }
    }

    if (u.tls) {
      out.stage = "tls handshake";
      c.tls = true;
      std::call_once(cas_loaded, [this] {
        boost::system::error_code cas_ec;  // no system bundle: only --ca-file certificates verify
        tls_ctx.set_default_verify_paths(cas_ec);
        if (!cfg.ca_file.empty()) {
          tls_ctx.load_verify_file(cfg.ca_file, cas_ec);
          if (cas_ec) ca_error = "CA file '" + cfg.ca_file + "': cannot load: " + cas_ec.message();
        }
      });
      if (!ca_error.empty()) {
        out.ec = boost::system::errc::make_error_code(boost::system::errc::invalid_argument);
        out.detail = ca_error;
        out.fatal = true;
        co_return;
      }
      boost::system::error_code ip_ec;  // SNI carries host names only, never IP literals
      asio::ip::make_address(u.host, ip_ec);
      if (ip_ec && !SSL_set_tlsext_host_name(c.stream.native_handle(), u.host.c_str())) {
        out.ec = boost::system::error_code(static_cast<int>(::ERR_get_error()), asio::error::get_ssl_category());
        out.fatal = true;
        co_return;
      }
      if (!cfg.insecure) {
        c.stream.set_verify_mode(ssl::verify_peer);
        c.stream.set_verify_callback(ssl::host_name_verification(u.host));
      }
      tcp_s.expires_after(bounded(cfg.connect_timeout, deadline));
      auto [hec] = co_await c.stream.async_handshake(ssl::stream_base::client, use_tuple);
      if (hec) {
        out.ec = hec;
        // certificate / protocol failures will not heal by retrying; a reset during the handshake may
        out.fatal = hec.category() == asio::error::get_ssl_category();
        co_return;
      }
    }
    c.connected = true;
  }

  template <class Stream>
  asio::awaitable<void> roundtrip(Stream& s, connection& c, out_request& req, bool head, steady_time deadline,
                                  exchange_out& out) {
    out.stage = "write";
    c.tcp().expires_after(bounded(cfg.read_timeout, deadline));
    auto [wec, wn] = co_await http::async_write(s, req, use_tuple);
    (void)wn;
    if (wec) {
      out.ec = wec;
      co_return;
    }
    out.sent = true;
    out.stage = "read";
    http::response_parser<http::string_body> p;
    p.body_limit(cfg.body_limit);
    p.header_limit(64 * 1024);
    if (head) p.skip(true);
    const auto before = c.buffer.size();
    c.tcp().expires_after(bounded(cfg.read_timeout, deadline));
    auto [hec, hn] = co_await http::async_read_header(s, c.buffer, p, use_tuple);
    if (hec) {
      out.got_bytes = hn > 0 || c.buffer.size() > before;
      out.ec = hec;
      co_return;
    }
    out.got_bytes = true;
    // Sized once with the slack a JSON parser pads with: a MB page is not copied again to be parsed.
    if (auto len = p.content_length(); len && *len <= cfg.body_limit) p.get().body().reserve(*len + http_body_slack);
    while (!p.is_done()) {
      c.tcp().expires_after(bounded(cfg.read_timeout, deadline));
      auto [rec, rn] = co_await http::async_read_some(s, c.buffer, p, use_tuple);
      (void)rn;
      if (rec) {
        out.ec = rec;
        if (rec == http::error::body_limit) {
          out.fatal = true;
          out.detail = "response body exceeds the limit of " + std::to_string(cfg.body_limit) + " bytes";
        }
        co_return;
      }
    }
    c.tcp().expires_never();
    out.status = p.get().result_int();
    out.keep_alive = p.get().keep_alive() && !p.need_eof();
    out.res = p.release();
  }

  asio::awaitable<exchange_out> exchange(connection& c, const url_parts& u, std::optional<proxy_endpoint> proxy,
                                         out_request& req, bool head, steady_time deadline) {
    exchange_out out;
    if (!c.connected) {
      co_await connect(c, u, proxy, deadline, out);
      if (!c.connected) co_return out;
    }
    // gzip_skip_local_peers: the address is known only now, once connected (the request set the header)
    if (cfg.gzip_skip_local_peers && c.local_peer && !c.tls) req.erase(http::field::accept_encoding);
    if (c.tls) co_await roundtrip(c.stream, c, req, head, deadline, out);
    else co_await roundtrip(c.tcp(), c, req, head, deadline, out);
    co_return out;
  }

  // Runs `exchange` on the connection's strand and forwards the caller's cancellation to it safely.
  //
  // Why not `co_await co_spawn(c.strand, exchange(...), use_awaitable)` with the caller's slot:
  // Asio 1.26's co_spawn_cancellation_handler (impl/co_spawn.hpp) answers a cancellation with
  // `dispatch(strand, [sig = &signal_] { sig->emit(); })`, where `signal_` lives inside the handler
  // installed in the caller's slot. The caller runs on another executor, so that is a post; when the
  // exchange completes before the posted lambda runs (a cancellation "at the instant the request
  // completes"), use_awaitable's completion clears the caller's slot (awaitable_frame_base::
  // clear_cancellation_slot), which destroys that handler and its signal, and the lambda emits through
  // freed memory (ASan: heap-use-after-free in cancellation_signal::emit from co_spawn.hpp:209; Asio
  // 1.28 holds the signal in a shared_ptr instead). Here the caller's slot holds our own handler, which posts to the strand with shared
  // ownership of the bridge; on the strand it emits only while the exchange still runs (`done` is
  // written and read on the strand only), so co_spawn's own handler then dispatches inline, with the
  // spawned coroutine and its signal alive.
  struct cancel_bridge {
    asio::cancellation_signal signal;  // co_spawn's cancellation slot; emitted on the strand only
    bool done = false;                 // the exchange has finished; strand only
  };

  asio::awaitable<exchange_out> run_on_strand(connection& c, const url_parts& u, std::optional<proxy_endpoint> proxy,
                                              out_request& req, bool head, steady_time deadline) {
    auto bridge = std::make_shared<cancel_bridge>();
    asio::cancellation_slot caller = (co_await asio::this_coro::cancellation_state).slot();
    if (caller.is_connected()) {
      caller.assign([bridge, strand = c.strand](asio::cancellation_type type) {
        asio::post(strand, [bridge, type] {
          if (!bridge->done) bridge->signal.emit(type);
        });
      });
    }
    struct clear_slot {  // the handler must not outlive this call (exceptions included)
      asio::cancellation_slot s;
      ~clear_slot() {
        if (s.is_connected()) s.clear();
      }
    } clear{caller};
    auto run = [](impl* self, std::shared_ptr<cancel_bridge> b, connection& conn, const url_parts& url,
                  std::optional<proxy_endpoint> px, out_request& r, bool hd,
                  steady_time dl) -> asio::awaitable<exchange_out> {
      exchange_out o;
      try {
        o = co_await self->exchange(conn, url, std::move(px), r, hd, dl);
      } catch (...) {
        b->done = true;
        throw;
      }
      b->done = true;
      co_return o;
    };
    co_return co_await asio::co_spawn(
        c.strand, run(this, bridge, c, u, std::move(proxy), req, head, deadline),
        asio::bind_cancellation_slot(bridge->signal.slot(), asio::use_awaitable));
  }

  // ---- pool -------------------------------------------------------------------------------------

  struct lease {
    std::shared_ptr<origin_pool> pool;
    engine::semaphore::permit permit;
    std::unique_ptr<connection> conn;
    bool reused = false;
  };

  // Waits for a slot of the origin (bounded by the deadline); takes a live idle connection if any.
  asio::awaitable<std::optional<lease>> acquire(const std::string& key, steady_time deadline, bool fresh) {
    lease l;
    l.pool = pool_for(key);
    if (auto p = l.pool->slots.try_acquire()) {
      l.permit = std::move(*p);
    } else {
      asio::steady_timer timer(co_await asio::this_coro::executor);
      timer.expires_at(deadline);
      auto r = co_await (l.pool->slots.acquire() || timer.async_wait(use_tuple));
      if (r.index() == 1) co_return std::nullopt;
      l.permit = std::move(std::get<0>(r));
    }
    if (!fresh) {
      const auto now = std::chrono::steady_clock::now();
      std::unique_lock lk(l.pool->mu);
      while (!l.pool->idle.empty()) {
        auto c = std::move(l.pool->idle.back());
        l.pool->idle.pop_back();
        if (now - c->last_used < cfg.idle_keepalive && !peer_closed(*c)) {
          l.conn = std::move(c);
          l.reused = true;
          break;
        }
        // stale: dropped here (closing a socket with no pending operation needs no strand)
      }
    }
    if (!l.conn) l.conn = std::make_unique<connection>(executor, tls_ctx);
    co_return l;
  }

  void give_back(lease& l) {
    l.conn->last_used = std::chrono::steady_clock::now();
    std::lock_guard lk(l.pool->mu);
    l.pool->idle.push_back(std::move(l.conn));
  }

  // ---- the request --------------------------------------------------------------------------------

  asio::awaitable<http_result> send(const http_request_spec& spec) {
    n_requests.fetch_add(1, std::memory_order_relaxed);
    const auto start = std::chrono::steady_clock::now();
    const auto deadline = start + spec.timeout.value_or(cfg.request_timeout);
    http_result result;
    const std::string verb_s(http::to_string(spec.verb));

    std::string err;
    auto url = parse_url(resolve(spec.target), err);
    if (!url) {
      result.outcome = io_outcome::fatal;
      result.error = verb_s + " " + engine::redact(spec.target) + ": " + err;
      co_return result;
    }

    http::verb verb = spec.verb;
    bool with_body = true;
    bool drop_auth = false;
    const bool idempotent = spec.idempotent.value_or(is_idempotent(spec.verb));

    for (int redirects = 0;; ++redirects) {
      std::optional<proxy_endpoint> proxy;
      try {
        proxy = select_proxy(cfg.proxy, url->tls ? "https" : "http", url->host, url->port);
      } catch (const std::exception& e) {
        result.outcome = io_outcome::fatal;
        result.error = verb_s + " " + display_url(*url) + ": " + e.what();
        co_return result;
      }

      out_request req;
      req.method(verb);
      req.version(11);
      const bool absolute_form = proxy && !url->tls;
      req.target(absolute_form ? url->absolute() : url->target);
      req.set(http::field::host, url->host_header);
      req.set(http::field::user_agent, cfg.user_agent);
      if (cfg.accept_gzip) req.set(http::field::accept_encoding, "gzip, deflate");
      for (const auto& [k, v] : spec.headers) {
        if (drop_auth && iequal(k, "authorization")) continue;
        if (!with_body && (iequal(k, "content-type") || iequal(k, "content-encoding"))) continue;
        req.set(k, v);
      }
      if (absolute_form && !proxy->authorization.empty()) req.set(http::field::proxy_authorization, proxy->authorization);
      if (with_body && !spec.body.empty()) req.body() = {spec.body.data(), spec.body.size()};
      req.keep_alive(true);
      req.prepare_payload();

      std::string key = url->origin();
      if (proxy) key += "|" + proxy->host + ":" + std::to_string(proxy->port);
      const bool head = verb == http::verb::head;

      exchange_out out;
      bool reused = false;
      for (int attempt = 0;; ++attempt) {
        auto l = co_await acquire(key, deadline, attempt > 0);
        if (!l) {
          result.outcome = io_outcome::timed_out;
          result.error = verb_s + " " + display_url(*url) + ": timed out waiting for a free connection (max " +
                         std::to_string(cfg.max_connections_per_origin) + " per origin)";
          co_return result;
        }
        reused = l->reused;
        if (reused) n_reused.fetch_add(1, std::memory_order_relaxed);
        connection& c = *l->conn;
        out = co_await run_on_strand(c, *url, proxy, req, head, deadline);
        const auto cancelled = (co_await asio::this_coro::cancellation_state).cancelled();
        if (out.ec && cancelled != asio::cancellation_type::none) {
          // Cancelled by the caller: the connection is dropped (its state is unknown) and the caller
          // sees operation_aborted, as from any other cancelled co_await, not an outcome to retry.
          // (An exchange that completed before the cancellation reached it keeps its response.)
          throw boost::system::system_error(asio::error::operation_aborted, verb_s + " " + display_url(*url));
        }
        if (!out.ec) {
          if (out.keep_alive) give_back(*l);
          break;
        }
        // The connection is closed, never reused, after any error. A reused keep-alive connection
        // that failed before any response byte most likely was closed by the server while idle.
        const bool stale = reused && !out.got_bytes && out.ec != beast::error::timeout && !out.fatal &&
                           (idempotent || !out.sent) && attempt == 0;
        if (stale) {
          n_stale.fetch_add(1, std::memory_order_relaxed);
          log->debug("http stale keep-alive connection, retrying once url={} error={}", display_url(*url),
                     out.ec.message());
          continue;
        }
        break;
      }

      result.url = display_url(*url);
      if (out.ec) {
        if (out.ec == beast::error::timeout) result.outcome = io_outcome::timed_out;
        else if (out.fatal) result.outcome = io_outcome::fatal;
        else result.outcome = io_outcome::transient;
        result.error = verb_s + " " + result.url + ": " + out.stage + " failed: " +
                       (out.detail.empty() ? out.ec.message() : out.detail);
        if (out.ec == beast::error::timeout) result.error += " (timeout)";
        result.error = engine::redact(result.error);
        log->debug("http request failed {}", result.error);
        co_return result;
      }

      auto& res = out.res;
      const unsigned status = out.status;
      if ((status == 301 || status == 302 || status == 303 || status == 307 || status == 308) &&
          res.find(http::field::location) != res.end() && redirects < cfg.max_redirects) {
        std::string loc(res[http::field::location]);
        boost::urls::url dest;
        const std::string cur_s = url->absolute();  // url_views point into it
        auto cur = boost::urls::parse_uri(cur_s);
        auto ref = boost::urls::parse_uri_reference(loc);
        std::optional<url_parts> next;
        if (cur && ref && boost::urls::resolve(*cur, *ref, dest)) next = parse_url(dest.buffer(), err);
        if (!next) {
          result.outcome = io_outcome::fatal;
          result.status = status;
          result.error = verb_s + " " + result.url + ": redirect to an unusable location: " + engine::redact(loc);
          co_return result;
        }
        if (status == 303 && verb != http::verb::head) {
          verb = http::verb::get;
          with_body = false;
        } else if ((status == 301 || status == 302) && verb == http::verb::post) {
          verb = http::verb::get;  // what browsers, curl -L and requests do
          with_body = false;
        }
        if (next->origin() != url->origin()) drop_auth = true;  // never leak credentials to another origin
        url = std::move(next);
        continue;
      }

      result.status = status;
      if (auto it = res.find(http::field::content_type); it != res.end()) result.content_type = std::string(it->value());
      if (auto it = res.find(http::field::location); it != res.end()) result.location = std::string(it->value());
      if (auto it = res.find(http::field::retry_after); it != res.end()) {
        result.retry_after_header = std::string(it->value());
        result.retry_after = engine::parse_retry_after(result.retry_after_header, clk->system_now());
      }
      std::string enc;
      if (auto it = res.find(http::field::content_encoding); it != res.end()) enc = std::string(it->value());
      result.body = std::move(res.body());
      const bool gz = iequal(enc, "gzip") || iequal(enc, "x-gzip");
      const bool deflate = iequal(enc, "deflate");
      if (gz || deflate) {
        std::string derr;
        auto d = decompress(result.body, gz, cfg.body_limit, derr);
        if (!d) {
          result.outcome = io_outcome::transient;
          result.error = verb_s + " " + result.url + ": " + std::to_string(status) + ": cannot decode " + enc +
                         " body: " + derr;
          co_return result;
        }
        result.body = std::move(*d);
      } else if (spec.sniff_gzip && (enc.empty() || iequal(enc, "identity")) && has_gzip_magic(result.body)) {
        std::string derr;
        if (auto d = decompress(result.body, true, cfg.body_limit, derr)) result.body = std::move(*d);
      }

      result.outcome = classify_status(status, result.retry_after.has_value());
      if (status >= 300 && status < 400 && result.outcome == io_outcome::fatal && redirects >= cfg.max_redirects) {
        result.error = verb_s + " " + result.url + ": too many redirects (max " + std::to_string(cfg.max_redirects) + ")";
        co_return result;
      }
      if (result.outcome != io_outcome::ok) {
        result.error = engine::redact(verb_s + " " + result.url + ": " + std::to_string(status) + " " +
                                      std::string(res.reason().empty() ? http::obsolete_reason(res.result())
                                                                       : res.reason()) +
                                      ": " + server_message(result.body));
      }
      co_return result;
    }
  }
};

http_client::http_client(asio::any_io_executor ex, http_client_config cfg)
    : impl_(std::make_shared<impl>(std::move(ex), std::move(cfg))) {}

http_client::~http_client() { close_idle(); }

asio::awaitable<http_result> http_client::send(const http_request_spec& spec) {
  auto self = impl_;  // keeps the pools alive while the request runs
  if (!self->cfg.observer) co_return co_await self->send(spec);
  const auto start = std::chrono::steady_clock::now();
  http_result r = co_await self->send(spec);
  try {
    self->cfg.observer(spec, r, std::chrono::steady_clock::now() - start);
  } catch (const std::exception& e) {
    self->log->warn("http exchange observer failed error={}", engine::redact(e.what()));
  }
  co_return r;
}

std::string http_client::resolve(std::string_view target) const { return impl_->resolve(target); }
const http_client_config& http_client::config() const { return impl_->cfg; }

http_client_stats http_client::stats() const {
  return {impl_->n_requests.load(), impl_->n_opened.load(), impl_->n_reused.load(), impl_->n_stale.load()};
}

void http_client::close_idle() {
  std::vector<std::unique_ptr<connection>> doomed;
  std::lock_guard lk(impl_->mu);
  for (auto& [key, pool] : impl_->pools) {
    std::lock_guard plk(pool->mu);
    for (auto& c : pool->idle) doomed.push_back(std::move(c));
    pool->idle.clear();
  }
}

}  // namespace ferry::transports
