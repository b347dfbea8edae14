#pragma once
// BTQL query text for event streams, byte-for-byte as braintrust-migrate builds it (reference-tool.md
// §1.7), plus the /btql request body. Pure functions; thread-safe.

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace ferry::pipelines::streams {

/// The three event-stream kinds. The BTQL `from` function and the origin `object_type` derive from it.
enum class stream_kind { project_logs, experiment, dataset };

/// "project_logs" | "experiment" | "dataset".
std::string_view object_type_name(stream_kind k);
/// "logs" | "experiment_events" | "dataset_events" (reference resource names; used in stream names).
std::string_view resource_name(stream_kind k);

/// BTQL string literal body escaping: every `\` becomes `\\`, then every `'` becomes `\'`.
std::string btql_escape(std::string_view s);

struct page_query {
  stream_kind kind = stream_kind::project_logs;
  std::vector<std::string> object_ids;        // one, or a group (experiments/datasets)
  std::optional<std::string> created_after;   // inclusive
  std::optional<std::string> created_before;  // exclusive
  std::optional<std::string> id_from;         // inclusive: a slice's window on `id` (slices.hpp)
  std::optional<std::string> id_to;           // exclusive
  std::optional<std::string> after_key;       // keyset position
  bool inclusive = false;                     // `>=` instead of `>` (created-after preflight start)
  std::size_t limit = 1000;
};

/// `select: *` / `from: ...` / optional `filter: a and b and c` / `sort: _pagination_key asc` /
/// `limit: N`, joined with '\n', no trailing newline. Empty optional strings count as unset. The
/// filter's conditions: created >= / created < / id >= / id < / _pagination_key > (or >=).
std::string build_page_query(const page_query& q);

/// The logs created-after preflight: `select: _pagination_key`, `filter: created >= '<after>'`, limit 1.
std::string build_preflight_query(std::string_view project_id, std::string_view created_after);

/// `select: _pagination_key` ... with the same filters as `q` and `limit: N`: a cheap page-counting
/// query for progress totals (only keys come back).
std::string build_key_query(const page_query& q);

/// A slice probe: `measures: count(1) as n, min(id) as id_min, max(id) as id_max` over `q`'s objects
/// and filters (created window, id window, and the keyset position when after_key is set: the rows after
/// a running slice's cursor; no sort or limit). One row answers.
std::string build_slice_probe_query(const page_query& q);

/// The JSON body of POST /btql: {"query":..,"fmt":"json","api_version":1,"use_brainstore":true,
/// "client_version":..,"query_timeout_seconds":120}.
std::string build_btql_body(std::string_view query, std::string_view client_version = "ferry-0.1.0");

}  // namespace ferry::pipelines::streams
