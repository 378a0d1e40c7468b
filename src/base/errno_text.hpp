#pragma once

#include <string>

namespace stagelog::detail {

// strerror(err), "No such file or directory", without strerror's shared buffer: safe to call
// from any thread.
std::string errno_text(int err);

}  // namespace stagelog::detail
