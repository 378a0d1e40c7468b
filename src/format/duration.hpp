#pragma once

#include <chrono>
#include <optional>
#include <string_view>

namespace stagelog::detail {

// "500ms", "2s", "1.5m", "1h", "7d", "250us", a bare number of seconds ("30"), or "0". nullopt
// when the text is not a duration: negative, not finite, an unknown unit, or past INT64_MAX
// nanoseconds. The one duration syntax of the CLI's options and the server's ?retention=.
std::optional<std::chrono::nanoseconds> parse_duration(std::string_view text);

}  // namespace stagelog::detail
