#include "stagelog/stage.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <span>
#include <stdexcept>
#include <vector>

#include "fake_clock.hpp"
#include "memory_sink.hpp"
#include "recording.hpp"
#include "stagelog/sinks/text_sink.hpp"
#include "temp_dir.hpp"

namespace stagelog {
namespace {

using namespace std::chrono_literals;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

enum class ExecutionStage { WORKTREE, AGENT, JUDGE, CLEANUP };

using Fixture = test::Recording;

TEST(StageScopeTest, RecordsStartingThenCompletedWithElapsedTime) {
  Fixture f;
  {
    StageScope stage(f.recorder, "AGENT", kv("model", "qwen2.5:7b"));
    f.clock.advance(13'222ms);
  }
  auto events = f.events();
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].kind, Kind::Stage);
  EXPECT_EQ(events[0].stage, "AGENT");
  EXPECT_EQ(events[0].status, Status::Starting);
  EXPECT_EQ(events[0].field("model"), "qwen2.5:7b");
  EXPECT_FALSE(events[0].elapsed_ns.has_value());
  EXPECT_EQ(events[1].status, Status::Completed);
  EXPECT_EQ(events[1].level, Level::Info);
  EXPECT_EQ(events[1].elapsed_ns, 13'222'000'000);
}

TEST(StageScopeTest, TypedStagesUseTheEnumeratorName) {
  Fixture f;
  { StageScope stage(f.recorder, ExecutionStage::JUDGE); }
  auto events = f.events();
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].stage, "JUDGE");
  EXPECT_EQ(enum_name(ExecutionStage::CLEANUP), "CLEANUP");
}

TEST(StageScopeTest, FailRecordsErrorLevelMessageAndEndFields) {
  Fixture f;
  {
    StageScope stage(f.recorder.component("worker"), "orchestrator_execution");
    f.clock.advance(2s);
    stage.fail("AI generation timeout after 480000ms", kv("retry_attempt", 2));
    f.clock.advance(5s);  // After fail(): the destructor records nothing more.
  }
  auto events = f.events();
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[1].status, Status::Failed);
  EXPECT_EQ(events[1].level, Level::Error);
  EXPECT_EQ(events[1].component, "worker");
  EXPECT_EQ(events[1].message, "AI generation timeout after 480000ms");
  EXPECT_EQ(events[1].field("retry_attempt"), "2");
  EXPECT_EQ(events[1].elapsed_ns, 2'000'000'000);
}

TEST(StageScopeTest, SkipRecordsSkippedWithTheReason) {
  Fixture f;
  {
    StageScope stage(f.recorder, "pdf_generation");
    stage.skip("tier has no PDF");
  }
  auto events = f.events();
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[1].status, Status::Skipped);
  EXPECT_EQ(events[1].message, "tier has no PDF");
}

TEST(StageScopeTest, CompleteTakesFieldsForTheEndEvent) {
  Fixture f;
  {
    StageScope stage(f.recorder, "AGENT");
    stage.complete(kv("tokens", 1247));
    EXPECT_TRUE(stage.ended());
  }
  auto events = f.events();
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[1].field("tokens"), "1247");
}

TEST(StageScopeTest, FieldsAsASpanReachTheStartAndEndEvents) {
  Fixture f;
  std::vector<Kv> start = {kv("model", "qwen2.5:7b"), kv("attempt", 1)};
  std::vector<Kv> end = {kv("tokens", 1247)};
  {
    StageScope a(f.recorder.logger(), "AGENT", std::span<const Kv>(start));
    a.complete(std::span<const Kv>(end));
    StageScope b(f.recorder.logger(), "JUDGE", std::span<const Kv>());
    b.fail("timeout", std::span<const Kv>(end));
    StageScope c(f.recorder.logger(), "CLEANUP", std::span<const Kv>());
    c.skip("cached", std::span<const Kv>());
  }
  auto events = f.events();
  ASSERT_EQ(events.size(), 6u);
  EXPECT_EQ(events[0].field("model"), "qwen2.5:7b");
  EXPECT_EQ(events[0].field("attempt"), "1");
  EXPECT_EQ(events[1].status, Status::Completed);
  EXPECT_EQ(events[1].field("tokens"), "1247");
  EXPECT_EQ(events[3].status, Status::Failed);
  EXPECT_EQ(events[3].message, "timeout");
  EXPECT_EQ(events[3].field("tokens"), "1247");
  EXPECT_EQ(events[5].status, Status::Skipped);
  EXPECT_EQ(events[5].message, "cached");
}

TEST(StageScopeTest, AnEscapingExceptionMarksTheStageFailed) {
  Fixture f;
  try {
    StageScope stage(f.recorder, "JUDGE");
    f.clock.advance(6'666ms);
    throw std::runtime_error("judge crashed");
  } catch (const std::runtime_error&) {
  }
  auto events = f.events();
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[1].status, Status::Failed);
  EXPECT_EQ(events[1].message, "exception thrown");
  EXPECT_EQ(events[1].elapsed_ns, 6'666'000'000);
}

TEST(StageScopeTest, AScopeInsideACatchBlockCompletesNormally) {
  Fixture f;
  try {
    throw std::runtime_error("handled");
  } catch (const std::exception&) {
    StageScope stage(f.recorder, "error_handling");
  }
  auto events = f.events();
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[1].status, Status::Completed);
}

TEST(StageScopeTest, RunStageRecordsTheExceptionTypeAndMessageAndRethrows) {
  Fixture f;
  EXPECT_THROW(run_stage(f.recorder.logger(), "transcribe",
                         []() -> int { throw std::invalid_argument("bad audio header"); }),
               std::invalid_argument);
  EXPECT_EQ(run_stage(f.recorder.logger(), "load_model", [] { return 7; }), 7);
  auto events = f.events();
  ASSERT_EQ(events.size(), 4u);
  EXPECT_EQ(events[1].status, Status::Failed);
  EXPECT_EQ(events[1].message, "std::invalid_argument: bad audio header");
  EXPECT_EQ(events[3].status, Status::Completed);
}

TEST(StageScopeTest, ElapsedSecondsFollowsTheRecorderClock) {
  Fixture f;
  StageScope stage(f.recorder, "AGENT");
  f.clock.advance(1500ms);
  EXPECT_DOUBLE_EQ(stage.elapsed_seconds(), 1.5);
}

TEST(StageScopeTest, LongNamesAreCutTo63Bytes) {
  Fixture f;
  std::string name(100, 'n');
  { StageScope stage(f.recorder, name); }
  auto events = f.events();
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].stage, std::string(63, 'n'));
  EXPECT_EQ(events[1].stage, std::string(63, 'n'));
}

TEST(StageScopeTest, NamesFromTemporariesAreCopied) {
  Fixture f;
  { StageScope stage(f.recorder, std::string("temporary_") + "name"); }
  auto events = f.events();
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[1].stage, "temporary_name");
}

TEST(RunScopeTest, EndsWithAllStagesCompleteAndTotalTime) {
  Fixture f;
  f.recorder.set_run("outer");
  {
    RunScope run(f.recorder, "item-07");
    { StageScope stage(f.recorder, "AGENT"); }
    f.clock.advance(20'656ms);
  }
  f.recorder.logger().info("after");
  auto events = f.events();
  ASSERT_EQ(events.size(), 5u);
  EXPECT_EQ(events[0].kind, Kind::Run);
  EXPECT_EQ(events[0].status, Status::Starting);
  EXPECT_EQ(events[0].run, "item-07");
  EXPECT_EQ(events[1].run, "item-07");
  EXPECT_EQ(events[3].kind, Kind::Run);
  EXPECT_EQ(events[3].stage, "COMPLETE");
  EXPECT_EQ(events[3].status, Status::Completed);
  EXPECT_EQ(events[3].message, "All stages complete");
  EXPECT_EQ(events[3].elapsed_ns, 20'656'000'000);
  EXPECT_EQ(events[4].run, "outer");  // Restored.
}

TEST(RunScopeTest, FailRecordsAFailedRun) {
  Fixture f;
  {
    RunScope run(f.recorder, "item-13");
    run.fail("JUDGE failed");
  }
  auto events = f.events();
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[1].status, Status::Failed);
  EXPECT_EQ(events[1].level, Level::Error);
  EXPECT_EQ(events[1].message, "JUDGE failed");
}

// The seed's own example output (seed 000, section 4), reproduced byte for byte.
TEST(StageScopeTest, TextSinkReproducesTheSeedExample) {
  test::TempDir dir;
  test::FakeClock clock;  // 2026-01-04T19:30:15.234Z
  {
    Options options;
    options.clock = clock.fn();
    Recorder recorder(std::move(options));
    recorder.add_sink(std::make_shared<TextSink>(dir.path() / "seed.log"));
    recorder.set_worker("T0_00");
    RunScope run(recorder, "tier-T0");
    {
      StageScope agent(recorder, ExecutionStage::AGENT);
      clock.set(test::FakeClock::kSeedStart + 13'222'000'000);  // 19:30:28.456
    }
    clock.set(test::FakeClock::kSeedStart + 13'889'000'000);  // 19:30:29.123
    {
      StageScope judge(recorder, ExecutionStage::JUDGE);
      clock.set(test::FakeClock::kSeedStart + 20'555'000'000);  // 19:30:35.789
    }
    clock.set(test::FakeClock::kSeedStart + 20'656'000'000);  // 19:30:35.890
  }
  EXPECT_THAT(test::read_lines(dir.path() / "seed.log"),
              ElementsAre("2026-01-04T19:30:15.234Z [T0_00] Stage: AGENT - Starting",
                          "2026-01-04T19:30:28.456Z [T0_00] Stage: AGENT - Complete (13.2s)",
                          "2026-01-04T19:30:29.123Z [T0_00] Stage: JUDGE - Starting",
                          "2026-01-04T19:30:35.789Z [T0_00] Stage: JUDGE - Complete (6.7s)",
                          "2026-01-04T19:30:35.890Z [T0_00] Stage: COMPLETE - All stages "
                          "complete (20.7s)"));
}

}  // namespace
}  // namespace stagelog
