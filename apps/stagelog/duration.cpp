#include "duration.hpp"

namespace stagelog::cli {

std::string check_duration(const std::string& text) {
  if (parse_duration(text)) return {};
  return "'" + text + "' is not a duration (examples: 500ms, 30s, 1.5m, 2h, 7d)";
}

}  // namespace stagelog::cli
