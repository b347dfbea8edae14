#pragma once
// How much a source puts in one page (= one sink batch): at most the copy's --batch-rows rows, and no
// more than about k_page_bytes of row text, so that the batch size that makes per-batch costs small
// (a COMMIT, a synced state commit, an fsync per batch) keeps pages of large rows bounded in memory.

#include <cstddef>

namespace ferry::pipelines::copy {

inline constexpr std::size_t k_page_bytes = std::size_t{4} << 20;

}  // namespace ferry::pipelines::copy
