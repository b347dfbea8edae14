#include "pipelines/streams/page_reader.hpp"

#include "../json_fields.hpp"

#include "engine/log.hpp"

#include <boost/json/value.hpp>

#include <stdexcept>

namespace ferry::pipelines::streams {

namespace asio = boost::asio;

page_reader::page_reader(transports::api_client& api, page_reader_options opts)
    : api_(api),
      opts_(opts),
      sizes_(opts.sizes),
      clk_(opts.clock ? *opts.clock : api.wait_clock()) {}

asio::awaitable<transports::btql_page> page_reader::next(page_query q, bool keys_only) {
  transports::call_options once;
  once.retry = false;  // retried below: a 500/504 must reach the page size, not be retried as is
  for (;;) {
    q.limit = sizes_.limit();
    const std::string body = build_btql_body(keys_only ? build_key_query(q) : build_page_query(q));
    const auto started = clk_.now();
    transports::btql_page page;
    engine::retry_policy policy(opts_.retry);
    co_await engine::with_retry(
        policy, clk_,
        [&](int) -> asio::awaitable<engine::attempt_result> {
          page = co_await api_.btql_raw(body, once);
          engine::attempt_result a;
          a.outcome = page.status == 500 || page.status == 504 ? engine::io_outcome::fatal : page.outcome;
          a.retry_after = page.retry_after;
          a.detail = page.status ? "HTTP " + std::to_string(page.status) : std::string(engine::to_string(page.outcome));
          co_return a;
        },
        engine::retry_hooks{"POST /btql", {}});
    if (page.ok()) {
      sizes_.on_page(clk_.now() - started, clk_.now());
      co_return page;
    }
    if ((page.status == 500 || page.status == 504)) {
      const auto before = sizes_.limit();
      if (sizes_.on_server_error(clk_.now())) {
        engine::logger("pipeline")->info("page shrink status={} limit={}->{}", page.status, before, sizes_.limit());
        continue;
      }
      page.error += " (even at the minimum page size " + std::to_string(sizes_.min_limit()) +
                    ": lower MIGRATION_MIN_FETCH_LIMIT or check the source)";
    }
    co_return page;
  }
}

asio::awaitable<std::uint64_t> read_all(transports::api_client& api, page_query q, page_reader_options opts,
                                        const std::function<void(const boost::json::object&)>& fn) {
  opts.sizes.initial_limit = q.limit;
  page_reader reader(api, opts);
  std::uint64_t n = 0;
  bool confirming_end = false;
  for (;;) {
    auto page = co_await reader.next(q, false);
    if (!page.ok()) throw std::runtime_error("BTQL read failed: " + page.error);
    if (page.rows.empty()) {  // the end counts once a second read of the same cursor is empty too
      if (confirming_end) co_return n;
      confirming_end = true;
      continue;
    }
    confirming_end = false;
    std::string last;
    for (const auto& v : page.rows) {
      if (!v.is_object()) continue;
      fn(v.get_object());
      ++n;
      last = str_field(v.get_object(), "_pagination_key");
    }
    if (last.empty()) throw std::runtime_error("BTQL page row without _pagination_key: cannot page further");
    if (q.after_key && last <= *q.after_key) throw std::runtime_error("BTQL page keys did not advance past " + last);
    q.after_key = std::move(last);
    q.inclusive = false;
  }
}

}  // namespace ferry::pipelines::streams
