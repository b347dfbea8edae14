#include "pipelines/archive/archive_source.hpp"

#include "pipelines/archive/format.hpp"
#include "pipelines/streams/btql_query.hpp"

#include "test_support.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/json.hpp>

#include <doctest/doctest.h>

#include <filesystem>
#include <random>

namespace fs = std::filesystem;
namespace json = boost::json;
using namespace ferry::pipelines;
using ferry::test::run_coro;

namespace {

/// A temp dir holding an archive written with the real format functions: two experiments (rows
/// interleaved by key) in chunks of 2 rows, a project and three experiments as resources.
struct fixture {
  fs::path dir;
  archive::manifest m;
  boost::asio::io_context ctx;

  fixture() {
    std::random_device rd;
    dir = fs::temp_directory_path() / ("ferry-archive-test-" + std::to_string(rd()));
    fs::create_directories(dir);
    add_stream("experiment", "e1", {{"k01", "2024-01-01T00:00:00Z"}, {"k03", "2024-01-03T00:00:00Z"},
                                    {"k05", "2024-01-05T00:00:00Z"}, {"k07", "2024-01-07T00:00:00Z"}});
    add_stream("experiment", "e2", {{"k02", "2024-01-02T00:00:00Z"}, {"k04", "2024-01-04T00:00:00Z"}});
    json::array exps;
    for (const char* id : {"e1", "e2", "e3"}) exps.push_back(json::object{{"id", id}, {"project_id", id == std::string("e3") ? "p2" : "p1"}});
    add_resource("/v1/experiment", std::move(exps));
    add_resource("/v1/project", json::array{json::object{{"id", "p1"}, {"name", "a b"}}});
    archive::write_manifest(dir, m);
  }
  ~fixture() { fs::remove_all(dir); }

  void add_stream(std::string kind, std::string id, std::vector<std::pair<std::string, std::string>> rows) {
    archive::stream_entry s{kind, id, rows.size(), {}};
    for (std::size_t i = 0; i < rows.size(); i += 2) {
      std::string lines;
      std::size_t n = 0;
      for (std::size_t j = i; j < std::min(i + 2, rows.size()); ++j, ++n)
        lines += json::serialize(json::object{{"id", "row-" + rows[j].first}, {"_pagination_key", rows[j].first},
                                              {"created", rows[j].second}, {"experiment_id", id}}) + "\n";
      const auto frame = archive::zstd_compress(lines);
      archive::file_entry f{archive::chunk_file_name(kind, id, s.chunks.size()), archive::sha256_hex(frame),
                            frame.size(), n, rows[i].first, rows[i + n - 1].first};
      archive::write_file_durably(dir / f.path, frame);
      s.chunks.push_back(f);
    }
    m.streams.push_back(s);
  }

  void add_resource(const std::string& path, json::array objs) {
    const auto text = json::serialize(json::object{{"path", path}, {"objects", std::move(objs)}});
    archive::file_entry f{archive::resource_file_name(path), archive::sha256_hex(text), text.size(), 0, {}, {}};
    archive::write_file_durably(dir / f.path, text);
    m.resources[path] = f;
  }

  /// The keys of the rows the event source answers for `q`.
  std::vector<std::string> keys(const streams::page_query& q, bool keys_only = false) {
    archive::archive_event_source src(dir, archive::read_and_check(dir));
    const auto body = streams::build_btql_body(keys_only ? streams::build_key_query(q) : streams::build_page_query(q));
    auto r = run_coro(ctx, src.btql(body));
    REQUIRE(r.status == 200);
    std::vector<std::string> out;
    const auto page = json::parse(r.body);  // (kept: a range-for over a temporary's member dangles)
    for (const auto& v : page.at("data").as_array()) {
      out.emplace_back(v.at("_pagination_key").as_string());
      if (keys_only) CHECK(v.as_object().size() == 1);
    }
    return out;
  }

  std::string get(const std::string& target, int want_status = 200) {
    archive::archive_resource_api api(dir, archive::read_and_check(dir));
    auto r = run_coro(ctx, api.call("GET", target, ""));
    CHECK(r.status == want_status);
    return r.body;
  }
};

streams::page_query query(std::vector<std::string> ids, std::size_t limit) {
  streams::page_query q;
  q.kind = streams::stream_kind::experiment;
  q.object_ids = std::move(ids);
  q.limit = limit;
  return q;
}

}  // namespace

TEST_CASE("archive_event_source: answers the stream engine's BTQL pages in key order across objects and chunks") {
  fixture f;
  using v = std::vector<std::string>;
  SUBCASE("a group of objects merges by _pagination_key, limited") {
    CHECK(f.keys(query({"e1", "e2"}, 4)) == v{"k01", "k02", "k03", "k04"});
  }
  SUBCASE("keyset position: strictly after, or inclusive") {
    auto q = query({"e1", "e2"}, 10);
    q.after_key = "k03";
    CHECK(f.keys(q) == v{"k04", "k05", "k07"});
    q.inclusive = true;
    CHECK(f.keys(q) == v{"k03", "k04", "k05", "k07"});
  }
  SUBCASE("created window: after inclusive, before exclusive") {
    auto q = query({"e1"}, 10);
    q.created_after = "2024-01-03T00:00:00.000Z";
    q.created_before = "2024-01-07T00:00:00Z";
    CHECK(f.keys(q) == v{"k03", "k05"});
  }
  SUBCASE("key-only queries return only keys") { CHECK(f.keys(query({"e2"}, 10), true) == v{"k02", "k04"}); }
  SUBCASE("past the end: an empty page") {
    auto q = query({"e1", "e2"}, 10);
    q.after_key = "k07";
    CHECK(f.keys(q).empty());
  }
}

TEST_CASE("archive_event_source: an object not in the archive or a corrupt chunk is a failed page naming it") {
  fixture f;
  archive::archive_event_source src(f.dir, archive::read_and_check(f.dir));
  auto r = run_coro(f.ctx, src.btql(streams::build_btql_body(streams::build_page_query(query({"e3"}, 10)))));
  CHECK(r.status == 404);
  CHECK(r.error.find("experiment/e3") != std::string::npos);
  r = run_coro(f.ctx, src.btql(R"({"query":"select: *\nfrom: experiment('e1') spans\nunknown: x"})"));
  CHECK(r.status == 400);
  const auto chunk = f.dir / archive::chunk_file_name("experiment", "e1", 1);
  fs::remove(chunk);
  archive::write_file_durably(chunk, archive::zstd_compress("{\"_pagination_key\":\"k05\"}\n"));
  auto q = query({"e1"}, 10);
  q.after_key = "k03";
  r = run_coro(f.ctx, src.btql(streams::build_btql_body(streams::build_page_query(q))));
  CHECK(r.status == 500);
  CHECK(r.error.find("000001.jsonl.zst: sha256 mismatch") != std::string::npos);
}

TEST_CASE("archive_resource_api: filters by query fields, pages with starting_after, reads by id, refuses writes") {
  fixture f;
  auto ids = [](const std::string& body) {
    std::vector<std::string> out;
    const auto page = json::parse(body);
    for (const auto& o : page.at("objects").as_array()) out.emplace_back(o.at("id").as_string());
    return out;
  };
  using v = std::vector<std::string>;
  CHECK(ids(f.get("/v1/experiment?project_id=p1&limit=1")) == v{"e1"});
  CHECK(ids(f.get("/v1/experiment?project_id=p1&limit=1&starting_after=e1")) == v{"e2"});
  CHECK(ids(f.get("/v1/experiment?project_id=p1&limit=1&starting_after=e2")).empty());
  CHECK(ids(f.get("/v1/experiment")) == v{"e1", "e2", "e3"});
  CHECK(ids(f.get("/v1/project?name=a%20b")) == v{"p1"});
  CHECK(json::parse(f.get("/v1/experiment/e3")).at("project_id") == "p2");
  f.get("/v1/experiment/e9", 404);
  f.get("/v1/role", 404);
  archive::archive_resource_api api(f.dir, archive::read_and_check(f.dir));
  CHECK(run_coro(f.ctx, api.call("POST", "/v1/experiment", "{}")).status == 405);
}

TEST_CASE("archive manifest: read_and_check refuses a tampered manifest and a changed file, naming it") {
  fixture f;
  CHECK_NOTHROW(archive::read_and_check(f.dir));
  auto text = archive::read_file(f.dir / "manifest.json");
  SUBCASE("manifest edited") {
    text[text.find("\"rows\":4")+7] = '5';
    archive::write_file_durably(f.dir / "manifest.json", text);
    CHECK_THROWS_WITH(archive::read_and_check(f.dir), doctest::Contains("manifest.json: sha256 does not match"));
  }
  SUBCASE("resource file changed, same size") {
    auto res = archive::read_file(f.dir / "resources/project.json");
    res[res.find("a b")] = 'c';
    archive::write_file_durably(f.dir / "resources/project.json", res);
    CHECK_THROWS_WITH(archive::read_and_check(f.dir), doctest::Contains("resources/project.json: sha256 mismatch"));
  }
}

TEST_CASE("attachment_refs: every reference the copy recognizes, by path; incomplete ones are not references") {
  const auto row = json::parse(R"({"id":"r1",
    "input":{"file":{"type":"braintrust_attachment","key":"k1","filename":"a.txt","content_type":"text/plain"},
             "list":[1,{"type":"braintrust_attachment","key":"k2","filename":"b.png","content_type":"image/png"}]},
    "output":{"type":"braintrust_attachment","key":"k3","filename":"c"},
    "metadata":{"type":"external_attachment","key":"k4","filename":"d","content_type":"x/y"}})");
  const auto refs = archive::attachment_refs(row);
  REQUIRE(refs.size() == 2);
  CHECK(refs[0].path == ".input.file");
  CHECK(refs[0].key == "k1");
  CHECK(refs[0].filename == "a.txt");
  CHECK(refs[0].content_type == "text/plain");
  CHECK(refs[1].path == ".input.list[1]");
  CHECK(refs[1].key == "k2");
}

TEST_CASE("archive attachments: listed with their checksums, served by key to the copy, a changed file refused") {
  fixture f;
  const std::string bytes = "attachment bytes \x01\x02";
  const auto sha = archive::sha256_hex(bytes);
  archive::attachment_entry a{"src-key", "a.bin", "application/octet-stream",
                              {archive::attachment_file_name(sha), sha, bytes.size(), 0, {}, {}}};
  archive::write_file_durably(f.dir / a.file.path, bytes);
  f.m.attachments[a.key] = a;
  archive::write_manifest(f.dir, f.m);
  const auto m = archive::read_and_check(f.dir);
  CHECK(m.holds_attachments());
  REQUIRE(m.attachments.count("src-key") == 1);
  CHECK(m.attachments.at("src-key").file.path == "attachments/" + sha);
  CHECK(m.attachments.at("src-key").filename == "a.bin");
  archive::archive_event_source src(f.dir, m);
  CHECK(run_coro(f.ctx, src.download_attachment("src-key", "a.bin", "application/octet-stream", 1000)) == bytes);
  CHECK_THROWS_WITH(run_coro(f.ctx, src.download_attachment("other", "a.bin", "x/y", 1000)),
                    doctest::Contains("attachment other: not in the archive"));
  CHECK_THROWS_WITH(run_coro(f.ctx, src.download_attachment("src-key", "a.bin", "x/y", 4)),
                    doctest::Contains("exceed MIGRATION_ATTACHMENT_MAX_BYTES"));
  auto changed = bytes;
  changed[0] = 'A';
  archive::write_file_durably(f.dir / a.file.path, changed);
  const std::string refused = "attachments/" + sha + ": sha256 mismatch";
  CHECK_THROWS_WITH(archive::read_and_check(f.dir), doctest::Contains(refused.c_str()));
  CHECK_THROWS_WITH(run_coro(f.ctx, src.download_attachment("src-key", "a.bin", "x/y", 1000)),
                    doctest::Contains(refused.c_str()));
}

TEST_CASE("archive manifest: format 1 (references only) is read without attachments; a newer format is refused") {
  fixture f;
  f.m.version = 1;
  archive::write_manifest(f.dir, f.m);
  auto m = archive::read_and_check(f.dir);
  CHECK_FALSE(m.holds_attachments());
  CHECK(archive::read_file(f.dir / "manifest.json").find("\"attachments\"") == std::string::npos);
  f.m.version = archive::format_version + 1;
  archive::write_manifest(f.dir, f.m);
  CHECK_THROWS_WITH(archive::read_and_check(f.dir), doctest::Contains("is not supported"));
}
