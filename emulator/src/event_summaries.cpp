// Calls that join the event side with the REST resources: experiment and dataset summaries
// (/v1/{experiment,dataset}/{id}/summarize, /experiment-comparison2). The SDK's dataset snapshot calls
// (/api/dataset_snapshot/*) are served by rest_store::handle_sdk over the /v1/dataset_snapshot objects.
//
// Score and metric summaries (stricter reading of what the service documents):
//  * rows are grouped by trace (root_span_id); a trace's score is the mean of that score over its spans that
//    carry it as a number; the experiment's score is the mean over the traces that have it;
//  * a trace's metrics are its root span's numeric `metrics` (and `duration` = end - start); the
//    experiment's metric is the mean over traces;
//  * against a comparison experiment, traces are matched by the root span's `input`; `diff` is this
//    experiment's mean minus the comparison's, `improvements`/`regressions` count matched traces whose score
//    went up/down (for metrics, lower is better: down is an improvement);
//  * the comparison is `comparison_experiment_id` (/summarize) or `base_experiment_id`
//    (/experiment-comparison2), else the experiment's `base_exp_id`, else (for /summarize only, as the
//    spec says) the newest other experiment of the project created before it.

#include "emulator/events.hpp"
#include "json_fields.hpp"

#include "emulator/rest.hpp"
#include "transports/http_util.hpp"
#include "engine/json_parse.hpp"

#include <boost/json.hpp>
#include <boost/url/parse.hpp>

#include <map>
#include <set>

namespace ferry::emulator {
namespace {

namespace json = boost::json;

struct reply_error {
  unsigned status;
  std::string message;
};

std::optional<double> number_of(const json::value& v) {
  if (v.is_int64()) return static_cast<double>(v.get_int64());
  if (v.is_uint64()) return static_cast<double>(v.get_uint64());
  if (v.is_double()) return v.get_double();
  return std::nullopt;
}

// Per trace: score name -> mean value, metric name -> value, and the match key (root input).
struct trace_values {
  std::string key;
  std::map<std::string, std::pair<double, int>> scores;  // sum, count
  std::map<std::string, double> metrics;
};

std::map<std::string, trace_values> traces_of(const std::vector<json::object>& rows) {
  std::map<std::string, trace_values> out;
  for (const auto& r : rows) {
    auto& t = out[string_field(r, "root_span_id")];
    if (const auto* s = r.if_contains("scores"); s && s->is_object())
      for (const auto& kv : s->get_object())
        if (auto n = number_of(kv.value())) {
          auto& [sum, count] = t.scores[std::string(kv.key())];
          sum += *n;
          ++count;
        }
    const auto* is_root = r.if_contains("is_root");
    if (!is_root || !is_root->is_bool() || !is_root->get_bool()) continue;
    const auto* input = r.if_contains("input");
    t.key = input ? json::serialize(*input) : "null";
    if (const auto* m = r.if_contains("metrics"); m && m->is_object()) {
      const auto& mo = m->get_object();
      for (const auto& kv : mo)
        if (auto n = number_of(kv.value()); n && kv.key() != "start" && kv.key() != "end") t.metrics[std::string(kv.key())] = *n;
      const auto* start = mo.if_contains("start");
      const auto* end = mo.if_contains("end");
      if (start && end && number_of(*start) && number_of(*end)) t.metrics["duration"] = *number_of(*end) - *number_of(*start);
    }
  }
  return out;
}

std::string unit_of(std::string_view metric) {
  if (metric.find("duration") != std::string_view::npos || metric == "time_to_first_token") return "s";
  if (metric.find("tokens") != std::string_view::npos) return "tok";
  return "";
}

// {scores, metrics} of `rows` against `base` (nullopt: no comparison).
json::object summarize_rows(const std::vector<json::object>& rows, const std::optional<std::vector<json::object>>& base) {
  const auto cur = traces_of(rows);
  std::map<std::string, trace_values> old;
  if (base) old = traces_of(*base);
  std::map<std::string, const trace_values*> old_by_key;
  for (const auto& [root, t] : old) old_by_key.emplace(t.key, &t);

  struct acc {
    double sum = 0;
    int n = 0;
    double base_sum = 0;
    int base_n = 0;
    std::int64_t up = 0, down = 0;
  };
  std::map<std::string, acc> scores, metrics;
  auto value_of = [](const trace_values& t, bool score, const std::string& name) -> std::optional<double> {
    if (score) {
      auto it = t.scores.find(name);
      if (it == t.scores.end()) return std::nullopt;
      return it->second.first / it->second.second;
    }
    auto it = t.metrics.find(name);
    return it == t.metrics.end() ? std::nullopt : std::optional<double>(it->second);
  };
  for (bool score : {true, false}) {
    auto& table = score ? scores : metrics;
    for (const auto& [root, t] : cur) {
      std::set<std::string> names;
      if (score) for (const auto& kv : t.scores) names.insert(kv.first);
      else for (const auto& kv : t.metrics) names.insert(kv.first);
      for (const auto& name : names) {
        const double v = *value_of(t, score, name);
        auto& a = table[name];
        a.sum += v;
        ++a.n;
        auto match = old_by_key.find(t.key);
        if (match == old_by_key.end()) continue;
        if (auto b = value_of(*match->second, score, name)) {
          if (v > *b) ++(score ? a.up : a.down);
          if (v < *b) ++(score ? a.down : a.up);
        }
      }
    }
    for (const auto& [root, t] : old)
      for (auto& [name, a] : table)
        if (auto b = value_of(t, score, name)) {
          a.base_sum += *b;
          ++a.base_n;
        }
  }
  json::object out_scores, out_metrics;
  for (bool score : {true, false}) {
    for (const auto& [name, a] : score ? scores : metrics) {
      json::object s;
      s["name"] = name;
      const double mean = a.sum / a.n;
      s[score ? "score" : "metric"] = mean;
      if (!score) s["unit"] = unit_of(name);
      if (a.base_n) s["diff"] = mean - a.base_sum / a.base_n;
      s["improvements"] = a.up;
      s["regressions"] = a.down;
      (score ? out_scores : out_metrics)[name] = std::move(s);
    }
  }
  return json::object{{"scores", std::move(out_scores)}, {"metrics", std::move(out_metrics)}};
}


class extras {
 public:
  extras(rest_store& rest, events_api& events, const org_identity& org, std::string base_url)
      : rest_(rest), events_(events), org_(org), base_url_(std::move(base_url)) {}

  json::object object(std::string_view type, std::string_view id) const {
    auto o = rest_.get(org_, type, id);
    if (!o) throw reply_error{404, std::string(type) + " " + std::string(id) + " not found"};
    return *o;
  }

  // The spec's fallback chain for the comparison experiment.
  std::optional<json::object> comparison_of(const json::object& exp, std::string_view explicit_id, bool newest_fallback) const {
    if (!explicit_id.empty()) return object("experiment", explicit_id);
    if (auto base = string_field(exp, "base_exp_id"); !base.empty())
      if (auto o = rest_.get(org_, "experiment", base)) return o;
    if (!newest_fallback) return std::nullopt;
    // Lists are newest first: the first experiment after this one in the list was created before it.
    auto list = rest_.handle("GET", "/v1/experiment?project_id=" + transports::percent_encode(string_field(exp, "project_id")), "", org_);
    if (!list || list->status != 200) return std::nullopt;
    const auto v = ferry::engine::parse_json(list->body);
    bool after = false;
    for (const auto& o : v.at("objects").as_array()) {
      if (after) return o.as_object();
      after = string_field(o.as_object(), "id") == string_field(exp, "id");
    }
    return std::nullopt;
  }

  json::object scores_of(std::string_view experiment_id, const std::optional<json::object>& comparison) const {
    std::optional<std::vector<json::object>> base;
    if (comparison) base = events_.current_rows("experiment", string_field(*comparison, "id"));
    return summarize_rows(events_.current_rows("experiment", experiment_id), base);
  }

  json::object summarize(std::string_view type, std::string_view id, boost::urls::params_view params) const {
    const auto obj = object(type, id);
    std::map<std::string, std::string> q;
    for (auto p : params) q[std::string(p.key)] = std::string(p.value);
    auto project = rest_.get(org_, "project", string_field(obj, "project_id"));
    const std::string project_name = project ? string_field(*project, "name") : std::string();
    const std::string project_url = base_url_ + "/app/" + transports::percent_encode(org_.org_name) + "/p/" + transports::percent_encode(project_name);
    json::object out;
    out["project_name"] = project_name;
    out["project_url"] = project_url;
    const std::string name = string_field(obj, "name");
    if (type == "dataset") {
      out["dataset_name"] = name;
      out["dataset_url"] = project_url + "/datasets/" + transports::percent_encode(name);
      if (q["summarize_data"] == "true")
        out["data_summary"] = json::object{{"total_records", events_.count_rows("dataset", id)}};
      return out;
    }
    out["experiment_name"] = name;
    out["experiment_url"] = project_url + "/experiments/" + transports::percent_encode(name);
    out["comparison_experiment_name"] = nullptr;
    if (q["summarize_scores"] != "true") return out;
    const auto comparison = comparison_of(obj, q["comparison_experiment_id"], /*newest_fallback=*/true);
    if (comparison) out["comparison_experiment_name"] = string_field(*comparison, "name");
    auto sm = scores_of(id, comparison);
    out["scores"] = std::move(sm["scores"]);
    out["metrics"] = std::move(sm["metrics"]);
    return out;
  }

  json::object comparison2(boost::urls::params_view params) const {
    std::string id, base_id;
    for (auto p : params) {
      if (p.key == "experiment_id") id = std::string(p.value);
      if (p.key == "base_experiment_id") base_id = std::string(p.value);
    }
    if (id.empty()) throw reply_error{400, "experiment-comparison2: missing experiment_id"};
    const auto exp = object("experiment", id);
    return scores_of(id, comparison_of(exp, base_id, /*newest_fallback=*/false));
  }


 private:
  rest_store& rest_;
  events_api& events_;
  const org_identity& org_;
  std::string base_url_;
};

}  // namespace

std::optional<rest_reply> serve_event_extras(rest_store& rest, events_api& events, std::string_view method,
                                             std::string_view target, const org_identity& org,
                                             const std::string& base_url) {
  // Cheap test first: every /logs3 and /btql request passes through here.
  const std::string_view raw_path = target.substr(0, target.find('?'));
  if (raw_path != "/experiment-comparison2" && !raw_path.ends_with("/summarize"))
    return std::nullopt;
  auto parsed = boost::urls::parse_origin_form(target);
  if (!parsed) return std::nullopt;
  const std::string path = parsed->path();
  const extras x(rest, events, org, base_url);
  try {
    if (path == "/experiment-comparison2") {
      if (method != "GET") return rest_reply{405, json_error_body("use GET for /experiment-comparison2")};
      return rest_reply{200, json::serialize(x.comparison2(parsed->params()))};
    }
    if (path.ends_with("/summarize") && method == "GET") {
      std::vector<std::string> segs;
      for (auto s : parsed->segments()) segs.emplace_back(s);
      if (segs.size() == 4 && segs[0] == "v1" && (segs[1] == "experiment" || segs[1] == "dataset"))
        return rest_reply{200, json::serialize(x.summarize(segs[1], segs[2], parsed->params()))};
    }
    return std::nullopt;
  } catch (const reply_error& e) {
    return rest_reply{e.status, json_error_body(e.message)};
  }
}

}  // namespace ferry::emulator
