#include "engine/json_parse.hpp"

#include <doctest/doctest.h>

#include <boost/json/monotonic_resource.hpp>
#include <boost/json/serialize.hpp>

#include <charconv>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>

using namespace ferry::engine;
namespace json = boost::json;

namespace {
std::string shortest(double d) {
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof buf, d);
  return std::string(buf, r.ptr);
}
}  // namespace

TEST_CASE("parse_json reads doubles exactly where Boost.JSON 1.81 is one ulp off") {
  // Each of these came back one ulp off from boost::json::parse on Debian 12's Boost 1.81.
  for (const char* text : {"0.09090909090909091", "0.47058823529411764", "0.38095238095238093", "9094275.714285715",
                           "1.3927926388013963e-143", "2.1829489720880483e+41"}) {
    double want = 0;
    std::from_chars(text, text + std::strlen(text), want);
    const auto v = parse_json(text);
    REQUIRE(v.is_double());
    CHECK_MESSAGE(v.as_double() == want, text);
    const auto nested = parse_json(std::string("{\"a\":[1,{\"s\":") + text + "}],\"b\":\"x\"}");
    CHECK(nested.at("a").at(1).at("s").as_double() == want);
  }
}

TEST_CASE("parse_json round-trips random doubles through their shortest text") {
  std::mt19937_64 g(7);
  int off = 0;
  for (int i = 0; i < 200000; ++i) {
    double d;
    if (i % 2) {
      d = static_cast<double>(g() % 1000000) / static_cast<double>(1 + g() % 997);
    } else {
      std::uint64_t bits = g();
      std::memcpy(&d, &bits, sizeof d);
      if (!std::isfinite(d)) continue;
    }
    const auto v = parse_json(shortest(d));
    const double got = v.is_double() ? v.as_double() : v.to_number<double>();
    if (got != d) ++off;
  }
  CHECK(off == 0);
}

TEST_CASE("parse_json keeps Boost.JSON's grammar, integers, errors and storage") {
  const auto v = parse_json(R"({"i":-3,"u":18446744073709551615,"big":123456789012345678901234,"t":true,"n":null,"s":"\u00e9"})");
  CHECK(v.at("i").as_int64() == -3);
  CHECK(v.at("u").as_uint64() == 18446744073709551615ull);
  CHECK(v.at("big").as_double() == 123456789012345678901234.0);
  CHECK(v.at("t").as_bool());
  CHECK(v.at("n").is_null());
  CHECK(v.at("s").as_string() == "\xc3\xa9");

  boost::system::error_code ec;
  CHECK(parse_json("{\"a\":1} x", ec).is_null());
  CHECK(ec == json::error::extra_data);
  CHECK(parse_json("[1,", ec).is_null());
  CHECK(ec);
  CHECK_THROWS_AS(parse_json("nope"), boost::system::system_error);

  json::monotonic_resource mr;
  const auto w = parse_json("[0.1,2]", json::storage_ptr(&mr));
  CHECK(w.storage().get() == &mr);
  CHECK(json::serialize(w) == json::serialize(parse_json("[0.1,2]")));
}
