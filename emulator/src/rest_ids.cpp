// Ids, timestamps and error bodies of the REST side (see rest.hpp).
#include "emulator/rest.hpp"

#include <boost/json/serialize.hpp>
#include <boost/json/string.hpp>

#include <boost/json/value.hpp>

#include <charconv>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <cmath>
#include <random>

namespace ferry::emulator {

namespace {

std::uint64_t splitmix64(std::uint64_t& x) {
  std::uint64_t z = (x += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

std::uint64_t fnv1a(std::string_view s, std::uint64_t h = 0xcbf29ce484222325ull) {
  for (unsigned char c : s) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  return h;
}

std::string format_uuid(std::uint64_t hi, std::uint64_t lo) {
  // Version 4, variant 10xx: the shape real Braintrust ids have.
  hi = (hi & 0xffffffffffff0fffull) | 0x0000000000004000ull;
  lo = (lo & 0x3fffffffffffffffull) | 0x8000000000000000ull;
  char buf[37];
  std::snprintf(buf, sizeof buf, "%08x-%04x-%04x-%04x-%012llx", static_cast<unsigned>(hi >> 32),
                static_cast<unsigned>((hi >> 16) & 0xffff), static_cast<unsigned>(hi & 0xffff),
                static_cast<unsigned>(lo >> 48), static_cast<unsigned long long>(lo & 0xffffffffffffull));
  return buf;
}

std::string format_time_ms(std::int64_t ms_since_epoch) {
  std::time_t secs = static_cast<std::time_t>(ms_since_epoch / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(ms_since_epoch % 1000));
  return buf;
}

}  // namespace

std::string derived_uuid(std::uint64_t seed, std::string_view scope, std::uint64_t n) {
  std::uint64_t x = seed ^ fnv1a(scope) ^ (n * 0xd1b54a32d192ed03ull);
  const std::uint64_t hi = splitmix64(x);
  const std::uint64_t lo = splitmix64(x);
  return format_uuid(hi, lo);
}

bool is_uuid(std::string_view s) {
  if (s.size() != 36) return false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (c != '-') return false;
    } else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))) {
      return false;
    }
  }
  return true;
}

id_source::id_source(std::optional<std::uint64_t> seed) : seed_(seed) {
  std::random_device rd;
  random_state_ = (static_cast<std::uint64_t>(rd()) << 32) ^ rd();
}

std::string id_source::uuid(std::string_view scope, std::uint64_t n) {
  if (seed_) return derived_uuid(*seed_, scope, n);
  const std::uint64_t hi = splitmix64(random_state_);
  const std::uint64_t lo = splitmix64(random_state_);
  return format_uuid(hi, lo);
}

std::string id_source::timestamp(std::uint64_t n) const {
  if (seed_) {
    // A logical clock: 2024-01-01T00:00:00Z plus one second per created object.
    constexpr std::int64_t base_ms = 1704067200000;
    return format_time_ms(base_ms + static_cast<std::int64_t>(n) * 1000);
  }
  const auto now = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::system_clock::now().time_since_epoch());
  return format_time_ms(now.count());
}

std::string json_error_body(std::string_view message) {
  std::string out = "{\"error\":";
  out += boost::json::serialize(boost::json::string(message));
  out += '}';
  return out;
}

namespace {

void write_json(const boost::json::value& v, std::string& out) {
  switch (v.kind()) {
    case boost::json::kind::double_: {
      char buf[32];
      auto r = std::to_chars(buf, buf + sizeof buf, v.get_double());  // shortest round-trip
      std::string_view text(buf, static_cast<std::size_t>(r.ptr - buf));
      if (!std::isfinite(v.get_double())) {
        out += "null";  // JSON has no inf/nan
        return;
      }
      out += text;
      if (text.find_first_of(".e") == std::string_view::npos) out += ".0";  // stays a double on re-read
      return;
    }
    case boost::json::kind::object: {
      out += '{';
      bool first = true;
      for (const auto& kv : v.get_object()) {
        if (!first) out += ',';
        first = false;
        out += boost::json::serialize(boost::json::string_view(kv.key()));
        out += ':';
        write_json(kv.value(), out);
      }
      out += '}';
      return;
    }
    case boost::json::kind::array: {
      out += '[';
      bool first = true;
      for (const auto& x : v.get_array()) {
        if (!first) out += ',';
        first = false;
        write_json(x, out);
      }
      out += ']';
      return;
    }
    default:
      out += boost::json::serialize(v);
  }
}

}  // namespace

std::string to_json_text(const boost::json::value& v) {
  std::string out;
  write_json(v, out);
  return out;
}

}  // namespace ferry::emulator
