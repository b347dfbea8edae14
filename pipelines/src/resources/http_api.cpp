#include "pipelines/resources/http_api.hpp"

#include "engine/clock.hpp"
#include "engine/log.hpp"
#include "transports/http_client.hpp"

#include <boost/beast/http/verb.hpp>

namespace ferry::pipelines::resources {

namespace asio = boost::asio;

http_resource_api::http_resource_api(transports::http_client& client, std::string base_url, std::string api_key,
                                     std::size_t max_concurrent_requests, engine::retry_config retry)
    : client_(client),
      base_url_(std::move(base_url)),
      auth_("Bearer " + api_key),
      sem_(std::max<std::size_t>(1, max_concurrent_requests)),
      retry_(retry) {
  engine::register_secret(api_key);
}

asio::awaitable<api_reply> http_resource_api::call(std::string method, std::string target, std::string body) {
  transports::http_request_spec spec;
  spec.verb = boost::beast::http::string_to_verb(method);
  spec.target = std::move(target);
  spec.headers.emplace_back("Authorization", auth_);
  if (!body.empty()) spec.headers.emplace_back("Content-Type", "application/json");
  spec.body = std::move(body);
  spec.idempotent = true;  // creates are idempotent by uniqueness key on the server
  engine::retry_policy policy(retry_);
  api_reply out;
  std::string what = method + " " + spec.target.substr(0, spec.target.find('?'));
  co_await engine::with_retry(
      policy, engine::real_clock::instance(),
      [&](int) -> asio::awaitable<engine::attempt_result> {
        auto permit = co_await sem_.acquire();
        auto r = co_await client_.send(spec);
        out.status = static_cast<int>(r.status);
        out.outcome = r.outcome;
        out.body = std::move(r.body);
        out.error = r.status == 0 ? r.error : std::string();  // with a status, the body names the cause
        engine::attempt_result a;
        a.outcome = r.outcome;
        a.retry_after = r.retry_after;
        a.detail = "HTTP " + std::to_string(r.status);
        co_return a;
      },
      engine::retry_hooks{what, {}});
  co_return out;
}

}  // namespace ferry::pipelines::resources
