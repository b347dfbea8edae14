#include "source_count.hpp"

#include "../json_fields.hpp"

#include "pipelines/streams/page_reader.hpp"

#include <boost/asio/this_coro.hpp>
#include <boost/json.hpp>

#include <algorithm>

namespace ferry::pipelines {

namespace asio = boost::asio;
namespace json = boost::json;

asio::awaitable<transports::btql_page> source_page(side& src, streams::page_query& q, bool keys_only) {
  auto opts = src.reads;
  opts.sizes.initial_limit = q.limit;
  opts.sizes.min_limit = 1;  // counting and sampling shrink down to one row, as they always did
  streams::page_reader reader(*src.api, opts);
  auto page = co_await reader.next(q, keys_only);
  q.limit = reader.limit();
  co_return page;
}

asio::awaitable<std::optional<std::uint64_t>> count_keys(side& src, streams::page_query q,
                                                         const std::function<bool()>& stop, std::string& error) {
  auto opts = src.reads;
  opts.sizes.initial_limit = q.limit;
  opts.sizes.min_limit = 1;  // counting and sampling shrink down to one row, as they always did
  streams::page_reader reader(*src.api, opts);  // one page size policy for the whole count
  std::uint64_t n = 0;
  for (;;) {
    auto cs = co_await asio::this_coro::cancellation_state;
    if (stop() || cs.cancelled() != asio::cancellation_type::none) co_return std::nullopt;
    auto page = co_await reader.next(q, true);
    if (!page.ok()) {
      error = "BTQL count page failed: " + page.error;
      co_return std::nullopt;
    }
    if (page.rows.empty()) co_return n;
    n += page.rows.size();
    const auto& last = page.rows.back();
    auto key = last.is_object() ? str_field(last.as_object(), "_pagination_key") : std::string();
    if (key.empty() || (q.after_key && key <= *q.after_key)) {
      error = "BTQL count page: keys missing or not increasing after " + q.after_key.value_or("the start");
      co_return std::nullopt;
    }
    q.after_key = key;
    q.inclusive = false;
  }
}

streams::page_query first_page_query(const migrate_config& cfg, streams::stream_kind kind, std::vector<std::string> ids) {
  streams::page_query q;
  q.kind = kind;
  q.object_ids = std::move(ids);
  q.created_after = cfg.created_after;
  q.created_before = cfg.created_before;
  q.limit = static_cast<std::size_t>(std::max(kind == streams::stream_kind::project_logs ? cfg.logs_fetch_limit
                                              : kind == streams::stream_kind::experiment ? cfg.experiment_fetch_limit
                                                                                          : cfg.dataset_fetch_limit,
                                              1));
  return q;
}

}  // namespace ferry::pipelines
