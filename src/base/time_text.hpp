#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace stagelog::detail {

// Timestamps as text, one function per format. Negative times print as the epoch.

// "2026-01-04T19:30:15.234Z": UTC, milliseconds, Z. The seed's stage lines, JSONL's "ts", the
// API. Fast: the part before the milliseconds is cached per thread.
void append_iso_timestamp(std::string& out, std::int64_t ts_ns);
std::string iso_timestamp(std::int64_t ts_ns);

// "2026-02-04 19:36:20,123": Python logging's asctime, in UTC (seed 003's worker files).
void append_asctime(std::string& out, std::int64_t ts_ns);

// For readers of such text: the n decimal digits of s at pos as value, false when they are not
// all digits (or s is too short); and the days from 1970-01-01 to a date of the proleptic
// Gregorian calendar (month 1-12, day 1-31).
bool read_digits(std::string_view s, std::size_t pos, std::size_t n, int& value) noexcept;
std::int64_t days_from_civil(int year, unsigned month, unsigned day) noexcept;
// The seconds from 1970-01-01T00:00:00Z to the "YYYY-MM-DDTHH:MM:SS" that `text` starts with
// (with a space for the T too when space_too), read as UTC; nullopt when it starts with no
// such date and time or an impossible one (a 30 February, hour 24; second 60 is a leap second).
std::optional<std::int64_t> read_civil_seconds(std::string_view text, bool space_too) noexcept;

}  // namespace stagelog::detail
