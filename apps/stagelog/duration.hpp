#pragma once

#include <string>

#include "base/duration.hpp"

namespace stagelog::cli {

// "500ms", "2s", "1.5m", "1h", "7d", a bare number of seconds ("30"), or "0" (off): the
// library's parser (src/base/duration.hpp), shared with the server's ?retention=.
using detail::parse_duration;

// A CLI11 validator for duration options: "--stuck 2s". The message names the bad value.
std::string check_duration(const std::string& text);

}  // namespace stagelog::cli
