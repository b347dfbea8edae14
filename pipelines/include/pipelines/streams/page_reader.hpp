#pragma once
// Reading BTQL pages outside a stream copy (verify, the dry run's counts and samples) with the same
// page policy the stream reader uses: page_size_controller (page_size.hpp) is the one rule for the page
// size, so a 500/504 halves the page down to the floor (min_fetch_limit) and fast pages grow it back;
// other throttled / transient / timed-out failures retry with the side's retry policy (retry_attempts
// retries after the first try, Retry-After up to retry_after_max). Every request goes through the side's
// api_client: its request semaphore and rate limits bound these reads like every other call of the side.
//
// Threading: one page_reader per sequential read (not thread-safe); the client may be shared.

#include "pipelines/streams/btql_query.hpp"
#include "pipelines/streams/page_size.hpp"

#include "engine/clock.hpp"
#include "engine/retry.hpp"
#include "transports/api_client.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/json/object.hpp>

#include <cstdint>
#include <functional>

namespace ferry::pipelines::streams {

struct page_reader_options {
  page_size_config sizes;
  engine::retry_config retry;           // the side's: transports::side_config::retry()
  const engine::clock* clock = nullptr;  // null = the client's wait_clock() (a shutdown ends its waits)
};

class page_reader {
 public:
  page_reader(transports::api_client& api, page_reader_options opts);

  /// The page of `q` (its filter and keyset position; the LIMIT is limit()): rows or key rows only. A
  /// failed page comes back with !ok() and its error, after the retries, or at the floor of the page
  /// size for a 500/504.
  boost::asio::awaitable<transports::btql_page> next(page_query q, bool keys_only);
  std::size_t limit() const { return sizes_.limit(); }

 private:
  transports::api_client& api_;
  page_reader_options opts_;
  page_size_controller sizes_;
  const engine::clock& clk_;
};

/// Every row of `q`'s objects after q.after_key, in keyset pages (q.limit is the initial page size),
/// each row passed to `fn`; the end is an empty page confirmed by a second empty read of the same cursor
/// (one empty answer of a loaded source is not the end). Returns the row count; throws std::runtime_error when a page fails (see
/// page_reader::next) or the keys do not advance.
boost::asio::awaitable<std::uint64_t> read_all(transports::api_client& api, page_query q, page_reader_options opts,
                                               const std::function<void(const boost::json::object&)>& fn);

}  // namespace ferry::pipelines::streams
