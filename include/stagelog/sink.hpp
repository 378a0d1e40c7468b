#pragma once

#include <atomic>

#include "stagelog/event.hpp"

namespace stagelog {

// A destination for finished events. The recorder calls every sink from its one backend
// thread, so a sink needs no locking. A sink may throw: the recorder hands the error to
// Options::on_error and carries on with the next event. A sink sees events at or above its
// level(); the level may be changed from any thread.
class Sink {
 public:
  explicit Sink(Level level = Level::Trace) noexcept : level_(level) {}
  virtual ~Sink() = default;
  Sink(const Sink&) = delete;
  Sink& operator=(const Sink&) = delete;

  virtual void write(const Event& event) = 0;
  virtual void flush() {}  // When the backend runs out of work, on Recorder::flush() and at exit.
  // Called by the backend on each pass of its loop (every few ms, busy or not) with the wall
  // clock: for sinks that redraw or check time (the progress display, the watchdog).
  virtual void tick(std::int64_t /*now_ns*/) {}

  // Whether this sink leaves out events below their component's level (an agent's heartbeat
  // under WORKER_LOG_LEVEL=INFO, its lifecycle under ERROR). Sinks that write lines for people
  // (text, console, per-worker files) do; records that machines read (JSONL, the network,
  // heartbeat files) and the progress display, which counts nodes from the events, keep every
  // event the recorder was given.
  virtual bool obeys_component_levels() const noexcept { return false; }

  Level level() const noexcept { return level_.load(std::memory_order_relaxed); }
  void set_level(Level level) noexcept { level_.store(level, std::memory_order_relaxed); }

 private:
  std::atomic<Level> level_;
};

}  // namespace stagelog
