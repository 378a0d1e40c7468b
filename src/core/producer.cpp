// The hot path: what a logging thread runs for each event. Find the thread's ring (a
// thread_local compare; the first event creates it), size the record, read the clock, reserve,
// encode (codec.hpp) and publish. No lock, no formatting, no allocation after the first event;
// nothing here throws. A full ring blocks or drops per Options::full_policy.

#include <algorithm>
#include <cstring>
#include <initializer_list>
#include <limits>
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
      q->run_len = static_cast<std::uint8_t>(std::min<std::size_t>(options_.run.size(), 63));
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

namespace {

std::size_t fields_size(std::span<const Kv> fields, std::size_t limit) noexcept;

[[gnu::noinline]] std::size_t fit_cut(std::size_t fixed,
                                      std::initializer_list<std::string_view> strings,
                                      std::span<const Kv> fields, std::size_t max_record,
                                      std::size_t& limit) noexcept {
  std::size_t pieces = strings.size() + 2 * fields.size();
  std::size_t overhead = sizeof(RecordHeader) + fixed + 4 * strings.size() + 13 * fields.size() + 8;
  limit = overhead < max_record ? (max_record - overhead) / std::max<std::size_t>(pieces, 1) : 0;
  std::size_t n = sizeof(RecordHeader) + fixed + fields_size(fields, limit);
  for (auto s : strings) n += 4 + std::min(s.size(), limit);
  return align8(n);
}

std::size_t fields_size(std::span<const Kv> fields, std::size_t limit) noexcept {
  std::size_t n = 0;
  for (const auto& f : fields) {
    n += 1 + 4 + std::min(f.key.size(), limit) +
         (f.type == Kv::Type::String ? 4 + std::min(f.s.size(), limit) : 8);
  }
  return n;
}

// Total size of a record with a fixed part, strings and fields. Almost always it fits in half
// the ring as is; otherwise `limit` is set to the length every string is cut to.
inline std::size_t fit(std::size_t fixed, std::initializer_list<std::string_view> strings,
                       std::span<const Kv> fields, std::size_t max_record,
                       std::size_t& limit) noexcept {
  limit = std::numeric_limits<std::size_t>::max();
  std::size_t n = sizeof(RecordHeader) + fixed;
  for (auto s : strings) n += 4 + s.size();
  for (const auto& f : fields) {
    n += 5 + f.key.size() + (f.type == Kv::Type::String ? 4 + f.s.size() : 8);
  }
  n = align8(n);
  if (n <= max_record) [[likely]] {
    return n;
  }
  return fit_cut(fixed, strings, fields, max_record, limit);
}

std::span<const Kv> cap_fields(std::span<const Kv> fields) noexcept {
  return fields.size() > 255 ? fields.first(255) : fields;
}

}  // namespace

void Core::emit_log(RecordType type, Level level, const Component* component,
                    std::string_view message, std::span<const Kv> fields) noexcept {
  ThreadQueue* q = queue();
  if (q == nullptr) [[unlikely]] {
    return;
  }
  fields = cap_fields(fields);
  std::size_t limit;
  std::size_t bytes = fit(8, {message}, fields, max_record_, limit);
  std::int64_t ts = now();
  push(*q, bytes, false, [&](std::byte* p) {
    auto* h = reinterpret_cast<RecordHeader*>(p);
    *h = RecordHeader{static_cast<std::uint32_t>(bytes),        type, level, Status::None,
                      static_cast<std::uint8_t>(fields.size()), ts};
    Encoder e(p + sizeof(RecordHeader));
    e.ptr(component);
    e.str(message.substr(0, limit));
    for (const auto& f : fields) e.field(f, limit);
  });
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
  std::uint64_t id = q->next_stage_id++;
  std::size_t limit;
  std::size_t bytes = fit(16, {name}, fields, max_record_, limit);
  push(*q, bytes, false, [&](std::byte* p) {
    auto* h = reinterpret_cast<RecordHeader*>(p);
    *h = RecordHeader{static_cast<std::uint32_t>(bytes),
                      RecordType::StageBegin,
                      Level::Info,
                      Status::Starting,
                      static_cast<std::uint8_t>(fields.size()),
                      ts};
    Encoder e(p + sizeof(RecordHeader));
    e.ptr(component);
    e.u64(id);
    e.str(name.substr(0, limit));
    for (const auto& f : fields) e.field(f, limit);
  });
  return {id, ts};
}

void Core::emit_stage_end(const Component* component, std::uint64_t id, std::int64_t begin_ts,
                          std::string_view name, Status status, std::string_view message,
                          std::span<const Kv> fields) noexcept {
  ThreadQueue* q = queue();
  if (q == nullptr) [[unlikely]] {
    return;
  }
  fields = cap_fields(fields);
  std::size_t limit;
  std::size_t bytes = fit(24, {name, message}, fields, max_record_, limit);
  std::int64_t ts = now();
  Level level = status == Status::Failed ? Level::Error : Level::Info;
  push(*q, bytes, false, [&](std::byte* p) {
    auto* h = reinterpret_cast<RecordHeader*>(p);
    *h = RecordHeader{static_cast<std::uint32_t>(bytes),
                      RecordType::StageEnd,
                      level,
                      status,
                      static_cast<std::uint8_t>(fields.size()),
                      ts};
    Encoder e(p + sizeof(RecordHeader));
    e.ptr(component);
    e.u64(id);
    e.i64(begin_ts);
    e.str(name.substr(0, limit));
    e.str(message.substr(0, limit));
    for (const auto& f : fields) e.field(f, limit);
  });
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
  std::size_t limit;
  std::size_t bytes = fit(24, {subject, message, worker}, fields, max_record_, limit);
  std::int64_t ts = now();
  push(*q, bytes, false, [&](std::byte* p) {
    auto* h = reinterpret_cast<RecordHeader*>(p);
    *h = RecordHeader{static_cast<std::uint32_t>(bytes),
                      RecordType::Structured,
                      level,
                      status,
                      static_cast<std::uint8_t>(fields.size()),
                      ts};
    Encoder e(p + sizeof(RecordHeader));
    e.ptr(component);
    e.u64(static_cast<std::uint64_t>(kind) | (fields_in_message ? kFieldsInMessage : 0));
    e.i64(begin_ts);
    e.str(subject.substr(0, limit));
    e.str(message.substr(0, limit));
    e.str(worker.substr(0, limit));
    for (const auto& f : fields) e.field(f, limit);
  });
}

std::int64_t Core::emit_run_begin(const Component* component) noexcept {
  std::int64_t ts = now();
  ThreadQueue* q = queue();
  if (q == nullptr) [[unlikely]] {
    return ts;
  }
  std::size_t bytes = align8(sizeof(RecordHeader) + 8);
  push(*q, bytes, false, [&](std::byte* p) {
    auto* h = reinterpret_cast<RecordHeader*>(p);
    *h = RecordHeader{static_cast<std::uint32_t>(bytes),
                      RecordType::RunBegin,
                      Level::Info,
                      Status::Starting,
                      0,
                      ts};
    Encoder(p + sizeof(RecordHeader)).ptr(component);
  });
  return ts;
}

void Core::emit_run_end(const Component* component, std::int64_t begin_ts, Status status,
                        std::string_view message) noexcept {
  ThreadQueue* q = queue();
  if (q == nullptr) [[unlikely]] {
    return;
  }
  std::size_t limit;
  std::size_t bytes = fit(16, {message}, {}, max_record_, limit);
  std::int64_t ts = now();
  Level level = status == Status::Failed ? Level::Error : Level::Info;
  push(*q, bytes, false, [&](std::byte* p) {
    auto* h = reinterpret_cast<RecordHeader*>(p);
    *h = RecordHeader{static_cast<std::uint32_t>(bytes), RecordType::RunEnd, level, status, 0, ts};
    Encoder e(p + sizeof(RecordHeader));
    e.ptr(component);
    e.i64(begin_ts);
    e.str(message.substr(0, limit));
  });
}

void Core::set_context(std::uint8_t which, std::string_view value) noexcept {
  ThreadQueue* q = queue();
  if (q == nullptr) [[unlikely]] {
    return;
  }
  value = value.substr(0, 255);
  if (which == 1) {
    q->run_len = static_cast<std::uint8_t>(std::min<std::size_t>(value.size(), 63));
    std::memcpy(q->run, value.data(), q->run_len);
  }
  std::size_t bytes = align8(sizeof(RecordHeader) + 4 + value.size());
  std::int64_t ts = now();
  push(*q, bytes, true, [&](std::byte* p) {
    auto* h = reinterpret_cast<RecordHeader*>(p);
    *h = RecordHeader{static_cast<std::uint32_t>(bytes),
                      RecordType::Context,
                      Level::Info,
                      static_cast<Status>(which),
                      0,
                      ts};
    Encoder(p + sizeof(RecordHeader)).str(value);
  });
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
  std::size_t bytes = align8(sizeof(RecordHeader) + 8 + 4 + message.size());
  std::byte* p = q.ring.try_reserve(bytes);
  if (p == nullptr) return;  // Never wait inside a signal handler.
  auto* h = reinterpret_cast<RecordHeader*>(p);
  *h = RecordHeader{static_cast<std::uint32_t>(bytes),
                    RecordType::Lifecycle,
                    Level::Critical,
                    Status::Failed,
                    0,
                    now()};
  Encoder e(p + sizeof(RecordHeader));
  e.ptr(internal_component_);
  e.str(message);
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
  recorder_->core().emit_log(detail::RecordType::Log, level, component_, message, fields);
}

}  // namespace stagelog
