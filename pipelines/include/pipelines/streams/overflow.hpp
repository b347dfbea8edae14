#pragma once
// The SDKs' large-request path, `/logs3/overflow` (sdk-wire.md §1.2 step 4, reference-tool.md §1.8):
// when the destination's GET /version states a positive logs3_payload_max_bytes, a /logs3 body larger
// than that is not posted; instead
//   1. POST /logs3/overflow {"content_type":"application/json","size_bytes":N,
//                            "rows":[{"object_ids":{..},"has_comment":b,"is_delete":b,"input_row":{"byte_size":n}}]}
//      -> {"method":"PUT","signedUrl":..,"headers":{..},"key":..}
//   2. PUT the exact /logs3 body to signedUrl (no Authorization, exactly the returned headers);
//   3. POST /logs3 {"rows":{"type":"logs3_overflow","key":K,"size_bytes":N},"api_version":2}.
// So a row between the destination's request cap and its per-row limit reaches it whole, as the SDKs
// send it; only a row above the per-row limit has fields spilled to attachments (stream_runner.hpp).
//
// These are the pure parts (request bodies, the grant's parsing); the calls are event_sink::logs3_overflow.
// Pure; thread-safe.

#include "pipelines/streams/row_rewriter.hpp"

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ferry::pipelines::streams {

/// Step 1's body for rows [begin, end) whose /logs3 body is `payload_bytes` long.
std::string overflow_request(const std::vector<event_row>& rows, std::size_t begin, std::size_t end,
                             std::size_t payload_bytes);

struct overflow_grant {
  std::string method;  // "PUT" (a multipart "POST" grant is refused by parse_overflow_grant)
  std::string url;
  std::string key;
  std::vector<std::pair<std::string, std::string>> headers;
};

/// Step 1's answer. Throws stream_error naming what is missing (no signedUrl or key, not a PUT).
overflow_grant parse_overflow_grant(std::string_view body);

/// Step 3's body.
std::string overflow_reference_body(std::string_view key, std::size_t payload_bytes);

}  // namespace ferry::pipelines::streams
