#include "engine/url.hpp"

#include "engine/log.hpp"

#include <algorithm>
#include <cctype>

namespace ferry::engine {
namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

bool scheme_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '+' || c == '-' || c == '.';
}

// Where the authority after "://" at `start` ends: a path, query or fragment delimiter, or a character
// that cannot be part of a URL written in text (space, quote, angle bracket, backslash of an escape).
std::size_t authority_end(std::string_view s, std::size_t start) {
  std::size_t i = start;
  while (i < s.size()) {
    const char c = s[i];
    if (c == '/' || c == '?' || c == '#' || c == '"' || c == '\'' || c == '<' || c == '>' || c == '\\' ||
        std::isspace(static_cast<unsigned char>(c)))
      break;
    ++i;
  }
  return i;
}

uint32_t default_port(std::string_view scheme) { return scheme == "https" ? 443 : scheme == "http" ? 80 : 0; }

}  // namespace

std::optional<url_parts> split_url(std::string_view text) {
  const std::string_view url = trim(text);
  const auto sep = url.find("://");
  if (sep == std::string_view::npos || sep == 0) return std::nullopt;
  for (char c : url.substr(0, sep))
    if (!scheme_char(c)) return std::nullopt;
  url_parts p;
  p.scheme = lower(url.substr(0, sep));
  const std::size_t auth_begin = sep + 3;
  std::size_t auth_stop = auth_begin;
  while (auth_stop < url.size() && url[auth_stop] != '/' && url[auth_stop] != '?' && url[auth_stop] != '#') ++auth_stop;
  std::string_view authority = url.substr(auth_begin, auth_stop - auth_begin);
  const std::string_view rest = url.substr(auth_stop);
  const auto q = rest.find_first_of("?#");
  p.path = std::string(rest.substr(0, q));
  if (q != std::string_view::npos) p.query_and_fragment = std::string(rest.substr(q));
  if (const auto at = authority.rfind('@'); at != std::string_view::npos) {
    const std::string_view info = authority.substr(0, at);
    const auto colon = info.find(':');
    p.user = std::string(info.substr(0, colon));
    if (colon != std::string_view::npos) p.password = std::string(info.substr(colon + 1));
    authority.remove_prefix(at + 1);
  }
  std::string_view port_text;
  if (!authority.empty() && authority.front() == '[') {
    const auto close = authority.find(']');
    if (close == std::string_view::npos) return std::nullopt;
    p.host = lower(authority.substr(1, close - 1));
    const std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return std::nullopt;
      port_text = after.substr(1);
      if (port_text.empty()) return std::nullopt;
    }
  } else {
    const auto colon = authority.rfind(':');
    p.host = lower(authority.substr(0, colon));
    if (colon != std::string_view::npos) {
      port_text = authority.substr(colon + 1);
      if (port_text.empty()) return std::nullopt;
    }
  }
  if (p.host.empty()) return std::nullopt;
  if (!port_text.empty()) {
    if (port_text.size() > 10) return std::nullopt;
    std::uint64_t v = 0;
    for (char c : port_text) {
      if (!std::isdigit(static_cast<unsigned char>(c))) return std::nullopt;
      v = v * 10 + static_cast<std::uint64_t>(c - '0');
    }
    p.port = static_cast<std::uint32_t>(std::min<std::uint64_t>(v, 0xffffffffu));
  }
  return p;
}

std::optional<std::string> check_base_url(std::string_view url) {
  const std::string_view t = trim(url);
  if (t.empty()) return std::string("it is empty");
  auto p = split_url(t);
  if (!p) return std::string("expected http(s)://host[:port][/path]");
  if (p->scheme != "http" && p->scheme != "https")
    return "scheme '" + p->scheme + "' is not http or https";
  if (p->port && (*p->port < 1 || *p->port > 65535))
    return "port " + std::to_string(*p->port) + " is out of range 1-65535";
  return std::nullopt;
}

std::string url_identity(std::string_view url) {
  auto p = split_url(url);
  if (!p) return std::string(trim(url));
  std::string host = p->host;
  if (host == "127.0.0.1" || host == "::1" || host == "0:0:0:0:0:0:0:1" || host == "localhost" || host == "localhost.")
    host = "localhost";
  std::string out = p->scheme + "://" + (host.find(':') != std::string::npos ? "[" + host + "]" : host);
  if (p->port && *p->port != default_port(p->scheme)) out += ":" + std::to_string(*p->port);
  std::string path = p->path;
  while (!path.empty() && path.back() == '/') path.pop_back();
  return out + path + p->query_and_fragment;
}

std::string redact_url_passwords(std::string_view text) {
  std::string out;
  std::size_t copied = 0;
  for (std::size_t pos = text.find("://"); pos != std::string_view::npos; pos = text.find("://", pos + 3)) {
    if (pos == 0 || !scheme_char(text[pos - 1])) continue;
    const std::size_t begin = pos + 3;
    const std::size_t end = authority_end(text, begin);
    const std::string_view authority = text.substr(begin, end - begin);
    const auto at = authority.rfind('@');
    if (at == std::string_view::npos) continue;
    const auto colon = authority.substr(0, at).find(':');
    if (colon == std::string_view::npos) continue;
    const std::string_view password = authority.substr(colon + 1, at - colon - 1);
    if (password.empty() || password == "[REDACTED]") continue;
    out.append(text.substr(copied, begin + colon + 1 - copied));
    out.append("[REDACTED]");
    copied = begin + at;
  }
  if (copied == 0) return std::string(text);
  out.append(text.substr(copied));
  return out;
}

void register_url_password(std::string_view url) {
  if (url.find("://") == std::string_view::npos) return;
  if (auto p = split_url(url); p && p->password && !p->password->empty()) register_secret(*p->password);
}

}  // namespace ferry::engine
