#include "test_support.hpp"

#include <random>

namespace ferry::test {

temp_dir::temp_dir(const std::string& prefix) {
  std::random_device rd;
  std::mt19937_64 gen(rd());
  for (int i = 0; i < 100; ++i) {
    auto p = std::filesystem::temp_directory_path() / (prefix + "-" + std::to_string(gen()));
    if (std::filesystem::create_directory(p)) {
      path_ = p;
      return;
    }
  }
  throw std::runtime_error("temp_dir: cannot create a directory under " +
                           std::filesystem::temp_directory_path().string());
}

temp_dir::~temp_dir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

}  // namespace ferry::test
