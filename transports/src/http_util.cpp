#include "transports/http_util.hpp"
#include "engine/json_parse.hpp"

#include <boost/asio/ip/address.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <boost/url/parse.hpp>

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <cstdlib>
#include <stdexcept>

namespace ferry::transports {

engine::io_outcome classify_status(unsigned status, bool has_retry_after) {
  using engine::io_outcome;
  if (status >= 200 && status < 300) return io_outcome::ok;
  switch (status) {
    case 404: return io_outcome::not_found;
    case 429: return io_outcome::throttled;
    case 408: return io_outcome::timed_out;
    case 503: return has_retry_after ? io_outcome::throttled : io_outcome::transient;
    case 409:
    case 425:
    case 500:
    case 502:
    case 504: return io_outcome::transient;
    default: break;
  }
  if (status >= 500 && status < 600) return io_outcome::transient;
  return io_outcome::fatal;  // 4xx (400/401/403/413...), and 1xx/3xx that reach the caller
}

namespace {

std::string one_line(std::string_view s, std::size_t max_chars) {
  std::string out;
  out.reserve(std::min(s.size(), max_chars));
  for (char c : s) {
    if (out.size() >= max_chars) break;
    if (c == '\n' || c == '\r' || c == '\t') {
      if (!out.empty() && out.back() != ' ') out.push_back(' ');
    } else {
      out.push_back(c);
    }
  }
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

std::string getenv_str(const char* name) {
  const char* v = std::getenv(name);
  return v ? std::string(v) : std::string();
}

// CIDR or exact match of an IP literal host against an entry; nullopt when the entry is not an IP.
std::optional<bool> ip_entry_matches(std::string_view entry, std::string_view host) {
  std::string_view addr_part = entry;
  int bits = -1;
  if (auto slash = entry.find('/'); slash != std::string_view::npos) {
    addr_part = entry.substr(0, slash);
    auto b = entry.substr(slash + 1);
    int v = 0;
    auto [p, ec] = std::from_chars(b.data(), b.data() + b.size(), v);
    if (ec != std::errc{} || p != b.data() + b.size()) return std::nullopt;
    bits = v;
  }
  if (addr_part.size() > 2 && addr_part.front() == '[' && addr_part.back() == ']')
    addr_part = addr_part.substr(1, addr_part.size() - 2);
  boost::system::error_code ec;
  auto net = boost::asio::ip::make_address(std::string(addr_part), ec);
  if (ec) return std::nullopt;
  std::string_view h = host;
  if (h.size() > 2 && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
  auto addr = boost::asio::ip::make_address(std::string(h), ec);
  if (ec) return false;
  if (net.is_v4() != addr.is_v4()) return false;
  if (bits < 0) return net == addr;
  if (net.is_v4()) {
    if (bits > 32) return false;
    const std::uint32_t mask = bits == 0 ? 0 : ~std::uint32_t{0} << (32 - bits);
    return (net.to_v4().to_uint() & mask) == (addr.to_v4().to_uint() & mask);
  }
  if (bits > 128) return false;
  auto a = net.to_v6().to_bytes();
  auto b = addr.to_v6().to_bytes();
  for (int i = 0; i < 16 && bits > 0; ++i, bits -= 8) {
    const unsigned m = bits >= 8 ? 0xffu : (0xffu << (8 - bits)) & 0xffu;
    if ((a[i] & m) != (b[i] & m)) return false;
  }
  return true;
}

}  // namespace

std::string server_message(std::string_view body, std::size_t max_chars) {
  auto t = trim(body);
  if (!t.empty() && t.front() == '{' && t.size() < (4u << 20)) {
    boost::system::error_code ec;
    auto v = ferry::engine::parse_json(t, ec);
    if (!ec && v.is_object()) {
      const auto& o = v.get_object();
      for (const char* key : {"error", "message", "detail", "Message"}) {
        auto it = o.find(key);
        if (it == o.end() || it->value().is_null()) continue;
        if (it->value().is_string()) return one_line(it->value().get_string(), max_chars);
        if (it->value().is_object()) {
          // {"error": {"message": "..."}} (OpenAI-style)
          const auto& inner = it->value().get_object();
          if (auto m = inner.find("message"); m != inner.end() && m->value().is_string())
            return one_line(m->value().get_string(), max_chars);
        }
        return one_line(boost::json::serialize(it->value()), max_chars);
      }
    }
  }
  return one_line(t, max_chars);
}

proxy_config proxy_config::from_env() {
  proxy_config c;
  auto pick = [](const char* lower_name, const char* upper_name) {
    auto v = getenv_str(lower_name);
    return v.empty() ? getenv_str(upper_name) : v;
  };
  c.https_proxy = pick("https_proxy", "HTTPS_PROXY");
  c.http_proxy = pick("http_proxy", "HTTP_PROXY");
  c.no_proxy = pick("no_proxy", "NO_PROXY");
  return c;
}

std::optional<gzip_policy> parse_gzip_policy(std::string_view text) {
  std::string t;
  for (char c : text)
    if (!std::isspace(static_cast<unsigned char>(c))) t += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (t == "auto") return gzip_policy::automatic;
  if (t == "on" || t == "true" || t == "yes" || t == "1") return gzip_policy::on;
  if (t == "off" || t == "false" || t == "no" || t == "0") return gzip_policy::off;
  return std::nullopt;
}

std::string_view to_string(gzip_policy p) {
  switch (p) {
    case gzip_policy::on: return "on";
    case gzip_policy::off: return "off";
    case gzip_policy::automatic: break;
  }
  return "auto";
}

namespace {

bool is_local_v4(const boost::asio::ip::address_v4& a) {
  const auto b = a.to_bytes();
  return b[0] == 127 || b[0] == 10 || (b[0] == 172 && (b[1] & 0xF0) == 16) || (b[0] == 192 && b[1] == 168) ||
         (b[0] == 169 && b[1] == 254) || a.is_unspecified();
}

}  // namespace

bool is_local_host(std::string_view host) {
  std::string h;
  for (char c : host) h += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (!h.empty() && h.back() == '.') h.pop_back();  // "localhost." is the same name
  if (h.size() >= 2 && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
  constexpr std::string_view suffix = ".localhost";  // RFC 6761: always loopback
  if (h == "localhost" || (h.size() > suffix.size() && h.compare(h.size() - suffix.size(), suffix.size(), suffix) == 0))
    return true;
  boost::system::error_code ec;
  const auto addr = boost::asio::ip::make_address(h, ec);
  if (ec) return false;
  if (addr.is_v4()) return is_local_v4(addr.to_v4());
  const auto v6 = addr.to_v6();
  if (v6.is_v4_mapped()) return is_local_v4(boost::asio::ip::make_address_v4(boost::asio::ip::v4_mapped, v6));
  const auto b = v6.to_bytes();
  return v6.is_loopback() || v6.is_unspecified() || v6.is_link_local() || (b[0] & 0xFE) == 0xFC;
}

bool accept_gzip_for(gzip_policy p, std::string_view base_url) {
  if (p != gzip_policy::automatic) return p == gzip_policy::on;
  auto u = boost::urls::parse_uri(base_url);
  if (!u) return true;
  std::string scheme(u->scheme());
  for (auto& c : scheme) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (scheme != "http") return true;
  return !is_local_host(u->host_address());
}

namespace {
constexpr std::string_view base64_alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
}  // namespace

std::string percent_encode(std::string_view s) {
  static constexpr char hex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(s.size());
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
      out.push_back(ch);
    } else {
      out.push_back('%');
      out.push_back(hex[c >> 4]);
      out.push_back(hex[c & 15]);
    }
  }
  return out;
}

std::string base64_encode(std::string_view in) {
  constexpr std::string_view tbl = base64_alphabet;
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    const unsigned v = (static_cast<unsigned char>(in[i]) << 16) | (static_cast<unsigned char>(in[i + 1]) << 8) |
                       static_cast<unsigned char>(in[i + 2]);
    out += tbl[(v >> 18) & 63];
    out += tbl[(v >> 12) & 63];
    out += tbl[(v >> 6) & 63];
    out += tbl[v & 63];
  }
  if (i + 1 == in.size()) {
    const unsigned v = static_cast<unsigned char>(in[i]) << 16;
    out += tbl[(v >> 18) & 63];
    out += tbl[(v >> 12) & 63];
    out += "==";
  } else if (i + 2 == in.size()) {
    const unsigned v = (static_cast<unsigned char>(in[i]) << 16) | (static_cast<unsigned char>(in[i + 1]) << 8);
    out += tbl[(v >> 18) & 63];
    out += tbl[(v >> 12) & 63];
    out += tbl[(v >> 6) & 63];
    out += '=';
  }
  return out;
}

std::string base64_decode(std::string_view in) {
  std::string out;
  out.reserve(in.size() / 4 * 3);
  unsigned v = 0;
  int bits = 0;
  for (char c : in) {
    if (c == '=') break;
    const auto pos = base64_alphabet.find(c);
    if (pos == std::string_view::npos) throw std::runtime_error("invalid base64 body");
    v = (v << 6) | static_cast<unsigned>(pos);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((v >> bits) & 0xFF);
    }
  }
  return out;
}

std::optional<proxy_endpoint> parse_proxy_url(std::string_view url_in, std::string& error) {
  std::string url(trim(url_in));
  if (url.find("://") == std::string::npos) url = "http://" + url;
  auto parsed = boost::urls::parse_uri(url);
  if (!parsed) {
    error = "malformed proxy URL";
    return std::nullopt;
  }
  auto u = *parsed;
  if (lower(u.scheme()) != "http") {
    error = "only http:// proxies are supported (got " + std::string(u.scheme()) + "://)";
    return std::nullopt;
  }
  proxy_endpoint p;
  p.host = std::string(u.host_address());  // decoded; IPv6 without brackets
  if (p.host.empty()) {
    error = "proxy URL has no host";
    return std::nullopt;
  }
  p.port = u.has_port() ? u.port_number() : 1080;  // curl's default proxy port
  if (u.has_port() && p.port == 0) {
    error = "proxy URL has an invalid port";
    return std::nullopt;
  }
  if (u.has_userinfo()) p.authorization = "Basic " + base64_encode(std::string(u.user()) + ":" + std::string(u.password()));
  return p;
}

bool no_proxy_matches(std::string_view no_proxy, std::string_view host_in, std::uint16_t port) {
  std::string host = lower(host_in);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  while (!host.empty() && host.back() == '.') host.pop_back();
  std::size_t pos = 0;
  while (pos < no_proxy.size()) {
    std::size_t end = no_proxy.find_first_of(", ", pos);
    if (end == std::string_view::npos) end = no_proxy.size();
    std::string entry = lower(trim(no_proxy.substr(pos, end - pos)));
    pos = end + 1;
    if (entry.empty()) continue;
    if (entry == "*") return true;
    // optional ":port" (not for bare IPv6 literals, which contain colons; use [::1]:8080)
    std::optional<std::uint16_t> entry_port;
    if (auto colon = entry.rfind(':'); colon != std::string::npos &&
                                       (entry.find(':') == colon || (entry.front() == '[' && colon > 0 &&
                                                                     entry[colon - 1] == ']'))) {
      unsigned v = 0;
      auto ps = std::string_view(entry).substr(colon + 1);
      auto [p, ec] = std::from_chars(ps.data(), ps.data() + ps.size(), v);
      if (ec == std::errc{} && p == ps.data() + ps.size() && v <= 65535) {
        entry_port = static_cast<std::uint16_t>(v);
        entry.resize(colon);
      }
    }
    if (entry_port && *entry_port != port) continue;
    if (auto ip = ip_entry_matches(entry, host)) {
      if (*ip) return true;
      continue;
    }
    if (!entry.empty() && entry.front() == '.') entry.erase(0, 1);
    while (!entry.empty() && entry.back() == '.') entry.pop_back();
    if (entry.empty()) continue;
    if (host == entry) return true;
    if (host.size() > entry.size() && host.ends_with(entry) && host[host.size() - entry.size() - 1] == '.') return true;
  }
  return false;
}

std::optional<proxy_endpoint> select_proxy(const proxy_config& cfg, std::string_view scheme, std::string_view host,
                                           std::uint16_t port) {
  const bool https = lower(scheme) == "https";
  const std::string& url = https ? cfg.https_proxy : cfg.http_proxy;
  if (url.empty()) return std::nullopt;
  if (!cfg.no_proxy.empty() && no_proxy_matches(cfg.no_proxy, host, port)) return std::nullopt;
  std::string error;
  auto p = parse_proxy_url(url, error);
  if (!p) throw std::invalid_argument(std::string(https ? "HTTPS_PROXY" : "HTTP_PROXY") + ": " + error);
  return p;
}

}  // namespace ferry::transports
