// The copy loop: reader -> bounded channel -> writer, the cursor committed per acknowledged batch.
#include "pipelines/copy.hpp"

#include "pipelines/copy/copy_stream.hpp"
#include "pipelines/copy/verify.hpp"
#include "pipelines/migrate_config.hpp"

#include "../run/metrics.hpp"

#include "engine/bounded_channel.hpp"
#include "engine/log.hpp"
#include "engine/metrics.hpp"

#include <boost/json/serialize.hpp>
#include "engine/url.hpp"
#include "stores/state_store.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_future.hpp>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <csignal>
#include <thread>
#include <map>
#include <cstdlib>
#include <optional>
#include <ostream>

namespace ferry::pipelines {
namespace copy {

namespace asio = boost::asio;
namespace json = boost::json;

namespace {

constexpr std::string_view k_stream = "copy";

/// One page after the transform: what the writer sends as one sink batch.
struct batch {
  std::vector<json::object> rows;
  std::string first_cursor, last_cursor;  // source positions of the page's first and last rows
  std::uint64_t read_rows = 0;            // before the transform's filters
};

/// Test fault injection: FERRY_FAULT_COPY_KILL_AFTER_WRITE=N kills the process with SIGKILL right after
/// the sink acknowledged batch N and before its cursor is committed (the window a resume must cover).
std::uint64_t kill_after_write_seq() {
  const char* v = std::getenv("FERRY_FAULT_COPY_KILL_AFTER_WRITE");
  return v ? std::strtoull(v, nullptr, 10) : 0;
}

/// The copy's series (copy_observe), looked up once; null when there is no registry.
struct copy_series {
  engine::metric_counter* rows = nullptr;
  engine::metric_counter* bytes = nullptr;
  engine::metric_counter* filtered = nullptr;
  engine::metric_counter* reads = nullptr;
  engine::metric_counter* writes = nullptr;

  explicit copy_series(const copy_observe& o) {
    if (!o.metrics) return;
    auto& m = *o.metrics;
    rows = &m.counters("ferry_copy_rows_total", "rows the copy's sink acknowledged", {"from", "to"}).with({o.from_label, o.to_label});
    bytes = &m.counters("ferry_copy_bytes_total", "JSON bytes of the rows the sink acknowledged", {"from", "to"})
                 .with({o.from_label, o.to_label});
    filtered = &m.counters("ferry_copy_rows_filtered_total", "rows the transform's filters dropped", {"from", "to"})
                    .with({o.from_label, o.to_label});
    auto& req = m.counters("ferry_copy_requests_total", "source pages read and sink batches written", {"from", "to", "op"});
    reads = &req.with({o.from_label, o.to_label, "read"});
    writes = &req.with({o.from_label, o.to_label, "write"});
  }
};

struct copier {
  source& src;
  sink& dst;
  const transform* tf;
  stores::state_store& store;
  stores::stream_state state;
  std::size_t limit;
  const copy_observe& observe;
  copy_series series{observe};
  std::uint64_t filtered = 0;
  std::chrono::steady_clock::time_point last_progress = std::chrono::steady_clock::now();
  std::uint64_t rows_at_last_progress = state.counters.rows;

  asio::awaitable<void> read_pages(engine::bounded_channel<batch>& ch) {
    std::string cursor = state.cursor;
    for (;;) {
      auto p = src.read_after(cursor, limit);
      if (series.reads) series.reads->inc();
      batch b;
      b.read_rows = p.rows.size();
      if (!p.rows.empty()) {
        b.first_cursor = p.rows.front().cursor;
        b.last_cursor = cursor = p.after.empty() ? p.rows.back().cursor : p.after;
      }
      for (auto& r : p.rows) {
        if (tf && !tf->apply(r)) {
          ++filtered;
          if (series.filtered) series.filtered->inc();
          continue;
        }
        b.rows.push_back(std::move(r.fields));
      }
      if (b.read_rows > 0) co_await ch.async_send(std::move(b));
      if (p.end) break;
    }
    ch.close();
  }

  asio::awaitable<void> write_batches(engine::bounded_channel<batch>& ch) {
    const auto kill_seq = kill_after_write_seq();
    while (auto b = co_await ch.async_receive()) {
      const auto seq = state.next_seq;
      store.begin_batch(k_stream, seq, b->first_cursor, b->last_cursor, b->rows.size());
      if (!b->rows.empty()) dst.write_batch(seq, b->rows);  // returns on the sink's acknowledgement
      if (seq == kill_seq) std::raise(SIGKILL);
      state.cursor = b->last_cursor;
      state.next_seq = seq + 1;
      state.counters.rows += b->rows.size();
      state.counters.batches += 1;
      state.updated_at_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                                std::chrono::system_clock::now().time_since_epoch()).count();
      store.commit_batch(state, seq);
      count_written(*b);
      progress();
    }
  }

  void count_written(const batch& b) {
    if (!series.rows) return;
    series.rows->inc(b.rows.size());
    if (!b.rows.empty()) series.writes->inc();
    std::uint64_t bytes = 0;
    for (const auto& r : b.rows) bytes += json::serialize(r).size();
    series.bytes->inc(bytes);
  }

  /// One `copy progress` line when the interval passed: rows committed in all and rows/s since the last line.
  void progress() {
    const auto now = std::chrono::steady_clock::now();
    const auto elapsed = now - last_progress;
    if (elapsed < observe.progress_interval) return;
    const double secs = std::chrono::duration<double>(elapsed).count();
    const double rate = secs > 0 ? static_cast<double>(state.counters.rows - rows_at_last_progress) / secs : 0;
    engine::logger("pipeline")->info("copy progress rows={} rows_per_s={:.0f} batches={} cursor={}", state.counters.rows,
                                     rate, state.counters.batches, state.cursor);
    last_progress = now;
    rows_at_last_progress = state.counters.rows;
  }
};

/// Runs `aw` and closes the channel when it throws, so that its partner stops too.
asio::awaitable<void> closing_on_error(asio::awaitable<void> aw, engine::bounded_channel<batch>& ch) {
  try {
    co_await std::move(aw);
  } catch (...) {
    ch.close();
    throw;
  }
}

int print_plan(const copy_options& opts, const uri& from, const uri& to, const sink* dst,
               const std::optional<schema_plan>& schema, std::ostream& out) {
  out << "copy plan (dry run, nothing written)\n  from: " << from.redacted() << "\n  to:   " << to.redacted() << "\n";
  out << "  state dir: " << opts.state_dir << (std::filesystem::exists(opts.state_dir) ? " (exists: the copy resumes at its cursor)" : " (new)") << "\n";
  if (!opts.transform_file.empty()) out << "  transform: " << opts.transform_file << "\n";
  if (!dst) out << "  sink: created or reused on the first batch\n";
  else if (!schema) out << "  sink table: " << (dst->has_table() ? "exists" : "created from the first batch's fields") << "\n";
  if (!schema) return 0;
  out << "  sink table: created from the SQLite schema:\n";
  for (const auto& stmt : schema->ddl) out << stmt << ";\n";
  for (const auto& l : schema->lossy) out << "  lossy: " << l << "\n";
  if (!schema->lossy.empty())
    out << "  " << schema->lossy.size() << " lossy conversion(s): " << (opts.allow_lossy ? "accepted (--allow-lossy)" : "refused without --allow-lossy") << "\n";
  return schema->lossy.empty() || opts.allow_lossy ? 0 : 1;
}

int rollback(const copy_options& opts, const uri& from, const uri& to, std::ostream& out) {
  if (!std::filesystem::exists(opts.state_dir)) throw copy_error("rollback: no copy state in " + opts.state_dir);
  if (to.scheme == "jsonl") throw copy_error("rollback: " + to.redacted() + ": jsonl sinks are not rolled back (delete its part files)");
  if (to.scheme.starts_with("braintrust"))
    throw copy_error("rollback: " + to.redacted() + ": Braintrust sinks are not rolled back (delete the dataset or experiment, "
                     "or the rows, in Braintrust)");
  auto dst = open_sink(to);
  std::string table;
  {
    auto store = stores::state_store::open(opts.state_dir);
    store.check_and_record_meta({{"copy_from", from.redacted()}, {"copy_to", to.redacted()}});  // the same copy
    const auto meta = store.meta();
    const auto it = meta.find("copy_created_table");
    if (it == meta.end())
      throw copy_error("rollback: " + to.redacted() + ": the sink table existed before this copy, so its rows are not only "
                       "this copy's: nothing dropped (state dir " + opts.state_dir + " kept)");
    table = it->second;
    dst->drop_table();
  }
  std::filesystem::remove_all(opts.state_dir);
  out << "rollback: dropped table " << table << " of " << to.redacted() << ", removed state dir " << opts.state_dir << "\n";
  return 0;
}

}  // namespace

copy_counts copy_stream(source& src, sink& dst, const transform* tf, stores::state_store& store, std::size_t batch_rows,
                        std::size_t channel_pages, const std::string& where, const copy_observe& observe) {
  auto state = store.load_stream(k_stream).value_or(stores::stream_state{});
  state.stream_id = std::string(k_stream);
  state.kind = "copy";
  const auto inflight = store.inflight_batches(k_stream);
  if (state.next_seq == 1 && inflight.empty() && dst.holds_other_output())
    throw copy_error(where + ": holds part files of another copy (this state dir has written none): use an empty "
                     "directory, or the state dir that wrote them");
  copy_counts counts;
  for (const auto& e : inflight) counts.resent += e.row_count;
  state.counters.resent_rows += counts.resent;
  const auto rows_before = state.counters.rows;
  engine::logger("pipeline")->info("copy start to={} cursor={} resent_rows={}", where,
                                   state.cursor.empty() ? "(start)" : state.cursor, counts.resent);

  copier c{src, dst, tf, store, state, std::max<std::size_t>(batch_rows, 1), observe};
  asio::thread_pool pool(2);
  engine::bounded_channel<batch> ch(pool.get_executor(), std::max<std::size_t>(channel_pages, 1));
  auto reader = asio::co_spawn(asio::make_strand(pool), closing_on_error(c.read_pages(ch), ch), asio::use_future);
  auto writer = asio::co_spawn(asio::make_strand(pool), closing_on_error(c.write_batches(ch), ch), asio::use_future);
  std::exception_ptr failure;
  try {
    writer.get();
  } catch (...) {
    failure = std::current_exception();
  }
  try {
    reader.get();
  } catch (const engine::channel_closed_error&) {
    // the writer failed first: its error is the one to report
  } catch (...) {
    if (!failure) failure = std::current_exception();
  }
  pool.join();
  if (failure) {
    try {
      std::rethrow_exception(failure);
    } catch (const std::exception& e) {
      store.record_error(k_stream, engine::redact_url_passwords(e.what()));
      throw;
    }
  }
  store.mark_done(k_stream);
  counts.written = c.state.counters.rows - rows_before;
  counts.filtered = c.filtered;
  counts.total = c.state.counters.rows;
  return counts;
}

}  // namespace copy

using namespace copy;

namespace {

/// The side configs of braintrust:// connectors from the layered settings (null config: defaults).
struct copy_sides {
  std::optional<transports::side_config> source, dest;
  connector_context ctx;
  copy_sides(const copy_options& opts, engine::metrics_registry* metrics) {
    if (opts.config) {
      source = side_config_for(*opts.config, side_role::source);
      dest = side_config_for(*opts.config, side_role::destination);
    } else {
      source.emplace().name = "source";
      dest.emplace().name = "destination";
      const char* sk = std::getenv("BT_SOURCE_API_KEY");
      const char* dk = std::getenv("BT_DEST_API_KEY");
      source->api_key = sk ? sk : "";
      dest->api_key = dk ? dk : "";
    }
    ctx.source_side = &*source;
    ctx.dest_side = &*dest;
    ctx.metrics = metrics;
  }
};

std::string scheme_label(const uri& u) { return u.scheme.starts_with("braintrust") ? "braintrust" : u.scheme; }

std::atomic<bool> g_linger_stop{false};

/// --metrics-linger: the endpoint keeps serving the final values that long; SIGINT/SIGTERM end it.
void linger(std::chrono::milliseconds d, const std::string& url) {
  if (d.count() <= 0) return;
  engine::logger("pipeline")->info("metrics linger seconds={} url={}", d.count() / 1000.0, url);
  struct sigaction sa {}, old_int{}, old_term{};
  sa.sa_handler = [](int) { g_linger_stop = true; };
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, &old_int);
  sigaction(SIGTERM, &sa, &old_term);
  const auto end = std::chrono::steady_clock::now() + d;
  while (!g_linger_stop && std::chrono::steady_clock::now() < end) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  sigaction(SIGINT, &old_int, nullptr);
  sigaction(SIGTERM, &old_term, nullptr);
}

/// `--verify`: both sides read again and compared; DIFF lines and a summary on `out`; 1 on differences.
int run_verify(const copy_options& opts, const uri& from, const uri& to, const transform* tf, const sink& dst,
               const copy_sides& sides, std::ostream& out) {
  auto src = open_source(from, sides.ctx);
  connector_context back_ctx = sides.ctx;  // the sink read back with the sink's side (its key)
  back_ctx.source_side = sides.ctx.dest_side;
  auto back = open_source(to, back_ctx);
  const auto c = verify_copy(*src, tf, dst, *back, opts.batch_rows, out);
  out << "verify: " << c.expected << " rows expected (the source after the transform), " << c.read_back
      << " read back from " << to.redacted() << ": " << (c.differences ? std::to_string(c.differences) + " differences" : "equal")
      << "\n";
  return c.differences ? 1 : 0;
}

}  // namespace

int run_copy(const copy_options& opts, std::ostream& out) {
  engine::register_url_password(opts.from);
  engine::register_url_password(opts.to);
  const auto from = parse_uri(opts.from);
  const auto to = parse_uri(opts.to);
  if (opts.rollback) return rollback(opts, from, to, out);
  std::optional<transform> tf;
  if (!opts.transform_file.empty()) tf.emplace(transform::load(opts.transform_file));
  engine::metrics_registry registry;
  std::optional<metrics_service> metrics_http;
  if (!opts.metrics_addr.empty() && !opts.dry_run) {
    engine::add_process_metrics(registry);
    try {
      metrics_http.emplace(opts.metrics_addr, registry);
    } catch (const std::exception& e) {
      throw copy_error("--metrics-addr " + opts.metrics_addr + ": " + e.what());
    }
    engine::logger("pipeline")->info("metrics url={}", metrics_http->url());
  }
  const copy_sides sides(opts, metrics_http ? &registry : nullptr);
  auto src = open_source(from, sides.ctx);
  // A dry run opens no file sink (opening creates them); a PostgreSQL sink's session writes nothing.
  auto dst = opts.dry_run && to.scheme != "postgresql" ? nullptr : open_sink(to, sides.ctx);
  std::optional<schema_plan> schema;
  if (from.scheme == "sqlite" && to.scheme == "postgresql" && !dst->has_table())
    schema = sqlite_to_postgres_schema(from, to.param("table"));
  if (opts.dry_run) return print_plan(opts, from, to, dst.get(), schema, out);
  if (schema) {
    if (!schema->lossy.empty() && !opts.allow_lossy)
      throw copy_error(to.redacted() + ": the schema conversion is lossy: " + schema->lossy.front() + " (" +
                       std::to_string(schema->lossy.size()) + " in all, listed by --dry-run; --allow-lossy accepts them)");
    dst->create_with(schema->ddl);
  }

  std::map<std::string, std::string> fingerprint{
      {"copy_from", from.redacted()}, {"copy_to", to.redacted()}, {"copy_transform", opts.transform_file}};
  if (!dst->has_table()) fingerprint["copy_created_table"] = to.param("table");  // before the batch that creates it
  auto store = stores::state_store::open(opts.state_dir);
  store.check_and_record_meta(fingerprint);
  copy_observe observe;
  observe.progress_interval = opts.progress_interval;
  observe.metrics = metrics_http ? &registry : nullptr;
  observe.from_label = scheme_label(from);
  observe.to_label = scheme_label(to);
  const auto counts = copy_stream(*src, *dst, tf ? &*tf : nullptr, store, opts.batch_rows, opts.channel_pages,
                                  to.redacted(), observe);
  out << "copy: " << counts.written << " rows written (" << counts.filtered << " filtered out, " << counts.resent
      << " re-sent after a resume), " << counts.total << " in total, from " << from.redacted()
      << " to " << to.redacted() << std::endl;
  src.reset();
  const int rc = opts.verify ? run_verify(opts, from, to, tf ? &*tf : nullptr, *dst, sides, out) : 0;
  if (metrics_http) linger(opts.metrics_linger, metrics_http->url());
  return rc;
}

}  // namespace ferry::pipelines
