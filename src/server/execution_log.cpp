// GET /api/execution-logs/{trackingId}: seed 004's response shape for an execution.

#include "stagelog/server/execution_log.hpp"

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include "base/time_text.hpp"
#include "execution/document_json.hpp"

namespace stagelog::server {

namespace {

using Json = detail::ExecutionJson;
using detail::contains;
using detail::dump;
using detail::floor_ms;
using detail::kDocumentKeys;
using detail::object_of;

// Keys the response adds besides the document's: metadata with these names is left out of it.
constexpr std::array<std::string_view, 3> kResponseKeys = {"duration_readable", "total_steps",
                                                           "final_status"};
// The two metadata keys seed 004's Pages function names, in its order: the response puts them
// first, then the rest of the metadata in document order.
constexpr std::array<std::string_view, 2> kSeedMetadata = {"company", "tier"};

}  // namespace

std::string execution_log_response(const Execution& execution) {
  Json data = Json::object();
  data["tracking_id"] = execution.tracking_id;
  data["execution_id"] = execution.execution_id;
  Json metadata = object_of(execution.metadata_json);
  for (std::string_view key : kSeedMetadata) {
    if (auto it = metadata.find(key); it != metadata.end()) data[std::string(key)] = *it;
  }
  for (const auto& [key, value] : metadata.items()) {
    if (!contains(kDocumentKeys, key) && !contains(kResponseKeys, key) &&
        !contains(kSeedMetadata, key)) {
      data[key] = value;
    }
  }
  data["started_at"] = detail::iso_timestamp(execution.started_at_ns);
  data["completed_at"] = execution.completed_at_ns
                             ? Json(detail::iso_timestamp(*execution.completed_at_ns))
                             : Json(nullptr);
  data["duration_ms"] = execution.duration_ms ? Json(*execution.duration_ms) : Json(nullptr);
  data["duration_readable"] =
      execution.duration_ms ? Json(readable_duration(*execution.duration_ms)) : Json(nullptr);
  data["total_steps"] = execution.steps.size();
  data["final_status"] = final_status(execution);
  Json steps = Json::array();
  for (const Step& s : execution.steps) {
    Json step = Json::object();
    step["step"] = s.step;
    step["status"] = s.status;
    step["timestamp"] = detail::iso_timestamp(s.timestamp_ns);
    step["message"] = s.message;
    step["time_from_start"] = time_from_start(execution.started_at_ns, s.timestamp_ns);
    // `step.error_details || null`: an empty string is null too.
    step["error_details"] =
        s.error_details && !s.error_details->empty() ? Json(*s.error_details) : Json(nullptr);
    steps.push_back(std::move(step));
  }
  data["steps"] = std::move(steps);
  Json response = Json::object();
  response["success"] = true;
  response["data"] = std::move(data);
  return dump(response);
}

// Rounding: each form rounds half up at its own precision, and a value that rounds up to the
// next form's threshold is written in that form, so no form shows an impossible reading:
//   below 1 s:  whole milliseconds                 999 -> "999ms"
//   below 1 m:  tenths of a second                 1000 -> "1.0s", 59949 -> "59.9s"
//   below 1 h:  whole seconds, as minutes+seconds  59950 -> "1m 0s" (not "60.0s")
//   above:      whole seconds, as h+m+s            3599999 -> "1h 0m 0s", 3725000 -> "1h 2m 5s"
// A negative duration is the positive one with a '-'.
std::string readable_duration(std::int64_t ms) {
  std::string sign = ms < 0 ? "-" : "";
  // In unsigned arithmetic so that INT64_MIN and the rounding of INT64_MAX do not overflow.
  std::uint64_t v = ms < 0 ? 0 - static_cast<std::uint64_t>(ms) : static_cast<std::uint64_t>(ms);
  if (v < 1000) return sign + std::to_string(v) + "ms";
  std::uint64_t tenths = v / 100 + (v % 100 >= 50 ? 1 : 0);
  if (tenths < 600) {
    return sign + std::to_string(tenths / 10) + "." + std::to_string(tenths % 10) + "s";
  }
  std::uint64_t s = v / 1000 + (v % 1000 >= 500 ? 1 : 0);
  if (s < 3600) return sign + std::to_string(s / 60) + "m " + std::to_string(s % 60) + "s";
  return sign + std::to_string(s / 3600) + "h " + std::to_string(s / 60 % 60) + "m " +
         std::to_string(s % 60) + "s";
}

// In whole milliseconds of each timestamp, so that any two int64 timestamps subtract safely.
std::string time_from_start(std::int64_t started_at_ns, std::int64_t timestamp_ns) {
  std::int64_t ms = floor_ms(timestamp_ns) - floor_ms(started_at_ns);
  return ms < 0 ? readable_duration(ms) : "+" + readable_duration(ms);
}

}  // namespace stagelog::server
