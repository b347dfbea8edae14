// state_store: Ferry's migration state on a kv_store. Records are a compact binary encoding that
// starts with a format version byte; decoders ignore trailing bytes, so later versions may append
// fields without breaking older readers of the same major format.
#include "stores/state_store.hpp"

#include "engine/json_parse.hpp"
#include "engine/log.hpp"
#include "engine/url.hpp"

#include <boost/json.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <unordered_map>

namespace ferry::stores {

// ---- digest and counters -----------------------------------------------------------------------

void digest_add(digest256& d, const std::uint8_t* hash, std::size_t len) {
  if (len > 32) throw std::invalid_argument("digest_add: hash longer than 32 bytes");
  digest256 h{};
  for (std::size_t i = 0; i < len; ++i) h.w[i / 8] |= static_cast<std::uint64_t>(hash[i]) << (8 * (i % 8));
  d.add(h);
}

void digest_merge(digest256& d, const digest256& other) { d.add(other); }

std::string digest_hex(const digest256& d) { return d.hex(); }

std::string digest256::hex() const {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(64);
  for (int limb = 3; limb >= 0; --limb)
    for (int shift = 60; shift >= 0; shift -= 4) out.push_back(kHex[(w[static_cast<std::size_t>(limb)] >> shift) & 0xf]);
  return out;
}

std::optional<digest256> digest256::from_hex(std::string_view s) {
  if (s.size() != 64) return std::nullopt;
  digest256 d;
  for (std::size_t i = 0; i < 64; ++i) {
    const char c = s[i];
    const int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
    if (v < 0) return std::nullopt;
    const std::size_t limb = 3 - i / 16;
    d.w[limb] = (d.w[limb] << 4) | static_cast<std::uint64_t>(v);
  }
  return d;
}

stream_counters& stream_counters::operator+=(const stream_counters& o) {
  for (const auto& f : counter_fields) this->*f.member += o.*f.member;
  return *this;
}

namespace {

// ---- column families and keys -------------------------------------------------------------------

constexpr std::string_view kMeta = "meta";
constexpr std::string_view kCursors = "cursors";
constexpr std::string_view kJournal = "journal";
constexpr std::string_view kIdMap = "id_map";
// Written by Ferry before the seen-id set (--dedup-ids) was removed; still opened, so older state dirs
// open (RocksDB must open every column family a database has). Nothing reads or writes it.
constexpr std::string_view kSeen = "seen";

constexpr std::uint8_t kStreamFormat = 3;  // 1 and 2 are still read (decode_stream_v1, decode_stream_v2)
constexpr std::uint8_t kJournalFormat = 1;
constexpr std::uint64_t kStateFormat = 1;  // of the directory as a whole (meta "format")
const std::string kFormatKey = "format";
const std::string kFingerprintPrefix = std::string("fp", 2) + '\0';

void check_name(std::string_view what, std::string_view s) {
  if (s.empty()) throw store_error(std::string(what) + " is empty");
  if (s.find('\0') != std::string_view::npos)
    throw store_error(std::string(what) + " '" + engine::json_escape(s) + "' contains a NUL byte");
}

/// "<prefix>\0" and the key just past every "<prefix>\0..." key (prefix + '\1').
std::string scope_begin(std::string_view prefix) { return std::string(prefix) + '\0'; }
std::string scope_end(std::string_view prefix) { return std::string(prefix) + '\1'; }

std::string journal_key(std::string_view stream_id, std::uint64_t seq) { return scope_begin(stream_id) + be64(seq); }
std::string scoped_key(std::string_view scope, std::string_view id) { return scope_begin(scope) + std::string(id); }

// ---- a tiny binary codec ------------------------------------------------------------------------

class encoder {
 public:
  void u8(std::uint8_t v) { out_.push_back(static_cast<char>(v)); }
  void varint(std::uint64_t v) {
    while (v >= 0x80) {
      out_.push_back(static_cast<char>((v & 0x7f) | 0x80));
      v >>= 7;
    }
    out_.push_back(static_cast<char>(v));
  }
  void i64(std::int64_t v) {  // zigzag
    varint((static_cast<std::uint64_t>(v) << 1) ^ static_cast<std::uint64_t>(v >> 63));
  }
  void fixed64(std::uint64_t v) {
    for (int i = 0; i < 8; ++i) out_.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  }
  void str(std::string_view s) {
    varint(s.size());
    out_.append(s);
  }
  std::string take() { return std::move(out_); }

 private:
  std::string out_;
};

class decoder {
 public:
  explicit decoder(std::string_view in) : in_(in) {}
  std::uint8_t u8() {
    need(1);
    return static_cast<std::uint8_t>(in_[pos_++]);
  }
  std::uint64_t varint() {
    std::uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      const std::uint8_t b = u8();
      v |= static_cast<std::uint64_t>(b & 0x7f) << shift;
      if ((b & 0x80) == 0) return v;
    }
    throw std::runtime_error("varint too long");
  }
  std::int64_t i64() {
    const std::uint64_t z = varint();
    return static_cast<std::int64_t>((z >> 1) ^ (~(z & 1) + 1));
  }
  std::uint64_t fixed64() {
    need(8);
    std::uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v |= static_cast<std::uint64_t>(static_cast<std::uint8_t>(in_[pos_ + i])) << (8 * i);
    pos_ += 8;
    return v;
  }
  std::string str() {
    const std::uint64_t n = varint();
    need(n);
    std::string s(in_.substr(pos_, n));
    pos_ += n;
    return s;
  }
  bool at_end() const { return pos_ == in_.size(); }

 private:
  void need(std::uint64_t n) const {
    if (n > in_.size() - pos_) throw std::runtime_error("truncated record");
  }
  std::string_view in_;
  std::size_t pos_ = 0;
};

// Stream record, format 3: stream id, kind, source ids (count + strings), cursor, flags (done,
// cursor_inclusive, preflight_done), next seq, counters (count + varints in counter_fields order),
// digest (4 x fixed64), last error, updated_at_ms, then the slice layout (count + slices). Format 2 is
// the same without the slice layout.
std::string encode_stream(const stream_state& s) {
  encoder e;
  e.u8(kStreamFormat);
  e.str(s.stream_id);
  e.str(s.kind);
  e.varint(s.source_ids.size());
  for (const auto& id : s.source_ids) e.str(id);
  e.str(s.cursor);
  e.u8(static_cast<std::uint8_t>((s.done ? 1 : 0) | (s.cursor_inclusive ? 2 : 0) | (s.preflight_done ? 4 : 0)));
  e.varint(s.next_seq);
  e.varint(std::size(counter_fields));
  for (const auto& f : counter_fields) e.varint(s.counters.*f.member);
  for (auto w : s.digest.w) e.fixed64(w);
  e.str(s.last_error);
  e.i64(s.updated_at_ms);
  // Format 3: the slice layout, each slice with its window, cursor, flags, next seq, counters, digest.
  e.varint(s.slices.size());
  for (const auto& sl : s.slices) {
    e.str(sl.id_from);
    e.str(sl.id_to);
    e.str(sl.cursor);
    e.u8(static_cast<std::uint8_t>((sl.done ? 1 : 0) | (sl.cursor_inclusive ? 2 : 0) | (sl.preflight_done ? 4 : 0)));
    e.varint(sl.next_seq);
    e.varint(std::size(counter_fields));
    for (const auto& f : counter_fields) e.varint(sl.counters.*f.member);
    for (auto w : sl.digest.w) e.fixed64(w);
  }
  return e.take();
}

void decode_counters(decoder& d, stream_counters& c) {
  const auto counters = d.varint();
  for (std::uint64_t i = 0; i < counters; ++i) {
    const auto v = d.varint();
    if (i < std::size(counter_fields)) c.*counter_fields[i].member = v;  // later ones: a newer ferry's
  }
}

stream_state decode_stream_v2(decoder& d) {
  stream_state s;
  s.stream_id = d.str();
  s.kind = d.str();
  for (auto n = d.varint(); n > 0; --n) s.source_ids.push_back(d.str());
  s.cursor = d.str();
  const auto flags = d.u8();
  s.done = flags & 1;
  s.cursor_inclusive = flags & 2;
  s.preflight_done = flags & 4;
  s.next_seq = d.varint();
  decode_counters(d, s.counters);
  for (auto& w : s.digest.w) w = d.fixed64();
  s.last_error = d.str();
  s.updated_at_ms = d.i64();
  return s;
}

// Format 3 = format 2 + the slice layout.
stream_state decode_stream_v3(decoder& d) {
  stream_state s = decode_stream_v2(d);
  for (auto n = d.varint(); n > 0; --n) {
    stream_slice sl;
    sl.id_from = d.str();
    sl.id_to = d.str();
    sl.cursor = d.str();
    const auto flags = d.u8();
    sl.done = flags & 1;
    sl.cursor_inclusive = flags & 2;
    sl.preflight_done = flags & 4;
    sl.next_seq = d.varint();
    decode_counters(d, sl.counters);
    for (auto& w : sl.digest.w) w = d.fixed64();
    s.slices.push_back(std::move(sl));
  }
  return s;
}

std::uint64_t json_u64(const boost::json::object& o, std::string_view k) {
  const auto* v = o.if_contains(k);
  return v && v->is_number() ? v->to_number<std::uint64_t>() : 0;
}

// Format 1 (ferry before the stream record was one type): generic columns plus the streams engine's
// own fields as a JSON text in `extra`. Read so that a state dir written by it resumes; rewritten in
// the current format at the stream's next save or commit.
stream_state decode_stream_v1(decoder& d) {
  stream_state s;
  s.stream_id = d.str();
  s.kind = d.str();
  const auto source_object = d.str();  // the source ids joined by ','
  (void)d.str();                       // dest_object (never written)
  s.cursor = d.str();
  s.done = d.u8() != 0;
  std::array<std::uint64_t, 7> n{};  // rows_read, rows_written, bytes_written, batches, retries, resent, skipped
  for (auto& v : n) v = d.varint();
  s.counters.rows = n[1];
  s.counters.bytes = n[2];
  s.counters.batches = n[3];
  s.counters.resent_rows = n[5];
  s.next_seq = n[3] + 1;
  for (auto& w : s.digest.w) w = d.fixed64();
  s.last_error = d.str();
  s.updated_at_ms = d.i64();
  boost::system::error_code ec;
  auto extra = ferry::engine::parse_json(d.str(), ec);
  if (!ec && extra.is_object()) {
    const auto& x = extra.as_object();
    auto flag = [&](std::string_view k) { const auto* v = x.if_contains(k); return v && v->is_bool() && v->as_bool(); };
    s.cursor_inclusive = flag("cursor_inclusive");
    s.preflight_done = flag("preflight_done");
    if (auto seq = json_u64(x, "next_seq")) s.next_seq = seq;
    s.counters.deletes = json_u64(x, "deletes");
    s.counters.merges = json_u64(x, "merges");
    s.counters.spilled_fields = json_u64(x, "spilled_fields");
    s.counters.attachments_copied = json_u64(x, "attachments_copied");
    if (const auto* ids = x.if_contains("source_ids"); ids && ids->is_array())
      for (const auto& i : ids->as_array())
        if (i.is_string()) s.source_ids.emplace_back(i.as_string());
  }
  if (s.source_ids.empty() && !source_object.empty())
    for (std::size_t from = 0; from <= source_object.size();) {
      auto comma = std::min(source_object.find(',', from), source_object.size());
      s.source_ids.push_back(source_object.substr(from, comma - from));
      from = comma + 1;
    }
  return s;
}

std::string encode_journal(const batch_entry& b) {
  encoder e;
  e.u8(kJournalFormat);
  e.str(b.first_key);
  e.str(b.last_key);
  e.varint(b.row_count);
  e.i64(b.begun_at_ms);
  return e.take();
}

}  // namespace

// ---- state_store ----------------------------------------------------------------------------------

std::string slice_stream_id(std::string_view stream_id, std::size_t index) {
  return std::string(stream_id) + "#slice" + std::to_string(index);
}

const std::vector<std::string>& state_store::column_families() {
  static const std::vector<std::string> cfs = {std::string(kMeta), std::string(kCursors), std::string(kJournal),
                                               std::string(kIdMap), std::string(kSeen)};
  return cfs;
}

state_store state_store::open(const std::string& dir, state_store_options opts) {
  opts.kv.owner_column_family = std::string(kMeta);
  auto kv = kv_store::open_rocksdb(dir, column_families(), opts.kv);
  const std::string label = opts.kv.dir_label.empty() ? "state dir" : opts.kv.dir_label;
  return state_store(std::move(kv), label + " " + dir, std::move(opts));
}

state_store state_store::open_read_only(const std::string& dir, state_store_options opts) {
  opts.kv.owner_column_family = std::string(kMeta);
  opts.kv.read_only = true;
  opts.kv.create_if_missing = false;
  auto kv = kv_store::open_rocksdb(dir, column_families(), opts.kv);
  const std::string label = opts.kv.dir_label.empty() ? "state dir" : opts.kv.dir_label;
  return state_store(std::move(kv), label + " " + dir, std::move(opts));
}

state_store state_store::open_memory(state_store_options opts) {
  return state_store(kv_store::open_memory(column_families()), "state (memory)", std::move(opts));
}

struct state_store::journal_floors {
  std::mutex mu;
  std::unordered_map<std::string, std::uint64_t> next;  // journal scope -> lowest seq that may be live
};

state_store::state_store(std::unique_ptr<kv_store> kv, std::string location, state_store_options opts)
    : kv_(std::move(kv)), location_(std::move(location)), opts_(std::move(opts)),
      rmw_mu_(std::make_unique<std::mutex>()), floors_(std::make_unique<journal_floors>()) {
  init_format();
}

state_store::state_store(state_store&&) noexcept = default;
state_store& state_store::operator=(state_store&&) noexcept = default;
state_store::~state_store() = default;

void state_store::init_format() {
  auto v = kv_->get(kMeta, kFormatKey);
  if (!v && opts_.kv.read_only)
    throw store_error(location_ + " holds no ferry state (no format record): check --state-dir");
  if (!v) {
    kv_->put(kMeta, kFormatKey, be64(kStateFormat), true);
    return;
  }
  if (v->size() != 8) corrupt("meta record 'format'", "not 8 bytes");
  const auto format = from_be64(*v);
  if (format > kStateFormat)
    throw store_error(location_ + " holds state format " + std::to_string(format) + " written by a newer ferry (this one reads " +
                      std::to_string(kStateFormat) + "): upgrade ferry or use another --state-dir");
}

std::int64_t state_store::now_ms() const {
  if (opts_.now_ms) return opts_.now_ms();
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

void state_store::corrupt(std::string_view what, std::string_view why) const {
  throw store_error(location_ + ": " + std::string(what) + " is corrupt (" + std::string(why) +
                    "); move the directory away to start afresh");
}

// ---- meta ---------------------------------------------------------------------------------------

void state_store::check_and_record_meta(const std::map<std::string, std::string>& fingerprint) {
  std::lock_guard lock(*rmw_mu_);
  write_batch added;
  for (const auto& [key, given] : fingerprint) {
    check_name("fingerprint key", key);
    const bool is_url = key.ends_with("_url");
    const std::string value = is_url ? engine::url_identity(given) : given;
    auto old = kv_->get(kMeta, kFingerprintPrefix + key);
    const std::string recorded = old && is_url ? engine::url_identity(*old) : old.value_or("");
    if (!old || (*old != value && recorded == value)) {
      added.put(kMeta, kFingerprintPrefix + key, value);  // new, or an older state's raw URL rewritten
    } else if (recorded != value) {
      // Values are URLs, org names and dates, but redact anyway: an error must never carry a key.
      throw store_error(engine::redact(location_ + " was created for " + key + "=" + recorded + "; this run uses " +
                                       key + "=" + value + ": use another --state-dir or the same options"));
    }
  }
  if (!added.empty()) kv_->write(added, true);
}

std::map<std::string, std::string> state_store::meta() const {
  std::map<std::string, std::string> out;
  kv_->scan(kMeta, kFingerprintPrefix, scope_end("fp"), [&](std::string_view k, std::string_view v) {
    out.emplace(std::string(k.substr(kFingerprintPrefix.size())), std::string(v));
    return true;
  });
  return out;
}

// ---- streams ------------------------------------------------------------------------------------

stream_state state_store::decode_stream(std::string_view key, std::string_view value) const {
  const std::string what = "stream record '" + engine::json_escape(key) + "'";
  try {
    decoder d(value);
    const auto version = d.u8();
    if (version > kStreamFormat || version == 0)
      throw store_error(location_ + ": " + what + " has format " + std::to_string(version) +
                        " (written by a newer ferry?): upgrade ferry or use another --state-dir");
    stream_state s = version == 1 ? decode_stream_v1(d) : version == 2 ? decode_stream_v2(d) : decode_stream_v3(d);
    if (s.stream_id != key) throw std::runtime_error("stream id does not match its key");
    return s;
  } catch (const store_error&) {
    throw;
  } catch (const std::exception& e) {
    corrupt(what, e.what());
  }
}

std::optional<stream_state> state_store::load_stream(std::string_view stream_id) const {
  check_name("stream id", stream_id);
  auto v = kv_->get(kCursors, stream_id);
  if (!v) return std::nullopt;
  return decode_stream(stream_id, *v);
}

std::vector<stream_state> state_store::list_streams() const {
  std::vector<stream_state> out;
  kv_->scan(kCursors, "", "", [&](std::string_view k, std::string_view v) {
    out.push_back(decode_stream(k, v));
    return true;
  });
  return out;
}

void state_store::save_stream(const stream_state& st) {
  check_name("stream id", st.stream_id);
  kv_->put(kCursors, st.stream_id, encode_stream(st), true);
}

void state_store::begin_batch(std::string_view stream_id, std::uint64_t batch_seq, std::string_view first_key,
                              std::string_view last_key, std::uint64_t row_count, bool sync) {
  check_name("stream id", stream_id);
  batch_entry b{std::string(stream_id), batch_seq, std::string(first_key), std::string(last_key), row_count, now_ms()};
  {
    std::lock_guard lock(floors_->mu);  // an entry below the floor (not expected) lowers it: never skipped
    if (auto it = floors_->next.find(std::string(stream_id)); it != floors_->next.end() && it->second > batch_seq)
      it->second = batch_seq;
  }
  kv_->put(kJournal, journal_key(stream_id, batch_seq), encode_journal(b), sync);
}

void state_store::drop_journal(write_batch& b, std::string_view stream_id, std::optional<std::uint64_t> upto) const {
  // Bounded: a stream has at most a few batches in flight, and the scan starts at the lowest seq this
  // process has not dropped yet, so it visits a handful of keys and no tombstones of earlier commits.
  // Entries below the floor are gone (begin_batch lowers the floor for an entry below it); a drop of a
  // whole scope (reset, done) clears it. Another process never writes this state dir meanwhile (the run
  // holds its lock).
  const bool bounded = upto && *upto != ~std::uint64_t{0};
  std::string from = scope_begin(stream_id);
  {
    std::lock_guard lock(floors_->mu);
    auto it = floors_->next.find(std::string(stream_id));
    if (!bounded) {
      if (it != floors_->next.end()) floors_->next.erase(it);
    } else {
      if (it != floors_->next.end() && it->second <= *upto) from = journal_key(stream_id, it->second);
      auto& floor = floors_->next[std::string(stream_id)];
      floor = std::max(floor, *upto + 1);
    }
  }
  const std::string to = bounded ? journal_key(stream_id, *upto + 1) : scope_end(stream_id);
  kv_->scan(kJournal, from, to, [&](std::string_view k, std::string_view) {
    b.del(kJournal, k);
    return true;
  });
}

void state_store::commit_batch(const stream_state& new_state, std::uint64_t batch_seq, const commit_extras& extras) {
  check_name("stream id", new_state.stream_id);
  write_batch b;
  b.put(kCursors, new_state.stream_id, encode_stream(new_state));
  if (!extras.journal_stream_id.empty()) check_name("journal stream id", extras.journal_stream_id);
  drop_journal(b, extras.journal_stream_id.empty() ? std::string_view(new_state.stream_id) : extras.journal_stream_id,
               batch_seq);
  if (!extras.ids.empty()) {
    check_name("id type", extras.id_type);
    for (const auto& [src, dst] : extras.ids) b.put(kIdMap, scoped_key(extras.id_type, src), dst);
  }
  kv_->write(b, true);
}

std::vector<batch_entry> state_store::inflight_batches(std::string_view stream_id) const {
  check_name("stream id", stream_id);
  std::vector<batch_entry> out;
  const std::string from = scope_begin(stream_id);
  kv_->scan(kJournal, from, scope_end(stream_id), [&](std::string_view k, std::string_view v) {
    const std::string what = "journal entry of stream '" + engine::json_escape(stream_id) + "'";
    try {
      if (k.size() != from.size() + 8) throw std::runtime_error("bad key length");
      decoder d(v);
      const auto version = d.u8();
      if (version != kJournalFormat) throw std::runtime_error("unknown format " + std::to_string(version));
      batch_entry b;
      b.stream_id = std::string(stream_id);
      b.batch_seq = from_be64(k.substr(from.size()));
      b.first_key = d.str();
      b.last_key = d.str();
      b.row_count = d.varint();
      b.begun_at_ms = d.i64();
      out.push_back(std::move(b));
    } catch (const std::exception& e) {
      corrupt(what, e.what());
    }
    return true;
  });
  return out;
}

void state_store::record_error(std::string_view stream_id, std::string_view message) {
  check_name("stream id", stream_id);
  std::lock_guard lock(*rmw_mu_);
  auto st = load_stream(stream_id).value_or(stream_state{});
  st.stream_id = std::string(stream_id);
  st.last_error = engine::redact(message);
  st.updated_at_ms = now_ms();
  kv_->put(kCursors, stream_id, encode_stream(st), true);
}

void state_store::mark_done(std::string_view stream_id) {
  check_name("stream id", stream_id);
  std::lock_guard lock(*rmw_mu_);
  auto st = load_stream(stream_id).value_or(stream_state{});
  st.stream_id = std::string(stream_id);
  st.done = true;
  st.last_error.clear();
  st.updated_at_ms = now_ms();
  write_batch b;
  b.put(kCursors, stream_id, encode_stream(st));
  drop_journal(b, stream_id, std::nullopt);
  for (std::size_t i = 0; i < st.slices.size(); ++i) drop_journal(b, slice_stream_id(stream_id, i), std::nullopt);
  kv_->write(b, true);
}

void state_store::reset_stream(std::string_view stream_id) {
  check_name("stream id", stream_id);
  std::lock_guard lock(*rmw_mu_);
  write_batch b;
  b.del(kCursors, stream_id);
  drop_journal(b, stream_id, std::nullopt);
  if (auto st = load_stream(stream_id))
    for (std::size_t i = 0; i < st->slices.size(); ++i) drop_journal(b, slice_stream_id(stream_id, i), std::nullopt);
  kv_->write(b, true);
}

// ---- id maps ------------------------------------------------------------------------------------

void state_store::put_id(std::string_view type, std::string_view source_id, std::string_view dest_id, bool sync) {
  check_name("id type", type);
  kv_->put(kIdMap, scoped_key(type, source_id), dest_id, sync);
}

void state_store::put_ids(std::string_view type, const std::vector<std::pair<std::string, std::string>>& ids,
                          bool sync) {
  check_name("id type", type);
  if (ids.empty()) return;
  write_batch b;
  for (const auto& [src, dst] : ids) b.put(kIdMap, scoped_key(type, src), dst);
  kv_->write(b, sync);
}

std::optional<std::string> state_store::get_id(std::string_view type, std::string_view source_id) const {
  check_name("id type", type);
  return kv_->get(kIdMap, scoped_key(type, source_id));
}

void state_store::for_each_id(std::string_view type,
                              const std::function<bool(std::string_view, std::string_view)>& fn) const {
  check_name("id type", type);
  const std::size_t skip = type.size() + 1;
  kv_->scan(kIdMap, scope_begin(type), scope_end(type),
            [&](std::string_view k, std::string_view v) { return fn(k.substr(skip), v); });
}

std::uint64_t state_store::count_ids(std::string_view type) const {
  std::uint64_t n = 0;
  for_each_id(type, [&](std::string_view, std::string_view) {
    ++n;
    return true;
  });
  return n;
}

// ---- dropped fields ------------------------------------------------------------------------------
// Key: "~dropped\0<type>\0<source id>" in the id_map column family ('~' sorts after every id type Ferry
// writes, and no type holds a NUL). Value: format byte, count, then (field, reason) strings.

namespace {

constexpr std::string_view kDroppedScope = "~dropped";
constexpr std::uint8_t kDroppedFormat = 1;

std::string dropped_key(std::string_view type, std::string_view source_id) {
  return scoped_key(kDroppedScope, std::string(type) + '\0' + std::string(source_id));
}

}  // namespace

void state_store::put_dropped(std::string_view type, std::string_view source_id, const dropped_fields& fields) {
  check_name("dropped-fields type", type);
  check_name("dropped-fields source id", source_id);
  if (fields.empty()) {
    kv_->del(kIdMap, dropped_key(type, source_id), true);
    return;
  }
  encoder e;
  e.u8(kDroppedFormat);
  e.varint(fields.size());
  for (const auto& [field, reason] : fields) {
    e.str(field);
    e.str(reason);
  }
  kv_->put(kIdMap, dropped_key(type, source_id), e.take(), true);
}

namespace {

state_store::dropped_fields decode_dropped(std::string_view v) {
  decoder d(v);
  if (d.u8() != kDroppedFormat) throw std::runtime_error("unknown format");
  state_store::dropped_fields out(d.varint());
  for (auto& [field, reason] : out) {
    field = d.str();
    reason = d.str();
  }
  if (!d.at_end()) throw std::runtime_error("trailing bytes");
  return out;
}

}  // namespace

state_store::dropped_fields state_store::get_dropped(std::string_view type, std::string_view source_id) const {
  check_name("dropped-fields type", type);
  auto v = kv_->get(kIdMap, dropped_key(type, source_id));
  if (!v) return {};
  try {
    return decode_dropped(*v);
  } catch (const std::exception& ex) {
    corrupt("dropped-fields record of " + std::string(type) + " " + std::string(source_id), ex.what());
  }
}

void state_store::for_each_dropped(
    const std::function<bool(std::string_view, std::string_view, const dropped_fields&)>& fn) const {
  const std::size_t skip = kDroppedScope.size() + 1;
  kv_->scan(kIdMap, scope_begin(kDroppedScope), scope_end(kDroppedScope), [&](std::string_view k, std::string_view v) {
    const auto rest = k.substr(skip);
    const auto nul = rest.find('\0');
    if (nul == std::string_view::npos) corrupt("dropped-fields key", "no type/id separator");
    dropped_fields fields;
    try {
      fields = decode_dropped(v);
    } catch (const std::exception& ex) {
      corrupt("dropped-fields record", ex.what());
    }
    return fn(rest.substr(0, nul), rest.substr(nul + 1), fields);
  });
}

}  // namespace ferry::stores
