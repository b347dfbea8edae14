#pragma once
// Content codings for HTTP bodies (sans-I/O, zlib underneath): gzip encode for server responses,
// gzip/deflate decode for client responses. Pure functions; thread-safe.

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace ferry::transports {

/// True when `body` starts with the gzip magic bytes 1f 8b (signed `.json.gz` targets arrive
/// without Content-Encoding).
bool has_gzip_magic(std::string_view body);

/// gzip-encodes `in` (zlib level `level`, 1 = fastest).
std::string gzip_compress(std::string_view in, int level = 1);

/// Decodes a gzip stream (also several concatenated members), a zlib-wrapped deflate stream or a raw
/// deflate stream (`deflate` in the wild means either). Returns nullopt with `error` set on corrupt
/// input or when the decoded size would exceed `limit` bytes.
std::optional<std::string> decompress(std::string_view in, bool gzip, std::size_t limit, std::string& error);

}  // namespace ferry::transports
