#include "transports/codec.hpp"

#include <doctest/doctest.h>

#include <zlib.h>

#include <string>

using namespace ferry::transports;

namespace {
std::string sample(std::size_t n) {
  std::string s;
  s.reserve(n);
  for (std::size_t i = 0; s.size() < n; ++i) s += "{\"id\":\"row-" + std::to_string(i) + "\",\"input\":\"hello\"},";
  s.resize(n);
  return s;
}
std::string zlib_deflate(const std::string& in, int window_bits) {
  z_stream zs{};
  deflateInit2(&zs, 6, Z_DEFLATED, window_bits, 8, Z_DEFAULT_STRATEGY);
  std::string out(deflateBound(&zs, in.size()) + 16, '\0');
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  zs.avail_in = static_cast<uInt>(in.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  deflate(&zs, Z_FINISH);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  return out;
}
}  // namespace

TEST_CASE("codec: gzip round trip, magic bytes and concatenated members") {
  const auto body = sample(300'000);
  const auto gz = gzip_compress(body);
  CHECK(has_gzip_magic(gz));
  CHECK_FALSE(has_gzip_magic(body));
  CHECK(gz.size() < body.size() / 4);
  std::string err;
  auto out = decompress(gz, true, 1u << 30, err);
  REQUIRE(out);
  CHECK(*out == body);

  auto two = gzip_compress("abc") + gzip_compress("def");
  out = decompress(two, true, 1024, err);
  REQUIRE(out);
  CHECK(*out == "abcdef");
}

TEST_CASE("codec: deflate accepts zlib-wrapped and raw streams") {
  const auto body = sample(10'000);
  std::string err;
  auto a = decompress(zlib_deflate(body, 15), false, 1u << 20, err);
  REQUIRE(a);
  CHECK(*a == body);
  auto b = decompress(zlib_deflate(body, -15), false, 1u << 20, err);
  REQUIRE(b);
  CHECK(*b == body);
}

TEST_CASE("codec: corrupt, truncated and oversized inputs are errors") {
  const auto body = sample(100'000);
  const auto gz = gzip_compress(body);
  std::string err;
  CHECK_FALSE(decompress(gz.substr(0, gz.size() / 2), true, 1u << 20, err));
  CHECK(err.find("truncated") != std::string::npos);
  err.clear();
  std::string bad = gz;
  bad[20] = static_cast<char>(bad[20] ^ 0x55);
  bad[21] = static_cast<char>(bad[21] ^ 0x55);
  CHECK_FALSE(decompress(bad, true, 1u << 20, err));
  CHECK_FALSE(err.empty());
  err.clear();
  CHECK_FALSE(decompress(gz, true, 1000, err));
  CHECK(err.find("limit") != std::string::npos);
}
