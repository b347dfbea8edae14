#pragma once
// The pre-issue-16 row rewriter, kept as a test oracle only (see row_rewriter_oracle.cpp).
#include "pipelines/streams/row_rewriter.hpp"

#include <memory>
#include <string>
#include <string_view>

namespace ferry::test::legacy_rewriter {

class legacy_row_rewriter {
 public:
  explicit legacy_row_rewriter(pipelines::streams::rewrite_config cfg);
  ~legacy_row_rewriter();
  pipelines::streams::rewritten_page rewrite(std::string& body, std::string_view previous_key);

 private:
  struct impl;
  pipelines::streams::rewrite_config cfg_;
  std::unique_ptr<impl> impl_;
};

}  // namespace ferry::test::legacy_rewriter
