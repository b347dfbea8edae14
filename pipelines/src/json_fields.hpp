#pragma once
// Internal to pipelines: the two small helpers every file reading API objects needs.

#include <boost/json/object.hpp>

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ferry::pipelines {

/// o[k] when it is a string, else "".
inline std::string str_field(const boost::json::object& o, std::string_view k) {
  const auto* v = o.if_contains(k);
  return v && v->is_string() ? std::string(v->as_string()) : std::string();
}

/// One query parameter (transports' and resources' query_params). GCC 12 rejects braced initialisers
/// holding string literals inside coroutines ("array used as initializer"): coroutine bodies use this.
inline std::vector<std::pair<std::string, std::string>> one_param(std::string k, std::string v) {
  std::vector<std::pair<std::string, std::string>> q;
  q.emplace_back(std::move(k), std::move(v));
  return q;
}

}  // namespace ferry::pipelines
