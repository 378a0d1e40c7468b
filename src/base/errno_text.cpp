#include "base/errno_text.hpp"

#include <cerrno>
#include <cstring>

namespace stagelog::detail {

namespace {

// GNU's strerror_r returns the text (maybe a static string, not buf); the XSI one fills buf
// and returns 0. Overloads take whichever the C library declares.
[[maybe_unused]] const char* strerror_result(const char* text, const char*) { return text; }
[[maybe_unused]] const char* strerror_result(int rc, const char* buf) {
  return rc == 0 ? buf : "unknown error";
}

}  // namespace

std::string errno_text(int err) {
  char buf[256];
  return strerror_result(strerror_r(err, buf, sizeof buf), buf);
}

ErrorKind errno_kind(int err) noexcept {
  switch (err) {
    case ENOSPC:
    case EDQUOT:
      return ErrorKind::DiskFull;
    case EIO:
      return ErrorKind::Io;
    default:
      return ErrorKind::Other;
  }
}

}  // namespace stagelog::detail
