#include "metrics.hpp"

#include <boost/asio/post.hpp>

namespace ferry::pipelines {

metrics_service::metrics_service(const std::string& address, engine::metrics_registry& registry) {
  server_.emplace(ctx_.get_executor(), address, registry);
  server_->start();
  thread_ = std::thread([this] { ctx_.run(); });
}

metrics_service::~metrics_service() {
  boost::asio::post(ctx_, [this] { server_->stop(); });
  thread_.join();  // run() returns once the acceptor and the connections are closed
  server_.reset();
}

std::string metrics_service::url() const {
  const auto& h = server_->host();
  const bool v6 = h.find(':') != std::string::npos;
  return "http://" + (v6 ? "[" + h + "]" : h) + ":" + std::to_string(server_->port()) + "/metrics";
}

}  // namespace ferry::pipelines
