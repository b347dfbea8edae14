#include "engine/files.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace ferry::engine {

std::string write_file(const std::filesystem::path& path, std::string_view content, unsigned mode) {
  const auto fail = [&](std::string_view what) {
    return "cannot write " + path.string() + ": " + std::string(what) + ": " + std::strerror(errno);
  };
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode & 0777);
  if (fd < 0) return fail("open");
  std::string err;
  if (::fchmod(fd, static_cast<mode_t>(mode & 0777)) != 0) err = fail("chmod");
  for (std::size_t done = 0; err.empty() && done < content.size();) {
    const ssize_t n = ::write(fd, content.data() + done, content.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) err = fail("write (disk full?)");
    else done += static_cast<std::size_t>(n);
  }
  if (::close(fd) != 0 && err.empty()) err = fail("close");
  return err;
}

}  // namespace ferry::engine
