// Differential test of the in-place row rewriter (issue 16 item 5) against the rewriter it replaced
// (row_rewriter_oracle.cpp, kept only here): thousands of generated BTQL pages with every field kind in
// random order, random whitespace, escaped keys and strings (\u escapes, surrogate pairs), numbers in
// many spellings, nested `id`s, duplicate keys, origins, comments and grouped objects. Both outputs
// must be the same JSON (canonical form: members sorted stably by unescaped key, so duplicates keep
// their order; strings compared unescaped; numbers compared by their SPELLING), with the same row ids,
// keys, flags, counts and riders; byte for byte (and the same copy hash) when the source is compact
// and has no escaped keys. Bad pages must fail in both.
#include "pipelines/streams/row_rewriter.hpp"

#include "row_rewriter_oracle.hpp"

#include <doctest/doctest.h>

#include <cstdint>
#include <random>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

using namespace ferry::pipelines::streams;
using ferry::test::legacy_rewriter::legacy_row_rewriter;

namespace {

// ---- canonical JSON with number spellings kept ----------------------------------------------------
struct canon {
  std::string_view s;
  std::size_t i = 0;
  void ws() {
    while (i < s.size() && (s[i] == ' ' || s[i] == '\n' || s[i] == '\r' || s[i] == '\t')) ++i;
  }
  static void put_utf8(std::string& o, std::uint32_t c) {
    if (c < 0x80) o += static_cast<char>(c);
    else if (c < 0x800) { o += static_cast<char>(0xC0 | (c >> 6)); o += static_cast<char>(0x80 | (c & 0x3F)); }
    else if (c < 0x10000) {
      o += static_cast<char>(0xE0 | (c >> 12)); o += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
      o += static_cast<char>(0x80 | (c & 0x3F));
    } else {
      o += static_cast<char>(0xF0 | (c >> 18)); o += static_cast<char>(0x80 | ((c >> 12) & 0x3F));
      o += static_cast<char>(0x80 | ((c >> 6) & 0x3F)); o += static_cast<char>(0x80 | (c & 0x3F));
    }
  }
  std::uint32_t hex4() {
    std::uint32_t v = static_cast<std::uint32_t>(std::stoul(std::string(s.substr(i, 4)), nullptr, 16));
    i += 4;
    return v;
  }
  std::string string() {  // unescaped, then written back with only \" \\ and control characters escaped
    std::string raw;
    ++i;
    while (s[i] != '"') {
      if (s[i] != '\\') { raw += s[i++]; continue; }
      ++i;
      const char e = s[i++];
      switch (e) {
        case 'n': raw += '\n'; break;
        case 't': raw += '\t'; break;
        case 'r': raw += '\r'; break;
        case 'b': raw += '\b'; break;
        case 'f': raw += '\f'; break;
        case 'u': {
          std::uint32_t c = hex4();
          if (c >= 0xD800 && c < 0xDC00 && s.substr(i, 2) == "\\u") {
            i += 2;
            c = 0x10000 + ((c - 0xD800) << 10) + (hex4() - 0xDC00);
          }
          put_utf8(raw, c);
          break;
        }
        default: raw += e;
      }
    }
    ++i;
    std::string o = "\"";
    for (unsigned char c : raw) {
      if (c == '"' || c == '\\') { o += '\\'; o += static_cast<char>(c); }
      else if (c < 0x20) { char b[8]; std::snprintf(b, sizeof b, "\\u%04x", c); o += b; }
      else o += static_cast<char>(c);
    }
    return o + "\"";
  }
  std::string value() {
    ws();
    std::string o;
    if (s[i] == '{') {
      ++i;
      std::vector<std::pair<std::string, std::string>> m;
      ws();
      if (s[i] == '}') { ++i; return "{}"; }
      for (;;) {
        ws();
        auto k = string();
        ws();
        ++i;  // ':'
        auto v = value();
        m.emplace_back(std::move(k), std::move(v));
        ws();
        if (s[i++] == '}') break;
      }
      std::stable_sort(m.begin(), m.end(), [](auto& a, auto& b) { return a.first < b.first; });
      o = "{";
      for (std::size_t k = 0; k < m.size(); ++k) o += (k ? "," : "") + m[k].first + ":" + m[k].second;
      return o + "}";
    }
    if (s[i] == '[') {
      ++i;
      ws();
      if (s[i] == ']') { ++i; return "[]"; }
      o = "[";
      for (bool first = true;; first = false) {
        o += (first ? "" : ",") + value();
        ws();
        if (s[i++] == ']') break;
      }
      return o + "]";
    }
    if (s[i] == '"') return string();
    const std::size_t b = i;  // number or literal: its spelling
    while (i < s.size() && s[i] != ',' && s[i] != '}' && s[i] != ']' && s[i] != ' ' && s[i] != '\n' && s[i] != '\t' && s[i] != '\r') ++i;
    return std::string(s.substr(b, i - b));
  }
};

std::string canonical(std::string_view json) {
  canon c{json};
  auto v = c.value();
  c.ws();
  if (c.i != json.size()) throw std::runtime_error("trailing bytes in " + std::string(json));
  return v;
}
std::string canonical_riders(const std::string& riders) { return riders.empty() ? "" : canonical("[" + riders.substr(1) + "]"); }

// ---- generator -------------------------------------------------------------------------------------
struct gen {
  std::mt19937_64 r;
  bool compact = true;       // no whitespace between tokens in this page
  bool escaped_keys = false; // some key of this page is written with escapes
  explicit gen(std::uint64_t seed) : r(seed) {}
  std::size_t pick(std::size_t n) { return static_cast<std::size_t>(r() % n); }
  bool chance(int pct) { return static_cast<int>(r() % 100) < pct; }
  std::string sp() {
    if (compact || !chance(30)) return "";
    static const char* w[] = {" ", "\n", "  ", "\t", " \r\n "};
    return w[pick(5)];
  }
  std::string str() {
    static const char* parts[] = {"plain", "caf\\u00e9", "\\ud83d\\ude00", "\\\"q\\\"", "back\\\\slash", "tab\\t",
                                  "\xc3\xa4\xc3\xb6", "\\u0000x", "\\/", "id", "\\u005f"};
    std::string o = "\"";
    for (std::size_t k = pick(4); k > 0; --k) o += parts[pick(sizeof(parts) / sizeof(parts[0]))];
    return o + "\"";
  }
  std::string number() {
    static const char* n[] = {"0", "-0", "1", "1.50", "1e3", "2E+10", "-3.25e-7", "0.1000", "12345678901234567890",
                              "1.0", "9007199254740993", "-1"};
    return n[pick(sizeof(n) / sizeof(n[0]))];
  }
  std::string value(int depth) {
    const std::size_t k = depth > 2 ? pick(4) : pick(7);
    switch (k) {
      case 0: return str();
      case 1: return number();
      case 2: { static const char* l[] = {"true", "false", "null"}; return l[pick(3)]; }
      case 3: return str();
      case 4: {  // object, sometimes with a nested id or a duplicate key
        std::string o = "{" + sp();
        const std::size_t n = pick(4);
        for (std::size_t m = 0; m < n; ++m) {
          static const char* keys[] = {"id", "a", "project_id", "caf\\u00e9", "a", "_xact_id", "object_id"};
          o += (m ? "," + sp() : "") + "\"" + keys[pick(7)] + "\"" + sp() + ":" + sp() + value(depth + 1) + sp();
        }
        return o + "}";
      }
      default: {
        std::string o = "[" + sp();
        const std::size_t n = pick(4);
        for (std::size_t m = 0; m < n; ++m) o += (m ? "," + sp() : "") + value(depth + 1) + sp();
        return o + "]";
      }
    }
  }
  std::string key(const std::string& k) {
    if (k == "input" && chance(5)) { escaped_keys = true; return "inp\\u0075t"; }
    if (k == "_xact_id" && chance(5)) { escaped_keys = true; return "\\u005fxact_id"; }
    if (k == "org_id" && chance(5)) { escaped_keys = true; return "org\\u005fid"; }
    return k;
  }
  std::string comments(const std::string& row_id) {
    std::string o = "[";
    const std::size_t n = pick(3);
    for (std::size_t m = 0; m < n; ++m) {
      o += (m ? "," : "") + std::string("{\"id\":\"c") + std::to_string(r() % 1000) + "\"," + sp() +
           "\"created\":\"2026-01-0" + std::to_string(1 + pick(9)) + "T00:00:00Z\",\"_xact_id\":\"7\"," +
           "\"comment\":{\"text\":" + str() + "}," +
           (chance(70) ? "\"origin\":{\"id\":" + row_id + "}," : std::string(chance(50) ? "\"origin\":{\"object_type\":\"dataset\",\"object_id\":\"sd1\",\"id\":" + row_id + "}," : "")) +
           (chance(60) ? "\"source\":\"app\"," : "") + (chance(50) ? "\"metadata\":" + value(2) + "," : "") + "\"extra\":1}";
    }
    return o + "]";
  }
  /// One row: id, key, and a random selection of every field kind, in random order.
  std::string row(std::uint64_t n, stream_kind kind, const std::vector<std::string>& objects) {
    std::vector<std::pair<std::string, std::string>> f;
    const std::string id = chance(10) ? "\"r\\u0031-" + std::to_string(n) + "\"" : "\"r-" + std::to_string(n) + "\"";
    f.emplace_back("id", id);
    char pk[32];
    std::snprintf(pk, sizeof pk, "\"p%08llu\"", static_cast<unsigned long long>(n));
    f.emplace_back("_pagination_key", pk);
    static const char* fields[] = {"input", "output", "expected", "error", "scores", "metadata", "tags", "metrics",
                                   "context", "span_attributes", "facets", "span_id", "root_span_id", "span_parents",
                                   "_merge_paths", "_array_delete", "_parent_id", "org_id", "log_id", "is_root",
                                   "audit_data", "classifications", "_async_scoring_state", "x_unknown", "_xact_id",
                                   "created", "project_id"};
    for (auto* name : fields)
      if (chance(55)) f.emplace_back(name, std::string(name) == "_xact_id" ? "\"100" + std::to_string(n) + "\"" : value(0));
    if (chance(20)) f.emplace_back("origin", chance(30) ? "null" : "{\"object_type\":\"dataset\",\"object_id\":\"sd1\",\"id\":\"z\"}");
    if (chance(15)) f.emplace_back("comments", comments(id));
    if (chance(5)) f.emplace_back("_object_delete", chance(50) ? "true" : "false");
    if (chance(5)) f.emplace_back("_is_merge", chance(50) ? "true" : "false");
    if (kind == stream_kind::experiment) f.emplace_back("experiment_id", "\"" + objects[pick(objects.size())] + "\"");
    if (kind == stream_kind::dataset) f.emplace_back("dataset_id", "\"" + objects[pick(objects.size())] + "\"");
    if (chance(8)) f.emplace_back("input", value(0));  // duplicate key: both keep every copy in order
    std::shuffle(f.begin(), f.end(), r);
    std::string o = "{" + sp();
    for (std::size_t k = 0; k < f.size(); ++k)
      o += (k ? "," + sp() : "") + "\"" + key(f[k].first) + "\"" + sp() + ":" + sp() + f[k].second + sp();
    return o + "}";
  }
};

rewrite_config config_for(stream_kind kind) {
  rewrite_config c;
  c.kind = kind;
  c.stream_name = "diff";
  if (kind == stream_kind::project_logs) {
    c.source_object_id = "sp";
    c.dest_ids = {{"sp", "dp"}};
  } else {
    c.grouped = true;
    c.dest_ids = {{"o1", "d\"1"}, {"o2", "d2"}};  // a destination id that needs escaping
  }
  c.origin_dest = [](std::string_view type, std::string_view id) -> std::optional<std::string> {
    if (type == "dataset" && id == "sd1") return std::string("dd1");
    return std::nullopt;
  };
  return c;
}

}  // namespace

TEST_CASE("row_rewriter: the in-place rewriter writes the same rows as the rewriter it replaced (generated pages)") {
  const std::vector<std::string> objects{"o1", "o2"};
  std::size_t rows = 0, compact_rows = 0;
  for (auto kind : {stream_kind::project_logs, stream_kind::experiment, stream_kind::dataset}) {
    row_rewriter fresh(config_for(kind));
    legacy_row_rewriter old(config_for(kind));
    for (std::uint64_t page_no = 0; page_no < 400; ++page_no) {
      gen g(page_no * 7919 + static_cast<std::uint64_t>(kind));
      g.compact = page_no % 2 == 0;
      std::string body = "{" + g.sp() + "\"data\":" + g.sp() + "[";
      const std::size_t n = 1 + g.pick(12);
      for (std::size_t k = 0; k < n; ++k) body += (k ? "," + g.sp() : "") + g.row(page_no * 100 + k, kind, objects);
      body += "]" + g.sp() + ",\"cursor\":null}";
      std::string a_body = body, b_body = body;
      auto a = old.rewrite(a_body, "");
      auto b = fresh.rewrite(b_body, "");
      INFO("page " << page_no << ": " << body);
      REQUIRE(a.rows.size() == b.rows.size());
      CHECK(a.deletes == b.deletes);
      CHECK(a.merges == b.merges);
      CHECK(a.commented_rows == b.commented_rows);
      CHECK(a.audit_rows == b.audit_rows);
      for (std::size_t k = 0; k < a.rows.size(); ++k) {
        const auto& x = a.rows[k];
        const auto& y = b.rows[k];
        CHECK(x.id == y.id);
        CHECK(x.key == y.key);
        CHECK(x.is_delete == y.is_delete);
        CHECK(x.is_merge == y.is_merge);
        CHECK(x.origin == y.origin);
        CHECK(canonical(x.json) == canonical(y.json));
        CHECK(canonical_riders(x.riders) == canonical_riders(y.riders));
        CHECK(y.hash == hash_row(y.id, y.json));
        if (g.compact && !g.escaped_keys) {
          CHECK(x.json == y.json);
          CHECK(x.hash == y.hash);
          ++compact_rows;
        }
        ++rows;
      }
    }
  }
  CHECK(rows > 5000);
  CHECK(compact_rows > 1000);
}

TEST_CASE("row_rewriter: bad pages fail in the in-place rewriter as in the rewriter it replaced") {
  const char* bad[] = {
      R"({"data":[{"_pagination_key":"p1","input":1}]})",                          // no id
      R"({"data":[{"id":"a","input":1}]})",                                        // no key
      R"({"data":[{"id":"a","_pagination_key":"p2"},{"id":"b","_pagination_key":"p1"}]})",  // keys go back
      R"({"data":[{"id":7,"_pagination_key":"p1"}]})",                             // id not a string
      R"({"data":[1]})",                                                           // row not an object
      R"({"rows":[]})",                                                            // no data
      R"({"data":[{"id":"a","_pagination_key":"p1","input":{"x":[1,2}}]})",        // broken JSON
      R"({"data":[{"id":"a","_pagination_key":"p1","comments":[{"comment":{}}]}]})",  // comment without id
  };
  for (const char* page : bad) {
    std::string a_body = page, b_body = page;
    legacy_row_rewriter old(config_for(stream_kind::project_logs));
    row_rewriter fresh(config_for(stream_kind::project_logs));
    bool old_threw = false, new_threw = false;
    try { old.rewrite(a_body, ""); } catch (const stream_error&) { old_threw = true; }
    try { fresh.rewrite(b_body, ""); } catch (const stream_error&) { new_threw = true; }
    INFO(page);
    CHECK(old_threw);
    CHECK(new_threw);
  }
}
