#include "stores/kv_store.hpp"

#include "store_errors.hpp"
#include "test_support.hpp"

#include <doctest/doctest.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <random>
#include <utility>

using ferry::stores::be64;
using ferry::stores::from_be64;
using ferry::stores::kv_options;
using ferry::stores::kv_store;
using ferry::stores::store_error;
using ferry::stores::write_batch;
using ferry::test::error_of;
using ferry::test::temp_dir;

namespace {

using kv_list = std::vector<std::pair<std::string, std::string>>;

kv_list collect(const kv_store& kv, std::string_view cf, std::string_view from, std::string_view to) {
  kv_list out;
  kv.scan(cf, from, to, [&](std::string_view k, std::string_view v) {
    out.emplace_back(std::string(k), std::string(v));
    return true;
  });
  return out;
}

kv_list collect_reverse(const kv_store& kv, std::string_view cf, std::string_view from, std::string_view to) {
  kv_list out;
  kv.scan_reverse(cf, from, to, [&](std::string_view k, std::string_view v) {
    out.emplace_back(std::string(k), std::string(v));
    return true;
  });
  return out;
}

std::vector<std::string> keys_of(const kv_list& l) {
  std::vector<std::string> out;
  for (const auto& [k, v] : l) out.push_back(k);
  return out;
}


}  // namespace

// The same contract body runs once per implementation (doctest re-enters the case per SUBCASE).
#define FOR_EACH_KV_IMPL(kv, tmp)                                          \
  temp_dir tmp("ferry-kv");                                                \
  std::unique_ptr<kv_store> kv;                                            \
  SUBCASE("rocksdb") { kv = kv_store::open_rocksdb(tmp.str() + "/db", {"a", "b"}); } \
  SUBCASE("memory") { kv = kv_store::open_memory({"a", "b"}); }            \
  REQUIRE(kv != nullptr)

TEST_CASE("kv_store: get, put and del per column family") {
  FOR_EACH_KV_IMPL(kv, tmp);
  CHECK_FALSE(kv->get("a", "k").has_value());
  kv->put("a", "k", "v1");
  CHECK(kv->get("a", "k") == std::optional<std::string>("v1"));
  CHECK_FALSE(kv->get("b", "k").has_value());  // column families are separate key spaces
  kv->put("a", "k", "v2", true);
  CHECK(kv->get("a", "k") == std::optional<std::string>("v2"));
  kv->put("a", std::string("bin\0key", 7), std::string("\0\xff", 2));
  CHECK(kv->get("a", std::string("bin\0key", 7)) == std::optional<std::string>(std::string("\0\xff", 2)));
  CHECK_FALSE(kv->get("a", "bin").has_value());
  kv->del("a", "k");
  CHECK_FALSE(kv->get("a", "k").has_value());
  kv->del("a", "never-there");  // deleting a missing key is not an error
  kv->put("default", "d", "x");  // "default" always exists
  CHECK(kv->get("default", "d") == std::optional<std::string>("x"));

  auto multi = kv->multi_get("a", {"missing", std::string("bin\0key", 7)});
  REQUIRE(multi.size() == 2);
  CHECK_FALSE(multi[0].has_value());
  CHECK(multi[1] == std::optional<std::string>(std::string("\0\xff", 2)));
  CHECK(kv->multi_get("a", {}).empty());
  // a key asked twice is answered twice
  auto twice = kv->multi_get("a", {std::string("bin\0key", 7), std::string("bin\0key", 7)});
  REQUIRE(twice.size() == 2);
  CHECK(twice[0] == twice[1]);
  CHECK(twice[0].has_value());
}

TEST_CASE("kv_store: an unknown column family is a store_error naming it") {
  FOR_EACH_KV_IMPL(kv, tmp);
  CHECK(error_of([&] { kv->put("nope", "k", "v"); }).find("unknown column family 'nope'") != std::string::npos);
  CHECK(error_of([&] { (void)kv->get("nope", "k"); }).find("'nope'") != std::string::npos);
}

TEST_CASE("kv_store: a batch applies all its operations or none") {
  FOR_EACH_KV_IMPL(kv, tmp);
  kv->put("a", "gone", "x");
  write_batch b;
  b.put("a", "k1", "1");
  b.put("b", "k2", "2");
  b.del("a", "gone");
  b.put("a", "k1", "1b");  // later ops win within a batch
  kv->write(b, true);
  CHECK(kv->get("a", "k1") == std::optional<std::string>("1b"));
  CHECK(kv->get("b", "k2") == std::optional<std::string>("2"));
  CHECK_FALSE(kv->get("a", "gone").has_value());

  // A batch with a bad column family fails before writing anything.
  write_batch bad;
  bad.put("a", "k3", "3");
  bad.put("nope", "k4", "4");
  CHECK_THROWS_AS(kv->write(bad, true), store_error);
  CHECK_FALSE(kv->get("a", "k3").has_value());
}

TEST_CASE("kv_store: scan visits from (inclusive) to (exclusive) in order and stops when asked") {
  FOR_EACH_KV_IMPL(kv, tmp);
  for (int i = 0; i < 600; ++i) kv->put("a", be64(static_cast<std::uint64_t>(i) * 10), std::to_string(i));
  kv->put("b", be64(5), "other cf");

  auto all = collect(*kv, "a", "", "");
  REQUIRE(all.size() == 600);
  for (std::size_t i = 0; i < all.size(); ++i) {
    CHECK(from_be64(all[i].first) == i * 10);
    CHECK(all[i].second == std::to_string(i));
  }
  // Bounds: from inclusive (also when between keys), to exclusive.
  auto mid = collect(*kv, "a", be64(15), be64(50));
  REQUIRE(mid.size() == 3);
  CHECK(from_be64(mid[0].first) == 20);
  CHECK(from_be64(mid[2].first) == 40);
  CHECK(collect(*kv, "a", be64(20), be64(21)).size() == 1);
  CHECK(collect(*kv, "a", be64(5990), "").size() == 1);
  CHECK(collect(*kv, "a", be64(6000), "").empty());

  int visited = 0;
  kv->scan("a", "", "", [&](std::string_view, std::string_view) { return ++visited < 3; });
  CHECK(visited == 3);

  // A visitor may write to the store (the memory store must not deadlock).
  kv->scan("a", be64(0), be64(300 * 10), [&](std::string_view k, std::string_view v) {
    kv->put("b", k, v);
    return true;
  });
  CHECK(collect(*kv, "b", "", "").size() == 300 + 1);  // + the key put in "b" above
}

TEST_CASE("kv_store: reverse scan visits below from down to to (inclusive) in descending order") {
  FOR_EACH_KV_IMPL(kv, tmp);
  for (std::uint64_t i = 1; i <= 600; ++i) kv->put("a", be64(i), "v");

  auto all = collect_reverse(*kv, "a", "", "");
  REQUIRE(all.size() == 600);
  CHECK(from_be64(all.front().first) == 600);
  CHECK(from_be64(all.back().first) == 1);
  CHECK(std::is_sorted(all.rbegin(), all.rend()));

  // `from` exclusive, `to` inclusive: the mirror of scan(to, from).
  auto part = collect_reverse(*kv, "a", be64(10), be64(7));
  CHECK(keys_of(part) == std::vector<std::string>{be64(9), be64(8), be64(7)});
  auto fwd = collect(*kv, "a", be64(7), be64(10));
  CHECK(keys_of(fwd) == std::vector<std::string>{be64(7), be64(8), be64(9)});
  // `from` between keys or past the end.
  CHECK(from_be64(collect_reverse(*kv, "a", be64(1000), "").front().first) == 600);
  CHECK(collect_reverse(*kv, "a", be64(1), "").empty());

  // Latest key below a bound, the common "last cursor" query.
  std::string last;
  kv->scan_reverse("a", be64(300), "", [&](std::string_view k, std::string_view) {
    last = std::string(k);
    return false;
  });
  CHECK(from_be64(last) == 299);
}

TEST_CASE("kv_store: be64 byte order equals numeric order") {
  std::mt19937_64 gen(42);
  std::vector<std::uint64_t> nums = {0, 1, 255, 256, 65535, 65536, ~0ull, 1ull << 63, (1ull << 63) - 1};
  for (int i = 0; i < 1000; ++i) nums.push_back(gen() >> (gen() % 64));
  std::vector<std::string> enc;
  for (auto n : nums) {
    auto e = be64(n);
    CHECK(e.size() == 8);
    CHECK(from_be64(e) == n);
    enc.push_back(e);
  }
  std::sort(nums.begin(), nums.end());
  std::sort(enc.begin(), enc.end());  // bytewise: std::string compares as unsigned char
  for (std::size_t i = 0; i < nums.size(); ++i) CHECK(from_be64(enc[i]) == nums[i]);
  CHECK_THROWS_AS(from_be64("short"), store_error);
}

TEST_CASE("kv_store rocksdb: reopen sees synced data and keeps unlisted column families") {
  temp_dir tmp("ferry-kv");
  const auto dir = tmp.str() + "/state";
  {
    auto kv = kv_store::open_rocksdb(dir, {"a", "b"});
    write_batch b;
    b.put("a", "cursor", "k42");
    b.put("b", "count", be64(42));
    kv->write(b, true);
    kv->put("a", "unsynced", "u", false);  // WAL-backed even without sync: survives a clean close
  }
  {
    auto kv = kv_store::open_rocksdb(dir, {"a"});  // "b" exists on disk and must still be opened
    CHECK(kv->get("a", "cursor") == std::optional<std::string>("k42"));
    CHECK(kv->get("a", "unsynced") == std::optional<std::string>("u"));
    auto n = kv->get("b", "count");
    REQUIRE(n.has_value());
    CHECK(from_be64(*n) == 42);
    CHECK(kv->dir() == dir);
  }
}

TEST_CASE("kv_store rocksdb: creates the directory and missing parents with mode 0700") {
  temp_dir tmp("ferry-kv");
  const auto parent = tmp.path() / "p1";
  const auto dir = parent / "p2" / "state";
  auto kv = kv_store::open_rocksdb(dir.string(), {"a"});
  for (const auto& p : {parent, parent / "p2", dir}) {
    struct stat st {};
    REQUIRE(::stat(p.c_str(), &st) == 0);
    CHECK_MESSAGE((st.st_mode & 0777) == 0700, p.string());
  }
  // The temp dir itself existed already and is left as it was.
  struct stat st {};
  REQUIRE(::stat(tmp.path().c_str(), &st) == 0);
  CHECK(S_ISDIR(st.st_mode));
}

TEST_CASE("kv_store rocksdb: a second open of the same dir fails with the in-use message") {
  temp_dir tmp("ferry-kv");
  const auto dir = tmp.str() + "/state";
  auto first = kv_store::open_rocksdb(dir, {"a"});
  const auto msg = error_of([&] { kv_store::open_rocksdb(dir, {"a"}); });
  CHECK(msg == "state dir " + dir + " is in use by another ferry process (lock held)");
  first.reset();
  CHECK_NOTHROW(kv_store::open_rocksdb(dir, {"a"}));  // the lock is released on close
}

TEST_CASE("kv_store rocksdb: a lock held by another process gives the in-use message") {
  temp_dir tmp("ferry-kv");
  const auto dir = tmp.str() + "/state";
  kv_store::open_rocksdb(dir, {"a"}).reset();  // create the database, then release it
  const auto lock_path = dir + "/LOCK";

  int ready[2];
  int release[2];
  REQUIRE(::pipe(ready) == 0);
  REQUIRE(::pipe(release) == 0);
  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    // Child: only async-signal-safe calls. Hold RocksDB's fcntl lock until the parent says so
    // (closes its copy of the release pipe's write end, or EOF would never come).
    ::close(release[1]);
    ::close(ready[0]);
    int fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT, 0644);
    struct flock fl {};
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    char ok = (fd >= 0 && ::fcntl(fd, F_SETLK, &fl) == 0) ? '1' : '0';
    (void)!::write(ready[1], &ok, 1);
    char c;
    (void)!::read(release[0], &c, 1);
    ::_exit(0);
  }
  ::close(ready[1]);
  ::close(release[0]);
  char ok = 0;
  REQUIRE(::read(ready[0], &ok, 1) == 1);
  REQUIRE(ok == '1');
  const auto msg = error_of([&] { kv_store::open_rocksdb(dir, {"a"}); });
  ::close(release[1]);  // let the child exit
  int status = 0;
  ::waitpid(pid, &status, 0);
  ::close(ready[0]);
  CHECK(msg == "state dir " + dir + " is in use by another ferry process (lock held)");
  CHECK_NOTHROW(kv_store::open_rocksdb(dir, {"a"}));
}

TEST_CASE("kv_store rocksdb: an unusable directory is a one-line error naming it and the cause") {
  temp_dir tmp("ferry-kv");
  SUBCASE("a parent is a regular file") {
    const auto file = tmp.path() / "file";
    std::ofstream(file) << "x";
    const auto dir = (file / "state").string();
    const auto msg = error_of([&] { kv_store::open_rocksdb(dir, {"a"}); });
    CHECK(msg.rfind("state dir " + dir + ": cannot create directory", 0) == 0);
    CHECK(msg.find("is not a directory") != std::string::npos);
    CHECK(msg.find('\n') == std::string::npos);
  }
  SUBCASE("the parent is not writable") {
    if (::geteuid() == 0) return;  // root writes anywhere; the regular-file case covers this path
    const auto ro = tmp.path() / "ro";
    std::filesystem::create_directory(ro);
    ::chmod(ro.c_str(), 0500);
    const auto dir = (ro / "state").string();
    const auto msg = error_of([&] { kv_store::open_rocksdb(dir, {"a"}); });
    ::chmod(ro.c_str(), 0700);
    CHECK(msg.rfind("state dir " + dir + ": cannot create directory", 0) == 0);
    CHECK(msg.find("Permission denied") != std::string::npos);
  }
  SUBCASE("a corrupt database names the dir and says corrupt") {
    const auto dir = tmp.str() + "/state";
    kv_store::open_rocksdb(dir, {"a"}).reset();
    std::ofstream(dir + "/CURRENT", std::ios::trunc) << "garbage-without-newline";
    const auto msg = error_of([&] { kv_store::open_rocksdb(dir, {"a"}); });
    CHECK(msg.rfind("state dir " + dir + ": open failed: ", 0) == 0);
    CHECK(msg.find("corrupt") != std::string::npos);
  }
  SUBCASE("the label names what the directory is for") {
    const auto file = tmp.path() / "file";
    std::ofstream(file) << "x";
    kv_options opts;
    opts.dir_label = "data dir";
    const auto msg = error_of([&] { kv_store::open_rocksdb((file / "d").string(), {}, opts); });
    CHECK(msg.rfind("data dir ", 0) == 0);
  }
}

TEST_CASE("kv_store rocksdb: too little free disk stops open and synced writes with a disk-full error") {
  temp_dir tmp("ferry-kv");
  const auto dir = tmp.str() + "/state";
  const auto avail = ferry::stores::free_bytes(tmp.str());
  REQUIRE(avail.has_value());
  kv_options need_more;
  need_more.min_free_bytes = *avail + (std::uint64_t(1) << 40);  // 1 TiB more than there is
  try {
    (void)kv_store::open_rocksdb(dir, {"a"}, need_more);
    FAIL("open succeeded without the free space it needs");
  } catch (const store_error& e) {
    const std::string what = e.what();
    CHECK(what.find("state dir " + dir + ": disk full") != std::string::npos);
    CHECK(what.find("free some space and run again") != std::string::npos);
  }
  {
    auto kv = kv_store::open_rocksdb(dir, {"a"});  // default margin: this disk has room
    write_batch b;
    b.put("a", "cursor", "k1");
    kv->write(b, true);
  }
  // min_free_bytes = 0 turns the check off; what was committed is there.
  kv_options no_check;
  no_check.min_free_bytes = 0;
  auto kv = kv_store::open_rocksdb(dir, {"a"}, no_check);
  CHECK(kv->get("a", "cursor") == std::optional<std::string>("k1"));
}

TEST_CASE("kv_store rocksdb: tuned column families flush uncompressed, stay ordered and reopen with or without the tuning") {
  temp_dir tmp("ferry-kv");
  const auto dir = tmp.str() + "/data";
  kv_options tuned;
  tuned.write_buffer_bytes = 2u << 20;  // small memtables: the values below go through flushes and compactions
  tuned.column_families["bulk"] = {.compress = false, .write_buffer_bytes = 512u << 10, .level0_compaction_trigger = 2,
                                   .memtable_bloom = true};
  const std::string value(8 * 1024, 'x');  // compresses to almost nothing when compression is on
  constexpr int rows = 512;                // 4 MiB of values
  auto key = [](int i) { return "obj" + std::string(1, '\0') + be64(static_cast<std::uint64_t>(i)); };
  {
    auto kv = kv_store::open_rocksdb(dir, {"bulk", "small"}, tuned);
    for (int i = 0; i < rows; i += 8) {
      write_batch b;
      for (int j = i; j < i + 8; ++j) b.put_owned("bulk", key(j), value + std::to_string(j));
      kv->write(b, false);
    }
    CHECK_FALSE(kv->get("bulk", key(rows)).has_value());  // absent key (memtable bloom)
    CHECK(kv->get("bulk", key(7)) == std::optional<std::string>(value + "7"));
  }
  // Flushed SST files hold the values uncompressed: at least 2 of the 4 MiB are on disk as they are.
  std::uintmax_t sst_bytes = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir))
    if (e.path().extension() == ".sst") sst_bytes += e.file_size();
  CHECK(sst_bytes > (2u << 20));
  for (const kv_options& opts : {tuned, kv_options{}}) {
    auto kv = kv_store::open_rocksdb(dir, {"bulk", "small"}, opts);
    int n = 0;
    bool ordered = true;
    kv->scan("bulk", "", "", [&](std::string_view k, std::string_view v) {
      ordered = ordered && k == key(n) && v == value + std::to_string(n);
      ++n;
      return true;
    });
    CHECK(n == rows);
    CHECK(ordered);
  }
}
