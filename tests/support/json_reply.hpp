#pragma once
// A canned JSON answer for the test servers that stand in for the Braintrust API (header-only: only the
// test binaries that link transports include it).
#include "transports/http_server.hpp"

#include <boost/beast/http/field.hpp>
#include <boost/beast/http/status.hpp>

#include <string>

namespace ferry::test {

/// A reply with `status`, a JSON content type, `body` and, when given, a Retry-After header.
inline transports::http_reply json_reply(unsigned status, std::string body, std::string retry_after = {}) {
  namespace http = boost::beast::http;
  transports::http_reply r;
  r.response.result(static_cast<http::status>(status));
  r.response.set(http::field::content_type, "application/json");
  if (!retry_after.empty()) r.response.set(http::field::retry_after, retry_after);
  r.response.body() = std::move(body);
  return r;
}

}  // namespace ferry::test
