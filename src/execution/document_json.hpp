#pragma once

// What the execution model's document, folder and the server's response share: the key lists
// and how values are written. Private to src/execution/ and src/server/.

#include <algorithm>
#include <array>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace stagelog::detail {

// Ordered: metadata and custom step fields keep the document's key order.
using ExecutionJson = nlohmann::ordered_json;

// Keys the document itself uses; other top-level keys are metadata.
inline constexpr std::array<std::string_view, 6> kDocumentKeys = {
    "tracking_id", "execution_id", "started_at", "completed_at", "duration_ms", "steps"};
// Keys of a step; its other keys are custom fields.
inline constexpr std::array<std::string_view, 5> kStepKeys = {"step", "timestamp", "status",
                                                              "message", "error_details"};

template <std::size_t N>
bool contains(const std::array<std::string_view, N>& keys, std::string_view key) {
  return std::find(keys.begin(), keys.end(), key) != keys.end();
}

// Compact JSON text, invalid UTF-8 replaced.
std::string dump(const ExecutionJson& j);
// Floors to the millisecond: floor_ms(-1) is -1, not 0.
std::int64_t floor_ms(std::int64_t ns);
// A timestamp as the document keeps it: at or after the epoch, whole milliseconds.
std::int64_t document_ns(std::int64_t ns);
// The text as valid UTF-8: each invalid sequence becomes U+FFFD, as the JSON writers do.
std::string valid_utf8(std::string_view text);
// The object a metadata_json or custom_json holds; an empty one if it holds anything else.
ExecutionJson object_of(const std::string& text);

}  // namespace stagelog::detail
