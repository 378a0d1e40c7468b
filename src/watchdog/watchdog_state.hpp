#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "stagelog/event.hpp"
#include "stagelog/watchdog.hpp"

namespace stagelog::detail {

// The component of every report, and the one observe() ignores.
inline constexpr std::string_view kWatchdogComponent = "watchdog";
inline constexpr std::int64_t kNever = std::numeric_limits<std::int64_t>::max();

// Something that opens and closes: a stage, a task or a request.
struct OpenItem {
  std::string name;   // Stage name, task id, request id.
  std::string cls;    // Task class, request's "what".
  std::string label;  // Tasks: the task's "name" field (seed 001's task['name']).
  std::string run;
  std::int64_t since_ns = 0;
  std::int64_t threshold_ns = 0;    // 0: never stuck.
  std::int64_t warn_offset_ns = 0;  // Time open at which the next warning is due.
  int warnings = 0;
  std::int64_t next_progress_ns = kNever;  // Stages: the next "Running" line.
  std::vector<std::string> waiting;        // Requests: workers that wait for it.
  std::string owner;                       // Requests: who asked.

  std::int64_t next_warning_ns() const noexcept {
    return threshold_ns > 0 ? since_ns + warn_offset_ns : kNever;
  }
};

struct Worker {
  std::string name;
  std::string host;
  std::string last_message;
  std::int64_t pid = 0;
  std::int64_t first_ns = 0;
  std::int64_t last_ns = 0;
  std::int64_t last_beat_ns = 0;
  bool beats = false;  // Sent a heartbeat, or is an agent: must keep beating.
  bool gpu = false;    // Its lifecycle carried a "gpu" field: a GPU agent in MONITOR.
  bool done = false;
  bool crashed = false;
  std::vector<OpenItem> stages;  // In the order they opened.
  std::vector<OpenItem> tasks;
  int silent_warnings = 0;
  std::int64_t silent_offset_ns = 0;
  std::int64_t next_pid_check_ns = 0;
  std::uint64_t tasks_done = 0;
  std::uint64_t tasks_failed = 0;
  std::uint64_t stages_done = 0;
  std::uint64_t stages_failed = 0;

  bool alive() const noexcept { return !done && !crashed; }
  std::int64_t beat_base_ns() const noexcept { return last_beat_ns != 0 ? last_beat_ns : first_ns; }
};

}  // namespace stagelog::detail

namespace stagelog {

// The Watchdog's pimpl. It is a member of Watchdog, so it lives in namespace stagelog, not
// detail. Its fold (observe) is in watchdog_state.cpp, its rules and reports (tick, summary,
// the deadline) in watchdog_rules.cpp, the public Watchdog and its views in watchdog.cpp. Not
// thread-safe: one thread calls everything, as for Watchdog.
struct Watchdog::State {
  using OpenItem = detail::OpenItem;
  using Worker = detail::Worker;

  WatchdogOptions options;
  Report report;
  std::map<std::string, Worker, std::less<>> workers;
  std::vector<OpenItem> requests;
  std::string queue;
  std::deque<std::int64_t> completions;  // Task ends within options.completions_window.
  std::string host;      // This process's host and pid: reports about no worker carry them, and
  std::int64_t pid = 0;  // the process check looks only at other processes on this host.
  Worker* last_worker = nullptr;  // The last event's worker: events come in runs per thread.
  bool quiet_summary = false;     // The last MONITOR line had no live worker.
  bool tracked = false;           // Some worker has stages, tasks, heartbeats or a lifecycle.
  std::int64_t next_summary_ns = detail::kNever;
  mutable std::int64_t deadline_ns = detail::kNever;
  mutable bool dirty = true;

  // --- Folding (watchdog_state.cpp) ---

  void observe(const Event& e);
  Worker& worker(const Event& e);
  OpenItem open(std::string_view name, std::string_view cls, const Event& e,
                std::int64_t threshold) const;
  // Removes the last item called `name` (or the last one when name is empty) and returns it.
  static std::optional<OpenItem> close(std::vector<OpenItem>& items, std::string_view name);
  void new_incarnation(Worker& w, const Event& e);
  void track();
  void start_summaries(std::int64_t ts);
  // Another worker claimed or ended task `id`: it is no longer open on any other worker.
  void release_elsewhere(const Worker& w, std::string_view id);
  void observe_stage(Worker& w, const Event& e);
  void observe_task(Worker& w, const Event& e);
  void observe_request(const Event& e);
  void observe_beat(Worker& w, const Event& e);
  void observe_lifecycle(Worker& w, const Event& e);

  // --- Reports and rules (watchdog_rules.cpp) ---

  struct Finding;  // One report before it becomes an Event.
  void emit(std::int64_t now, Finding f);
  std::string last_words(const Worker& w) const;
  // "stage transcribe 3.2s, task d5de16d7 (transcribe) 3.3s", or "nothing open".
  std::string open_items(const Worker& w, std::int64_t now) const;
  // The "recovered:" line of an item that was warned about and has now closed with e.
  void recovered(const Event& e, const Worker* w, const OpenItem& item, std::string_view what,
                 std::string_view rule);
  // The "recovered:" line of a silent worker whose heartbeat at beat_ns came back.
  void resumed(const Worker& w, std::int64_t beat_ns);
  void crash(Worker& w, std::int64_t now, std::string_view reason);

  void tick(std::int64_t now);
  void check_worker(Worker& w, std::int64_t now);
  // A warning is repeated while the worker lives; a crashed worker's items are reported once.
  bool due(const OpenItem& item, const Worker& w, std::int64_t now) const;
  void check_open(Worker& w, OpenItem& item, std::int64_t now, std::string_view rule,
                  std::string_view what);
  // Seed wording: one "Stuck tasks detected: [...]" line for every task past its threshold,
  // when one of them is due; moves each due task's schedule on.
  void check_tasks(std::int64_t now);
  std::int64_t silent_deadline(const Worker& w) const;
  void check_silence(Worker& w, std::int64_t now);
  // Workers a request waits for that still live; an unknown worker counts as waiting.
  std::vector<std::string_view> still_waiting(const OpenItem& r) const;
  void check_request(OpenItem& r, std::int64_t now);
  bool silent(const Worker& w, std::int64_t now) const;
  void summary(std::int64_t now);
  std::string seed_summary(std::int64_t now, std::size_t processing, std::size_t stuck) const;
  std::int64_t compute_deadline() const;

  // --- Views (watchdog.cpp) ---

  bool stuck(const Worker& w, std::int64_t now) const;
  WorkerState state_of(const Worker& w, std::int64_t now) const;
};

}  // namespace stagelog
