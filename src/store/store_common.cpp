#include "store/store_common.hpp"

#include <algorithm>
#include <limits>
#include <stdexcept>

namespace stagelog::detail {

std::optional<std::string> query_error(const store::ExecutionQuery& query) {
  for (const auto& [key, value] : query.metadata) {
    if (!store::is_filterable_metadata_key(key)) {
      return "metadata key \"" + key + "\" may hold only letters, digits, '_' and '-'";
    }
  }
  return std::nullopt;
}

std::int64_t row_limit(std::size_t limit) noexcept {
  constexpr auto kMax = static_cast<std::size_t>(std::numeric_limits<std::int64_t>::max());
  return static_cast<std::int64_t>(std::min(limit, kMax));
}

std::int64_t steps_end(std::size_t steps_from, std::size_t count) {
  constexpr auto kMaxSeq = static_cast<std::size_t>(std::numeric_limits<std::int64_t>::max());
  if (steps_from > kMaxSeq - count) {
    throw std::runtime_error("steps_from " + std::to_string(steps_from) + " is out of range");
  }
  return static_cast<std::int64_t>(steps_from + count);
}

void check_steps_kept(std::int64_t first, std::int64_t stored, const std::string& execution_id) {
  if (stored < first) {
    throw std::runtime_error("steps_from is " + std::to_string(first) + " but attempt " +
                             execution_id + " has " + std::to_string(stored) + " steps stored");
  }
}

void read_event_names(OwnedEvent& event, const std::string& kind, const std::string& level,
                      const std::optional<std::string>& status) {
  auto k = parse_kind(kind);
  auto l = parse_level(level);
  if (!k || !l) {
    throw std::runtime_error("unknown kind or level \"" + kind + "\" / \"" + level + "\"");
  }
  event.kind = *k;
  event.level = *l;
  if (status) {
    auto st = parse_status(*status);
    if (!st) throw std::runtime_error("unknown status \"" + *status + "\"");
    event.status = *st;
  }
}

void read_event_fields(const std::string& fields_json, OwnedEvent& event) {
  std::string line = R"({"ts_ns":0,"kind":"log","fields":)" + fields_json + "}";
  auto parsed = parse_json_event(line);
  if (!parsed) {
    throw std::runtime_error("stored fields are not a JSON object: " +
                             (fields_json.empty() ? std::string("(empty)") : fields_json));
  }
  for (const Field& f : parsed->fields()) event.add_field(f.key, f.value);
}

}  // namespace stagelog::detail
