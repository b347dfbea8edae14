#include "pipelines/streams/checkpoint_store.hpp"

#include <boost/json.hpp>

#include <chrono>

namespace ferry::pipelines::streams {

namespace json = boost::json;

namespace {
std::uint64_t u64(const json::object& o, std::string_view k) {
  auto it = o.find(k);
  if (it == o.end() || !it->value().is_number()) return 0;
  return it->value().to_number<std::uint64_t>();
}
bool boolean(const json::object& o, std::string_view k) {
  auto it = o.find(k);
  return it != o.end() && it->value().is_bool() && it->value().as_bool();
}
}  // namespace

stores::stream_state to_store(const stream_state& s) {
  stores::stream_state o;
  o.stream_id = s.stream_id;
  o.kind = s.kind;
  for (std::size_t i = 0; i < s.source_ids.size(); ++i) o.source_object += (i ? "," : "") + s.source_ids[i];
  o.last_key = s.cursor;
  o.done = s.done;
  o.rows_read = s.counters.rows;
  o.rows_written = s.counters.rows;
  o.bytes_written = s.counters.bytes;
  o.batches = s.counters.batches;
  o.resent_rows = s.counters.resent_rows;
  o.digest = s.digest.w;
  o.last_error = s.last_error;
  o.updated_at_ms = s.updated_at_ms;
  json::object x;
  x["cursor_inclusive"] = s.cursor_inclusive;
  x["preflight_done"] = s.preflight_done;
  x["next_seq"] = s.next_seq;
  x["deletes"] = s.counters.deletes;
  x["merges"] = s.counters.merges;
  x["spilled_fields"] = s.counters.spilled_fields;
  x["attachments_copied"] = s.counters.attachments_copied;
  json::array ids;
  for (auto& i : s.source_ids) ids.emplace_back(i);
  x["source_ids"] = std::move(ids);
  o.extra = json::serialize(x);
  return o;
}

void add_counters(json::object& o, const stream_counters& c) {
  o["rows"] = c.rows;
  o["bytes"] = c.bytes;
  o["batches"] = c.batches;
  o["resent_rows"] = c.resent_rows;
  o["deletes"] = c.deletes;
  o["merges"] = c.merges;
  o["spilled_fields"] = c.spilled_fields;
  o["attachments_copied"] = c.attachments_copied;
}

stream_state from_store(const stores::stream_state& o) {
  stream_state s;
  s.stream_id = o.stream_id;
  s.kind = o.kind;
  s.cursor = o.last_key;
  s.done = o.done;
  s.counters.rows = o.rows_written;
  s.counters.bytes = o.bytes_written;
  s.counters.batches = o.batches;
  s.counters.resent_rows = o.resent_rows;
  s.digest.w = o.digest;
  s.last_error = o.last_error;
  s.updated_at_ms = o.updated_at_ms;
  s.next_seq = o.batches + 1;
  if (!o.extra.empty()) {
    boost::system::error_code ec;
    auto v = json::parse(o.extra, ec);
    if (!ec && v.is_object()) {
      auto& x = v.as_object();
      s.cursor_inclusive = boolean(x, "cursor_inclusive");
      s.preflight_done = boolean(x, "preflight_done");
      if (auto n = u64(x, "next_seq")) s.next_seq = n;
      s.counters.deletes = u64(x, "deletes");
      s.counters.merges = u64(x, "merges");
      s.counters.spilled_fields = u64(x, "spilled_fields");
      s.counters.attachments_copied = u64(x, "attachments_copied");
      if (auto it = x.find("source_ids"); it != x.end() && it->value().is_array())
        for (auto& i : it->value().as_array())
          if (i.is_string()) s.source_ids.emplace_back(i.as_string());
    }
  }
  return s;
}

std::optional<stream_state> checkpoint_store::load(std::string_view stream_id) const {
  auto s = st_.load_stream(stream_id);
  if (!s) return std::nullopt;
  return from_store(*s);
}

std::vector<stream_state> checkpoint_store::all() const {
  std::vector<stream_state> out;
  for (auto& s : st_.list_streams()) out.push_back(from_store(s));
  return out;
}

std::vector<inflight_batch> checkpoint_store::inflight(std::string_view stream_id) const {
  std::vector<inflight_batch> out;
  for (auto& b : st_.inflight_batches(stream_id)) out.push_back({b.batch_seq, b.first_key, b.last_key, b.row_count});
  return out;
}

void checkpoint_store::begin_batch(std::string_view stream_id, const inflight_batch& b) {
  st_.begin_batch(stream_id, b.seq, b.first_key, b.last_key, b.rows, false);
}

void checkpoint_store::commit(stream_state& s, const std::vector<batch_receipt>& receipts) {
  if (receipts.empty()) return;
  for (const auto& r : receipts) {
    s.cursor = r.last_key;
    s.cursor_inclusive = false;
    s.next_seq = r.seq + 1;
    s.counters.rows += r.rows;
    s.counters.bytes += r.bytes;
    s.counters.batches += 1;
    s.counters.deletes += r.deletes;
    s.counters.merges += r.merges;
    s.counters.resent_rows += r.resent_rows;
    s.counters.spilled_fields += r.spilled_fields;
    s.counters.attachments_copied += r.attachments_copied;
    s.digest.add(r.digest);
  }
  s.updated_at_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                        std::chrono::system_clock::now().time_since_epoch()).count();
  st_.commit_batch(to_store(s), receipts.back().seq);
}

void checkpoint_store::save(stream_state& s) {
  s.updated_at_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                        std::chrono::system_clock::now().time_since_epoch()).count();
  st_.save_stream(to_store(s));
}

}  // namespace ferry::pipelines::streams
