#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "stagelog/event.hpp"

namespace stagelog {

// One text line read back: a stage line ("... [T0_00] Stage: AGENT - Complete (13.2s)"), the
// run's last line ("Stage: COMPLETE - All stages complete (20.7s)") or a log line
// ("... [gpu-1] WARNING worker: message k=v").
struct ParsedLine {
  Kind kind = Kind::Log;  // Stage, Run or Log.
  std::string timestamp;  // As written: "2026-01-04T19:30:15.234Z".
  std::int64_t ts_ns = 0;
  std::string worker;  // Any characters but ']' and whitespace: "T0_00", "gpu-1", "w.3".
  std::string stage;   // Stage and run lines.
  Status status = Status::None;
  std::optional<double> duration;  // Seconds, when the line has "(13.2s)".
  Level level = Level::Info;
  std::string component;  // Log lines.
  std::string message;    // "All stages complete", a failure's message, a log message.
};

// Reads one line (without its newline). On failure returns nullopt and, if `error` is given,
// says what was wrong ("expected '[worker]' after the timestamp").
std::optional<ParsedLine> parse_line(std::string_view line, std::string* error = nullptr);

// The line as one JSON object: {"timestamp", "worker_id", "stage", "status", "duration",
// "message"} for stage and run lines; {"timestamp", "worker_id", "level", "component",
// "message"} for log lines. No trailing newline.
std::string to_json(const ParsedLine& line);

// "2026-01-04T19:30:15.234Z" (fraction optional, 1-9 digits) to ns since the epoch.
std::optional<std::int64_t> parse_timestamp(std::string_view text) noexcept;

// One JSONL line as JsonlSink writes it ({"ts", "ts_ns", "kind", "level", "run", "worker",
// "component", "stage", "status", "elapsed_ns", "message", "fields", "pid", "host"}) read back.
// "ts_ns" wins over "ts"; only "ts" (or "ts_ns") and "kind" are required, the rest default.
// Unknown keys are ignored. On failure returns nullopt and says why in `error`.
std::optional<OwnedEvent> parse_json_event(std::string_view line, std::string* error = nullptr);

// A JSONL line (starts with '{') or a text line in the seed format (parse_line), as an event:
// what `stagelog tail` and `stagelog summary` read.
std::optional<OwnedEvent> parse_event(std::string_view line, std::string* error = nullptr);

}  // namespace stagelog
