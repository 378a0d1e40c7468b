// Construction and the calls from any thread that set up or steer the backend: add_sink,
// component, flush, the crash drain and the fork hooks. The hot path is in producer.cpp, the
// backend thread in backend.cpp.

#include "core/core.hpp"

#include <pthread.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <ctime>
#include <string>

#include "stagelog/error.hpp"

namespace stagelog::detail {

namespace {

std::atomic<std::uint64_t> g_next_core_id{1};

constexpr std::size_t kMinCapacity = 4096;

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

}  // namespace

void sleep_ns(long ns) noexcept {
  timespec ts{0, ns};
  nanosleep(&ts, nullptr);
}

pid_t current_tid() noexcept { return static_cast<pid_t>(syscall(SYS_gettid)); }

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
  std::erase_if(queues_,
                [](const std::shared_ptr<ThreadQueue>& q) { return !held_by_calling_thread(*q); });
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

}  // namespace stagelog::detail
