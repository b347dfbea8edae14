#include "pipelines/streams/checkpoint_store.hpp"

#include <boost/json.hpp>

#include <chrono>

namespace ferry::pipelines::streams {

namespace json = boost::json;

void add_counters(json::object& o, const stream_counters& c) {
  for (const auto& f : stores::counter_fields) o[f.name] = c.*f.member;
}

std::optional<stream_state> checkpoint_store::load(std::string_view stream_id) const {
  return st_.load_stream(stream_id);
}

std::vector<stream_state> checkpoint_store::all() const {
  return st_.list_streams();
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
    s.counters += r.counts;
    s.digest.add(r.digest);
  }
  s.updated_at_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                        std::chrono::system_clock::now().time_since_epoch()).count();
  st_.commit_batch(s, receipts.back().seq);
}

void checkpoint_store::save(stream_state& s) {
  s.updated_at_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                        std::chrono::system_clock::now().time_since_epoch()).count();
  st_.save_stream(s);
}

}  // namespace ferry::pipelines::streams
