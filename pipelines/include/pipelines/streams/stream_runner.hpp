#pragma once
// One event stream copied end to end: reader -> page channel -> batcher -> batch channel -> writers ->
// ordered committer.
//
//  reader   BTQL keyset paging from the committed cursor with the adaptive page size; rewrites each
//           page (row_rewriter) and hands it on; it fetches the next page while earlier ones are being
//           written (channel capacity = prefetch depth). The end is confirmed: an empty page is read
//           again at the same cursor and only a second empty answer ends the stream.
//  batcher  packs rows into /logs3 batches (rows + bytes caps) and numbers them 1, 2, 3...
//  writers  up to `max_inflight_batches` batches in flight, admitted by a semaphore whose size follows
//           an AIMD controller (429/503 halve it, successes grow it back). Each batch is recorded as
//           in-flight, sent (413 => halves, a lone row => its big fields spilled to attachments),
//           then acknowledged to the ordered committer. Per-id order: a batch waits (before taking a
//           permit) while an earlier batch sharing one of its row ids is not yet applied, and a batch
//           never holds two versions of an id (batcher.hpp); so the versions of an id reach the
//           destination one request after the other, in source order, whatever the concurrency, 413
//           splits (halves go left then right) and retries (the same batch again). A resume re-reads
//           from the committed cursor, which is before every version not yet committed, and re-sends
//           them in order, so the last version applied is the newest one.
//  commit   batch N commits only when every batch < N was acknowledged; cursor + counters + digest +
//           journal go to the checkpoint store in one atomic synced write. That is the only place the
//           cursor moves.
// Streams are never terminal: every run, also after the stream reached its end, restarts at the committed
// cursor and copies what the source received since (rows committed then count as `caught_up_rows`).
// Resume: the stream restarts at the committed cursor; rows at or below the highest in-flight key of
// the previous run are counted as `resent_rows` (bounded by the rows of the unacknowledged batches).
// Cancellation: total cancellation (graceful shutdown) stops the reader; batches already read are
// written and committed, then the stream returns not done. Terminal cancellation aborts at once (the
// committed state is still consistent). Memory: (page channel + 1) pages + (batch channel +
// in-flight) batches, independent of the stream's length; and in bytes, with a budget
// (stream_options::budget, engine/memory_budget.hpp): the reader acquires a page's bytes before it
// fetches it (the largest of the recent pages, corrected once the page is read), the bytes move with
// the rows into their batches and go back when a batch is acknowledged (or dropped); request bodies
// being sent are charged while they exist. Only the reader waits, so every stream and slice of the
// process shares one bound on the rows held, whatever K, the row sizes or the stream count.
//
// Threading: run_stream runs every stage on the awaiting coroutine's executor (give each stream its
// own strand); the io objects must allow concurrent calls.

#include "pipelines/streams/batcher.hpp"
#include "pipelines/streams/btql_query.hpp"
#include "pipelines/streams/checkpoint_store.hpp"
#include "pipelines/streams/stream_io.hpp"

#include "engine/clock.hpp"
#include "engine/memory_budget.hpp"
#include "engine/progress.hpp"
#include "engine/retry.hpp"

#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace ferry::pipelines::streams {

struct stream_spec {
  stream_kind kind = stream_kind::project_logs;
  std::vector<std::string> source_ids;                       // one object, or a group
  std::unordered_map<std::string, std::string> dest_ids;     // source object id -> destination id
  std::string stream_id;                                     // durable key in the checkpoint store
};

struct stream_options {
  std::size_t fetch_limit = 1000;
  std::size_t min_fetch_limit = 25;
  std::chrono::milliseconds slow_page{20'000};
  std::optional<std::string> created_after;   // all three kinds
  std::optional<std::string> created_before;
  std::optional<std::string> id_from;  // a slice's window on row ids (slices.hpp); unset = every id
  std::optional<std::string> id_to;
  batch_limits batch;
  std::size_t max_inflight_batches = 4;
  /// Acknowledged batches share one synced commit (the cursor moves past all of them at once) while
  /// other batches of the stream are still unapplied, at most this long after the previous commit; with
  /// none unapplied, and at the end of a run (also a failed one), they are committed at once. 0: every
  /// acknowledgement commits. A crash loses at most this much progress: those rows are sent again.
  std::chrono::milliseconds commit_interval{250};
  std::size_t page_channel_capacity = 2;
  std::size_t batch_channel_capacity = 2;
  std::size_t per_row_max_bytes = 18'874'368;  // rows above this have big fields spilled to attachments
  /// The destination's logs3_payload_max_bytes (GET /version): a /logs3 body above it goes through
  /// /logs3/overflow (overflow.hpp), as the SDKs send it. 0: the destination states none, no overflow.
  std::size_t overflow_above = 0;
  /// Keep the newest `created` of the rows written (stream_result::newest_created; --follow's lag).
  bool track_created = false;
  /// Copy attachments referenced by rows to the destination (new keys; the source key -> destination
  /// key map lives in the state store under id type "attachment", so a resume never re-uploads).
  bool copy_attachments = false;
  std::uint64_t attachment_max_bytes = 52'428'800;
  engine::retry_config retry;
  /// The process's row bytes budget (MIGRATION_MEMORY_BUDGET), shared by every stream and slice; null:
  /// nothing is accounted (only the channel and in-flight counts bound the stream's memory).
  std::shared_ptr<engine::memory_budget> budget;
};

struct stream_result {
  stream_state state;
  bool done = false;        // this run reached the stream's (confirmed) end and everything is committed
  std::string error;        // set when the stream failed (state.last_error too)
  /// Rows this run skipped because the destination refused them even alone: one line each, with the
  /// row id and size, for the first 100 (unwritable_count: all of this run's; counters.unwritable_rows
  /// counts them over all runs).
  std::vector<std::string> unwritable;
  std::uint64_t unwritable_count = 0;
  std::string newest_created;  // with track_created: the greatest `created` among the rows written
};

/// Copies one stream; never throws for stream failures (they come back in `error`), rethrows only
/// programmer errors. `progress` may be null.
boost::asio::awaitable<stream_result> run_stream(stream_spec spec, stream_options opts, event_source& source,
                                                 event_sink& sink, checkpoint_store& store, const engine::clock& clk,
                                                 engine::stream_progress* progress = nullptr);

/// "logs project=<id>" etc., for messages.
std::string describe(const stream_spec& spec);

/// Bad input, decided here (pipelines/streams/README.md "Bad input"):
/// A source page with bytes that are not UTF-8 is repaired before it is parsed: every invalid
/// sequence (each maximal subpart, Unicode 15 §3.9 / WHATWG) becomes U+FFFD, so the row is kept and the
/// destination accepts the request (a strict JSON parser rejects the raw bytes). Returns how many
/// sequences were replaced (0: `text` unchanged). Escaped lone surrogates (`\ud800`) are valid JSON
/// text and pass through as written.
std::size_t replace_invalid_utf8(std::string& text);

/// Why a 2xx /logs3 answer is not an acknowledgement, or "" when it is one. The SDK contract is that
/// /logs3 answers with a JSON body; an empty or non-JSON body (a proxy or login page) or a JSON object
/// carrying a non-null "error" is refused, so the batch is never committed on it.
std::string logs3_ack_problem(std::string_view body);

}  // namespace ferry::pipelines::streams
