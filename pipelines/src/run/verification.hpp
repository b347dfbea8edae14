#pragma once
// Internal to pipelines: what `ferry verify` does once the run is open. For each stream recorded in the
// state dir (or, when there is none, discovered read-only by name) it reads the source and the
// destination fully with BTQL keyset paging and compares them row by row (streams::verify_tally), at
// most max_concurrent_streams streams at a time, printing `ok` / `DIFF` per stream as it ends; then it
// checks the attachments destination rows reference, project, experiment and dataset counts by name, and
// every object of every resource type field by field with its references (resource_verify.hpp).
//
// A shutdown (SIGINT/SIGTERM) or a cancelled stream never reads as equal: a stream whose reads did not
// end before the shutdown began is counted in `not_compared`, not reported, and the run is `interrupted`
// (finish_verify: exit 130, "ok": false, "incomplete": true, one line naming the streams not compared).

#include "reports.hpp"
#include "run_context.hpp"

#include "pipelines/streams/stream_runner.hpp"
#include "pipelines/resources/specs.hpp"
#include "pipelines/streams/verify.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/json/array.hpp>
#include <boost/json/object.hpp>

#include <array>
#include <optional>
#include <set>
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
  boost::json::object attachments;  // what the attachment check found (see check_attachments)
  std::size_t streams_total = 0;    // streams to compare, once listed
  std::size_t not_compared = 0;     // of those, not compared because the run was interrupted
  bool listed = false;              // the stream list was read (else nothing was compared)
  bool cancelled = false;           // the run ended by a cancellation
  std::mutex mu;  // reports, failures and `out`: streams are verified concurrently

  explicit verification(run_context& ctx) : c(ctx) {}
  boost::asio::awaitable<void> run();
  /// True once a shutdown began: nothing read from then on counts as compared.
  bool stopping() const;
  /// verify_end for finish_verify (moves the results out).
  verify_end end();

 private:
  using type_counts = std::map<std::string, std::array<std::uint64_t, 3>>;  // type -> source, dest, missing
  std::vector<streams::stream_spec> recorded_specs(stores::state_store& st);
  boost::asio::awaitable<std::vector<streams::stream_spec>> specs();
  boost::asio::awaitable<void> verify_stream(const streams::stream_spec& spec);
  bool in_window(const boost::json::object& o) const;
  boost::asio::awaitable<void> count_children(const boost::json::object& p, const std::string& dest_project_id,
                                              type_counts& counts, std::vector<std::string>& missing_names);
  boost::asio::awaitable<void> check_resources();
  // Every resource type field by field, references checked (resource_verify.hpp).
  boost::asio::awaitable<void> check_resource_fields();
  void note_attachments(const boost::json::value& v);
  boost::asio::awaitable<void> check_attachments();
  struct attachment_ref {
    std::string filename, content_type;
  };
  std::map<std::string, attachment_ref> attachment_refs_;  // key -> reference, from destination rows
};

}  // namespace ferry::pipelines
