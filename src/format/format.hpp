#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "stagelog/event.hpp"

namespace stagelog::detail {

// The seed-000 line for stage and run events, "<ts> [worker] LEVEL component: message k=v"
// for the rest, with a trailing newline. Returns false (and appends nothing) for events that
// have no text form (a run start, a recorder closing).
bool format_text(const Event& event, std::string& out);
// "Complete (13.2s)": a stage event's status as the seed's stage line says it, and its time
// when it measured one (what follows "Stage: AGENT - ").
void append_stage_status(const Event& event, std::string& out);
// The per-worker file line of seed 003, "2026-02-04 19:36:20,123 - Worker 3 - worker - INFO -
// message k=v" (UTC), with the stage part of a stage line as the message. Returns false for
// events that have no text form (a run start).
bool format_worker_line(const Event& event, std::string_view worker_label, std::string& out);
// One JSON object and a newline.
void format_json(const Event& event, std::string& out);
// A JSON string literal with quotes; control characters escaped, invalid UTF-8 replaced by
// U+FFFD, so the result is always valid JSON on one line.
void append_json_string(std::string& out, std::string_view s);
// The offset of the first byte that is not part of valid UTF-8 (overlong forms, surrogates
// and code points past U+10FFFF are invalid), or npos when all of it is valid.
std::size_t invalid_utf8_at(std::string_view s);
// The length of the valid UTF-8 sequence that starts at s[i], or 0 when it is not valid there.
std::size_t utf8_sequence_at(std::string_view s, std::size_t i);
// Appends code point cp (at most U+10FFFF, not a surrogate) as UTF-8.
void append_utf8(std::string& out, char32_t cp);
// A double as JSON: shortest round-trip form, null when not finite.
void append_json_double(std::string& out, double v);
// {"key":value,...} in order, repeated keys kept: JSONL's "fields".
void append_json_fields(std::string& out, std::span<const Field> fields);
// Text with control characters escaped (\n, \t, \xNN) so it stays on one line.
void append_escaped_text(std::string& out, std::string_view s);

}  // namespace stagelog::detail
