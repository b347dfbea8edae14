#pragma once
// Files Ferry writes for the user (reports, plans): created with an explicit mode, whatever the umask,
// because they name the organization's objects.

#include <filesystem>
#include <string>
#include <string_view>

namespace ferry::engine {

/// Writes `content` to `path` (created or truncated, never through a symlink), then sets its mode to
/// exactly `mode` (0600 by default; the umask plays no part). Returns "" or one line naming the path
/// and the cause.
std::string write_file(const std::filesystem::path& path, std::string_view content, unsigned mode = 0600);

}  // namespace ferry::engine
