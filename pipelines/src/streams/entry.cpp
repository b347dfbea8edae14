#include "pipelines/streams/entry.hpp"

#include "pipelines/streams/lag.hpp"

#include <boost/json.hpp>

#include <algorithm>
#include <chrono>
#include <ostream>

namespace ferry::pipelines::streams {

std::shared_ptr<engine::memory_budget> make_memory_budget(const migrate_config& cfg) {
  return std::make_shared<engine::memory_budget>(stream_rows_budget(cfg.memory_budget_bytes));
}

std::uint64_t stream_rows_budget(std::uint64_t memory_budget_bytes) { return memory_budget_bytes / 2; }

stream_options options_from_config(const migrate_config& cfg, stream_kind kind, std::optional<std::uint64_t> payload_max_bytes,
                                   std::shared_ptr<engine::memory_budget> budget) {
  stream_options o;
  o.budget = std::move(budget);
  int limit = kind == stream_kind::project_logs ? cfg.logs_fetch_limit
              : kind == stream_kind::experiment ? cfg.experiment_fetch_limit
                                                : cfg.dataset_fetch_limit;
  o.fetch_limit = static_cast<std::size_t>(std::max(limit, 1));
  o.min_fetch_limit = static_cast<std::size_t>(std::max(cfg.min_fetch_limit, 1));
  o.created_after = cfg.created_after;
  o.created_before = cfg.created_before;
  o.batch.max_rows = static_cast<std::size_t>(std::max(cfg.insert_batch_rows, 1));
  std::uint64_t cap = cfg.insert_max_request_bytes;
  if (payload_max_bytes && *payload_max_bytes > 0) {
    cap = std::min(cap, *payload_max_bytes);
    o.overflow_above = static_cast<std::size_t>(*payload_max_bytes);  // larger bodies: /logs3/overflow
  }
  o.batch.max_bytes = static_cast<std::size_t>(static_cast<double>(cap) * cfg.insert_request_headroom);
  // Memory: a stream holds up to (batch channel + in-flight) batches, each alive ~4 times over (its
  // rows, the /logs3 body, the copy kept for a retry, the serialized request), plus its pages. Its share
  // of the budget caps the batch bytes (never below 256 KiB; rows larger than that still go alone).
  const std::uint64_t share = cfg.memory_budget_bytes / static_cast<std::uint64_t>(std::max(cfg.max_concurrent_streams, 1));
  const std::uint64_t copies = 4 * (o.batch_channel_capacity + o.max_inflight_batches) + 2 * (o.page_channel_capacity + 1);
  o.batch.max_bytes = static_cast<std::size_t>(
      std::min<std::uint64_t>(o.batch.max_bytes, std::max<std::uint64_t>(share / copies, 256u << 10)));
  o.track_created = cfg.follow;  // the lag in seconds (lag.hpp)
  o.copy_attachments = cfg.copy_attachments;
  o.attachment_max_bytes = cfg.attachment_max_bytes;
  o.retry = side_config_for(cfg, side_role::source).retry();  // the sides' one retry policy (N + 1 attempts)
  return o;
}

slice_config slicing_from_config(const migrate_config& cfg) {
  slice_config sc;
  sc.max_slices = static_cast<std::size_t>(std::max(cfg.max_slices_per_stream, 1));
  sc.max_concurrent = static_cast<std::size_t>(std::max(cfg.max_concurrent_requests, 1));
  sc.min_slice_rows = static_cast<std::size_t>(std::max(cfg.min_slice_rows, 1));
  sc.min_source_latency = std::chrono::milliseconds(std::max(cfg.slice_min_latency_ms, 0));
  return sc;
}

int run_status(const std::string& state_dir, bool json, std::ostream& out, std::ostream& err) {
  try {
    auto st = stores::state_store::open_read_only(state_dir);  // beside a running migration, on a full disk
    checkpoint_store cs(st);
    auto all = cs.all();
    const auto lags = load_lags(st);  // --follow runs: the last round's lag per stream
    if (json) {
      boost::json::array arr;
      for (auto& s : all) {
        boost::json::object o;
        o["stream"] = s.stream_id;
        o["kind"] = s.kind;
        o["cursor"] = s.cursor;
        add_counters(o, s.counters);
        o["inflight_batches"] = cs.inflight(s.stream_id).size();
        o["done"] = s.done;
        o["digest"] = s.digest.hex();
        o["last_error"] = s.last_error;
        if (auto l = lags.find(s.stream_id); l != lags.end()) {
          o["lag_rows"] = l->second.rows;
          o["lag_seconds"] = l->second.seconds ? boost::json::value(*l->second.seconds) : boost::json::value(nullptr);
        }
        arr.push_back(std::move(o));
      }
      out << boost::json::serialize(arr) << '\n';
    } else {
      if (all.empty()) out << "no streams recorded in " << state_dir << '\n';
      for (auto& s : all) {
        out << s.stream_id << (s.done ? " done" : " pending") << " rows=" << s.counters.rows << " bytes=" << s.counters.bytes
            << " batches=" << s.counters.batches << " resent=" << s.counters.resent_rows
            << " caught_up=" << s.counters.caught_up_rows << " cursor=" << s.cursor.substr(0, 24);
        if (auto l = lags.find(s.stream_id); l != lags.end()) out << ' ' << describe(l->second);
        if (s.counters.unwritable_rows) out << " unwritable=" << s.counters.unwritable_rows;
        if (!s.last_error.empty()) out << " error=" << s.last_error;
        out << '\n';
      }
    }
    return 0;
  } catch (const std::exception& e) {
    err << "ferry status: " << e.what() << '\n';
    return 1;
  }
}

}  // namespace ferry::pipelines::streams
