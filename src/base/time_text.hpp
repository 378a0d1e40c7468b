#pragma once

#include <cstdint>
#include <string>

namespace stagelog::detail {

// Timestamps as text, one function per format. Negative times print as the epoch.

// "2026-01-04T19:30:15.234Z": UTC, milliseconds, Z. The seed's stage lines, JSONL's "ts", the
// API. Fast: the part before the milliseconds is cached per thread.
void append_iso_timestamp(std::string& out, std::int64_t ts_ns);
std::string iso_timestamp(std::int64_t ts_ns);

// "2026-02-04 19:36:20,123": Python logging's asctime, in UTC (seed 003's worker files).
void append_asctime(std::string& out, std::int64_t ts_ns);

}  // namespace stagelog::detail
