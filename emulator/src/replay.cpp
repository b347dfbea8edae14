// `ferry replay`: request normalisation, the per-key index, and the server around it (see replay.hpp).
#include "emulator/replay.hpp"

#include "emulator/emulator.hpp"
#include "emulator/serve.hpp"

#include "engine/json_parse.hpp"
#include "engine/log.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/http/field.hpp>
#include <boost/json.hpp>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <stdexcept>

namespace ferry::emulator {

namespace asio = boost::asio;
namespace http = boost::beast::http;
namespace json = boost::json;

namespace {

std::string collapse_ws(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  bool space = false;
  for (char c : s) {
    if (std::isspace(static_cast<unsigned char>(c))) {
      space = true;
      continue;
    }
    if (space && !out.empty()) out += ' ';
    space = false;
    out += c;
  }
  return out;
}

void canonical_json(const json::value& v, std::string& out) {
  if (const auto* o = v.if_object()) {
    std::vector<const json::key_value_pair*> kvs;
    kvs.reserve(o->size());
    for (const auto& kv : *o) kvs.push_back(&kv);
    std::sort(kvs.begin(), kvs.end(), [](auto* a, auto* b) { return a->key() < b->key(); });
    out += '{';
    for (std::size_t i = 0; i < kvs.size(); ++i) {
      if (i) out += ',';
      out += json::serialize(json::string(kvs[i]->key()));
      out += ':';
      canonical_json(kvs[i]->value(), out);
    }
    out += '}';
  } else if (const auto* a = v.if_array()) {
    out += '[';
    for (std::size_t i = 0; i < a->size(); ++i) {
      if (i) out += ',';
      canonical_json((*a)[i], out);
    }
    out += ']';
  } else {
    out += json::serialize(v);
  }
}

std::string normalize_query(std::string_view q) {
  std::vector<std::string_view> params;
  while (!q.empty()) {
    const auto amp = q.find('&');
    if (amp != 0) params.push_back(q.substr(0, amp));
    if (amp == std::string_view::npos) break;
    q.remove_prefix(amp + 1);
  }
  std::sort(params.begin(), params.end());
  std::string out;
  for (std::size_t i = 0; i < params.size(); ++i) {
    if (i) out += '&';
    out.append(params[i]);
  }
  return out;
}

// Removes `limit: N` (case-insensitive, at a word start) from whitespace-collapsed BTQL text.
std::string strip_btql_limit(std::string_view q) {
  std::string out;
  out.reserve(q.size());
  std::size_t i = 0;
  while (i < q.size()) {
    const bool word_start = i == 0 || !(std::isalnum(static_cast<unsigned char>(q[i - 1])) || q[i - 1] == '_');
    if (word_start && q.size() - i >= 6) {
      std::string w(q.substr(i, 6));
      for (auto& c : w) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      if (w == "limit:") {
        std::size_t j = i + 6;
        while (j < q.size() && q[j] == ' ') ++j;
        const std::size_t digits = j;
        while (j < q.size() && std::isdigit(static_cast<unsigned char>(q[j]))) ++j;
        if (j > digits) {
          i = j;
          continue;
        }
      }
    }
    out += q[i++];
  }
  return out;
}

std::string header_of(const transports::exchange_record& r, std::string_view name) {
  for (const auto& [k, v] : r.response_headers)
    if (k.size() == name.size() && std::equal(k.begin(), k.end(), name.begin(), [](char a, char b) {
          return std::tolower(static_cast<unsigned char>(a)) == std::tolower(static_cast<unsigned char>(b));
        }))
      return v;
  return {};
}

std::vector<transports::exchange_record> load(const replay_options& opts, std::vector<std::string>& warnings) {
  if (opts.dir.empty()) throw std::invalid_argument("give the recording dir (ferry replay DIR)");
  auto all = transports::read_recording(opts.dir, &warnings);
  const bool any = opts.side.empty() ||
                   std::any_of(all.begin(), all.end(), [&](const auto& r) { return r.side == opts.side; });
  if (!any) {
    std::vector<std::string> sides;
    for (const auto& r : all)
      if (std::find(sides.begin(), sides.end(), r.side) == sides.end()) sides.push_back(r.side);
    std::string present;
    for (const auto& s : sides) present += (present.empty() ? "" : ", ") + s;
    throw std::invalid_argument("recording " + opts.dir + " holds no '" + opts.side +
                                "' exchanges (sides present: " + (present.empty() ? "none" : present) + ")");
  }
  return all;
}

std::unique_ptr<fault_injector> make_faults(const replay_options& opts) {
  std::vector<fault_spec> faults;
  std::optional<std::uint64_t> seed;
  if (!opts.faults_file.empty()) {
    auto file = load_fault_file(opts.faults_file);
    faults = std::move(file.faults);
    seed = file.seed;
  }
  for (const auto& spec : opts.fault_specs) faults.push_back(parse_fault_spec(spec));
  if (opts.fault_seed) seed = opts.fault_seed;
  return std::make_unique<fault_injector>(std::move(faults), seed.value_or(1));
}

}  // namespace

std::string replay_key(std::string_view method, std::string_view target, std::string_view body, bool ignore_limit) {
  std::string key;
  for (char c : method) key += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  const std::string t = transports::redact_target(target);
  const auto q = t.find('?');
  const std::string_view path = std::string_view(t).substr(0, q);
  key += ' ';
  key += path;
  if (q != std::string::npos) {
    key += '?';
    key += normalize_query(std::string_view(t).substr(q + 1));
  }
  key += '\n';
  const bool btql = path.ends_with("/btql");
  const std::string b = transports::redact_body(body);
  const auto first = b.find_first_not_of(" \t\r\n");
  if (first != std::string::npos && (b[first] == '{' || b[first] == '[')) {
    json::error_code ec;
    json::value v = ferry::engine::parse_json(b, ec);
    if (!ec) {
      if (auto* o = v.if_object(); btql && o) {
        if (auto* qv = o->if_contains("query"); qv && qv->is_string()) {
          *qv = collapse_ws(qv->get_string());
          if (ignore_limit) *qv = strip_btql_limit(qv->get_string());
        } else if (auto* qo = qv ? qv->if_object() : nullptr; qo && ignore_limit) {
          qo->erase("limit");
        }
      }
      canonical_json(v, key);
      return key;
    }
  }
  if (!btql) key += b;
  else key += ignore_limit ? strip_btql_limit(collapse_ws(b)) : collapse_ws(b);
  return key;
}

// ---- replay_index ---------------------------------------------------------------------------------

replay_index::replay_index(std::vector<transports::exchange_record> exchanges, std::string_view side, bool loop)
    : loop_(loop) {
  for (auto& r : exchanges)
    if (side.empty() || r.side == side) exchanges_.push_back(std::move(r));
  for (std::size_t i = 0; i < exchanges_.size(); ++i) {
    const auto& r = exchanges_[i];
    by_key_[replay_key(r.method, r.target, r.request_body)].occurrences.push_back(i);
    const std::string_view path = std::string_view(r.target).substr(0, r.target.find('?'));
    if (path.ends_with("/btql"))
      by_loose_key_[replay_key(r.method, r.target, r.request_body, true)].occurrences.push_back(i);
  }
}

const transports::exchange_record* replay_index::next(std::string_view method, std::string_view target,
                                                      std::string_view body) {
  const std::string key = replay_key(method, target, body);
  std::lock_guard lk(mu_);
  if (auto it = by_key_.find(key); it != by_key_.end()) return serve(it->second);
  if (std::string_view(target).substr(0, target.find('?')).ends_with("/btql")) {
    if (auto it = by_loose_key_.find(replay_key(method, target, body, true)); it != by_loose_key_.end()) {
      ++stats_.loose;
      return serve(it->second);
    }
  }
  ++stats_.unmatched;
  return nullptr;
}

const transports::exchange_record* replay_index::serve(slot& s) {
  ++stats_.matched;
  std::size_t i = s.cursor;
  if (i >= s.occurrences.size()) {
    ++stats_.repeated;
    if (loop_) {
      i = 0;
      s.cursor = 0;
    } else {
      i = s.occurrences.size() - 1;
    }
  }
  ++s.cursor;
  return &exchanges_[s.occurrences[i]];
}

void replay_index::rewind() {
  std::lock_guard lk(mu_);
  for (auto& [k, s] : by_key_) s.cursor = 0;
  for (auto& [k, s] : by_loose_key_) s.cursor = 0;
}

replay_index::stats_snapshot replay_index::stats() const {
  std::lock_guard lk(mu_);
  return stats_;
}

// ---- replay_server --------------------------------------------------------------------------------

replay_server::replay_server(asio::any_io_executor ex, const replay_options& opts)
    : ex_(std::move(ex)),
      opts_(opts),
      index_(load(opts, warnings_), opts.side, opts.loop),
      faults_(make_faults(opts)) {
  if (!std::isfinite(opts.speed) || opts.speed < 0)
    throw std::invalid_argument("--speed must be a number >= 0 (0 = as fast as possible), got " +
                                std::to_string(opts.speed));
}

replay_server::~replay_server() { stop(); }

void replay_server::start() {
  if (server_) return;
  transports::http_server_config sc;
  sc.address = opts_.address;
  sc.port = opts_.port;
  server_ = std::make_unique<transports::http_server>(ex_, sc,
                                                      [this](transports::http_request& r) { return handle(r); });
  server_->start();
  engine::logger("emulator")->info("replay listening url={} exchanges={} keys={} dir={}", base_url(), index_.size(),
                                   index_.keys(), opts_.dir);
}

void replay_server::stop() {
  if (server_) server_->stop();
}

std::uint16_t replay_server::port() const { return server_ ? server_->port() : opts_.port; }

std::string replay_server::base_url() const { return "http://" + opts_.address + ":" + std::to_string(port()); }

asio::awaitable<transports::http_reply> replay_server::handle(transports::http_request& req) {
  const std::string target(req.target());
  const std::string method(req.method_string());
  const unsigned version = req.version();
  const bool keep_alive = req.keep_alive();

  if (target.starts_with("/_replay/")) {
    if (target == "/_replay/stats") {
      const auto st = index_.stats();
      json::object o;
      o["exchanges"] = index_.size();
      o["keys"] = index_.keys();
      o["matched"] = st.matched;
      o["unmatched"] = st.unmatched;
      o["repeated"] = st.repeated;
      o["loose"] = st.loose;
      o["faults"] = ferry::engine::parse_json(faults_->stats_json());
      co_return json_reply(200, json::serialize(o), version, keep_alive);
    }
    if (target == "/_replay/rewind" && req.method() == http::verb::post) {
      index_.rewind();
      co_return json_reply(200, "{\"rewound\":true}", version, keep_alive);
    }
    co_return json_reply(404, json_error_body("replay: unknown admin endpoint " + method + " " + target), version,
                         keep_alive);
  }

  const fault_decision d = faults_->decide(method, target, req.body());
  if (auto injected = co_await injected_reply(d, req)) {
    if (d.truncate && injected->action != transports::reply_action::drop)
      injected->action = transports::reply_action::truncate_body;
    co_return std::move(*injected);
  }
  transports::http_reply r;

  const transports::exchange_record* rec = index_.next(method, target, req.body());
  if (!rec) {
    engine::logger("emulator")->warn("replay unmatched method={} target={} body_bytes={}", method,
                                     transports::redact_target(target), req.body().size());
    r = json_reply(404,
                   json_error_body("replay: no recorded exchange for " + method + " " + transports::redact_target(target) +
                              " (body " + std::to_string(req.body().size()) + " bytes) in " + opts_.dir),
                   version, keep_alive);
    if (d.truncate) r.action = transports::reply_action::truncate_body;
    co_return r;
  }
  if (opts_.speed > 0 && rec->duration_ms > 0) {
    const double ms = std::min(rec->duration_ms / opts_.speed, 60'000.0);  // a stuck recorded call stays bounded
    asio::steady_timer timer(co_await asio::this_coro::executor);
    timer.expires_after(std::chrono::microseconds(static_cast<std::int64_t>(ms * 1000)));
    co_await timer.async_wait(asio::use_awaitable);
  }
  if (rec->status == 0) {  // the recorded call got no response: replay the failure
    r.action = transports::reply_action::drop;
    co_return r;
  }
  r.response.version(version);
  r.response.result(rec->status);
  const std::string ct = header_of(*rec, "content-type");
  r.response.set(http::field::content_type, ct.empty() ? std::string("application/json") : ct);
  if (auto ra = header_of(*rec, "retry-after"); !ra.empty()) r.response.set(http::field::retry_after, ra);
  if (auto loc = header_of(*rec, "location"); !loc.empty()) r.response.set(http::field::location, loc);
  r.response.body() = rec->response_body;
  r.response.keep_alive(keep_alive);
  r.response.prepare_payload();
  if (d.truncate) r.action = transports::reply_action::truncate_body;
  co_return r;
}

// ---- ferry replay ---------------------------------------------------------------------------------

int run_replay(const replay_options& opts) {
  const unsigned threads = opts.threads == 0 ? 1 : opts.threads;
  asio::io_context ioc(static_cast<int>(threads));
  std::unique_ptr<replay_server> srv;
  try {
    srv = std::make_unique<replay_server>(ioc.get_executor(), opts);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ferry replay: %s\n", e.what());
    return 2;
  }
  for (std::size_t i = 0; i < srv->warnings().size() && i < 10; ++i)
    engine::logger("emulator")->warn("replay recording {}", srv->warnings()[i]);
  if (srv->warnings().size() > 10)
    engine::logger("emulator")->warn("replay recording: {} more warnings", srv->warnings().size() - 10);
  try {
    srv->start();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ferry replay: %s\n", e.what());
    return 1;
  }
  std::cout << "ferry replay: listening on " << srv->base_url() << " (" << srv->index().size() << " exchanges from "
            << opts.dir << ")" << std::endl;

  run_until_signal(ioc, threads, [&](int sig) {
    const auto st = srv->index().stats();
    engine::logger("emulator")->info("replay stopping signal={} matched={} unmatched={} repeated={}", sig, st.matched,
                                     st.unmatched, st.repeated);
    srv->stop();
  });
  srv.reset();
  return 0;
}

}  // namespace ferry::emulator
