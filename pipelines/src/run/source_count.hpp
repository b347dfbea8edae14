#pragma once
// Internal to pipelines: counting a stream's rows on the source with key-only BTQL pages (the dry run's
// plan and the live progress line's ETA both use it).

#include "sides.hpp"

#include "pipelines/streams/btql_query.hpp"

#include <boost/asio/awaitable.hpp>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

namespace ferry::pipelines {

/// One BTQL page of the source for counting or sampling through the side's client (request semaphore,
/// rate limits) with the streams' page policy (streams::page_reader: a 500/504 halves the page down to
/// the floor, other failures retry with the side's policy); q.limit is left at the size that worked.
boost::asio::awaitable<transports::btql_page> source_page(side& src, streams::page_query& q, bool keys_only);

/// Rows of q's objects after q.after_key (inclusive when q.inclusive), counted with key-only pages of
/// q.limit keys (one streams::page_reader: shrinks on 500/504, grows back), one page at a time. nullopt when `stop()` or a cancellation ended it first, or when a
/// page failed (then `error` says why).
boost::asio::awaitable<std::optional<std::uint64_t>> count_keys(side& src, streams::page_query q,
                                                                const std::function<bool()>& stop, std::string& error);

/// The first page query of a stream of `kind` over `ids`: created window and the kind's fetch limit.
streams::page_query first_page_query(const migrate_config& cfg, streams::stream_kind kind, std::vector<std::string> ids);

}  // namespace ferry::pipelines
