#include "pipelines/streams/overflow.hpp"

#include "pipelines/streams/batcher.hpp"
#include "engine/json_parse.hpp"

#include <boost/json.hpp>

namespace ferry::pipelines::streams {

namespace json = boost::json;

std::string overflow_request(const std::vector<event_row>& rows, std::size_t begin, std::size_t end,
                             std::size_t payload_bytes) {
  json::array meta;
  // One entry per row of the payload: each row, then each of its riders (its comment rows, which the
  // payload carries right after it and the server counts as rows of their own).
  auto declare = [&](std::string_view text, bool is_delete) {
    json::object ids;
    for (std::string_view f : {"project_id", "log_id", "experiment_id", "dataset_id"})
      if (auto raw = field_raw(text, f)) ids[f] = ferry::engine::parse_json(*raw);
    auto comment = field_raw(text, "comment");
    meta.push_back(json::object{{"object_ids", std::move(ids)},
                                {"has_comment", comment && *comment != "null"},
                                {"is_delete", is_delete},
                                {"input_row", json::object{{"byte_size", text.size()}}}});
  };
  for (std::size_t i = begin; i < end; ++i) {
    const auto& row = rows[i];
    declare(row.json, row.is_delete);
    if (row.riders.empty()) continue;
    // riders is ",{...},{...}": each rider row serialized on its own.
    const auto riders = ferry::engine::parse_json("[" + row.riders.substr(1) + "]");
    for (const auto& r : riders.as_array()) declare(json::serialize(r), false);
  }
  return json::serialize(json::object{
      {"content_type", "application/json"}, {"size_bytes", payload_bytes}, {"rows", std::move(meta)}});
}

overflow_grant parse_overflow_grant(std::string_view body) {
  boost::system::error_code ec;
  auto v = ferry::engine::parse_json(body, ec);
  const json::object* o = ec ? nullptr : v.if_object();
  if (!o) throw stream_error("POST /logs3/overflow answered with no JSON object");
  auto str = [&](std::string_view k) {
    const auto* f = o->if_contains(k);
    return f && f->is_string() ? std::string(f->get_string()) : std::string();
  };
  overflow_grant g{str("method"), str("signedUrl"), str("key"), {}};
  if (g.method.empty()) g.method = "PUT";
  if (g.url.empty() || g.key.empty())
    throw stream_error("POST /logs3/overflow answered without a signedUrl or key");
  if (g.method != "PUT")
    throw stream_error("POST /logs3/overflow asks for a " + g.method +
                       " upload; Ferry uploads overflow payloads with PUT only");
  if (const auto* h = o->if_contains("headers"); h && h->is_object())
    for (const auto& kv : h->get_object())
      if (kv.value().is_string()) g.headers.emplace_back(std::string(kv.key()), std::string(kv.value().get_string()));
  return g;
}

std::string overflow_reference_body(std::string_view key, std::size_t payload_bytes) {
  return json::serialize(json::object{
      {"rows", json::object{{"type", "logs3_overflow"}, {"key", key}, {"size_bytes", payload_bytes}}},
      {"api_version", 2}});
}

}  // namespace ferry::pipelines::streams
