#include "base/duration.hpp"

#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <system_error>

namespace stagelog::detail {

std::optional<std::chrono::nanoseconds> parse_duration(std::string_view text) {
  double value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end == text.data() || !std::isfinite(value) || value < 0) {
    return std::nullopt;
  }
  std::string_view unit(end, static_cast<std::size_t>(text.data() + text.size() - end));
  double scale = 0;
  if (unit.empty() || unit == "s") {
    scale = 1e9;
  } else if (unit == "ms") {
    scale = 1e6;
  } else if (unit == "us") {
    scale = 1e3;
  } else if (unit == "m") {
    scale = 60e9;
  } else if (unit == "h") {
    scale = 3600e9;
  } else if (unit == "d") {
    scale = 86400e9;
  } else {
    return std::nullopt;
  }
  double ns = value * scale;
  if (ns >= static_cast<double>(std::numeric_limits<std::int64_t>::max())) return std::nullopt;
  return std::chrono::nanoseconds(std::llround(ns));
}

void append_elapsed_seconds(std::string& out, std::int64_t ns) {
  if (ns < 0) ns = 0;
  // Rounded by halves without adding (an elapsed_ns read from a file may be near INT64_MAX).
  std::int64_t ms = ns / 1'000'000 + (ns % 1'000'000 >= 500'000);
  if (ms >= 1000) {  // One second or more once rounded: one decimal.
    std::int64_t tenths = ns / 100'000'000 + (ns % 100'000'000 >= 50'000'000);
    char digits[24];
    auto r = std::to_chars(digits, digits + sizeof digits, tenths / 10);
    out.append(digits, r.ptr);
    out += '.';
    out += static_cast<char>('0' + tenths % 10);
  } else {
    char buf[6] = {'0',
                   '.',
                   static_cast<char>('0' + ms / 100 % 10),
                   static_cast<char>('0' + ms / 10 % 10),
                   static_cast<char>('0' + ms % 10),
                   0};
    out.append(buf, 5);
  }
}

std::string elapsed_seconds_text(std::int64_t ns) {
  std::string out;
  append_elapsed_seconds(out, ns);
  out += 's';
  return out;
}

std::string one_decimal_seconds(std::int64_t ns) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1fs", static_cast<double>(ns < 0 ? 0 : ns) / 1e9);
  return buf;
}

std::string rounded_seconds(std::int64_t ns) {
  char buf[32];
  double s = static_cast<double>(ns < 0 ? 0 : ns) / 1e9;
  std::snprintf(buf, sizeof buf, s < 10 ? "%.1fs" : "%.0fs", s);
  return buf;
}

std::string compact_duration(std::int64_t ns) {
  double s = static_cast<double>(ns < 0 ? 0 : ns) / 1e9;
  char buf[32];
  if (s < 60) {
    std::snprintf(buf, sizeof buf, "%.1fs", s);
  } else if (s < 3600) {
    std::snprintf(buf, sizeof buf, "%dm %02ds", static_cast<int>(s) / 60, static_cast<int>(s) % 60);
  } else {
    std::snprintf(buf, sizeof buf, "%dh %02dm", static_cast<int>(s) / 3600,
                  static_cast<int>(s) % 3600 / 60);
  }
  return buf;
}

}  // namespace stagelog::detail
