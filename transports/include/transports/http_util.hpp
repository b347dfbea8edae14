#pragma once
// Sans-I/O pieces of the HTTP client, kept apart so they are unit-testable without sockets:
// status classification, the server's error message, proxy selection (HTTP(S)_PROXY / NO_PROXY).
// All functions are pure and thread-safe.

#include "engine/outcome.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace ferry::transports {

/// Classifies an HTTP status: 2xx ok (1xx/3xx reaching the caller are fatal); 404 not_found;
/// 429 throttled; 503 throttled when it carries Retry-After, else transient; 408 timed_out;
/// 409/425/500/502/503/504 transient; 400/401/403/413 and other 4xx fatal; other 5xx transient.
engine::io_outcome classify_status(unsigned status, bool has_retry_after);

/// The server's message for an error reply, one line, at most `max_chars` characters: the JSON
/// `error` / `message` / `detail` field when the body is a JSON object with one (string, or the
/// serialized value), else the body text with newlines folded.
std::string server_message(std::string_view body, std::size_t max_chars = 300);

/// Proxy settings. Values are URLs "http://[user:pass@]host:port" (scheme optional, http only).
/// `from_env()` reads HTTPS_PROXY/https_proxy, HTTP_PROXY/http_proxy, NO_PROXY/no_proxy (the
/// lower-case form wins when both are set, as in curl; curl ignores upper-case HTTP_PROXY for CGI
/// safety, we accept it).
struct proxy_config {
  std::string http_proxy;
  std::string https_proxy;
  std::string no_proxy;
  static proxy_config from_env();
  bool empty() const { return http_proxy.empty() && https_proxy.empty(); }
};

struct proxy_endpoint {
  std::string host;
  std::uint16_t port = 0;
  std::string authorization;  // "Basic ..." when the proxy URL carries credentials, else empty
};

/// Parses a proxy URL; nullopt with `error` set when it is malformed or not http://.
std::optional<proxy_endpoint> parse_proxy_url(std::string_view url, std::string& error);

/// NO_PROXY matching, curl's rules: comma/space separated entries; "*" alone matches every host;
/// an entry matches the host itself or any subdomain (a leading "." is ignored, so ".example.com"
/// and "example.com" both match "api.example.com" and "example.com"); comparisons are
/// case-insensitive; IPv4/IPv6 literals match exactly or by CIDR ("10.0.0.0/8"); an entry
/// "host:port" matches only that port (an extension over curl). Loopback hosts are NOT exempt
/// implicitly (curl proxies them too): list "localhost,127.0.0.1,::1" in NO_PROXY to bypass.
bool no_proxy_matches(std::string_view no_proxy, std::string_view host, std::uint16_t port);

/// The proxy to use for scheme ("http"/"https") + host + port, or nullopt for a direct connection.
/// Throws std::invalid_argument naming the variable when the selected proxy URL is malformed.
std::optional<proxy_endpoint> select_proxy(const proxy_config& cfg, std::string_view scheme, std::string_view host,
                                           std::uint16_t port);

/// Whether to ask a server for gzip (`Accept-Encoding`). Over a WAN gzip saves bandwidth; on loopback
/// or a LAN inflating is pure cost (~37% of the migrator's CPU against a local source) and the server
/// pays ~7 us per event to deflate.
enum class gzip_policy { automatic, on, off };

/// "auto" | "on" | "off" (case-insensitive; true/false, yes/no, 1/0 are accepted for on/off);
/// nullopt otherwise.
std::optional<gzip_policy> parse_gzip_policy(std::string_view text);
std::string_view to_string(gzip_policy p);

/// True for hosts on this machine or a private network, by name or literal: "localhost" and
/// "*.localhost", IPv4 loopback 127/8, RFC 1918 (10/8, 172.16/12, 192.168/16), link-local 169.254/16,
/// 0.0.0.0, IPv6 ::1, ::, link-local fe80::/10, unique-local fc00::/7, and IPv4-mapped forms of those.
/// Names are not resolved here (the client checks the connected address: gzip_skip_local_peers).
/// `host` has no brackets and no port.
bool is_local_host(std::string_view host);

/// The `automatic` rule for a base URL: gzip for https origins, none for http origins whose host is
/// local (is_local_host), gzip for any other http origin and for URLs that do not parse (the client
/// reports those). `on` / `off` return true / false whatever the URL. For `automatic`, clients also
/// set http_client_config::gzip_skip_local_peers, which extends the rule to http hosts known by name
/// whose address, once connected, is local.
bool accept_gzip_for(gzip_policy p, std::string_view base_url);

/// Standard base64 (Proxy-Authorization, binary bodies in recordings).
/// `s` percent-encoded for a URL path segment or query value: RFC 3986 unreserved characters
/// (letters, digits, - . _ ~) kept, every other byte as %XX (upper-case hex).
std::string percent_encode(std::string_view s);

std::string base64_encode(std::string_view in);
/// Inverse of base64_encode (stops at '='); throws std::runtime_error on a character outside the alphabet.
std::string base64_decode(std::string_view in);

}  // namespace ferry::transports
