// Process-wide hooks: fatal signals, std::terminate and fork(). They act on every live
// recorder, found through a fixed table that a signal handler can read without locking.

#include <pthread.h>
#include <signal.h>
#include <string.h>

#include <array>
#include <atomic>
#include <cstdio>
#include <exception>
#include <mutex>
#include <string>

#include "core/core.hpp"
#include "stagelog/stage.hpp"

namespace stagelog::detail {

namespace {

constexpr std::size_t kMaxCores = 64;
constexpr std::int64_t kCrashFlushTimeoutNs = 3'000'000'000;
constexpr std::array<int, 5> kFatalSignals = {SIGSEGV, SIGABRT, SIGBUS, SIGFPE, SIGILL};

std::array<std::atomic<Core*>, kMaxCores> g_cores{};
std::mutex g_register_mu;
std::once_flag g_fork_once;
std::once_flag g_crash_once;
struct sigaction g_previous[32];
std::terminate_handler g_previous_terminate = nullptr;
std::atomic<int> g_in_fatal{0};

const char* signal_label(int sig) {
  switch (sig) {
    case SIGSEGV:
      return "SIGSEGV (segmentation fault)";
    case SIGABRT:
      return "SIGABRT (aborted)";
    case SIGBUS:
      return "SIGBUS (bus error)";
    case SIGFPE:
      return "SIGFPE (arithmetic exception)";
    case SIGILL:
      return "SIGILL (illegal instruction)";
    default:
      return "fatal signal";
  }
}

template <typename Fn>
void for_each_core(Fn&& fn) {
  for (auto& slot : g_cores) {
    if (Core* core = slot.load(std::memory_order_acquire)) fn(*core);
  }
}

void on_fatal_signal(int sig, siginfo_t* /*info*/, void* /*context*/) {
  int saved_errno = errno;
  if (g_in_fatal.exchange(1) == 0) {
    char message[96] = "crashed: ";
    strncat(message, signal_label(sig), sizeof message - strlen(message) - 1);
    for_each_core([&](Core& core) { core.emit_crash_from_signal(message); });
    for_each_core([](Core& core) { core.crash_flush(kCrashFlushTimeoutNs); });
  }
  // Die as the process would have without us: the previous handler, or the default action.
  // The signal stays blocked until we return, so raise() leaves it pending either way.
  sigaction(sig, &g_previous[sig], nullptr);
  raise(sig);
  errno = saved_errno;
}

void on_terminate() {
  if (g_in_fatal.load() == 0) {
    char what[512];
    std::string message = "terminate called";
    if (std::current_exception()) {
      describe_current_exception(what, sizeof what);
      message += ": ";
      message += what;
    }
    for_each_core([&](Core& core) {
      Component* c = core.component("stagelog");
      core.emit_lifecycle(Level::Critical, c, message, {});
      core.flush();
    });
  }
  if (g_previous_terminate != nullptr) g_previous_terminate();
  std::abort();
}

void install_crash_handlers() {
  struct sigaction action {};
  action.sa_sigaction = on_fatal_signal;
  action.sa_flags = SA_SIGINFO;
  sigemptyset(&action.sa_mask);
  for (int sig : kFatalSignals) sigaction(sig, &action, &g_previous[sig]);
  g_previous_terminate = std::set_terminate(on_terminate);
}

void fork_prepare() {
  g_register_mu.lock();
  for_each_core([](Core& core) { core.fork_prepare(); });
}
void fork_parent() {
  for_each_core([](Core& core) { core.fork_parent(); });
  g_register_mu.unlock();
}
void fork_child() {
  for_each_core([](Core& core) { core.fork_child(); });
  g_register_mu.unlock();
}

// exit() runs no destructors of objects on a thread's stack: flush what they recorded.
void flush_at_exit() {
  for_each_core([](Core& core) {
    core.emit_closed();
    core.flush();
  });
}

}  // namespace

void register_core(Core* core, bool crash_handlers) {
  std::call_once(g_fork_once, [] {
    pthread_atfork(fork_prepare, fork_parent, fork_child);
    std::atexit(flush_at_exit);
  });
  if (crash_handlers) std::call_once(g_crash_once, install_crash_handlers);
  std::lock_guard lock(g_register_mu);
  for (auto& slot : g_cores) {
    Core* expected = nullptr;
    if (slot.compare_exchange_strong(expected, core)) return;
  }
  // More live recorders than slots: this one works, but without crash or fork handling.
}

void unregister_core(Core* core) noexcept {
  std::lock_guard lock(g_register_mu);
  for (auto& slot : g_cores) {
    Core* expected = core;
    if (slot.compare_exchange_strong(expected, nullptr)) return;
  }
}

}  // namespace stagelog::detail
