#include "pipelines/streams/digest.hpp"

#include <doctest/doctest.h>

#include <string>

using namespace ferry::pipelines::streams;

TEST_CASE("digest: order independent, content sensitive") {
  digest256 a, b;
  a.add(hash_row("r1", "{\"x\":1}"));
  a.add(hash_row("r2", "{\"x\":2}"));
  b.add(hash_row("r2", "{\"x\":2}"));
  b.add(hash_row("r1", "{\"x\":1}"));
  CHECK(a == b);
  CHECK_FALSE(a.empty());
  digest256 c;
  c.add(hash_row("r1", "{\"x\":1}"));
  c.add(hash_row("r2", "{\"x\":3}"));
  CHECK_FALSE(a == c);
  SUBCASE("id and content boundary matters") { CHECK_FALSE(hash_row("ab", "c") == hash_row("a", "bc")); }
  SUBCASE("duplicates count twice") {
    digest256 d = a;
    d.add(hash_row("r1", "{\"x\":1}"));
    CHECK_FALSE(d == a);
  }
}

TEST_CASE("digest: hex round trip and sum of digests equals digest of union") {
  digest256 a, b, all;
  for (int i = 0; i < 100; ++i) {
    auto h = hash_row("id" + std::to_string(i), std::string(i * 7, 'x'));
    (i % 2 ? a : b).add(h);
    all.add(h);
  }
  digest256 s = a;
  s.add(b);
  CHECK(s == all);
  auto back = digest256::from_hex(all.hex());
  REQUIRE(back);
  CHECK(*back == all);
  CHECK_FALSE(digest256::from_hex("zz"));
}

TEST_CASE("digest: 256-bit addition carries across limbs") {
  digest256 d;
  d.w = {~0ULL, ~0ULL, 0, 0};
  digest256 one;
  one.w = {1, 0, 0, 0};
  d.add(one);
  CHECK(d.w == std::array<std::uint64_t, 4>{0, 0, 1, 0});
}

TEST_CASE("digest: hashes of long inputs differ in any byte") {
  std::string s(5000, 'a');
  auto h1 = hash_bytes(s);
  s[4321] = 'b';
  CHECK_FALSE(hash_bytes(s) == h1);
  s[4321] = 'a';
  CHECK(hash_bytes(s) == h1);
}
