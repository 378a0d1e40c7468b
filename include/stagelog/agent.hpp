#pragma once

#include <atomic>
#include <cstdint>
#include <exception>
#include <initializer_list>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "stagelog/recorder.hpp"

namespace stagelog {

struct AgentOptions {
  // The component whose level (WORKER_LOG_LEVEL for "worker") governs every line the agent
  // writes: lifecycle, tasks, claim loop and heartbeats alike. Below the level an event still
  // reaches the watchdog, JSONL, the network and heartbeat files (machines keep the record, as
  // seed 001's heartbeat files are written whatever the level), but no text line is written.
  std::string_view component = "worker";
  // Seed 001's words ("GPU agent initialized: gpu-1 (GPU 1), port 11435, model qwen2.5:7b",
  // "Claimed meta task: d5de16d7 (load_llm)", "Heartbeat sent - status: idle, idle: 4s", Python
  // lists and True/False); false: stagelog's terser lines ("initialized gpu=1 ...").
  bool seed_wording = true;
  // Task classes claimed as "meta" tasks: they serve the agent, not the pipeline (seed 001).
  std::vector<std::string> meta_classes = {"load_llm", "unload_llm"};
};

// One worker or agent (a GPU agent, a claim-loop worker) as seed 001 wants it seen: lifecycle,
// heartbeats, tasks, the claim loop and requests, each a structured event that also reads well
// as a line. It keeps its own counters, so shutdown says "completed 42, failed 1" without the
// program counting. An agent whose initialized() carries a "gpu" attribute is a GPU agent
// ("GPU agent gpu-1 starting", "GPU gpu-1 shutting down - completed 42, failed 1"); any other
// is a worker ("Worker crashed in main loop: ConnectionError('refused')", "Worker shutting down
// - completed 15 tasks"), as in seed 001.
//
// Made on the agent's thread, which becomes worker `name`. The lifecycle, task and claim calls
// belong to that thread; heartbeat() may come from any thread. If the agent is destroyed
// without shutdown() — an exception unwinding, say — the destructor records the shutdown, so a
// crash path still prints one.
class Agent {
 public:
  Agent(Recorder& recorder, std::string_view name, std::string_view component = "worker");
  Agent(Recorder& recorder, std::string_view name, AgentOptions options);
  ~Agent();
  Agent(const Agent&) = delete;
  Agent& operator=(const Agent&) = delete;

  // --- Lifecycle (INFO; crashed is ERROR) ---
  // "GPU agent initialized: gpu-1 (GPU 1), port 11435, model qwen2.5:7b" (terse:
  // "initialized gpu=1 port=11435 model=qwen2.5:7b"): the attributes are the fields.
  template <typename... F>
  void initialized(const F&... attributes) noexcept {
    const Kv list[] = {attributes..., Kv{}};
    lifecycle("initialized", Status::Starting, std::span<const Kv>(list, sizeof...(F)));
  }
  // The same with the attributes as a span (for the Python binding).
  void initialized(std::span<const Kv> attributes) noexcept {
    lifecycle("initialized", Status::Starting, attributes);
  }
  void starting() noexcept;
  // "GPU agent crashed: KeyError('model_name') | stack: ..." (terse: "crashed: KeyError:
  // model_name | stack: ...") with fields exception, error and stack (the text line carries the
  // stack too, escaped onto one line, so a crash reads whole in the file).
  void crashed(std::string_view exception_type, std::string_view message,
               std::string_view stack = {}) noexcept;
  // The exception being handled (call it in a catch block), with a stack trace of the caller.
  void crashed(std::exception_ptr error) noexcept;
  // "GPU gpu-1 shutting down - completed 42, failed 1", "Worker shutting down - completed 15
  // tasks" (terse: "shutting down - completed 42, failed 1"). Once; later calls do nothing.
  void shutdown() noexcept;

  // --- Heartbeat (DEBUG) ---
  // "Heartbeat sent - status: idle, idle: 34s" (terse: "heartbeat status=idle idle_s=34
  // tasks_completed=42 model_loaded=false") with fields status, idle_s, tasks_completed and
  // model_loaded plus the given ones (GPU stats, shown after the seed's words), recorded as
  // the agent's whatever thread calls it.
  template <typename... F>
  void heartbeat(const F&... fields) noexcept {
    const Kv list[] = {fields..., Kv{}};
    beat(std::span<const Kv>(list, sizeof...(F)));
  }

  void heartbeat(std::span<const Kv> fields) noexcept { beat(fields); }
  // Whether the agent's model is loaded: the heartbeat's model_loaded (seed 001). Any thread.
  void set_model_loaded(bool loaded) noexcept { model_loaded_.store(loaded); }
  bool model_loaded() const noexcept { return model_loaded_.load(); }

  // --- Tasks (INFO; failed is ERROR) ---
  // "Claimed meta task: d5de16d7 (load_llm)" for a meta class, "Claimed task: ..." otherwise.
  // `task_name` (seed 001's task['name']) is the stuck-task line's 'name'.
  void claimed(std::string_view task_id, std::string_view task_class,
               std::string_view task_name = {}) noexcept;
  void completed(std::string_view task_id) noexcept;
  void failed(std::string_view task_id, std::string_view error) noexcept;

  // --- Claim loop (DEBUG, filtered by the component's level) ---
  void attempt(std::string_view task_id) noexcept;
  void lost_race(std::string_view task_id) noexcept;
  void lock_timeout(std::string_view task_id) noexcept;
  // Nothing claimed: "No suitable tasks - Queue: [llm:125], Preferred: ['resource', 'script',
  // 'cpu', 'llm'], Model loaded: False" (terse: "Preferred: [resource, ...], Model loaded:
  // false"), or "Queue empty". The event's queue field ("llm:125") is the watchdog's queue by
  // class, so it is recorded whatever the level.
  void nothing_claimed(std::span<const std::pair<std::string_view, int>> queue,
                       std::span<const std::string_view> preferred, bool model_loaded) noexcept;
  void nothing_claimed(std::initializer_list<std::pair<std::string_view, int>> queue,
                       std::initializer_list<std::string_view> preferred,
                       bool model_loaded) noexcept {
    nothing_claimed(std::span(queue.begin(), queue.size()),
                    std::span(preferred.begin(), preferred.size()), model_loaded);
  }
  // Saw tasks but lost every race: "Claim attempt: 197 tasks available in ['resource', 'llm'],
  // all claimed by others" (DEBUG). Its queue field ("197") reaches the watchdog whatever the
  // level.
  void all_claimed_by_others(std::uint64_t available,
                             std::span<const std::string_view> preferred) noexcept;
  void all_claimed_by_others(std::uint64_t available,
                             std::initializer_list<std::string_view> preferred) noexcept {
    all_claimed_by_others(available, std::span(preferred.begin(), preferred.size()));
  }

  // --- Requests that expect fulfilment (the seed's load_llm) ---
  // "Request 9a3f (load_llm) for workers [gpu-1, gpu-3]".
  void request(std::string_view id, std::string_view what,
               std::span<const std::string_view> waiting_workers) noexcept;
  // Seed 001's brain inserting a load_llm for waiting tasks: "LLM tasks waiting (125) but no
  // models loaded - inserting load_llm task" (the class upper-cased).
  void request(std::string_view id, std::string_view what,
               std::span<const std::string_view> waiting_workers, std::uint64_t tasks_waiting,
               std::string_view task_class) noexcept;
  void request(std::string_view id, std::string_view what,
               std::initializer_list<std::string_view> waiting_workers, std::uint64_t tasks_waiting,
               std::string_view task_class) noexcept {
    request(id, what, std::span(waiting_workers.begin(), waiting_workers.size()), tasks_waiting,
            task_class);
  }
  void request(std::string_view id, std::string_view what,
               std::initializer_list<std::string_view> waiting_workers) noexcept {
    request(id, what, std::span(waiting_workers.begin(), waiting_workers.size()));
  }
  void fulfilled(std::string_view id) noexcept;

  const std::string& name() const noexcept { return name_; }
  std::uint64_t tasks_completed() const noexcept { return completed_.load(); }
  std::uint64_t tasks_failed() const noexcept { return failed_.load(); }
  const Logger& logger() const noexcept { return log_; }

 private:
  void lifecycle(std::string_view what, Status status, std::span<const Kv> fields) noexcept;
  void beat(std::span<const Kv> fields) noexcept;
  // A DEBUG claim-loop line whose message names the task (the caller checked the level).
  void claim_loop(std::string_view message, std::string_view task_id) noexcept;
  void task_end(std::string_view task_id, Status status, std::string_view error) noexcept;
  void request_event(std::string_view id, std::string_view what,
                     std::span<const std::string_view> waiting_workers,
                     std::string_view message) noexcept;
  bool meta(std::string_view task_class) const noexcept;

  Logger log_;
  std::string name_;
  AgentOptions options_;
  std::atomic<bool> gpu_{false};  // initialized() carried a "gpu" attribute.
  std::atomic<bool> model_loaded_{false};
  std::atomic<std::uint64_t> completed_{0};
  std::atomic<std::uint64_t> failed_{0};
  std::atomic<bool> processing_{false};
  std::atomic<std::int64_t> last_task_end_;  // now_ticks() at the last task's end, or start.
  std::int64_t claim_ticks_ = 0;
  char task_id_[64] = {};
  std::uint8_t task_id_len_ = 0;
  char task_class_[64] = {};
  std::uint8_t task_class_len_ = 0;
  bool shut_down_ = false;
};

}  // namespace stagelog
