// The SDK's app-URL calls (sdk-wire.md §1): login and the register endpoints, answered from the REST store.
#include "emulator/rest.hpp"
#include "json_fields.hpp"
#include "transports/http_util.hpp"
#include "engine/json_parse.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <boost/url/parse_query.hpp>

namespace ferry::emulator {

namespace json = boost::json;

namespace {

json::object body_object(std::string_view body) {
  if (body.find_first_not_of(" \t\r\n") == std::string_view::npos) return {};
  boost::system::error_code ec;
  auto v = ferry::engine::parse_json(body, ec);
  if (ec) throw api_error(400, "request body is not valid JSON: " + ec.message());
  if (!v.is_object()) throw api_error(400, "request body must be a JSON object");
  return std::move(v.as_object());
}

std::string query_param(std::string_view query, std::string_view name) {
  auto r = boost::urls::parse_query(query);
  if (!r) return {};
  const boost::urls::encoding_opts form(true);  // '+' is a space in a query string
  for (auto p : *r)
    if (p.key.decode(form) == name && p.has_value) return p.value.decode(form);
  return {};
}

json::object brief(const json::object& o) {
  json::object b;
  b["id"] = o.at("id");
  b["name"] = o.at("name");
  return b;
}


// The SDK's dataset snapshot calls (Dataset.createSnapshot, listSnapshots, getSnapshot, updateSnapshot,
// deleteSnapshot) over the /v1/dataset_snapshot resource: register (POST, or PUT with `update`; reports
// found_existing), get (the dataset's live snapshots, by name and/or xact_id; the /v1 list has no dataset
// filter), patch_id, delete_id.
std::optional<rest_reply> dataset_snapshot_call(rest_store& rest, std::string_view op, std::string_view body_text,
                                                const org_identity& org) {
  auto body = body_object(body_text);
  auto v1 = [&](std::string_view method, const std::string& target, const json::object& b) {
    auto r = rest.handle(method, target, b.empty() ? std::string() : json::serialize(b), org);
    if (!r) throw api_error(500, "dataset_snapshot resource missing");
    return *r;
  };
  if (op == "register") {
    json::object fields;
    fields["dataset_id"] = string_field(body, "dataset_id");
    fields["name"] = string_field(body, "dataset_snapshot_name");
    fields["xact_id"] = string_field(body, "xact_id");
    if (auto it = body.find("description"); it != body.end()) fields["description"] = it->value();
    bool existed = false;
    for (const auto& snap : rest.find(org, "dataset_snapshot", "dataset_id", string_field(body, "dataset_id")))
      existed = existed || string_field(snap, "name") == string_field(body, "dataset_snapshot_name");
    bool update = false;
    if (auto it = body.find("update"); it != body.end() && it->value().is_bool()) update = it->value().get_bool();
    auto r = v1(update ? "PUT" : "POST", "/v1/dataset_snapshot", fields);
    if (r.status != 200) return r;
    json::object out;
    out["dataset_snapshot"] = ferry::engine::parse_json(r.body);
    out["found_existing"] = existed;
    return rest_reply{200, json::serialize(out)};
  }
  if (op == "get") {
    auto dataset_id = string_field(body, "dataset_id");
    if (dataset_id.empty()) throw api_error(400, "missing required field: dataset_id");
    const auto name = string_field(body, "name");
    const auto xact = string_field(body, "xact_id");
    json::array out;
    for (auto& snap : rest.find(org, "dataset_snapshot", "dataset_id", dataset_id))
      if ((name.empty() || string_field(snap, "name") == name) && (xact.empty() || string_field(snap, "xact_id") == xact))
        out.push_back(std::move(snap));
    return rest_reply{200, json::serialize(out)};
  }
  auto id = string_field(body, "id");
  if (id.empty()) throw api_error(400, "missing required field: id");
  if (op == "patch_id") {
    json::object fields;
    for (std::string_view f : {"name", "description"})
      if (auto it = body.find(f); it != body.end() && !it->value().is_null()) fields[f] = it->value();
    return v1("PATCH", "/v1/dataset_snapshot/" + transports::percent_encode(id), fields);
  }
  if (op == "delete_id") return v1("DELETE", "/v1/dataset_snapshot/" + transports::percent_encode(id), {});
  return std::nullopt;
}

}  // namespace

std::optional<rest_reply> rest_store::handle_sdk(std::string_view method, std::string_view target,
                                                 std::string_view body_text, const org_identity& org) {
  const auto qpos = target.find('?');
  const auto path = target.substr(0, qpos);
  const auto query = qpos == std::string_view::npos ? std::string_view() : target.substr(qpos + 1);
  const bool insert_functions_path = path == "/insert-functions";
  if (!path.starts_with("/api/") && !insert_functions_path) return std::nullopt;
  auto reply = [](const json::value& v) { return rest_reply{200, to_json_text(v)}; };
  try {
    if (insert_functions_path) {
      if (method != "POST") throw api_error(405, "method " + std::string(method) + " is not allowed on /insert-functions");
      return reply(insert_functions(org, body_text));
    }
    if (path == "/api/apikey/login" && method == "POST") {
      json::object info;
      info["id"] = org.org_id;
      info["name"] = org.org_name;
      info["api_url"] = base_url();
      info["proxy_url"] = base_url();
      info["git_metadata"] = nullptr;
      json::object out;
      out["org_info"] = json::array{std::move(info)};
      return reply(out);
    }

    // Resolves the project of a register call: project_id, or project_name (created when missing).
    auto project_for = [&](const json::object& body) -> json::object {
      if (auto id = string_field(body, "project_id"); !id.empty()) {
        auto p = get(org, "project", id);
        if (!p) throw api_error(404, "project " + id + " not found");
        return *p;
      }
      auto name = string_field(body, "project_name");
      if (name.empty()) throw api_error(400, "missing required field: project_name");
      json::object fields;
      fields["name"] = name;
      return create(org, "project", std::move(fields));
    };
    auto check_org = [&](const json::object& body) {
      if (auto id = string_field(body, "org_id"); !id.empty() && id != org.org_id)
        throw api_error(403, "org_id " + id + " is not the organization of this API key");
    };

    if (path == "/api/project/register" && method == "POST") {
      auto body = body_object(body_text);
      check_org(body);
      json::object out;
      out["project"] = project_for(body);
      return reply(out);
    }
    if (path == "/api/project" && method == "GET") {
      auto id = query_param(query, "id");
      if (id.empty()) throw api_error(400, "missing required query parameter: id");
      auto p = get(org, "project", id);
      if (!p) throw api_error(404, "project " + id + " not found");
      return reply(*p);
    }
    // ProjectNameIdMap.getName (`braintrust pull`, publish by project id): the live projects with that id, as
    // an array (the SDK requires one element; an unknown id answers an empty one).
    if (path == "/api/project/get" && method == "POST") {
      auto body = body_object(body_text);
      auto id = string_field(body, "id");
      if (id.empty()) throw api_error(400, "missing required field: id");
      json::array out;
      if (auto p = get(org, "project", id)) out.push_back(std::move(*p));
      return reply(out);
    }
    if (path.starts_with("/api/dataset_snapshot/") && method == "POST")
      return dataset_snapshot_call(*this, path.substr(std::string_view("/api/dataset_snapshot/").size()), body_text,
                                   org);
    if (path == "/api/dataset/register" && method == "POST") {
      auto body = body_object(body_text);
      check_org(body);
      auto project = project_for(body);
      auto name = string_field(body, "dataset_name");
      if (name.empty()) throw api_error(400, "missing required field: dataset_name");
      json::object fields;
      fields["project_id"] = project.at("id");
      fields["name"] = name;
      for (std::string_view f : {"description", "metadata"})
        if (auto it = body.find(f); it != body.end()) fields[f] = it->value();
      json::object out;
      out["project"] = brief(project);
      out["dataset"] = create(org, "dataset", std::move(fields));
      return reply(out);
    }
    if (path == "/api/experiment/register" && method == "POST") {
      auto body = body_object(body_text);
      check_org(body);
      auto project = project_for(body);
      const auto project_id = std::string(project.at("id").as_string());
      json::object fields;
      fields["project_id"] = project_id;
      if (auto name = string_field(body, "experiment_name"); !name.empty()) fields["name"] = name;
      for (std::string_view f : {"description", "dataset_id", "dataset_version", "metadata", "tags", "public",
                                 "repo_info", "base_exp_id"})
        if (auto it = body.find(f); it != body.end()) fields[f] = it->value();
      if (auto base = string_field(body, "base_experiment"); !base.empty()) {
        json::object base_exp;
        for (const auto& e : find(org, "experiment", "name", base))
          if (string_field(e, "project_id") == project_id) base_exp = e;
        if (base_exp.empty()) throw api_error(400, "base experiment " + base + " not found");
        fields["base_exp_id"] = base_exp.at("id");
      }
      // `update: true` continues an experiment of the same name; otherwise each register is a new one.
      bool update = false;
      if (auto it = body.find("update"); it != body.end() && it->value().is_bool()) update = it->value().get_bool();
      fields["ensure_new"] = !update;
      json::object out;
      out["project"] = brief(project);
      out["experiment"] = create(org, "experiment", std::move(fields));
      return reply(out);
    }
    if (path == "/api/base_experiment/get_id" && method == "POST") {
      auto body = body_object(body_text);
      auto id = string_field(body, "id");
      if (id.empty()) throw api_error(400, "missing required field: id");
      auto exp = get(org, "experiment", id);
      if (!exp) throw api_error(404, "experiment " + id + " not found");
      auto base_id = string_field(*exp, "base_exp_id");
      std::optional<json::object> base;
      if (!base_id.empty()) base = get(org, "experiment", base_id);
      if (!base) throw api_error(400, "experiment " + id + " has no base experiment");
      json::object out;
      out["base_exp_id"] = base_id;
      out["base_exp_name"] = base->at("name");
      return reply(out);
    }
    if (path == "/api/experiment/get" && method == "POST") {
      // The SDK's init({open: true}): experiments of a project (by id or name) with a name; a list, maybe empty.
      auto body = body_object(body_text);
      check_org(body);
      if (auto on = string_field(body, "org_name"); !on.empty() && on != org.org_name)
        throw api_error(403, "org_name " + on + " is not the organization of this API key");
      std::string project_id = string_field(body, "project_id");
      if (project_id.empty()) {
        auto name = string_field(body, "project_name");
        if (name.empty()) throw api_error(400, "missing required field: project_id or project_name");
        auto ps = find(org, "project", "name", name);
        if (ps.empty()) return reply(json::array{});
        project_id = string_field(ps.front(), "id");
      }
      json::array out;
      const auto name = string_field(body, "experiment_name");
      const auto id = string_field(body, "experiment_id");
      for (auto& e : find(org, "experiment", "project_id", project_id))
        if ((name.empty() || string_field(e, "name") == name) && (id.empty() || string_field(e, "id") == id)) out.push_back(std::move(e));
      return reply(out);
    }
    if (path == "/api/ai_secret/get" && method == "POST") {
      // bt's staleness check: the org's AI secrets as a bare list, never with the secret value.
      auto body = body_object(body_text);
      check_org(body);
      json::array out;
      const auto name = string_field(body, "ai_secret_name");
      const auto type = string_field(body, "ai_secret_type");
      for (auto& a : find(org, "ai_secret", "org_id", org.org_id))
        if ((name.empty() || string_field(a, "name") == name) && (type.empty() || string_field(a, "type") == type))
          out.push_back(std::move(a));
      return reply(out);
    }
    if (path == "/api/self/get_object_info" && method == "POST") {
      auto body = body_object(body_text);
      auto type = string_field(body, "object_type");
      if (type.empty()) throw api_error(400, "missing required field: object_type");
      auto ids = body.find("object_ids");
      if (ids == body.end() || !ids->value().is_array()) throw api_error(400, "missing required field: object_ids");
      json::array out;
      for (const auto& v : ids->value().get_array()) {
        if (!v.is_string()) throw api_error(400, "object_ids must be strings");
        auto o = get(org, type, v.get_string());
        if (!o) continue;  // objects the key cannot see are left out
        json::object info;
        info["object_id"] = o->at("id");
        info["object_name"] = o->contains("name") ? o->at("name") : json::value(nullptr);
        auto project_id = string_field(*o, "project_id");
        info["parent_object_id"] = project_id.empty() ? json::value(nullptr) : json::value(project_id);
        if (!project_id.empty()) {
          auto p = get(org, "project", project_id);
          info["parent_object_name"] = p ? p->at("name") : json::value(nullptr);
        } else {
          info["parent_object_name"] = nullptr;
        }
        // parent_cols: the object's parents by type, each {id, name} (a dataset snapshot's dataset and project).
        json::object parents;
        if (auto ds = string_field(*o, "dataset_id"); !ds.empty() && type == "dataset_snapshot")
          if (auto d = get(org, "dataset", ds)) {
            parents["dataset"] = brief(*d);
            project_id = string_field(*d, "project_id");
          }
        if (!project_id.empty())
          if (auto p = get(org, "project", project_id)) parents["project"] = brief(*p);
        info["parent_cols"] = std::move(parents);
        info["permissions"] = json::array{"create", "read", "update", "delete"};
        out.push_back(std::move(info));
      }
      return reply(out);
    }
    return std::nullopt;
  } catch (const api_error& e) {
    return rest_reply{e.status(), json_error_body(e.what())};
  } catch (const stores::store_error& e) {
    return rest_reply{500, json_error_body(std::string("storage error: ") + e.what())};
  }
}

}  // namespace ferry::emulator
