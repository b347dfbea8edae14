#include "pipelines/streams/committer.hpp"

#include <doctest/doctest.h>

#include <stdexcept>

using namespace ferry::pipelines::streams;

namespace {
batch_receipt r(std::uint64_t seq) {
  batch_receipt b;
  b.seq = seq;
  b.counts.rows = seq * 10;
  b.last_key = "k" + std::to_string(seq);
  return b;
}
}  // namespace

TEST_CASE("committer: out-of-order acks commit in order only when contiguous") {
  ordered_committer c(1);
  c.ack(r(3));
  c.ack(r(2));
  CHECK(c.take_ready().empty());  // batch 1 not acked: nothing may commit
  CHECK(c.waiting() == 2);
  c.ack(r(1));
  auto ready = c.take_ready();
  REQUIRE(ready.size() == 3);
  CHECK(ready[0].seq == 1);
  CHECK(ready[1].seq == 2);
  CHECK(ready[2].last_key == "k3");
  CHECK(c.next_seq() == 4);
  c.ack(r(5));
  CHECK(c.take_ready().empty());
  c.ack(r(4));
  CHECK(c.take_ready().size() == 2);
}

TEST_CASE("committer: resumes at a later sequence and rejects stale or double acks") {
  ordered_committer c(7);
  CHECK_THROWS_AS(c.ack(r(6)), std::logic_error);
  c.ack(r(8));
  CHECK_THROWS_AS(c.ack(r(8)), std::logic_error);
  c.ack(r(7));
  CHECK(c.take_ready().size() == 2);
  CHECK_THROWS_AS(c.ack(r(7)), std::logic_error);
}
