#include "pipelines/streams/checkpoint_store.hpp"

#include <boost/json.hpp>

#include <chrono>

namespace ferry::pipelines::streams {

namespace json = boost::json;

void add_counters(json::object& o, const stream_counters& c) {
  for (const auto& f : stores::counter_fields) o[f.name] = c.*f.member;
}

namespace {

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

stream_state slice_view(const stream_state& parent, std::size_t index, const std::string& slice_id) {
  const auto& sl = parent.slices.at(index);
  stream_state s;
  s.stream_id = slice_id;
  s.kind = parent.kind;
  s.source_ids = parent.source_ids;
  s.cursor = sl.cursor;
  s.cursor_inclusive = sl.cursor_inclusive;
  s.preflight_done = sl.preflight_done;
  s.done = sl.done;
  s.next_seq = sl.next_seq;
  s.counters = sl.counters;
  s.digest = sl.digest;
  s.updated_at_ms = parent.updated_at_ms;
  return s;
}

void checkpoint_store::merge_slice(stream_state& parent, std::size_t index, const stream_state& s) {
  auto& sl = parent.slices.at(index);
  sl.cursor = s.cursor;
  sl.cursor_inclusive = s.cursor_inclusive;
  sl.preflight_done = s.preflight_done;
  sl.done = s.done;
  sl.next_seq = s.next_seq;
  sl.counters = s.counters;
  sl.digest = s.digest;
  parent.counters = {};
  parent.digest = {};
  parent.done = true;
  for (const auto& x : parent.slices) {
    parent.counters += x.counters;
    parent.digest.add(x.digest);
    parent.done = parent.done && x.done;
  }
  if (!s.last_error.empty()) parent.last_error = s.last_error;
  parent.updated_at_ms = s.updated_at_ms;
}

std::optional<std::pair<std::string, std::size_t>> checkpoint_store::slice_of(std::string_view stream_id) const {
  static constexpr std::string_view marker = "#slice";
  const auto at = stream_id.rfind(marker);
  if (at == std::string_view::npos || at + marker.size() == stream_id.size()) return std::nullopt;
  std::size_t index = 0;
  for (char c : stream_id.substr(at + marker.size())) {
    if (c < '0' || c > '9' || index > 1'000'000) return std::nullopt;
    index = index * 10 + static_cast<std::size_t>(c - '0');
  }
  std::string parent(stream_id.substr(0, at));
  auto p = st_.load_stream(parent);
  if (!p || index >= p->slices.size()) return std::nullopt;
  return std::make_pair(std::move(parent), index);
}

std::optional<stream_state> checkpoint_store::load(std::string_view stream_id) const {
  if (auto sl = slice_of(stream_id)) {
    std::lock_guard lk(mu_);
    return slice_view(*st_.load_stream(sl->first), sl->second, std::string(stream_id));
  }
  return st_.load_stream(stream_id);
}

std::vector<stream_state> checkpoint_store::all() const {
  return st_.list_streams();
}

std::vector<inflight_batch> checkpoint_store::inflight(std::string_view stream_id) const {
  std::vector<inflight_batch> out;
  for (auto& b : st_.inflight_batches(stream_id)) out.push_back({b.batch_seq, b.first_key, b.last_key, b.row_count});
  // A sliced stream's own id journals nothing: its batches are its slices' (for `ferry status`).
  if (auto s = st_.load_stream(stream_id); s && !s->slices.empty())
    for (std::size_t i = 0; i < s->slices.size(); ++i)
      for (auto& b : st_.inflight_batches(stores::slice_stream_id(stream_id, i)))
        out.push_back({b.batch_seq, b.first_key, b.last_key, b.row_count});
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
  s.updated_at_ms = now_ms();
  if (auto sl = slice_of(s.stream_id)) {
    std::lock_guard lk(mu_);
    auto parent = *st_.load_stream(sl->first);
    merge_slice(parent, sl->second, s);
    stores::commit_extras x;
    x.journal_stream_id = s.stream_id;
    st_.commit_batch(parent, receipts.back().seq, x);
    return;
  }
  st_.commit_batch(s, receipts.back().seq);
}

void checkpoint_store::save(stream_state& s) {
  s.updated_at_ms = now_ms();
  if (auto sl = slice_of(s.stream_id)) {
    std::lock_guard lk(mu_);
    auto parent = *st_.load_stream(sl->first);
    merge_slice(parent, sl->second, s);
    st_.save_stream(parent);
    return;
  }
  st_.save_stream(s);
}

bool checkpoint_store::change_layout(std::string_view stream_id, const std::function<bool(stream_state&)>& change) {
  std::lock_guard lk(mu_);
  auto s = st_.load_stream(stream_id);
  if (!s || !change(*s)) return false;
  s->updated_at_ms = now_ms();
  st_.save_stream(*s);
  return true;
}

}  // namespace ferry::pipelines::streams
