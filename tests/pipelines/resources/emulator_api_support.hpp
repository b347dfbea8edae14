#pragma once
// Helpers shared by the resource tests that drive two in-process emulators through emulator::handle()
// (first_run_test, org_migration_test): one request as a resource_api reply, emulator configs, JSON bits,
// a report as text.
#include "pipelines/resources/api.hpp"
#include "pipelines/resources/report.hpp"

#include "emulator/emulator.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/beast/http/field.hpp>
#include <boost/beast/http/verb.hpp>
#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <string>
#include <string_view>

namespace ferry::test {

/// One request to an emulator's handler with `key`, classified as a resource_api reply (< 300 ok, 404
/// not_found, anything else fatal).
inline boost::asio::awaitable<pipelines::resources::api_reply> call_emulator(emulator::emulator& emu,
                                                                            const std::string& key,
                                                                            const std::string& method,
                                                                            const std::string& target,
                                                                            std::string body) {
  namespace http = boost::beast::http;
  transports::http_request req{http::string_to_verb(method), target, 11};
  req.set(http::field::authorization, "Bearer " + key);
  req.set(http::field::content_type, "application/json");
  req.body() = std::move(body);
  req.prepare_payload();
  auto r = co_await emu.handle(req);
  pipelines::resources::api_reply out;
  out.status = static_cast<int>(r.response.result_int());
  out.body = r.response.body();
  out.outcome = out.status < 300 ? engine::io_outcome::ok
                : out.status == 404 ? engine::io_outcome::not_found
                                    : engine::io_outcome::fatal;
  co_return out;
}

/// An emulator that accepts one API key for one org.
inline emulator::emulator_config emu_config(std::string key, std::string org) {
  emulator::emulator_config c;
  c.api_keys.push_back({std::move(key), std::move(org), {}});
  return c;
}

inline boost::json::object obj(std::string_view text) { return boost::json::parse(text).as_object(); }
inline std::string sid(const boost::json::object& o) { return std::string(o.at("id").as_string()); }
/// A string value as it is, anything else serialized.
inline std::string str(const boost::json::value& v) {
  return v.is_string() ? std::string(v.as_string()) : boost::json::serialize(v);
}

/// Every entry of a report (type, name, status, reason) and every error, one a line, for failure messages.
inline std::string statuses(const pipelines::resources::migration_report& r) {
  std::string out;
  for (const auto& e : r.entries())
    out += e.type + " '" + e.name + "' " + std::string(to_string(e.status)) + " " + e.reason + "\n";
  for (const auto& e : r.errors()) out += "error: " + e + "\n";
  return out;
}

}  // namespace ferry::test
