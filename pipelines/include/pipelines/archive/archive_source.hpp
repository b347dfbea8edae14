#pragma once
// An archive presented as the SOURCE side of a migration, through the same two
// interfaces the HTTP source implements, so `ferry import` runs the one migrator (resources DAG, stream
// launcher, batched /logs3 writer, checkpoints) with no second copy path:
//
// - archive_resource_api (resources::resource_api): answers GET <path>?<params> from the resource file of
//   that API path: objects whose fields equal every query parameter (project_id, object_type,
//   object_id, ...; limit/starting_after page as the API does), or GET <path>/<id> one object; anything
//   else is 404 "not in the archive", and every non-GET is 405 (the archive is read-only).
// - archive_event_source (streams::event_source): answers the stream engine's BTQL page queries
//   (build_page_query / build_key_query / build_preflight_query: select, from <kind>(ids), the created
//   window and keyset filters, limit) from the stream's chunks, in _pagination_key order. A chunk is
//   checked against its manifest sha256 each time it is loaded; a query it cannot parse is HTTP 400.
//   download_attachment answers from attachments/ by the source key (bytes checked against the
//   manifest), so the copy's --copy-attachments path uploads them to the destination unchanged.
//
// Both are built after archive::read_and_check accepted the archive. Threading: calls may come from
// any strand at once; the chunk cache is locked. Memory: one decoded chunk per stream object in flight.

#include "pipelines/archive/format.hpp"

#include "pipelines/resources/api.hpp"
#include "pipelines/streams/stream_io.hpp"

#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace ferry::pipelines::archive {

class archive_resource_api final : public resources::resource_api {
 public:
  archive_resource_api(std::filesystem::path dir, const manifest& m);
  boost::asio::awaitable<resources::api_reply> call(std::string method, std::string target, std::string body) override;
  std::string describe() const override;

 private:
  resources::api_reply answer(const std::string& method, const std::string& target) const;
  std::filesystem::path dir_;
  std::map<std::string, std::vector<boost::json::object>> by_path_;
};

class archive_event_source final : public streams::event_source {
 public:
  archive_event_source(std::filesystem::path dir, const manifest& m);
  boost::asio::awaitable<streams::call_result> btql(std::string body) override;
  /// The archived bytes of source attachment `key`; throws streams::stream_error when the archive does
  /// not hold it, its file fails its checksum, or it is above `max_bytes`.
  boost::asio::awaitable<std::string> download_attachment(std::string key, std::string filename,
                                                          std::string content_type, std::uint64_t max_bytes) override;

  struct row {
    std::string key;
    std::string created;  // resources::comparable_time form
    std::string line;     // the source row's JSON
  };

 private:
  streams::call_result answer(const std::string& body);
  std::shared_ptr<const std::vector<row>> chunk(const std::string& stream, const file_entry& f);

  std::filesystem::path dir_;
  std::map<std::string, stream_entry> streams_;  // "<kind>/<object id>"
  std::map<std::string, attachment_entry> attachments_;  // source key ->
  std::mutex mu_;
  std::map<std::string, std::pair<std::string, std::shared_ptr<const std::vector<row>>>> cache_;  // stream -> (chunk path, rows)
};

}  // namespace ferry::pipelines::archive
