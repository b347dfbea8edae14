#include "pipelines/streams/stream_runner.hpp"

#include "pipelines/streams/overflow.hpp"
#include "pipelines/streams/page_size.hpp"
#include "pipelines/streams/row_rewriter.hpp"

#include "engine/aimd.hpp"
#include "engine/bounded_channel.hpp"
#include "engine/json_parse.hpp"
#include "engine/log.hpp"
#include "engine/runtime.hpp"
#include "engine/semaphore.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/experimental/channel_error.hpp>
#include <boost/asio/experimental/parallel_group.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/system/system_error.hpp>

#include <boost/json.hpp>
#include <simdjson.h>

#include <algorithm>
#include <map>

namespace ferry::pipelines::streams {

namespace asio = boost::asio;

std::string describe(const stream_spec& spec) {
  std::string s(resource_name(spec.kind));
  s += spec.kind == stream_kind::project_logs ? " project=" : spec.kind == stream_kind::experiment ? " experiment=" : " dataset=";
  for (std::size_t i = 0; i < spec.source_ids.size(); ++i) {
    if (i) s += ',';
    if (i == 3) {
      s += "...(" + std::to_string(spec.source_ids.size()) + ")";
      break;
    }
    s += spec.source_ids[i];
  }
  return s;
}

std::size_t replace_invalid_utf8(std::string& text) {
  // Fast path: almost every page is valid (simdjson's validator runs at memory speed).
  if (simdjson::validate_utf8(text.data(), text.size())) return 0;
  static constexpr std::string_view replacement = "\xEF\xBF\xBD";
  std::string out;
  out.reserve(text.size() + 16);
  std::size_t replaced = 0;
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  const std::size_t n = text.size();
  std::size_t i = 0;
  while (i < n) {
    const unsigned char c = p[i];
    if (c < 0x80) {
      out += static_cast<char>(c);
      ++i;
      continue;
    }
    // Expected length and the allowed range of the second byte (the first byte decides both).
    std::size_t len = 0;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) len = 2;
    else if (c == 0xE0) len = 3, lo = 0xA0;
    else if (c == 0xED) len = 3, hi = 0x9F;  // no UTF-16 surrogates
    else if (c >= 0xE1 && c <= 0xEF) len = 3;
    else if (c == 0xF0) len = 4, lo = 0x90;
    else if (c == 0xF4) len = 4, hi = 0x8F;  // nothing above U+10FFFF
    else if (c >= 0xF1 && c <= 0xF3) len = 4;
    // Length of the valid prefix of the sequence (the "maximal subpart" replaced by one U+FFFD).
    std::size_t ok = len ? 1 : 0;
    if (len && i + 1 < n && p[i + 1] >= lo && p[i + 1] <= hi) {
      ok = 2;
      while (ok < len && i + ok < n && p[i + ok] >= 0x80 && p[i + ok] <= 0xBF) ++ok;
    }
    if (len && ok == len) {
      out.append(text, i, len);
      i += len;
    } else {
      out += replacement;
      ++replaced;
      i += std::max<std::size_t>(ok, 1);
    }
  }
  text = std::move(out);
  return replaced;
}

namespace {

// A short printable excerpt of a response body for an error line (no newlines, secrets redacted).
// Redacted before it is cut, so a secret straddling the cut cannot show its first characters.
std::string excerpt(std::string_view body, std::size_t max = 60) {
  const std::string red = engine::redact(body.substr(0, std::max<std::size_t>(max, 4096)));
  std::string s;
  for (std::size_t i = 0; i < red.size() && s.size() < max; ++i) {
    const auto c = static_cast<unsigned char>(red[i]);
    s += (c >= 0x20 && c < 0x7F) ? static_cast<char>(c) : ' ';
  }
  if (red.size() > max) s += "...";
  return s;
}

// Error text must stay one line (it is printed as one stderr line and stored as last_error) and must
// never carry a credential, whatever a server echoed back.
std::string one_line(std::string_view text) {
  std::string s = engine::redact(text);
  for (auto& c : s)
    if (c == '\n' || c == '\r' || c == '\t') c = ' ';
  return s;
}

// On the error path only: a body whose brackets or last string never close was cut short (by the
// server or a proxy), which the parser's own message does not say.
std::string truncation_note(std::string_view body) {
  int depth = 0;
  bool in_string = false, any = false;
  for (std::size_t i = 0; i < body.size(); ++i) {
    const char c = body[i];
    if (in_string) {
      if (c == '\\') ++i;
      else if (c == '"') in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      ++depth;
      any = true;
    } else if (c == '}' || c == ']') {
      --depth;
    }
  }
  if (!any || (depth <= 0 && !in_string)) return {};
  return "; the body is cut short (" + std::to_string(depth) + " bracket(s)" + (in_string ? " and a string" : "") +
         " never closed: a truncated response)";
}

// What an operator should fix when a side refuses the key.
std::string auth_hint(int status, bool source) {
  if (status != 401 && status != 403) return {};
  return std::string("; the ") + (source ? "source" : "destination") + " API key was rejected (check " +
         (source ? "BT_SOURCE_API_KEY" : "BT_DEST_API_KEY") + ": wrong, revoked or without access)";
}

}  // namespace

std::string logs3_ack_problem(std::string_view body) {
  boost::system::error_code ec;
  // An acknowledgement lists the batch's ids: its strings go to one arena (no malloc per id).
  unsigned char arena[16 << 10];
  boost::json::monotonic_resource mr(arena, sizeof arena);
  auto v = ferry::engine::parse_json(body, ec, &mr);
  if (ec) {
    std::size_t i = 0;
    while (i < body.size() && (body[i] == ' ' || body[i] == '\n' || body[i] == '\r' || body[i] == '\t')) ++i;
    if (i == body.size()) return "the body is empty (a /logs3 acknowledgement is JSON)";
    return "the body is not JSON (" + ec.message() + "; starts '" + excerpt(body) +
           "'): is the destination URL the Braintrust API and not a proxy or login page?";
  }
  if (const auto* o = v.if_object())
    if (const auto* e = o->if_contains("error"); e && !e->is_null()) {
      std::string msg = e->is_string() ? std::string(e->get_string()) : boost::json::serialize(*e);
      return "the body is an error object: " + excerpt(msg, 200);
    }
  return {};
}

namespace {

engine::attempt_result to_attempt(const call_result& r) {
  engine::attempt_result a;
  a.outcome = r.outcome;
  a.retry_after = r.retry_after;
  a.detail = r.status ? "HTTP " + std::to_string(r.status) + (r.error.empty() ? "" : ": " + r.error) : r.error;
  return a;
}

engine::aimd_config writer_aimd(std::size_t max_inflight) {
  engine::aimd_config a;
  a.min = 1;
  a.max = static_cast<double>(std::max<std::size_t>(max_inflight, 1));
  a.initial = a.max;
  a.additive_step = 1;
  a.successes_per_step = 4;
  a.cooldown_successes = 2;  // one burst of 429s from batches already in flight halves once
  return a;
}

using held_bytes = engine::memory_budget::grant;

// What the channels carry: rows with the budget bytes they hold (an empty grant without a budget).
struct held_page {
  rewritten_page page;
  held_bytes held;
};
struct held_batch {
  batch rows;
  held_bytes held;
};

// The bytes a row holds while it waits in a page or a batch (what its strings allocated, not their length).
std::uint64_t row_bytes(const event_row& r) {
  return sizeof(event_row) + r.json.capacity() + r.riders.capacity() + r.id.capacity() + r.key.capacity();
}

// A large row was built by appending (its string doubled as it grew): up to 2x its bytes allocated, held
// until its batch is acknowledged. One copy to its size is cheap next to sending it.
void fit_large_rows(std::vector<event_row>& rows) {
  for (auto& r : rows)
    if (r.json.size() >= (64u << 10) && r.json.capacity() > r.json.size() + r.json.size() / 8) r.json.shrink_to_fit();
}
std::uint64_t rows_bytes(const std::vector<event_row>& rows) {
  std::uint64_t n = 0;
  for (const auto& r : rows) n += row_bytes(r);
  return n;
}

// Everything one stream shares between its stages. Lives in run_stream's frame; all stages run on the
// same executor (strand), so no locking.
struct stream_ctx {
  stream_spec spec;
  stream_options opts;
  event_source& source;
  event_sink& sink;
  checkpoint_store& store;
  const engine::clock& clk;
  engine::stream_progress* progress;
  std::string name;
  stream_state state;
  std::string resend_until;  // highest key of batches in flight when the previous run stopped
  bool catching_up = false;  // the stream had reached its end in an earlier run: rows now are caught up
  bool reached_end = false;
  std::exception_ptr reader_error;
  std::vector<std::string> unwritable;  // this run's skipped rows, one line each (the first 100)
  std::uint64_t unwritable_count = 0;   // all of them
  static constexpr std::uint64_t max_unwritable_lines = 100;
  std::string newest_created;           // with opts.track_created
  ordered_committer committer;
  std::vector<batch_receipt> acknowledged;  // ready to commit, in order, not yet in a synced commit
  engine::steady_time last_commit{};
  engine::aimd_controller write_aimd;
  engine::semaphore write_sem;
  // Per-id order: the sorted id hashes of every batch handed to the writers and not yet applied by the
  // destination (registered by the batcher stage in sequence order, erased when its request succeeded),
  // and a timer that never expires, cancelled to wake the writers waiting for an earlier batch.
  std::map<std::uint64_t, std::vector<std::uint64_t>> unapplied;
  asio::steady_timer applied;
  std::shared_ptr<spdlog::logger> log = engine::logger("pipeline");

  stream_ctx(const asio::any_io_executor& ex, stream_spec s, stream_options o, event_source& src, event_sink& snk,
             checkpoint_store& st, const engine::clock& c, engine::stream_progress* p)
      : spec(std::move(s)),
        opts(std::move(o)),
        source(src),
        sink(snk),
        store(st),
        clk(c),
        progress(p),
        name(describe(spec)),
        write_aimd(writer_aimd(opts.max_inflight_batches)),
        write_sem(std::max<std::size_t>(opts.max_inflight_batches, 1)),
        applied(ex, asio::steady_timer::time_point::max()) {}

  // One call with retries of throttled/timed-out/transient outcomes. `stop_status` statuses are returned
  // at once (500/504 on BTQL: the page size decides).
  asio::awaitable<call_result> with_retries(std::string_view what, std::function<asio::awaitable<call_result>()> call,
                                            std::vector<int> stop_status = {}) {
    engine::retry_policy policy(opts.retry);
    call_result last;
    auto res = co_await engine::with_retry(
        policy, clk,
        [&](int) -> asio::awaitable<engine::attempt_result> {
          last = co_await call();
          auto a = to_attempt(last);
          if (std::find(stop_status.begin(), stop_status.end(), last.status) != stop_status.end())
            a.outcome = engine::io_outcome::fatal;
          co_return a;
        },
        engine::retry_hooks{.what = what, .on_retry = [this](int, const engine::attempt_result& a, const engine::retry_decision&) {
                              if (progress) progress->add_retries();
                              if (a.outcome == engine::io_outcome::throttled) write_sem.set_capacity(write_aimd.on_throttle(clk.now()));
                            }});
    (void)res;
    co_return last;
  }

  // `after`: the key the page starts after ("" for the first page), for messages.
  asio::awaitable<call_result> fetch(const std::string& query, page_size_controller* ps, const std::string& after) {
    {
      auto started = clk.now();
      auto body = build_btql_body(query);
      std::vector<int> stops{500, 504};
      auto r = co_await with_retries("POST /btql", [&]() { return source.btql(body); }, std::move(stops));
      if (progress) progress->add_requests();
      if (r.outcome == engine::io_outcome::ok) {
        if (ps) ps->on_page(clk.now() - started, clk.now());
        co_return r;
      }
      if ((r.status == 500 || r.status == 504) && ps) {
        auto before = ps->limit();
        if (ps->on_server_error(clk.now())) {
          log->info("page shrink stream={} status={} limit={}->{}", name, r.status, before, ps->limit());
          call_result again;
          again.status = -1;  // retry the page at the new size
          co_return again;
        }
        throw stream_error("stream " + name + ": BTQL keeps failing with HTTP " + std::to_string(r.status) +
                           " even at the minimum page size " + std::to_string(ps->min_limit()) + " after key '" +
                           after + "' (lower MIGRATION_MIN_FETCH_LIMIT or check the source)");
      }
      throw stream_error("stream " + name + ": POST /btql failed for the page after key '" + after + "': " +
                         to_attempt(r).detail + auth_hint(r.status, true));
    }
  }

  page_query base_query() const {
    page_query q;
    q.kind = spec.kind;
    q.object_ids = spec.source_ids;
    q.created_after = opts.created_after;
    q.created_before = opts.created_before;
    q.id_from = opts.id_from;
    q.id_to = opts.id_to;
    return q;
  }

  // Where a source row's own origin points: the destination id of that object, from the id map the
  // resources DAG keeps (event object types: project_logs names the project), remembered per stream.
  std::unordered_map<std::string, std::optional<std::string>> origin_ids;
  std::optional<std::string> origin_dest(std::string_view type, std::string_view id) {
    const std::string_view id_type = type == "project_logs" ? std::string_view("project") : type;
    static constexpr std::string_view mapped_types[] = {"project", "experiment", "dataset", "prompt", "function"};
    if (std::find(std::begin(mapped_types), std::end(mapped_types), id_type) == std::end(mapped_types)) return std::nullopt;
    std::string key(id_type);
    key += '\n';
    key += id;
    auto it = origin_ids.find(key);
    if (it == origin_ids.end()) it = origin_ids.emplace(std::move(key), store.state().get_id(id_type, id)).first;
    return it->second;
  }

  // Logs with created_after: find the first key in the window once (reference preflight).
  asio::awaitable<void> preflight() {
    if (spec.kind != stream_kind::project_logs || !opts.created_after || opts.created_after->empty()) co_return;
    if (!state.cursor.empty() || state.preflight_done) co_return;
    auto r = co_await fetch(build_preflight_query(spec.source_ids.front(), *opts.created_after), nullptr, std::string());
    auto keys = page_keys(r.body, name);
    if (keys.empty() || keys.front().empty()) co_return;  // nothing in the window yet: the reader starts at the beginning
    state.preflight_done = true;
    state.cursor = keys.front();
    state.cursor_inclusive = true;
    store.save(state);
  }

  // Before a page is fetched: the bytes it is expected to need (its body and, while it is rewritten, its
  // rows), waited for in the budget; an empty grant without a budget. At most half the budget is waited
  // for (the rest is charged when the page is here): the batchers' partial batches (a small part of the
  // budget: their caps come from the streams' shares) keep their bytes until the next page arrives, so a
  // reader waiting for more than the budget minus those bytes would wait for ever.
  asio::awaitable<held_bytes> reserve_page(std::uint64_t expected) {
    if (!opts.budget) co_return held_bytes{};
    co_return co_await opts.budget->acquire(std::min(expected, opts.budget->capacity() / 2));
  }

  asio::awaitable<void> reader(engine::bounded_channel<held_page>& pages) {
    co_await asio::this_coro::reset_cancellation_state(asio::enable_total_cancellation());
    rewrite_config rc;
    rc.kind = spec.kind;
    rc.stream_name = name;
    rc.grouped = spec.source_ids.size() > 1;
    rc.source_object_id = spec.source_ids.front();
    rc.dest_ids = spec.dest_ids;
    rc.origin_dest = [this](std::string_view type, std::string_view id) { return origin_dest(type, id); };
    row_rewriter rw(std::move(rc));
    page_size_controller ps({.initial_limit = opts.fetch_limit, .min_limit = opts.min_fetch_limit, .slow_page = opts.slow_page});
    std::string after = state.cursor;
    bool inclusive = state.cursor_inclusive;
    bool confirming_end = false;  // the previous page at this cursor was empty
    page_bytes_estimate expected(opts.fetch_limit);  // the largest recent page (page_size.hpp)
    try {
      for (;;) {
        if ((co_await asio::this_coro::cancellation_state).cancelled() != asio::cancellation_type::none) break;
        page_query q = base_query();
        q.after_key = after;
        q.inclusive = inclusive;
        q.limit = ps.limit();
        if (progress) progress->set_page_size(q.limit);
        if (opts.budget) engine::return_free_memory(std::chrono::seconds(10));  // (each trim is paid again in page faults)
        auto held = co_await reserve_page(expected.expected());
        auto r = co_await fetch(build_page_query(q), &ps, after);
        if (r.status == -1) continue;  // shrunk; same page again
        // The body and its rows, while it is rewritten: a page above the ask is charged now (it is here).
        const std::uint64_t body_bytes = r.body.size();
        held.resize(std::max<std::uint64_t>(held.bytes(), 2 * body_bytes));
        if (auto bad = replace_invalid_utf8(r.body))
          log->warn("invalid utf-8 stream={} after_key={} replaced={} (each invalid sequence became U+FFFD so the "
                    "destination accepts the rows)",
                    name, after, bad);
        // A bad page fails the stream as a whole: none of its rows reach the writers, so no cursor can
        // move past a row of it (and a page cut at a row boundary is not a short page: it does not parse).
        rewritten_page page;
        try {
          page = rw.rewrite(r.body, inclusive ? std::string_view{} : std::string_view{after});
        } catch (const stream_error& e) {
          throw stream_error(std::string(e.what()) + " (POST /btql page after key '" + after + "', " +
                             std::to_string(r.body.size()) + " bytes, starts '" + excerpt(r.body) + "'" +
                             truncation_note(r.body) + "; nothing from this page was written)");
        }
        r.body = std::string();  // (not kept while the page waits for the batcher)
        fit_large_rows(page.rows);
        const auto bytes = rows_bytes(page.rows);
        held.resize(bytes);
        expected.add(body_bytes + bytes);
        if (inclusive && !after.empty() && !page.rows.empty() && page.rows.front().key < after)
          throw stream_error("stream " + name + " row id=" + page.rows.front().id + ": `_pagination_key` " +
                             page.rows.front().key + " is before the resume key " + after +
                             " (the source ignored the cursor; nothing from this page was written)");
        if (progress) progress->add_bytes(0);
        // The end must be confirmed: a loaded source can answer one empty page while rows remain, so
        // an empty page is read again at the same cursor, and only a second empty answer ends the stream.
        if (page.rows.empty()) {
          if (confirming_end) {
            reached_end = true;
            break;
          }
          confirming_end = true;
          continue;
        }
        if (confirming_end)
          log->warn("empty page not confirmed stream={} after_key={} rows={} (the source answered one empty page "
                    "while rows remained; the stream goes on)",
                    name, after, page.rows.size());
        confirming_end = false;
        after = page.rows.back().key;
        inclusive = false;
        held_page out{std::move(page), std::move(held)};  // (named: GCC 12 destroys a co_await's temporaries twice)
        co_await pages.async_send(std::move(out));
      }
    } catch (const boost::system::system_error& e) {
      // Graceful shutdown aborted a fetch or a wait: stop reading, let what was read be written.
      if (e.code() != asio::error::operation_aborted && e.code() != asio::experimental::error::channel_cancelled)
        reader_error = std::current_exception();
    } catch (...) {
      // The stream cannot continue, but the rows already read are still written and committed
      // (the error is reported once the writers drained).
      reader_error = std::current_exception();
    }
    pages.close();
  }

  // The budget bytes of the pages' rows pass into the batches made of them (`pending` holds the rows
  // not yet in a handed-over batch).
  asio::awaitable<void> batcher_stage(engine::bounded_channel<held_page>& pages, engine::bounded_channel<held_batch>& batches) {
    co_await asio::this_coro::reset_cancellation_state(asio::enable_terminal_cancellation());
    batcher b(opts.batch, state.next_seq);
    std::vector<batch> out;
    held_bytes pending;
    try {
      while (auto p = co_await pages.async_receive()) {
        pending.absorb(std::move(p->held));
        for (auto& row : p->page.rows) b.add(std::move(row), out);
        for (auto& x : out) {
          auto held = pending.split(rows_bytes(x.rows));
          co_await hand_over(std::move(x), std::move(held), batches);
        }
        out.clear();
      }
      if (auto last = b.flush()) co_await hand_over(std::move(*last), std::move(pending), batches);
    } catch (...) {
      batches.close();
      throw;
    }
    batches.close();
  }

  // Batches are registered here, in sequence order, before any writer can see them: so when a writer
  // holds batch N, every earlier batch is either applied or in `unapplied`.
  asio::awaitable<void> hand_over(batch b, held_bytes held, engine::bounded_channel<held_batch>& batches) {
    unapplied.emplace(b.seq, std::move(b.id_hashes));
    held_batch out{std::move(b), std::move(held)};  // (named: see the reader)
    co_await batches.async_send(std::move(out));
  }

  // Waits until no earlier batch sharing a row id with batch `seq` is still unapplied. The earliest
  // unapplied batch never waits, so this cannot deadlock; a failed batch stays unapplied, and its
  // successors sharing ids wait until the stream's failure cancels them (they are re-sent, in order,
  // by the run that resumes from the committed cursor).
  asio::awaitable<void> wait_for_earlier_versions(std::uint64_t seq) {
    for (;;) {
      const auto& mine = unapplied.at(seq);
      bool blocked = false;
      for (auto it = unapplied.begin(); it != unapplied.end() && it->first < seq && !blocked; ++it)
        blocked = share_ids(it->second, mine);
      if (!blocked) co_return;
      auto [ec] = co_await applied.async_wait(asio::as_tuple(asio::use_awaitable));
      (void)ec;  // woken by cancel(): look again
      if ((co_await asio::this_coro::cancellation_state).cancelled() != asio::cancellation_type::none)
        throw boost::system::system_error(asio::error::operation_aborted);
    }
  }

  // A row above the per-row limit: its largest fields become attachments (reference-tool.md §1.9).
  // With nothing eligible it goes out as it is and the destination decides (a refusal skips it).
  asio::awaitable<void> spill_row(event_row& row, std::size_t limit, batch_receipt& receipt) {
    auto chosen = choose_spill_fields(measure_fields(row.json), row.json.size(), limit);
    if (chosen.empty()) {
      log->warn("nothing to spill stream={} row={} size={} (no field >= 64 KiB): sent as it is", name, row.id,
                row.json.size());
      co_return;
    }
    for (const auto& field : chosen) {
      auto raw = field_raw(row.json, field);
      if (!raw) continue;
      auto ref = co_await sink.upload_attachment(field + ".json", "application/json", std::move(*raw));
      row.json = replace_field(row.json, field, ref);
      ++receipt.counts.spilled_fields;
    }
    row.hash = hash_row(row.id, row.json);
    log->info("spilled stream={} row={} fields={} size={}", name, row.id, chosen.size(), row.json.size());
  }

  void note_created(std::string_view row_json) {
    auto raw = field_raw(row_json, "created");
    if (!raw || raw->size() < 2 || raw->front() != '"') return;
    std::string c = raw->substr(1, raw->size() - 2);
    if (c > newest_created) newest_created = std::move(c);
  }

  // Copies the attachments a row references (reference-tool.md §1.9) and points the row at the copies.
  // Source key -> destination key is remembered in the state store (synced), so a re-sent row after a
  // resume reuses the copy instead of uploading again.
  asio::awaitable<void> copy_row_attachments(event_row& row, batch_receipt& receipt) {
    if (row.json.find("braintrust_attachment") == std::string::npos) co_return;
    boost::system::error_code ec;
    auto v = ferry::engine::parse_json(row.json, ec);
    if (ec) throw stream_error("stream " + name + " row id=" + row.id + ": row JSON does not parse: " + ec.message());
    std::vector<boost::json::object*> refs;
    std::vector<boost::json::value*> todo{&v};
    while (!todo.empty()) {
      auto* cur = todo.back();
      todo.pop_back();
      if (cur->is_array()) {
        for (auto& x : cur->as_array()) todo.push_back(&x);
      } else if (cur->is_object()) {
        auto& o = cur->as_object();
        auto str = [&](std::string_view k) { auto* f = o.if_contains(k); return f && f->is_string(); };
        if (str("type") && o.at("type").as_string() == "braintrust_attachment" && str("key") && str("filename") &&
            str("content_type")) {
          refs.push_back(&o);
          continue;  // references are not recursed into
        }
        for (auto& kv : o) todo.push_back(&kv.value());
      }
    }
    if (refs.empty()) co_return;
    auto& st = store.state();
    for (auto* o : refs) {
      std::string key(o->at("key").as_string());
      auto dest_key = st.get_id("attachment", key);
      if (!dest_key) {
        std::string filename(o->at("filename").as_string()), content_type(o->at("content_type").as_string());
        auto bytes = co_await source.download_attachment(key, filename, content_type, opts.attachment_max_bytes);
        auto ref_text = co_await sink.upload_attachment(filename, content_type, std::move(bytes));
        auto ref = ferry::engine::parse_json(ref_text);
        dest_key = std::string(ref.as_object().at("key").as_string());
        st.put_id("attachment", key, *dest_key);
        ++receipt.counts.attachments_copied;
      }
      (*o)["key"] = *dest_key;
    }
    row.json = boost::json::serialize(v);
    row.hash = hash_row(row.id, row.json);
  }

  // Rows [begin, end) in one request: /logs3, or /logs3/overflow when the body is above the
  // destination's stated payload cap (or `force_overflow`). A 413 halves the range; a lone row refused
  // directly goes once more through overflow when the destination offers it (a limit below the stated
  // cap, e.g. a proxy's); a lone row still refused cannot be written at all: it is marked in `skipped`,
  // named once in the result, and the batch goes on.
  asio::awaitable<std::uint64_t> send_range(batch& b, std::size_t begin, std::size_t end, batch_receipt& receipt,
                                            std::vector<char>& skipped, bool force_overflow = false) {
    auto body = logs3_body(b.rows, begin, end);
    const std::size_t body_size = body.size();
    // The first attempt takes the body itself; a retry builds it again from the rows (no copy per attempt,
    // one body at a time: the one the budget is charged with).
    auto attempt_body = [&]() { return body.empty() ? logs3_body(b.rows, begin, end) : std::exchange(body, std::string()); };
    auto sending = opts.budget ? opts.budget->charge(body_size) : held_bytes{};
    const bool overflow = opts.overflow_above > 0 && (force_overflow || body_size > opts.overflow_above);
    auto started = clk.now();
    // (No co_await inside a conditional expression: GCC 12 miscompiles it.)
    call_result r;
    if (overflow) {
      const auto request = overflow_request(b.rows, begin, end, body_size);
      r = co_await with_retries("POST /logs3/overflow", [&]() { return sink.logs3_overflow(attempt_body(), request); });
    } else {
      r = co_await with_retries("POST /logs3", [&]() { return sink.logs3(attempt_body()); });
    }
    if (progress) progress->add_requests();
    if (r.outcome == engine::io_outcome::ok) {
      // Only a real acknowledgement lets the batch commit (and so the cursor move).
      if (auto why = logs3_ack_problem(r.body); !why.empty())
        throw stream_error("stream " + name + " batch=" + std::to_string(b.seq) + " keys " + b.first_key() + ".." +
                           b.last_key() + ": POST /logs3 answered HTTP " + std::to_string(r.status) + " but " + why +
                           " (the batch is not counted as written)");
      if (overflow) log->info("overflow stream={} batch={} rows={} bytes={}", name, b.seq, end - begin, body_size);
      write_sem.set_capacity(write_aimd.on_success(clk.now() - started, clk.now()));
      co_return body_size;
    }
    if (r.status == 413) {
      if (end - begin >= 2) {
        auto [l, rr] = split_range(begin, end);
        log->info("split stream={} batch={} rows={} (413)", name, b.seq, end - begin);
        auto a = co_await send_range(b, l.first, l.second, receipt, skipped);
        auto c = co_await send_range(b, rr.first, rr.second, receipt, skipped);
        co_return a + c;
      }
      if (!overflow && opts.overflow_above > 0) {
        log->info("413 on a lone row stream={} batch={} bytes={}: through /logs3/overflow", name, b.seq, body_size);
        co_return co_await send_range(b, begin, end, receipt, skipped, true);
      }
      const auto& row = b.rows[begin];
      skipped[begin] = 1;
      ++receipt.counts.unwritable_rows;
      std::string line = "stream " + name + " row id=" + row.id + " (" + std::to_string(row.json.size()) +
                         " bytes, key " + row.key + ") could not be written: the destination refused it alone (413" +
                         (overflow ? " through /logs3/overflow" : opts.overflow_above ? "" : "; it states no overflow cap") +
                         (r.error.empty() ? "" : ": " + excerpt(r.error, 160)) + "); the stream went on past it";
      log->error("{}", line);
      if (++unwritable_count <= max_unwritable_lines) unwritable.push_back(std::move(line));
      co_return 0;
    }
    if (r.outcome == engine::io_outcome::throttled) write_sem.set_capacity(write_aimd.on_throttle(clk.now()));
    throw stream_error("stream " + name + " batch=" + std::to_string(b.seq) + " keys " + b.first_key() + ".." +
                       b.last_key() + ": POST /logs3" + (overflow ? " (overflow upload)" : "") + " failed: " +
                       to_attempt(r).detail + auth_hint(r.status, false));
  }

  // The acknowledged batches that can be committed (every earlier one was) go into one synced commit:
  // now when `now` or when no other batch is unapplied (no acknowledgement will follow soon), else once
  // opts.commit_interval has passed since the previous commit (stream_options::commit_interval).
  void commit_acknowledged(bool now) {
    for (auto& r : committer.take_ready()) acknowledged.push_back(std::move(r));
    if (acknowledged.empty()) return;
    if (!now && !unapplied.empty() && clk.now() - last_commit < opts.commit_interval) return;
    auto receipts = std::move(acknowledged);  // (a failed commit is not applied twice)
    acknowledged.clear();
    store.commit(state, receipts);
    last_commit = clk.now();
  }

  asio::awaitable<void> writer(engine::bounded_channel<held_batch>& batches) {
    co_await asio::this_coro::reset_cancellation_state(asio::enable_terminal_cancellation());
    // (the batch's budget bytes go back when `item` goes, once the batch was acknowledged)
    while (auto item = co_await batches.async_receive()) {
      batch* b = &item->rows;
      co_await wait_for_earlier_versions(b->seq);
      if (progress) progress->set_write_concurrency(write_sem.capacity());
      auto permit = co_await write_sem.acquire();
      batch_receipt receipt;
      receipt.seq = b->seq;
      receipt.counts.rows = b->rows.size();
      receipt.counts.batches = 1;
      receipt.first_key = b->first_key();
      receipt.last_key = b->last_key();
      receipt.last_id = b->rows.back().id;
      store.begin_batch(state.stream_id, {b->seq, b->first_key(), b->last_key(), b->rows.size()});
      if (opts.copy_attachments)
        for (auto& row : b->rows) co_await copy_row_attachments(row, receipt);
      for (auto& row : b->rows)
        if (row.json.size() > opts.per_row_max_bytes) co_await spill_row(row, opts.per_row_max_bytes, receipt);
      std::vector<char> skipped(b->rows.size(), 0);
      receipt.counts.bytes = co_await send_range(*b, 0, b->rows.size(), receipt, skipped);
      permit.release();
      unapplied.erase(b->seq);
      applied.cancel();
      receipt.counts.rows -= receipt.counts.unwritable_rows;
      for (std::size_t i = 0; i < b->rows.size(); ++i) {
        const auto& row = b->rows[i];
        if (skipped[i]) continue;
        if (opts.track_created) note_created(row.json);
        receipt.digest.add(row.hash);
        if (row.is_delete) ++receipt.counts.deletes;
        if (row.is_merge) ++receipt.counts.merges;
        if (row.origin == event_row::origin_kind::mapped) ++receipt.counts.origins_mapped;
        if (row.origin == event_row::origin_kind::unmapped) ++receipt.counts.origins_unmapped;
        if (!resend_until.empty() && row.key <= resend_until) ++receipt.counts.resent_rows;
      }
      if (catching_up) receipt.counts.caught_up_rows = receipt.counts.rows;
      const auto rows = receipt.counts.rows;
      const auto bytes = receipt.counts.bytes;
      committer.ack(std::move(receipt));
      commit_acknowledged(false);
      if (progress) {
        progress->add_rows(rows);
        progress->add_bytes(bytes);
      }
    }
  }
};

}  // namespace

asio::awaitable<stream_result> run_stream(stream_spec spec, stream_options opts, event_source& source, event_sink& sink,
                                          checkpoint_store& store, const engine::clock& clk,
                                          engine::stream_progress* progress) {
  auto ex = co_await asio::this_coro::executor;
  stream_ctx ctx(ex, std::move(spec), std::move(opts), source, sink, store, clk, progress);
  if (ctx.spec.source_ids.empty()) throw std::invalid_argument("run_stream: no source ids");
  if (auto s = store.load(ctx.spec.stream_id)) {
    ctx.state = std::move(*s);
  } else {
    ctx.state.stream_id = ctx.spec.stream_id;
    ctx.state.kind = std::string(resource_name(ctx.spec.kind));
    ctx.state.source_ids = ctx.spec.source_ids;
  }
  ctx.committer = ordered_committer(ctx.state.next_seq);
  // Never terminal: a stream that reached its end before resumes at its committed cursor and copies
  // what the source received since (new rows, and updates: they come back with a newer key).
  ctx.catching_up = ctx.state.done;
  stream_result result;
  for (const auto& b : store.inflight(ctx.spec.stream_id))
    if (b.seq >= ctx.state.next_seq && b.last_key > ctx.resend_until) ctx.resend_until = b.last_key;
  if (!ctx.resend_until.empty())
    ctx.log->info("resume stream={} cursor={} resend_until={}", ctx.name, ctx.state.cursor, ctx.resend_until);

  std::exception_ptr failure;
  try {
    co_await ctx.preflight();
  } catch (...) {
    failure = std::current_exception();
  }

  if (!failure) {
    engine::bounded_channel<held_page> pages(ex, ctx.opts.page_channel_capacity);  // 0: handed over (slices)
    engine::bounded_channel<held_batch> batches(ex, std::max<std::size_t>(ctx.opts.batch_channel_capacity, 1));
    using op_type = decltype(asio::co_spawn(ex, std::declval<asio::awaitable<void>>(), asio::deferred));
    std::vector<op_type> ops;
    ops.push_back(asio::co_spawn(ex, ctx.reader(pages), asio::deferred));
    ops.push_back(asio::co_spawn(ex, ctx.batcher_stage(pages, batches), asio::deferred));
    for (std::size_t i = 0; i < std::max<std::size_t>(ctx.opts.max_inflight_batches, 1); ++i)
      ops.push_back(asio::co_spawn(ex, ctx.writer(batches), asio::deferred));
    auto [order, errors] = co_await asio::experimental::make_parallel_group(std::move(ops))
                               .async_wait(asio::experimental::wait_for_one_error(), asio::use_awaitable);
    (void)order;
    // The first real error wins; aborts are the consequence of it (or of a terminal shutdown).
    for (auto& e : errors)
      if (e && !engine::is_cancellation(e)) {
        failure = e;
        break;
      }
    if (!failure)
      for (auto& e : errors)
        if (e) {
          failure = e;
          break;
        }
    if (!failure) failure = ctx.reader_error;
    try {
      ctx.commit_acknowledged(true);  // whatever ended the run: what was acknowledged is committed
    } catch (...) {
      if (!failure) failure = std::current_exception();
    }
    if (!failure && ctx.reached_end && ctx.committer.waiting() == 0) {
      result.done = true;
      ctx.state.done = true;
      ctx.state.last_error.clear();
      store.save(ctx.state);
    }
  }
  if (failure) {
    result.error = one_line(engine::what_of(failure));
    if (engine::is_cancellation(failure)) {
      ctx.log->debug("stream aborted stream={} cursor={}", ctx.name, ctx.state.cursor);
    } else {
      ctx.state.last_error = result.error;
      store.save(ctx.state);
      // The caller reports result.error once (ferry migrate: one short stderr line, the full text in the
      // report and the state): logging it here too printed it twice.
      ctx.log->debug("stream failed stream={} cursor={} error={}", ctx.name, ctx.state.cursor, result.error);
    }
  } else if (result.done) {
    store.save(ctx.state);
  }
  result.state = ctx.state;
  result.unwritable = std::move(ctx.unwritable);
  result.unwritable_count = ctx.unwritable_count;
  result.newest_created = std::move(ctx.newest_created);
  co_return result;
}

}  // namespace ferry::pipelines::streams
