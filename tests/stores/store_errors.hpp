#pragma once
// stores tests: the message of the store_error a call throws.

#include "stores/kv_store.hpp"

#include <functional>
#include <string>

namespace ferry::test {

/// What `f` throws as store_error, or "<no store_error>".
inline std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const stores::store_error& e) {
    return e.what();
  }
  return "<no store_error>";
}

}  // namespace ferry::test
