#pragma once
// The emulator's REST resources (/v1/project, /v1/dataset, ... /v1/acl, /v1/user, /v1/organization):
// one generic engine driven by a table of per-resource specs (create fields, required fields, PATCH
// fields, uniqueness key, list filters), plus the few documented special cases (role/group add_/remove_
// PATCH lists, project settings deep merge, ai_secret previews, ACL content identity, experiment
// ensure_new). Beast-free on purpose: requests come in as method + target + body, replies go out as
// status + JSON text, so this TU stays cheap to compile and the tests need no sockets.
//
// Storage (a kv_store, so `ferry serve --data DIR` survives restarts):
//   CF "rest_objects": <org>\0<type>\0<be64 seq>  -> the object's JSON (newest = highest seq)
//   CF "rest_ids":     <id>                       -> <org>\0<type>\0<be64 seq> + "\0L" (live) or "\0D" (deleted)
//   CF "rest_names":   <org>\0<type>\0<unique key> -> id
//   CF "rest_meta":    "seq"                      -> be64 of the last sequence number
// Deleted objects leave their id entry (marked deleted) so that a paginating client whose cursor id was
// deleted meanwhile still gets the next page.
//
// Thread-safety: every public method may be called from any thread; mutations serialize on one mutex
// (REST traffic is small next to events), reads go straight to the kv_store.

#include "stores/kv_store.hpp"

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace ferry::emulator {

/// An error that becomes an HTTP reply `{"error": message}` with `status`.
class api_error : public std::runtime_error {
 public:
  api_error(unsigned status, const std::string& message) : std::runtime_error(message), status_(status) {}
  unsigned status() const { return status_; }

 private:
  unsigned status_;
};

/// A reply of the REST layer: status and a JSON body.
struct rest_reply {
  unsigned status = 200;
  std::string body;
};

/// `{"error": "<message>"}` as JSON text.
std::string json_error_body(std::string_view message);

/// Minified JSON text of `v` with numbers spelled as a client wrote them where Boost.JSON would respell:
/// doubles in their shortest round-trip form (`0.5`, not `5E-1`), always with a `.` or exponent so they stay
/// doubles. Everything else as boost::json::serialize.
std::string to_json_text(const boost::json::value& v);

/// Who is calling: the organization of the API key and the user it acts as.
struct org_identity {
  std::string org_id;
  std::string org_name;
  std::string user_id;
};

/// Generates ids and timestamps. With a seed, ids are uuid-v4-shaped hashes of (seed, org, sequence)
/// and `created` is a logical clock, so two emulators fed the same requests hold byte-identical data;
/// without one, ids are random and `created` is the wall clock. Thread-safe (called under the store's lock).
class id_source {
 public:
  explicit id_source(std::optional<std::uint64_t> seed);
  /// A uuid v4 string derived from `scope` and `n` (deterministic mode) or random.
  std::string uuid(std::string_view scope, std::uint64_t n);
  /// ISO-8601 UTC with milliseconds and `Z` for sequence number `n`.
  std::string timestamp(std::uint64_t n) const;
  bool deterministic() const { return seed_.has_value(); }

 private:
  std::optional<std::uint64_t> seed_;
  std::uint64_t random_state_;
};

/// A uuid v4 string derived purely from (seed, scope, n): used by the seed generator too.
std::string derived_uuid(std::uint64_t seed, std::string_view scope, std::uint64_t n);
/// True when `s` has the 8-4-4-4-12 hex uuid shape.
bool is_uuid(std::string_view s);

struct rest_config {
  std::optional<std::uint64_t> id_seed;  // see id_source
  std::string base_url;                  // organization api_url/proxy_url
};

class rest_store {
 public:
  static std::vector<std::string> column_families();

  rest_store(stores::kv_store& store, rest_config cfg);

  /// The org id of an org name: `requested` when given, else the id this store assigned before (kept
  /// across restarts), else a new one (seeded or random) that is remembered.
  std::string resolve_org_id(std::string_view org_name, std::string_view requested);
  /// The id of the user an org's API keys act as (assigned once, remembered like org ids).
  std::string resolve_user_id(std::string_view org_id);
  /// Creates the organization record and its user (the API key's user) if they do not exist yet.
  void ensure_org(const org_identity& org);
  /// The URL the organization reports as api_url/proxy_url (set once the server's port is known).
  void set_base_url(std::string url);
  std::string base_url() const;

  /// Handles `/v1/<resource>...` targets (with query string) of the REST resources; nullopt for any other
  /// path (events, /v1/insert, /v1/<type>/<id>/fetch ...), which the caller routes elsewhere.
  /// Throws nothing: errors become {"error"} replies.
  std::optional<rest_reply> handle(std::string_view method, std::string_view target, std::string_view body,
                                   const org_identity& org);
  /// Handles the SDK's app-URL calls under /api/ (apikey/login, project|dataset|experiment/register,
  /// GET project?id=, base_experiment/get_id, self/get_object_info); nullopt for other paths.
  std::optional<rest_reply> handle_sdk(std::string_view method, std::string_view target, std::string_view body,
                                       const org_identity& org);

  /// The object_lookup of events_api: does `id` exist (not deleted) with `type` in `org_id`?
  bool object_exists(std::string_view type, std::string_view id, std::string_view org_id) const;

  // ---- typed operations used by the SDK's /api/* calls (throw api_error) ----
  /// POST semantics: creates, or returns the existing object unmodified when the uniqueness key exists.
  boost::json::object create(const org_identity& org, std::string_view type, boost::json::object fields);
  /// The live object `id` of `type` in the org, or nullopt.
  std::optional<boost::json::object> get(const org_identity& org, std::string_view type, std::string_view id) const;
  /// The live objects of `type` whose `field` equals `value`, newest first (without server-side secret fields).
  std::vector<boost::json::object> find(const org_identity& org, std::string_view type, std::string_view field,
                                        std::string_view value) const;
  /// POST /insert-functions (see rest.cpp); throws api_error.
  boost::json::object insert_functions(const org_identity& org, std::string_view body);
  /// Every recorded version of a function or prompt (each create, PUT and PATCH records one, keyed by its
  /// `_xact_id`), oldest first; empty when the id is unknown. For BTQL's project_prompts/project_functions
  /// audit reads (getPromptVersions).
  std::vector<boost::json::object> function_versions(const org_identity& org, std::string_view id);
  /// What BTQL's project_prompts(project_id) (`prompts_only`) and project_functions(project_id) read: the
  /// project's live functions, oldest first, or with `history` every recorded version of each, ordered by
  /// `_xact_id`, each with `audit_data: {"action": "upsert"}` (a version is a whole replacement of the object).
  /// nullopt when the project is not a live project of the org: events_config::metadata_rows.
  std::optional<std::vector<boost::json::object>> btql_function_rows(std::string_view org_id, std::string_view project_id,
                                                                     bool prompts_only, bool history);
  /// The project_id of an experiment or dataset (any org), "" when unknown: events_config::project_of.
  std::string project_of(std::string_view type, std::string_view id) const;
  /// Number of live objects of a type in an org (stats, tests).
  std::size_t count(std::string_view org_id, std::string_view type) const;

 private:
  struct located {
    std::string key;  // rest_objects key
    bool live = false;
  };
  std::optional<located> locate(std::string_view id) const;
  std::string remembered_id(const std::string& meta_key, const std::string& scope);
  std::optional<boost::json::object> load(std::string_view key) const;
  /// The live object `id` stored under `store_type` (no prompt/function view), or nullopt.
  std::optional<boost::json::object> get_stored(const org_identity& org, std::string_view store_type,
                                                std::string_view id) const;

  rest_reply dispatch(std::string_view method, std::string_view path, std::string_view type,
                      std::optional<std::string_view> id, std::string_view query, std::string_view body,
                      const org_identity& org);
  /// One /v1 request being dispatched (method, path, query and body, its resource spec, the engine).
  struct request {
    std::string_view method, path, query, body;
    const struct resource_spec& spec;
    struct rest_engine& engine;
    api_error not_allowed() const;
    rest_reply ok(const boost::json::object& o) const;
  };
  rest_reply collection(request& r);
  rest_reply item(request& r, const std::string& id);
  rest_reply environment_object(std::string_view method, const std::vector<std::string_view>& segs,
                                std::string_view query, std::string_view body, const org_identity& org);

  stores::kv_store& store_;
  rest_config cfg_;
  mutable std::mutex mutex_;
  id_source ids_;
  std::uint64_t seq_ = 0;

  friend struct rest_engine;
};

}  // namespace ferry::emulator
