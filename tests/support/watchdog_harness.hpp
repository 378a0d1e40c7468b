#pragma once

// A watchdog fed by hand: hand-made events with explicit times, explicit ticks, and what it
// reported. No recorder, no clock, no sleeps: the watchdog tests (tests/unit/watchdog_*_test.cpp)
// start from here.

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "fake_clock.hpp"
#include "format/format.hpp"
#include "memory_sink.hpp"
#include "stagelog/watchdog.hpp"

namespace stagelog::test {

inline constexpr std::int64_t kT0 = FakeClock::kSeedStart;
inline constexpr std::int64_t kNever = std::numeric_limits<std::int64_t>::max();

// kT0 + d: the time of an event or tick, d after the scenario starts.
constexpr std::int64_t at(std::chrono::nanoseconds d) { return kT0 + d.count(); }

inline std::int64_t ns(std::chrono::nanoseconds d) { return d.count(); }

inline std::string local_host() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0) return {};
  return buf;
}

// Options with every rule off, no process checks and stagelog's own wording (the golden tests
// of seed 001's wording, watchdog_seed_test.cpp, turn it on); a test turns on what it looks at.
inline WatchdogOptions all_rules_off() {
  using namespace std::chrono_literals;
  WatchdogOptions o;
  o.progress_interval = 0s;
  o.stage_threshold = 0s;
  o.task_threshold = 0s;
  o.request_threshold = 0s;
  o.heartbeat_timeout = 0s;
  o.summary_interval = 0s;
  o.check_processes = false;
  o.seed_wording = false;
  return o;
}

// What a watchdog reported: each event copied, and its text line as the text sinks write it.
// Checks the contract every report must meet: component "watchdog" and a "rule" field.
class Reports {
 public:
  Watchdog::Report fn() {
    return [this](const Event& e) {
      EXPECT_EQ(e.component, "watchdog");
      bool has_rule = false;
      for (const auto& f : e.fields) has_rule = has_rule || f.key == "rule";
      EXPECT_TRUE(has_rule) << "no rule field on: " << e.message;
      sink_.write(e);
      std::string line;
      detail::format_text(e, line);
      lines_.push_back(std::move(line));
    };
  }

  std::vector<OwnedEvent> all() const { return sink_.events(); }
  std::vector<std::string> lines() const { return lines_; }
  std::vector<OwnedEvent> rule(std::string_view rule) const {
    std::vector<OwnedEvent> out;
    for (const auto& e : sink_.events()) {
      if (e.field("rule") == rule) out.push_back(e);
    }
    return out;
  }
  std::vector<std::string> messages(std::string_view rule) const {
    std::vector<std::string> out;
    for (const auto& e : this->rule(rule)) out.push_back(e.message);
    return out;
  }
  // Elapsed seconds of the "Running" lines.
  std::vector<std::int64_t> running_s(std::string_view stage = "AGENT") const {
    std::vector<std::int64_t> out;
    for (const auto& e : rule("running")) {
      if (e.stage == stage && e.elapsed_ns) out.push_back(*e.elapsed_ns / 1'000'000'000);
    }
    return out;
  }
  std::size_t size() const { return sink_.events().size(); }

 private:
  MemorySink sink_;
  std::vector<std::string> lines_;
};

// Feeds hand-made events as a recorder would hand them over: every worker on pid 812 of host
// "h1" unless placed elsewhere, component "worker", run "run-1". The watchdog must outlive it.
class Feed {
 public:
  Feed() = default;  // Feeds nothing until assigned a Feed(watchdog).
  explicit Feed(Watchdog& wd) : wd_(&wd) {}

  void place(const std::string& worker, std::int64_t pid, std::string host) {
    places_[worker] = {pid, std::move(host)};
  }

  void stage_start(std::int64_t ts, std::string_view worker, std::string_view stage) {
    send(ts, Kind::Stage, Status::Starting, worker, stage, {}, {});
  }
  void stage_end(std::int64_t ts, std::string_view worker, std::string_view stage,
                 Status status = Status::Completed) {
    send(ts, Kind::Stage, status, worker, stage, {}, {});
  }
  void heartbeat(std::int64_t ts, std::string_view worker) {
    send(ts, Kind::Heartbeat, Status::Running, worker, {}, "heartbeat", {{"status", "idle"}});
  }
  // Agent::initialized(): Starting; Agent::starting(): Running; shutdown: Completed; crashed:
  // Failed.
  void lifecycle(std::int64_t ts, std::string_view worker, Status status,
                 std::string_view message) {
    send(ts, Kind::Lifecycle, status, worker, {}, message, {});
  }
  // The recorder's close, from the thread that closed it (Core::emit_closed()).
  void recorder_closed(std::int64_t ts, std::string_view worker) {
    send(ts, Kind::Lifecycle, Status::Completed, worker, {}, "recorder closed",
         {{"recorder_closed", "true"}}, "stagelog");
  }
  void claimed(std::int64_t ts, std::string_view worker, std::string_view id,
               std::string_view cls) {
    std::string message = "Claimed task: " + std::string(id) + " (" + std::string(cls) + ")";
    send(ts, Kind::Task, Status::InProgress, worker, cls, message, {{"task", id}, {"class", cls}});
  }
  void task_end(std::int64_t ts, std::string_view worker, std::string_view id, std::string_view cls,
                Status status = Status::Completed) {
    std::string message =
        (status == Status::Completed ? "Completed task: " : "Failed task: ") + std::string(id);
    send(ts, Kind::Task, status, worker, cls, message, {{"task", id}, {"class", cls}});
  }
  void request(std::int64_t ts, std::string_view worker, std::string_view id, std::string_view what,
               std::string_view waiting) {
    std::string message = "Request " + std::string(id) + ": " + std::string(what);
    send(ts, Kind::Request, Status::InProgress, worker, what, message,
         {{"request", id}, {"what", what}, {"waiting", waiting}});
  }
  void fulfilled(std::int64_t ts, std::string_view worker, std::string_view id) {
    std::string message = "Fulfilled request " + std::string(id);
    send(ts, Kind::Request, Status::Completed, worker, {}, message, {{"request", id}});
  }
  void log(std::int64_t ts, std::string_view worker, std::string_view message,
           std::vector<std::pair<std::string_view, std::string_view>> fields = {}) {
    send(ts, Kind::Log, Status::None, worker, {}, message, std::move(fields));
  }

  // Any event; pid and host from the worker's place.
  void send(std::int64_t ts, Kind kind, Status status, std::string_view worker,
            std::string_view stage, std::string_view message,
            std::vector<std::pair<std::string_view, std::string_view>> fields,
            std::string_view component = "worker") {
    std::vector<Field> list;
    for (const auto& [k, v] : fields) list.push_back({k, FieldValue{v}});
    auto place = places_.find(std::string(worker));
    Event e;
    e.ts_ns = ts;
    e.kind = kind;
    e.level = status == Status::Failed ? Level::Error : Level::Info;
    e.status = status;
    e.run = "run-1";
    e.worker = worker;
    e.component = component;
    e.stage = stage;
    e.message = message;
    e.fields = list;
    e.pid = place == places_.end() ? 812 : place->second.first;
    e.host = place == places_.end() ? std::string_view("h1") : place->second.second;
    ASSERT_NE(wd_, nullptr) << "Feed: no watchdog (call WatchdogHarness::start() first)";
    wd_->observe(e);
  }

 private:
  Watchdog* wd_ = nullptr;
  std::map<std::string, std::pair<std::int64_t, std::string>> places_;
};

// The setup every rule test repeats: set what to look at on `o`, start(), feed events through
// `feed`, tick the watchdog start() returned, read `r`. Short names on purpose: the tests read
// `feed.stage_start(...)`, `wd.tick(...)`, `r.rule("running")`. A TEST_F fixture inherits it:
//   class WatchdogTest : public ::testing::Test, protected test::WatchdogHarness {};
// A test that needs a fresh watchdog per case (a loop) makes its own WatchdogHarness.
class WatchdogHarness {
 public:
  WatchdogOptions o = all_rules_off();  // Read once, by start().
  Reports r;                            // Declared before the watchdog: outlives it.
  Feed feed;                            // Feeds the watchdog once started.

  // Makes the watchdog from `o`, reporting into `r`; call once, after setting `o`.
  Watchdog& start() {
    wd_.emplace(o, r.fn());
    feed = Feed(*wd_);
    return *wd_;
  }

 private:
  std::optional<Watchdog> wd_;
};

inline std::map<std::string, WorkerView> views(const Watchdog& wd, std::int64_t now) {
  std::map<std::string, WorkerView> out;
  for (auto& v : wd.workers(now)) out[v.worker] = v;
  return out;
}

// Ticks at every deadline up to `end` (at most 1000 times) and checks that each tick moves
// the deadline on, and that the loop ended because the deadline passed `end`, not the cap.
inline void tick_through(Watchdog& wd, std::int64_t end) {
  int i = 0;
  for (; i < 1000 && wd.next_deadline() <= end; ++i) {
    std::int64_t deadline = wd.next_deadline();
    wd.tick(deadline);
    ASSERT_GT(wd.next_deadline(), deadline) << "tick " << i << " did not move the deadline";
  }
  EXPECT_GT(wd.next_deadline(), end) << "gave up after " << i << " ticks";
  EXPECT_LT(i, 1000);
}

// A child process that has exited and been reaped: its pid names no process.
inline pid_t dead_pid() {
  pid_t pid = ::fork();
  if (pid == 0) ::_exit(0);
  ::waitpid(pid, nullptr, 0);
  return pid;
}

// A child process that lives until end() or the destructor kills and reaps it.
class LiveChild {
 public:
  LiveChild() : pid_(::fork()) {
    if (pid_ == 0) {
      for (;;) ::pause();
    }
  }
  ~LiveChild() { end(); }
  LiveChild(const LiveChild&) = delete;
  LiveChild& operator=(const LiveChild&) = delete;

  pid_t pid() const { return pid_; }
  void end() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }

 private:
  pid_t pid_;
};

}  // namespace stagelog::test
