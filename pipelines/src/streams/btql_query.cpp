#include "pipelines/streams/btql_query.hpp"

#include "engine/log.hpp"

namespace ferry::pipelines::streams {

std::string_view object_type_name(stream_kind k) {
  switch (k) {
    case stream_kind::project_logs: return "project_logs";
    case stream_kind::experiment: return "experiment";
    case stream_kind::dataset: return "dataset";
  }
  return "unknown";
}

std::string_view resource_name(stream_kind k) {
  switch (k) {
    case stream_kind::project_logs: return "logs";
    case stream_kind::experiment: return "experiment_events";
    case stream_kind::dataset: return "dataset_events";
  }
  return "unknown";
}

std::string btql_escape(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 2);
  for (char c : s) {
    if (c == '\\') out += "\\\\";
    else if (c == '\'') out += "\\'";
    else out += c;
  }
  return out;
}

namespace {

std::string quoted(std::string_view s) { return "'" + btql_escape(s) + "'"; }

std::string from_clause(stream_kind kind, const std::vector<std::string>& ids) {
  std::string out = "from: ";
  out += object_type_name(kind);
  out += '(';
  for (std::size_t i = 0; i < ids.size(); ++i) {
    if (i) out += ", ";
    out += quoted(ids[i]);
  }
  out += ") spans";
  return out;
}

std::string filter_line(const page_query& q) {
  std::vector<std::string> conds;
  if (q.created_after && !q.created_after->empty()) conds.push_back("created >= " + quoted(*q.created_after));
  if (q.created_before && !q.created_before->empty()) conds.push_back("created < " + quoted(*q.created_before));
  if (q.id_from && !q.id_from->empty()) conds.push_back("id >= " + quoted(*q.id_from));
  if (q.id_to && !q.id_to->empty()) conds.push_back("id < " + quoted(*q.id_to));
  if (q.after_key && !q.after_key->empty())
    conds.push_back(std::string("_pagination_key ") + (q.inclusive ? ">= " : "> ") + quoted(*q.after_key));
  if (conds.empty()) return {};
  std::string out = "filter: ";
  for (std::size_t i = 0; i < conds.size(); ++i) {
    if (i) out += " and ";
    out += conds[i];
  }
  return out;
}

std::string assemble(std::string_view select, const page_query& q) {
  std::string out = "select: ";
  out += select;
  out += '\n';
  out += from_clause(q.kind, q.object_ids);
  out += '\n';
  if (auto f = filter_line(q); !f.empty()) {
    out += f;
    out += '\n';
  }
  out += "sort: _pagination_key asc\nlimit: ";
  out += std::to_string(q.limit);
  return out;
}

}  // namespace

std::string build_page_query(const page_query& q) { return assemble("*", q); }

std::string build_key_query(const page_query& q) { return assemble("_pagination_key", q); }

std::string build_slice_probe_query(const page_query& q) {
  // With after_key: the rows after a slice's cursor only (a running slice's remaining rows).
  std::string out = "measures: count(1) as n, min(id) as id_min, max(id) as id_max\n";
  out += from_clause(q.kind, q.object_ids);
  if (auto f = filter_line(q); !f.empty()) {
    out += '\n';
    out += f;
  }
  return out;
}

std::string build_preflight_query(std::string_view project_id, std::string_view created_after) {
  page_query q;
  q.kind = stream_kind::project_logs;
  q.object_ids = {std::string(project_id)};
  q.created_after = std::string(created_after);
  q.limit = 1;
  return assemble("_pagination_key", q);
}

std::string build_btql_body(std::string_view query, std::string_view client_version) {
  std::string out = "{\"query\":\"";
  out += engine::json_escape(query);
  out += "\",\"fmt\":\"json\",\"api_version\":1,\"use_brainstore\":true,\"client_version\":\"";
  out += engine::json_escape(client_version);
  out += "\",\"query_timeout_seconds\":120}";
  return out;
}

}  // namespace ferry::pipelines::streams
