// The watchdog's stage and task rules: "Running" lines for open stages, stuck stages and
// tasks, their backoff and recovery. Fed hand-made events with explicit times and ticks
// (test::WatchdogHarness); no sleeps, no real clock. The other rules: watchdog_worker_test.cpp
// (silent, crashed), watchdog_test.cpp (requests, deadlines, MONITOR, live views),
// watchdog_recorder_test.cpp (through a Recorder).

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <vector>

#include "stagelog/watchdog.hpp"
#include "watchdog_harness.hpp"

namespace stagelog {
namespace {

using test::at;
using test::kNever;
using test::kT0;
using test::ns;
using test::tick_through;
using test::views;
using ::testing::Contains;
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
// Still running

TEST_F(WatchdogTest, OpenStageReportsRunningEveryProgressInterval) {
  o.progress_interval = 30s;
  Watchdog& wd = start();
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

TEST_F(WatchdogTest, SparseTicksGiveOneRunningLineEach) {
  o.progress_interval = 30s;
  Watchdog& wd = start();
  feed.stage_start(at(0s), "gpu-1", "AGENT");
  wd.tick(at(95s));
  EXPECT_THAT(r.running_s(), ElementsAre(95));
  EXPECT_THAT(r.lines(), ElementsAre(HasSubstr("Stage: AGENT - Running (95.0s)")));
  EXPECT_EQ(wd.next_deadline(), at(120s));
  wd.tick(at(119s));
  wd.tick(at(120s));
  EXPECT_THAT(r.running_s(), ElementsAre(95, 120));
}

TEST_F(WatchdogTest, DenseTicksGiveExactlyOneRunningLinePerInterval) {
  o.progress_interval = 30s;
  Watchdog& wd = start();
  feed.stage_start(at(0s), "gpu-1", "AGENT");
  for (int s = 0; s <= 100; ++s) {
    wd.tick(at(std::chrono::seconds(s)));
    wd.tick(at(std::chrono::seconds(s) + 500ms));
  }
  EXPECT_THAT(r.running_s(), ElementsAre(30, 60, 90));
}

TEST_F(WatchdogTest, NoRunningLineAfterTheStageEnds) {
  o.progress_interval = 30s;
  Watchdog& wd = start();
  feed.stage_start(at(0s), "gpu-1", "AGENT");
  wd.tick(at(30s));
  feed.stage_end(at(40s), "gpu-1", "AGENT");
  EXPECT_EQ(wd.next_deadline(), kNever);
  wd.tick(at(60s));
  wd.tick(at(600s));
  EXPECT_THAT(r.running_s(), ElementsAre(30));
}

TEST_F(WatchdogTest, NestedStagesEachReportRunning) {
  o.progress_interval = 30s;
  Watchdog& wd = start();
  feed.stage_start(at(0s), "gpu-1", "AGENT");
  feed.stage_start(at(10s), "gpu-1", "JUDGE");
  tick_through(wd, at(45s));
  EXPECT_THAT(r.running_s("AGENT"), ElementsAre(30));
  EXPECT_THAT(r.running_s("JUDGE"), ElementsAre(30));
  auto rows = views(wd, at(45s));
  EXPECT_EQ(rows["gpu-1"].stage, "JUDGE");  // The innermost.
  EXPECT_EQ(rows["gpu-1"].stage_since_ns, at(10s));
}

TEST_F(WatchdogTest, ZeroProgressIntervalTurnsRunningLinesOff) {
  Watchdog& wd = start();
  feed.stage_start(at(0s), "gpu-1", "AGENT");
  EXPECT_EQ(wd.next_deadline(), kNever);
  wd.tick(at(30s));
  wd.tick(at(3600s));
  EXPECT_EQ(r.size(), 0u);
}

// ---------------------------------------------------------------------------------------------
// Stuck stages and tasks

TEST_F(WatchdogTest, StuckStageNamesWorkerPidHostTimesAndLastMessage) {
  o.stage_threshold = 300s;
  Watchdog& wd = start();
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

TEST_F(WatchdogTest, StuckTaskUsesTheTaskThreshold) {
  o.stage_threshold = 300s;
  o.task_threshold = 1200s;
  Watchdog& wd = start();
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

TEST_F(WatchdogTest, DefaultThresholdsAreFiveMinutesForStagesAndTasks) {
  o = WatchdogOptions();  // The defaults, then the other rules off.
  o.progress_interval = 0s;
  o.heartbeat_timeout = 0s;
  o.summary_interval = 0s;
  o.check_processes = false;
  Watchdog& wd = start();
  feed.stage_start(at(0s), "gpu-1", "AGENT");
  EXPECT_EQ(wd.next_deadline(), at(300s));
  feed.stage_end(at(1s), "gpu-1", "AGENT");
  feed.claimed(at(2s), "gpu-1", "t1", "llm");
  EXPECT_EQ(wd.next_deadline(), at(302s));  // Seed 001: a task processing > 5 minutes.
}

TEST_F(WatchdogTest, PerStageAndPerTaskClassThresholdsWin) {
  o.stage_threshold = 300s;
  o.stage_thresholds = {{"AGENT", 60s}};
  o.task_threshold = 1200s;
  o.task_thresholds = {{"llm", 100s}};
  Watchdog& wd = start();
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

TEST_F(WatchdogTest, StuckWarningRepeatsAtThresholdTimesTwoFourEight) {
  o.stage_threshold = 300s;
  Watchdog& wd = start();
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

TEST_F(WatchdogTest, RepeatsAreAtLeastEveryMaxRepeat) {
  o.stage_threshold = 300s;
  o.max_repeat = 500s;
  Watchdog& wd = start();
  feed.stage_start(at(0s), "gpu-1", "AGENT");
  std::vector<std::int64_t> deadlines;
  for (int i = 0; i < 5; ++i) {
    deadlines.push_back(wd.next_deadline() - kT0);
    wd.tick(wd.next_deadline());
  }
  EXPECT_THAT(deadlines, ElementsAre(ns(300s), ns(600s), ns(1100s), ns(1600s), ns(2100s)));
  EXPECT_EQ(r.rule("stuck_stage").size(), 5u);
}

TEST_F(WatchdogTest, ALateTickKeepsTheBackoffSchedule) {
  // One warning for the late tick, and the next one still at threshold x2 of time open.
  o.stage_threshold = 300s;
  o.task_threshold = 300s;
  Watchdog& wd = start();
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

TEST_F(WatchdogTest, StageThatEndsAfterAWarningIsRecovered) {
  o.stage_threshold = 300s;
  Watchdog& wd = start();
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

TEST_F(WatchdogTest, TaskThatEndsAfterAWarningIsRecovered) {
  o.task_threshold = 100s;
  Watchdog& wd = start();
  feed.claimed(at(0s), "gpu-1", "d5de16d7", "llm");
  wd.tick(at(100s));
  feed.task_end(at(130s), "gpu-1", "d5de16d7", "llm", Status::Failed);
  EXPECT_THAT(r.messages("recovered"),
              ElementsAre("recovered: Task d5de16d7 (llm) on gpu-1 ended failed after 130s"));
  EXPECT_EQ(r.rule("recovered")[0].field("recovered"), "stuck_task");
}

TEST_F(WatchdogTest, StageEndingJustBeforeItsThresholdWarnsNothing) {
  o.stage_threshold = 300s;
  o.task_threshold = 1200s;
  Watchdog& wd = start();
  feed.stage_start(at(0s), "gpu-1", "AGENT");
  feed.claimed(at(0s), "gpu-1", "t1", "llm");
  feed.stage_end(at(300s - 1ms), "gpu-1", "AGENT");
  feed.task_end(at(1200s - 1ms), "gpu-1", "t1", "llm");
  wd.tick(at(301s));
  wd.tick(at(1201s));
  wd.tick(at(10000s));
  EXPECT_EQ(r.size(), 0u);  // Neither stuck nor recovered.
}

}  // namespace
}  // namespace stagelog
