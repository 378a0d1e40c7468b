#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace stagelog::cli {

// "500ms", "2s", "1.5m", "1h", "7d", a bare number of seconds ("30"), or "0" (off). nullopt
// when the text is not a duration.
std::optional<std::chrono::nanoseconds> parse_duration(std::string_view text);

// A CLI11 validator for duration options: "--stuck 2s". The message names the bad value.
std::string check_duration(const std::string& text);

}  // namespace stagelog::cli
