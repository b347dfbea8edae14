#pragma once
// Small JSON field readers shared by the emulator's handlers.

#include <boost/json/object.hpp>

#include <string>
#include <string_view>

namespace ferry::emulator {

/// The string at `key`, or "" when it is missing or not a string.
inline std::string string_field(const boost::json::object& o, std::string_view key) {
  const auto* v = o.if_contains(key);
  return v && v->is_string() ? std::string(v->get_string()) : std::string();
}

}  // namespace ferry::emulator
