#include "plan_file.hpp"

#include "plan.hpp"

#include "pipelines/streams/digest.hpp"

#include "engine/json_parse.hpp"
#include "engine/settings.hpp"
#include "engine/url.hpp"

#include <boost/json.hpp>

#include <algorithm>
#include <array>
#include <set>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <sstream>

namespace ferry::pipelines {

namespace json = boost::json;
using engine::config_error;

namespace {

constexpr const char* k_format = "ferry-plan/1";

json::array string_array(const std::vector<std::string>& v) {
  json::array a;
  for (const auto& s : v) a.emplace_back(s);
  return a;
}

std::string hex128(std::string_view bytes) {
  const auto h = streams::hash_bytes(bytes);
  char buf[33];
  std::snprintf(buf, sizeof buf, "%016llx%016llx", static_cast<unsigned long long>(h.a),
                static_cast<unsigned long long>(h.b));
  return buf;
}

json::object unit_json(const plan_unit& u) {
  json::object o;
  o["id"] = u.id;
  o["kind"] = u.kind;
  o["phase"] = u.phase;
  if (!u.name.empty()) o["name"] = u.name;
  if (u.kind == "stream") {
    o["stream_kind"] = u.stream_kind;
    o["source_ids"] = string_array(u.source_ids);
    o["rows"] = u.rows;
    o["bytes"] = u.bytes;
    o["shard"] = u.shard;
  } else {
    o["objects"] = u.objects;
  }
  return o;
}

/// Estimated rows/bytes/units per shard, from the units' assignment.
json::array shard_totals(const plan_doc& doc) {
  std::vector<std::array<std::uint64_t, 3>> t(doc.shards, {0, 0, 0});
  for (const auto& u : doc.units)
    if (u.shard >= 0 && static_cast<std::size_t>(u.shard) < doc.shards) {
      auto& s = t[static_cast<std::size_t>(u.shard)];
      ++s[0];
      s[1] += u.rows;
      s[2] += u.bytes;
    }
  json::array a;
  for (std::size_t i = 0; i < t.size(); ++i)
    a.push_back(json::object{{"shard", i}, {"streams", t[i][0]}, {"rows", t[i][1]}, {"bytes", t[i][2]}});
  return a;
}

/// The document without "hash", in a fixed key order: what the hash covers.
json::object body_json(const plan_doc& doc) {
  json::object o;
  o["format"] = k_format;
  o["options"] = doc.options;
  o["options_fingerprint"] = hex128(json::serialize(doc.options));
  o["shards"] = doc.shards;
  json::array units;
  std::uint64_t rows = 0, bytes = 0;
  for (const auto& u : doc.units) {
    units.push_back(unit_json(u));
    rows += u.rows;
    bytes += u.bytes;
  }
  o["units"] = std::move(units);
  o["totals"] = json::object{{"units", doc.units.size()}, {"rows", rows}, {"bytes", bytes}, {"per_shard", shard_totals(doc)}};
  return o;
}

std::string str_of(const json::object& o, std::string_view k) {
  const auto* v = o.if_contains(k);
  return v && v->is_string() ? std::string(v->as_string()) : std::string();
}

std::uint64_t uint_of(const json::object& o, std::string_view k) {
  const auto* v = o.if_contains(k);
  if (!v) return 0;
  if (v->is_uint64()) return v->as_uint64();
  if (v->is_int64() && v->as_int64() >= 0) return static_cast<std::uint64_t>(v->as_int64());
  return 0;
}

plan_unit unit_from(const json::object& o) {
  plan_unit u;
  u.id = str_of(o, "id");
  u.kind = str_of(o, "kind");
  u.phase = str_of(o, "phase");
  u.name = str_of(o, "name");
  u.stream_kind = str_of(o, "stream_kind");
  if (const auto* ids = o.if_contains("source_ids"); ids && ids->is_array())
    for (const auto& v : ids->as_array())
      if (v.is_string()) u.source_ids.emplace_back(v.as_string());
  u.objects = uint_of(o, "objects");
  u.rows = uint_of(o, "rows");
  u.bytes = uint_of(o, "bytes");
  if (const auto* s = o.if_contains("shard"); s && s->is_int64()) u.shard = static_cast<int>(s->as_int64());
  return u;
}

std::string option_text(const json::value* v) {
  if (!v) return "(none)";
  return v->is_string() ? std::string(v->as_string()) : json::serialize(*v);
}

std::optional<std::size_t> parse_size(std::string_view s) {
  if (s.empty() || s.size() > 9 || s.find_first_not_of("0123456789") != std::string_view::npos) return std::nullopt;
  return static_cast<std::size_t>(std::stoull(std::string(s)));
}

}  // namespace

json::object options_of(const migrate_config& cfg) {
  json::object o;
  o["source_url"] = engine::url_identity(cfg.source.url);
  o["dest_url"] = engine::url_identity(cfg.dest.url);
  o["resources"] = string_array(cfg.resources);
  o["projects"] = string_array(cfg.projects);
  o["exclude"] = string_array(cfg.exclude);
  o["created_after"] = cfg.created_after ? json::value(*cfg.created_after) : json::value(nullptr);
  o["created_before"] = cfg.created_before ? json::value(*cfg.created_before) : json::value(nullptr);
  o["fetch_group_size"] = cfg.fetch_group_size;
  o["on_name_conflict"] = cfg.on_name_conflict == name_conflict_policy::adopt    ? "adopt"
                          : cfg.on_name_conflict == name_conflict_policy::abort ? "abort"
                                                                                : "update";
  o["copy_attachments"] = cfg.copy_attachments;
  return o;
}

void assign_shards(std::vector<plan_unit>& units, std::size_t n) {
  n = std::max<std::size_t>(n, 1);
  auto weight = [](const plan_unit& u) { return u.bytes + 256 * u.rows; };
  std::vector<plan_unit*> order;
  for (auto& u : units) {
    u.shard = -1;
    if (u.kind == "stream") order.push_back(&u);
  }
  std::sort(order.begin(), order.end(), [&](const plan_unit* a, const plan_unit* b) {
    if (weight(*a) != weight(*b)) return weight(*a) > weight(*b);
    return a->id < b->id;
  });
  // Load per shard; also the unit count, so that empty streams spread instead of piling on shard 0.
  std::vector<std::pair<std::uint64_t, std::size_t>> load(n, {0, 0});
  for (auto* u : order) {
    std::size_t best = 0;
    for (std::size_t i = 1; i < n; ++i)
      if (load[i] < load[best]) best = i;
    u->shard = static_cast<int>(best);
    load[best].first += weight(*u);
    ++load[best].second;
  }
}

json::object to_json(plan_doc& doc) {
  auto body = body_json(doc);
  doc.hash = hex128(json::serialize(body));
  json::object out;
  out["format"] = k_format;
  out["hash"] = doc.hash;
  for (auto& [k, v] : body)
    if (k != "format") out[k] = v;
  return out;
}

plan_doc load_plan(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw config_error("plan file " + path + ": cannot be read (make one with `ferry plan --out " + path + "`)");
  std::stringstream ss;
  ss << in.rdbuf();
  boost::system::error_code ec;
  auto v = ferry::engine::parse_json(ss.str(), ec);
  if (ec || !v.is_object()) throw config_error("plan file " + path + ": not a JSON object (" + ec.message() + ")");
  const auto& o = v.as_object();
  if (str_of(o, "format") != k_format)
    throw config_error("plan file " + path + ": format is '" + str_of(o, "format") + "', expected " + k_format);
  plan_doc doc;
  if (const auto* opts = o.if_contains("options"); opts && opts->is_object()) doc.options = opts->as_object();
  doc.shards = static_cast<std::size_t>(uint_of(o, "shards"));
  if (const auto* us = o.if_contains("units"); us && us->is_array())
    for (const auto& u : us->as_array())
      if (u.is_object()) doc.units.push_back(unit_from(u.as_object()));
  const std::string recorded = str_of(o, "hash");
  auto copy = doc;
  to_json(copy);
  if (doc.shards < 1 || recorded.empty() || copy.hash != recorded)
    throw config_error("plan file " + path + ": its hash does not match its content (edited or truncated?): make a new "
                       "plan with `ferry plan`");
  doc.hash = recorded;
  return doc;
}

std::vector<std::string> option_differences(const plan_doc& plan, const migrate_config& cfg) {
  std::vector<std::string> out;
  const auto now = options_of(cfg);
  for (const auto& [k, v] : now) {
    const auto* was = plan.options.if_contains(k);
    if (!was || *was != v)
      out.push_back(std::string(k) + " (plan: " + option_text(was) + ", now: " + option_text(&v) + ")");
  }
  return out;
}

std::filesystem::path plan_state_root(const migrate_config& cfg, const plan_doc& plan) {
  return std::filesystem::path(cfg.state_dir) / plan.hash.substr(0, 16);
}

std::string shard_role(std::size_t i) { return "shard-" + std::to_string(i); }

std::vector<engine::setting_binding> cluster_settings_schema() {
  return {
      {"plan", {"FERRY_PLAN"}, false, "plan file (ferry plan --out, migrate/finalize/status --plan)", "none"},
      {"phase", {"FERRY_PHASE"}, false, "with a plan: resources (once, before the shards) or shard", "shard"},
      {"shard", {"FERRY_SHARD"}, false, "with a plan: this process's shard as I/N (0-based)", "none"},
      {"shard_index", {"JOB_COMPLETION_INDEX", "SLURM_ARRAY_TASK_ID"}, false,
       "shard index from the scheduler when --shard is not given", "none"},
      {"shard_count", {"FERRY_SHARD_COUNT", "SLURM_ARRAY_TASK_COUNT"}, false,
       "shard count (ferry plan --shards; with shard_index)", "1"},
  };
}

std::optional<shard_ref> shard_from_settings(const engine::settings& s) {
  if (auto v = s.get_optional("shard")) {
    const auto slash = v->find('/');
    auto i = parse_size(std::string_view(*v).substr(0, slash));
    auto n = slash == std::string::npos ? std::nullopt : parse_size(std::string_view(*v).substr(slash + 1));
    if (!i || !n || *n < 1 || *i >= *n)
      throw config_error("invalid shard from " + s.where("shard") + ": expected I/N with 0 <= I < N, like 2/4, got '" +
                         *v + "'");
    return shard_ref{*i, *n};
  }
  auto idx = s.get_optional("shard_index");
  auto cnt = s.get_optional("shard_count");
  if (!idx) return std::nullopt;
  auto i = parse_size(*idx);
  if (!i) throw config_error("invalid shard_index from " + s.where("shard_index") + ": expected an integer, got '" + *idx + "'");
  if (s.where("shard_index") == "env SLURM_ARRAY_TASK_ID")
    if (const char* min = std::getenv("SLURM_ARRAY_TASK_MIN"); min && parse_size(min) && *parse_size(min) <= *i)
      *i -= *parse_size(min);
  if (!cnt)
    throw config_error("shard_index from " + s.where("shard_index") +
                       " needs a shard count: set FERRY_SHARD_COUNT (Kubernetes) or run in a Slurm array");
  auto n = parse_size(*cnt);
  if (!n || *n < 1 || *i >= *n)
    throw config_error("invalid shard_count from " + s.where("shard_count") + ": expected an integer above the index " +
                       std::to_string(*i) + ", got '" + *cnt + "'");
  return shard_ref{*i, *n};
}

shard_units::shard_units(const plan_doc& plan, std::size_t shard) {
  for (const auto& u : plan.units) {
    if (u.kind != "stream" || u.shard != static_cast<int>(shard)) continue;
    auto kind = kind_from_name(u.stream_kind);
    if (!kind) continue;
    for (const auto& id : u.source_ids) member_[{*kind, id}] = units_.size();
    units_.push_back(u);
  }
}

bool shard_units::includes(streams::stream_kind kind, const std::string& source_id) const {
  return member_.count({kind, source_id}) > 0;
}

std::vector<streams::stream_spec> shard_units::specs(const std::vector<streams::discovered_object>& ready,
                                                     const std::vector<streams::stream_state>& recorded,
                                                     std::vector<std::string>& waiting) const {
  std::vector<std::vector<streams::discovered_object>> members(units_.size());
  for (const auto& o : ready)
    if (auto it = member_.find({o.kind, o.source_id}); it != member_.end()) members[it->second].push_back(o);
  std::vector<streams::stream_spec> out;
  for (std::size_t i = 0; i < units_.size(); ++i) {
    std::set<std::string> distinct;
    for (const auto& o : members[i]) distinct.insert(o.source_id);
    if (distinct.size() != units_[i].source_ids.size()) {
      waiting.push_back("stream unit " + units_[i].id + " not copied: " + std::to_string(distinct.size()) + " of its " +
                        std::to_string(units_[i].source_ids.size()) +
                        " objects found in the destination (the resources phase has not made the others, or they "
                        "are no longer in the source: make a new plan); run this shard again");
      continue;
    }
    for (auto& s : streams::build_stream_specs(members[i], std::numeric_limits<std::size_t>::max(), recorded))
      out.push_back(std::move(s));
  }
  return out;
}

}  // namespace ferry::pipelines
