#include "base/fd_io.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <system_error>

#include "base/errno_text.hpp"
#include "stagelog/error.hpp"

namespace stagelog::detail {

int open_append(const std::filesystem::path& path) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) {
    throw Error("cannot open " + path.string() + ": " + errno_text(errno));
  }
  return fd;
}

void write_all(int fd, std::string_view data, std::string_view what) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      throw Error("cannot write " + std::string(what) + ": " + errno_text(err), errno_kind(err));
    }
    data.remove_prefix(static_cast<std::size_t>(n));
  }
}

void pwrite_all(int fd, std::string_view data, std::uint64_t offset) {
  while (!data.empty()) {
    ssize_t n = ::pwrite(fd, data.data(), data.size(), static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) throw std::system_error(n < 0 ? errno : EIO, std::generic_category());
    data.remove_prefix(static_cast<std::size_t>(n));
    offset += static_cast<std::uint64_t>(n);
  }
}

bool pread_all(int fd, char* out, std::size_t n, std::uint64_t offset) {
  while (n > 0) {
    ssize_t r = ::pread(fd, out, n, static_cast<off_t>(offset));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) throw std::system_error(errno, std::generic_category());
    if (r == 0) return false;
    out += r;
    n -= static_cast<std::size_t>(r);
    offset += static_cast<std::uint64_t>(r);
  }
  return true;
}

void write_file_atomically(const std::filesystem::path& path, std::string_view data) {
  std::filesystem::path temp = path.string() + ".tmp";
  int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw Error("cannot open " + temp.string() + ": " + errno_text(errno));
  try {
    write_all(fd, data, temp.string());
  } catch (...) {
    ::close(fd);
    throw;
  }
  ::close(fd);
  if (std::rename(temp.c_str(), path.c_str()) != 0) {
    throw Error("cannot rename " + temp.string() + " to " + path.string() + ": " +
                errno_text(errno));
  }
}

bool create_private_file(const std::filesystem::path& path) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0 && errno == EEXIST) return false;
  if (fd < 0) throw Error("cannot create " + path.string() + ": " + errno_text(errno));
  // The umask may only have taken bits off 0600; fchmod says exactly what we mean anyway.
  const int rc = ::fchmod(fd, 0600);
  const int err = errno;
  ::close(fd);
  if (rc != 0) throw Error("cannot set the mode of " + path.string() + ": " + errno_text(err));
  return true;
}

bool create_private_folder(const std::filesystem::path& path) {
  const std::string where = "cannot create folder " + path.string() + ": ";
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) return false;
  if (std::filesystem::path parent = path.parent_path(); !parent.empty()) {
    std::filesystem::create_directories(parent, ec);
    if (ec) throw Error(where + ec.message());
  }
  if (::mkdir(path.c_str(), 0700) != 0) {
    const int err = errno;
    if (err == EEXIST && std::filesystem::is_directory(path, ec)) return false;  // A race.
    throw Error(where + (err == EEXIST ? std::string("not a folder") : errno_text(err)));
  }
  if (::chmod(path.c_str(), 0700) != 0) {
    throw Error("cannot set the mode of " + path.string() + ": " + errno_text(errno));
  }
  return true;
}

}  // namespace stagelog::detail
