// The deterministic organization generator behind `ferry seed` (see seed.hpp).
#include "emulator/seed.hpp"

#include "emulator/emulator.hpp"
#include "emulator/rest.hpp"
#include "engine/json_parse.hpp"
#include "engine/log.hpp"
#include "transports/http_client.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/http/field.hpp>
#include <boost/json.hpp>

#include <cstdio>
#include <memory>
#include <stdexcept>

namespace ferry::emulator {

namespace json = boost::json;
namespace asio = boost::asio;

std::string seed_summary::line() const {
  char mb[32];
  std::snprintf(mb, sizeof mb, "%.1f", static_cast<double>(bytes) / (1024.0 * 1024.0));
  return "ferry seed: org " + org_name + ": " + std::to_string(projects) + " projects, " +
         std::to_string(experiments) + " experiments, " + std::to_string(datasets) + " datasets, " +
         std::to_string(functions) + " functions, " + std::to_string(prompts) + " prompts, " + std::to_string(acls) +
         " acls, " + std::to_string(resources) + " resources; " +
         std::to_string(log_rows + experiment_rows + dataset_rows) + " events (" + std::to_string(log_rows) +
         " logs, " + std::to_string(experiment_rows) + " experiment, " + std::to_string(dataset_rows) + " dataset; " +
         std::to_string(merges) + " merges, " + std::to_string(deletes) + " deletes, " + std::to_string(attachments) +
         " attachments, " + mb + " MB) in " + std::to_string(requests) + " requests";
}

namespace {

/// A small deterministic generator (splitmix64): the same seed and call order give the same values.
class rng {
 public:
  explicit rng(std::uint64_t seed) : s_(seed) {}
  std::uint64_t next() {
    std::uint64_t z = (s_ += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  double uniform() { return static_cast<double>(next() >> 11) / 9007199254740992.0; }
  std::uint64_t range(std::uint64_t lo, std::uint64_t hi) { return lo + next() % (hi - lo + 1); }
  bool chance(double p) { return uniform() < p; }

 private:
  std::uint64_t s_;
};

constexpr const char* k_words[] = {
    "the",     "model",   "answer",  "question", "user",     "context", "retrieval", "tool",    "call",
    "result",  "summary", "policy",  "invoice",  "customer", "support", "ticket",    "refund",  "order",
    "shipping", "latency", "vector",  "search",   "document", "chunk",   "prompt",    "score",   "eval",
    "accuracy", "fact",    "source",  "citation", "draft",    "review",  "agent",     "plan",    "step",
    "memory",  "cache",   "request", "response", "json",     "schema",  "field",     "value",   "error",
};

std::string words(rng& r, std::size_t bytes) {
  std::string out;
  out.reserve(bytes + 16);
  while (out.size() < bytes) {
    if (!out.empty()) out += ' ';
    out += k_words[r.next() % (sizeof k_words / sizeof k_words[0])];
  }
  return out;
}

std::string hex(std::uint64_t v, int digits) {
  static const char* d = "0123456789abcdef";
  std::string s(static_cast<std::size_t>(digits), '0');
  for (int i = digits - 1; i >= 0; --i, v >>= 4) s[static_cast<std::size_t>(i)] = d[v & 15];
  return s;
}

std::string iso_time(std::uint64_t seconds_after_base) {
  // 2024-02-01T00:00:00Z + n seconds, formatted without the C library's locale/timezone.
  std::uint64_t t = 1706745600 + seconds_after_base;
  std::uint64_t days = t / 86400, rem = t % 86400;
  // civil-from-days (Howard Hinnant)
  std::int64_t z = static_cast<std::int64_t>(days) + 719468;
  std::int64_t era = z / 146097;
  std::int64_t doe = z - era * 146097;
  std::int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  std::int64_t y = yoe + era * 400;
  std::int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  std::int64_t mp = (5 * doy + 2) / 153;
  std::int64_t dd = doy - (153 * mp + 2) / 5 + 1;
  std::int64_t mm = mp < 10 ? mp + 3 : mp - 9;
  if (mm <= 2) ++y;
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04lld-%02lld-%02lldT%02llu:%02llu:%02llu.000Z", static_cast<long long>(y),
                static_cast<long long>(mm), static_cast<long long>(dd), static_cast<unsigned long long>(rem / 3600),
                static_cast<unsigned long long>((rem / 60) % 60), static_cast<unsigned long long>(rem % 60));
  return buf;
}

/// The request bodies of the generator, as plain functions (see the note in seeder).
namespace bodies {

using json::array;
using json::object;
using json::value;

std::string text(const object& o) { return json::serialize(o); }

std::string ai_secret(int i, std::string secret) {
  object b;
  b["name"] = i == 0 ? "OPENAI_API_KEY" : "ANTHROPIC_API_KEY";
  b["type"] = i == 0 ? "openai" : "anthropic";
  b["secret"] = std::move(secret);
  b["metadata"] = object{{"seeded", true}};
  return text(b);
}

std::string viewer_role() {
  return text(object{{"name", "seed-viewer"},
                     {"description", "read everything"},
                     {"member_permissions", array{object{{"permission", "read"}}}}});
}

std::string editor_role_named(std::string_view name, const std::string& viewer_id) {
  return text(object{{"name", name},
                     {"member_permissions",
                      array{object{{"permission", "update"}},
                            object{{"permission", "create"}, {"restrict_object_type", "dataset"}}}},
                     {"member_roles", array{value(viewer_id)}}});
}

std::string editor_role(const std::string& viewer_id) { return editor_role_named("seed-editor", viewer_id); }

std::string group(std::string_view name, const std::vector<std::string>& users, const std::vector<std::string>& groups) {
  array u, g;
  for (const auto& x : users) u.emplace_back(x);
  for (const auto& x : groups) g.emplace_back(x);
  return text(object{{"name", name}, {"member_users", u}, {"member_groups", g}});
}

std::string acl(std::string_view object_type, const std::string& object_id, int variant,
                const std::vector<std::string>& groups, const std::vector<std::string>& roles,
                const std::vector<std::string>& users) {
  object b{{"object_type", object_type}, {"object_id", object_id}};
  switch (variant % 3) {
    case 0:
      b["group_id"] = groups[0];
      b["permission"] = "read";
      break;
    case 1:
      b["group_id"] = groups[1];
      b["role_id"] = roles[1];
      break;
    default:
      if (users.empty()) {
        b["group_id"] = groups[0];
        b["role_id"] = roles[0];
      } else {
        b["user_id"] = users[0];
        b["permission"] = "update";
        b["restrict_object_type"] = object_type == "project" ? std::string("experiment") : std::string(object_type);
      }
  }
  return text(b);
}

std::string project(const std::string& name) { return text(object{{"name", name}, {"description", "seeded project " + name}}); }

std::string project_settings() { return text(object{{"settings", object{{"comparison_key", "input"}}}}); }

std::string project_tag(const std::string& pid, int i) {
  return text(object{{"project_id", pid}, {"name", i == 0 ? "needs-review" : "golden"}, {"color", i == 0 ? "red" : "green"}});
}

std::string span_iframe(const std::string& pid, const std::string& pname) {
  return text(object{{"project_id", pid},
                     {"name", "trace-viewer"},
                     {"url", "https://example.com/iframe/" + pname},
                     {"post_message", true}});
}

std::string env_var(const std::string& pid, std::string value) {
  return text(object{{"object_type", "project"}, {"object_id", pid}, {"name", "SEED_ENV"}, {"value", std::move(value)}});
}

std::string inline_code_function(const std::string& pid) {
  object data{{"type", "inline"},
              {"runtime_context", object{{"runtime", "node"}, {"version", "20"}}},
              {"code", "function handler({output, expected}) { return output === expected ? 1 : 0; }"}};
  return text(object{{"project_id", pid},
                     {"name", "Exact match"},
                     {"slug", "exact-match"},
                     {"function_type", "scorer"},
                     {"function_data", object{{"type", "code"}, {"data", data}}}});
}

object chat_prompt(std::string_view role, std::string_view content, std::string_view model) {
  return object{{"prompt", object{{"type", "chat"}, {"messages", array{object{{"role", role}, {"content", content}}}}}},
                {"options", object{{"model", model}}}};
}

std::string prompt_function(const std::string& pid) {
  return text(object{{"project_id", pid},
                     {"name", "Summarizer tool"},
                     {"slug", "summarizer-tool"},
                     {"function_type", "tool"},
                     {"function_data", object{{"type", "prompt"}}},
                     {"prompt_data", chat_prompt("system", "Summarize the input.", "gpt-4o-mini")}});
}

std::string parameters_function(const std::string& pid) {
  return text(object{{"project_id", pid},
                     {"name", "Eval parameters"},
                     {"slug", "eval-parameters"},
                     {"function_type", "parameters"},
                     {"function_data", object{{"type", "parameters"},
                                              {"data", object{{"temperature", 0.2}, {"top_k", 5}}},
                                              {"__schema", object{{"type", "object"}}}}}});
}

std::string bundle_function(const std::string& pid, std::string bundle_id) {
  object location{{"type", "experiment"}, {"eval_name", "e"}, {"position", object{{"type", "scorer"}, {"index", 0}}}};
  object data{{"type", "bundle"},
              {"bundle_id", std::move(bundle_id)},
              {"runtime_context", object{{"runtime", "python"}, {"version", "3.11"}}},
              {"location", location}};
  return text(object{{"project_id", pid},
                     {"name", "Bundled scorer"},
                     {"slug", "bundled-scorer"},
                     {"function_type", "scorer"},
                     {"function_data", object{{"type", "code"}, {"data", data}}}});
}

std::string prompt(const std::string& pid, int i, const std::string& tool_fn, const object* origin_prompt) {
  auto pd = chat_prompt("user", i == 0 ? "Answer: {{input}}" : "Answer briefly: {{input}}", "gpt-4o");
  pd["options"].as_object()["params"] = object{{"temperature", 0}};
  pd["tool_functions"] = array{object{{"type", "function"}, {"id", tool_fn}},
                               object{{"type", "global"}, {"name", "web_search"}}};
  if (origin_prompt)
    pd["origin"] = object{{"prompt_id", origin_prompt->at("id")},
                          {"project_id", pid},
                          {"prompt_version", origin_prompt->at("_xact_id")}};
  object b{{"project_id", pid},
           {"name", i == 0 ? "Answer question" : "Answer briefly"},
           {"slug", i == 0 ? "answer-question" : "answer-briefly"},
           {"prompt_data", pd}};
  if (i == 0) b["tags"] = array{"prod"};
  return text(b);
}

std::string slider_score(const std::string& pid) {
  return text(object{{"project_id", pid}, {"name", "Helpfulness"}, {"score_type", "slider"},
                     {"description", "0..1 helpfulness"}});
}

std::string online_score(const std::string& pid, const std::string& scorer_fn) {
  object online{{"sampling_rate", 0.5},
                {"apply_to_root_span", true},
                {"scorers", array{object{{"type", "function"}, {"id", scorer_fn}}}}};
  return text(object{{"project_id", pid}, {"name", "Online exact match"}, {"score_type", "online"},
                     {"config", object{{"online", online}}}});
}

std::string dataset(const std::string& pid, unsigned d) {
  return text(object{{"project_id", pid},
                     {"name", "seed-dataset-" + std::to_string(d)},
                     {"description", "seeded dataset"},
                     {"metadata", object{{"source", "seed"}}}});
}

std::string experiment(const std::string& pid, unsigned e, const object& params_fn, const std::string& base,
                       const std::string& dataset_id) {
  object b{{"project_id", pid},
           {"name", "seed-experiment-" + std::to_string(e)},
           {"metadata", object{{"model", e % 2 ? "gpt-4o" : "gpt-4o-mini"}}},
           {"tags", array{"seed"}},
           {"parameters_id", params_fn.at("id")},
           {"parameters_version", params_fn.at("_xact_id")}};
  if (!base.empty()) b["base_exp_id"] = base;
  if (!dataset_id.empty()) b["dataset_id"] = dataset_id;
  return text(b);
}

std::string view(std::string_view object_type, const std::string& object_id, int i) {
  object b{{"object_type", object_type}, {"object_id", object_id}};
  b["view_type"] = object_type == "project" ? std::string("logs") : std::string(object_type);
  b["name"] = i == 0 ? "Errors only" : i == 1 ? "Low scores" : "Recent rows";
  if (i == 0) b["view_data"] = object{{"search", object{{"filter", array{"error IS NOT NULL"}}}}};
  return text(b);
}

std::string automation(const std::string& pid) {
  object config{{"event_type", "logs"},
                {"btql_filter", "error IS NOT NULL"},
                {"interval_seconds", 3600},
                {"action", object{{"type", "webhook"}, {"url", "https://example.com/hook"}}}};
  return text(object{{"project_id", pid}, {"name", "Alert on errors"},
                     {"description", "webhook when error rate rises"}, {"config", config}});
}

std::string attachment_request(const std::string& key, const std::string& filename, const std::string& org_id) {
  return text(object{{"key", key}, {"filename", filename}, {"content_type", "text/plain"}, {"org_id", org_id}});
}

std::string attachment_done(const std::string& key, const std::string& org_id) {
  return text(object{{"key", key}, {"org_id", org_id}, {"status", object{{"upload_status", "done"}}}});
}

object attachment_reference(const std::string& key, const std::string& filename) {
  return object{{"type", "braintrust_attachment"}, {"filename", filename}, {"content_type", "text/plain"}, {"key", key}};
}

object dataset_merge(const std::string& id, const std::string& did) {
  return object{{"id", id}, {"dataset_id", did}, {"_is_merge", true}, {"metadata", object{{"split", "holdout"}}}};
}

object dataset_delete(const std::string& id, const std::string& did) {
  return object{{"id", id}, {"dataset_id", did}, {"_object_delete", true}};
}

// ---- the cross-reference situations (issue 13): cycles, function graphs, ids inside blobs ----

std::string named_role(std::string_view name) {
  return text(object{{"name", name}, {"member_permissions", array{object{{"permission", "read"}}}}});
}

/// PATCH body closing a membership cycle: `field` is add_member_roles or add_member_groups.
std::string add_member(std::string_view field, const std::string& id) { return text(object{{field, array{value(id)}}}); }

std::string environment(std::string_view slug) {
  return text(object{{"name", slug == "production" ? "Production" : "Staging"}, {"slug", slug}});
}

std::string environment_assignment(const object& versioned) {
  return text(object{{"object_version", versioned.at("_xact_id")}});
}

std::string mcp_server(const std::string& pid, const std::string& pname) {
  return text(object{{"project_id", pid},
                     {"name", "seed-mcp"},
                     {"description", "tools for " + pname},
                     {"url", "https://example.com/mcp/" + pname}});
}

/// A prompt-type function calling another function (the summarizer tool) as its tool.
std::string planner_function(const std::string& pid, const std::string& tool_fn) {
  auto pd = chat_prompt("system", "Plan the steps, then call the summarizer.", "gpt-4o-mini");
  pd["tool_functions"] = array{object{{"type", "function"}, {"id", tool_fn}}};
  return text(object{{"project_id", pid},
                     {"name", "Planner tool"},
                     {"slug", "planner-tool"},
                     {"function_type", "tool"},
                     {"function_data", object{{"type", "prompt"}}},
                     {"prompt_data", pd}});
}

/// A graph whose nodes are two functions of the project (input -> planner -> scorer -> output).
std::string graph_function(const std::string& pid, const std::string& first_fn, const std::string& second_fn) {
  object nodes{{"in", object{{"type", "input"}}},
               {"plan", object{{"type", "function"}, {"function", object{{"function_id", first_fn}}}}},
               {"score", object{{"type", "function"}, {"function", object{{"function_id", second_fn}}}}},
               {"out", object{{"type", "output"}}}};
  auto edge = [](const char* from, const char* to) {
    return object{{"source", object{{"node", from}, {"variable", "output"}}},
                  {"target", object{{"node", to}, {"variable", "input"}}},
                  {"purpose", "data"}};
  };
  object edges{{"e1", edge("in", "plan")}, {"e2", edge("plan", "score")}, {"e3", edge("score", "out")}};
  return text(object{{"project_id", pid},
                     {"name", "Plan and score"},
                     {"slug", "plan-and-score"},
                     {"function_data", object{{"type", "graph"}, {"nodes", nodes}, {"edges", edges}}}});
}

/// A facet whose preprocessor is a function of the project.
std::string facet_function(const std::string& pid, const std::string& preprocessor_fn) {
  return text(object{{"project_id", pid},
                     {"name", "Topic facet"},
                     {"slug", "topic-facet"},
                     {"function_type", "facet"},
                     {"function_data", object{{"type", "facet"},
                                              {"preprocessor", object{{"type", "function"}, {"id", preprocessor_fn}}},
                                              {"prompt", "Name the topic of this conversation."},
                                              {"model", "gpt-4o-mini"}}}});
}

/// A prompt of one project whose tool function lives in another project.
std::string cross_project_prompt(const std::string& pid, const std::string& tool_fn) {
  auto pd = chat_prompt("user", "Answer with the other team's tool: {{input}}", "gpt-4o");
  pd["tool_functions"] = array{object{{"type", "function"}, {"id", tool_fn}}};
  return text(object{{"project_id", pid}, {"name", "Cross-project answer"}, {"slug", "cross-project-answer"},
                     {"prompt_data", pd}});
}

/// A saved view with source ids inside `options` and inside a `view_data` filter.
std::string view_with_ids(const std::string& pid, const std::string& experiment_id) {
  object options{{"projectId", pid}, {"viewType", "experiments"}, {"columnOrder", array{"name", "created"}}};
  object search{{"filter", array{value("experiment_id = '" + experiment_id + "'")}},
                {"match", array{value("project_id = '" + pid + "'")}}};
  return text(object{{"object_type", "project"},
                     {"object_id", pid},
                     {"view_type", "experiments"},
                     {"name", "Against the baseline"},
                     {"options", options},
                     {"view_data", object{{"search", search}}}});
}

/// An organization-level view (over the projects list) whose filter names a project by id.
std::string org_view(const std::string& org_id, const std::string& pid) {
  object search{{"filter", array{value("id = '" + pid + "'")}}};
  return text(object{{"object_type", "organization"},
                     {"object_id", org_id},
                     {"view_type", "projects"},
                     {"name", "First seed project"},
                     {"options", object{{"columnOrder", array{"name", "created"}}}},
                     {"view_data", object{{"search", search}}}});
}

std::string project_settings_with_baseline(const std::string& baseline_experiment_id) {
  return text(object{{"settings", object{{"comparison_key", "input"}, {"baseline_experiment_id", baseline_experiment_id}}}});
}

std::string experiment_dataset(const std::string& dataset_id) { return text(object{{"dataset_id", dataset_id}}); }

/// A snapshot of a dataset at `xact_id` (its newest row version: the seeded rows).
std::string dataset_snapshot(const std::string& dataset_id, const value& xact_id) {
  return text(object{{"dataset_id", dataset_id}, {"name", "seed-snapshot"}, {"description", "the seeded rows"},
                     {"xact_id", xact_id}});
}

}  // namespace bodies

/// The generator's state: transport, counters, the id of things it made.
/// A 413 from the API: the request body is above its payload limit (the caller splits the batch).
struct payload_too_large : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class seeder {
 public:
  seeder(seed_transport t, seed_options o) : t_(std::move(t)), o_(std::move(o)), r_(o_.seed) {}

  asio::awaitable<seed_summary> run() {
    auto login = co_await call("POST", "/api/apikey/login", "");
    const auto& info = login.at("org_info").as_array().at(0).as_object();
    org_id_ = std::string(info.at("id").as_string());
    sum_.org_name = std::string(info.at("name").as_string());
    auto users = co_await call("GET", "/v1/user?limit=10", "");
    for (const auto& u : users.at("objects").as_array()) user_ids_.emplace_back(u.at("id").as_string());

    co_await org_resources();
    for (unsigned p = 0; p < o_.projects; ++p) co_await project(p);
    co_await cross_project();
    co_return sum_;
  }

 private:
  // ---- HTTP ----
  asio::awaitable<json::value> call(std::string method, std::string target, std::string body, bool auth = true) {
    for (int attempt = 1;; ++attempt) {
      ++sum_.requests;
      auto res = co_await t_(method, target, body, auth);
      if (res.status >= 200 && res.status < 300) {
        if (res.body.empty()) co_return json::value();
        boost::system::error_code ec;
        auto v = ferry::engine::parse_json(res.body, ec);
        co_return ec ? json::value(res.body) : v;
      }
      const bool retryable = res.status == 0 || res.status == 429 || res.status >= 500;
      if (res.status == 413) throw payload_too_large(res.body.substr(0, 300));
      if (!retryable || attempt >= 6)
        throw std::runtime_error("seed: " + method + " " + target.substr(0, target.find('?')) + " returned " +
                                 std::to_string(res.status) + ": " + res.body.substr(0, 300));
      // Bounded: at most 6 attempts, each wait the larger of a linear backoff and the server's Retry-After,
      // capped at 30 s (a throttled deployment is waited for, a dead one fails in well under 3 minutes).
      asio::steady_timer timer(co_await asio::this_coro::executor);
      timer.expires_after(std::min(std::max(std::chrono::milliseconds(50 * attempt), res.retry_after),
                                   std::chrono::milliseconds(30'000)));
      co_await timer.async_wait(asio::use_awaitable);
    }
  }

  asio::awaitable<json::object> create(std::string_view type, std::string body) {
    auto v = co_await call("POST", "/v1/" + std::string(type), std::move(body));
    if (!v.is_object() || !v.as_object().contains("id"))
      throw std::runtime_error("seed: POST /v1/" + std::string(type) + " returned no id");
    ++sum_.resources;
    co_return v.as_object();
  }

  static std::string id_of(const json::object& o) { return std::string(o.at("id").as_string()); }

  std::string uuid(std::string_view scope, std::uint64_t n) const { return derived_uuid(o_.seed, scope, n); }

  // ---- org level ----
  // Request bodies are built by plain functions (bodies::*): g++ 12 rejects braced lists of string
  // literals inside coroutines ("array used as initializer").
  asio::awaitable<void> org_resources() {
    for (int i = 0; i < 2; ++i) co_await create("ai_secret", bodies::ai_secret(i, "sk-seed-" + hex(r_.next(), 16)));
    auto viewer = co_await create("role", bodies::viewer_role());
    auto editor = co_await create("role", bodies::editor_role(id_of(viewer)));
    roles_.push_back(id_of(viewer));
    roles_.push_back(id_of(editor));
    const std::vector<std::string> none;
    auto readers = co_await create("group", bodies::group("seed-readers", user_ids_, none));
    groups_.push_back(id_of(readers));
    auto leads = co_await create("group", bodies::group("seed-leads", none, groups_));
    groups_.push_back(id_of(leads));
    co_await membership_cycles();
    for (const char* slug : {"production", "staging"}) co_await call("POST", "/environment", bodies::environment(slug));
  }

  /// Two roles and two groups that contain each other (created, then the cycle closed by a PATCH).
  asio::awaitable<void> membership_cycles() {
    auto ra = co_await create("role", bodies::named_role("seed-cycle-role-a"));
    auto rb = co_await create("role", bodies::editor_role_named("seed-cycle-role-b", id_of(ra)));
    co_await call("PATCH", "/v1/role/" + id_of(ra), bodies::add_member("add_member_roles", id_of(rb)));
    const std::vector<std::string> none;
    auto ga = co_await create("group", bodies::group("seed-cycle-group-a", none, none));
    const std::vector<std::string> inner(1, id_of(ga));
    auto gb = co_await create("group", bodies::group("seed-cycle-group-b", user_ids_, inner));
    co_await call("PATCH", "/v1/group/" + id_of(ga), bodies::add_member("add_member_groups", id_of(gb)));
  }

  asio::awaitable<void> acl(std::string_view object_type, const std::string& object_id, int variant) {
    co_await create("acl", bodies::acl(object_type, object_id, variant, groups_, roles_, user_ids_));
    ++sum_.acls;
  }

  // ---- per project ----
  asio::awaitable<void> project(unsigned p) {
    const std::string pname = "seed-project-" + std::to_string(p);
    auto proj = co_await create("project", bodies::project(pname));
    const auto pid = id_of(proj);
    ++sum_.projects;
    co_await call("PATCH", "/v1/project/" + pid, bodies::project_settings());
    co_await acl("project", pid, static_cast<int>(p));

    for (int i = 0; i < 2; ++i) co_await create("project_tag", bodies::project_tag(pid, i));
    co_await create("span_iframe", bodies::span_iframe(pid, pname));
    co_await create("env_var", bodies::env_var(pid, "value-" + hex(r_.next(), 8)));
    co_await create("mcp_server", bodies::mcp_server(pid, pname));

    // Functions: inline code, prompt-type, parameters, and a code bundle (not re-creatable).
    auto inline_fn = co_await create("function", bodies::inline_code_function(pid));
    auto prompt_fn = co_await create("function", bodies::prompt_function(pid));
    auto params_fn = co_await create("function", bodies::parameters_function(pid));
    co_await create("function", bodies::bundle_function(pid, "bundle-" + hex(r_.next(), 12)));
    // Functions calling functions: a prompt-type tool with a tool, a graph over two functions, a facet.
    auto planner_fn = co_await create("function", bodies::planner_function(pid, id_of(prompt_fn)));
    co_await create("function", bodies::graph_function(pid, id_of(planner_fn), id_of(inline_fn)));
    co_await create("function", bodies::facet_function(pid, id_of(inline_fn)));

    // Prompts: tool_functions reference functions; the second prompt's origin is the first.
    auto p1 = co_await create("prompt", bodies::prompt(pid, 0, id_of(prompt_fn), nullptr));
    co_await create("prompt", bodies::prompt(pid, 1, id_of(prompt_fn), &p1));
    co_await call("PUT", "/environment-object/prompt/" + id_of(p1) + "/production", bodies::environment_assignment(p1));
    // A prompt IS a function: the counts are what /v1/function (7 + 2 prompts) and /v1/prompt (2 + the
    // two prompt-type functions) list.
    sum_.functions += 9;
    sum_.prompts += 4;

    co_await create("project_score", bodies::slider_score(pid));
    co_await create("project_score", bodies::online_score(pid, id_of(inline_fn)));

    // Datasets with rows.
    std::vector<std::string> dataset_ids;
    for (unsigned d = 0; d < o_.datasets_per_project; ++d) {
      auto ds = co_await create("dataset", bodies::dataset(pid, d));
      dataset_ids.push_back(id_of(ds));
      ++sum_.datasets;
      co_await acl("dataset", dataset_ids.back(), static_cast<int>(d + 1));
      co_await dataset_rows(dataset_ids.back());
    }
    if (!dataset_ids.empty() && o_.events_per_dataset > 0) co_await snapshot(dataset_ids.front());

    // Experiments: a base_exp_id chain, each linked to a dataset and to the parameters function; the chain
    // of a project after the first starts at the previous project's last experiment (a cross-project base).
    std::string prev = projects_.empty() ? std::string() : projects_.back().last_experiment;
    std::vector<std::string> experiment_ids;
    for (unsigned e = 0; e < o_.experiments_per_project; ++e) {
      const std::string dataset_id = dataset_ids.empty() ? std::string() : dataset_ids[e % dataset_ids.size()];
      auto ex = co_await create("experiment", bodies::experiment(pid, e, params_fn, prev, dataset_id));
      prev = id_of(ex);
      experiment_ids.push_back(prev);
      ++sum_.experiments;
      co_await acl("experiment", prev, static_cast<int>(e));
      co_await experiment_rows(prev);
    }

    if (!experiment_ids.empty())
      co_await call("PATCH", "/v1/project/" + pid, bodies::project_settings_with_baseline(experiment_ids.front()));

    // Views on the project, an experiment and a dataset (one with ids in its options and filters); one automation.
    co_await create("view", bodies::view("project", pid, 0));
    if (!experiment_ids.empty()) co_await create("view", bodies::view_with_ids(pid, experiment_ids.front()));
    if (!experiment_ids.empty()) co_await create("view", bodies::view("experiment", experiment_ids.front(), 1));
    if (!dataset_ids.empty()) co_await create("view", bodies::view("dataset", dataset_ids.front(), 2));
    co_await create("project_automation", bodies::automation(pid));
    projects_.push_back({pid, id_of(prompt_fn), experiment_ids.empty() ? std::string() : experiment_ids.front(),
                         experiment_ids.empty() ? std::string() : experiment_ids.back(),
                         dataset_ids.empty() ? std::string() : dataset_ids.front()});

    co_await log_rows(pid);
  }

  /// A snapshot of the dataset at its newest row version.
  asio::awaitable<void> snapshot(const std::string& dataset_id) {
    auto page = co_await call("GET", "/v1/dataset/" + dataset_id + "/fetch?limit=1", "");
    const auto& events = page.at("events").as_array();
    if (events.empty()) co_return;
    co_await create("dataset_snapshot", bodies::dataset_snapshot(dataset_id, events.front().at("_xact_id")));
  }

  /// References to objects of a project seeded later: the first project's first experiment takes the last
  /// project's first dataset, and a prompt of the first project calls the last project's summarizer tool.
  asio::awaitable<void> cross_project() {
    if (projects_.empty()) co_return;
    const auto &first = projects_.front(), &last = projects_.back();
    if (!first.first_experiment.empty() && !last.first_dataset.empty())
      co_await call("PATCH", "/v1/experiment/" + first.first_experiment, bodies::experiment_dataset(last.first_dataset));
    co_await create("prompt", bodies::cross_project_prompt(first.id, last.tool_function));
    ++sum_.functions;
    ++sum_.prompts;
    co_await create("view", bodies::org_view(org_id_, first.id));
  }

  // ---- events ----
  struct batch {
    std::vector<std::string> rows;  // serialized rows, in order
    std::size_t bytes = 0;          // sum of the rows' sizes
  };

  asio::awaitable<void> flush(batch& b) {
    if (b.rows.empty()) co_return;
    co_await send_rows(b.rows, 0, b.rows.size());
    b.rows.clear();
    b.bytes = 0;
  }

  /// POSTs rows [lo, hi) to /logs3; a 413 (the API's payload limit is below batch_bytes) halves the
  /// range until it fits. A single row above the limit is an error naming its size.
  asio::awaitable<void> send_rows(const std::vector<std::string>& rows, std::size_t lo, std::size_t hi) {
    std::string payload = "{\"rows\":[";
    for (std::size_t i = lo; i < hi; ++i) {
      if (i > lo) payload += ',';
      payload += rows[i];
    }
    payload += "],\"api_version\":2}";
    const std::size_t size = payload.size();
    bool too_large = false;
    try {
      co_await call("POST", "/logs3", std::move(payload));
      sum_.bytes += size;
    } catch (const payload_too_large& e) {
      if (hi - lo < 2)
        throw std::runtime_error("seed: a row of " + std::to_string(rows[lo].size()) +
                                 " bytes is above the API's /logs3 payload limit (" + e.what() + ")");
      too_large = true;  // co_await is not allowed in a handler: split below
    }
    if (too_large) {
      const std::size_t mid = lo + (hi - lo) / 2;
      co_await send_rows(rows, lo, mid);
      co_await send_rows(rows, mid, hi);
    }
  }

  asio::awaitable<void> add(batch& b, const json::object& row) {
    auto text = json::serialize(row);
    if (!b.rows.empty() && (b.rows.size() >= o_.batch_rows || b.bytes + text.size() + 1 > o_.batch_bytes))
      co_await flush(b);
    b.bytes += text.size() + (b.rows.empty() ? 0 : 1);
    b.rows.push_back(std::move(text));
  }

  std::size_t payload_size() {
    if (r_.chance(o_.large_payload_ratio)) return r_.chance(0.1) ? r_.range(1100, 1400) * 1024 : r_.range(100, 300) * 1024;
    return r_.range(o_.payload_min, o_.payload_max);
  }

  std::string created(std::uint64_t n) { return iso_time(n); }

  asio::awaitable<json::object> attachment(std::uint64_t n) {
    const auto key = uuid("attachment", n);
    const std::string filename = "file-" + std::to_string(n) + ".txt";
    auto up = co_await call("POST", "/attachment", bodies::attachment_request(key, filename, org_id_));
    const std::string url(up.at("signedUrl").as_string());
    co_await call("PUT", url, "attachment " + std::to_string(n) + ": " + words(r_, 64), false);
    co_await call("POST", "/attachment/status", bodies::attachment_done(key, org_id_));
    ++sum_.attachments;
    co_return bodies::attachment_reference(key, filename);
  }

  asio::awaitable<void> log_rows(const std::string& pid) {
    batch b;
    std::vector<json::object> later;  // merges and deletes go after the rows they touch
    std::uint64_t n = 0;
    const std::string scope = "log:" + pid;
    while (n < o_.events_per_project) {
      const auto trace = n;
      const auto root_span = hex(r_.next(), 16) + hex(r_.next(), 16);
      const auto children = std::min<std::uint64_t>(r_.range(0, 4), o_.events_per_project - n - 1);
      std::string root_span_id;
      for (std::uint64_t c = 0; c <= children; ++c, ++n) {
        const auto span_id = hex(r_.next(), 16);
        json::object row{{"id", uuid(scope, n)},
                         {"project_id", pid},
                         {"log_id", "g"},
                         {"created", created(trace * 10 + c)},
                         {"span_id", span_id},
                         {"root_span_id", root_span}};
        if (c == 0) {
          root_span_id = span_id;
        } else {
          row["span_parents"] = json::array{json::value(root_span_id)};
        }
        row["span_attributes"] = json::object{{"name", c == 0 ? "request" : "llm-call"}, {"type", c == 0 ? "task" : "llm"}};
        row["input"] = json::object{{"question", words(r_, payload_size() / 2)}};
        row["output"] = words(r_, payload_size() / 2);
        row["metadata"] = json::object{{"user", "u" + std::to_string(r_.range(1, 50))}, {"trace", trace}};
        row["metrics"] = json::object{{"start", 1706745600 + trace}, {"end", 1706745601 + trace},
                                      {"tokens", r_.range(10, 2000)}};
        if (r_.chance(0.2)) row["tags"] = json::array{"needs-review"};
        if (r_.chance(o_.attachment_ratio)) row["input"].as_object()["attachment"] = co_await attachment(n);
        const auto id = std::string(row.at("id").as_string());
        co_await add(b, row);
        ++sum_.log_rows;
        if (r_.chance(0.1)) {
          later.push_back(json::object{{"id", id}, {"project_id", pid}, {"log_id", "g"}, {"_is_merge", true},
                                       {"scores", json::object{{"Helpfulness", r_.uniform()}}},
                                       {"metadata", json::object{{"reviewed", true}}}});
        } else if (r_.chance(0.005)) {
          later.push_back(json::object{{"id", id}, {"project_id", pid}, {"log_id", "g"}, {"_object_delete", true}});
        }
      }
    }
    co_await flush(b);
    for (const auto& row : later) {
      co_await add(b, row);
      ++sum_.log_rows;
      ++(row.contains("_is_merge") ? sum_.merges : sum_.deletes);
    }
    co_await flush(b);
  }

  asio::awaitable<void> experiment_rows(const std::string& eid) {
    batch b;
    const std::string scope = "exp:" + eid;
    for (std::uint64_t n = 0; n < o_.events_per_experiment; ++n) {
      const auto span = hex(r_.next(), 16);
      json::object row{{"id", uuid(scope, n)},
                       {"experiment_id", eid},
                       {"created", created(100000 + n)},
                       {"span_id", span},
                       {"root_span_id", span},
                       {"input", words(r_, payload_size() / 3)},
                       {"output", words(r_, payload_size() / 3)},
                       {"expected", words(r_, 80)},
                       {"scores", json::object{{"Exact match", r_.chance(0.5) ? 1.0 : 0.0},
                                               {"Helpfulness", r_.uniform()}}},
                       {"metrics", json::object{{"start", 1706745600 + n}, {"end", 1706745602 + n},
                                                {"prompt_tokens", r_.range(10, 500)},
                                                {"completion_tokens", r_.range(10, 500)}}},
                       {"span_attributes", json::object{{"name", "eval"}, {"type", "eval"}}}};
      co_await add(b, row);
      ++sum_.experiment_rows;
    }
    co_await flush(b);
  }

  asio::awaitable<void> dataset_rows(const std::string& did) {
    batch b;
    const std::string scope = "ds:" + did;
    for (std::uint64_t n = 0; n < o_.events_per_dataset; ++n) {
      json::object row{{"id", uuid(scope, n)},
                       {"dataset_id", did},
                       {"created", created(200000 + n)},
                       {"input", json::object{{"question", words(r_, payload_size() / 2)}}},
                       {"expected", words(r_, 120)},
                       {"metadata", json::object{{"split", n % 5 == 0 ? "test" : "train"}}}};
      if (r_.chance(0.3)) row["tags"] = json::array{"golden"};
      co_await add(b, row);
      ++sum_.dataset_rows;
    }
    co_await flush(b);
    if (o_.events_per_dataset > 2) {
      // One update and one delete, as SDK users do.
      co_await add(b, bodies::dataset_merge(uuid(scope, 0), did));
      co_await add(b, bodies::dataset_delete(uuid(scope, 1), did));
      sum_.dataset_rows += 2;
      ++sum_.merges;
      ++sum_.deletes;
      co_await flush(b);
    }
  }

  seed_transport t_;
  seed_options o_;
  rng r_;
  seed_summary sum_;
  std::string org_id_;
  std::vector<std::string> user_ids_, roles_, groups_;
  struct seeded_project {
    std::string id, tool_function, first_experiment, last_experiment, first_dataset;
  };
  std::vector<seeded_project> projects_;  // in creation order, for the cross-project references
};

}  // namespace

asio::awaitable<seed_summary> seed_org(seed_transport transport, seed_options opts) {
  if (opts.batch_rows == 0) opts.batch_rows = 1;
  seeder s(std::move(transport), std::move(opts));
  co_return co_await s.run();
}

seed_transport inprocess_transport(emulator& emu, std::string api_key) {
  return [&emu, api_key](std::string method, std::string target, std::string body,
                         bool auth) -> asio::awaitable<seed_response> {
    // Absolute (signed) URLs are served by the same emulator: keep only the path and query.
    if (auto scheme = target.find("://"); scheme != std::string::npos) {
      auto slash = target.find('/', scheme + 3);
      target = slash == std::string::npos ? "/" : target.substr(slash);
    }
    transports::http_request req{boost::beast::http::string_to_verb(method), target, 11};
    if (auth) req.set(boost::beast::http::field::authorization, "Bearer " + api_key);
    req.set(boost::beast::http::field::content_type, "application/json");
    req.body() = std::move(body);
    req.prepare_payload();
    auto reply = co_await emu.handle(req);
    co_return seed_response{reply.response.result_int(), std::move(reply.response.body()), {}};
  };
}

seed_transport http_transport(transports::http_client& client, std::string api_key) {
  return [&client, api_key](std::string method, std::string target, std::string body,
                            bool auth) -> asio::awaitable<seed_response> {
    transports::http_request_spec spec;
    spec.verb = boost::beast::http::string_to_verb(method);
    spec.target = std::move(target);
    if (auth) spec.headers.emplace_back("Authorization", "Bearer " + api_key);
    spec.headers.emplace_back("Content-Type", "application/json");
    spec.body = std::move(body);
    auto r = co_await client.send(spec);
    // Transport failures (no response) come back as status 0, which the generator retries and reports.
    std::chrono::milliseconds retry_after{0};
    if (r.retry_after) retry_after = std::chrono::duration_cast<std::chrono::milliseconds>(*r.retry_after);
    co_return seed_response{r.status, r.status == 0 ? r.error : std::move(r.body), retry_after};
  };
}

int run_seed(const seed_options& opts) {
  if (opts.url.empty()) {
    std::fprintf(stderr, "ferry seed: missing --url (the API to fill, e.g. http://127.0.0.1:8000)\n");
    return 2;
  }
  if (opts.api_key.empty()) {
    std::fprintf(stderr, "ferry seed: missing API key: set FERRY_SEED_API_KEY or BT_SOURCE_API_KEY\n");
    return 2;
  }
  if (opts.payload_min > opts.payload_max) {
    std::fprintf(stderr, "ferry seed: --payload-min (%llu) is above --payload-max (%llu)\n",
                 static_cast<unsigned long long>(opts.payload_min), static_cast<unsigned long long>(opts.payload_max));
    return 2;
  }
  if (opts.attachment_ratio < 0 || opts.attachment_ratio > 1 || opts.large_payload_ratio < 0 ||
      opts.large_payload_ratio > 1) {
    std::fprintf(stderr, "ferry seed: --attachment-ratio and --large-ratio must be between 0 and 1\n");
    return 2;
  }
  engine::register_secret(opts.api_key);
  asio::io_context ioc;
  std::unique_ptr<transports::http_client> client;
  try {
    transports::http_client_config cfg;
    cfg.base_url = opts.url;
    cfg.proxy = transports::proxy_config::from_env();
    cfg.ca_file = opts.ca_file;
    cfg.insecure = opts.insecure;
    // Each request is bounded (the largest is one /logs3 batch of batch_bytes); with the retry bound in
    // seeder::call, a seed against an API that stops answering ends with an error instead of hanging.
    cfg.read_timeout = std::chrono::seconds(60);
    cfg.request_timeout = std::chrono::seconds(120);
    client = std::make_unique<transports::http_client>(ioc.get_executor(), cfg);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ferry seed: %s\n", e.what());
    return 2;
  }
  std::optional<seed_summary> summary;
  std::string error;
  asio::co_spawn(ioc, seed_org(http_transport(*client, opts.api_key), opts),
                 [&](std::exception_ptr e, seed_summary s) {
                   if (e) {
                     try {
                       std::rethrow_exception(e);
                     } catch (const std::exception& ex) {
                       error = ex.what();
                     }
                   } else {
                     summary = std::move(s);
                   }
                 });
  ioc.run();
  if (!summary) {
    std::fprintf(stderr, "ferry seed: %s\n", engine::redact(error.empty() ? "failed" : error).c_str());
    return 1;
  }
  std::printf("%s\n", summary->line().c_str());
  std::fflush(stdout);
  return 0;
}

}  // namespace ferry::emulator
