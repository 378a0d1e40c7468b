#include "stagelog/event.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <string>

#include "base/ascii.hpp"

namespace stagelog {

namespace {

using detail::iequals_ascii;

std::string_view trim(std::string_view s) noexcept {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

constexpr std::array<std::string_view, 7> kLevelNames = {"TRACE", "DEBUG",    "INFO", "WARNING",
                                                         "ERROR", "CRITICAL", "OFF"};
constexpr std::array<std::string_view, 7> kLevelJson = {"trace", "debug",    "info", "warning",
                                                        "error", "critical", "off"};
constexpr std::array<std::string_view, 8> kKindNames = {"stage", "log", "heartbeat", "lifecycle",
                                                        "node",  "run", "task",      "request"};
constexpr std::array<std::string_view, 7> kStatusNames = {
    "", "starting", "running", "completed", "failed", "skipped", "in_progress"};

}  // namespace

std::string_view level_name(Level level) noexcept {
  auto i = static_cast<std::size_t>(level);
  return i < kLevelNames.size() ? kLevelNames[i] : "UNKNOWN";
}

std::string_view level_json_name(Level level) noexcept {
  auto i = static_cast<std::size_t>(level);
  return i < kLevelJson.size() ? kLevelJson[i] : "unknown";
}

bool is_recorder_closed(const Event& event) noexcept {
  if (event.kind != Kind::Lifecycle || event.status != Status::Completed) return false;
  return std::any_of(event.fields.begin(), event.fields.end(),
                     [](const Field& f) { return f.key == "recorder_closed"; });
}

std::string_view kind_name(Kind kind) noexcept {
  auto i = static_cast<std::size_t>(kind);
  return i < kKindNames.size() ? kKindNames[i] : "unknown";
}

std::string_view status_name(Status status) noexcept {
  auto i = static_cast<std::size_t>(status);
  return i < kStatusNames.size() ? kStatusNames[i] : "unknown";
}

std::optional<Level> parse_level(std::string_view text) noexcept {
  text = trim(text);
  if (iequals_ascii(text, "WARN")) return Level::Warning;
  for (std::size_t i = 0; i < kLevelNames.size(); ++i) {
    if (iequals_ascii(text, kLevelNames[i])) return static_cast<Level>(i);
  }
  return std::nullopt;
}

std::optional<Status> parse_status(std::string_view text) noexcept {
  for (std::size_t i = 1; i < kStatusNames.size(); ++i) {
    if (iequals_ascii(text, kStatusNames[i])) return static_cast<Status>(i);
  }
  return std::nullopt;
}

std::optional<Kind> parse_kind(std::string_view text) noexcept {
  for (std::size_t i = 0; i < kKindNames.size(); ++i) {
    if (iequals_ascii(text, kKindNames[i])) return static_cast<Kind>(i);
  }
  return std::nullopt;
}

}  // namespace stagelog
