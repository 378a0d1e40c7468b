#pragma once

#include <cstdint>
#include <string>

#include "stagelog/execution.hpp"

namespace stagelog::server {

// GET /api/execution-logs/{trackingId}, exactly as seed 004's Pages function formats it:
// {"success": true, "data": {tracking_id, execution_id, <metadata keys>, started_at,
// completed_at, duration_ms, duration_readable, total_steps, final_status, steps: [{step,
// status, timestamp, message, time_from_start, error_details}]}}.
std::string execution_log_response(const Execution& execution);

// "850ms", "12.3s", "2m 30s", "1h 2m 5s".
std::string readable_duration(std::int64_t ms);
// "+2m 30s" from started_at to a step's timestamp ("-1.2s" if the step is earlier).
std::string time_from_start(std::int64_t started_at_ns, std::int64_t timestamp_ns);

}  // namespace stagelog::server
