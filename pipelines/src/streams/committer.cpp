#include "pipelines/streams/committer.hpp"

#include <stdexcept>

namespace ferry::pipelines::streams {

void ordered_committer::ack(batch_receipt r) {
  if (r.seq < next_) throw std::logic_error("ordered_committer: batch " + std::to_string(r.seq) + " already committed");
  auto seq = r.seq;
  if (!acked_.emplace(seq, std::move(r)).second)
    throw std::logic_error("ordered_committer: batch " + std::to_string(seq) + " acknowledged twice");
}

std::vector<batch_receipt> ordered_committer::take_ready() {
  std::vector<batch_receipt> out;
  for (auto it = acked_.begin(); it != acked_.end() && it->first == next_; it = acked_.erase(it)) {
    out.push_back(std::move(it->second));
    ++next_;
  }
  return out;
}

}  // namespace ferry::pipelines::streams
