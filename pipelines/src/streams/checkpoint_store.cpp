#include "pipelines/streams/checkpoint_store.hpp"

#include <boost/json.hpp>

#include <chrono>
#include <ctime>

namespace ferry::pipelines::streams {

namespace json = boost::json;

namespace {
constexpr std::string_view cf_state = "stream_state";
constexpr std::string_view cf_inflight = "stream_inflight";
constexpr std::string_view cf_journal = "stream_journal";
constexpr std::string_view cf_meta = "stream_meta";

std::string seq_key(std::string_view stream, std::uint64_t seq) {
  std::string k(stream);
  k += '\0';
  k += stores::be64(seq);
  return k;
}
std::string prefix(std::string_view stream) {
  std::string k(stream);
  k += '\0';
  return k;
}
std::string prefix_end(std::string_view stream) {
  std::string k(stream);
  k += '\1';
  return k;
}
std::string now_iso() {
  auto t = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}
std::uint64_t u64(const json::object& o, std::string_view k) {
  auto it = o.find(k);
  if (it == o.end()) return 0;
  return it->value().to_number<std::uint64_t>();
}
std::string str(const json::object& o, std::string_view k) {
  auto it = o.find(k);
  if (it == o.end() || !it->value().is_string()) return {};
  return std::string(it->value().as_string());
}
bool boolean(const json::object& o, std::string_view k) {
  auto it = o.find(k);
  return it != o.end() && it->value().is_bool() && it->value().as_bool();
}
}  // namespace

std::vector<std::string> checkpoint_store::column_families() {
  return {std::string(cf_state), std::string(cf_inflight), std::string(cf_journal), std::string(cf_meta)};
}

std::string to_json(const stream_state& s) {
  json::object o;
  o["stream_id"] = s.stream_id;
  o["kind"] = s.kind;
  json::array ids;
  for (auto& i : s.source_ids) ids.emplace_back(i);
  o["source_ids"] = std::move(ids);
  o["cursor"] = s.cursor;
  o["cursor_inclusive"] = s.cursor_inclusive;
  o["preflight_done"] = s.preflight_done;
  o["done"] = s.done;
  o["next_seq"] = s.next_seq;
  json::object c;
  c["rows"] = s.counters.rows;
  c["bytes"] = s.counters.bytes;
  c["batches"] = s.counters.batches;
  c["deletes"] = s.counters.deletes;
  c["merges"] = s.counters.merges;
  c["resent_rows"] = s.counters.resent_rows;
  c["spilled_fields"] = s.counters.spilled_fields;
  c["attachments_copied"] = s.counters.attachments_copied;
  o["counters"] = std::move(c);
  o["digest"] = s.digest.hex();
  o["last_error"] = s.last_error;
  o["updated"] = s.updated;
  return json::serialize(o);
}

stream_state stream_state_from_json(std::string_view text) {
  auto v = json::parse(text);
  auto& o = v.as_object();
  stream_state s;
  s.stream_id = str(o, "stream_id");
  s.kind = str(o, "kind");
  if (auto it = o.find("source_ids"); it != o.end() && it->value().is_array())
    for (auto& i : it->value().as_array())
      if (i.is_string()) s.source_ids.emplace_back(i.as_string());
  s.cursor = str(o, "cursor");
  s.cursor_inclusive = boolean(o, "cursor_inclusive");
  s.preflight_done = boolean(o, "preflight_done");
  s.done = boolean(o, "done");
  s.next_seq = u64(o, "next_seq");
  if (s.next_seq == 0) s.next_seq = 1;
  if (auto it = o.find("counters"); it != o.end() && it->value().is_object()) {
    auto& c = it->value().as_object();
    s.counters = {u64(c, "rows"),    u64(c, "bytes"),       u64(c, "batches"),        u64(c, "deletes"),
                  u64(c, "merges"),  u64(c, "resent_rows"), u64(c, "spilled_fields"), u64(c, "attachments_copied")};
  }
  if (auto d = digest256::from_hex(str(o, "digest"))) s.digest = *d;
  s.last_error = str(o, "last_error");
  s.updated = str(o, "updated");
  return s;
}

std::optional<stream_state> checkpoint_store::load(std::string_view stream_id) const {
  auto v = kv_.get(cf_state, stream_id);
  if (!v) return std::nullopt;
  return stream_state_from_json(*v);
}

std::vector<stream_state> checkpoint_store::all() const {
  std::vector<stream_state> out;
  kv_.scan(cf_state, "", "", [&](std::string_view, std::string_view v) {
    out.push_back(stream_state_from_json(v));
    return true;
  });
  return out;
}

std::vector<inflight_batch> checkpoint_store::inflight(std::string_view stream_id) const {
  std::vector<inflight_batch> out;
  kv_.scan(cf_inflight, prefix(stream_id), prefix_end(stream_id), [&](std::string_view, std::string_view v) {
    auto o = json::parse(v).as_object();
    out.push_back({u64(o, "seq"), str(o, "first_key"), str(o, "last_key"), u64(o, "rows")});
    return true;
  });
  return out;
}

void checkpoint_store::begin_batch(std::string_view stream_id, const inflight_batch& b) {
  json::object o;
  o["seq"] = b.seq;
  o["first_key"] = b.first_key;
  o["last_key"] = b.last_key;
  o["rows"] = b.rows;
  kv_.put(cf_inflight, seq_key(stream_id, b.seq), json::serialize(o), false);
}

void checkpoint_store::commit(stream_state& s, const std::vector<batch_receipt>& receipts) {
  stores::write_batch wb;
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
    json::object j;
    j["seq"] = r.seq;
    j["rows"] = r.rows;
    j["bytes"] = r.bytes;
    j["first_key"] = r.first_key;
    j["last_key"] = r.last_key;
    j["last_id"] = r.last_id;
    j["resent_rows"] = r.resent_rows;
    j["digest"] = r.digest.hex();
    wb.put(cf_journal, seq_key(s.stream_id, r.seq), json::serialize(j));
    wb.del(cf_inflight, seq_key(s.stream_id, r.seq));
  }
  s.updated = now_iso();
  wb.put(cf_state, s.stream_id, to_json(s));
  kv_.write(wb, true);
}

void checkpoint_store::save(stream_state& s) {
  s.updated = now_iso();
  stores::write_batch wb;
  wb.put(cf_state, s.stream_id, to_json(s));
  kv_.write(wb, true);
}

std::optional<std::string> checkpoint_store::check_fingerprint(std::string_view fp) {
  auto cur = kv_.get(cf_meta, "run/fingerprint");
  if (!cur) {
    kv_.put(cf_meta, "run/fingerprint", fp, true);
    return std::nullopt;
  }
  if (*cur == fp) return std::nullopt;
  return cur;
}

std::optional<std::string> checkpoint_store::meta_get(std::string_view key) const { return kv_.get(cf_meta, key); }
void checkpoint_store::meta_put(std::string_view key, std::string_view value) { kv_.put(cf_meta, key, value, true); }

}  // namespace ferry::pipelines::streams
