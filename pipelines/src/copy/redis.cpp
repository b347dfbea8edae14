// redis://[user:pass@]host:port[/db]?match=PATTERN[&json=1] as a source (hiredis): SCAN pages. A page
// is whole SCAN calls (a SCAN cursor can only be resumed where a call ended), every row carrying the
// cursor that follows its call; "end" once SCAN returned 0. Rows: {"id": key, "type": "string" |
// "hash", "value": text | {field: text}}; with json=1 string values are parsed as JSON (a value that is
// not JSON is an error naming the key). Other types (list, set, zset, stream) are refused by key.
// SCAN may return a key twice: a page holds each key once, and keyed sinks replace across pages.
#include "pipelines/copy/connector.hpp"

#include "engine/url.hpp"
#include "page_budget.hpp"

#include <boost/json.hpp>

#include <hiredis/hiredis.h>

#include <memory>
#include <set>

namespace ferry::pipelines::copy {

namespace json = boost::json;

namespace {

using reply_ptr = std::unique_ptr<redisReply, decltype(&freeReplyObject)>;

class redis_source final : public source {
 public:
  explicit redis_source(const uri& u)
      : where_(u.redacted()), match_(u.param("match", "*")), as_json_(u.param("json") == "1") {
    const auto parts = engine::split_url(u.base);
    if (!parts) throw copy_error(where_ + ": not a redis://host:port/db URI");
    const int port = static_cast<int>(parts->port.value_or(6379));
    timeval tv{5, 0};
    c_ = redisConnectWithTimeout(parts->host.c_str(), port, tv);
    if (!c_ || c_->err) {
      const std::string msg = c_ ? c_->errstr : "out of memory";
      throw copy_error(where_ + ": cannot connect: " + msg);
    }
    redisSetTimeout(c_, timeval{30, 0});
    if (parts->password) {
      if (parts->user.empty()) command({"AUTH", *parts->password}, "AUTH");
      else command({"AUTH", parts->user, *parts->password}, "AUTH");
    }
    const auto db = parts->path.size() > 1 ? parts->path.substr(1) : std::string("0");
    if (db.find_first_not_of("0123456789") != std::string::npos) throw copy_error(where_ + ": database '" + db + "' is not a number");
    command({"SELECT", db}, "SELECT " + db);
  }
  ~redis_source() override { redisFree(c_); }

  page read_after(const std::string& cursor, std::size_t limit) override {
    page p;
    std::string scan = cursor.empty() ? "0" : cursor;
    std::set<std::string> seen;
    std::size_t bytes = 0;
    while (scan != "end" && p.rows.size() < limit && bytes < k_page_bytes) {
      auto r = command({"SCAN", scan, "MATCH", match_, "COUNT", std::to_string(std::min<std::size_t>(limit, 1000))}, "SCAN");
      const std::string next(r->element[0]->str, r->element[0]->len);
      scan = next == "0" ? "end" : next;
      std::vector<std::string> keys;
      for (std::size_t i = 0; i < r->element[1]->elements; ++i) {
        std::string k(r->element[1]->element[i]->str, r->element[1]->element[i]->len);
        if (seen.insert(k).second) keys.push_back(std::move(k));
      }
      bytes += read_rows(keys, scan, p);
    }
    p.end = scan == "end";
    p.after = scan;
    return p;
  }

 private:
  reply_ptr command(const std::vector<std::string>& args, const std::string& what) {
    append(args);
    return reply(what);
  }
  void append(const std::vector<std::string>& args) {
    std::vector<const char*> argv;
    std::vector<std::size_t> lens;
    for (const auto& a : args) {
      argv.push_back(a.data());
      lens.push_back(a.size());
    }
    redisAppendCommandArgv(c_, static_cast<int>(args.size()), argv.data(), lens.data());
  }
  reply_ptr reply(const std::string& what) {
    void* raw = nullptr;
    if (redisGetReply(c_, &raw) != REDIS_OK || !raw) throw copy_error(where_ + ": " + what + ": " + c_->errstr);
    reply_ptr r(static_cast<redisReply*>(raw), &freeReplyObject);
    if (r->type == REDIS_REPLY_ERROR) throw copy_error(where_ + ": " + what + ": " + std::string(r->str, r->len));
    return r;
  }

  /// TYPE of every key, then its value, each pipelined; rows in SCAN order. Returns the bytes read.
  std::size_t read_rows(const std::vector<std::string>& keys, const std::string& cursor, page& p) {
    std::size_t bytes = 0;
    for (const auto& k : keys) append({"TYPE", k});
    std::vector<std::string> types;
    for (const auto& k : keys) {
      auto r = reply("TYPE " + k);
      types.emplace_back(r->str, r->len);
    }
    for (std::size_t i = 0; i < keys.size(); ++i) {
      if (types[i] == "string") append({"GET", keys[i]});
      else if (types[i] == "hash") append({"HGETALL", keys[i]});
      else if (types[i] != "none")  // none: deleted since SCAN
        throw copy_error(where_ + ": key " + keys[i] + " is a " + types[i] + " (only strings and hashes are copied)");
    }
    for (std::size_t i = 0; i < keys.size(); ++i) {
      if (types[i] == "none") {
        continue;
      }
      auto r = reply("reading " + keys[i]);
      row rw;
      rw.cursor = cursor;
      rw.source_id = keys[i];
      if (!valid_utf8(keys[i])) throw copy_error(where_ + ": a key is not UTF-8 text");
      rw.fields["id"] = keys[i];
      rw.fields["type"] = types[i];
      if (r->type == REDIS_REPLY_NIL) continue;  // deleted between TYPE and GET
      rw.fields["value"] = types[i] == "string" ? string_value(keys[i], std::string_view(r->str, r->len)) : hash_value(keys[i], *r);
      p.rows.push_back(std::move(rw));
      bytes += keys[i].size() + r->len;
      for (std::size_t e = 0; e < r->elements; ++e) bytes += r->element[e]->len;
    }
    return bytes;
  }
  json::value string_value(const std::string& key, std::string_view v) const {
    if (!valid_utf8(v)) throw copy_error(where_ + ": key " + key + ": value is not UTF-8 text");
    if (!as_json_) return json::string(v);
    try {
      return parse_json(v, "");
    } catch (const copy_error&) {
      throw copy_error(where_ + ": key " + key + ": value is not JSON (json=1): " + std::string(v.substr(0, 80)));
    }
  }
  json::value hash_value(const std::string& key, const redisReply& r) const {
    json::object o;
    for (std::size_t i = 0; i + 1 < r.elements; i += 2) {
      std::string_view f(r.element[i]->str, r.element[i]->len), v(r.element[i + 1]->str, r.element[i + 1]->len);
      if (!valid_utf8(f) || !valid_utf8(v)) throw copy_error(where_ + ": key " + key + ": a hash field is not UTF-8 text");
      o[f] = json::string(v);
    }
    return o;
  }

  std::string where_, match_;
  bool as_json_ = false;
  redisContext* c_ = nullptr;
};

}  // namespace

std::unique_ptr<source> open_redis_source(const uri& u) { return std::make_unique<redis_source>(u); }

}  // namespace ferry::pipelines::copy
