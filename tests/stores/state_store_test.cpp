#include "stores/state_store.hpp"

#include "format1_state.hpp"
#include "store_errors.hpp"
#include "test_support.hpp"

#include <doctest/doctest.h>

#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <map>
#include <random>

using ferry::stores::batch_entry;
using ferry::stores::commit_extras;
using ferry::stores::digest256;
using ferry::stores::digest_add;
using ferry::stores::digest_hex;
using ferry::stores::digest_merge;
using ferry::stores::state_store;
using ferry::stores::state_store_options;
using ferry::stores::store_error;
using ferry::stores::stream_state;
using ferry::test::error_of;
using ferry::test::temp_dir;

namespace {

state_store_options manual_clock(std::int64_t* now) {
  state_store_options o;
  o.now_ms = [now] { return *now; };
  return o;
}


std::array<std::uint8_t, 32> row_hash(std::uint64_t seed) {
  // A deterministic stand-in for a row's SHA-256: what matters here is the digest arithmetic.
  std::mt19937_64 gen(seed);
  std::array<std::uint8_t, 32> h{};
  for (auto& b : h) b = static_cast<std::uint8_t>(gen());
  return h;
}

stream_state sample_state() {
  stream_state s;
  s.stream_id = "project_logs:p1";
  s.kind = "project_logs";
  s.source_ids = {"p1", "p2"};
  s.cursor = "0000123";
  s.cursor_inclusive = true;
  s.preflight_done = true;
  s.next_seq = 11;
  s.counters.rows = 990;
  s.counters.bytes = 1u << 20;
  s.counters.batches = 10;
  s.counters.resent_rows = 100;
  s.counters.deletes = 3;
  s.counters.merges = 4;
  s.counters.spilled_fields = 5;
  s.counters.attachments_copied = 6;
  s.digest = {{1, ~0ull, 3, 1ull << 63}};
  s.last_error = "";
  s.updated_at_ms = -5;  // any value round-trips, even a negative one
  return s;
}

}  // namespace

#define FOR_EACH_STATE_IMPL(st, tmp)                                                  \
  temp_dir tmp("ferry-state");                                                        \
  std::int64_t clock_ms = 1000;                                                       \
  std::optional<state_store> st;                                                      \
  SUBCASE("rocksdb") { st.emplace(state_store::open(tmp.str() + "/s", manual_clock(&clock_ms))); } \
  SUBCASE("memory") { st.emplace(state_store::open_memory(manual_clock(&clock_ms))); } \
  REQUIRE(st.has_value())

TEST_CASE("digest: order independent, sensitive to every row") {
  std::vector<std::uint64_t> rows(200);
  for (std::size_t i = 0; i < rows.size(); ++i) rows[i] = i;
  digest256 a{};
  for (auto r : rows) digest_add(a, row_hash(r).data());
  std::shuffle(rows.begin(), rows.end(), std::mt19937_64(7));
  digest256 b{};
  for (auto r : rows) digest_add(b, row_hash(r).data());
  CHECK(a == b);

  // One row different => a different digest; one row missing => different too.
  digest256 c{};
  for (auto r : rows) digest_add(c, row_hash(r == 17 ? 100017 : r).data());
  CHECK(c != a);
  digest256 d{};
  for (auto r : rows)
    if (r != 17) digest_add(d, row_hash(r).data());
  CHECK(d != a);

  // Merging the digests of two halves equals the digest of the whole.
  digest256 h1{}, h2{};
  for (std::size_t i = 0; i < rows.size(); ++i) digest_add(i % 2 ? h1 : h2, row_hash(rows[i]).data());
  digest_merge(h1, h2);
  CHECK(h1 == a);
}

TEST_CASE("digest: 256-bit addition carries across words and wraps") {
  std::array<std::uint8_t, 32> ones{};
  ones.fill(0xff);  // 2^256 - 1
  digest256 d{};
  digest_add(d, ones.data());
  CHECK(digest_hex(d) == std::string(64, 'f'));
  std::array<std::uint8_t, 1> one{1};
  digest_add(d, one.data(), 1);  // (2^256 - 1) + 1 wraps to 0
  CHECK(d == digest256{});
  std::array<std::uint8_t, 16> low{};
  low.fill(0xff);  // a 128-bit hash: 2^128 - 1
  digest_add(d, low.data(), low.size());
  digest_add(d, one.data(), 1);
  CHECK(d == digest256{0, 0, 1, 0});  // the carry reached word 2
  CHECK(digest_hex(d).substr(0, 32) == "00000000000000000000000000000001");
  CHECK_THROWS(digest_add(d, ones.data(), 33));
}

TEST_CASE("state_store: stream records round-trip every field") {
  FOR_EACH_STATE_IMPL(st, tmp);
  CHECK_FALSE(st->load_stream("project_logs:p1").has_value());
  const auto s = sample_state();
  st->save_stream(s);
  auto loaded = st->load_stream(s.stream_id);
  REQUIRE(loaded.has_value());
  CHECK(*loaded == s);

  auto other = s;
  other.stream_id = "experiment:e1";
  other.done = true;
  st->save_stream(other);
  auto all = st->list_streams();
  REQUIRE(all.size() == 2);
  CHECK(all[0].stream_id == "experiment:e1");  // ordered by id
  CHECK(all[0].done);
  CHECK(all[1] == s);

  CHECK_THROWS_AS(st->load_stream(""), store_error);
  CHECK_THROWS_AS(st->save_stream(stream_state{}), store_error);
  CHECK_THROWS_AS(st->load_stream(std::string("a\0b", 3)), store_error);
}

TEST_CASE("state_store: a format-1 stream record (older ferry) still loads and is rewritten as format 2") {
  temp_dir tmp("ferry-state");
  const auto dir = tmp.str() + "/s";
  const std::string extra =
      R"({"cursor_inclusive":true,"preflight_done":true,"next_seq":6,"deletes":2,"merges":3,"spilled_fields":1,)"
      R"("attachments_copied":4,"source_ids":["sp1","sp2"]})";
  {
    auto kv = ferry::stores::kv_store::open_rocksdb(dir, state_store::column_families());
    ferry::test::format1_stream r;
    r.stream_id = "logs:g1";
    r.source_object = "sp1,sp2";
    r.last_key = "p0039";
    r.counters = {40, 40, 90, 5, 2, 7, 1};
    r.digest = {9, 0, 0, 0};
    r.updated_at_ms = 3;
    r.extra = extra;
    kv->put("cursors", r.stream_id, ferry::test::format1_record(r), true);
    r.stream_id = "logs:g2";
    r.extra = "not json";
    kv->put("cursors", r.stream_id, ferry::test::format1_record(r), true);
  }
  auto st = state_store::open(dir);
  auto s = st.load_stream("logs:g1");
  REQUIRE(s.has_value());
  CHECK(s->kind == "logs");
  CHECK(s->source_ids == std::vector<std::string>{"sp1", "sp2"});
  CHECK(s->cursor == "p0039");
  CHECK(s->cursor_inclusive);
  CHECK(s->preflight_done);
  CHECK_FALSE(s->done);
  CHECK(s->next_seq == 6);
  CHECK(s->counters.rows == 40);
  CHECK(s->counters.bytes == 90);
  CHECK(s->counters.batches == 5);
  CHECK(s->counters.resent_rows == 7);
  CHECK(s->counters.deletes == 2);
  CHECK(s->counters.merges == 3);
  CHECK(s->counters.spilled_fields == 1);
  CHECK(s->counters.attachments_copied == 4);
  CHECK(s->digest == digest256{9, 0, 0, 0});
  CHECK(s->updated_at_ms == 3);
  // Without a readable `extra`: the source ids come from the generic column, next_seq from batches.
  auto g2 = st.load_stream("logs:g2");
  REQUIRE(g2.has_value());
  CHECK(g2->source_ids == std::vector<std::string>{"sp1", "sp2"});
  CHECK(g2->next_seq == 6);
  // The next save writes format 2, which reads back equal.
  st.save_stream(*s);
  CHECK(st.load_stream("logs:g1") == s);
}

TEST_CASE("state_store: commit moves cursor, counters, digest and journal in one synced write") {
  temp_dir tmp("ferry-state");
  const auto dir = tmp.str() + "/s";
  std::int64_t now = 5000;
  auto s = sample_state();
  s.cursor = "k100";
  {
    auto st = state_store::open(dir, manual_clock(&now));
    st.save_stream(s);
    st.begin_batch(s.stream_id, 10, "k101", "k200", 100);
    st.begin_batch(s.stream_id, 11, "k201", "k300", 100);  // pipelined: two in flight
    REQUIRE(st.inflight_batches(s.stream_id).size() == 2);

    s.cursor = "k200";
    s.counters.rows += 100;
    s.counters.batches = 11;
    digest_add(s.digest, row_hash(1).data());
    s.updated_at_ms = now;
    commit_extras extras;
    extras.id_type = "span";
    extras.ids = {{"src-span", "dst-span"}};
    st.commit_batch(s, 10, extras);
  }  // closed: everything below is read back from disk
  auto st = state_store::open(dir, manual_clock(&now));
  auto loaded = st.load_stream(s.stream_id);
  REQUIRE(loaded.has_value());
  CHECK(*loaded == s);
  auto inflight = st.inflight_batches(s.stream_id);
  REQUIRE(inflight.size() == 1);  // batch 10 acknowledged; 11 still in flight
  CHECK(inflight[0] == batch_entry{s.stream_id, 11, "k201", "k300", 100, 5000});
  CHECK(st.get_id("span", "src-span") == std::optional<std::string>("dst-span"));

  // Committing a later seq also clears every earlier entry (they were superseded).
  st.begin_batch(s.stream_id, 12, "k301", "k400", 50);
  st.commit_batch(s, 12);
  CHECK(st.inflight_batches(s.stream_id).empty());
}

TEST_CASE("state_store: batches begun but never committed are listed after a crash") {
  temp_dir tmp("ferry-state");
  const auto dir = tmp.str() + "/s";
  std::int64_t now = 7000;
  auto s = sample_state();
  {
    auto st = state_store::open(dir, manual_clock(&now));
    st.save_stream(s);
    st.begin_batch(s.stream_id, 0, "a", "m", 100);
    st.commit_batch(s, 0);
    st.begin_batch(s.stream_id, 1, "n", "z", 42);  // sent, then the process "dies" before the ack
    st.begin_batch("other:stream", 1, "x", "y", 9);
  }
  auto st = state_store::open(dir, manual_clock(&now));
  auto inflight = st.inflight_batches(s.stream_id);
  REQUIRE(inflight.size() == 1);
  CHECK(inflight[0].batch_seq == 1);
  CHECK(inflight[0].first_key == "n");
  CHECK(inflight[0].last_key == "z");
  CHECK(inflight[0].row_count == 42);
  CHECK(st.inflight_batches("other:stream").size() == 1);  // streams' journals do not mix
  CHECK(st.inflight_batches("project_logs:p").empty());     // nor do prefixes of stream ids

  // Beginning the same seq again (the resume re-sends it) overwrites, never duplicates.
  st.begin_batch(s.stream_id, 1, "n", "z", 42);
  CHECK(st.inflight_batches(s.stream_id).size() == 1);
  // The cursor did not move: the resume re-reads from the last committed key.
  CHECK(st.load_stream(s.stream_id)->cursor == s.cursor);
}

TEST_CASE("state_store: a different fingerprint is refused, new keys are added") {
  temp_dir tmp("ferry-state");
  const auto dir = tmp.str() + "/s";
  {
    auto st = state_store::open(dir);
    st.check_and_record_meta({{"source_url", "https://a.example"}, {"dest_url", "https://b.example"}});
  }
  auto st = state_store::open(dir);
  CHECK_NOTHROW(st.check_and_record_meta({{"source_url", "https://a.example"}, {"dest_url", "https://b.example"}}));
  const auto msg = error_of([&] {
    st.check_and_record_meta({{"source_url", "https://other.example"}, {"dest_url", "https://b.example"}});
  });
  CHECK(msg == "state dir " + dir +
                   " was created for source_url=https://a.example; this run uses source_url=https://other.example: "
                   "use another --state-dir or the same options");
  // A key not recorded before is added; one absent from this run is kept.
  st.check_and_record_meta({{"source_url", "https://a.example"}, {"created_after", "2024-01-01"}});
  auto meta = st.meta();
  CHECK(meta.size() == 3);
  CHECK(meta["created_after"] == "2024-01-01");
  CHECK(meta["dest_url"] == "https://b.example");
  CHECK(error_of([&] { st.check_and_record_meta({{"created_after", "2025-01-01"}}); })
            .find("created_after=2024-01-01") != std::string::npos);
}

TEST_CASE("state_store: the state directory is created 0700") {
  temp_dir tmp("ferry-state");
  const auto dir = tmp.path() / "deep" / "s";
  auto st = state_store::open(dir.string());
  struct stat sb {};
  REQUIRE(::stat(dir.c_str(), &sb) == 0);
  CHECK((sb.st_mode & 0777) == 0700);
  CHECK(st.location() == "state dir " + dir.string());
}

TEST_CASE("state_store: id maps round-trip per type") {
  FOR_EACH_STATE_IMPL(st, tmp);
  st->put_id("project", "p-src", "p-dst");
  st->put_ids("dataset", {{"d2", "D2"}, {"d1", "D1"}, {"d3", "D3"}});
  st->put_id("datasets", "d1", "other type");  // a type that shares a prefix stays separate
  CHECK(st->get_id("project", "p-src") == std::optional<std::string>("p-dst"));
  CHECK_FALSE(st->get_id("project", "d1").has_value());
  CHECK(st->get_id("dataset", "d1") == std::optional<std::string>("D1"));
  CHECK(st->count_ids("dataset") == 3);
  CHECK(st->count_ids("datasets") == 1);
  CHECK(st->count_ids("nothing") == 0);
  std::vector<std::pair<std::string, std::string>> seen;
  st->for_each_id("dataset", [&](std::string_view s, std::string_view d) {
    seen.emplace_back(std::string(s), std::string(d));
    return true;
  });
  CHECK(seen == std::vector<std::pair<std::string, std::string>>{{"d1", "D1"}, {"d2", "D2"}, {"d3", "D3"}});
  st->put_id("dataset", "d1", "D1-new");  // re-mapping overwrites
  CHECK(st->get_id("dataset", "d1") == std::optional<std::string>("D1-new"));
  CHECK(st->count_ids("dataset") == 3);
  CHECK_THROWS_AS(st->put_id("", "a", "b"), store_error);
}

TEST_CASE("state_store: errors, done and reset") {
  FOR_EACH_STATE_IMPL(st, tmp);
  const std::string id = "experiment:e9";
  st->record_error(id, "POST /logs3: 500 internal error");  // no record yet: a bare one is created
  auto s = st->load_stream(id);
  REQUIRE(s.has_value());
  CHECK(s->last_error == "POST /logs3: 500 internal error");
  CHECK(s->updated_at_ms == 1000);

  st->begin_batch(id, 3, "a", "b", 10);
  clock_ms = 2000;
  st->mark_done(id);
  s = st->load_stream(id);
  CHECK(s->done);
  CHECK(s->last_error.empty());
  CHECK(s->updated_at_ms == 2000);
  CHECK(st->inflight_batches(id).empty());

  st->reset_stream(id);
  CHECK_FALSE(st->load_stream(id).has_value());
  CHECK(st->inflight_batches(id).empty());
}

TEST_CASE("state_store: a second process on the same state dir is refused") {
  temp_dir tmp("ferry-state");
  const auto dir = tmp.str() + "/s";
  auto first = state_store::open(dir);
  CHECK(error_of([&] { state_store::open(dir); }) ==
        "state dir " + dir + " is in use by another ferry process (lock held)");
}

TEST_CASE("state_store: URLs in the fingerprint compare by identity and are kept without passwords") {
  temp_dir tmp("ferry-state");
  const auto dir = tmp.str() + "/s";
  auto st = state_store::open(dir);
  st.check_and_record_meta({{"source_url", "http://bob:url-pass-1@127.0.0.1:8000"}, {"dest_url", "https://d.example/"}});
  CHECK(st.meta()["source_url"] == "http://localhost:8000");
  CHECK(st.meta()["dest_url"] == "https://d.example");
  for (const char* same : {"http://127.0.0.1:8000/", "http://localhost:8000", "http://[::1]:8000", "HTTP://LOCALHOST:8000"})
    CHECK_NOTHROW(st.check_and_record_meta({{"source_url", same}, {"dest_url", "https://d.example:443"}}));
  const auto msg = error_of([&] {
    st.check_and_record_meta({{"source_url", "http://bob:url-pass-1@127.0.0.1:8001"}});
  });
  CHECK(msg.find("was created for source_url=http://localhost:8000; this run uses source_url=http://localhost:8001") !=
        std::string::npos);
  CHECK(msg.find("url-pass-1") == std::string::npos);
  CHECK(error_of([&] { st.check_and_record_meta({{"dest_url", "http://d.example"}}); }).find("dest_url") !=
        std::string::npos);
}

TEST_CASE("state_store: a directory other users may write to is refused") {
  temp_dir tmp("ferry-state");
  const auto dir = tmp.path() / "shared";
  std::filesystem::create_directory(dir);
  ::chmod(dir.c_str(), 01777);
  CHECK(error_of([&] { state_store::open(dir.string()); }).find("writable by every user (mode 1777)") !=
        std::string::npos);
  ::chmod(dir.c_str(), 0777);
  const auto msg = error_of([&] { state_store::open((dir / "inside").string()); });
  CHECK_MESSAGE(msg.find("without the sticky bit") != std::string::npos, msg);
  ::chmod(dir.c_str(), 01777);  // a /tmp-like parent is fine
  CHECK_NOTHROW(state_store::open((dir / "inside").string()));
  ::chmod(dir.c_str(), 0700);
  CHECK_NOTHROW(state_store::open(dir.string()));
}

TEST_CASE("state_store: a RocksDB database of another program is refused, untouched") {
  temp_dir tmp("ferry-state");
  const auto dir = tmp.str() + "/other";
  {
    auto kv = ferry::stores::kv_store::open_rocksdb(dir, {"theirs"}, {});
    kv->put("theirs", "k", "v", true);
  }
  CHECK(error_of([&] { state_store::open(dir); }).find("RocksDB database of another program (no 'meta'") !=
        std::string::npos);
  CHECK(error_of([&] { state_store::open_read_only(dir); }).find("another program") != std::string::npos);
  auto kv = ferry::stores::kv_store::open_rocksdb(dir, {"theirs"}, {});
  CHECK(kv->get("theirs", "k") == std::optional<std::string>("v"));
}

namespace {
// Name, size and mtime of every file under `dir`.
std::map<std::string, std::pair<std::uintmax_t, std::filesystem::file_time_type>> files_of(const std::string& dir) {
  std::map<std::string, std::pair<std::uintmax_t, std::filesystem::file_time_type>> out;
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir))
    if (e.is_regular_file()) out[e.path().string()] = {e.file_size(), e.last_write_time()};
  return out;
}
}  // namespace

TEST_CASE("state_store: read-only open works beside the running owner, writes nothing, needs no free space") {
  temp_dir tmp("ferry-state");
  const auto dir = tmp.str() + "/s";
  auto owner = state_store::open(dir);  // holds the lock, as a running migration does
  stream_state s;
  s.stream_id = "project_logs:p1";
  s.kind = "project_logs";
  s.cursor = "k-10";
  s.counters.rows = 10;
  owner.save_stream(s);
  const auto before = files_of(dir);
  state_store_options full_disk;
  full_disk.kv.min_free_bytes = std::uint64_t(1) << 62;  // more than any disk has free
  {
    auto reader = state_store::open_read_only(dir, full_disk);
    auto got = reader.load_stream("project_logs:p1");
    REQUIRE(got.has_value());
    CHECK(got->counters.rows == 10);
    CHECK(reader.list_streams().size() == 1);
    CHECK_THROWS_AS(reader.save_stream(s), store_error);
  }
  CHECK(files_of(dir) == before);
  CHECK(error_of([&] { state_store::open(dir + "-missing-open"); }).find("<no store_error>") == 0);
  CHECK(error_of([&] { state_store::open_read_only(tmp.str() + "/nothing"); }).find("does not exist") !=
        std::string::npos);
}

// Throughput of the commit path; skipped by default (run with: stores_tests -tc="*bench*" --no-skip).
// It prints rates and asserts nothing about them.
TEST_CASE("state_store bench: synced commit rate" * doctest::skip()) {
  temp_dir tmp("ferry-state-bench");
  auto st = state_store::open(tmp.str() + "/s");
  auto s = sample_state();
  const auto time_it = [](auto&& fn) {
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  constexpr int kCommits = 500;
  const double plain = time_it([&] {
    for (int i = 0; i < kCommits; ++i) {
      st.begin_batch(s.stream_id, static_cast<std::uint64_t>(i), "a", "b", 100);
      s.counters.batches = static_cast<std::uint64_t>(i) + 1;
      st.commit_batch(s, static_cast<std::uint64_t>(i));
    }
  });
  MESSAGE("begin+commit (synced), no extras: " << kCommits / plain << " commits/s");
  std::uint64_t n = 0;
  const double keyed = time_it([&] {
    for (int i = 0; i < kCommits; ++i) {
      commit_extras ex;
      ex.id_type = "span";
      for (int r = 0; r < 100; ++r) ex.ids.emplace_back("row-" + std::to_string(n++) + "-0123456789abcdef", "d");
      st.begin_batch(s.stream_id, static_cast<std::uint64_t>(i), "a", "b", 100);
      st.commit_batch(s, static_cast<std::uint64_t>(i), ex);
    }
  });
  MESSAGE("begin+commit (synced) with 100 id-map entries: " << kCommits / keyed << " commits/s, "
                                                            << kCommits * 100 / keyed << " keys/s");
  constexpr int kUnsynced = 2000;
  const double bulk = time_it([&] {
    for (int i = 0; i < kUnsynced; ++i) {
      std::vector<std::pair<std::string, std::string>> ids;
      for (int r = 0; r < 100; ++r) ids.emplace_back("bulk-" + std::to_string(n++) + "-0123456789abcdef", "d");
      st.put_ids("span", ids, false);
    }
  });
  MESSAGE("put_ids unsynced, 100 ids per write: " << kUnsynced * 100 / bulk << " keys/s");
}

TEST_CASE("state_store: the slice layout round-trips (format 3), format-2 records still load, reset drops slice journals") {
  auto st = state_store::open_memory();
  stream_state s;
  s.stream_id = "logs:p1";
  s.kind = "logs";
  s.source_ids = {"p1"};
  s.counters.rows = 7;
  ferry::stores::stream_slice a;
  a.id_to = "m";
  a.cursor = "k1";
  a.cursor_inclusive = true;
  a.next_seq = 3;
  a.counters.rows = 4;
  a.digest = digest256{1, 2, 3, 4};
  ferry::stores::stream_slice b;
  b.id_from = "m";
  b.done = true;
  b.preflight_done = true;
  b.counters.rows = 3;
  s.slices = {a, b};
  st.save_stream(s);
  CHECK(st.load_stream("logs:p1") == s);
  CHECK(ferry::stores::slice_stream_id("logs:p1", 1) == "logs:p1#slice1");
  // A slice journals under its own id; its commit removes its entries only.
  st.begin_batch("logs:p1#slice0", 3, "k2", "k3", 2);
  st.begin_batch("logs:p1#slice1", 1, "k4", "k5", 2);
  ferry::stores::commit_extras x;
  x.journal_stream_id = "logs:p1#slice0";
  st.commit_batch(s, 3, x);
  CHECK(st.inflight_batches("logs:p1#slice0").empty());
  CHECK(st.inflight_batches("logs:p1#slice1").size() == 1);
  st.reset_stream("logs:p1");
  CHECK(st.inflight_batches("logs:p1#slice1").empty());
  CHECK_FALSE(st.load_stream("logs:p1").has_value());
}

TEST_CASE("state_store: a format-2 stream record (ferry before slices) loads unsliced") {
  temp_dir tmp("ferry-state");
  const auto dir = tmp.str() + "/s";
  stream_state s;
  s.stream_id = "logs:p2";
  s.kind = "logs";
  s.source_ids = {"p2"};
  s.cursor = "c9";
  s.next_seq = 5;
  s.counters.rows = 40;
  s.digest = digest256{5, 0, 0, 0};
  std::string v3;
  {
    auto st = state_store::open(dir);
    st.save_stream(s);
  }
  {
    auto kv = ferry::stores::kv_store::open_rocksdb(dir, state_store::column_families());
    v3 = *kv->get("cursors", "logs:p2");
    // Format 2 = format 3 without the trailing slice count (0 here, one byte).
    REQUIRE(v3.front() == 3);
    REQUIRE(v3.back() == 0);
    std::string v2 = v3.substr(0, v3.size() - 1);
    v2[0] = 2;
    kv->put("cursors", "logs:p2", v2, true);
  }
  auto st = state_store::open(dir);
  CHECK(st.load_stream("logs:p2") == s);
}

TEST_CASE("state_store: journal drops start at the lowest live seq, and still find every entry they must drop") {
  // commit_batch drops entries up to its seq starting at the floor this process keeps per journal scope
  // (no walk over earlier commits' tombstones); every way an entry can sit below a floor is covered.
  temp_dir tmp("ferry-state");
  auto st = state_store::open(tmp.str() + "/s");
  auto s = sample_state();
  st.save_stream(s);
  for (std::uint64_t seq = 1; seq <= 50; ++seq) {
    st.begin_batch(s.stream_id, seq, "a", "b", 1);
    if (seq % 2 == 0) st.commit_batch(s, seq);  // two in flight at once, committed in pairs
  }
  CHECK(st.inflight_batches(s.stream_id).empty());
  st.begin_batch(s.stream_id, 51, "a", "b", 1);
  st.begin_batch(s.stream_id, 52, "a", "b", 1);
  st.commit_batch(s, 51);
  REQUIRE(st.inflight_batches(s.stream_id).size() == 1);
  CHECK(st.inflight_batches(s.stream_id)[0].batch_seq == 52);
  // An entry begun below the floor (a re-send of an old seq) is still dropped by the next commit.
  st.begin_batch(s.stream_id, 7, "a", "b", 1);
  st.commit_batch(s, 52);
  CHECK(st.inflight_batches(s.stream_id).empty());
  // A reset clears the scope; a stream started again from seq 1 drops its entries as before.
  st.reset_stream(s.stream_id);
  st.save_stream(s);
  st.begin_batch(s.stream_id, 1, "a", "b", 1);
  st.begin_batch(s.stream_id, 2, "a", "b", 1);
  st.commit_batch(s, 1);
  REQUIRE(st.inflight_batches(s.stream_id).size() == 1);
  CHECK(st.inflight_batches(s.stream_id)[0].batch_seq == 2);
  st.commit_batch(s, 2);
  CHECK(st.inflight_batches(s.stream_id).empty());
}
