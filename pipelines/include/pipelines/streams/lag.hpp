#pragma once
// How far a stream's destination was behind its source, per `ferry migrate --follow` round: in rows
// (the rows the round copied: everything the source had beyond the committed cursor when it began) and
// in seconds (the newest `created` among the rows the round copied minus the newest `created` copied
// before it: how far the destination's newest row was behind the source's newest row; unknown on a
// stream's first measured copy, 0 when the round copied nothing). Updates of old rows keep their
// `created`, so they count in rows but not in seconds. The last measurement of every stream is kept in
// the state dir (id map type "follow_lag"), so `ferry status` shows it beside a running migration and
// the next run has the baseline.
//
// Pure functions plus two state store accessors; thread-safe as the state store is.

#include "stores/state_store.hpp"

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>

namespace ferry::pipelines::streams {

struct stream_lag {
  std::uint64_t rows = 0;
  std::optional<double> seconds;  // nullopt: unknown (no earlier newest row to measure from)
  std::string newest_created;     // the newest `created` copied so far (the next round's baseline)
};

/// Seconds since the epoch of an ISO-8601 UTC time ("2026-01-02T03:04:05[.fff][Z|+00:00]"), or nullopt.
std::optional<double> iso_seconds(std::string_view t);

/// The lag of one round: `copied` rows, the newest `created` among them (`newest`, "" when unknown) and
/// the baseline `before` (the previous measurement, or nullopt).
stream_lag measure_lag(std::uint64_t copied, std::string_view newest, const std::optional<stream_lag>& before);

/// "lag_rows=N lag_seconds=S" (S "n/a" when unknown).
std::string describe(const stream_lag& lag);

void save_lag(stores::state_store& st, std::string_view stream_id, const stream_lag& lag);
std::map<std::string, stream_lag> load_lags(const stores::state_store& st);

}  // namespace ferry::pipelines::streams
