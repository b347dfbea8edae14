#pragma once
// Internal to pipelines: what `ferry verify` does once the run is open. For each stream recorded in the
// state dir (or, when there is none, discovered read-only by name) it reads the source and the
// destination fully with BTQL keyset paging and compares them row by row (streams::verify_tally), at
// most max_concurrent_streams streams at a time, printing `ok` / `DIFF` per stream as it ends; then it
// checks project, experiment and dataset counts by name.

#include "run_context.hpp"

#include "pipelines/streams/stream_runner.hpp"
#include "pipelines/streams/verify.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/json/array.hpp>
#include <boost/json/object.hpp>

#include <array>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace ferry::pipelines {

struct verification {
  run_context& c;
  std::vector<streams::verify_report> reports;  // sorted by stream once run() returned
  std::vector<std::string> failures;            // one line each
  boost::json::array resource_checks;
  std::mutex mu;  // reports, failures and `out`: streams are verified concurrently

  explicit verification(run_context& ctx) : c(ctx) {}
  boost::asio::awaitable<void> run();

 private:
  using type_counts = std::map<std::string, std::array<std::uint64_t, 3>>;  // type -> source, dest, missing
  std::vector<streams::stream_spec> recorded_specs(stores::state_store& st);
  boost::asio::awaitable<std::vector<streams::stream_spec>> specs();
  boost::asio::awaitable<void> verify_stream(const streams::stream_spec& spec);
  bool in_window(const boost::json::object& o) const;
  boost::asio::awaitable<void> count_children(const boost::json::object& p, const std::string& dest_project_id,
                                              type_counts& counts, std::vector<std::string>& missing_names);
  boost::asio::awaitable<void> check_resources();
};

}  // namespace ferry::pipelines
