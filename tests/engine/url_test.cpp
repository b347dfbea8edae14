#include "engine/url.hpp"

#include "engine/log.hpp"

#include <doctest/doctest.h>

#include <sstream>
#include <string>

using namespace ferry::engine;

TEST_CASE("url: base URLs are checked for scheme, host and a port in range") {
  CHECK_FALSE(check_base_url("http://127.0.0.1:8000"));
  CHECK_FALSE(check_base_url("https://api.braintrust.dev/"));
  CHECK_FALSE(check_base_url("http://[::1]:65535/api"));
  CHECK_FALSE(check_base_url("http://user:pa:ss@host:1"));
  CHECK(check_base_url("http://127.0.0.1:99999") == "port 99999 is out of range 1-65535");
  CHECK(check_base_url("http://127.0.0.1:0") == "port 0 is out of range 1-65535");
  CHECK(check_base_url("http://127.0.0.1:123456789012").has_value());
  CHECK(check_base_url("http://127.0.0.1:80x").has_value());
  CHECK(check_base_url("ftp://host") == "scheme 'ftp' is not http or https");
  CHECK(check_base_url("api.braintrust.dev").has_value());
  CHECK(check_base_url("http://").has_value());
  CHECK(check_base_url("http://[::1").has_value());
  CHECK(check_base_url("").has_value());
}

TEST_CASE("url: identity ignores spelling, keeps real differences") {
  const std::string a = url_identity("http://127.0.0.1:8000");
  for (const char* same : {"http://127.0.0.1:8000/", "http://localhost:8000", "HTTP://LocalHost:8000//",
                           "http://[::1]:8000", "http://bob:secret@127.0.0.1:8000/", " http://127.0.0.1:8000 "})
    CHECK_MESSAGE(url_identity(same) == a, same);
  CHECK(url_identity("https://api.braintrust.dev:443/") == url_identity("https://API.braintrust.dev"));
  CHECK(url_identity("http://h:80") == url_identity("http://h"));
  for (const char* other : {"http://127.0.0.1:8001", "https://127.0.0.1:8000", "http://127.0.0.2:8000",
                            "http://127.0.0.1:8000/api", "http://other:8000"})
    CHECK_MESSAGE(url_identity(other) != a, other);
  CHECK(url_identity("http://bob:secret@h/").find("secret") == std::string::npos);
}

TEST_CASE("url: passwords in URLs are redacted wherever they appear in text") {
  CHECK(redact_url_passwords("GET http://bob:hunter2@proxy:3128/x failed") ==
        "GET http://bob:[REDACTED]@proxy:3128/x failed");
  CHECK(redact_url_passwords("\"http://a:b@h\" and https://c:d@e:1/") ==
        "\"http://a:[REDACTED]@h\" and https://c:[REDACTED]@e:1/");
  CHECK(redact_url_passwords("http://user@h/ http://h/a:b@c") == "http://user@h/ http://h/a:b@c");
  CHECK(redact_url_passwords("no url here") == "no url here");
  // Through the log redactor (every log line, error message and printed line passes there).
  CHECK(redact("source_url=http://u:pw-zz@127.0.0.1:1") == "source_url=http://u:[REDACTED]@127.0.0.1:1");
  register_url_password("http://u:registered-pw-77@h");
  CHECK(redact("the password registered-pw-77 alone") == "the password [REDACTED] alone");
}

TEST_CASE("url: signatures of signed URLs are redacted") {
  CHECK(redact("GET http://h/_signed/attachment/ab/cd?sig=0123abcd") == "GET http://h/_signed/attachment/ab/cd?sig=[REDACTED]");
  CHECK(redact("{\"signedUrl\":\"https://s3/b/k?X-Amz-Credential=AK%2F1&X-Amz-Signature=ff00&x=1\"}") ==
        "{\"signedUrl\":\"https://s3/b/k?X-Amz-Credential=[REDACTED]&X-Amz-Signature=[REDACTED]&x=1\"}");
  CHECK(redact("design=1&signature_style=x") == "design=1&signature_style=x");
}

TEST_CASE("redacting_streambuf: every printed line is redacted, partial lines at a flush") {
  register_secret("sk-printed-secret");
  std::ostringstream target;
  {
    redacting_streambuf buf(target.rdbuf());
    std::ostream out(&buf);
    out << "key sk-printed-" << "secret here\n" << "url http://a:b@h";
    CHECK(target.str() == "key [REDACTED] here\n");  // the partial line waits for its end or a flush
    out.flush();
    CHECK(target.str() == "key [REDACTED] here\nurl http://a:[REDACTED]@h");
    out << "\rprogress\n";
  }
  CHECK(target.str() == "key [REDACTED] here\nurl http://a:[REDACTED]@h\rprogress\n");
}
