#include "pipelines/streams/digest.hpp"

#include <cstring>

namespace ferry::pipelines::streams {

namespace {

constexpr std::uint64_t p1 = 0x9E3779B185EBCA87ULL;
constexpr std::uint64_t p2 = 0xC2B2AE3D27D4EB4FULL;
constexpr std::uint64_t p3 = 0x165667B19E3779F9ULL;
constexpr std::uint64_t p4 = 0x85EBCA77C2B2AE63ULL;

inline std::uint64_t rotl(std::uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }
inline std::uint64_t load64(const unsigned char* p) {
  std::uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}
inline std::uint64_t fmix(std::uint64_t k) {
  k ^= k >> 33;
  k *= 0xff51afd7ed558ccdULL;
  k ^= k >> 33;
  k *= 0xc4ceb9fe1a85ec53ULL;
  k ^= k >> 33;
  return k;
}

struct hasher {
  std::uint64_t v[4] = {p1 + p2, p2, 0, 0 - p1};
  std::uint64_t total = 0;
  unsigned char tail[32];
  std::size_t tail_len = 0;

  inline void round32(const unsigned char* p) {
    v[0] = rotl(v[0] + load64(p) * p2, 31) * p1;
    v[1] = rotl(v[1] + load64(p + 8) * p2, 31) * p1;
    v[2] = rotl(v[2] + load64(p + 16) * p2, 31) * p1;
    v[3] = rotl(v[3] + load64(p + 24) * p2, 31) * p1;
  }
  void update(const unsigned char* p, std::size_t n) {
    total += n;
    if (tail_len) {
      std::size_t take = std::min<std::size_t>(32 - tail_len, n);
      std::memcpy(tail + tail_len, p, take);
      tail_len += take;
      p += take;
      n -= take;
      if (tail_len < 32) return;
      round32(tail);
      tail_len = 0;
    }
    while (n >= 32) {
      round32(p);
      p += 32;
      n -= 32;
    }
    std::memcpy(tail, p, n);
    tail_len = n;
  }
  row_hash finish() {
    std::uint64_t a = rotl(v[0], 1) + rotl(v[1], 7) + rotl(v[2], 12) + rotl(v[3], 18) + total * p3;
    std::uint64_t b = (v[0] ^ rotl(v[2], 29)) + (v[1] ^ rotl(v[3], 37)) + total * p4;
    std::size_t i = 0;
    for (; i + 8 <= tail_len; i += 8) {
      std::uint64_t k = load64(tail + i);
      a = rotl(a ^ (k * p2), 27) * p1 + p4;
      b = rotl(b + (k * p3), 31) * p2 + p1;
    }
    for (; i < tail_len; ++i) {
      a = rotl(a ^ (tail[i] * p4), 11) * p1;
      b = rotl(b + (tail[i] * p1), 17) * p3;
    }
    return {fmix(a ^ rotl(b, 23)), fmix(b + a * p4)};
  }
};

}  // namespace

row_hash hash_row(std::string_view id, std::string_view content) {
  hasher h;
  h.update(reinterpret_cast<const unsigned char*>(id.data()), id.size());
  const unsigned char sep = 0xFF;  // never inside UTF-8 text: (id, content) splits are unambiguous
  h.update(&sep, 1);
  h.update(reinterpret_cast<const unsigned char*>(content.data()), content.size());
  return h.finish();
}

row_hash hash_bytes(std::string_view bytes) {
  hasher h;
  h.update(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size());
  return h.finish();
}

void digest256::add(const row_hash& h) {
  add(stores::digest256{{h.a, h.b, fmix(h.a ^ h.b ^ p3), fmix(h.a + h.b + p4)}});
}

}  // namespace ferry::pipelines::streams
