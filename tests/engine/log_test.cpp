#include "engine/log.hpp"

#include "engine/json_scan.hpp"

#include <doctest/doctest.h>

#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>
#include <spdlog/sinks/ostream_sink.h>

#include <sstream>
#include <stdexcept>
#include <string>

using namespace ferry::engine;
namespace json = boost::json;

namespace {
json::value parse_line(const std::string& line) {
  REQUIRE(!line.empty());
  CHECK(line.back() == '\n');
  boost::system::error_code ec;
  auto v = json::parse(line, ec);
  INFO("line: " << line);
  REQUIRE_FALSE(ec);
  return v;
}
const auto ts = std::chrono::system_clock::time_point(std::chrono::seconds(1445412480));
}  // namespace

TEST_CASE("log: json_escape produces valid JSON for quotes, newlines and control characters") {
  const std::string nasty = std::string("say \"hi\"\\ \n\r\t\b\f end ") + '\x01' + '\x1f' + " caf\xc3\xa9 \xe2\x82\xac";
  auto v = json::parse("\"" + json_escape(nasty) + "\"");
  CHECK(v.as_string() == nasty);
  CHECK(json_escape("\x01") == "\\u0001");
}

TEST_CASE("json_special_byte: finds every special byte at every offset and alignment, like a byte loop") {
  const auto naive = [](std::string_view s, std::size_t from, bool non_ascii) {
    for (std::size_t i = from; i < s.size(); ++i) {
      const auto c = static_cast<unsigned char>(s[i]);
      if (c < 0x20 || c == '"' || c == '\\' || (non_ascii && c >= 0x80)) return i;
    }
    return s.size();
  };
  // Each special byte alone in clean text, at every position of a 40-byte string, scanned from every
  // start: catches a word-at-a-time test that misses a byte or stops at a clean one.
  for (const int special : {0x00, 0x01, 0x1f, int('"'), int('\\'), 0x80, 0xc3, 0xff}) {
    for (std::size_t pos = 0; pos < 40; ++pos) {
      std::string s(40, 'a');
      s[pos] = static_cast<char>(special);
      for (std::size_t from = 0; from <= s.size(); ++from)
        for (const bool non_ascii : {false, true}) {
          INFO("special " << int(special) << " at " << pos << " from " << from);
          CHECK(json_special_byte(s, from, non_ascii) == naive(s, from, non_ascii));
        }
    }
  }
  // Bytes next to the edges of the tests (0x1f/0x20, '!'/'#' around '"', '['/']' around '\\', 0x7f).
  const std::string edges = " !#[]~\x7f" + std::string(20, 'z');
  CHECK(json_special_byte(edges, 0, true) == edges.size());
  CHECK(json_special_byte("", 0, true) == 0);
}

TEST_CASE("valid_utf8: accepts well-formed text, refuses stray, truncated, overlong and surrogate bytes") {
  CHECK(valid_utf8(""));
  CHECK(valid_utf8("plain \"ascii\"\n"));
  CHECK(valid_utf8("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"));
  for (const std::string& bad : {std::string("a\xff"), std::string("b\xc3"), std::string("\xe2\x82"),
                                std::string("\xed\xa0\x80"), std::string("\xc0\xaf"), std::string("\xf4\x90\x80\x80")})
    CHECK_FALSE(valid_utf8(bad));
}

TEST_CASE("log: invalid UTF-8 is replaced so the JSON line stays valid") {
  const std::string bad = std::string("a\xff") + "b\xc3" + "\xe2\x82" + "\xed\xa0\x80";  // stray, truncated, surrogate
  auto v = json::parse("\"" + json_escape(bad) + "\"");
  const std::string out(v.as_string());
  CHECK(out.substr(0, 1) == "a");
  CHECK(out.find("b") != std::string::npos);
  CHECK(out.find("\xef\xbf\xbd") != std::string::npos);  // U+FFFD
}

TEST_CASE("log: a JSON record is one object with ts, level, logger and msg") {
  const std::string line = format_record(log_format::json, "http", spdlog::level::warn, ts,
                                         "retry \"GET /v1\"\nstatus=503\tbody=\x02");
  auto v = parse_line(line);
  const auto& o = v.as_object();
  CHECK(o.at("ts").as_string() == "2015-10-21T07:28:00.000Z");
  CHECK(o.at("level").as_string() == "warn");
  CHECK(o.at("logger").as_string() == "http");
  CHECK(o.at("msg").as_string() == "retry \"GET /v1\"\nstatus=503\tbody=\x02");
  CHECK(line.find('\n') == line.size() - 1);  // one line
}

TEST_CASE("log: text record names the component") {
  const std::string line = format_record(log_format::text, "store", spdlog::level::info, ts, "opened");
  CHECK(line == "2015-10-21T07:28:00.000Z info [store] opened\n");
}

TEST_CASE("log: registered secrets and Bearer tokens are redacted") {
  register_secret("sk-live-REGISTERED-0042");
  register_secret("abc");  // too short: ignored, or every "abc" would vanish
  CHECK(redact("key=sk-live-REGISTERED-0042 x") == "key=[REDACTED] x");
  CHECK(redact("abc") == "abc");
  CHECK(redact("Authorization: Bearer tok.en-123") == "Authorization: Bearer [REDACTED]");
  CHECK(redact("Authorization: Bearer tok.en-123").find("tok.en-123") == std::string::npos);
  CHECK(redact("{\"authorization\":\"bearer xyz789\",\"a\":1}").find("xyz789") == std::string::npos);
  CHECK(redact("{\"authorization\":\"bearer xyz789\",\"a\":1}").find("\"a\":1") != std::string::npos);
  const std::string line =
      format_record(log_format::json, "http", spdlog::level::info, ts, "sending sk-live-REGISTERED-0042");
  CHECK(line.find("sk-live-REGISTERED-0042") == std::string::npos);
  CHECK(parse_line(line).as_object().at("msg").as_string() == "sending [REDACTED]");
}

TEST_CASE("log: component loggers write redacted JSON through the installed sink") {
  std::ostringstream out;
  auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(out);
  init_logging({"debug", log_format::json}, sink);
  register_secret("ai-secret-value-7777");
  auto http = logger("http");
  CHECK(http == logger("http"));
  CHECK(http->name() == "http");
  http->info("request key={} auth=Bearer {}", "ai-secret-value-7777", "tkn999");
  logger("store")->debug("quote \" and newline \n");
  http->flush();
  logger("store")->flush();
  std::istringstream lines(out.str());
  std::string l1, l2;
  std::getline(lines, l1);
  std::getline(lines, l2);
  auto v1 = parse_line(l1 + "\n");
  auto v2 = parse_line(l2 + "\n");
  CHECK(v1.as_object().at("logger").as_string() == "http");
  CHECK(out.str().find("ai-secret-value-7777") == std::string::npos);
  CHECK(out.str().find("tkn999") == std::string::npos);
  CHECK(v2.as_object().at("logger").as_string() == "store");
  CHECK(v2.as_object().at("msg").as_string() == "quote \" and newline \n");
  init_logging({"info", log_format::text});  // back to stderr for the other tests
}

TEST_CASE("log: bad level or format names are rejected with the value named") {
  CHECK_THROWS_WITH_AS(init_logging({"loud", log_format::text}), doctest::Contains("'loud'"), std::invalid_argument);
  CHECK(parse_log_format("JSON") == log_format::json);
  CHECK_THROWS_WITH_AS(parse_log_format("xml"), doctest::Contains("'xml'"), std::invalid_argument);
}

TEST_CASE("log: secret field names") {
  for (const char* k : {"Authorization", "api_key", "BRAINTRUST_API_KEY", "x-api-key", "client_secret", "Cookie"})
    CHECK_MESSAGE(is_secret_field_name(k), k);
  for (const char* k : {"name", "project_id", "tokens_used", "keys"}) CHECK_MESSAGE(!is_secret_field_name(k), k);
}

TEST_CASE("log: shorten_middle keeps the start and the end of a long line") {
  CHECK(shorten_middle("short", 200) == "short");
  const std::string text = "stream logs project=p1: " + std::string(400, 'x') + ": 400 Bad Request: field 'input'";
  const auto s = shorten_middle(text, 200);
  CHECK(s.size() <= 200);
  CHECK(s.starts_with("stream logs project=p1: "));
  CHECK(s.ends_with("400 Bad Request: field 'input'"));
  CHECK(s.find(" ... ") != std::string::npos);
  CHECK(shorten_middle(text, 3) == "str");
  const std::string utf8 = std::string(150, 'a') + "\xC3\xA9\xC3\xA9\xC3\xA9" + std::string(150, 'b');
  CHECK(valid_utf8(shorten_middle(utf8, 101)));
}
