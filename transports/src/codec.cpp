#include "transports/codec.hpp"

#include <zlib.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>

namespace ferry::transports {

bool has_gzip_magic(std::string_view body) {
  return body.size() >= 2 && static_cast<unsigned char>(body[0]) == 0x1f &&
         static_cast<unsigned char>(body[1]) == 0x8b;
}

std::string gzip_compress(std::string_view in, int level) {
  z_stream zs;
  std::memset(&zs, 0, sizeof(zs));
  // windowBits 15 + 16 = gzip wrapper; memLevel 8 is zlib's default.
  if (deflateInit2(&zs, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
    throw std::runtime_error("gzip_compress: deflateInit2 failed");
  std::string out;
  out.resize(deflateBound(&zs, static_cast<uLong>(in.size())) + 32);
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  zs.avail_in = static_cast<uInt>(in.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  int rc = deflate(&zs, Z_FINISH);
  std::size_t produced = zs.total_out;
  deflateEnd(&zs);
  if (rc != Z_STREAM_END) throw std::runtime_error("gzip_compress: deflate did not finish");
  out.resize(produced);
  return out;
}

namespace {

// One inflate pass with the given windowBits; returns false on a data error.
bool inflate_with(std::string_view in, int window_bits, std::size_t limit, std::string& out, std::string& error) {
  z_stream zs;
  std::memset(&zs, 0, sizeof(zs));
  if (inflateInit2(&zs, window_bits) != Z_OK) {
    error = "inflateInit2 failed";
    return false;
  }
  out.clear();
  out.resize(std::min<std::size_t>(limit, std::max<std::size_t>(in.size() * 4, 4096)));
  std::size_t pos = 0;
  const auto* next = reinterpret_cast<const Bytef*>(in.data());
  std::size_t remaining = in.size();
  bool ok = true;
  for (;;) {
    if (pos == out.size()) {
      if (out.size() >= limit) {
        error = "decoded body exceeds the limit of " + std::to_string(limit) + " bytes";
        ok = false;
        break;
      }
      out.resize(std::min<std::size_t>(limit, out.size() * 2));
    }
    zs.next_in = const_cast<Bytef*>(next);
    zs.avail_in = static_cast<uInt>(std::min<std::size_t>(remaining, 1u << 30));
    zs.next_out = reinterpret_cast<Bytef*>(out.data() + pos);
    zs.avail_out = static_cast<uInt>(std::min<std::size_t>(out.size() - pos, 1u << 30));
    const uInt in_before = zs.avail_in;
    const uInt out_before = zs.avail_out;
    int rc = inflate(&zs, Z_NO_FLUSH);
    next += in_before - zs.avail_in;
    remaining -= in_before - zs.avail_in;
    pos += out_before - zs.avail_out;
    if (rc == Z_STREAM_END) {
      // gzip allows concatenated members; anything else trailing is ignored (as curl does).
      if (remaining > 0 && window_bits > 15 && remaining >= 2 && static_cast<unsigned char>(next[0]) == 0x1f &&
          static_cast<unsigned char>(next[1]) == 0x8b) {
        inflateReset(&zs);
        continue;
      }
      break;
    }
    if (rc == Z_BUF_ERROR && remaining == 0 && zs.avail_out > 0) {
      error = "compressed body is truncated";
      ok = false;
      break;
    }
    if (rc != Z_OK && rc != Z_BUF_ERROR) {
      error = zs.msg ? std::string("corrupt compressed body: ") + zs.msg : "corrupt compressed body";
      ok = false;
      break;
    }
  }
  inflateEnd(&zs);
  if (ok) out.resize(pos);
  return ok;
}

}  // namespace

std::optional<std::string> decompress(std::string_view in, bool gzip, std::size_t limit, std::string& error) {
  std::string out;
  if (gzip) {
    if (!inflate_with(in, 15 + 16, limit, out, error)) return std::nullopt;
    return out;
  }
  // deflate: zlib-wrapped per RFC, but some servers send raw deflate; try the wrapper first.
  std::string first_error;
  if (inflate_with(in, 15, limit, out, first_error)) return out;
  if (first_error.find("exceeds the limit") != std::string::npos) {
    error = first_error;
    return std::nullopt;
  }
  if (!inflate_with(in, -15, limit, out, error)) return std::nullopt;
  return out;
}

}  // namespace ferry::transports
