#include "transports/recorder.hpp"

#include "engine/log.hpp"
#include "test_support.hpp"
#include "transports/codec.hpp"

#include <boost/json.hpp>

#include <doctest/doctest.h>

#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <thread>
#include <vector>

using namespace ferry::transports;
namespace fs = std::filesystem;

namespace {

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::vector<fs::path> exchange_files(const fs::path& dir) {
  std::vector<fs::path> out;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().filename().string().starts_with("exchanges-")) out.push_back(e.path());
  std::sort(out.begin(), out.end());
  return out;
}

// Everything the recording holds, decompressed: what a person grepping the files would see.
std::string all_plain_text(const fs::path& dir) {
  std::string text;
  for (const auto& f : exchange_files(dir)) {
    const std::string raw = slurp(f);
    if (f.extension() == ".gz") {
      std::string err;
      auto plain = decompress(raw, true, 1u << 30, err);
      REQUIRE_MESSAGE(plain.has_value(), err);
      text += *plain;
    } else {
      text += raw;
    }
    text += raw;  // the raw bytes too: nothing may be stored in clear either way
  }
  text += slurp(dir / "manifest.json");
  return text;
}

// A body that does not compress to nothing, so rotation by compressed size is exercised.
std::string noisy_body(std::uint64_t i, std::size_t n) {
  std::string s = "{\"id\":\"row-" + std::to_string(i) + "\",\"v\":\"";
  std::uint64_t x = i * 2654435761u + 1;
  while (s.size() < n) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    s += static_cast<char>('a' + x % 26);
  }
  return s + "\"}";
}

exchange_record sample(std::uint64_t i, std::string side = "source") {
  exchange_record r;
  r.side = std::move(side);
  r.method = "POST";
  r.target = "/btql";
  r.request_headers = {{"content-type", "application/json"}};
  r.request_body = "{\"query\":\"select: * | from: dataset('d') | limit: " + std::to_string(i) + "\"}";
  r.status = 200;
  r.outcome = "ok";
  r.response_headers = {{"content-type", "application/json"}};
  r.response_body = noisy_body(i, 200);
  r.duration_ms = 1.5;
  return r;
}

recorder_options small_files() {
  recorder_options o;
  o.max_file_bytes = 2000;
  o.chunk_bytes = 600;
  o.flush_interval = std::chrono::milliseconds(0);  // by size only: deterministic
  return o;
}

}  // namespace

TEST_CASE("recorder: rotates gzip files by size and lists them all in the manifest") {
  ferry::test::temp_dir tmp;
  const fs::path dir = tmp.path() / "rec";
  {
    recorder rec(dir, small_files());
    for (std::uint64_t i = 0; i < 100; ++i) rec.record(sample(i));
    CHECK(rec.stats().exchanges == 100);
  }
  const auto files = exchange_files(dir);
  REQUIRE(files.size() > 2);
  CHECK(files.front().filename() == "exchanges-000001.jsonl.gz");
  CHECK(files[1].filename() == "exchanges-000002.jsonl.gz");
  for (std::size_t i = 0; i + 1 < files.size(); ++i) CHECK(fs::file_size(files[i]) >= 2000);  // full before rotating

  const auto manifest = boost::json::parse(slurp(dir / "manifest.json")).as_object();
  CHECK(manifest.at("version").to_number<int>() == 1);
  CHECK(manifest.at("exchanges").to_number<int>() == 100);
  CHECK(manifest.at("created").as_string().size() > 10);
  const auto& listed = manifest.at("files").as_array();
  REQUIRE(listed.size() == files.size());
  std::uint64_t sum = 0;
  for (std::size_t i = 0; i < listed.size(); ++i) {
    CHECK(listed[i].at("name").as_string() == files[i].filename().string());
    CHECK(listed[i].at("bytes").to_number<std::uint64_t>() == fs::file_size(files[i]));
    sum += listed[i].at("exchanges").to_number<std::uint64_t>();
  }
  CHECK(sum == 100);

  std::vector<std::string> warnings;
  const auto back = read_recording(dir, &warnings);
  CHECK(warnings.empty());
  REQUIRE(back.size() == 100);
  for (std::uint64_t i = 0; i < 100; ++i) {
    CHECK(back[i].seq == i + 1);
    CHECK(back[i].response_body == noisy_body(i, 200));
    CHECK(back[i].request_body == sample(i).request_body);
  }
  CHECK(back[7].side == "source");
  CHECK(back[7].method == "POST");
  CHECK(back[7].target == "/btql");
  CHECK(back[7].status == 200);
  CHECK(back[7].duration_ms == doctest::Approx(1.5));
  CHECK(back[7].ts.size() == 24);  // 2026-11-24T20:00:00.000Z
}

TEST_CASE("recorder: every file is plain gzip whose lines are JSON objects") {
  ferry::test::temp_dir tmp;
  {
    recorder rec(tmp.path(), small_files());
    for (std::uint64_t i = 0; i < 30; ++i) rec.record(sample(i));
  }
  std::size_t lines = 0;
  for (const auto& f : exchange_files(tmp.path())) {
    const std::string raw = slurp(f);
    REQUIRE(has_gzip_magic(raw));
    std::string err;
    auto plain = decompress(raw, true, 1u << 30, err);
    REQUIRE_MESSAGE(plain.has_value(), err);
    std::size_t start = 0;
    for (auto nl = plain->find('\n'); nl != std::string::npos; start = nl + 1, nl = plain->find('\n', start)) {
      auto v = boost::json::parse(std::string_view(*plain).substr(start, nl - start));
      CHECK(v.as_object().contains("response_body"));
      ++lines;
    }
    CHECK(start == plain->size());  // ends with a newline
  }
  CHECK(lines == 30);
}

TEST_CASE("recorder: api key, auth headers and ai secret values never reach the files") {
  const std::string key = "sk-ferry-recorder-test-4f9a1c77e2";
  const std::string ai_secret = "ai-provider-value-93jd72hs";
  ferry::engine::register_secret(key);
  ferry::test::temp_dir tmp;
  for (const bool compress : {true, false}) {
    CAPTURE(compress);
    const fs::path dir = tmp.path() / (compress ? "gz" : "plain");
    {
      recorder_options o;
      o.compress = compress;
      recorder rec(dir, o);
      exchange_record r;
      r.side = "dest";
      r.method = "POST";
      r.target = "/v1/ai_secret?api_key=" + key + "&org_name=acme&token=tok-123456";
      r.url = "http://127.0.0.1:1/v1/ai_secret?api_key=" + key;
      r.request_headers = {{"Authorization", "Bearer " + key},
                           {"X-Api-Key", key},
                           {"Cookie", "session=" + key},
                           {"Content-Type", "application/json"}};
      r.request_body = "{\"name\":\"OPENAI_API_KEY\",\"secret\":\"" + ai_secret +
                       "\",\"metadata\":{\"api_key\":\"nested-secret-value\"},\"note\":\"copied with " + key +
                       "\",\"rows\":[{\"client_secret\":\"cs-value-1234\"}]}";
      r.status = 200;
      r.outcome = "ok";
      r.error = "POST /x: 401 invalid key " + key;
      r.response_headers = {{"content-type", "application/json"}, {"set-cookie", "sid=abcdef"}};
      r.response_body = "[{\"id\":\"s1\",\"name\":\"OPENAI_API_KEY\",\"secret\":\"" + ai_secret + "\"}]";
      rec.record(r);
    }
    const std::string text = all_plain_text(dir);
    CHECK(text.find(key) == std::string::npos);
    CHECK(text.find(ai_secret) == std::string::npos);
    CHECK(text.find("nested-secret-value") == std::string::npos);
    CHECK(text.find("cs-value-1234") == std::string::npos);
    CHECK(text.find("tok-123456") == std::string::npos);
    CHECK(text.find("sid=abcdef") == std::string::npos);
    CHECK(text.find("[REDACTED]") != std::string::npos);

    const auto back = read_recording(dir);
    REQUIRE(back.size() == 1);
    const auto& b = back[0];
    for (const auto& [k, v] : b.request_headers) {
      if (k == "Content-Type") CHECK(v == "application/json");
      else CHECK(v == "[REDACTED]");
    }
    CHECK(b.target.starts_with("/v1/ai_secret?api_key=%5BREDACTED%5D&org_name=acme&token="));
    auto body = boost::json::parse(b.request_body).as_object();
    CHECK(body.at("name").as_string() == "OPENAI_API_KEY");  // only secret-named fields are masked
    CHECK(body.at("secret").as_string() == "[REDACTED]");
    CHECK(body.at("metadata").at("api_key").as_string() == "[REDACTED]");
    CHECK(body.at("note").as_string() == "copied with [REDACTED]");
    auto resp = boost::json::parse(b.response_body).as_array();
    CHECK(resp.at(0).at("secret").as_string() == "[REDACTED]");
    CHECK(resp.at(0).at("id").as_string() == "s1");
  }
}

TEST_CASE("recorder: bodies without secrets are stored byte for byte") {
  const std::string body = "{ \"b\": 1,\n  \"a\": [1.0, 2] , \"tokens\": 3 }";
  CHECK(redact_body(body) == body);
  CHECK(redact_body("not json secret=1") == "not json secret=1");
  CHECK(redact_header("content-type", "text/plain") == "text/plain");
  CHECK(redact_header("authorization", "Basic abc") == "[REDACTED]");
  CHECK(redact_target("/v1/project?limit=10&starting_after=x") == "/v1/project?limit=10&starting_after=x");
}

TEST_CASE("recorder: concurrent writers lose and duplicate nothing") {
  ferry::test::temp_dir tmp;
  constexpr int threads = 4;
  constexpr int per_thread = 250;
  {
    recorder rec(tmp.path(), small_files());
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t)
      pool.emplace_back([&, t] {
        for (int i = 0; i < per_thread; ++i) {
          auto r = sample(static_cast<std::uint64_t>(t * per_thread + i), "side-" + std::to_string(t));
          rec.record(std::move(r));
        }
      });
    for (auto& th : pool) th.join();
  }
  std::vector<std::string> warnings;
  const auto back = read_recording(tmp.path(), &warnings);
  CHECK(warnings.empty());
  REQUIRE(back.size() == threads * per_thread);
  std::set<std::uint64_t> seqs;
  std::set<std::string> bodies;
  for (const auto& r : back) {
    seqs.insert(r.seq);
    bodies.insert(r.response_body);
  }
  CHECK(seqs.size() == back.size());
  CHECK(*seqs.begin() == 1);
  CHECK(*seqs.rbegin() == threads * per_thread);
  CHECK(bodies.size() == back.size());
  for (std::size_t i = 1; i < back.size(); ++i) CHECK(back[i - 1].seq < back[i].seq);  // file order = seq order
  CHECK(exchange_files(tmp.path()).size() > 10);
}

TEST_CASE("recorder: a second recorder on the same dir appends new files") {
  ferry::test::temp_dir tmp;
  {
    recorder rec(tmp.path());
    for (std::uint64_t i = 0; i < 3; ++i) rec.record(sample(i));
  }
  {
    recorder rec(tmp.path());
    for (std::uint64_t i = 3; i < 5; ++i) rec.record(sample(i));
  }
  const auto files = exchange_files(tmp.path());
  REQUIRE(files.size() == 2);
  CHECK(files[1].filename() == "exchanges-000002.jsonl.gz");
  const auto back = read_recording(tmp.path());
  REQUIRE(back.size() == 5);
  CHECK(back[4].response_body == noisy_body(4, 200));
  const auto manifest = boost::json::parse(slurp(tmp.path() / "manifest.json")).as_object();
  CHECK(manifest.at("exchanges").to_number<int>() == 5);
  CHECK(manifest.at("files").as_array().size() == 2);
}

TEST_CASE("recorder: the reader keeps what a killed run flushed") {
  ferry::test::temp_dir tmp;
  {
    recorder rec(tmp.path());
    for (std::uint64_t i = 0; i < 4; ++i) rec.record(sample(i));
  }
  // A run killed while writing its next chunk: half a gzip member at the end of the file.
  const auto f = exchange_files(tmp.path()).at(0);
  const std::string half = gzip_compress(std::string("{\"seq\":99,\"method\":\"GET\",\"target\":\"/x\"}\n") +
                                         noisy_body(1, 4000) + "\n");
  {
    std::ofstream out(f, std::ios::binary | std::ios::app);
    out.write(half.data(), static_cast<std::streamsize>(half.size() / 2));
  }
  std::vector<std::string> warnings;
  const auto back = read_recording(tmp.path(), &warnings);
  CHECK(back.size() >= 4);  // the 4 flushed exchanges (and possibly the complete line of the cut member)
  CHECK(back[3].response_body == noisy_body(3, 200));
  CHECK_FALSE(warnings.empty());
}

TEST_CASE("recorder: binary bodies round trip and oversize bodies are cut") {
  ferry::test::temp_dir tmp;
  std::string binary;
  for (int i = 0; i < 256; ++i) binary += static_cast<char>(i);
  {
    recorder_options o;
    o.max_body_bytes = 300;
    recorder rec(tmp.path(), o);
    auto r = sample(1);
    r.response_body = binary;
    r.request_body = std::string(1000, 'x');
    rec.record(r);
  }
  const auto back = read_recording(tmp.path());
  REQUIRE(back.size() == 1);
  CHECK(back[0].response_body == binary);
  CHECK_FALSE(back[0].response_body_truncated);
  CHECK(back[0].request_body == std::string(300, 'x'));
  CHECK(back[0].request_body_truncated);
}

TEST_CASE("recorder: a new recording dir is private to its owner") {
  ferry::test::temp_dir tmp;
  const fs::path dir = tmp.path() / "a" / "rec";
  {
    recorder rec(dir);
    rec.record(sample(1));
  }
  struct stat st {};
  REQUIRE(::stat(dir.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0700);
  REQUIRE(::stat(exchange_files(dir).at(0).c_str(), &st) == 0);
  CHECK((st.st_mode & 0077) == 0);
}

TEST_CASE("recorder: errors name the recording dir") {
  ferry::test::temp_dir tmp;
  {
    std::ofstream(tmp.path() / "file") << "x";
  }
  CHECK_THROWS_WITH_AS(recorder(tmp.path() / "file"), doctest::Contains("file: exists and is not a directory"),
                       std::runtime_error);
  CHECK_THROWS_WITH_AS(read_recording(tmp.path()), doctest::Contains("no exchanges-"), std::runtime_error);
}
