#pragma once
// `ferry seed`: fills a Braintrust-compatible API (normally a `ferry serve` emulator) with a deterministic,
// realistic organization THROUGH ITS HTTP API, so that it works against any deployment:
//   org level   ai secrets, roles (incl. member_roles), groups (incl. member_groups)
//   per project tags, span iframes, functions (inline code, prompt-type, a parameters function and one
//               `code` bundle a migration must skip), prompts whose prompt_data.tool_functions reference
//               those functions and carry an origin, project scores whose config.online.scorers reference
//               functions, datasets, experiments (base_exp_id chain + dataset_id + parameters_id), views
//               on the project / experiments / datasets, a project automation, an env var, ACLs (groups,
//               roles and users on projects, experiments and datasets)
//   events      via /logs3 in batches: project logs as traces (root + children with span_parents), sizes
//               ~1-3 KB with some 100 KB+ and a few > 1 MB, `_is_merge` updates, a few `_object_delete`,
//               attachments (POST /attachment + signed PUT + /attachment/status, referenced in the row);
//               experiment events with scores and metrics; dataset rows with input/expected.
// Same options (incl. seed) => the same requests in the same order, so an emulator started with an id seed
// ends up byte-identical. Everything the generator invents (row ids, span ids, attachment keys, created
// timestamps) is derived from the seed.
//
// Threading: one coroutine issuing one request at a time (the order is what makes it deterministic).

#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

namespace ferry::transports {
class http_client;
}

namespace ferry::emulator {

class emulator;

struct seed_options {
  std::string url;      // API base URL, e.g. http://127.0.0.1:8000
  std::string api_key;  // Bearer key of the organization to fill
  unsigned projects = 2;
  unsigned events_per_project = 1000;  // project log rows (spans), before merges and deletes
  unsigned experiments_per_project = 2;
  unsigned datasets_per_project = 2;
  unsigned events_per_experiment = 200;
  unsigned events_per_dataset = 200;
  std::uint64_t seed = 1;
  double attachment_ratio = 0.01;     // share of log rows that carry an uploaded attachment
  double large_payload_ratio = 0.01;  // share of rows of 100 KB+ (a tenth of those are > 1 MB)
  // Text bytes drawn per payload field of an ordinary row (a log row has two: ~1.36 KB rows by default,
  // ~2 KB with 700..1900).
  std::uint64_t payload_min = 300, payload_max = 1100;
  unsigned batch_rows = 100;                 // rows per /logs3 request
  std::uint64_t batch_bytes = 4u << 20;      // bytes per /logs3 request (a single larger row goes alone);
                                             // a 413 from the API splits the batch in halves
  std::string ca_file;                       // PEM file of trusted CAs for an https --url (else system CAs)
  bool insecure = false;                     // skip TLS certificate verification (warns)
};

struct seed_summary {
  std::string org_name;
  std::uint64_t requests = 0;
  std::uint64_t resources = 0;  // objects created through /v1
  std::uint64_t projects = 0, experiments = 0, datasets = 0, functions = 0, prompts = 0, acls = 0;
  std::uint64_t log_rows = 0, experiment_rows = 0, dataset_rows = 0;  // rows sent, merges and deletes included
  std::uint64_t merges = 0, deletes = 0, attachments = 0;
  std::uint64_t bytes = 0;  // event payload bytes sent
  /// "ferry seed: org <name>: N projects, ... M events (X MB) in R requests"
  std::string line() const;
};

struct seed_response {
  unsigned status = 0;
  std::string body;
  std::chrono::milliseconds retry_after{0};  // the server's Retry-After on 429/503 (0 = none)
};
/// One HTTP exchange: method, target (a path with query, or an absolute signed URL), body; `auth` says whether
/// to send the Bearer key (signed URLs carry none).
using seed_transport =
    std::function<boost::asio::awaitable<seed_response>(std::string method, std::string target, std::string body,
                                                         bool auth)>;

/// Runs the generator over a transport. Throws std::runtime_error naming the request that failed.
boost::asio::awaitable<seed_summary> seed_org(seed_transport transport, seed_options opts);

/// A transport that calls an in-process emulator's handler directly (tests, benchmarks: no sockets).
seed_transport inprocess_transport(emulator& emu, std::string api_key);

/// A transport over a real HTTP client (what `ferry seed` uses): the Bearer key on authenticated calls, none on
/// signed URLs; a request that got no response comes back as status 0 with the client's error as the body (the
/// generator retries it). The client must outlive the transport's calls.
seed_transport http_transport(transports::http_client& client, std::string api_key);

/// `ferry seed`: seeds opts.url over HTTP, prints the summary line to stdout; 0 on success, 1 on failure
/// (one line on stderr), 2 on bad options.
int run_seed(const seed_options& opts);

}  // namespace ferry::emulator
