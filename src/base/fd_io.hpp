#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

namespace stagelog::detail {

// Opens path for appending (created 0644), throwing Error "cannot open <path>: <reason>".
int open_append(const std::filesystem::path& path);
// Writes all of data, retrying on EINTR and short writes; throws Error naming `what` on failure.
void write_all(int fd, std::string_view data, std::string_view what);

// Writes all of data at `offset` (pwrite), retrying on EINTR and short writes. Throws
// std::system_error with the errno, for the caller to word the message.
void pwrite_all(int fd, std::string_view data, std::uint64_t offset);
// Reads exactly n bytes at `offset` (pread), retrying likewise; false if the file ends first.
// Throws std::system_error with the errno.
bool pread_all(int fd, char* out, std::size_t n, std::uint64_t offset);

// Replaces path's content with data through <path>.tmp and rename(), so a reader sees the old
// file or the new one, never part of either. Throws Error naming the file on failure.
void write_file_atomically(const std::filesystem::path& path, std::string_view data);

// Creates `path` as an empty file of mode 0600, whatever the umask, and returns true; false
// when something is there already (left as it is). Throws Error naming the path.
bool create_private_file(const std::filesystem::path& path);
// Creates the folder `path` with mode 0700, whatever the umask (its missing parents get the
// umask's modes), and returns true; false when it is a folder already (its mode left as it
// is: the user chose it). Throws Error "cannot create folder <path>: <reason>".
bool create_private_folder(const std::filesystem::path& path);

// How much a buffered writer (a file or console sink) gathers before one write().
inline constexpr std::size_t kWriteBufferBytes = 64 * 1024;

}  // namespace stagelog::detail
