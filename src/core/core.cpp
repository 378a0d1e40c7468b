#include "core/core.hpp"

#include <pthread.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <limits>
#include <string>

#include "stagelog/error.hpp"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace stagelog::detail {

[[gnu::tls_model("initial-exec")]] thread_local ThreadQueue* Core::t_queue_ = nullptr;
[[gnu::tls_model("initial-exec")]] thread_local std::uint64_t Core::t_core_id_ = 0;

namespace {

std::atomic<std::uint64_t> g_next_core_id{1};

constexpr std::size_t kMinCapacity = 4096;
constexpr std::size_t kBatch = 4096;
constexpr std::uint64_t kFieldsInMessage = 1u << 8;  // In a Structured record's kind word.
constexpr std::size_t kSmallBatch = 256;
constexpr auto kIdleWait = std::chrono::milliseconds(2);
constexpr auto kBatchWait = std::chrono::microseconds(200);

// Keeps the calling thread's queues alive and marks them closed when the thread exits, so the
// backend drains and then frees them.
struct ThreadHolder {
  std::vector<std::shared_ptr<ThreadQueue>> held;
  ~ThreadHolder() {
    for (auto& q : held) q->closed.store(true, std::memory_order_release);
  }
};
thread_local ThreadHolder t_holder;

std::size_t round_capacity(std::size_t n) {
  std::size_t c = kMinCapacity;
  while (c < n) c <<= 1;
  return c;
}

std::string local_host() {
  char buf[256] = {};
  if (gethostname(buf, sizeof buf - 1) != 0) return "unknown";
  return buf;
}

void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#endif
}

void sleep_ns(long ns) noexcept {
  timespec ts{0, ns};
  nanosleep(&ts, nullptr);
}

pid_t current_tid() noexcept { return static_cast<pid_t>(syscall(SYS_gettid)); }

}  // namespace

Core::Core(Recorder* owner, Options options)
    : owner_(owner),
      options_(std::move(options)),
      id_(g_next_core_id.fetch_add(1)),
      fake_clock_(static_cast<bool>(options_.clock)),
      pid_(getpid()),
      host_(options_.host.empty() ? local_host() : options_.host) {
  if (options_.queue_capacity > (std::size_t{1} << 31)) {
    throw Error("queue_capacity " + std::to_string(options_.queue_capacity) +
                " is too large (at most 2 GiB)");
  }
  options_.queue_capacity = round_capacity(options_.queue_capacity);
  max_record_ = options_.queue_capacity / 2;
  internal_component_ = component("stagelog");
  make_watchdog();
}

void Core::make_watchdog() {
  watchdog_.reset();
  if (!options_.watchdog) return;
  watchdog_ = std::make_unique<Watchdog>(*options_.watchdog,
                                         [this](const Event& event) { dispatch(event); });
}

Core::~Core() { stop_backend(); }

void Core::start_backend() {
  // The backend starts with every signal blocked (a new thread inherits its creator's mask),
  // so a signal sent to the process is never handled there, even before it first runs:
  // the handler must run on a thread that can wait for the backend to flush.
  sigset_t all, previous;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, &previous);
  backend_running_.store(true, std::memory_order_release);
  try {
    backend_ = std::make_unique<std::thread>([this] { backend_main(); });
  } catch (...) {
    backend_running_.store(false, std::memory_order_release);
    pthread_sigmask(SIG_SETMASK, &previous, nullptr);
    throw;
  }
  pthread_sigmask(SIG_SETMASK, &previous, nullptr);
}

void Core::stop_backend() noexcept {
  if (!backend_) return;
  {
    std::lock_guard lock(wake_mu_);
    stop_requested_.store(true, std::memory_order_release);
  }
  wake_cv_.notify_all();
  if (backend_->joinable()) backend_->join();
  backend_.reset();
}

bool Core::is_backend_thread() const noexcept {
  return backend_tid_.load(std::memory_order_relaxed) == current_tid();
}

// ---------------------------------------------------------------------------------------------
// Hot path

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
  if (n <= max_record) [[likely]] return n;
  return fit_cut(fixed, strings, fields, max_record, limit);
}

std::span<const Kv> cap_fields(std::span<const Kv> fields) noexcept {
  return fields.size() > 255 ? fields.first(255) : fields;
}

}  // namespace

void Core::emit_log(RecordType type, Level level, const Component* component,
                    std::string_view message, std::span<const Kv> fields) noexcept {
  ThreadQueue* q = queue();
  if (q == nullptr) [[unlikely]] return;
  fields = cap_fields(fields);
  std::size_t limit;
  std::size_t bytes = fit(8, {message}, fields, max_record_, limit);
  std::int64_t ts = now();
  push(*q, bytes, false, [&](std::byte* p) {
    auto* h = reinterpret_cast<RecordHeader*>(p);
    *h = RecordHeader{static_cast<std::uint32_t>(bytes), type, level, Status::None,
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
  if (q == nullptr) [[unlikely]] return {0, ts};
  fields = cap_fields(fields);
  std::uint64_t id = q->next_stage_id++;
  std::size_t limit;
  std::size_t bytes = fit(16, {name}, fields, max_record_, limit);
  push(*q, bytes, false, [&](std::byte* p) {
    auto* h = reinterpret_cast<RecordHeader*>(p);
    *h = RecordHeader{static_cast<std::uint32_t>(bytes), RecordType::StageBegin, Level::Info,
                      Status::Starting, static_cast<std::uint8_t>(fields.size()), ts};
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
  if (q == nullptr) [[unlikely]] return;
  fields = cap_fields(fields);
  std::size_t limit;
  std::size_t bytes = fit(24, {name, message}, fields, max_record_, limit);
  std::int64_t ts = now();
  Level level = status == Status::Failed ? Level::Error : Level::Info;
  push(*q, bytes, false, [&](std::byte* p) {
    auto* h = reinterpret_cast<RecordHeader*>(p);
    *h = RecordHeader{static_cast<std::uint32_t>(bytes), RecordType::StageEnd, level, status,
                      static_cast<std::uint8_t>(fields.size()), ts};
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
  if (q == nullptr) [[unlikely]] return;
  fields = cap_fields(fields);
  std::size_t limit;
  std::size_t bytes = fit(24, {subject, message, worker}, fields, max_record_, limit);
  std::int64_t ts = now();
  push(*q, bytes, false, [&](std::byte* p) {
    auto* h = reinterpret_cast<RecordHeader*>(p);
    *h = RecordHeader{static_cast<std::uint32_t>(bytes), RecordType::Structured, level, status,
                      static_cast<std::uint8_t>(fields.size()), ts};
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
  if (q == nullptr) [[unlikely]] return ts;
  std::size_t bytes = align8(sizeof(RecordHeader) + 8);
  push(*q, bytes, false, [&](std::byte* p) {
    auto* h = reinterpret_cast<RecordHeader*>(p);
    *h = RecordHeader{static_cast<std::uint32_t>(bytes), RecordType::RunBegin, Level::Info,
                      Status::Starting, 0, ts};
    Encoder(p + sizeof(RecordHeader)).ptr(component);
  });
  return ts;
}

void Core::emit_run_end(const Component* component, std::int64_t begin_ts, Status status,
                        std::string_view message) noexcept {
  ThreadQueue* q = queue();
  if (q == nullptr) [[unlikely]] return;
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
  if (q == nullptr) [[unlikely]] return;
  value = value.substr(0, 255);
  if (which == 1) {
    q->run_len = static_cast<std::uint8_t>(std::min<std::size_t>(value.size(), 63));
    std::memcpy(q->run, value.data(), q->run_len);
  }
  std::size_t bytes = align8(sizeof(RecordHeader) + 4 + value.size());
  std::int64_t ts = now();
  push(*q, bytes, true, [&](std::byte* p) {
    auto* h = reinterpret_cast<RecordHeader*>(p);
    *h = RecordHeader{static_cast<std::uint32_t>(bytes), RecordType::Context, Level::Info,
                      static_cast<Status>(which), 0, ts};
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
  *h = RecordHeader{static_cast<std::uint32_t>(bytes), RecordType::Lifecycle, Level::Critical,
                    Status::Failed, 0, now()};
  Encoder e(p + sizeof(RecordHeader));
  e.ptr(internal_component_);
  e.str(message);
  q.ring.commit();
}

// ---------------------------------------------------------------------------------------------
// Setup and control

void Core::add_sink(std::shared_ptr<Sink> sink) {
  if (!sink) throw Error("add_sink: sink is null");
  std::lock_guard lock(mu_);
  pending_sinks_.push_back(std::move(sink));
  sinks_pending_.store(true, std::memory_order_release);
}

Component* Core::component(std::string_view name, bool* created) {
  std::lock_guard lock(mu_);
  for (auto& c : components_) {
    if (c.name == name) return &c;
  }
  if (created != nullptr) *created = true;
  auto& c = components_.emplace_back();
  c.name = std::string(name);
  return &c;
}

void Core::flush() {
  if (!backend_ || is_backend_thread()) return;
  std::unique_lock lock(wake_mu_);
  std::uint64_t ticket = flush_requested_.fetch_add(1, std::memory_order_acq_rel) + 1;
  wake_cv_.notify_all();
  done_cv_.wait(lock, [&] {
    return flush_done_ >= ticket || !backend_running_.load(std::memory_order_acquire);
  });
}

std::uint64_t Core::dropped() const noexcept {
  std::lock_guard lock(mu_);
  std::uint64_t n = reaped_dropped_;
  for (const auto& q : queues_) n += q->dropped.load(std::memory_order_relaxed);
  return n;
}

void Core::crash_flush(std::int64_t timeout_ns) noexcept {
  if (!backend_running_.load(std::memory_order_acquire) || is_backend_thread()) return;
  std::uint64_t ticket = crash_requested_.fetch_add(1, std::memory_order_acq_rel) + 1;
  std::int64_t deadline = steady_ns() + timeout_ns;
  while (crash_done_.load(std::memory_order_acquire) < ticket && steady_ns() < deadline) {
    sleep_ns(200'000);
  }
}

void Core::fork_prepare() noexcept {
  // Park the backend at a point where every ring it read is consumed and every sink flushed,
  // then hold mu_ so no thread registers a queue while fork() copies the process.
  if (backend_running_.load(std::memory_order_acquire) && !is_backend_thread()) {
    fork_pause_requested_.store(true, std::memory_order_release);
    wake_cv_.notify_all();
    std::int64_t deadline = steady_ns() + 5'000'000'000;
    while (!fork_paused_.load(std::memory_order_acquire) && steady_ns() < deadline) {
      sleep_ns(50'000);
    }
  }
  mu_.lock();
}

void Core::fork_parent() noexcept {
  mu_.unlock();
  fork_pause_requested_.store(false, std::memory_order_release);
}

void Core::fork_child() noexcept {
  // Only the forking thread exists here. Other threads' queues hold events their parent-side
  // twins will write; drop them. The backend thread is gone: leak its handle, start a new one.
  pid_.store(getpid(), std::memory_order_relaxed);
  // The parent's workers and open stages are the parent's to report.
  try {
    make_watchdog();
  } catch (...) {
    watchdog_.reset();
  }
  std::erase_if(queues_, [](const std::shared_ptr<ThreadQueue>& q) {
    return std::find(t_holder.held.begin(), t_holder.held.end(), q) == t_holder.held.end();
  });
  for (auto& q : queues_) q->ring.discard_unread();
  queues_version_.fetch_add(1, std::memory_order_release);
  mu_.unlock();
  bool was_running = backend_running_.load(std::memory_order_acquire);
  if (backend_) (void)backend_.release();
  fork_pause_requested_.store(false, std::memory_order_release);
  fork_paused_.store(false, std::memory_order_release);
  new (&wake_mu_) std::mutex();
  new (&wake_cv_) std::condition_variable();
  new (&done_cv_) std::condition_variable();
  active_.clear();
  active_version_ = ~std::uint64_t{0};
  if (was_running) {
    try {
      start_backend();
    } catch (...) {
      backend_running_.store(false, std::memory_order_release);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Backend thread

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
    std::uint64_t end = to_snapshot ? q->ring.published() : std::numeric_limits<std::uint64_t>::max();
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
  Decoder d(h);
  Event e;
  e.ts_ns = to_ns(h->ts);
  e.level = h->level;
  e.status = h->status;
  e.pid = pid_.load(std::memory_order_relaxed);
  e.host = host_;
  e.worker = q.worker;
  e.run = q.run_id;
  fields_.clear();
  switch (h->type) {
    case RecordType::Pad:
      return;
    case RecordType::Context: {
      std::string_view value = d.str();
      if (static_cast<std::uint8_t>(h->status) == 0) {
        q.worker.assign(value);
      } else {
        q.run_id.assign(value);
      }
      return;
    }
    case RecordType::Log:
    case RecordType::Lifecycle:
      e.kind = h->type == RecordType::Log ? Kind::Log : Kind::Lifecycle;
      e.component = d.ptr<Component>()->name;
      e.message = d.str();
      d.fields(h->field_count, fields_);
      break;
    case RecordType::StageBegin:
      e.kind = Kind::Stage;
      e.component = d.ptr<Component>()->name;
      (void)d.u64();
      e.stage = d.str();
      d.fields(h->field_count, fields_);
      break;
    case RecordType::StageEnd: {
      e.kind = Kind::Stage;
      e.component = d.ptr<Component>()->name;
      (void)d.u64();
      std::int64_t begin = d.i64();
      e.elapsed_ns = std::max<std::int64_t>(0, duration_ns(h->ts - begin));
      e.stage = d.str();
      e.message = d.str();
      d.fields(h->field_count, fields_);
      break;
    }
    case RecordType::Structured: {
      e.component = d.ptr<Component>()->name;
      std::uint64_t kind = d.u64();
      e.kind = static_cast<Kind>(kind & 0xff);
      e.fields_in_message = (kind & kFieldsInMessage) != 0;
      std::int64_t begin = d.i64();
      if (begin != 0) e.elapsed_ns = std::max<std::int64_t>(0, duration_ns(h->ts - begin));
      e.stage = d.str();
      e.message = d.str();
      if (std::string_view worker = d.str(); !worker.empty()) e.worker = worker;
      d.fields(h->field_count, fields_);
      break;
    }
    case RecordType::RunBegin:
      e.kind = Kind::Run;
      e.component = d.ptr<Component>()->name;
      e.stage = "COMPLETE";
      break;
    case RecordType::RunEnd: {
      e.kind = Kind::Run;
      e.component = d.ptr<Component>()->name;
      std::int64_t begin = d.i64();
      e.elapsed_ns = std::max<std::int64_t>(0, duration_ns(h->ts - begin));
      e.stage = "COMPLETE";
      e.message = d.str();
      if (e.message.empty() && e.status == Status::Completed) e.message = "All stages complete";
      break;
    }
  }
  e.fields = fields_;
  dispatch(e);
}

void Core::dispatch(const Event& event) {
  // A sink added before this event was recorded must see it: the ring's acquire of the event
  // makes the add_sink() that preceded it visible here.
  adopt_sinks();
  for (auto& sink : sinks_) {
    if (event.level < sink->level()) continue;
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

namespace stagelog {

void Logger::event(Kind kind, Level level, Status status, std::string_view subject,
                   std::string_view message, std::span<const Kv> fields,
                   std::int64_t begin_ticks, bool fields_in_message,
                   std::string_view worker) const noexcept {
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
