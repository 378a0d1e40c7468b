#pragma once

#include <atomic>
#include <cstdint>
#include <exception>
#include <initializer_list>
#include <span>
#include <string>
#include <string_view>
#include <utility>

#include "stagelog/recorder.hpp"

namespace stagelog {

// One worker or agent (a GPU agent, a claim-loop worker) as seed 001 wants it seen: lifecycle,
// heartbeats, tasks, the claim loop and requests, each a structured event that also reads well
// as a line. It keeps its own counters, so shutdown says "completed 42, failed 1" without the
// program counting.
//
// Made on the agent's thread, which becomes worker `name`. The lifecycle, task and claim calls
// belong to that thread; heartbeat() may come from any thread. If the agent is destroyed
// without shutdown() — an exception unwinding, say — the destructor records the shutdown, so a
// crash path still prints one.
class Agent {
 public:
  Agent(Recorder& recorder, std::string_view name, std::string_view component = "worker");
  ~Agent();
  Agent(const Agent&) = delete;
  Agent& operator=(const Agent&) = delete;

  // --- Lifecycle (INFO; crashed is ERROR) ---
  // "initialized gpu=1 port=11435 model=qwen2.5:7b": the attributes are the fields.
  template <typename... F>
  void initialized(const F&... attributes) noexcept {
    const Kv list[] = {attributes..., Kv{}};
    lifecycle("initialized", Status::Starting, std::span<const Kv>(list, sizeof...(F)));
  }
  void starting() noexcept;
  // "crashed: KeyError: 'model_name' | stack: ..." with fields exception, error and stack (the
  // text line carries the stack too, escaped onto one line, so a crash reads whole in the file).
  void crashed(std::string_view exception_type, std::string_view message,
               std::string_view stack = {}) noexcept;
  // The exception being handled (call it in a catch block), with a stack trace of the caller.
  void crashed(std::exception_ptr error) noexcept;
  // "shutting down - completed 42, failed 1". Once; later calls do nothing.
  void shutdown() noexcept;

  // --- Heartbeat (DEBUG) ---
  // "heartbeat status=idle idle_s=34 tasks_completed=42" plus the given fields (GPU stats),
  // recorded as the agent's whatever thread calls it.
  template <typename... F>
  void heartbeat(const F&... fields) noexcept {
    const Kv list[] = {fields..., Kv{}};
    beat(std::span<const Kv>(list, sizeof...(F)));
  }

  // --- Tasks (INFO; failed is ERROR) ---
  void claimed(std::string_view task_id, std::string_view task_class) noexcept;
  void completed(std::string_view task_id) noexcept;
  void failed(std::string_view task_id, std::string_view error) noexcept;

  // --- Claim loop (DEBUG, filtered by the component's level) ---
  void attempt(std::string_view task_id) noexcept;
  void lost_race(std::string_view task_id) noexcept;
  void lock_timeout(std::string_view task_id) noexcept;
  // Nothing claimed: "No suitable tasks - Queue: [llm:125], Preferred: [resource, script, cpu,
  // llm], Model loaded: false", or "Queue empty".
  void nothing_claimed(std::span<const std::pair<std::string_view, int>> queue,
                       std::span<const std::string_view> preferred, bool model_loaded) noexcept;
  void nothing_claimed(std::initializer_list<std::pair<std::string_view, int>> queue,
                       std::initializer_list<std::string_view> preferred,
                       bool model_loaded) noexcept {
    nothing_claimed(std::span(queue.begin(), queue.size()),
                    std::span(preferred.begin(), preferred.size()), model_loaded);
  }

  // --- Requests that expect fulfilment (the seed's load_llm) ---
  void request(std::string_view id, std::string_view what,
               std::span<const std::string_view> waiting_workers) noexcept;
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

  Logger log_;
  std::string name_;
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
