// The watchdog's request rule, its deadlines, the MONITOR line, its own events, and its live
// views. Fed hand-made events with explicit times and ticks (test::WatchdogHarness); no
// sleeps, no real clock. The rest of its rules: watchdog_stage_test.cpp (running, stuck
// stages and tasks), watchdog_worker_test.cpp (silent, crashed); through a Recorder:
// watchdog_recorder_test.cpp.

#include "stagelog/watchdog.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "watchdog_harness.hpp"

namespace stagelog {
namespace {

using test::all_rules_off;
using test::at;
using test::dead_pid;
using test::Feed;
using test::kNever;
using test::kT0;
using test::LiveChild;
using test::local_host;
using test::tick_through;
using test::views;
using test::WatchdogHarness;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using ::testing::StartsWith;
using namespace std::chrono_literals;

// Each test sets the options it looks at on `o` (every rule off to begin with), calls
// start(), feeds events through `feed`, ticks the watchdog and reads `r`.
class WatchdogTest : public ::testing::Test, protected test::WatchdogHarness {};

// ---------------------------------------------------------------------------------------------
// Stale requests

TEST_F(WatchdogTest, StaleRequestExactTextAndRecovery) {
  o.request_threshold = 60s;
  Watchdog& wd = start();
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

TEST_F(WatchdogTest, RequestFulfilledBeforeItsThresholdWarnsNothing) {
  o.request_threshold = 60s;
  Watchdog& wd = start();
  feed.request(at(0s), "gpu-0", "7f3a", "load_llm", "gpu-1,gpu-3");
  wd.tick(at(30s));
  feed.fulfilled(at(59s), "gpu-2", "7f3a");
  wd.tick(at(61s));
  wd.tick(at(1000s));
  EXPECT_EQ(r.size(), 0u);
}

TEST_F(WatchdogTest, RequestNamesOnlyWorkersThatStillWait) {
  o.request_threshold = 60s;
  Watchdog& wd = start();
  feed.log(at(0s), "gpu-1", "waiting");
  feed.log(at(0s), "gpu-3", "waiting");
  feed.request(at(0s), "gpu-0", "7f3a", "load_llm", "gpu-1, gpu-3");
  feed.lifecycle(at(10s), "gpu-1", Status::Completed, "shutting down - completed 0, failed 0");
  wd.tick(at(62s));
  EXPECT_THAT(r.messages("stale_request"),
              ElementsAre("Request 7f3a (load_llm) open for 62s but workers [gpu-3] still wait "
                          "for it (threshold: 60s)"));
}

TEST_F(WatchdogTest, RequestWhoseWaitersHaveAllShutDownWarnsNothing) {
  o.request_threshold = 60s;
  Watchdog& wd = start();
  feed.log(at(0s), "gpu-1", "waiting");
  feed.log(at(0s), "gpu-3", "waiting");
  feed.request(at(0s), "gpu-0", "7f3a", "load_llm", "gpu-1,gpu-3");
  feed.lifecycle(at(10s), "gpu-1", Status::Completed, "shutting down - completed 0, failed 0");
  feed.lifecycle(at(20s), "gpu-3", Status::Completed, "shutting down - completed 0, failed 0");
  wd.tick(at(62s));
  wd.tick(at(1000s));
  EXPECT_THAT(r.rule("stale_request"), IsEmpty());
}

TEST_F(WatchdogTest, RequestThresholdOverrideByWhat) {
  o.request_threshold = 60s;
  o.request_thresholds = {{"load_llm", 30s}};
  Watchdog& wd = start();
  feed.request(at(0s), "gpu-0", "7f3a", "load_llm", "gpu-1");
  feed.request(at(0s), "gpu-0", "8b4c", "load_tts", "gpu-1");
  EXPECT_EQ(wd.next_deadline(), at(30s));
  wd.tick(at(30s));
  EXPECT_THAT(r.messages("stale_request"), ElementsAre(StartsWith("Request 7f3a (load_llm)")));
  EXPECT_EQ(wd.next_deadline(), at(60s));
}

// ---------------------------------------------------------------------------------------------
// The deadline always moves on

TEST_F(WatchdogTest, DeadlineAdvancesWhenEveryWaiterIsGone) {
  o.request_threshold = 60s;
  Watchdog& wd = start();
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

TEST_F(WatchdogTest, DeadlineAlwaysAdvancesWithEveryRuleActive) {
  const std::string host = local_host();
  LiveChild live;
  const pid_t dead = dead_pid();
  o = WatchdogOptions();
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
  Watchdog& wd = start();
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

TEST_F(WatchdogTest, NextDeadlineIsExactlyWhenEachRuleIsDue) {
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
    WatchdogHarness h;  // A fresh watchdog for each rule.
    c.setup(h.o);
    Watchdog& wd = h.start();
    c.feed(h.feed);
    EXPECT_EQ(wd.next_deadline(), c.due);
    wd.tick(c.due - 1);
    EXPECT_EQ(h.r.size(), 0u);
    EXPECT_EQ(wd.next_deadline(), c.due);
    wd.tick(c.due);
    EXPECT_EQ(h.r.rule(c.rule).size(), 1u);
    EXPECT_GT(wd.next_deadline(), c.due);
  }
}

TEST_F(WatchdogTest, NothingPendingMeansNoDeadline) {
  o = WatchdogOptions();  // The defaults.
  Watchdog& wd = start();
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
  WatchdogOptions o = all_rules_off();
  o.summary_interval = 60s;
  o.heartbeat_timeout = 60s;
  o.task_threshold = 1200s;
  o.task_thresholds = {{"llm", 50s}};
  return o;
}

TEST_F(WatchdogTest, MonitorLineWithASilentWorker) {
  o = monitor_options();
  Watchdog& wd = start();
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

TEST_F(WatchdogTest, MonitorLineWithACrashedWorker) {
  const std::string host = local_host();
  ASSERT_NE(host, "h1");
  const pid_t pid = dead_pid();
  o = monitor_options();
  o.check_processes = true;
  Watchdog& wd = start();
  three_busy_workers(feed);
  feed.place("gpu-4", pid, host);
  feed.stage_start(at(0s), "gpu-4", "AGENT");  // A crashed worker's stage is not counted.
  feed.claimed(at(0s), "gpu-4", "t4", "llm");
  wd.tick(at(60s));
  EXPECT_THAT(r.messages("crashed"), ElementsAre(StartsWith("Worker gpu-4")));
  // Issue 22: its open task is not: it stays processing (and stuck) as orphaned.
  EXPECT_THAT(r.messages("monitor"),
              ElementsAre("MONITOR: Workers: 3/4 alive, Stages: AGENT:2 JUDGE:1, Tasks: "
                          "processing 3, stuck 2, orphaned 1, Queue: llm:123"));
}

TEST_F(WatchdogTest, MonitorEverySummaryIntervalOncePerTick) {
  o.summary_interval = 60s;
  Watchdog& wd = start();
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

TEST_F(WatchdogTest, OwnReportsAreNotFoldedIntoASecondWatchdog) {
  o.progress_interval = 30s;
  o.stage_threshold = 60s;
  o.heartbeat_timeout = 60s;
  o.summary_interval = 60s;
  o.request_threshold = 60s;
  Watchdog& first = start();
  feed.heartbeat(at(0s), "gpu-1");
  feed.stage_start(at(0s), "gpu-1", "AGENT");
  feed.request(at(0s), "gpu-0", "7f3a", "load_llm", "gpu-1");
  feed.log(at(1s), "gpu-0", "queue", {{"queue", "llm:5"}});
  tick_through(first, at(300s));
  auto reported = r.all();
  ASSERT_FALSE(reported.empty());

  WatchdogHarness replay;  // A second watchdog, fed the first one's reports.
  replay.o = o;
  Watchdog& second = replay.start();
  for (const auto& e : reported) {
    std::vector<std::pair<std::string_view, std::string_view>> fields;
    replay.feed.send(e.ts_ns, e.kind, e.status, e.worker, e.stage, e.message, fields, e.component);
  }
  EXPECT_THAT(second.workers(at(300s)), IsEmpty());
  EXPECT_EQ(second.next_deadline(), kNever);
  EXPECT_EQ(second.queue(), "");
  second.tick(at(1000s));
  EXPECT_EQ(replay.r.size(), 0u);
}

TEST_F(WatchdogTest, WatchdogEventsDoNotReviveASilentWorkerOrOpenStages) {
  o.heartbeat_timeout = 60s;
  o.progress_interval = 30s;
  Watchdog& wd = start();
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

TEST_F(WatchdogTest, WorkerStatesRunningIdleStuckSilentCrashedDone) {
  o.stage_threshold = 60s;
  o.heartbeat_timeout = 60s;
  Watchdog& wd = start();
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

TEST_F(WatchdogTest, WorkerViewCarriesStageTaskTimesCountersAndPlace) {
  Watchdog& wd = start();
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

TEST_F(WatchdogTest, WorkerStateNames) {
  EXPECT_EQ(worker_state_name(WorkerState::Running), "running");
  EXPECT_EQ(worker_state_name(WorkerState::Idle), "idle");
  EXPECT_EQ(worker_state_name(WorkerState::Stuck), "stuck");
  EXPECT_EQ(worker_state_name(WorkerState::Silent), "silent");
  EXPECT_EQ(worker_state_name(WorkerState::Crashed), "crashed");
  EXPECT_EQ(worker_state_name(WorkerState::Done), "done");
}

TEST_F(WatchdogTest, QueueIsTheLatestSnapshot) {
  Watchdog& wd = start();
  EXPECT_EQ(wd.queue(), "");
  feed.log(at(0s), "gpu-1", "No suitable tasks", {{"queue", "llm:125"}});
  feed.log(at(1s), "gpu-2", "claimed");
  EXPECT_EQ(wd.queue(), "llm:125");
  feed.log(at(5s), "gpu-1", "No suitable tasks", {{"queue", "llm:123, cpu:4"}});
  EXPECT_EQ(wd.queue(), "llm:123, cpu:4");
}

TEST_F(WatchdogTest, MovedWatchdogKeepsItsState) {
  o.progress_interval = 30s;
  Watchdog& wd = start();
  feed.stage_start(at(0s), "gpu-1", "AGENT");
  Watchdog moved(std::move(wd));
  EXPECT_EQ(moved.next_deadline(), at(30s));
  EXPECT_EQ(moved.options().progress_interval, 30s);
  moved.tick(at(30s));
  EXPECT_THAT(r.running_s(), ElementsAre(30));
}

}  // namespace
}  // namespace stagelog
