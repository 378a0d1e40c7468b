#pragma once

#include <string>

#include "stagelog/error.hpp"

namespace stagelog::detail {

// strerror(err), "No such file or directory", without strerror's shared buffer: safe to call
// from any thread.
std::string errno_text(int err);

// The ErrorKind of a failed write's errno: DiskFull for ENOSPC and EDQUOT, Io for EIO, Other
// for anything else.
ErrorKind errno_kind(int err) noexcept;

}  // namespace stagelog::detail
