#pragma once

#include <cstdint>
#include <forward_list>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace stagelog {

enum class Level : std::uint8_t { Trace, Debug, Info, Warning, Error, Critical, Off };

// What an event reports. See DESIGN.md: one event model for the recorder, the watchdog and
// the server.
// Task and Request extend DESIGN.md's list: like stages they open and close, and the watchdog
// watches the open ones (a task claimed and never finished, a load_llm nobody picks up).
enum class Kind : std::uint8_t { Stage, Log, Heartbeat, Lifecycle, Node, Run, Task, Request };

enum class Status : std::uint8_t {
  None,
  Starting,
  Running,
  Completed,
  Failed,
  Skipped,
  InProgress,
};

// Upper-case names as they appear in text lines: "INFO", "WARNING" ...
std::string_view level_name(Level level) noexcept;
// Lower-case names as they appear in JSON: "info", "warning" ...
std::string_view level_json_name(Level level) noexcept;
std::string_view kind_name(Kind kind) noexcept;
// JSON names: "starting", "completed", "in_progress" ...; "" for Status::None.
std::string_view status_name(Status status) noexcept;

// Case-insensitive; accepts TRACE, DEBUG, INFO, WARNING, WARN, ERROR, CRITICAL, OFF.
std::optional<Level> parse_level(std::string_view text) noexcept;
std::optional<Status> parse_status(std::string_view text) noexcept;
std::optional<Kind> parse_kind(std::string_view text) noexcept;

// A typed value attached to an event: tokens=1247, error_details="...".
using FieldValue = std::variant<std::int64_t, std::uint64_t, double, bool, std::string_view>;

struct Field {
  std::string_view key;
  FieldValue value;
};

// One finished event as sinks see it. The views point into storage owned by the recorder's
// backend thread and are valid only for the duration of Sink::write(); a sink that keeps an
// event copies what it needs.
struct Event {
  std::int64_t ts_ns = 0;  // Wall clock, UTC, nanoseconds since the Unix epoch.
  Kind kind = Kind::Log;
  Level level = Level::Info;
  Status status = Status::None;
  std::string_view run;
  std::string_view worker;
  std::string_view component;
  std::string_view stage;
  std::string_view message;
  std::optional<std::int64_t> elapsed_ns;  // Stage, node and run ends.
  std::span<const Field> fields;
  std::int64_t pid = 0;
  std::string_view host;
  // The message already says what the fields hold ("Claimed task: d5de16d7 (load_llm)"):
  // text formats leave the fields out, JSON keeps them.
  bool fields_in_message = false;
};

// An event that owns its strings: one read back from a file or received over the network.
// view() is valid while the OwnedEvent lives and is not modified.
struct OwnedEvent {
  std::int64_t ts_ns = 0;
  Kind kind = Kind::Log;
  Level level = Level::Info;
  Status status = Status::None;
  std::string run;
  std::string worker;
  std::string component;
  std::string stage;
  std::string message;
  std::optional<std::int64_t> elapsed_ns;
  std::int64_t pid = 0;
  std::string host;
  bool fields_in_message = false;

  OwnedEvent() = default;
  explicit OwnedEvent(const Event& event);  // A deep copy.
  OwnedEvent(const OwnedEvent& other);
  OwnedEvent& operator=(const OwnedEvent& other);
  OwnedEvent(OwnedEvent&&) noexcept = default;
  OwnedEvent& operator=(OwnedEvent&&) noexcept = default;
  ~OwnedEvent() = default;

  // Adds a field, copying the key and a string value.
  void add_field(std::string_view key, FieldValue value);
  std::span<const Field> fields() const noexcept { return fields_; }
  // The first field with this key, or nullptr.
  const FieldValue* field(std::string_view key) const noexcept;
  // An Event whose views point into this object: valid while it lives unchanged.
  Event view() const noexcept;

 private:
  // Keys and string values. A list keeps their addresses (the fields' views point into them)
  // and, unlike a deque, costs no block of its own for an event with few fields.
  std::forward_list<std::string> strings_;
  std::vector<Field> fields_;
};

// The event a recorder writes when it closes normally (its destructor, or exit()): lifecycle,
// completed, field recorder_closed=true. It tells a watchdog elsewhere that the process's
// workers are done, not crashed. It is for machines: JSONL and the server carry it, the text
// formats leave it out.
bool is_recorder_closed(const Event& event) noexcept;

}  // namespace stagelog
