#pragma once

#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <csignal>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "core/clock.hpp"
#include "core/codec.hpp"
#include "core/ring.hpp"
#include "stagelog/recorder.hpp"
#include "stagelog/watchdog.hpp"

namespace stagelog::detail {

// One logging thread's connection to one recorder.
struct ThreadQueue {
  ThreadQueue(std::size_t capacity, std::uint64_t core, std::uint32_t thread_index)
      : ring(capacity), core_id(core), index(thread_index) {}

  Ring ring;
  const std::uint64_t core_id;
  const std::uint32_t index;  // "t<index>" until the thread names its worker.

  // Producer side (the owning thread).
  std::uint64_t next_stage_id = 1;
  volatile std::sig_atomic_t in_push = 0;  // A signal handler on this thread must not push.
  std::uint8_t run_len = 0;
  char run[63] = {};
  std::atomic<std::uint64_t> dropped{0};
  std::atomic<bool> closed{false};  // The thread has exited; reap once drained.

  // Backend side.
  std::string worker;
  std::string run_id;
  std::uint64_t dropped_reported = 0;
};

// One recorder's machinery. Its code is in three files along the hot path / backend seam:
// producer.cpp (the emit_* calls of the logging threads: find the thread's ring, size, reserve,
// encode, publish), backend.cpp (the one backend thread: merge the rings, decode, call the sinks
// and the watchdog, flush) and core.cpp (construction, and the calls from any thread that set
// up or steer the backend: add_sink, flush, crash and fork handling).
class Core {
 public:
  Core(Recorder* owner, Options options);
  ~Core();

  void start_backend();
  void stop_backend() noexcept;

  // --- Hot path (any thread; producer.cpp) ---
  ThreadQueue* queue() noexcept {
    if (t_core_id_ == id_) [[likely]] {
      return t_queue_;
    }
    return queue_slow();
  }
  std::int64_t now() const noexcept { return fake_clock_ ? options_.clock() : ticks(); }
  double ticks_to_seconds(std::int64_t t) const noexcept {
    return fake_clock_ ? static_cast<double>(t) * 1e-9
                       : static_cast<double>(t) * clock_.ns_per_tick() * 1e-9;
  }

  void emit_log(Level level, const Component* component, std::string_view message,
                std::span<const Kv> fields) noexcept;
  // A lifecycle event from the terminate handler: like a log, but never filtered.
  void emit_lifecycle(Level level, const Component* component, std::string_view message,
                      std::span<const Kv> fields) noexcept;
  // Returns {stage id, begin ts}.
  std::pair<std::uint64_t, std::int64_t> emit_stage_begin(const Component* component,
                                                          std::string_view name,
                                                          std::span<const Kv> fields) noexcept;
  void emit_stage_end(const Component* component, std::uint64_t id, std::int64_t begin_ts,
                      std::string_view name, Status status, std::string_view message,
                      std::span<const Kv> fields) noexcept;
  // Any kind of event, always recorded (no component level): lifecycle, heartbeat, task ...
  // begin_ts, when not 0, is a now() value the event reports the time since.
  void emit_structured(Kind kind, Level level, Status status, const Component* component,
                       std::string_view subject, std::string_view message,
                       std::span<const Kv> fields, std::int64_t begin_ts,
                       bool fields_in_message = false, std::string_view worker = {}) noexcept;
  std::int64_t emit_run_begin(const Component* component) noexcept;
  void emit_run_end(const Component* component, std::int64_t begin_ts, Status status,
                    std::string_view message) noexcept;
  // The calling thread's worker or run id from its next event on; never dropped.
  void set_context(ContextKey key, std::string_view value) noexcept;
  std::string_view current_run() noexcept;

  // The recorder closes normally (its destructor, or exit()): one lifecycle event "recorder
  // closed", completed, with the field recorder_closed=true, at DEBUG. A watchdog elsewhere then
  // knows that this process's workers are done, not crashed, whether or not each said shutdown
  // (thread workers seldom do). Once per Core; never from a crash.
  void emit_closed() noexcept;

  // For signal handlers: record a crash on the calling thread's queue if it is safe to.
  void emit_crash_from_signal(std::string_view message) noexcept;

  // --- Setup and control (any thread; core.cpp) ---
  void add_sink(std::shared_ptr<Sink> sink);
  Component* component(std::string_view name, bool* created = nullptr);
  void flush();
  std::uint64_t dropped() const noexcept;
  // Signal-safe: asks the backend to write out everything, waits up to timeout_ns.
  void crash_flush(std::int64_t timeout_ns) noexcept;
  // fork() support, called from pthread_atfork handlers.
  void fork_prepare() noexcept;
  void fork_parent() noexcept;
  void fork_child() noexcept;
  void make_watchdog();

  std::uint64_t id() const noexcept { return id_; }
  std::int64_t pid() const noexcept { return pid_.load(std::memory_order_relaxed); }
  const std::string& host() const noexcept { return host_; }
  const Options& options() const noexcept { return options_; }
  Recorder* owner() const noexcept { return owner_; }
  bool is_backend_thread() const noexcept;

 private:
  // Producer (producer.cpp).
  ThreadQueue* queue_slow() noexcept;
  template <typename R>
  void emit_message(Level level, const Component* component, std::string_view message,
                    std::span<const Kv> fields) noexcept;
  template <typename Fill>
  void push(ThreadQueue& q, std::size_t bytes, bool keep, Fill&& fill) noexcept;
  void wait_for_room(ThreadQueue& q, std::size_t bytes) noexcept;

  // Backend thread (backend.cpp).
  void backend_main();
  void refresh_queues();
  void adopt_sinks();
  std::size_t drain(bool to_snapshot, std::size_t limit);
  void process(ThreadQueue& q, const RecordHeader* header);
  // To every sink at or below the event's level, then to the watchdog. below_level: the event
  // is under its component's level; sinks that obey component levels leave it out.
  void dispatch(const Event& event, bool below_level = false);
  void flush_sinks();
  void tick_sinks();
  void report_drops();
  void reap_closed();
  void report_error(std::string_view message) noexcept;
  std::int64_t to_ns(std::int64_t tick) const noexcept {
    return fake_clock_ ? tick : clock_.to_ns(tick);
  }
  std::int64_t duration_ns(std::int64_t ticks) const noexcept {
    return fake_clock_ ? ticks : clock_.duration_ns(ticks);
  }

  // initial-exec: one %fs-relative load, where the PIC default would call __tls_get_addr.
  [[gnu::tls_model("initial-exec")]] static thread_local ThreadQueue* t_queue_;
  [[gnu::tls_model("initial-exec")]] static thread_local std::uint64_t t_core_id_;

  Recorder* owner_;
  Options options_;
  const std::uint64_t id_;
  const bool fake_clock_;
  std::size_t max_record_;
  TickClock clock_;
  std::atomic<std::int64_t> pid_;
  std::string host_;

  mutable std::mutex mu_;  // Guards queues_, pending_sinks_, components_, thread_count_.
  std::vector<std::shared_ptr<ThreadQueue>> queues_;
  std::atomic<std::uint64_t> queues_version_{0};
  std::vector<std::shared_ptr<Sink>> pending_sinks_;
  std::atomic<bool> sinks_pending_{false};
  std::deque<Component> components_;
  std::uint32_t thread_count_ = 0;
  std::uint64_t reaped_dropped_ = 0;  // Drops of threads whose queues are gone.
  Component* internal_component_ = nullptr;

  // Backend-only state.
  std::vector<std::shared_ptr<ThreadQueue>> active_;
  std::uint64_t active_version_ = ~std::uint64_t{0};
  std::vector<std::shared_ptr<Sink>> sinks_;
  std::unique_ptr<Watchdog> watchdog_;  // Options::watchdog; its reports go to every sink.
  std::vector<Field> fields_;
  struct Head {
    ThreadQueue* q;
    const RecordHeader* header;
    std::uint64_t end;
  };
  std::vector<Head> heads_;
  bool dirty_ = false;
  std::uint64_t error_window_start_ = 0;
  int errors_in_window_ = 0;

  std::unique_ptr<std::thread> backend_;
  std::atomic<pid_t> backend_tid_{0};
  std::mutex wake_mu_;
  std::condition_variable wake_cv_;
  std::condition_variable done_cv_;
  std::atomic<bool> stop_requested_{false};
  std::atomic<bool> exit_recorded_{false};
  std::atomic<bool> backend_running_{false};
  std::atomic<std::uint64_t> flush_requested_{0};
  std::uint64_t flush_done_ = 0;  // Guarded by wake_mu_.
  std::atomic<std::uint64_t> crash_requested_{0};
  std::atomic<std::uint64_t> crash_done_{0};
  std::atomic<bool> fork_pause_requested_{false};
  std::atomic<bool> fork_paused_{false};
};

// Process-wide: crash handlers, fork handlers and the list of live cores they act on
// (process_hooks.cpp).
void register_core(Core* core, bool install_crash_handlers);
void unregister_core(Core* core) noexcept;

// Whether `q` is one of the calling thread's queues (producer.cpp): after fork(), the child
// keeps only the forking thread's.
bool held_by_calling_thread(const ThreadQueue& q) noexcept;

// Small system calls shared by the three files (core.cpp). sleep_ns is async-signal-safe.
void sleep_ns(long ns) noexcept;
pid_t current_tid() noexcept;

}  // namespace stagelog::detail
