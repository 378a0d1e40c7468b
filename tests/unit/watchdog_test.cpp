// The watchdog's rules, fed hand-made events with explicit times and ticks; a few cases go
// through a Recorder on a FakeClock. No sleeps, no real clock.

#include "stagelog/watchdog.hpp"

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
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "fake_clock.hpp"
#include "format/format.hpp"
#include "memory_sink.hpp"
#include "recording.hpp"
#include "stagelog/agent.hpp"
#include "stagelog/stage.hpp"

namespace stagelog {
namespace {

using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using ::testing::StartsWith;
using namespace std::chrono_literals;

constexpr std::int64_t kT0 = test::FakeClock::kSeedStart;
constexpr std::int64_t kNever = std::numeric_limits<std::int64_t>::max();

// kT0 + d: the time of an event or tick, d after the scenario starts.
constexpr std::int64_t at(std::chrono::nanoseconds d) { return kT0 + d.count(); }

std::int64_t ns(std::chrono::nanoseconds d) { return d.count(); }

std::string local_host() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0) return {};
  return buf;
}

// Options with every rule off and no process checks; a test turns on what it looks at.
WatchdogOptions only() {
  WatchdogOptions o;
  o.progress_interval = 0s;
  o.stage_threshold = 0s;
  o.task_threshold = 0s;
  o.request_threshold = 0s;
  o.heartbeat_timeout = 0s;
  o.summary_interval = 0s;
  o.check_processes = false;
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

  std::vector<test::OwnedEvent> all() const { return sink_.events(); }
  std::vector<std::string> lines() const { return lines_; }
  std::vector<test::OwnedEvent> rule(std::string_view rule) const {
    std::vector<test::OwnedEvent> out;
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
  test::MemorySink sink_;
  std::vector<std::string> lines_;
};

// Feeds hand-made events as a recorder would hand them over: every worker on pid 812 of host
// "h1" unless placed elsewhere, component "worker", run "run-1".
class Feed {
 public:
  explicit Feed(Watchdog& wd) : wd_(wd) {}

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
    wd_.observe(e);
  }

 private:
  Watchdog& wd_;
  std::map<std::string, std::pair<std::int64_t, std::string>> places_;
};

std::map<std::string, WorkerView> views(const Watchdog& wd, std::int64_t now) {
  std::map<std::string, WorkerView> out;
  for (auto& v : wd.workers(now)) out[v.worker] = v;
  return out;
}

// Ticks at every deadline up to `end` (at most 1000 times) and checks that each tick moves
// the deadline on, and that the loop ended because the deadline passed `end`, not the cap.
void tick_through(Watchdog& wd, std::int64_t end) {
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
pid_t dead_pid() {
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

// ---------------------------------------------------------------------------------------------
// Still running

TEST(WatchdogTest, OpenStageReportsRunningEveryProgressInterval) {
  Reports r;
  WatchdogOptions o = only();
  o.progress_interval = 30s;
  Watchdog wd(o, r.fn());
  Feed feed(wd);
  feed.stage_start(at(0s), "gpu-1", "AGENT");
  EXPECT_EQ(wd.next_deadline(), at(30s));
  wd.tick(at(30s) - 1);
  EXPECT_EQ(r.size(), 0u);
  wd.tick(at(30s));
  auto running = r.rule("running");
  ASSERT_EQ(running.size(), 1u);
  const auto& e = running[0];
  EXPECT_EQ(e.kind, Kind::Stage);
  EXPECT_EQ(e.status, Status::Running);
  EXPECT_EQ(e.level, Level::Info);
  EXPECT_EQ(e.component, "watchdog");
  EXPECT_EQ(e.worker, "gpu-1");
  EXPECT_EQ(e.stage, "AGENT");
  EXPECT_EQ(e.run, "run-1");
  EXPECT_EQ(e.ts_ns, at(30s));
  EXPECT_EQ(e.elapsed_ns, ns(30s));
  EXPECT_THAT(r.lines(),
              ElementsAre("2026-01-04T19:30:45.234Z [gpu-1] Stage: AGENT - Running (30.0s)\n"));
  EXPECT_EQ(wd.next_deadline(), at(60s));
}

TEST(WatchdogTest, SparseTicksGiveOneRunningLineEach) {
  Reports r;
  WatchdogOptions o = only();
  o.progress_interval = 30s;
  Watchdog wd(o, r.fn());
  Feed feed(wd);
  feed.stage_start(at(0s), "gpu-1", "AGENT");
  wd.tick(at(95s));
  EXPECT_THAT(r.running_s(), ElementsAre(95));
  EXPECT_THAT(r.lines(), ElementsAre(HasSubstr("Stage: AGENT - Running (95.0s)")));
  EXPECT_EQ(wd.next_deadline(), at(120s));
  wd.tick(at(119s));
  wd.tick(at(120s));
  EXPECT_THAT(r.running_s(), ElementsAre(95, 120));
}

TEST(WatchdogTest, DenseTicksGiveExactlyOneRunningLinePerInterval) {
  Reports r;
  WatchdogOptions o = only();
  o.progress_interval = 30s;
  Watchdog wd(o, r.fn());
  Feed feed(wd);
  feed.stage_start(at(0s), "gpu-1", "AGENT");
  for (int s = 0; s <= 100; ++s) {
    wd.tick(at(std::chrono::seconds(s)));
    wd.tick(at(std::chrono::seconds(s) + 500ms));
  }
  EXPECT_THAT(r.running_s(), ElementsAre(30, 60, 90));
}

TEST(WatchdogTest, NoRunningLineAfterTheStageEnds) {
  Reports r;
  WatchdogOptions o = only();
  o.progress_interval = 30s;
  Watchdog wd(o, r.fn());
  Feed feed(wd);
  feed.stage_start(at(0s), "gpu-1", "AGENT");
  wd.tick(at(30s));
  feed.stage_end(at(40s), "gpu-1", "AGENT");
  EXPECT_EQ(wd.next_deadline(), kNever);
  wd.tick(at(60s));
  wd.tick(at(600s));
  EXPECT_THAT(r.running_s(), ElementsAre(30));
}

TEST(WatchdogTest, NestedStagesEachReportRunning) {
  Reports r;
  WatchdogOptions o = only();
  o.progress_interval = 30s;
  Watchdog wd(o, r.fn());
  Feed feed(wd);
  feed.stage_start(at(0s), "gpu-1", "AGENT");
  feed.stage_start(at(10s), "gpu-1", "JUDGE");
  tick_through(wd, at(45s));
  EXPECT_THAT(r.running_s("AGENT"), ElementsAre(30));
  EXPECT_THAT(r.running_s("JUDGE"), ElementsAre(30));
  auto rows = views(wd, at(45s));
  EXPECT_EQ(rows["gpu-1"].stage, "JUDGE");  // The innermost.
  EXPECT_EQ(rows["gpu-1"].stage_since_ns, at(10s));
}

TEST(WatchdogTest, ZeroProgressIntervalTurnsRunningLinesOff) {
  Reports r;
  WatchdogOptions o = only();
  Watchdog wd(o, r.fn());
  Feed feed(wd);
  feed.stage_start(at(0s), "gpu-1", "AGENT");
  EXPECT_EQ(wd.next_deadline(), kNever);
  wd.tick(at(30s));
  wd.tick(at(3600s));
  EXPECT_EQ(r.size(), 0u);
}

// ---------------------------------------------------------------------------------------------
// Stuck stages and tasks

TEST(WatchdogTest, StuckStageNamesWorkerPidHostTimesAndLastMessage) {
  Reports r;
  WatchdogOptions o = only();
  o.stage_threshold = 300s;
  Watchdog wd(o, r.fn());
  Feed feed(wd);
  feed.stage_start(at(0s), "gpu-1", "AGENT");
  feed.log(at(5s), "gpu-1", "Running agent with model[qwen2.5:7b]");
  EXPECT_EQ(wd.next_deadline(), at(300s));
  wd.tick(at(300s) - 1);
  EXPECT_EQ(r.size(), 0u);
  wd.tick(at(301s));
  auto stuck = r.rule("stuck_stage");
  ASSERT_EQ(stuck.size(), 1u);
  const auto& e = stuck[0];
  // watchdog.hpp abbreviates the tail as "; last: ..."; the README, `stagelog tail`'s golden
  // output and the implementation spell it "; last message: ...".
  EXPECT_EQ(e.message,
            "Stage AGENT on gpu-1 (pid 812, host h1) open for 301s (threshold: 300s); "
            "last message: Running agent with model[qwen2.5:7b]");
  EXPECT_EQ(e.level, Level::Warning);
  EXPECT_EQ(e.worker, "gpu-1");
  EXPECT_EQ(e.stage, "AGENT");
  EXPECT_EQ(e.pid, 812);
  EXPECT_EQ(e.host, "h1");
  EXPECT_EQ(e.field("worker"), "gpu-1");
  EXPECT_EQ(e.field("pid"), "812");
  EXPECT_EQ(e.field("host"), "h1");
  EXPECT_EQ(e.field("stage"), "AGENT");
  EXPECT_EQ(e.field("last_message"), "Running agent with model[qwen2.5:7b]");
  EXPECT_THAT(e.field("open_s"), StartsWith("301"));
  EXPECT_THAT(e.field("threshold_s"), StartsWith("300"));
}

TEST(WatchdogTest, StuckTaskUsesTheTaskThreshold) {
  Reports r;
  WatchdogOptions o = only();
  o.stage_threshold = 300s;
  o.task_threshold = 1200s;
  Watchdog wd(o, r.fn());
  Feed feed(wd);
  feed.claimed(at(0s), "gpu-1", "d5de16d7", "llm");
  EXPECT_EQ(wd.next_deadline(), at(1200s));
  wd.tick(at(1199s));
  EXPECT_EQ(r.size(), 0u);
  wd.tick(at(1201s));
  auto stuck = r.rule("stuck_task");
  ASSERT_EQ(stuck.size(), 1u);
  EXPECT_EQ(stuck[0].message,
            "Task d5de16d7 (llm) on gpu-1 (pid 812, host h1) open for 1201s (threshold: 1200s); "
            "last message: Claimed task: d5de16d7 (llm)");
  EXPECT_EQ(stuck[0].level, Level::Warning);
  EXPECT_EQ(stuck[0].field("task"), "d5de16d7");
  EXPECT_EQ(stuck[0].field("class"), "llm");
  EXPECT_EQ(stuck[0].field("pid"), "812");
  EXPECT_EQ(stuck[0].field("host"), "h1");
}

TEST(WatchdogTest, DefaultThresholdsAreFiveAndTwentyMinutes) {
  Reports r;
  WatchdogOptions o;
  o.progress_interval = 0s;
  o.heartbeat_timeout = 0s;
  o.summary_interval = 0s;
  o.check_processes = false;
  Watchdog wd(o, r.fn());
  Feed feed(wd);
  feed.stage_start(at(0s), "gpu-1", "AGENT");
  EXPECT_EQ(wd.next_deadline(), at(300s));
  feed.stage_end(at(1s), "gpu-1", "AGENT");
  feed.claimed(at(2s), "gpu-1", "t1", "llm");
  EXPECT_EQ(wd.next_deadline(), at(1202s));
}

TEST(WatchdogTest, PerStageAndPerTaskClassThresholdsWin) {
  Reports r;
  WatchdogOptions o = only();
  o.stage_threshold = 300s;
  o.stage_thresholds = {{"AGENT", 60s}};
  o.task_threshold = 1200s;
  o.task_thresholds = {{"llm", 100s}};
  Watchdog wd(o, r.fn());
  Feed feed(wd);
  feed.stage_start(at(0s), "gpu-1", "AGENT");
  feed.stage_start(at(0s), "gpu-2", "JUDGE");
  feed.claimed(at(0s), "gpu-3", "t-llm", "llm");
  feed.claimed(at(0s), "gpu-4", "t-cpu", "cpu");
  EXPECT_EQ(wd.next_deadline(), at(60s));
  wd.tick(at(60s) - 1);
  EXPECT_EQ(r.size(), 0u);
  wd.tick(at(60s));
  EXPECT_THAT(r.messages("stuck_stage"), ElementsAre(StartsWith("Stage AGENT on gpu-1")));
  EXPECT_EQ(wd.next_deadline(), at(100s));
  wd.tick(at(100s) - 1);
  EXPECT_THAT(r.rule("stuck_task"), IsEmpty());
  wd.tick(at(100s));
  EXPECT_THAT(r.messages("stuck_task"), ElementsAre(StartsWith("Task t-llm (llm) on gpu-3")));
  wd.tick(at(300s) - 1);
  EXPECT_THAT(r.messages("stuck_stage"), Not(Contains(StartsWith("Stage JUDGE"))));
  wd.tick(at(300s));
  EXPECT_THAT(r.messages("stuck_stage"), Contains(StartsWith("Stage JUDGE on gpu-2")));
  wd.tick(at(1200s) - 1);
  EXPECT_THAT(r.messages("stuck_task"), Not(Contains(StartsWith("Task t-cpu"))));
  wd.tick(at(1200s));
  EXPECT_THAT(r.messages("stuck_task"), Contains(StartsWith("Task t-cpu (cpu) on gpu-4")));
}

TEST(WatchdogTest, StuckWarningRepeatsAtThresholdTimesTwoFourEight) {
  Reports r;
  WatchdogOptions o = only();
  o.stage_threshold = 300s;
  Watchdog wd(o, r.fn());
  Feed feed(wd);
  feed.stage_start(at(0s), "gpu-1", "AGENT");
  std::vector<std::int64_t> deadlines;
  for (int i = 0; i < 4; ++i) {
    deadlines.push_back(wd.next_deadline() - kT0);
    wd.tick(wd.next_deadline());
  }
  EXPECT_THAT(deadlines, ElementsAre(ns(300s), ns(600s), ns(1200s), ns(2400s)));
  EXPECT_THAT(r.messages("stuck_stage"),
              ElementsAre(HasSubstr("open for 300s (threshold: 300s)"),
                          HasSubstr("open for 600s (threshold: 300s)"),
                          HasSubstr("open for 1200s (threshold: 300s)"),
                          HasSubstr("open for 2400s (threshold: 300s)")));
}

TEST(WatchdogTest, RepeatsAreAtLeastEveryMaxRepeat) {
  Reports r;
  WatchdogOptions o = only();
  o.stage_threshold = 300s;
  o.max_repeat = 500s;
  Watchdog wd(o, r.fn());
  Feed feed(wd);
  feed.stage_start(at(0s), "gpu-1", "AGENT");
  std::vector<std::int64_t> deadlines;
  for (int i = 0; i < 5; ++i) {
    deadlines.push_back(wd.next_deadline() - kT0);
    wd.tick(wd.next_deadline());
  }
  EXPECT_THAT(deadlines, ElementsAre(ns(300s), ns(600s), ns(1100s), ns(1600s), ns(2100s)));
  EXPECT_EQ(r.rule("stuck_stage").size(), 5u);
}

TEST(WatchdogTest, ALateTickKeepsTheBackoffSchedule) {
  // One warning for the late tick, and the next one still at threshold x2 of time open.
  Reports r;
  WatchdogOptions o = only();
  o.stage_threshold = 300s;
  o.task_threshold = 300s;
  Watchdog wd(o, r.fn());
  Feed feed(wd);
  feed.stage_start(at(0s), "gpu-1", "AGENT");
  feed.claimed(at(0s), "gpu-2", "t1", "llm");
  wd.tick(at(500s));
  EXPECT_THAT(r.messages("stuck_stage"), ElementsAre(HasSubstr("open for 500s")));
  EXPECT_THAT(r.messages("stuck_task"), ElementsAre(HasSubstr("open for 500s")));
  EXPECT_EQ(wd.next_deadline(), at(600s));
  wd.tick(at(1300s));  // Past x2 and x4: one more each, then x8.
  EXPECT_EQ(r.rule("stuck_stage").size(), 2u);
  EXPECT_EQ(r.rule("stuck_task").size(), 2u);
  EXPECT_EQ(wd.next_deadline(), at(2400s));
}

TEST(WatchdogTest, StageThatEndsAfterAWarningIsRecovered) {
  Reports r;
  WatchdogOptions o = only();
  o.stage_threshold = 300s;
  Watchdog wd(o, r.fn());
  Feed feed(wd);
  feed.stage_start(at(0s), "gpu-1", "AGENT");
  wd.tick(at(301s));
  ASSERT_EQ(r.rule("stuck_stage").size(), 1u);
  feed.stage_end(at(412s), "gpu-1", "AGENT");
  auto recovered = r.rule("recovered");
  ASSERT_EQ(recovered.size(), 1u);
  EXPECT_EQ(recovered[0].message, "recovered: Stage AGENT on gpu-1 ended completed after 412s");
  EXPECT_EQ(recovered[0].level, Level::Info);
  EXPECT_EQ(recovered[0].field("recovered"), "stuck_stage");
  EXPECT_EQ(recovered[0].ts_ns, at(412s));
  EXPECT_EQ(wd.next_deadline(), kNever);
}

TEST(WatchdogTest, TaskThatEndsAfterAWarningIsRecovered) {
  Reports r;
  WatchdogOptions o = only();
  o.task_threshold = 100s;
  Watchdog wd(o, r.fn());
  Feed feed(wd);
  feed.claimed(at(0s), "gpu-1", "d5de16d7", "llm");
  wd.tick(at(100s));
  feed.task_end(at(130s), "gpu-1", "d5de16d7", "llm", Status::Failed);
  EXPECT_THAT(r.messages("recovered"),
              ElementsAre("recovered: Task d5de16d7 (llm) on gpu-1 ended failed after 130s"));
  EXPECT_EQ(r.rule("recovered")[0].field("recovered"), "stuck_task");
}

TEST(WatchdogTest, StageEndingJustBeforeItsThresholdWarnsNothing) {
  Reports r;
  WatchdogOptions o = only();
  o.stage_threshold = 300s;
  o.task_threshold = 1200s;
  Watchdog wd(o, r.fn());
  Feed feed(wd);
  feed.stage_start(at(0s), "gpu-1", "AGENT");
  feed.claimed(at(0s), "gpu-1", "t1", "llm");
  feed.stage_end(at(300s - 1ms), "gpu-1", "AGENT");
  feed.task_end(at(1200s - 1ms), "gpu-1", "t1", "llm");
  wd.tick(at(301s));
  wd.tick(at(1201s));
  wd.tick(at(10000s));
  EXPECT_EQ(r.size(), 0u);  // Neither stuck nor recovered.
}

// ---------------------------------------------------------------------------------------------
// Silent workers

TEST(WatchdogTest, SilentWorkerExactText) {
  Reports r;
  WatchdogOptions o = only();
  o.heartbeat_timeout = 60s;
  Watchdog wd(o, r.fn());
  Feed feed(wd);
  feed.heartbeat(at(0s), "gpu-1");
  EXPECT_EQ(wd.next_deadline(), at(60s));
  wd.tick(at(90s));
  auto silent = r.rule("silent");
  ASSERT_EQ(silent.size(), 1u);
  EXPECT_EQ(silent[0].message, "Worker gpu-1 last heartbeat 90s ago (threshold: 60s)");
  EXPECT_EQ(silent[0].level, Level::Warning);
  EXPECT_EQ(silent[0].worker, "gpu-1");
}

TEST(WatchdogTest, SilentIsDueExactlyAtTheTimeout) {
  Reports r;
  WatchdogOptions o = only();
  o.heartbeat_timeout = 60s;
  Watchdog wd(o, r.fn());
  Feed feed(wd);
  feed.heartbeat(at(0s), "gpu-1");
  feed.heartbeat(at(20s), "gpu-1");
  EXPECT_EQ(wd.next_deadline(), at(80s));
  wd.tick(at(80s) - 1);
  EXPECT_EQ(r.size(), 0u);
  wd.tick(at(80s));
  EXPECT_THAT(r.messages("silent"),
              ElementsAre("Worker gpu-1 last heartbeat 60s ago (threshold: 60s)"));
}

TEST(WatchdogTest, RegularHeartbeatsKeepAWorkerQuiet) {
  Reports r;
  WatchdogOptions o = only();
  o.heartbeat_timeout = 60s;
  Watchdog wd(o, r.fn());
  Feed feed(wd);
  for (int s = 0; s <= 600; s += 30) {
    feed.heartbeat(at(std::chrono::seconds(s)), "gpu-1");
    wd.tick(at(std::chrono::seconds(s) + 29s));
  }
  EXPECT_EQ(r.size(), 0u);
  EXPECT_EQ(views(wd, at(629s))["gpu-1"].state, WorkerState::Idle);
}

TEST(WatchdogTest, SilentWarningRepeatsAtBackoff) {
  Reports r;
  WatchdogOptions o = only();
  o.heartbeat_timeout = 60s;
  Watchdog wd(o, r.fn());
  Feed feed(wd);
  feed.heartbeat(at(0s), "gpu-1");
  std::vector<std::int64_t> deadlines;
  for (int i = 0; i < 4; ++i) {
    deadlines.push_back(wd.next_deadline() - kT0);
    wd.tick(wd.next_deadline());
  }
  EXPECT_THAT(deadlines, ElementsAre(ns(60s), ns(120s), ns(240s), ns(480s)));
  EXPECT_EQ(r.rule("silent").size(), 4u);
}

TEST(WatchdogTest, LateSilentTickKeepsTheBackoffSchedule) {
  Reports r;
  WatchdogOptions o = only();
  o.heartbeat_timeout = 60s;
  Watchdog wd(o, r.fn());
  Feed feed(wd);
  feed.heartbeat(at(0s), "gpu-1");
  wd.tick(at(90s));
  EXPECT_EQ(wd.next_deadline(), at(120s));
}

TEST(WatchdogTest, AgentWithoutAHeartbeatIsTimedFromItsFirstEvent) {
  for (Status status : {Status::Starting, Status::Running}) {  // initialized, starting
    Reports r;
    WatchdogOptions o = only();
    o.heartbeat_timeout = 60s;
    Watchdog wd(o, r.fn());
    Feed feed(wd);
    feed.lifecycle(at(10s), "gpu-1", status, "initialized");
    feed.log(at(20s), "gpu-1", "loading model");
    EXPECT_EQ(wd.next_deadline(), at(70s));
    wd.tick(at(70s) - 1);
    EXPECT_EQ(r.size(), 0u);
    wd.tick(at(70s));
    auto silent = r.rule("silent");
    ASSERT_EQ(silent.size(), 1u) << status_name(status);
    EXPECT_EQ(silent[0].worker, "gpu-1");
    EXPECT_THAT(silent[0].message, StartsWith("Worker gpu-1 "));
    EXPECT_THAT(silent[0].message, HasSubstr("60s"));
    EXPECT_EQ(views(wd, at(70s))["gpu-1"].state, WorkerState::Silent);
  }
}

TEST(WatchdogTest, WorkerThatNeverHeartbeatsAndIsNoAgentIsNeverSilent) {
  Reports r;
  WatchdogOptions o = only();
  o.heartbeat_timeout = 60s;
  Watchdog wd(o, r.fn());
  Feed feed(wd);
  feed.log(at(0s), "T0_00", "hello");
  feed.stage_start(at(1s), "T0_00", "AGENT");
  feed.stage_end(at(2s), "T0_00", "AGENT");
  EXPECT_EQ(wd.next_deadline(), kNever);
  wd.tick(at(1000s));
  EXPECT_EQ(r.size(), 0u);
}

TEST(WatchdogTest, HeartbeatAfterShutdownRaisesNothing) {
  Reports r;
  WatchdogOptions o = only();
  o.heartbeat_timeout = 60s;
  Watchdog wd(o, r.fn());
  Feed feed(wd);
  feed.heartbeat(at(0s), "gpu-1");
  feed.lifecycle(at(10s), "gpu-1", Status::Completed, "shutting down - completed 42, failed 1");
  feed.heartbeat(at(20s), "gpu-1");  // The heartbeat thread's last beat, after the shutdown.
  EXPECT_EQ(wd.next_deadline(), kNever);
  wd.tick(at(90s));
  wd.tick(at(1000s));
  wd.tick(at(100000s));
  EXPECT_EQ(r.size(), 0u);
  EXPECT_EQ(views(wd, at(90s))["gpu-1"].state, WorkerState::Done);
}

TEST(WatchdogTest, NoSilentWarningAfterShutdown) {
  Reports r;
  WatchdogOptions o = only();
  o.heartbeat_timeout = 60s;
  Watchdog wd(o, r.fn());
  Feed feed(wd);
  feed.heartbeat(at(0s), "gpu-1");
  wd.tick(at(90s));
  ASSERT_EQ(r.rule("silent").size(), 1u);
  feed.lifecycle(at(100s), "gpu-1", Status::Completed, "shutting down - completed 0, failed 0");
  feed.heartbeat(at(101s), "gpu-1");
  tick_through(wd, at(10000s));
  wd.tick(at(10000s));
  EXPECT_EQ(r.rule("silent").size(), 1u);
  EXPECT_THAT(r.rule("recovered"), IsEmpty());
}

TEST(WatchdogTest, HeartbeatAfterASilentWarningIsRecovered) {
  Reports r;
  WatchdogOptions o = only();
  o.heartbeat_timeout = 60s;
  Watchdog wd(o, r.fn());
  Feed feed(wd);
  feed.heartbeat(at(0s), "gpu-1");
  wd.tick(at(90s));
  feed.heartbeat(at(95s), "gpu-1");
  auto recovered = r.rule("recovered");
  ASSERT_EQ(recovered.size(), 1u);
  EXPECT_EQ(recovered[0].message, "recovered: Worker gpu-1 heartbeat resumed after 95s");
  EXPECT_EQ(recovered[0].field("recovered"), "silent");
  EXPECT_EQ(recovered[0].level, Level::Info);
  // Timed afresh from the new beat.
  EXPECT_EQ(wd.next_deadline(), at(155s));
  wd.tick(at(155s));
  EXPECT_THAT(r.messages("silent"),
              ElementsAre("Worker gpu-1 last heartbeat 90s ago (threshold: 60s)",
                          "Worker gpu-1 last heartbeat 60s ago (threshold: 60s)"));
}

TEST(WatchdogTest, NoRecoveredWithoutAWarning) {
  Reports r;
  WatchdogOptions o = only();
  o.heartbeat_timeout = 60s;
  o.stage_threshold = 60s;
  Watchdog wd(o, r.fn());
  Feed feed(wd);
  feed.heartbeat(at(0s), "gpu-1");
  feed.stage_start(at(0s), "gpu-1", "AGENT");
  wd.tick(at(30s));
  feed.heartbeat(at(50s), "gpu-1");
  feed.stage_end(at(55s), "gpu-1", "AGENT");
  wd.tick(at(56s));
  EXPECT_EQ(r.size(), 0u);
}

// ---------------------------------------------------------------------------------------------
// Crashed processes

TEST(WatchdogTest, DeadProcessOnThisHostIsCrashed) {
  const std::string host = local_host();
  const pid_t pid = dead_pid();
  Reports r;
  WatchdogOptions o = only();
  o.check_processes = true;
  Watchdog wd(o, r.fn());
  Feed feed(wd);
  feed.place("gpu-2", pid, host);
  feed.lifecycle(at(0s), "gpu-2", Status::Starting, "initialized");
  feed.stage_start(at(0s), "gpu-2", "AGENT");
  feed.claimed(at(0s), "gpu-2", "d5de16d7", "llm");
  EXPECT_LE(wd.next_deadline(), at(1s));
  wd.tick(at(1s));
  auto crashed = r.rule("crashed");
  ASSERT_EQ(crashed.size(), 1u);
  const auto& e = crashed[0];
  EXPECT_EQ(e.level, Level::Error);
  EXPECT_EQ(e.status, Status::Failed);
  EXPECT_EQ(e.worker, "gpu-2");
  EXPECT_EQ(e.pid, pid);
  EXPECT_EQ(e.host, host);
  EXPECT_EQ(e.message, "Worker gpu-2 (pid " + std::to_string(pid) + ", host " + host +
                           ") crashed: process gone without a shutdown; open: stage AGENT 1.0s, "
                           "task d5de16d7 (llm) 1.0s; last message: Claimed task: d5de16d7 "
                           "(llm)");
  auto rows = views(wd, at(1s));
  EXPECT_EQ(rows["gpu-2"].state, WorkerState::Crashed);
  // Once.
  tick_through(wd, at(100s));
  EXPECT_EQ(r.rule("crashed").size(), 1u);
}

TEST(WatchdogTest, ZombieCountsAsDead) {
  const std::string host = local_host();
  pid_t pid = ::fork();
  if (pid == 0) ::_exit(0);
  siginfo_t info{};
  ASSERT_EQ(::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOWAIT), 0);  // Not reaped.
  Reports r;
  WatchdogOptions o = only();
  o.check_processes = true;
  Watchdog wd(o, r.fn());
  Feed feed(wd);
  feed.place("gpu-2", pid, host);
  feed.stage_start(at(0s), "gpu-2", "AGENT");
  wd.tick(at(1s));
  ::waitpid(pid, nullptr, 0);
  EXPECT_THAT(r.messages("crashed"), ElementsAre(StartsWith("Worker gpu-2 (pid ")));
}

TEST(WatchdogTest, LiveProcessIsNotCrashedAndItsDeathIsSeenWithinASecond) {
  const std::string host = local_host();
  LiveChild child;
  Reports r;
  WatchdogOptions o = only();
  o.check_processes = true;
  Watchdog wd(o, r.fn());
  Feed feed(wd);
  feed.place("gpu-2", child.pid(), host);
  feed.place("parent", ::getppid(), host);
  feed.stage_start(at(0s), "gpu-2", "AGENT");
  feed.log(at(0s), "parent", "hello");
  for (int s = 0; s <= 10; ++s) wd.tick(at(std::chrono::seconds(s)));
  EXPECT_THAT(r.rule("crashed"), IsEmpty());
  EXPECT_EQ(views(wd, at(10s))["gpu-2"].state, WorkerState::Running);
  child.end();
  std::int64_t deadline = wd.next_deadline();
  EXPECT_LE(deadline, at(11s));
  wd.tick(deadline);
  EXPECT_THAT(r.messages("crashed"), ElementsAre(StartsWith("Worker gpu-2 ")));
  EXPECT_EQ(views(wd, deadline)["parent"].state, WorkerState::Idle);
}

TEST(WatchdogTest, CheckProcessesOffNeverCrashesByPid) {
  const std::string host = local_host();
  const pid_t pid = dead_pid();
  Reports r;
  WatchdogOptions o = only();
  o.check_processes = false;
  Watchdog wd(o, r.fn());
  Feed feed(wd);
  feed.place("gpu-2", pid, host);
  feed.stage_start(at(0s), "gpu-2", "AGENT");
  EXPECT_EQ(wd.next_deadline(), kNever);
  wd.tick(at(1s));
  wd.tick(at(1000s));
  EXPECT_EQ(r.size(), 0u);
  EXPECT_EQ(views(wd, at(1000s))["gpu-2"].state, WorkerState::Running);
}

TEST(WatchdogTest, ProcessOnAnotherHostIsNotChecked) {
  const pid_t pid = dead_pid();
  Reports r;
  WatchdogOptions o = only();
  o.check_processes = true;
  Watchdog wd(o, r.fn());
  Feed feed(wd);
  feed.place("gpu-2", pid, local_host() + ".elsewhere");
  feed.stage_start(at(0s), "gpu-2", "AGENT");
  wd.tick(at(1s));
  wd.tick(at(100s));
  EXPECT_EQ(r.size(), 0u);
}

TEST(WatchdogTest, ProcessGoneAfterItsShutdownIsDoneNotCrashed) {
  const std::string host = local_host();
  const pid_t pid = dead_pid();
  Reports r;
  WatchdogOptions o = only();
  o.check_processes = true;
  o.heartbeat_timeout = 60s;
  Watchdog wd(o, r.fn());
  Feed feed(wd);
  feed.place("gpu-2", pid, host);
  feed.lifecycle(at(0s), "gpu-2", Status::Starting, "initialized");
  feed.heartbeat(at(1s), "gpu-2");
  feed.lifecycle(at(2s), "gpu-2", Status::Completed, "shutting down - completed 1, failed 0");
  wd.tick(at(3s));
  tick_through(wd, at(1000s));
  wd.tick(at(1000s));
  EXPECT_EQ(r.size(), 0u);
  EXPECT_EQ(views(wd, at(1000s))["gpu-2"].state, WorkerState::Done);
}

TEST(WatchdogTest, ThreadWorkersOfARecorderThatClosedAreDoneNotCrashed) {
  // A pipeline's thread workers never say shutdown; their process exits normally, and its
  // recorder says it closed. Another process that just vanished is still crashed.
  const std::string host = local_host();
  const pid_t pid = dead_pid();
  const pid_t other_pid = dead_pid();
  Reports r;
  WatchdogOptions o = only();
  o.check_processes = true;
  o.stage_threshold = 60s;
  Watchdog wd(o, r.fn());
  Feed feed(wd);
  for (const char* w : {"worker-1", "worker-2", ""}) feed.place(w, pid, host);
  feed.place("gpu-9", other_pid, host);
  feed.stage_start(at(0s), "worker-1", "AGENT");
  feed.stage_end(at(1s), "worker-1", "AGENT");
  feed.stage_start(at(0s), "worker-2", "JUDGE");  // Still open when the process ends.
  feed.stage_start(at(0s), "gpu-9", "AGENT");
  feed.recorder_closed(at(2s), "");
  tick_through(wd, at(1000s));
  EXPECT_THAT(r.messages("crashed"), ElementsAre(StartsWith("Worker gpu-9 ")));
  EXPECT_THAT(r.messages("stuck_stage"), ElementsAre(StartsWith("Stage AGENT on gpu-9 ")));
  auto rows = views(wd, at(1000s));
  EXPECT_EQ(rows["worker-1"].state, WorkerState::Done);
  EXPECT_EQ(rows["worker-2"].state, WorkerState::Done);
  EXPECT_EQ(rows["gpu-9"].state, WorkerState::Crashed);
  // The close is attributed to the closing thread's worker, but is not its last words.
  feed.log(at(3s), "worker-1", "last words");
  feed.recorder_closed(at(4s), "worker-1");
  EXPECT_EQ(views(wd, at(5s))["worker-1"].last_message, "last words");
}

TEST(WatchdogTest, ALifecycleEndWithoutRecorderClosedEndsOnlyItsOwnWorker) {
  const std::string host = local_host();
  const pid_t pid = dead_pid();
  Reports r;
  WatchdogOptions o = only();
  o.check_processes = true;
  Watchdog wd(o, r.fn());
  Feed feed(wd);
  feed.place("gpu-1", pid, host);
  feed.place("gpu-2", pid, host);
  feed.stage_start(at(0s), "gpu-1", "AGENT");
  feed.stage_start(at(0s), "gpu-2", "AGENT");
  feed.lifecycle(at(1s), "gpu-1", Status::Completed, "shutting down - completed 1, failed 0");
  tick_through(wd, at(10s));
  EXPECT_THAT(r.messages("crashed"), ElementsAre(StartsWith("Worker gpu-2 ")));
}

TEST(WatchdogTest, KilledMidTaskReportsStuckTaskSilenceAndCrashOnceEach) {
  // Seed 001's "kill -9 mid-task": stuck task + silent heartbeat + crashed, then quiet.
  const std::string host = local_host();
  const pid_t pid = dead_pid();
  Reports r;
  WatchdogOptions o = only();
  o.check_processes = true;
  o.progress_interval = 30s;
  o.stage_threshold = 100s;
  o.task_threshold = 120s;
  o.heartbeat_timeout = 60s;
  Watchdog wd(o, r.fn());
  Feed feed(wd);
  feed.place("gpu-2", pid, host);
  feed.lifecycle(at(0s), "gpu-2", Status::Starting, "initialized");
  feed.heartbeat(at(0s), "gpu-2");
  feed.heartbeat(at(10s), "gpu-2");
  feed.claimed(at(10s), "gpu-2", "d5de16d7", "llm");
  feed.stage_start(at(10s), "gpu-2", "AGENT");
  wd.tick(at(11s));
  ASSERT_THAT(r.messages("crashed"),
              ElementsAre(HasSubstr("open: stage AGENT 1.0s, task d5de16d7 (llm) 1.0s")));
  tick_through(wd, at(5000s));
  wd.tick(at(5000s));
  EXPECT_THAT(r.messages("stuck_task"), ElementsAre(HasSubstr("open for 120s (threshold: 120s)")));
  EXPECT_THAT(r.messages("silent"),
              ElementsAre(StartsWith("Worker gpu-2 last heartbeat 60s ago (threshold: 60s)")));
  EXPECT_LE(r.rule("stuck_stage").size(), 1u);
  EXPECT_THAT(r.rule("running"), IsEmpty());
  EXPECT_EQ(r.rule("crashed").size(), 1u);
  EXPECT_EQ(wd.next_deadline(), kNever);
}

// ---------------------------------------------------------------------------------------------
// Stale requests

TEST(WatchdogTest, StaleRequestExactTextAndRecovery) {
  Reports r;
  WatchdogOptions o = only();
  o.request_threshold = 60s;
  Watchdog wd(o, r.fn());
  Feed feed(wd);
  feed.log(at(0s), "gpu-1", "No suitable tasks");
  feed.log(at(0s), "gpu-3", "No suitable tasks");
  feed.request(at(0s), "gpu-0", "7f3a", "load_llm", "gpu-1,gpu-3");
  EXPECT_EQ(wd.next_deadline(), at(60s));
  wd.tick(at(60s) - 1);
  EXPECT_EQ(r.size(), 0u);
  wd.tick(at(62s));
  auto stale = r.rule("stale_request");
  ASSERT_EQ(stale.size(), 1u);
  EXPECT_EQ(stale[0].message,
            "Request 7f3a (load_llm) open for 62s but workers [gpu-1, gpu-3] still wait for it "
            "(threshold: 60s)");
  EXPECT_EQ(stale[0].level, Level::Warning);
  EXPECT_EQ(stale[0].field("request"), "7f3a");
  EXPECT_EQ(stale[0].field("what"), "load_llm");
  feed.fulfilled(at(70s), "gpu-2", "7f3a");
  auto recovered = r.rule("recovered");
  ASSERT_EQ(recovered.size(), 1u);
  EXPECT_THAT(recovered[0].message, StartsWith("recovered: Request 7f3a (load_llm)"));
  EXPECT_THAT(recovered[0].message, HasSubstr("ended completed after 70s"));
  EXPECT_EQ(recovered[0].field("recovered"), "stale_request");
  EXPECT_EQ(wd.next_deadline(), kNever);
}

TEST(WatchdogTest, RequestFulfilledBeforeItsThresholdWarnsNothing) {
  Reports r;
  WatchdogOptions o = only();
  o.request_threshold = 60s;
  Watchdog wd(o, r.fn());
  Feed feed(wd);
  feed.request(at(0s), "gpu-0", "7f3a", "load_llm", "gpu-1,gpu-3");
  wd.tick(at(30s));
  feed.fulfilled(at(59s), "gpu-2", "7f3a");
  wd.tick(at(61s));
  wd.tick(at(1000s));
  EXPECT_EQ(r.size(), 0u);
}

TEST(WatchdogTest, RequestNamesOnlyWorkersThatStillWait) {
  Reports r;
  WatchdogOptions o = only();
  o.request_threshold = 60s;
  Watchdog wd(o, r.fn());
  Feed feed(wd);
  feed.log(at(0s), "gpu-1", "waiting");
  feed.log(at(0s), "gpu-3", "waiting");
  feed.request(at(0s), "gpu-0", "7f3a", "load_llm", "gpu-1, gpu-3");
  feed.lifecycle(at(10s), "gpu-1", Status::Completed, "shutting down - completed 0, failed 0");
  wd.tick(at(62s));
  EXPECT_THAT(r.messages("stale_request"),
              ElementsAre("Request 7f3a (load_llm) open for 62s but workers [gpu-3] still wait "
                          "for it (threshold: 60s)"));
}

TEST(WatchdogTest, RequestWhoseWaitersHaveAllShutDownWarnsNothing) {
  Reports r;
  WatchdogOptions o = only();
  o.request_threshold = 60s;
  Watchdog wd(o, r.fn());
  Feed feed(wd);
  feed.log(at(0s), "gpu-1", "waiting");
  feed.log(at(0s), "gpu-3", "waiting");
  feed.request(at(0s), "gpu-0", "7f3a", "load_llm", "gpu-1,gpu-3");
  feed.lifecycle(at(10s), "gpu-1", Status::Completed, "shutting down - completed 0, failed 0");
  feed.lifecycle(at(20s), "gpu-3", Status::Completed, "shutting down - completed 0, failed 0");
  wd.tick(at(62s));
  wd.tick(at(1000s));
  EXPECT_THAT(r.rule("stale_request"), IsEmpty());
}

TEST(WatchdogTest, RequestThresholdOverrideByWhat) {
  Reports r;
  WatchdogOptions o = only();
  o.request_threshold = 60s;
  o.request_thresholds = {{"load_llm", 30s}};
  Watchdog wd(o, r.fn());
  Feed feed(wd);
  feed.request(at(0s), "gpu-0", "7f3a", "load_llm", "gpu-1");
  feed.request(at(0s), "gpu-0", "8b4c", "load_tts", "gpu-1");
  EXPECT_EQ(wd.next_deadline(), at(30s));
  wd.tick(at(30s));
  EXPECT_THAT(r.messages("stale_request"), ElementsAre(StartsWith("Request 7f3a (load_llm)")));
  EXPECT_EQ(wd.next_deadline(), at(60s));
}

// ---------------------------------------------------------------------------------------------
// The deadline always moves on

TEST(WatchdogTest, DeadlineAdvancesWhenEveryWaiterIsGone) {
  Reports r;
  WatchdogOptions o = only();
  o.request_threshold = 60s;
  Watchdog wd(o, r.fn());
  Feed feed(wd);
  feed.log(at(0s), "gpu-1", "waiting");
  feed.request(at(0s), "gpu-0", "7f3a", "load_llm", "gpu-1");
  feed.lifecycle(at(10s), "gpu-1", Status::Completed, "shutting down - completed 0, failed 0");
  const std::int64_t end = at(3600s);
  int i = 0;
  for (; i < 1000 && wd.next_deadline() <= end; ++i) wd.tick(wd.next_deadline());
  EXPECT_GT(wd.next_deadline(), end);
  EXPECT_LT(i, 1000) << "the deadline stayed at " << wd.next_deadline() - kT0 << " ns";
  EXPECT_THAT(r.rule("stale_request"), IsEmpty());
}

TEST(WatchdogTest, DeadlineAlwaysAdvancesWithEveryRuleActive) {
  const std::string host = local_host();
  LiveChild live;
  const pid_t dead = dead_pid();
  Reports r;
  WatchdogOptions o;
  o.progress_interval = 10s;
  o.stage_threshold = 60s;
  o.stage_thresholds = {{"JUDGE", 45s}};
  o.task_threshold = 90s;
  o.task_thresholds = {{"cpu", 20s}};
  o.request_threshold = 30s;
  o.heartbeat_timeout = 20s;
  o.summary_interval = 50s;
  o.max_repeat = 100s;
  o.check_processes = true;
  Watchdog wd(o, r.fn());
  Feed feed(wd);
  feed.place("gpu-1", live.pid(), host);
  feed.place("gpu-2", dead, host);
  feed.lifecycle(at(0s), "gpu-1", Status::Starting, "initialized");
  feed.heartbeat(at(0s), "gpu-1");
  feed.stage_start(at(0s), "gpu-1", "AGENT");
  feed.stage_start(at(1s), "gpu-1", "JUDGE");
  feed.claimed(at(2s), "gpu-1", "t1", "llm");
  feed.lifecycle(at(0s), "gpu-2", Status::Running, "starting");
  feed.claimed(at(3s), "gpu-2", "t2", "cpu");
  feed.stage_start(at(3s), "gpu-2", "AGENT");
  feed.lifecycle(at(0s), "gpu-3", Status::Starting, "initialized");
  feed.heartbeat(at(0s), "gpu-3");
  feed.request(at(4s), "gpu-0", "7f3a", "load_llm", "gpu-1,gpu-3");
  feed.request(at(5s), "gpu-0", "8b4c", "load_llm", "gpu-4");
  feed.log(at(5s), "gpu-4", "waiting", {{"queue", "llm:123"}});
  feed.lifecycle(at(6s), "gpu-4", Status::Completed, "shutting down - completed 0, failed 0");
  feed.heartbeat(at(15s), "gpu-3");
  tick_through(wd, at(400s));
  feed.fulfilled(at(401s), "gpu-0", "7f3a");
  feed.heartbeat(at(402s), "gpu-1");
  feed.stage_end(at(403s), "gpu-1", "JUDGE");
  tick_through(wd, at(700s));
  for (const char* rule : {"running", "stuck_stage", "stuck_task", "silent", "crashed",
                           "stale_request", "recovered", "monitor"}) {
    EXPECT_THAT(r.rule(rule), Not(IsEmpty())) << rule;
  }
  EXPECT_EQ(r.rule("crashed").size(), 1u);
}

// ---------------------------------------------------------------------------------------------
// Detection latency: next_deadline() is exactly when each rule is due

TEST(WatchdogTest, NextDeadlineIsExactlyWhenEachRuleIsDue) {
  struct Case {
    const char* rule;
    std::int64_t due;
    void (*setup)(WatchdogOptions&);
    void (*feed)(Feed&);
  };
  const Case cases[] = {
      {"running", at(37s), [](WatchdogOptions& o) { o.progress_interval = 30s; },
       [](Feed& f) { f.stage_start(at(7s), "gpu-1", "AGENT"); }},
      {"stuck_stage", at(307s), [](WatchdogOptions& o) { o.stage_threshold = 300s; },
       [](Feed& f) { f.stage_start(at(7s), "gpu-1", "AGENT"); }},
      {"stuck_task", at(1207s), [](WatchdogOptions& o) { o.task_threshold = 1200s; },
       [](Feed& f) { f.claimed(at(7s), "gpu-1", "t1", "llm"); }},
      {"silent", at(67s), [](WatchdogOptions& o) { o.heartbeat_timeout = 60s; },
       [](Feed& f) {
         f.heartbeat(at(3s), "gpu-1");
         f.heartbeat(at(7s), "gpu-1");
       }},
      {"stale_request", at(67s), [](WatchdogOptions& o) { o.request_threshold = 60s; },
       [](Feed& f) { f.request(at(7s), "gpu-0", "7f3a", "load_llm", "gpu-1"); }},
      {"monitor", at(67s), [](WatchdogOptions& o) { o.summary_interval = 60s; },
       [](Feed& f) { f.stage_start(at(7s), "gpu-1", "AGENT"); }},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.rule);
    Reports r;
    WatchdogOptions o = only();
    c.setup(o);
    Watchdog wd(o, r.fn());
    Feed feed(wd);
    c.feed(feed);
    EXPECT_EQ(wd.next_deadline(), c.due);
    wd.tick(c.due - 1);
    EXPECT_EQ(r.size(), 0u);
    EXPECT_EQ(wd.next_deadline(), c.due);
    wd.tick(c.due);
    EXPECT_EQ(r.rule(c.rule).size(), 1u);
    EXPECT_GT(wd.next_deadline(), c.due);
  }
}

TEST(WatchdogTest, NothingPendingMeansNoDeadline) {
  Reports r;
  Watchdog wd(WatchdogOptions{}, r.fn());
  EXPECT_EQ(wd.next_deadline(), kNever);
  wd.tick(at(0s));
  EXPECT_EQ(wd.next_deadline(), kNever);
  EXPECT_THAT(wd.workers(at(0s)), IsEmpty());
  EXPECT_EQ(r.size(), 0u);
}

// ---------------------------------------------------------------------------------------------
// The MONITOR line

// gpu-1 and gpu-2 in AGENT, gpu-3 in JUDGE; gpu-1's llm task past its threshold, gpu-2's cpu
// task not; a queue snapshot llm:123.
void three_busy_workers(Feed& feed) {
  for (const char* w : {"gpu-1", "gpu-2", "gpu-3"}) {
    feed.lifecycle(at(0s), w, Status::Starting, "initialized");
    feed.heartbeat(at(0s), w);
  }
  feed.stage_start(at(0s), "gpu-1", "AGENT");
  feed.claimed(at(0s), "gpu-1", "t1", "llm");
  feed.stage_start(at(0s), "gpu-2", "AGENT");
  feed.claimed(at(0s), "gpu-2", "t2", "cpu");
  feed.stage_start(at(0s), "gpu-3", "JUDGE");
  for (const char* w : {"gpu-1", "gpu-2", "gpu-3"}) feed.heartbeat(at(30s), w);
  feed.log(at(40s), "gpu-1", "No suitable tasks - Queue: [llm:123]", {{"queue", "llm:123"}});
}

WatchdogOptions monitor_options() {
  WatchdogOptions o = only();
  o.summary_interval = 60s;
  o.heartbeat_timeout = 60s;
  o.task_threshold = 1200s;
  o.task_thresholds = {{"llm", 50s}};
  return o;
}

TEST(WatchdogTest, MonitorLineWithASilentWorker) {
  Reports r;
  Watchdog wd(monitor_options(), r.fn());
  Feed feed(wd);
  three_busy_workers(feed);
  feed.lifecycle(at(0s), "gpu-4", Status::Starting, "initialized");
  feed.heartbeat(at(0s), "gpu-4");  // And no more.
  wd.tick(at(60s));
  auto monitor = r.rule("monitor");
  ASSERT_EQ(monitor.size(), 1u);
  EXPECT_EQ(monitor[0].message,
            "MONITOR: Workers: 3/4 alive, Stages: AGENT:2 JUDGE:1, Tasks: processing 2, stuck 1, "
            "Queue: llm:123");
  EXPECT_EQ(monitor[0].level, Level::Info);
  EXPECT_EQ(monitor[0].ts_ns, at(60s));
  EXPECT_EQ(wd.queue(), "llm:123");
  EXPECT_EQ(views(wd, at(60s))["gpu-4"].state, WorkerState::Silent);
}

TEST(WatchdogTest, MonitorLineWithACrashedWorker) {
  const std::string host = local_host();
  ASSERT_NE(host, "h1");
  const pid_t pid = dead_pid();
  Reports r;
  WatchdogOptions o = monitor_options();
  o.check_processes = true;
  Watchdog wd(o, r.fn());
  Feed feed(wd);
  three_busy_workers(feed);
  feed.place("gpu-4", pid, host);
  feed.stage_start(at(0s), "gpu-4", "AGENT");  // A crashed worker's stage is not counted.
  feed.claimed(at(0s), "gpu-4", "t4", "llm");
  wd.tick(at(60s));
  EXPECT_THAT(r.messages("crashed"), ElementsAre(StartsWith("Worker gpu-4")));
  EXPECT_THAT(r.messages("monitor"),
              ElementsAre("MONITOR: Workers: 3/4 alive, Stages: AGENT:2 JUDGE:1, Tasks: "
                          "processing 2, stuck 1, Queue: llm:123"));
}

TEST(WatchdogTest, MonitorEverySummaryIntervalOncePerTick) {
  Reports r;
  WatchdogOptions o = only();
  o.summary_interval = 60s;
  Watchdog wd(o, r.fn());
  Feed feed(wd);
  feed.stage_start(at(0s), "gpu-1", "AGENT");
  EXPECT_EQ(wd.next_deadline(), at(60s));
  wd.tick(at(60s));
  EXPECT_EQ(wd.next_deadline(), at(120s));
  wd.tick(at(250s));  // Late: one line, the next on the grid.
  EXPECT_EQ(r.rule("monitor").size(), 2u);
  EXPECT_EQ(wd.next_deadline(), at(300s));
}

// ---------------------------------------------------------------------------------------------
// A watchdog's own events are never folded back in

TEST(WatchdogTest, OwnReportsAreNotFoldedIntoASecondWatchdog) {
  Reports first_reports;
  WatchdogOptions o = only();
  o.progress_interval = 30s;
  o.stage_threshold = 60s;
  o.heartbeat_timeout = 60s;
  o.summary_interval = 60s;
  o.request_threshold = 60s;
  Watchdog first(o, first_reports.fn());
  Feed feed(first);
  feed.heartbeat(at(0s), "gpu-1");
  feed.stage_start(at(0s), "gpu-1", "AGENT");
  feed.request(at(0s), "gpu-0", "7f3a", "load_llm", "gpu-1");
  feed.log(at(1s), "gpu-0", "queue", {{"queue", "llm:5"}});
  tick_through(first, at(300s));
  auto reported = first_reports.all();
  ASSERT_FALSE(reported.empty());

  Reports second_reports;
  Watchdog second(o, second_reports.fn());
  Feed replay(second);
  for (const auto& e : reported) {
    std::vector<std::pair<std::string_view, std::string_view>> fields;
    replay.send(e.ts_ns, e.kind, e.status, e.worker, e.stage, e.message, fields, e.component);
  }
  EXPECT_THAT(second.workers(at(300s)), IsEmpty());
  EXPECT_EQ(second.next_deadline(), kNever);
  EXPECT_EQ(second.queue(), "");
  second.tick(at(1000s));
  EXPECT_EQ(second_reports.size(), 0u);
}

TEST(WatchdogTest, WatchdogEventsDoNotReviveASilentWorkerOrOpenStages) {
  Reports r;
  WatchdogOptions o = only();
  o.heartbeat_timeout = 60s;
  o.progress_interval = 30s;
  Watchdog wd(o, r.fn());
  Feed feed(wd);
  feed.heartbeat(at(0s), "gpu-1");
  wd.tick(at(90s));
  ASSERT_EQ(r.rule("silent").size(), 1u);
  // Events that would revive it or open a stage, were they not the watchdog's.
  feed.send(at(91s), Kind::Heartbeat, Status::Running, "gpu-1", {}, "heartbeat", {}, "watchdog");
  feed.send(at(91s), Kind::Stage, Status::Starting, "gpu-1", "AGENT", {}, {}, "watchdog");
  feed.send(at(91s), Kind::Lifecycle, Status::Completed, "gpu-1", {}, "shutting down", {},
            "watchdog");
  EXPECT_THAT(r.rule("recovered"), IsEmpty());
  auto rows = views(wd, at(95s));
  EXPECT_EQ(rows["gpu-1"].state, WorkerState::Silent);
  EXPECT_EQ(rows["gpu-1"].stage, "");
  EXPECT_EQ(rows["gpu-1"].last_heartbeat_ns, at(0s));
  EXPECT_EQ(rows["gpu-1"].last_event_ns, at(0s));
  wd.tick(at(200s));
  EXPECT_THAT(r.rule("running"), IsEmpty());
}

// ---------------------------------------------------------------------------------------------
// Live views

TEST(WatchdogTest, WorkerStatesRunningIdleStuckSilentCrashedDone) {
  Reports r;
  WatchdogOptions o = only();
  o.stage_threshold = 60s;
  o.heartbeat_timeout = 60s;
  Watchdog wd(o, r.fn());
  Feed feed(wd);
  feed.stage_start(at(30s), "running", "AGENT");
  feed.log(at(0s), "idle", "hello");
  feed.stage_start(at(0s), "idle", "WORKTREE");
  feed.stage_end(at(1s), "idle", "WORKTREE");
  feed.stage_start(at(0s), "stuck", "AGENT");
  feed.heartbeat(at(0s), "silent");
  feed.lifecycle(at(0s), "crashed", Status::Starting, "initialized");
  feed.lifecycle(at(5s), "crashed", Status::Failed, "crashed: KeyError: 'model_name'");
  feed.lifecycle(at(0s), "done", Status::Starting, "initialized");
  feed.lifecycle(at(5s), "done", Status::Completed, "shutting down - completed 0, failed 0");
  auto rows = views(wd, at(61s));
  ASSERT_EQ(rows.size(), 6u);
  EXPECT_EQ(rows["running"].state, WorkerState::Running);
  EXPECT_EQ(rows["idle"].state, WorkerState::Idle);
  EXPECT_EQ(rows["stuck"].state, WorkerState::Stuck);
  EXPECT_EQ(rows["silent"].state, WorkerState::Silent);
  EXPECT_EQ(rows["crashed"].state, WorkerState::Crashed);
  EXPECT_EQ(rows["done"].state, WorkerState::Done);
  // Earlier, before any threshold: the stuck one was running, the silent one idle.
  auto early = views(wd, at(10s));
  EXPECT_EQ(early["stuck"].state, WorkerState::Running);
  EXPECT_EQ(early["silent"].state, WorkerState::Idle);
  auto list = wd.workers(at(61s));
  ASSERT_EQ(list.size(), 6u);
  EXPECT_EQ(list[0].worker, "crashed");  // By name.
  EXPECT_EQ(list[5].worker, "stuck");
}

TEST(WatchdogTest, WorkerViewCarriesStageTaskTimesCountersAndPlace) {
  Reports r;
  Watchdog wd(only(), r.fn());
  Feed feed(wd);
  feed.place("gpu-1", 4242, "h7");
  feed.stage_start(at(1s), "gpu-1", "WORKTREE");
  feed.stage_end(at(2s), "gpu-1", "WORKTREE");
  feed.stage_start(at(2s), "gpu-1", "CLEANUP");
  feed.stage_end(at(3s), "gpu-1", "CLEANUP", Status::Failed);
  feed.claimed(at(3s), "gpu-1", "t1", "llm");
  feed.task_end(at(4s), "gpu-1", "t1", "llm");
  feed.claimed(at(4s), "gpu-1", "t2", "llm");
  feed.task_end(at(5s), "gpu-1", "t2", "llm");
  feed.claimed(at(5s), "gpu-1", "t3", "cpu");
  feed.task_end(at(6s), "gpu-1", "t3", "cpu", Status::Failed);
  feed.heartbeat(at(6s), "gpu-1");
  feed.stage_start(at(7s), "gpu-1", "AGENT");
  feed.claimed(at(8s), "gpu-1", "t9", "llm");
  feed.log(at(9s), "gpu-1", "Running agent");
  auto rows = views(wd, at(10s));
  ASSERT_EQ(rows.size(), 1u);
  const WorkerView& v = rows["gpu-1"];
  EXPECT_EQ(v.worker, "gpu-1");
  EXPECT_EQ(v.state, WorkerState::Running);
  EXPECT_EQ(v.stage, "AGENT");
  EXPECT_EQ(v.stage_since_ns, at(7s));
  EXPECT_EQ(v.task, "t9");
  EXPECT_EQ(v.task_class, "llm");
  EXPECT_EQ(v.first_event_ns, at(1s));
  EXPECT_EQ(v.last_event_ns, at(9s));
  EXPECT_EQ(v.last_heartbeat_ns, at(6s));
  EXPECT_EQ(v.tasks_done, 2u);
  EXPECT_EQ(v.tasks_failed, 1u);
  EXPECT_EQ(v.stages_done, 1u);
  EXPECT_EQ(v.stages_failed, 1u);
  EXPECT_EQ(v.last_message, "Running agent");
  EXPECT_EQ(v.pid, 4242);
  EXPECT_EQ(v.host, "h7");
}

TEST(WatchdogTest, WorkerStateNames) {
  EXPECT_EQ(worker_state_name(WorkerState::Running), "running");
  EXPECT_EQ(worker_state_name(WorkerState::Idle), "idle");
  EXPECT_EQ(worker_state_name(WorkerState::Stuck), "stuck");
  EXPECT_EQ(worker_state_name(WorkerState::Silent), "silent");
  EXPECT_EQ(worker_state_name(WorkerState::Crashed), "crashed");
  EXPECT_EQ(worker_state_name(WorkerState::Done), "done");
}

TEST(WatchdogTest, QueueIsTheLatestSnapshot) {
  Reports r;
  Watchdog wd(only(), r.fn());
  Feed feed(wd);
  EXPECT_EQ(wd.queue(), "");
  feed.log(at(0s), "gpu-1", "No suitable tasks", {{"queue", "llm:125"}});
  feed.log(at(1s), "gpu-2", "claimed");
  EXPECT_EQ(wd.queue(), "llm:125");
  feed.log(at(5s), "gpu-1", "No suitable tasks", {{"queue", "llm:123, cpu:4"}});
  EXPECT_EQ(wd.queue(), "llm:123, cpu:4");
}

TEST(WatchdogTest, MovedWatchdogKeepsItsState) {
  Reports r;
  WatchdogOptions o = only();
  o.progress_interval = 30s;
  Watchdog wd(o, r.fn());
  Feed feed(wd);
  feed.stage_start(at(0s), "gpu-1", "AGENT");
  Watchdog moved(std::move(wd));
  EXPECT_EQ(moved.next_deadline(), at(30s));
  EXPECT_EQ(moved.options().progress_interval, 30s);
  moved.tick(at(30s));
  EXPECT_THAT(r.running_s(), ElementsAre(30));
}

// ---------------------------------------------------------------------------------------------
// Through a Recorder on a FakeClock. The backend ticks the watchdog with the clock's time on
// each loop pass, and a flush makes a pass after the clock moved: advance, then flush.

std::vector<test::OwnedEvent> watchdog_events(const std::vector<test::OwnedEvent>& events,
                                              std::string_view rule) {
  std::vector<test::OwnedEvent> out;
  for (const auto& e : events) {
    if (e.component == "watchdog" && e.field("rule") == rule) out.push_back(e);
  }
  return out;
}

Options recorder_options() {
  Options options;
  WatchdogOptions w = only();
  w.progress_interval = 30s;
  w.stage_threshold = 50s;
  w.heartbeat_timeout = 60s;
  options.watchdog = w;
  return options;
}

TEST(WatchdogTest, RecorderReportsRunningLinesAsTheClockAdvances) {
  test::Recording f(recorder_options());
  f.recorder.set_worker("T0_00");
  std::vector<test::OwnedEvent> events;
  {
    StageScope scope(f.recorder.logger(), "AGENT");
    f.recorder.flush();
    f.clock.advance(30s);
    f.recorder.flush();
    f.recorder.flush();
    f.clock.advance(30s);
    f.recorder.flush();
    f.recorder.flush();
    f.clock.advance(5s);
    f.recorder.flush();
  }
  events = f.events();
  auto running = watchdog_events(events, "running");
  ASSERT_EQ(running.size(), 2u);
  EXPECT_EQ(running[0].worker, "T0_00");
  EXPECT_EQ(running[0].kind, Kind::Stage);
  EXPECT_EQ(running[0].status, Status::Running);
  EXPECT_EQ(running[0].stage, "AGENT");
  EXPECT_EQ(running[0].elapsed_ns, ns(30s));
  EXPECT_EQ(running[1].elapsed_ns, ns(60s));
  // The stage passed its 50 s threshold by the tick at 60 s, then ended at 65 s.
  auto stuck = watchdog_events(events, "stuck_stage");
  ASSERT_EQ(stuck.size(), 1u);
  EXPECT_THAT(stuck[0].message,
              StartsWith("Stage AGENT on T0_00 (pid " + std::to_string(f.recorder.pid()) +
                         ", host " + f.recorder.host() + ") open for 60s (threshold: 50s)"));
  auto recovered = watchdog_events(events, "recovered");
  ASSERT_EQ(recovered.size(), 1u);
  EXPECT_EQ(recovered[0].message, "recovered: Stage AGENT on T0_00 ended completed after 65s");
}

TEST(WatchdogTest, RecorderReportsASilentAgent) {
  test::Recording f(recorder_options());
  Agent agent(f.recorder, "gpu-1");
  agent.initialized(kv("gpu", 1));
  agent.heartbeat();
  f.recorder.flush();
  f.clock.advance(90s);
  f.recorder.flush();
  f.recorder.flush();
  auto silent = watchdog_events(f.events(), "silent");
  ASSERT_EQ(silent.size(), 1u);
  EXPECT_THAT(silent[0].message,
              StartsWith("Worker gpu-1 last heartbeat 90s ago (threshold: 60s)"));
  EXPECT_EQ(silent[0].level, Level::Warning);
}

TEST(WatchdogTest, RecorderWithoutAWatchdogReportsNothing) {
  Options options = recorder_options();
  options.watchdog = std::nullopt;
  test::Recording f(options);
  {
    Agent agent(f.recorder, "gpu-1");
    agent.initialized();
    agent.heartbeat();
    agent.claimed("t1", "llm");
    StageScope scope(f.recorder.logger(), "AGENT");
    for (int i = 0; i < 10; ++i) {
      f.clock.advance(100s);
      f.recorder.flush();
    }
  }
  auto events = f.events();
  ASSERT_FALSE(events.empty());
  for (const auto& e : events) EXPECT_NE(e.component, "watchdog") << e.message;
}

}  // namespace
}  // namespace stagelog
