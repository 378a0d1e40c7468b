// The backend thread: the one consumer of every ring. Each pass it picks up new rings and
// sinks, merges the rings' records by timestamp, decodes each (codec.hpp) into an Event whose
// strings point into the ring, hands it to every sink and then the watchdog, ticks them, and
// flushes the sinks when it runs out of work or a flush, crash drain, fork or stop asks. Sinks
// and the watchdog are only ever called here, so they need no locks. Any exception they throw
// goes to Options::on_error.

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <limits>
#include <string>

#include "core/core.hpp"

namespace stagelog::detail {

namespace {

constexpr std::size_t kBatch = 4096;
constexpr std::size_t kSmallBatch = 256;
constexpr auto kIdleWait = std::chrono::milliseconds(2);
constexpr auto kBatchWait = std::chrono::microseconds(200);

}  // namespace

void Core::backend_main() {
  backend_tid_.store(current_tid(), std::memory_order_relaxed);
  for (;;) {
    if (fork_pause_requested_.load(std::memory_order_acquire)) {
      refresh_queues();
      while (drain(true, std::numeric_limits<std::size_t>::max()) != 0) {
      }
      flush_sinks();
      fork_paused_.store(true, std::memory_order_release);
      while (fork_pause_requested_.load(std::memory_order_acquire)) sleep_ns(50'000);
      fork_paused_.store(false, std::memory_order_release);
      continue;
    }
    // Requests first, then the list of rings: a ring created before a flush, crash or stop
    // request was made is then in the list this iteration drains.
    const std::uint64_t flush_ticket = flush_requested_.load(std::memory_order_acquire);
    const std::uint64_t crash_ticket = crash_requested_.load(std::memory_order_acquire);
    const bool stopping = stop_requested_.load(std::memory_order_acquire);
    refresh_queues();
    adopt_sinks();
    if (!fake_clock_) clock_.maybe_resync();
    std::uint64_t flushed;
    {
      std::lock_guard lock(wake_mu_);
      flushed = flush_done_;
    }
    const bool must_drain = flush_ticket != flushed || stopping ||
                            crash_ticket != crash_done_.load(std::memory_order_relaxed);

    std::size_t n = 0;
    if (must_drain) {
      // Everything published before now, from every thread, in time order.
      for (std::size_t m; (m = drain(true, std::numeric_limits<std::size_t>::max())) != 0;) {
        n += m;
        if (!stopping) break;
      }
    } else {
      n = drain(false, kBatch);
    }
    report_drops();
    tick_sinks();
    if (must_drain || n == 0) flush_sinks();
    if (crash_ticket != crash_done_.load(std::memory_order_relaxed)) {
      crash_done_.store(crash_ticket, std::memory_order_release);
    }
    if (flush_ticket != flushed) {
      {
        std::lock_guard lock(wake_mu_);
        flush_done_ = flush_ticket;
      }
      done_cv_.notify_all();
    }
    reap_closed();
    if (stopping && n == 0) break;
    if (n < kSmallBatch) {
      // Caught up: wait instead of polling the rings' write positions, which would pull their
      // cache lines away from the producers on every record they publish.
      std::unique_lock lock(wake_mu_);
      wake_cv_.wait_for(lock, n == 0 ? kIdleWait : kBatchWait, [&] {
        return stop_requested_.load(std::memory_order_relaxed) ||
               flush_requested_.load(std::memory_order_relaxed) != flush_done_ ||
               fork_pause_requested_.load(std::memory_order_relaxed);
      });
    }
  }
  flush_sinks();
  {
    std::lock_guard lock(wake_mu_);
    backend_running_.store(false, std::memory_order_release);
  }
  done_cv_.notify_all();
}

void Core::refresh_queues() {
  std::uint64_t version = queues_version_.load(std::memory_order_acquire);
  if (version == active_version_) return;
  std::lock_guard lock(mu_);
  active_ = queues_;
  active_version_ = queues_version_.load(std::memory_order_relaxed);
}

void Core::adopt_sinks() {
  if (!sinks_pending_.load(std::memory_order_acquire)) return;
  std::lock_guard lock(mu_);
  for (auto& s : pending_sinks_) sinks_.push_back(std::move(s));
  pending_sinks_.clear();
  sinks_pending_.store(false, std::memory_order_release);
}

std::size_t Core::drain(bool to_snapshot, std::size_t limit) {
  heads_.clear();
  for (auto& qp : active_) {
    ThreadQueue* q = qp.get();
    std::uint64_t end =
        to_snapshot ? q->ring.published() : std::numeric_limits<std::uint64_t>::max();
    if (q->ring.read_position() >= end) continue;
    if (const RecordHeader* h = q->ring.peek()) heads_.push_back({q, h, end});
  }
  std::size_t n = 0;
  while (!heads_.empty() && n < limit) {
    std::size_t best = 0;
    for (std::size_t i = 1; i < heads_.size(); ++i) {
      if (heads_[i].header->ts < heads_[best].header->ts) best = i;
    }
    Head& head = heads_[best];
    process(*head.q, head.header);
    head.q->ring.pop(head.header);
    ++n;
    const RecordHeader* next = nullptr;
    if (head.q->ring.read_position() < head.end) next = head.q->ring.peek();
    if (next == nullptr) {
      heads_[best] = heads_.back();
      heads_.pop_back();
    } else {
      head.header = next;
    }
  }
  return n;
}

void Core::process(ThreadQueue& q, const RecordHeader* h) {
  bool below_level = false;
  Event e;
  e.ts_ns = to_ns(h->ts);
  e.level = h->level;
  e.status = h->status;
  e.pid = pid_.load(std::memory_order_relaxed);
  e.host = host_;
  e.worker = q.worker;
  e.run = q.run_id;
  switch (h->type) {
    case RecordType::Pad:
      return;  // peek() skips them.
    case RecordType::Context: {
      const auto r = decode<ContextRecord>(h, fields_);
      (r.key == ContextKey::Worker ? q.worker : q.run_id).assign(r.value);
      return;
    }
    case RecordType::Log: {
      const auto r = decode<LogRecord>(h, fields_);
      e.kind = Kind::Log;
      e.component = r.component->name;
      e.message = r.message;
      break;
    }
    case RecordType::Lifecycle: {
      const auto r = decode<LifecycleRecord>(h, fields_);
      e.kind = Kind::Lifecycle;
      e.component = r.component->name;
      e.message = r.message;
      break;
    }
    case RecordType::StageBegin: {
      const auto r = decode<StageBeginRecord>(h, fields_);
      e.kind = Kind::Stage;
      e.component = r.component->name;
      e.stage = r.name;
      break;
    }
    case RecordType::StageEnd: {
      const auto r = decode<StageEndRecord>(h, fields_);
      e.kind = Kind::Stage;
      e.component = r.component->name;
      e.elapsed_ns = std::max<std::int64_t>(0, duration_ns(h->ts - r.begin_ts));
      e.stage = r.name;
      e.message = r.message;
      break;
    }
    case RecordType::Structured: {
      const auto r = decode<StructuredRecord>(h, fields_);
      e.kind = r.kind;
      e.fields_in_message = r.fields_in_message;
      e.component = r.component->name;
      if (r.begin_ts != 0) {
        e.elapsed_ns = std::max<std::int64_t>(0, duration_ns(h->ts - r.begin_ts));
      }
      e.stage = r.subject;
      e.message = r.message;
      if (!r.worker.empty()) e.worker = r.worker;
      // Recorded whatever the level (the watchdog and machine records need it), written as a
      // line only at or above the component's level: WORKER_LOG_LEVEL governs an agent's
      // lifecycle, task, claim-loop and heartbeat lines as it does its messages.
      below_level = e.level < r.component->level.load(std::memory_order_relaxed);
      break;
    }
    case RecordType::RunBegin: {
      const auto r = decode<RunBeginRecord>(h, fields_);
      e.kind = Kind::Run;
      e.component = r.component->name;
      e.stage = "COMPLETE";
      break;
    }
    case RecordType::RunEnd: {
      const auto r = decode<RunEndRecord>(h, fields_);
      e.kind = Kind::Run;
      e.component = r.component->name;
      e.elapsed_ns = std::max<std::int64_t>(0, duration_ns(h->ts - r.begin_ts));
      e.stage = "COMPLETE";
      e.message = r.message;
      if (e.message.empty() && e.status == Status::Completed) e.message = "All stages complete";
      break;
    }
  }
  e.fields = fields_;
  dispatch(e, below_level);
}

void Core::dispatch(const Event& event, bool below_level) {
  // A sink added before this event was recorded must see it: the ring's acquire of the event
  // makes the add_sink() that preceded it visible here.
  adopt_sinks();
  for (auto& sink : sinks_) {
    if (event.level < sink->level()) continue;
    if (below_level && sink->obeys_component_levels()) continue;
    try {
      sink->write(event);
    } catch (const std::exception& ex) {
      report_error(ex.what());
    } catch (...) {
      report_error("a sink threw an exception that is not a std::exception");
    }
  }
  dirty_ = true;
  if (watchdog_) {
    try {
      watchdog_->observe(event);
    } catch (const std::exception& ex) {
      report_error(std::string("watchdog: ") + ex.what());
    }
  }
}

void Core::tick_sinks() {
  if (sinks_.empty()) return;
  std::int64_t now = fake_clock_ ? options_.clock() : realtime_ns();
  if (watchdog_) {
    try {
      watchdog_->tick(now);
    } catch (const std::exception& ex) {
      report_error(std::string("watchdog: ") + ex.what());
    }
  }
  for (auto& sink : sinks_) {
    try {
      sink->tick(now);
    } catch (const std::exception& ex) {
      report_error(ex.what());
    } catch (...) {
      report_error("a sink's tick threw an exception that is not a std::exception");
    }
  }
}

void Core::flush_sinks() {
  if (!dirty_) return;
  dirty_ = false;
  for (auto& sink : sinks_) {
    try {
      sink->flush();
    } catch (const std::exception& ex) {
      report_error(ex.what());
    } catch (...) {
      report_error("a sink's flush threw an exception that is not a std::exception");
    }
  }
}

void Core::report_drops() {
  for (auto& qp : active_) {
    ThreadQueue& q = *qp;
    std::uint64_t dropped = q.dropped.load(std::memory_order_relaxed);
    if (dropped == q.dropped_reported) continue;
    std::uint64_t delta = dropped - q.dropped_reported;
    q.dropped_reported = dropped;
    std::string message = "dropped " + std::to_string(delta) + " events from worker " + q.worker;
    Field field{"dropped", FieldValue{delta}};
    Event e;
    e.ts_ns = realtime_ns();
    e.kind = Kind::Log;
    e.level = Level::Warning;
    e.worker = q.worker;
    e.run = q.run_id;
    e.component = internal_component_->name;
    e.message = message;
    e.fields = std::span<const Field>(&field, 1);
    e.pid = pid_.load(std::memory_order_relaxed);
    e.host = host_;
    dispatch(e);
  }
}

void Core::reap_closed() {
  bool any = false;
  for (auto& q : active_) {
    if (q->closed.load(std::memory_order_acquire) && q->ring.peek() == nullptr &&
        q->dropped.load(std::memory_order_relaxed) == q->dropped_reported) {
      any = true;
    }
  }
  if (!any) return;
  std::lock_guard lock(mu_);
  std::erase_if(queues_, [this](const std::shared_ptr<ThreadQueue>& q) {
    bool done = q->closed.load(std::memory_order_acquire) && q->ring.peek() == nullptr &&
                q->dropped.load(std::memory_order_relaxed) == q->dropped_reported;
    if (done) reaped_dropped_ += q->dropped_reported;
    return done;
  });
  queues_version_.fetch_add(1, std::memory_order_release);
  active_ = queues_;
  active_version_ = queues_version_.load(std::memory_order_relaxed);
}

void Core::report_error(std::string_view message) noexcept {
  try {
    if (options_.on_error) {
      options_.on_error(message);
      return;
    }
    auto now = static_cast<std::uint64_t>(steady_ns());
    if (now - error_window_start_ > 60'000'000'000ULL) {
      error_window_start_ = now;
      errors_in_window_ = 0;
    }
    if (++errors_in_window_ > 10) return;
    std::fprintf(stderr, "stagelog: %.*s\n", static_cast<int>(message.size()), message.data());
  } catch (...) {
  }
}

}  // namespace stagelog::detail
