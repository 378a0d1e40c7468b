// The watchdog inside a Recorder on a FakeClock: the backend thread ticks it. No sleeps.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <string_view>
#include <vector>

#include "recording.hpp"
#include "stagelog/agent.hpp"
#include "stagelog/stage.hpp"
#include "stagelog/watchdog.hpp"
#include "watchdog_harness.hpp"

namespace stagelog {
namespace {

using test::all_rules_off;
using test::ns;
using ::testing::StartsWith;
using namespace std::chrono_literals;

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
  WatchdogOptions w = all_rules_off();
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
