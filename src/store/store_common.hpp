#pragma once

// What every Store implementation shares whatever its database: the checks and conversions the
// contract (stagelog/store/store.hpp) fixes, so that a second implementation agrees with the
// SQLite one on them, error messages included. No SQL here.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "stagelog/parse.hpp"
#include "stagelog/store/store.hpp"

namespace stagelog::detail {

// AttemptSummary::final_status of an attempt without steps; an ExecutionQuery::final_status of
// this value lists those attempts.
inline constexpr std::string_view kUnknownFinalStatus = "unknown";

// Why list_executions refuses the query ("metadata key \"a.b\" may hold only ..."), or nullopt
// when it is valid.
std::optional<std::string> query_error(const store::ExecutionQuery& query);

// A limit as a database's signed 64-bit LIMIT: std::size_t values past its range are "all".
std::int64_t row_limit(std::size_t limit) noexcept;

// The number of steps an attempt has once an ExecutionWrite's `count` steps are stored from
// position `steps_from`. Throws std::runtime_error when that is past std::int64_t.
std::int64_t steps_end(std::size_t steps_from, std::size_t count);

// An ExecutionWrite from step `first` > 0 keeps the steps before it, so they must all be
// stored (`stored` of them are). Throws std::runtime_error otherwise.
void check_steps_kept(std::int64_t first, std::int64_t stored, const std::string& execution_id);

// A stored event's kind, level and status (absent: Status::None), as event.hpp names them.
// Throws std::runtime_error for a name no stagelog wrote.
void read_event_names(OwnedEvent& event, const std::string& kind, const std::string& level,
                      const std::optional<std::string>& status);

// Adds the fields of a stored event, kept as the JSON object append_json_fields wrote, read
// back with the JSONL reader so that both agree on every number and string. Throws
// std::runtime_error when the text is not a JSON object.
void read_event_fields(const std::string& fields_json, OwnedEvent& event);

}  // namespace stagelog::detail
