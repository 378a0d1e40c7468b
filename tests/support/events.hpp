#pragma once

#include <chrono>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "fake_clock.hpp"
#include "stagelog/event.hpp"
#include "stagelog/parse.hpp"

namespace stagelog::test {

// A stage event as the recorder would hand it to a sink, for tests of formats and sinks that
// need no recorder. Component "app"; the views must outlive the event.
inline Event stage_event(std::string_view stage, Status status,
                         std::optional<std::int64_t> elapsed_ns = std::nullopt,
                         std::string_view message = {}, std::int64_t ts_ns = FakeClock::kSeedStart,
                         std::string_view worker = "T0_00") {
  Event e;
  e.ts_ns = ts_ns;
  e.kind = Kind::Stage;
  e.status = status;
  e.worker = worker;
  e.component = "app";
  e.stage = stage;
  e.message = message;
  e.elapsed_ns = elapsed_ns;
  return e;
}

// An event of run `run` as the server's ingest receives it (parsed, owning its strings).
inline OwnedEvent run_event(std::string run, Kind kind, Status status, std::int64_t ts_ns,
                            std::string stage) {
  OwnedEvent e;
  e.ts_ns = ts_ns;
  e.kind = kind;
  e.status = status;
  e.run = std::move(run);
  e.stage = std::move(stage);
  return e;
}

// One NDJSON line (no newline) as JsonlSink writes an event and POST /api/v1/events takes it:
// for tests that feed the server. Component "app"; elapsed_ns written when elapsed_ms >= 0.
struct EventLine {
  std::string_view run{};
  std::string_view kind = "stage";
  std::string_view stage{};
  std::string_view status{};
  std::int64_t ts_ns = 0;
  std::string_view worker = "T0_00";
  std::string_view level = "info";
  std::string_view message{};
  std::int64_t elapsed_ms = -1;
  nlohmann::ordered_json fields = nlohmann::ordered_json::object();
};

inline std::string ndjson_line(const EventLine& e) {
  nlohmann::ordered_json j = nlohmann::ordered_json::object();
  j["ts_ns"] = e.ts_ns;
  j["kind"] = e.kind;
  j["level"] = e.level;
  j["run"] = e.run;
  j["worker"] = e.worker;
  j["component"] = "app";
  j["stage"] = e.stage;
  j["status"] = e.status;
  j["message"] = e.message;
  if (e.elapsed_ms >= 0) j["elapsed_ns"] = e.elapsed_ms * 1'000'000;
  j["fields"] = e.fields;
  return j.dump();
}

// The system clock now, in nanoseconds: events posted to a server that purges by expiry.
inline std::int64_t wall_now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// One NDJSON line of a stage event of `run` on worker "w1", as a client posts it.
inline std::string stage_line(const std::string& run, std::string_view stage,
                              std::string_view status, std::int64_t ts_ns,
                              std::string_view message = "") {
  nlohmann::json j = {{"ts_ns", ts_ns}, {"kind", "stage"},  {"run", run},        {"worker", "w1"},
                      {"stage", stage}, {"status", status}, {"message", message}};
  return j.dump() + "\n";
}

}  // namespace stagelog::test
