// The hot path: what a logging thread runs for each event. Find the thread's ring (a
// thread_local compare; the first event creates it), size the record, read the clock, reserve,
// encode (codec.hpp) and publish. No lock, no formatting, no allocation after the first event;
// nothing here throws. A full ring blocks or drops per Options::full_policy.

#include <algorithm>
#include <cstring>
#include <memory>
#include <string>
#include <thread>

#include "core/core.hpp"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace stagelog::detail {

[[gnu::tls_model("initial-exec")]] thread_local ThreadQueue* Core::t_queue_ = nullptr;
[[gnu::tls_model("initial-exec")]] thread_local std::uint64_t Core::t_core_id_ = 0;

namespace {

// Keeps the calling thread's queues alive and marks them closed when the thread exits, so the
// backend drains and then frees them.
struct ThreadHolder {
  std::vector<std::shared_ptr<ThreadQueue>> held;
  ~ThreadHolder() {
    for (auto& q : held) q->closed.store(true, std::memory_order_release);
  }
};
thread_local ThreadHolder t_holder;

constexpr std::size_t kMaxContextValue = 255;  // A worker or run id is cut to this.

void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#endif
}

}  // namespace

bool held_by_calling_thread(const ThreadQueue& q) noexcept {
  return std::any_of(t_holder.held.begin(), t_holder.held.end(),
                     [&](const auto& held) { return held.get() == &q; });
}

ThreadQueue* Core::queue_slow() noexcept {
  try {
    for (auto& q : t_holder.held) {
      if (q->core_id == id_) {
        t_queue_ = q.get();
        t_core_id_ = id_;
        return t_queue_;
      }
    }
    // Forget queues whose recorder is gone (we hold the last reference).
    std::erase_if(t_holder.held, [](const auto& q) { return q.use_count() == 1; });
    std::shared_ptr<ThreadQueue> q;
    {
      std::lock_guard lock(mu_);
      q = std::make_shared<ThreadQueue>(options_.queue_capacity, id_, thread_count_++);
      q->worker = "t";
      q->worker += std::to_string(q->index);
      q->run_id = options_.run;
      q->run_len = static_cast<std::uint8_t>(std::min(options_.run.size(), sizeof q->run));
      std::memcpy(q->run, options_.run.data(), q->run_len);
      queues_.push_back(q);
      queues_version_.fetch_add(1, std::memory_order_release);
    }
    t_holder.held.push_back(q);
    t_queue_ = q.get();
    t_core_id_ = id_;
    return t_queue_;
  } catch (...) {
    return nullptr;  // Out of memory: the event is lost, the program goes on.
  }
}

void Core::wait_for_room(ThreadQueue& q, std::size_t bytes) noexcept {
  for (int spin = 0;; ++spin) {
    if (q.ring.try_reserve(bytes) != nullptr) return;
    if (spin < 64) {
      cpu_relax();
    } else if (spin < 128) {
      std::this_thread::yield();
    } else {
      sleep_ns(20'000);
    }
  }
}

// Reserves `bytes` in q's ring, has `fill` write the record there and publishes it. A full ring
// waits for room (FullPolicy::Block, or `keep`) or drops the event and counts it.
template <typename Fill>
void Core::push(ThreadQueue& q, std::size_t bytes, bool keep, Fill&& fill) noexcept {
  q.in_push = 1;
  std::byte* p = q.ring.try_reserve(bytes);
  if (p == nullptr) [[unlikely]] {
    if (!keep && options_.full_policy == FullPolicy::Drop) {
      q.dropped.fetch_add(1, std::memory_order_relaxed);
      q.in_push = 0;
      return;
    }
    wait_for_room(q, bytes);
    p = q.ring.try_reserve(bytes);
  }
  fill(p);
  q.ring.commit();
  q.in_push = 0;
}

template <typename R>
void Core::emit_message(Level level, const Component* component, std::string_view message,
                        std::span<const Kv> fields) noexcept {
  ThreadQueue* q = queue();
  if (q == nullptr) [[unlikely]] {
    return;
  }
  fields = cap_fields(fields);
  const R record{component, message};
  const RecordSize size = record_size(record, fields, max_record_);
  std::int64_t ts = now();
  push(*q, size.bytes, false,
       [&](std::byte* p) { encode(p, size, level, Status::None, ts, record, fields); });
}

void Core::emit_log(Level level, const Component* component, std::string_view message,
                    std::span<const Kv> fields) noexcept {
  emit_message<LogRecord>(level, component, message, fields);
}

void Core::emit_lifecycle(Level level, const Component* component, std::string_view message,
                          std::span<const Kv> fields) noexcept {
  emit_message<LifecycleRecord>(level, component, message, fields);
}

std::pair<std::uint64_t, std::int64_t> Core::emit_stage_begin(const Component* component,
                                                              std::string_view name,
                                                              std::span<const Kv> fields) noexcept {
  std::int64_t ts = now();
  ThreadQueue* q = queue();
  if (q == nullptr) [[unlikely]] {
    return {0, ts};
  }
  fields = cap_fields(fields);
  const StageBeginRecord record{component, q->next_stage_id++, name};
  const RecordSize size = record_size(record, fields, max_record_);
  push(*q, size.bytes, false,
       [&](std::byte* p) { encode(p, size, Level::Info, Status::Starting, ts, record, fields); });
  return {record.id, ts};
}

void Core::emit_stage_end(const Component* component, std::uint64_t id, std::int64_t begin_ts,
                          std::string_view name, Status status, std::string_view message,
                          std::span<const Kv> fields) noexcept {
  ThreadQueue* q = queue();
  if (q == nullptr) [[unlikely]] {
    return;
  }
  fields = cap_fields(fields);
  const StageEndRecord record{component, id, begin_ts, name, message};
  const RecordSize size = record_size(record, fields, max_record_);
  std::int64_t ts = now();
  Level level = status == Status::Failed ? Level::Error : Level::Info;
  push(*q, size.bytes, false,
       [&](std::byte* p) { encode(p, size, level, status, ts, record, fields); });
}

void Core::emit_structured(Kind kind, Level level, Status status, const Component* component,
                           std::string_view subject, std::string_view message,
                           std::span<const Kv> fields, std::int64_t begin_ts,
                           bool fields_in_message, std::string_view worker) noexcept {
  ThreadQueue* q = queue();
  if (q == nullptr) [[unlikely]] {
    return;
  }
  fields = cap_fields(fields);
  const StructuredRecord record{component, kind,  fields_in_message, begin_ts, subject,
                                message,   worker};
  const RecordSize size = record_size(record, fields, max_record_);
  std::int64_t ts = now();
  push(*q, size.bytes, false,
       [&](std::byte* p) { encode(p, size, level, status, ts, record, fields); });
}

std::int64_t Core::emit_run_begin(const Component* component) noexcept {
  std::int64_t ts = now();
  ThreadQueue* q = queue();
  if (q == nullptr) [[unlikely]] {
    return ts;
  }
  const RunBeginRecord record{component};
  const RecordSize size = record_size(record, {}, max_record_);
  push(*q, size.bytes, false,
       [&](std::byte* p) { encode(p, size, Level::Info, Status::Starting, ts, record); });
  return ts;
}

void Core::emit_run_end(const Component* component, std::int64_t begin_ts, Status status,
                        std::string_view message) noexcept {
  ThreadQueue* q = queue();
  if (q == nullptr) [[unlikely]] {
    return;
  }
  const RunEndRecord record{component, begin_ts, message};
  const RecordSize size = record_size(record, {}, max_record_);
  std::int64_t ts = now();
  Level level = status == Status::Failed ? Level::Error : Level::Info;
  push(*q, size.bytes, false, [&](std::byte* p) { encode(p, size, level, status, ts, record); });
}

void Core::set_context(ContextKey key, std::string_view value) noexcept {
  ThreadQueue* q = queue();
  if (q == nullptr) [[unlikely]] {
    return;
  }
  value = value.substr(0, kMaxContextValue);
  if (key == ContextKey::Run) {
    q->run_len = static_cast<std::uint8_t>(std::min(value.size(), sizeof q->run));
    std::memcpy(q->run, value.data(), q->run_len);
  }
  const ContextRecord record{key, value};
  const RecordSize size = record_size(record, {}, max_record_);
  std::int64_t ts = now();
  push(*q, size.bytes, true,
       [&](std::byte* p) { encode(p, size, Level::Info, Status::None, ts, record); });
}

std::string_view Core::current_run() noexcept {
  ThreadQueue* q = queue();
  return q == nullptr ? std::string_view{} : std::string_view(q->run, q->run_len);
}

void Core::emit_closed() noexcept {
  if (exit_recorded_.exchange(true)) return;
  const Kv fields[] = {kv("recorder_closed", true)};
  emit_structured(Kind::Lifecycle, Level::Debug, Status::Completed, internal_component_, {},
                  "recorder closed", fields, 0);
}

void Core::emit_crash_from_signal(std::string_view message) noexcept {
  if (t_core_id_ != id_ || t_queue_ == nullptr || t_queue_->in_push) return;
  ThreadQueue& q = *t_queue_;
  const LifecycleRecord record{internal_component_, message};
  const RecordSize size = record_size(record, {}, max_record_);
  std::byte* p = q.ring.try_reserve(size.bytes);
  if (p == nullptr) return;  // Never wait inside a signal handler.
  encode(p, size, Level::Critical, Status::Failed, now(), record);
  q.ring.commit();
}

}  // namespace stagelog::detail

namespace stagelog {

void Logger::event(Kind kind, Level level, Status status, std::string_view subject,
                   std::string_view message, std::span<const Kv> fields, std::int64_t begin_ticks,
                   bool fields_in_message, std::string_view worker) const noexcept {
  recorder_->core().emit_structured(kind, level, status, component_, subject, message, fields,
                                    begin_ticks, fields_in_message, worker);
}

std::int64_t Logger::now_ticks() const noexcept { return recorder_->core().now(); }

double Logger::seconds_since(std::int64_t ticks) const noexcept {
  auto& core = recorder_->core();
  return core.ticks_to_seconds(core.now() - ticks);
}

// Here, beside Core::emit_log, so that the hot path is one call.
void Logger::log(Level level, std::string_view message, std::span<const Kv> fields) const noexcept {
  if (enabled(level)) record(level, message, fields);
}

void Logger::record(Level level, std::string_view message,
                    std::span<const Kv> fields) const noexcept {
  recorder_->core().emit_log(level, component_, message, fields);
}

}  // namespace stagelog
