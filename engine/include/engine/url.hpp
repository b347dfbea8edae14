#pragma once
// Base URLs as configuration values: checked once (scheme, host, port in range), compared by identity
// (two spellings of one deployment are the same URL) and shown without their password.
//
//   http://user:pass@LOCALHOST:80/  ->  identity "http://localhost"  (a resume compares identities)
//   http://127.0.0.1:8000/api/      ->  identity "http://localhost:8000/api"
//
// No I/O, no DNS: `localhost`, 127.0.0.1 and ::1 are the one loopback host by name only.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace ferry::engine {

struct url_parts {
  std::string scheme;                   // lower case: "http", "https"
  std::string user;                     // userinfo before ':' (may be empty)
  std::optional<std::string> password;  // userinfo after ':'
  std::string host;                     // lower case, without IPv6 brackets
  std::optional<std::uint32_t> port;    // as written (checked by check_base_url)
  std::string path;                     // from the first '/' up to '?' or '#'; may be empty
  std::string query_and_fragment;       // from '?' or '#', kept as written
};

/// Splits `scheme://[user[:password]@]host[:port][/path][?query][#fragment]`; nullopt when the text
/// has no `scheme://`, an empty host, an unclosed IPv6 bracket or a port that is not all digits (or
/// has more than 10 of them).
std::optional<url_parts> split_url(std::string_view url);

/// The reason `url` cannot be an API base URL (e.g. "port 99999 is out of range 1-65535"), or
/// nullopt when it can: http or https, a host, a port from 1 to 65535 when one is given.
std::optional<std::string> check_base_url(std::string_view url);

/// The deployment a base URL names, for comparing two runs' settings: scheme and host lower case,
/// userinfo dropped, the scheme's default port dropped, trailing slashes dropped, and every loopback
/// name (localhost, 127.0.0.1, ::1) spelled `localhost`. Text that is not a URL is returned trimmed.
std::string url_identity(std::string_view url);

/// `text` with the password of every `scheme://user:password@` in it replaced by [REDACTED].
std::string redact_url_passwords(std::string_view text);

/// Registers the password of `url` (if it has one) with the log redactor (engine::register_secret).
void register_url_password(std::string_view url);

}  // namespace ferry::engine
