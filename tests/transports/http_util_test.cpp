#include "transports/http_util.hpp"

#include <doctest/doctest.h>

#include <stdexcept>

using namespace ferry::transports;
using ferry::engine::io_outcome;

TEST_CASE("http_util: status classification table") {
  struct row {
    unsigned status;
    bool retry_after;
    io_outcome expected;
  };
  const row rows[] = {
      {200, false, io_outcome::ok},        {201, false, io_outcome::ok},         {204, false, io_outcome::ok},
      {404, false, io_outcome::not_found}, {429, false, io_outcome::throttled},  {429, true, io_outcome::throttled},
      {503, true, io_outcome::throttled},  {503, false, io_outcome::transient},  {408, false, io_outcome::timed_out},
      {409, false, io_outcome::transient}, {425, false, io_outcome::transient},  {500, false, io_outcome::transient},
      {502, false, io_outcome::transient}, {504, false, io_outcome::transient},  {599, false, io_outcome::transient},
      {400, false, io_outcome::fatal},     {401, false, io_outcome::fatal},      {403, false, io_outcome::fatal},
      {413, false, io_outcome::fatal},     {422, false, io_outcome::fatal},      {304, false, io_outcome::fatal},
  };
  for (const auto& r : rows) {
    CAPTURE(r.status);
    CAPTURE(r.retry_after);
    CHECK(classify_status(r.status, r.retry_after) == r.expected);
  }
}

TEST_CASE("http_util: server_message prefers JSON error fields, else folded text") {
  CHECK(server_message(R"({"error":"Invalid API key"})") == "Invalid API key");
  CHECK(server_message(R"({"message":"rate limited","code":1})") == "rate limited");
  CHECK(server_message(R"({"error":{"message":"nested"}})") == "nested");
  CHECK(server_message(R"({"error":{"code":7}})") == R"({"code":7})");
  CHECK(server_message("line one\nline two\n") == "line one line two");
  CHECK(server_message(std::string(1000, 'a')).size() == 300);
  CHECK(server_message("{not json") == "{not json");
}

TEST_CASE("http_util: NO_PROXY matching follows curl") {
  CHECK(no_proxy_matches("*", "anything.example", 443));
  CHECK(no_proxy_matches("example.com", "example.com", 443));
  CHECK(no_proxy_matches("example.com", "api.example.com", 443));
  CHECK(no_proxy_matches(".example.com", "api.example.com", 443));
  CHECK(no_proxy_matches(".example.com", "example.com", 443));
  CHECK(no_proxy_matches("EXAMPLE.com", "Api.Example.COM", 443));
  CHECK_FALSE(no_proxy_matches("example.com", "badexample.com", 443));
  CHECK_FALSE(no_proxy_matches("api.example.com", "example.com", 443));
  CHECK(no_proxy_matches("foo.test, example.com:8443", "example.com", 8443));
  CHECK_FALSE(no_proxy_matches("example.com:8443", "example.com", 443));
  CHECK(no_proxy_matches("10.0.0.0/8", "10.1.2.3", 80));
  CHECK_FALSE(no_proxy_matches("10.0.0.0/8", "11.1.2.3", 80));
  CHECK(no_proxy_matches("127.0.0.1", "127.0.0.1", 80));
  CHECK(no_proxy_matches("::1", "::1", 80));
  CHECK(no_proxy_matches("[::1]:8080", "[::1]", 8080));
  CHECK(no_proxy_matches("fd00::/8", "fd12::5", 80));
  // loopback is not exempt unless listed (curl's behaviour)
  CHECK_FALSE(no_proxy_matches("example.com", "127.0.0.1", 80));
  CHECK_FALSE(no_proxy_matches("", "localhost", 80));
}

TEST_CASE("http_util: proxy selection and URL parsing") {
  proxy_config cfg;
  cfg.https_proxy = "http://user:pa55@proxy.local:3128";
  cfg.http_proxy = "proxy.local:8080";
  cfg.no_proxy = "internal.corp,127.0.0.1";
  auto p = select_proxy(cfg, "https", "api.braintrust.dev", 443);
  REQUIRE(p);
  CHECK(p->host == "proxy.local");
  CHECK(p->port == 3128);
  CHECK(p->authorization == "Basic " + base64_encode("user:pa55"));
  auto h = select_proxy(cfg, "http", "api.braintrust.dev", 80);
  REQUIRE(h);
  CHECK(h->port == 8080);
  CHECK(h->authorization.empty());
  CHECK_FALSE(select_proxy(cfg, "https", "x.internal.corp", 443));
  CHECK_FALSE(select_proxy(cfg, "http", "127.0.0.1", 8000));

  std::string err;
  CHECK_FALSE(parse_proxy_url("https://proxy:443", err));
  CHECK(err.find("only http://") != std::string::npos);
  cfg.https_proxy = "socks5://p:1";
  CHECK_THROWS_AS(select_proxy(cfg, "https", "a.b", 443), std::invalid_argument);
}

TEST_CASE("http_util: base64") {
  CHECK(base64_encode("") == "");
  CHECK(base64_encode("f") == "Zg==");
  CHECK(base64_encode("fo") == "Zm8=");
  CHECK(base64_encode("foo") == "Zm9v");
  CHECK(base64_encode("foobar") == "Zm9vYmFy");
  std::string all;
  for (int i = 0; i < 256; ++i) all += static_cast<char>(i);
  for (std::size_t n = 0; n <= 5; ++n) CHECK(base64_decode(base64_encode(all.substr(0, n))) == all.substr(0, n));
  CHECK(base64_decode(base64_encode(all)) == all);
  CHECK_THROWS_AS(base64_decode("Zm9v*mFy"), std::runtime_error);
}

TEST_CASE("http_util: gzip policy parsing and the auto rule") {
  CHECK(parse_gzip_policy("auto") == gzip_policy::automatic);
  CHECK(parse_gzip_policy(" ON ") == gzip_policy::on);
  CHECK(parse_gzip_policy("off") == gzip_policy::off);
  CHECK(parse_gzip_policy("false") == gzip_policy::off);
  CHECK(parse_gzip_policy("1") == gzip_policy::on);
  CHECK_FALSE(parse_gzip_policy("gzip").has_value());
  CHECK_FALSE(parse_gzip_policy("").has_value());
  CHECK(to_string(gzip_policy::automatic) == "auto");

  for (const char* h : {"localhost", "LOCALHOST.", "api.localhost", "127.0.0.1", "127.8.9.10", "10.1.2.3",
                        "172.16.0.1", "172.31.255.255", "192.168.1.20", "169.254.169.254", "0.0.0.0", "::1", "[::1]",
                        "::", "fe80::1", "fc00::1", "fd12:3456::1", "::ffff:192.168.0.1", "::ffff:127.0.0.1"}) {
    INFO(h);
    CHECK(is_local_host(h));
  }
  for (const char* h : {"api.braintrust.dev", "8.8.8.8", "172.15.0.1", "172.32.0.1", "192.169.0.1", "11.0.0.1",
                        "2001:db8::1", "fec0::1", "::ffff:8.8.8.8", "localhost.example.com", "notlocalhost", ""}) {
    INFO(h);
    CHECK_FALSE(is_local_host(h));
  }

  // auto: https always gzip; http gzip only towards a non-local host
  CHECK(accept_gzip_for(gzip_policy::automatic, "https://api.braintrust.dev"));
  CHECK(accept_gzip_for(gzip_policy::automatic, "https://127.0.0.1:8443"));
  CHECK(accept_gzip_for(gzip_policy::automatic, "http://api.example.com:8000"));
  CHECK(accept_gzip_for(gzip_policy::automatic, "http://8.8.8.8/api"));
  CHECK_FALSE(accept_gzip_for(gzip_policy::automatic, "http://127.0.0.1:8000"));
  CHECK_FALSE(accept_gzip_for(gzip_policy::automatic, "HTTP://LocalHost:8000/prefix"));
  CHECK_FALSE(accept_gzip_for(gzip_policy::automatic, "http://[::1]:8000"));
  CHECK_FALSE(accept_gzip_for(gzip_policy::automatic, "http://192.168.0.5"));
  CHECK_FALSE(accept_gzip_for(gzip_policy::automatic, "http://[fd00::5]:80"));
  CHECK(accept_gzip_for(gzip_policy::automatic, "not a url"));
  // on / off ignore the URL
  CHECK(accept_gzip_for(gzip_policy::on, "http://127.0.0.1:8000"));
  CHECK_FALSE(accept_gzip_for(gzip_policy::off, "https://api.braintrust.dev"));
}
