#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "stagelog/event.hpp"
#include "stagelog/field.hpp"
#include "stagelog/sink.hpp"
#include "stagelog/watchdog.hpp"

namespace stagelog {

class Recorder;
class StageScope;
class RunScope;

namespace detail {
class Core;

// A component's shared state. Lives as long as the recorder; Logger handles point at it.
struct Component {
  std::string name;
  std::atomic<Level> level{Level::Info};
};
}  // namespace detail

// What a full ring buffer does to the thread that logs into it.
enum class FullPolicy : std::uint8_t {
  Block,  // Wait for the backend to make room: nothing is lost (default).
  Drop,   // Drop the event and count it; the backend reports "dropped N events from worker X".
};

struct Options {
  // Bytes of ring buffer per logging thread (rounded up to a power of two, at least 4 KiB).
  std::size_t queue_capacity = std::size_t{1} << 20;
  FullPolicy full_policy = FullPolicy::Block;
  // Host name put on every event; empty means gethostname().
  std::string host;
  // Run id for threads that never call set_run(); may stay empty.
  std::string run;
  // Receives sink errors and other backend trouble. Called on the backend thread. The default
  // prints "stagelog: <message>" to stderr, at most 10 times a minute.
  std::function<void(std::string_view)> on_error;
  // Flush buffered events on SIGSEGV, SIGABRT, SIGBUS, SIGFPE, SIGILL and std::terminate,
  // then let the process die as it would have. Installed once per process.
  bool install_crash_handlers = true;
  // Wall-clock time source in ns since the epoch, for tests (a FakeClock). Empty means the
  // CPU's time-stamp counter calibrated against CLOCK_REALTIME on the backend thread.
  std::function<std::int64_t()> clock;
  // The watchdog on the backend thread: "Running (30.0s)" lines for long stages, stuck
  // stages and tasks, silent agents, stale requests and a MONITOR line, all written to every
  // sink like any event (see watchdog.hpp). nullopt turns it off.
  std::optional<WatchdogOptions> watchdog = WatchdogOptions{};
};

// A handle to one component of a recorder ("worker", "brain", "executor"), with its own level.
// Cheap to copy; valid as long as the recorder. Any thread may use it.
class Logger {
 public:
  Logger() = default;

  std::string_view name() const noexcept { return component_->name; }
  Level level() const noexcept { return component_->level.load(std::memory_order_relaxed); }
  void set_level(Level level) noexcept {
    component_->level.store(level, std::memory_order_relaxed);
  }
  // One relaxed atomic load: a call below the level formats and copies nothing.
  bool enabled(Level level) const noexcept {
    return level >= component_->level.load(std::memory_order_relaxed);
  }

  // Records a message with fields. Never throws, never allocates after the calling thread's
  // first event (which creates its ring buffer).
  void log(Level level, std::string_view message, std::span<const Kv> fields = {}) const noexcept;

  template <typename... F>
  void trace(std::string_view message, const F&... fields) const noexcept {
    log_if(Level::Trace, message, fields...);
  }
  template <typename... F>
  void debug(std::string_view message, const F&... fields) const noexcept {
    log_if(Level::Debug, message, fields...);
  }
  template <typename... F>
  void info(std::string_view message, const F&... fields) const noexcept {
    log_if(Level::Info, message, fields...);
  }
  template <typename... F>
  void warning(std::string_view message, const F&... fields) const noexcept {
    log_if(Level::Warning, message, fields...);
  }
  template <typename... F>
  void error(std::string_view message, const F&... fields) const noexcept {
    log_if(Level::Error, message, fields...);
  }
  template <typename... F>
  void critical(std::string_view message, const F&... fields) const noexcept {
    log_if(Level::Critical, message, fields...);
  }

  // A structured event of any kind, recorded whatever the component's level (sinks still
  // filter by theirs): what Agent uses for lifecycle, heartbeat, task and request events.
  // `subject` goes in the event's stage field (a task's class, a request's name). When
  // begin_ticks is not 0 it is a now_ticks() value and the event carries the time since.
  // fields_in_message: see Event::fields_in_message. `worker`, when not empty, is the worker
  // the event is about instead of the calling thread's (a heartbeat thread beating for an agent).
  void event(Kind kind, Level level, Status status, std::string_view subject,
             std::string_view message, std::span<const Kv> fields = {},
             std::int64_t begin_ticks = 0, bool fields_in_message = false,
             std::string_view worker = {}) const noexcept;
  // The recorder's clock, in its own ticks, for event()'s begin_ticks.
  std::int64_t now_ticks() const noexcept;
  // Seconds from a now_ticks() value to now.
  double seconds_since(std::int64_t ticks) const noexcept;

  Recorder& recorder() const noexcept { return *recorder_; }

 private:
  friend class Recorder;
  friend class StageScope;
  friend class RunScope;
  Logger(Recorder* recorder, detail::Component* component) noexcept
      : recorder_(recorder), component_(component) {}

  template <typename... F>
  void log_if(Level level, std::string_view message, const F&... fields) const noexcept {
    if (!enabled(level)) return;
    if constexpr (sizeof...(F) == 0) {
      record(level, message, {});
    } else {
      const Kv list[] = {fields...};
      record(level, message, std::span<const Kv>(list, sizeof...(F)));
    }
  }
  // log() without the level check, for callers that made it already.
  void record(Level level, std::string_view message, std::span<const Kv> fields) const noexcept;

  Recorder* recorder_ = nullptr;
  detail::Component* component_ = nullptr;
};

// Owns the sinks and the one backend thread that formats and writes every event.
//
// Threads that log each get their own single-producer ring buffer, created on their first
// event; a record there is a small binary struct of copied arguments. Formatting, clock
// conversion, sink I/O and rule checks all happen on the backend thread, so sinks need no locks.
//
// Lifetime: the recorder must outlive every Logger, StageScope and RunScope made from it, and
// every thread still logging into it. Its destructor flushes everything and joins the backend.
// After fork(), the child keeps logging: see docs/ARCHITECTURE.md.
class Recorder {
 public:
  explicit Recorder(Options options = {});
  ~Recorder();
  Recorder(const Recorder&) = delete;
  Recorder& operator=(const Recorder&) = delete;

  // Any thread; the sink sees events recorded after this call returns. Throws Error if null.
  void add_sink(std::shared_ptr<Sink> sink);

  // The logger for a component; the same name gives the same component. Its level comes from
  // <NAME>_LOG_LEVEL (upper-cased, non-alphanumerics as '_'), else STAGELOG_LEVEL, else INFO;
  // an invalid value logs a warning naming the variable and uses INFO.
  Logger component(std::string_view name);
  // The component "app", for programs that have one.
  Logger& logger() noexcept { return default_logger_; }

  // The worker id and run id of the calling thread's following events ("T0_00", "gpu-1").
  // A thread that never sets a worker is "t<N>", N counting threads in order of first event.
  void set_worker(std::string_view worker) noexcept;
  void set_run(std::string_view run) noexcept;

  // Returns when every event recorded before the call (by any thread) has been written to
  // every sink and the sinks have been flushed.
  void flush();

  // Events dropped so far under FullPolicy::Drop, all threads.
  std::uint64_t dropped() const noexcept;

  std::int64_t pid() const noexcept;
  const std::string& host() const noexcept;

  detail::Core& core() noexcept { return *core_; }

 private:
  std::unique_ptr<detail::Core> core_;
  Logger default_logger_;
};

}  // namespace stagelog
