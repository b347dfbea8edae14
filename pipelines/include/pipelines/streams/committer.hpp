#pragma once
// Ordered commit bookkeeping: writers acknowledge batches in any order; a batch becomes committable
// only when every batch before it was acknowledged, so the committed cursor never passes a row that is
// not in the destination. Pure; one instance per stream, used from the stream's strand.

#include "pipelines/streams/digest.hpp"

#include "stores/stream_record.hpp"

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace ferry::pipelines::streams {

/// What an acknowledged batch contributes to the stream's committed state.
struct batch_receipt {
  std::uint64_t seq = 0;
  /// What the batch adds to the stream's counters: rows, request bytes sent (final successful form,
  /// after splits/spills), batches = 1, deletes, merges, rows re-sent after a resume, spills, attachments.
  stores::stream_counters counts;
  std::string first_key;
  std::string last_key;           // the cursor after this batch
  std::string last_id;
  digest256 digest;               // sum of the rows' hashes
};

class ordered_committer {
 public:
  /// `next_seq`: the first sequence number not yet committed.
  explicit ordered_committer(std::uint64_t next_seq = 1) : next_(next_seq) {}

  /// Records an acknowledgement (any order). Throws std::logic_error for a seq already committed or
  /// acknowledged twice (a programmer error in the writer).
  void ack(batch_receipt r);
  /// The acknowledged batches that can be committed now, in order (possibly none).
  std::vector<batch_receipt> take_ready();

  std::uint64_t next_seq() const { return next_; }
  std::size_t waiting() const { return acked_.size(); }

 private:
  std::uint64_t next_;
  std::map<std::uint64_t, batch_receipt> acked_;
};

}  // namespace ferry::pipelines::streams
