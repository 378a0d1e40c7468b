// The watchdog's worker rules: silent workers (heartbeats) and crashed processes (pids on this
// host, real child processes). Fed hand-made events with explicit times and ticks
// (test::WatchdogHarness); no sleeps, no real clock.

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "stagelog/watchdog.hpp"
#include "watchdog_harness.hpp"

namespace stagelog {
namespace {

using test::at;
using test::dead_pid;
using test::kNever;
using test::kT0;
using test::LiveChild;
using test::local_host;
using test::ns;
using test::tick_through;
using test::views;
using test::WatchdogHarness;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::StartsWith;
using namespace std::chrono_literals;

// Each test sets the options it looks at on `o` (every rule off to begin with), calls
// start(), feeds events through `feed`, ticks the watchdog and reads `r`.
class WatchdogTest : public ::testing::Test, protected test::WatchdogHarness {};

// ---------------------------------------------------------------------------------------------
// Silent workers

TEST_F(WatchdogTest, SilentWorkerExactText) {
  o.heartbeat_timeout = 60s;
  Watchdog& wd = start();
  feed.heartbeat(at(0s), "gpu-1");
  EXPECT_EQ(wd.next_deadline(), at(60s));
  wd.tick(at(90s));
  auto silent = r.rule("silent");
  ASSERT_EQ(silent.size(), 1u);
  EXPECT_EQ(silent[0].message, "Worker gpu-1 last heartbeat 90s ago (threshold: 60s)");
  EXPECT_EQ(silent[0].level, Level::Warning);
  EXPECT_EQ(silent[0].worker, "gpu-1");
}

TEST_F(WatchdogTest, SilentIsDueExactlyAtTheTimeout) {
  o.heartbeat_timeout = 60s;
  Watchdog& wd = start();
  feed.heartbeat(at(0s), "gpu-1");
  feed.heartbeat(at(20s), "gpu-1");
  EXPECT_EQ(wd.next_deadline(), at(80s));
  wd.tick(at(80s) - 1);
  EXPECT_EQ(r.size(), 0u);
  wd.tick(at(80s));
  EXPECT_THAT(r.messages("silent"),
              ElementsAre("Worker gpu-1 last heartbeat 60s ago (threshold: 60s)"));
}

TEST_F(WatchdogTest, RegularHeartbeatsKeepAWorkerQuiet) {
  o.heartbeat_timeout = 60s;
  Watchdog& wd = start();
  for (int s = 0; s <= 600; s += 30) {
    feed.heartbeat(at(std::chrono::seconds(s)), "gpu-1");
    wd.tick(at(std::chrono::seconds(s) + 29s));
  }
  EXPECT_EQ(r.size(), 0u);
  EXPECT_EQ(views(wd, at(629s))["gpu-1"].state, WorkerState::Idle);
}

TEST_F(WatchdogTest, SilentWarningRepeatsAtBackoff) {
  o.heartbeat_timeout = 60s;
  Watchdog& wd = start();
  feed.heartbeat(at(0s), "gpu-1");
  std::vector<std::int64_t> deadlines;
  for (int i = 0; i < 4; ++i) {
    deadlines.push_back(wd.next_deadline() - kT0);
    wd.tick(wd.next_deadline());
  }
  EXPECT_THAT(deadlines, ElementsAre(ns(60s), ns(120s), ns(240s), ns(480s)));
  EXPECT_EQ(r.rule("silent").size(), 4u);
}

TEST_F(WatchdogTest, LateSilentTickKeepsTheBackoffSchedule) {
  o.heartbeat_timeout = 60s;
  Watchdog& wd = start();
  feed.heartbeat(at(0s), "gpu-1");
  wd.tick(at(90s));
  EXPECT_EQ(wd.next_deadline(), at(120s));
}

TEST_F(WatchdogTest, AgentWithoutAHeartbeatIsTimedFromItsFirstEvent) {
  for (Status status : {Status::Starting, Status::Running}) {  // initialized, starting
    WatchdogHarness h;                                         // A fresh watchdog for each status.
    h.o.heartbeat_timeout = 60s;
    Watchdog& wd = h.start();
    h.feed.lifecycle(at(10s), "gpu-1", status, "initialized");
    h.feed.log(at(20s), "gpu-1", "loading model");
    EXPECT_EQ(wd.next_deadline(), at(70s));
    wd.tick(at(70s) - 1);
    EXPECT_EQ(h.r.size(), 0u);
    wd.tick(at(70s));
    auto silent = h.r.rule("silent");
    ASSERT_EQ(silent.size(), 1u) << status_name(status);
    EXPECT_EQ(silent[0].worker, "gpu-1");
    EXPECT_THAT(silent[0].message, StartsWith("Worker gpu-1 "));
    EXPECT_THAT(silent[0].message, HasSubstr("60s"));
    EXPECT_EQ(views(wd, at(70s))["gpu-1"].state, WorkerState::Silent);
  }
}

TEST_F(WatchdogTest, WorkerThatNeverHeartbeatsAndIsNoAgentIsNeverSilent) {
  o.heartbeat_timeout = 60s;
  Watchdog& wd = start();
  feed.log(at(0s), "T0_00", "hello");
  feed.stage_start(at(1s), "T0_00", "AGENT");
  feed.stage_end(at(2s), "T0_00", "AGENT");
  EXPECT_EQ(wd.next_deadline(), kNever);
  wd.tick(at(1000s));
  EXPECT_EQ(r.size(), 0u);
}

TEST_F(WatchdogTest, HeartbeatAfterShutdownRaisesNothing) {
  o.heartbeat_timeout = 60s;
  Watchdog& wd = start();
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

TEST_F(WatchdogTest, NoSilentWarningAfterShutdown) {
  o.heartbeat_timeout = 60s;
  Watchdog& wd = start();
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

TEST_F(WatchdogTest, HeartbeatAfterASilentWarningIsRecovered) {
  o.heartbeat_timeout = 60s;
  Watchdog& wd = start();
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

TEST_F(WatchdogTest, NoRecoveredWithoutAWarning) {
  o.heartbeat_timeout = 60s;
  o.stage_threshold = 60s;
  Watchdog& wd = start();
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

TEST_F(WatchdogTest, DeadProcessOnThisHostIsCrashed) {
  const std::string host = local_host();
  const pid_t pid = dead_pid();
  o.check_processes = true;
  Watchdog& wd = start();
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

TEST_F(WatchdogTest, ZombieCountsAsDead) {
  const std::string host = local_host();
  pid_t pid = ::fork();
  if (pid == 0) ::_exit(0);
  siginfo_t info{};
  ASSERT_EQ(::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOWAIT), 0);  // Not reaped.
  o.check_processes = true;
  Watchdog& wd = start();
  feed.place("gpu-2", pid, host);
  feed.stage_start(at(0s), "gpu-2", "AGENT");
  wd.tick(at(1s));
  ::waitpid(pid, nullptr, 0);
  EXPECT_THAT(r.messages("crashed"), ElementsAre(StartsWith("Worker gpu-2 (pid ")));
}

TEST_F(WatchdogTest, LiveProcessIsNotCrashedAndItsDeathIsSeenWithinASecond) {
  const std::string host = local_host();
  LiveChild child;
  o.check_processes = true;
  Watchdog& wd = start();
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

TEST_F(WatchdogTest, CheckProcessesOffNeverCrashesByPid) {
  const std::string host = local_host();
  const pid_t pid = dead_pid();
  o.check_processes = false;
  Watchdog& wd = start();
  feed.place("gpu-2", pid, host);
  feed.stage_start(at(0s), "gpu-2", "AGENT");
  EXPECT_EQ(wd.next_deadline(), kNever);
  wd.tick(at(1s));
  wd.tick(at(1000s));
  EXPECT_EQ(r.size(), 0u);
  EXPECT_EQ(views(wd, at(1000s))["gpu-2"].state, WorkerState::Running);
}

TEST_F(WatchdogTest, ProcessOnAnotherHostIsNotChecked) {
  const pid_t pid = dead_pid();
  o.check_processes = true;
  Watchdog& wd = start();
  feed.place("gpu-2", pid, local_host() + ".elsewhere");
  feed.stage_start(at(0s), "gpu-2", "AGENT");
  wd.tick(at(1s));
  wd.tick(at(100s));
  EXPECT_EQ(r.size(), 0u);
}

TEST_F(WatchdogTest, ProcessGoneAfterItsShutdownIsDoneNotCrashed) {
  const std::string host = local_host();
  const pid_t pid = dead_pid();
  o.check_processes = true;
  o.heartbeat_timeout = 60s;
  Watchdog& wd = start();
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

TEST_F(WatchdogTest, ThreadWorkersOfARecorderThatClosedAreDoneNotCrashed) {
  // A pipeline's thread workers never say shutdown; their process exits normally, and its
  // recorder says it closed. Another process that just vanished is still crashed.
  const std::string host = local_host();
  const pid_t pid = dead_pid();
  const pid_t other_pid = dead_pid();
  o.check_processes = true;
  o.stage_threshold = 60s;
  Watchdog& wd = start();
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

TEST_F(WatchdogTest, ALifecycleEndWithoutRecorderClosedEndsOnlyItsOwnWorker) {
  const std::string host = local_host();
  const pid_t pid = dead_pid();
  o.check_processes = true;
  Watchdog& wd = start();
  feed.place("gpu-1", pid, host);
  feed.place("gpu-2", pid, host);
  feed.stage_start(at(0s), "gpu-1", "AGENT");
  feed.stage_start(at(0s), "gpu-2", "AGENT");
  feed.lifecycle(at(1s), "gpu-1", Status::Completed, "shutting down - completed 1, failed 0");
  tick_through(wd, at(10s));
  EXPECT_THAT(r.messages("crashed"), ElementsAre(StartsWith("Worker gpu-2 ")));
}

TEST_F(WatchdogTest, KilledMidTaskReportsStuckTaskSilenceAndCrashOnceEach) {
  // Seed 001's "kill -9 mid-task": stuck task + silent heartbeat + crashed, then quiet.
  const std::string host = local_host();
  const pid_t pid = dead_pid();
  o.check_processes = true;
  o.progress_interval = 30s;
  o.stage_threshold = 100s;
  o.task_threshold = 120s;
  o.heartbeat_timeout = 60s;
  Watchdog& wd = start();
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

}  // namespace
}  // namespace stagelog
