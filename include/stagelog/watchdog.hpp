#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "stagelog/event.hpp"

namespace stagelog {

// Thresholds and intervals of the watchdog's rules. Zero disables a rule. Per-name overrides
// win over the defaults: a stage by its name ("AGENT"), a task by its class ("llm"), a
// request by what it asks for ("load_llm"). Where seed 001's brain has a number (a task
// processing for more than 5 minutes, a heartbeat older than 60 s, a load_llm open for more
// than 60 s) the default is that number.
struct WatchdogOptions {
  using Duration = std::chrono::nanoseconds;
  using Overrides = std::map<std::string, Duration, std::less<>>;

  // An open stage logs "Stage: AGENT - Running (30.0s)" this often.
  Duration progress_interval = std::chrono::seconds(30);
  // A stage or task open longer than this is stuck.
  Duration stage_threshold = std::chrono::seconds(300);
  Overrides stage_thresholds;
  Duration task_threshold = std::chrono::seconds(300);  // Seed 001: "processing > 5 minutes".
  Overrides task_thresholds;
  // A request open longer than this while some worker still waits for it is stale.
  Duration request_threshold = std::chrono::seconds(60);
  Overrides request_thresholds;
  // A worker that heartbeats (or is an Agent: it said "initialized" or "starting") and then
  // sends no heartbeat for this long is silent. A worker that never sent one is timed from
  // its first event.
  Duration heartbeat_timeout = std::chrono::seconds(60);
  // The "MONITOR: Workers: 3/4 alive, ..." line.
  Duration summary_interval = std::chrono::seconds(60);
  // A warning that still holds is repeated at threshold x2, x4, x8 ... of time open, but at
  // least every max_repeat.
  Duration max_repeat = std::chrono::hours(1);
  // Ask the kernel whether a worker's process still lives (kill(pid, 0)) when it runs on this
  // host; a process gone without a "shutting down" is crashed. Off for replays of old files.
  bool check_processes = true;
  // Seed 001's words for what its brain says ("Stuck tasks detected: [{'task_id': ...}]",
  // "MONITOR: GPUs: 2/5, Workers: 3/3, Queue: 123 (llm:123), Processing: 2, Stuck: 2", "...
  // still have no model"), so greps and alerts written against the seed's text match. false:
  // stagelog's own, which name the pid, host and last message in the line.
  bool seed_wording = true;
  // The MONITOR event's completed_last_5min field counts task ends this recent (seed 001's
  // _count_recent_completions(300)).
  Duration completions_window = std::chrono::minutes(5);
};

// What a worker is doing, as the watchdog sees it.
enum class WorkerState : std::uint8_t { Running, Idle, Stuck, Silent, Crashed, Done };
std::string_view worker_state_name(WorkerState state) noexcept;  // "running", "idle" ...

// One worker's row in a live view.
struct WorkerView {
  std::string worker;
  WorkerState state = WorkerState::Idle;
  std::string stage;  // The innermost open stage, or "".
  std::int64_t stage_since_ns = 0;
  std::string task;  // The open task's id, or "".
  std::string task_class;
  std::int64_t first_event_ns = 0;
  std::int64_t last_event_ns = 0;
  std::int64_t last_heartbeat_ns = 0;  // 0: none yet.
  std::uint64_t tasks_done = 0;
  std::uint64_t tasks_failed = 0;
  std::uint64_t stages_done = 0;
  std::uint64_t stages_failed = 0;
  std::string last_message;
  std::int64_t pid = 0;
  std::string host;
};

// Folds events into per-worker state (open stages, tasks and requests, last heartbeat, last
// event, pid and host, counters) and checks its rules when the clock ticks. It reports what
// it finds as events through `report`. With seed_wording (the default), in seed 001's words:
//
//   Stage: AGENT - Running (30.0s)                               stage event, INFO
//   Stage AGENT on gpu-1 (pid 812, host h1) open for 301s (threshold: 300s); last message: ...
//   Stuck tasks detected: [{'task_id': 'd5de16d7', 'assigned_to': 'gpu-1', 'elapsed_min': 6,
//   'name': ''}]
//   Worker gpu-1 last heartbeat 90s ago (threshold: 60s)
//   Worker gpu-1 has sent no heartbeat in the 61s since it started (threshold: 60s)
//   Worker gpu-2 (pid 815, host h1) crashed: process gone without a shutdown; open: ...
//   load_llm task available for 62s but workers ['gpu-1', 'gpu-3'] still have no model
//   recovered: Stage AGENT on gpu-1 ended completed after 412s
//   MONITOR: GPUs: 2/5, Workers: 3/3, Queue: 123 (llm:123), Processing: 2, Stuck: 2
//
// Without it, a task's and a request's lines are stagelog's own ("Task d5de16d7 (llm) on gpu-1
// (pid 812, host h1) open for 301s (threshold: 300s); last message: ...", "Request 7f3a
// (load_llm) open for 62s but workers [gpu-1] still wait for it (threshold: 60s)"), silence
// lines end in "; last message: ...", and MONITOR reads "MONITOR: Workers: 3/4 alive, Stages:
// AGENT:2 JUDGE:1, Tasks: processing 2, stuck 1, orphaned 1, Queue: llm:123".
//
// Seed-worded times are Python's f"{s:.0f}s"; the others read "2.5s" below ten seconds and
// "90s" above. A warning that still holds repeats at 2x, 4x, 8x ... its threshold of time open
// (a late tick gives one warning and keeps that schedule); the seed-worded stuck-task line lists
// every task past its threshold whenever one of them is due. A crashed worker's open items and
// its silence are reported once each; a worker that reported its own crash (a lifecycle
// "failed" event) is crashed without a second report, and a shutdown after that crash (seed
// 001's "Worker crashed in main loop", then "Worker shutting down") leaves it crashed. The
// open tasks of a worker that crashed, shut down or went silent stay counted (processing,
// stuck past the threshold, and orphaned) until another worker claims or ends them.
//
// MONITOR: GPUs counts the agents whose lifecycle carried a "gpu" field (Agent::initialized
// with kv("gpu", 1)), Workers the other workers that heartbeat or have a lifecycle, each alive
// (neither done, crashed nor silent) over all; either is left out when there are none. The
// queue is the last "queue" field any event carried: "llm:123, cpu:4" prints as "127 (llm:123,
// cpu:4)", a bare count as itself; no queue field yet leaves "Queue:" out. The line stops
// after one that finds nobody alive. A request asked again under the same id keeps its clock.
// Processes are checked every 0.5 s; a zombie counts as dead.
//
// Every reported event has component "watchdog" and a field "rule" (running, stuck_stage,
// stuck_task, silent, crashed, stale_request, recovered, monitor); events with component
// "watchdog" are never folded back in, so a watchdog can read files another one wrote. MONITOR
// carries alive, workers, gpus, gpus_alive, processing, stuck, orphaned, queue, queue_total and
// completed_last_5min fields.
//
// The same class runs in the recorder's backend thread (Options::watchdog) and in
// `stagelog tail` and the server. It is not thread-safe: one thread calls everything. Time is
// the events' wall clock in ns; tick() with the current time (a FakeClock in tests). A rule
// fires on the first tick at or after its deadline; next_deadline() says when that is.
class Watchdog {
 public:
  using Report = std::function<void(const Event&)>;

  Watchdog(WatchdogOptions options, Report report);
  ~Watchdog();
  Watchdog(Watchdog&&) noexcept;
  Watchdog& operator=(Watchdog&&) noexcept;

  // Folds one event in. Events should come in time order per worker.
  void observe(const Event& event);
  // Checks every rule against now_ns and reports what is due.
  void tick(std::int64_t now_ns);
  // Reports a MONITOR line for now_ns at once, whatever the interval (the closing line of a
  // replay or of a tail that stops). Nothing when no worker has been seen.
  void monitor(std::int64_t now_ns);
  // The earliest time a rule may fire; INT64_MAX when nothing is pending.
  std::int64_t next_deadline() const noexcept;

  // Every known worker at now_ns, by name.
  std::vector<WorkerView> workers(std::int64_t now_ns) const;
  // The latest queue snapshot ("llm:123, cpu:4"), from the last event with a "queue" field.
  const std::string& queue() const noexcept;
  const WatchdogOptions& options() const noexcept;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace stagelog
