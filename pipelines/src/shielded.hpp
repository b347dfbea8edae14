#pragma once
// Internal to pipelines: an awaitable run shielded from the caller's cancellation. Asio 1.26's co_spawn
// cancellation handler can touch a freed signal when a cancellation races with the end of
// http_client's exchange coroutine (see streams::send_shielded). The call is bounded by the client's
// timeouts and retry budget.

#include <boost/asio/awaitable.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace ferry::pipelines {

template <class T>
boost::asio::awaitable<T> shielded(boost::asio::awaitable<T> aw) {
  namespace asio = boost::asio;
  auto ex = co_await asio::this_coro::executor;
  co_return co_await asio::co_spawn(ex, std::move(aw),
                                    asio::bind_cancellation_slot(asio::cancellation_slot(), asio::use_awaitable));
}

}  // namespace ferry::pipelines
