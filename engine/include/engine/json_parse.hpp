#pragma once
// Parsing JSON into boost::json::value with every number read exactly.
//
// Boost.JSON 1.81 (Debian 12) converts decimal text to double with a fast method that is one ulp off for
// roughly one value in ten with 16-17 significant digits (0.09090909090909091 -> 0.090909090909090925),
// and 1.81 has no option for a precise mode. A migration that parses a row or a resource and writes it
// again would change such numbers, and a verify parsing both sides the same way would not notice.
// parse_json is Boost.JSON's own parser (same grammar, limits, options and errors) whose handler reads
// each double from its text with std::from_chars, which rounds correctly. Use it for every parse of
// data that came from a deployment, an archive or a state file; boost::json::parse is not to be used.

#include <boost/json/parse_options.hpp>
#include <boost/json/storage_ptr.hpp>
#include <boost/json/value.hpp>
#include <boost/system/error_code.hpp>

#include <string_view>
#include <system_error>

namespace ferry::engine {

/// Parses one JSON document (trailing bytes are an error, as for boost::json::parse); null and ec set on
/// failure.
boost::json::value parse_json(std::string_view text, boost::system::error_code& ec, boost::json::storage_ptr sp = {},
                              const boost::json::parse_options& opt = {});

/// As above, with the error as a std::error_code.
boost::json::value parse_json(std::string_view text, std::error_code& ec, boost::json::storage_ptr sp = {},
                              const boost::json::parse_options& opt = {});

/// As above; throws boost::system::system_error on failure.
boost::json::value parse_json(std::string_view text, boost::json::storage_ptr sp = {},
                              const boost::json::parse_options& opt = {});

}  // namespace ferry::engine
