#pragma once

#include <filesystem>
#include <string>
#include <string_view>

namespace stagelog::detail {

// Opens path for appending (created 0644), throwing Error "cannot open <path>: <reason>".
int open_append(const std::filesystem::path& path);
// Writes all of data, retrying on EINTR and short writes; throws Error naming `what` on failure.
void write_all(int fd, std::string_view data, std::string_view what);

// Replaces path's content with data through <path>.tmp and rename(), so a reader sees the old
// file or the new one, never part of either. Throws Error naming the file on failure.
void write_file_atomically(const std::filesystem::path& path, std::string_view data);

// How much a buffered writer (a file or console sink) gathers before one write().
inline constexpr std::size_t kWriteBufferBytes = 64 * 1024;

}  // namespace stagelog::detail
