#include "resource_verify.hpp"

#include "../for_each_bounded.hpp"
#include "../json_fields.hpp"
#include "plan.hpp"
#include "reports.hpp"
#include "pipelines/resources/report.hpp"
#include "sides.hpp"
#include "../resources/dataset_pins.hpp"

#include "pipelines/resources/api.hpp"
#include "pipelines/resources/id_map.hpp"
#include "pipelines/resources/org_migrator.hpp"
#include "pipelines/resources/specs.hpp"
#include "pipelines/streams/discovery.hpp"
#include "pipelines/streams/verify.hpp"

#include "stores/state_store.hpp"
#include "engine/json_parse.hpp"

#include <boost/asio/this_coro.hpp>
#include <boost/json.hpp>

#include <algorithm>
#include <cctype>
#include <fstream>
#include <iterator>

namespace ferry::pipelines {

namespace asio = boost::asio;
namespace json = boost::json;
namespace res = resources;

json::value map_ids(const json::value& v, const std::function<std::optional<std::string>(const std::string&)>& lookup,
                    const std::set<std::string>& known, std::set<std::string>& unmapped) {
  if (v.is_string()) {
    std::string s(v.get_string());
    // A version pin (a source transaction id, all digits): the destination version the migration gave it
    // (the state's pin:<space> records, read through `lookup` like ids).
    if (s.size() >= 10 && std::all_of(s.begin(), s.end(), [](char ch) { return ch >= '0' && ch <= '9'; }))
      if (auto d = lookup(s); d && !d->empty()) return json::value(*d);
    bool changed = false;
    for (std::size_t i = 0; i + 36 <= s.size(); ++i) {
      const std::string id = s.substr(i, 36);
      if (!res::looks_like_uuid(id)) continue;
      if (auto d = lookup(id); d && d->size() == 36) {
        s.replace(i, 36, *d);
        changed = true;
      } else if (known.count(id)) {
        unmapped.insert(id);
      }
      i += 35;
    }
    return changed ? json::value(s) : v;
  }
  if (v.is_array()) {
    json::array out;
    for (const auto& e : v.get_array()) out.push_back(map_ids(e, lookup, known, unmapped));
    return out;
  }
  if (v.is_object()) {
    json::object out;
    for (const auto& kv : v.get_object()) out[kv.key()] = map_ids(kv.value(), lookup, known, unmapped);
    return out;
  }
  return v;
}

namespace {

/// Removes the element at `path` (".key", "[index]" segments, as the migration report spells them)
/// from `v`; "" makes `v` null. A path that does not lead anywhere changes nothing.
void erase_path(json::value& v, std::string_view path) {
  if (path.empty()) {
    v = nullptr;
    return;
  }
  const bool index = path.front() == '[';
  const auto end = index ? path.find(']') : path.find_first_of(".[", 1);
  if (index && end == std::string_view::npos) return;
  const auto seg = index ? path.substr(1, end - 1) : path.substr(1, end == std::string_view::npos ? end : end - 1);
  const auto rest = index ? path.substr(end + 1) : (end == std::string_view::npos ? std::string_view() : path.substr(end));
  if (index && v.is_array()) {
    std::size_t i = 0;
    for (char ch : seg) {
      if (ch < '0' || ch > '9') return;
      i = i * 10 + static_cast<std::size_t>(ch - '0');
    }
    auto& a = v.get_array();
    if (i >= a.size()) return;
    if (rest.empty()) a.erase(a.begin() + static_cast<std::ptrdiff_t>(i));
    else erase_path(a[i], rest);
  } else if (!index && v.is_object()) {
    auto& o = v.get_object();
    auto it = o.find(seg);
    if (it == o.end()) return;
    if (rest.empty()) o.erase(it);
    else erase_path(it->value(), rest);
  }
}

}  // namespace

json::value without_reported_drops(json::value expected, const std::string& f,
                                   const std::vector<std::pair<std::string, std::string>>* drops, std::string& why) {
  if (!drops) return expected;
  std::vector<const std::pair<std::string, std::string>*> mine;
  for (const auto& d : *drops)
    if (d.first == f || d.first.rfind(f + ".", 0) == 0 || d.first.rfind(f + "[", 0) == 0) mine.push_back(&d);
  // Later array entries go first, so earlier indexes stay valid.
  std::sort(mine.begin(), mine.end(), [](auto* a, auto* b) {
    return a->first.size() != b->first.size() ? a->first.size() > b->first.size() : a->first > b->first;
  });
  for (const auto* d : mine) {
    // A member-list drop names the entry by its source id ("member_users[<id>]"), not by its index.
    const auto rest = std::string_view(d->first).substr(f.size());
    if (expected.is_array() && rest.size() > 2 && rest.front() == '[' && rest.back() == ']' &&
        !std::isdigit(static_cast<unsigned char>(rest[1]))) {
      const auto id = rest.substr(1, rest.size() - 2);
      auto& a = expected.get_array();
      a.erase(std::remove_if(a.begin(), a.end(), [&](const json::value& x) { return x.is_string() && x.get_string() == id; }),
              a.end());
    } else {
      erase_path(expected, rest);
    }
    why += (why.empty() ? "" : "; ") + d->first + ": " + d->second;
  }
  return expected;
}

namespace {

std::string shorten(std::string s) { return s.size() > 80 ? s.substr(0, 77) + "..." : s; }

std::string joined(const std::set<std::string>& ids) {
  std::string out;
  for (const auto& i : ids) out += (out.empty() ? "" : ",") + i;
  return out;
}

/// The objects migration_report.json says the migration skipped, by source id: "<reason>: <detail>".
std::map<std::string, std::string> reported_skips(const migrate_config& cfg, const drops_by_id& drops) {
  std::map<std::string, std::string> out;
  // The state's records first (a skipped object is the drop of its whole value, path ""), then the
  // report file of a migration made before they were kept there.
  for (const auto& [id, fields] : drops)
    for (const auto& [path, why] : fields)
      if (path.empty() && why.starts_with(res::k_skipped_prefix)) out[id] = why.substr(res::k_skipped_prefix.size());
  std::ifstream f(migration_record_path(cfg));
  if (!f) return out;
  std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  boost::system::error_code ec;
  auto doc = ferry::engine::parse_json(text, ec);
  const auto* types = !ec && doc.is_object() ? doc.get_object().if_contains("resources") : nullptr;
  if (!types || !types->is_object()) return out;
  for (const auto& t : types->get_object()) {
    const auto* objs = t.value().is_object() ? t.value().get_object().if_contains("objects") : nullptr;
    if (!objs || !objs->is_array()) continue;
    for (const auto& o : objs->get_array())
      if (o.is_object() && str_field(o.get_object(), "status") == "skipped") {
        const auto& e = o.get_object();
        const auto detail = str_field(e, "detail");
        out.emplace(str_field(e, "source_id"), str_field(e, "reason") + (detail.empty() ? "" : ": " + detail));
      }
  }
  return out;
}

/// What the migration selects: the resources DAG's options (plan.cpp derives them the same way); when
/// only event streams are selected, the objects those streams write to.
res::resource_options selected_options(const migrate_config& cfg) {
  auto opts = res::options_from(resources_view(cfg));
  if (!resources_selected(cfg)) {
    const auto sel = streams::selection_from(cfg);
    opts.types.clear();
    if (sel.experiments) opts.types.insert("experiment");
    if (sel.datasets) opts.types.insert("dataset");
    opts.window_selects_objects = false;
  }
  return opts;
}

/// The types to check, parents before children (the table's `after`, parent types, the project of a
/// project-scoped type, the dataset of a snapshot): natural-key pairing maps the ids in a child's key
/// through its parents' pairs. Types whose identity is their whole content (ACLs) come last.
std::vector<const res::resource_spec*> visit_order(const res::resource_options& opts) {
  std::vector<const res::resource_spec*> todo, out;
  for (const auto& s : res::resource_specs())
    if (s.type == "project" || opts.types.count(s.type)) todo.push_back(&s);
  auto deps = [](const res::resource_spec& s) {
    std::vector<std::string> d = s.after;
    for (const auto& p : s.parents) d.push_back(p.type);
    if (s.project_scoped) d.emplace_back("project");
    if (s.list == res::list_mode::dataset_local) d.emplace_back("dataset");
    return d;
  };
  while (!todo.empty()) {
    std::set<std::string> pending;
    bool keyed_left = false;
    for (const auto* s : todo) {
      pending.insert(s->type);
      keyed_left = keyed_left || !s->unique.empty();
    }
    auto ready = [&](const res::resource_spec* s) {
      if (s->unique.empty() && keyed_left) return false;
      const auto d = deps(*s);
      return std::none_of(d.begin(), d.end(), [&](const std::string& t) { return t != s->type && pending.count(t); });
    };
    auto it = std::find_if(todo.begin(), todo.end(), ready);
    if (it == todo.end()) it = todo.begin();  // a cycle in the table: table order
    out.push_back(*it);
    todo.erase(it);
  }
  return out;
}

/// The type an id-holding field names: object_id by its sibling object_type, "<type>_id",
/// "member_<type>s"; nullopt for a JSON blob (options, config...) whose ids may be of any type.
std::optional<std::string> ref_type(std::string_view field, const json::object& o) {
  std::string base;
  if (field == "object_id") {
    base = str_field(o, "object_type");
    if (base == "project_log") return "project";
    if (base == "organization" || base == "org_project" || base == "org_member") return "organization";
    return base.empty() ? std::nullopt : std::optional<std::string>(base);
  }
  if (field.starts_with("member_") && field.ends_with("s")) base = field.substr(7, field.size() - 8);
  else if (field.ends_with("_id")) base = field.substr(0, field.size() - 3);
  else return std::nullopt;
  if (base == "base_exp") return "experiment";
  if (base == "parameters") return "function";
  if (base == "user" || res::find_spec(base)) return base;
  return std::nullopt;
}

/// Member lists are sets (the migration adds members in its own order): compared sorted, and an
/// absent list is an empty one.
void sort_if_set(std::string_view field, json::value& v) {
  if (!field.starts_with("member_")) return;
  if (v.is_null()) v = json::array();
  if (!v.is_array()) return;
  auto& a = v.get_array();
  std::sort(a.begin(), a.end(),
            [](const json::value& x, const json::value& y) { return streams::canonical_json(x) < streams::canonical_json(y); });
}

/// Where two values first differ: the path below them (".origin.prompt_version", "[2]"; "" when the
/// values themselves differ: scalars, types, array lengths) and the two values there.
struct divergence {
  std::string path;
  json::value source, dest;
};
divergence first_difference(const json::value& a, const json::value& b) {
  const json::value null;
  if (a.is_object() && b.is_object()) {
    std::set<std::string> keys;
    for (const auto& kv : a.get_object()) keys.emplace(kv.key());
    for (const auto& kv : b.get_object()) keys.emplace(kv.key());
    for (const auto& k : keys) {
      const auto* x = a.get_object().if_contains(k);
      const auto* y = b.get_object().if_contains(k);
      if (streams::canonical_json(x ? *x : null) == streams::canonical_json(y ? *y : null)) continue;
      auto d = first_difference(x ? *x : null, y ? *y : null);
      d.path = "." + k + d.path;
      return d;
    }
  } else if (a.is_array() && b.is_array() && a.get_array().size() == b.get_array().size()) {
    for (std::size_t i = 0; i < a.get_array().size(); ++i) {
      if (streams::canonical_json(a.get_array()[i]) == streams::canonical_json(b.get_array()[i])) continue;
      auto d = first_difference(a.get_array()[i], b.get_array()[i]);
      d.path = "[" + std::to_string(i) + "]" + d.path;
      return d;
    }
  }
  return divergence{{}, a, b};
}

/// How a difference names an object: its name (or slug); an ACL by what it grants to whom on what.
std::string label(const res::resource_spec& spec, const json::object& o) {
  std::string name = str_field(o, "name");
  if (name.empty()) name = str_field(o, "slug");
  if (name.empty() && spec.unique.empty()) {
    const auto who = !str_field(o, "user_id").empty() ? "user " + str_field(o, "user_id") : "group " + str_field(o, "group_id");
    const auto what = !str_field(o, "role_id").empty() ? "role " + str_field(o, "role_id") : str_field(o, "permission");
    name = str_field(o, "object_type") + ":" + str_field(o, "object_id") + " " + who + " " + what;
  }
  return "resource " + spec.type + " '" + name + "' (" + str_field(o, "id") + ")";
}

/// What the natural key of a type is made of, for messages.
std::string key_fields(const res::resource_spec& spec) {
  if (spec.unique.empty()) return "content";
  std::string out;
  for (const auto& f : spec.unique) out += (out.empty() ? "" : "+") + f;
  return out;
}

/// One entry of verify_report.json's resource_checks for a type.
json::object type_check(const std::string& type, std::size_t objects, std::size_t diffs, std::size_t notes,
                        std::size_t dest_only) {
  json::object o;
  o["type"] = "fields:" + type;
  o["objects"] = objects;
  o["differences"] = diffs;
  o["as_reported"] = notes;
  o["dest_only"] = dest_only;
  return o;
}

/// The natural key of an object (ids already mapped on the source side): the table's uniqueness key
/// within its project; "" when a key field is missing.
std::string natural_key(const res::resource_spec& spec, const json::object& o) {
  auto k = res::uniqueness_key(spec, o);
  return k.empty() ? k : str_field(o, "project_id") + '\x1e' + k;
}

/// Objects of `type` repeated by another type's listing (prompts are functions): checked as the type
/// that migrates them (org_migrator's own_form_only rule: origin or function_schema keep the function form).
bool own_form_only(const json::object& o) {
  for (std::string_view f : {"origin", "function_schema"})
    if (auto it = o.find(f); it != o.end() && !it->value().is_null()) return true;
  return false;
}

/// Listings of one type read at once (each is one or more requests through the side's client, which
/// bounds the requests in flight anyway).
constexpr std::size_t k_listings_in_flight = 8;

/// One listing plan of a type on one side: GET `path` once per query, kept when `filter_field` (if any)
/// holds one of `filter_ids`.
struct listing {
  std::string path;
  std::vector<res::query_params> queries;
  std::string filter_field;
  std::set<std::string> filter_ids;
};

res::query_params object_params(std::string type, std::string id) {
  res::query_params q;
  q.emplace_back("object_type", std::move(type));
  q.emplace_back("object_id", std::move(id));
  return q;
}

class resource_verifier {
 public:
  /// `source` / `source_org`: the source side read from elsewhere than c.src (an archive); else c.src.
  resource_verifier(run_context& c, const drops_by_id& drops, res::resource_api* source = nullptr,
                    std::string source_org = {})
      : c_(c), drops_(drops), opts_(selected_options(c.cfg)), src_api_(source ? *source : *c.src.res), dst_api_(*c.dst.res),
        skips_(c.state ? reported_skips(c.cfg, drops) : std::map<std::string, std::string>{}) {
    source_given_ = source != nullptr;
    src_org_ = std::move(source_org);
  }

  asio::awaitable<resource_verify_result> run() {
    if (!source_given_) src_org_ = co_await organization_id(c_.src);
    dst_org_ = co_await organization_id(c_.dst);
    load_state_map();
    if (!src_org_.empty() && !dst_org_.empty() && !ids_.count(src_org_)) pair(src_org_, dst_org_, "organization");
    if (!c_.state) co_await pair_users();
    auto order = visit_order(opts_);
    // Environment assignments are read per object, not listed: compared after the types (check_assignments).
    std::erase_if(order, [](const res::resource_spec* s) { return s->list == res::list_mode::path_assignment; });
    for (const auto* spec : order) {
      // A type that cannot be listed is a failure of its own; the other types are still compared.
      try {
        auto s = co_await run_listing(src_api_, plan_listing(*spec, true), *spec);
        src_[spec->type] = select_source(*spec, std::move(s));
        auto d = co_await run_listing(dst_api_, plan_listing(*spec, false), *spec);
        for (auto& o : d) dst_[spec->type][str_field(o, "id")] = std::move(o);
      } catch (const res::api_failure& e) {
        out_.failures.push_back("resource " + spec->type + ": not compared: " + e.what());
        src_.erase(spec->type);
        dst_.erase(spec->type);
        continue;
      }
      pair_by_key(*spec);
    }
    std::erase_if(order, [&](const res::resource_spec* s) { return !src_.count(s->type); });
    drop_twins();
    pair_current_versions();
    co_await pair_newest_dataset_versions();
    for (const auto* spec : order) {
      const auto diffs_before = out_.diffs.size(), notes_before = out_.notes.size();
      for (const auto& o : src_[spec->type]) co_await check_object(*spec, o);
      out_.objects += src_[spec->type].size();
      out_.checks.push_back(type_check(spec->type, src_[spec->type].size(), out_.diffs.size() - diffs_before,
                                       out_.notes.size() - notes_before, note_dest_only(*spec)));
    }
    if (opts_.types.count("environment_object")) co_await check_assignments();
    co_return std::move(out_);
  }

 private:
  /// A paired object an environment may pin, and its assignments (GET <path>/<type>/<id>) on both sides.
  struct assigned {
    std::string type, sid, did, name;
    std::vector<json::object> src, dst;
  };
  run_context& c_;
  const drops_by_id& drops_;
  res::resource_options opts_;
  res::resource_client src_api_, dst_api_;
  std::map<std::string, std::string> skips_;  // source id -> why the migration skipped it (reported)
  std::string src_org_, dst_org_;
  std::map<std::string, std::string> ids_;        // source id -> destination id (state map, then natural pairs)
  std::map<std::string, std::string> dest_type_;  // destination id -> type (the map's namespace)
  std::set<std::string> known_;                   // ids of every listed source object
  std::map<std::string, std::vector<json::object>> src_;            // type -> selected source objects
  std::map<std::string, std::map<std::string, json::object>> dst_;  // type -> destination id -> object
  std::map<std::string, bool> exists_;  // "<type> <id>" -> a GET found it
  resource_verify_result out_;
  bool source_given_ = false;  // the source is not c.src (verify_resources_from)

  void pair(const std::string& sid, const std::string& did, std::string_view type) {
    ids_[sid] = did;
    dest_type_[did] = type;
  }
  std::optional<std::string> mapped(const std::string& sid) const {
    auto it = ids_.find(sid);
    return it == ids_.end() ? std::nullopt : std::optional<std::string>(it->second);
  }

  /// The state dir's id maps (every namespace the migration writes), without pending links and the
  /// placeholders of dry runs.
  void load_state_map() {
    if (!c_.state) return;
    res::state_id_map m(*c_.state);
    m.for_each([&](std::string_view t, std::string_view s, std::string_view d) {
      if (t.starts_with(res::k_pending_prefix) || d.empty() || d.starts_with("dry-run:")) return;
      pair(std::string(s), std::string(d), t);
    });
    // Version pins the migration mapped (source transaction id -> destination version), read like ids.
    for (std::string_view space : {"pin:function", "pin:dataset"})
      c_.state->for_each_id(space, [&](std::string_view s, std::string_view d) {
        if (!d.empty()) pair(std::string(s), std::string(d), space);
        return true;
      });
  }

  /// Without a state dir, users are paired by email (lower case), as the migration's user mapping does.
  asio::awaitable<void> pair_users() {
    auto lower = [](std::string s) {
      for (auto& ch : s) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
      return s;
    };
    std::map<std::string, std::string> dest_by_email;
    std::vector<json::object> dusers, susers;
    try {
      dusers = co_await dst_api_.list("/v1/user", {});
      susers = co_await src_api_.list("/v1/user", {});
    } catch (const res::api_failure& e) {
      // Not a difference: user ids then compare unmapped (and differ where the objects hold any).
      out_.notes.push_back(std::string("users not paired by email (the user list is not readable): ") + e.what());
      co_return;
    }
    for (const auto& u : dusers) dest_by_email[lower(str_field(u, "email"))] = str_field(u, "id");
    for (const auto& u : susers)
      if (auto it = dest_by_email.find(lower(str_field(u, "email"))); it != dest_by_email.end() && !it->first.empty())
        pair(str_field(u, "id"), it->second, "user");
  }

  /// Parent ids of `type` on one side: the selected source objects (mapped ones only when asked), or
  /// their destination twins.
  std::vector<std::string> parent_ids(const std::string& type, bool source, bool mapped_only) const {
    std::vector<std::string> out;
    auto it = src_.find(type);
    if (it == src_.end()) return out;
    for (const auto& o : it->second) {
      const auto sid = str_field(o, "id");
      auto d = mapped(sid);
      if (source && (!mapped_only || d)) out.push_back(sid);
      if (!source && d) out.push_back(*d);
    }
    return out;
  }

  /// How the table's row of `spec` lists it on one side (the migrator's listing, see org_migrator).
  listing plan_listing(const res::resource_spec& spec, bool source) const {
    listing l{spec.path, {}, {}, {}};
    auto ids_of = [&](const std::string& type) {
      auto v = parent_ids(type, source, false);
      return std::set<std::string>(v.begin(), v.end());
    };
    switch (spec.list) {
      case res::list_mode::acl_list_org: l.path = "/v1/acl/list_org"; [[fallthrough]];
      case res::list_mode::org: l.queries.emplace_back(); break;
      case res::list_mode::project_param:
        for (const auto& p : parent_ids("project", source, false)) l.queries.push_back(one_param("project_id", p));
        break;
      case res::list_mode::project_local:
        l.queries.emplace_back();
        l.filter_field = "project_id";
        l.filter_ids = ids_of("project");
        break;
      case res::list_mode::dataset_local:
        l.queries.emplace_back();
        l.filter_field = "dataset_id";
        l.filter_ids = ids_of("dataset");
        break;
      case res::list_mode::path_assignment:  // read per object (GET <path>/<type>/<id>): check_assignments
        break;
      case res::list_mode::parent_object:
        for (const auto& p : spec.parents) {
          if (p.type == "organization") {
            const auto& org = source ? src_org_ : dst_org_;
            if (!org.empty()) l.queries.push_back(object_params(p.type, org));
            continue;
          }
          if (p.type != "project" && !opts_.types.count(p.type)) continue;
          for (const auto& id : parent_ids(p.type, source, p.mapped_only)) l.queries.push_back(object_params(p.type, id));
        }
        break;
    }
    return l;
  }

  asio::awaitable<std::vector<json::object>> run_listing(res::resource_client& side, listing l,
                                                         const res::resource_spec& spec) {
    const auto mode = spec.cursors ? res::resource_client::paging::cursor : res::resource_client::paging::single;
    // One listing per parent (views of each experiment...): several at once, each into its own slot
    // (workers may run on any thread), concatenated in query order.
    std::vector<std::vector<json::object>> parts(l.queries.size());
    co_await for_each_bounded(co_await asio::this_coro::executor, l.queries.size(), k_listings_in_flight,
                              [&](std::size_t i) -> asio::awaitable<void> {
                                parts[i] = co_await side.list(l.path, l.queries[i], 1000, mode);
                              });
    std::vector<json::object> out;
    for (auto& page : parts)
      for (auto& o : page)
        if (l.filter_field.empty() || l.filter_ids.count(str_field(o, l.filter_field))) out.push_back(std::move(o));
    co_return out;
  }

  /// The source objects the migration selects: projects by name, the created window.
  std::vector<json::object> select_source(const res::resource_spec& spec, std::vector<json::object> objs) {
    std::erase_if(objs, [&](const json::object& o) {
      if (spec.type == "project") {
        const auto name = str_field(o, "name");
        if (!opts_.projects.empty() && std::find(opts_.projects.begin(), opts_.projects.end(), name) == opts_.projects.end())
          return true;
        if (std::find(opts_.exclude_projects.begin(), opts_.exclude_projects.end(), name) != opts_.exclude_projects.end())
          return true;
      }
      if (!spec.created_window || !opts_.window_selects_objects) return false;
      const auto created = res::comparable_time(str_field(o, "created"));
      if (created.empty()) return false;
      return (!opts_.created_after.empty() && created < opts_.created_after) ||
             (!opts_.created_before.empty() && created >= opts_.created_before);
    });
    for (const auto& o : objs) known_.insert(str_field(o, "id"));
    return objs;
  }

  /// Source objects the id map does not pair: paired with the destination object of the same natural key.
  void pair_by_key(const res::resource_spec& spec) {
    std::map<std::string, std::string> by_key;
    for (const auto& [id, o] : dst_[spec.type])
      if (auto k = natural_key(spec, o); !k.empty()) by_key.emplace(std::move(k), id);
    auto lookup = [this](const std::string& id) { return mapped(id); };
    for (const auto& o : src_[spec.type]) {
      const auto sid = str_field(o, "id");
      if (ids_.count(sid)) continue;
      std::set<std::string> unmapped;
      auto m = map_ids(json::value(o), lookup, known_, unmapped);
      if (auto it = by_key.find(natural_key(spec, m.get_object())); it != by_key.end() && !it->first.empty())
        pair(sid, it->second, spec.type);
    }
  }

  /// A pin of a function's current version names its twin's current version (a migration copies only
  /// current versions): paired like ids, where the state recorded no pin (no state dir: two deployments
  /// compared by name).
  void pair_current_versions() {
    for (std::string_view type : {"function", "prompt"}) {
      auto s = src_.find(std::string(type));
      if (s == src_.end()) continue;
      for (const auto& o : s->second) {
        const auto did = mapped(str_field(o, "id"));
        const auto sx = str_field(o, "_xact_id");
        if (!did || sx.empty() || ids_.count(sx)) continue;
        for (std::string_view t : {"function", "prompt"})
          if (auto d = dst_.find(std::string(t)); d != dst_.end())
            if (auto it = d->second.find(*did); it != d->second.end() && !str_field(it->second, "_xact_id").empty())
              pair(sx, str_field(it->second, "_xact_id"), "pin:function");
      }
    }
  }

  /// A pin of a dataset's newest version names its twin's newest version (the streams compare the rows):
  /// paired like ids where the state recorded none (no state dir: two deployments compared by name). An
  /// older pin stays unpaired (compared as it is). A side that cannot be probed leaves the pins unpaired.
  asio::awaitable<void> pair_newest_dataset_versions() {
    std::map<std::string, std::set<std::string>> wanted;  // source dataset id -> pinned versions not paired
    for (auto [type, field] : {std::pair{"dataset_snapshot", "xact_id"}, std::pair{"experiment", "dataset_version"}})
      if (auto it = src_.find(type); it != src_.end())
        for (const auto& o : it->second)
          if (const auto ds = str_field(o, "dataset_id"), v = str_field(o, field); !ds.empty() && !v.empty() && !ids_.count(v))
            wanted[ds].insert(v);
    for (const auto& [ds, versions] : wanted) {
      const auto did = mapped(ds);
      if (!did) continue;
      std::string sx, dx;
      try {
        sx = co_await res::newest_dataset_xact(src_api_, ds);
        if (versions.count(sx)) dx = co_await res::newest_dataset_xact(dst_api_, *did);
      } catch (const res::api_failure&) {
        continue;
      }
      if (!dx.empty() && !ids_.count(sx)) pair(sx, dx, "pin:dataset");
    }
  }

  /// A listing that repeats another type's objects (prompts are functions): each object is checked as
  /// the type that migrates it.
  void drop_twins() {
    for (const auto& spec : res::resource_specs()) {
      if (spec.listed_by.empty() || !src_.count(spec.type) || !src_.count(spec.listed_by)) continue;
      auto& mine = src_[spec.type];
      auto& theirs = src_[spec.listed_by];
      std::set<std::string> in_theirs, own_form;
      for (const auto& o : theirs) in_theirs.insert(str_field(o, "id"));
      for (const auto& o : mine)
        if (own_form_only(o)) own_form.insert(str_field(o, "id"));
      std::erase_if(mine, [&](const json::object& o) { return in_theirs.count(str_field(o, "id")) && !own_form_only(o); });
      std::erase_if(theirs, [&](const json::object& o) { return own_form.count(str_field(o, "id")) > 0; });
    }
  }

  /// Destination objects (of the listed scope) that no source object pairs with: not differences (a
  /// destination may hold more, e.g. its built-in roles), but named, so that a duplicate shows. Returns
  /// how many.
  std::size_t note_dest_only(const res::resource_spec& spec) {
    std::set<std::string> paired;
    for (const auto& kv : ids_) paired.insert(kv.second);
    std::vector<std::string> names;
    for (const auto& [id, o] : dst_[spec.type])
      if (!paired.count(id)) names.push_back(label(spec, o).substr(10 + spec.type.size()));
    if (names.empty()) return 0;
    std::string line = "resource " + spec.type + ": " + std::to_string(names.size()) +
                       " destination object(s) that no source object pairs with (not compared):";
    for (std::size_t i = 0; i < names.size() && i < 5; ++i) line += " " + names[i];
    if (names.size() > 5) line += " ...";
    out_.dest_only.push_back(std::move(line));
    return names.size();
  }

  const json::object* listed_dest(const res::resource_spec& spec, const std::string& id) const {
    std::vector<std::string> types = res::id_space_types(spec.id_space);
    types.push_back(spec.type);
    for (const auto& t : types)
      if (auto it = dst_.find(t); it != dst_.end())
        if (auto o = it->second.find(id); o != it->second.end()) return &o->second;
    return nullptr;
  }

  /// GET <path>/<id> on the destination: the object, or nullopt on a 404.
  asio::awaitable<std::optional<json::object>> fetch(std::string path, std::string id) {
    try {
      auto v = co_await dst_api_.get(path + "/" + id);
      if (v.is_object()) co_return std::move(v.get_object());
      co_return std::nullopt;
    } catch (const res::api_failure& e) {
      if (e.status() == 404) co_return std::nullopt;
      throw;
    }
  }

  asio::awaitable<void> check_object(const res::resource_spec& spec, const json::object& src) {
    const auto sid = str_field(src, "id");
    const auto what = label(spec, src);
    auto did = mapped(sid);
    if (!did) {
      if (auto sk = skips_.find(sid); sk != skips_.end())
        out_.notes.push_back(what + ": not in the destination, skipped by the migration as reported (" + sk->second + ")");
      else
        out_.diffs.push_back(what + ": missing in the destination (" + (c_.state ? "not in the id map, " : "") +
                             "no destination object with the same " + key_fields(spec) + ")");
      co_return;
    }
    std::optional<json::object> fetched;
    const json::object* dest = listed_dest(spec, *did);
    if (!dest) {
      fetched = co_await fetch(spec.path, *did);
      if (!fetched) {
        out_.diffs.push_back(what + ": deleted in the destination (destination id " + *did + ")");
        co_return;
      }
      dest = &*fetched;
    }
    compare_fields(spec, src, *dest, what);
    co_await check_references(spec, *dest, what);
  }

  /// Environment assignments: for every paired object an environment may pin (the assignment type's
  /// parents; a prompt may be filed under function too, as the migrator reads them), the source's and the
  /// destination's assignments by environment slug, the source version mapped (pin:<space>). One DIFF
  /// per assignment missing, differing or set in the destination only; a reported skip is a note.
  asio::awaitable<void> check_assignments() {
    const auto& spec = res::spec_of("environment_object");
    std::vector<assigned> todo;
    for (const auto& p : spec.parents)
      if (auto it = src_.find(p.type); it != src_.end())
        for (const auto& o : it->second)
          if (auto did = mapped(str_field(o, "id"))) {
            const auto types = res::types_sharing_ids(p.type);
            const auto name = label(res::spec_of(p.type), o).substr(10 + p.type.size());
            for (const auto& t : types) todo.push_back({t, str_field(o, "id"), *did, name, {}, {}});
          }
    try {
      co_await for_each_bounded(co_await asio::this_coro::executor, todo.size(), k_listings_in_flight,
                                [&](std::size_t i) -> asio::awaitable<void> {
                                  auto& a = todo[i];
                                  a.src = co_await assignments(src_api_, spec.path + "/" + a.type + "/" + a.sid);
                                  a.dst = co_await assignments(dst_api_, spec.path + "/" + a.type + "/" + a.did);
                                });
    } catch (const res::api_failure& e) {
      out_.failures.push_back("resource environment_object: not compared: " + std::string(e.what()));
      co_return;
    }
    const auto diffs_before = out_.diffs.size(), notes_before = out_.notes.size();
    std::map<std::string, std::pair<std::map<std::string, json::object>, std::map<std::string, json::object>>> by_object;
    for (const auto& a : todo) {
      auto& [s, d] = by_object[a.sid + '\x1e' + a.name];
      for (const auto& x : a.src) s.emplace(str_field(x, "environment_slug"), x);
      for (const auto& x : a.dst) d.emplace(str_field(x, "environment_slug"), x);
    }
    std::size_t n = 0;
    for (const auto& [key, sides] : by_object) {
      const auto sid = key.substr(0, key.find('\x1e')), name = key.substr(key.find('\x1e') + 1);
      n += sides.first.size();
      compare_assignments(sid, name, sides.first, sides.second);
    }
    out_.objects += n;
    out_.checks.push_back(type_check("environment_object", n, out_.diffs.size() - diffs_before,
                                     out_.notes.size() - notes_before, 0));
  }

  /// The assignments of one object on one side; none when the object (or the route) is not there.
  asio::awaitable<std::vector<json::object>> assignments(res::resource_client& side, std::string path) {
    std::vector<json::object> out;
    try {
      out = co_await side.list(std::move(path), {}, 1000, res::resource_client::paging::single);
    } catch (const res::api_failure& e) {
      if (e.status() != 404) throw;
    }
    co_return out;
  }

  void compare_assignments(const std::string& sid, const std::string& name, const std::map<std::string, json::object>& src,
                           const std::map<std::string, json::object>& dst) {
    for (const auto& [slug, a] : src) {
      const auto id = str_field(a, "object_type") + "/" + sid + "/" + slug;
      const auto what = "resource environment_object " + name + " in environment " + slug;
      const auto sv = str_field(a, "object_version");
      const auto expected = mapped(sv).value_or(sv);
      auto d = dst.find(slug);
      if (d == dst.end()) {
        if (auto sk = skips_.find(id); sk != skips_.end())
          out_.notes.push_back(what + ": not in the destination, skipped by the migration as reported (" + sk->second + ")");
        else
          out_.diffs.push_back(what + ": missing in the destination");
      } else if (const auto dv = str_field(d->second, "object_version"); dv != expected) {
        out_.diffs.push_back(what + " field object_version: differs: source " + sv +
                             (expected == sv ? std::string() : " (mapped " + expected + ")") + ", destination " + dv);
      }
    }
    for (const auto& [slug, a] : dst)
      if (!src.count(slug))
        out_.diffs.push_back("resource environment_object " + name + " in environment " + slug +
                             ": set in the destination only (object_version " + str_field(a, "object_version") + ")");
  }

  /// One line per field whose destination value is not the source value with its ids mapped.
  void compare_fields(const res::resource_spec& spec, const json::object& src, const json::object& dest,
                      const std::string& what) {
    std::vector<std::string> fields = spec.create_fields;
    for (const auto& f : spec.set_after_create)
      if (std::find(fields.begin(), fields.end(), f) == fields.end()) fields.push_back(f);
    auto lookup = [this](const std::string& id) { return mapped(id); };
    const auto drops = drops_.find(str_field(src, "id"));
    for (const auto& f : fields) {
      if (f == spec.hidden_value_field) continue;  // write-only (secret values): never read, never compared
      const json::value* sv = src.if_contains(f);
      const json::value* dv = dest.if_contains(f);
      std::set<std::string> unmapped;
      auto expected = map_ids(sv ? *sv : json::value(), lookup, known_, unmapped);
      json::value actual = dv ? *dv : json::value();
      sort_if_set(f, expected);
      sort_if_set(f, actual);
      const auto ce = streams::canonical_json(expected);
      const auto cd = streams::canonical_json(actual);
      std::set<std::string> forwarded;
      for (const auto& id : unmapped)
        if (cd.find('"' + id + '"') != std::string::npos) forwarded.insert(id);
      if (ce == cd && forwarded.empty()) continue;
      std::string why;
      if (!forwarded.empty()) why = "unmapped reference forwarded: " + joined(forwarded);
      else if (!unmapped.empty()) why = "reference dropped or unmapped: " + joined(unmapped) + " has no destination object";
      else if (cd == "null") why = "missing in the destination (source: " + shorten(ce) + ")";
      else if (ce == "null") why = "set in the destination only: " + shorten(cd);
      else {
        const auto d = first_difference(expected, actual);
        why = "differs" + (d.path.empty() ? std::string() : " at " + f + d.path) + ": source " +
              shorten(streams::canonical_json(d.source)) + ", destination " + shorten(streams::canonical_json(d.dest));
      }
      // What the migration reported dropping (an id it could not map, a version pin) is not a silent
      // difference: with it taken out, the rest of the field must be equal.
      std::string reason;
      auto rest = without_reported_drops(expected, f, drops == drops_.end() ? nullptr : &drops->second, reason);
      sort_if_set(f, rest);
      if (!reason.empty() && forwarded.empty() && streams::canonical_json(rest) == cd)
        out_.notes.push_back(what + " field " + f + ": " + why + " (dropped by the migration, reported: " + reason + ")");
      else
        out_.diffs.push_back(what + " field " + f + ": " + why);
    }
  }

  /// The (type, id) references a destination field holds: every id of a typed field; inside a blob,
  /// the ids the id map knows (their type is the map's namespace).
  std::vector<std::pair<std::string, std::string>> references(std::string_view field, const json::value& v,
                                                              const json::object& dest) const {
    std::vector<std::pair<std::string, std::string>> out;
    const auto typed = ref_type(field, dest);
    std::function<void(const json::value&)> walk = [&](const json::value& x) {
      if (x.is_array()) {
        for (const auto& e : x.get_array()) walk(e);
      } else if (x.is_object()) {
        for (const auto& kv : x.get_object()) walk(kv.value());
      } else if (x.is_string()) {
        const std::string s(x.get_string());
        for (std::size_t i = 0; i + 36 <= s.size(); ++i) {
          const auto id = s.substr(i, 36);
          if (!res::looks_like_uuid(id)) continue;
          if (typed) out.emplace_back(*typed, id);
          else if (auto t = dest_type_.find(id); t != dest_type_.end()) out.emplace_back(t->second, id);
          i += 35;
        }
      }
    };
    walk(v);
    return out;
  }

  /// Whether the destination has an object `id` of `type`: in the listings, else GET <path>/<id>.
  asio::awaitable<bool> exists(const std::string& type, const std::string& id) {
    if (type == "organization") co_return id == dst_org_;
    const auto* spec = res::find_spec(type);
    if (spec && listed_dest(*spec, id)) co_return true;
    if (!spec && type != "user") co_return true;  // a namespace with no endpoint: nothing to ask
    const auto key = type + " " + id;
    if (auto it = exists_.find(key); it != exists_.end()) co_return it->second;
    const std::string path = spec ? spec->path : std::string("/v1/user");
    auto got = co_await fetch(path, id);
    exists_[key] = got.has_value();
    co_return got.has_value();
  }

  asio::awaitable<void> check_references(const res::resource_spec& spec, const json::object& dest, const std::string& what) {
    for (const auto& f : spec.ref_fields) {
      const auto* v = dest.if_contains(f);
      if (!v || v->is_null()) continue;
      for (const auto& [type, id] : references(f, *v, dest)) {
        const bool ok = co_await exists(type, id);
        if (!ok)
          out_.diffs.push_back(what + " field " + f + ": references " + type + " " + id +
                               ", which does not exist in the destination");
      }
    }
  }
};

}  // namespace

asio::awaitable<resource_verify_result> verify_resources(run_context& c, const drops_by_id& drops) {
  resource_verifier v(c, drops);
  co_return co_await v.run();
}

asio::awaitable<resource_verify_result> verify_resources_from(run_context& c, res::resource_api& source,
                                                              std::string source_org) {
  drops_by_id drops;  // what the import recorded dropping, as verification.cpp reads it
  if (c.state)
    c.state->for_each_dropped([&](std::string_view, std::string_view id, const stores::state_store::dropped_fields& f) {
      auto& v = drops[std::string(id)];
      v.insert(v.end(), f.begin(), f.end());
      return true;
    });
  resource_verifier v(c, drops, &source, std::move(source_org));
  co_return co_await v.run();
}

}  // namespace ferry::pipelines
