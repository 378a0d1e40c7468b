#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace stagelog::detail {

// "500ms", "2s", "1.5m", "1h", "7d", "250us", a bare number of seconds ("30"), or "0". nullopt
// when the text is not a duration: negative, not finite, an unknown unit, or past INT64_MAX
// nanoseconds. The one duration syntax of the CLI's options, the environment and the server's
// ?retention=.
std::optional<std::chrono::nanoseconds> parse_duration(std::string_view text);

// Durations as text, one function per format. Negative durations print as zero.

// "13.2" from one second up (one decimal), "0.042" below (milliseconds), no unit: the
// summary's figures. Rounded by halves. (Stage lines print seed 001's f"{elapsed:.1f}s" with
// python_seconds in base/python_text.hpp.)
void append_elapsed_seconds(std::string& out, std::int64_t ns);
// The same with its unit: "13.2s", "0.042s".
std::string elapsed_seconds_text(std::int64_t ns);
// "12.3s", "0.0s", "95.0s": seconds with one decimal, whatever the size (alert messages).
std::string one_decimal_seconds(std::int64_t ns);
// "2.5s" below ten seconds, "90s" from ten up (the watchdog's warnings: a threshold in
// minutes does not need tenths).
std::string rounded_seconds(std::int64_t ns);
// "4.2s", "3m 05s", "1h 02m": a width that barely changes, for progress bars and live
// tables.
std::string compact_duration(std::int64_t ns);

}  // namespace stagelog::detail
