#include "stagelog/recorder.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "fake_clock.hpp"
#include "memory_sink.hpp"
#include "recording.hpp"
#include "scoped_env.hpp"
#include "stagelog/error.hpp"
#include "stagelog/sinks/text_sink.hpp"
#include "temp_dir.hpp"

namespace stagelog {
namespace {

using ::testing::HasSubstr;

using test::ScopedEnv;
using Fixture = test::Recording;

TEST(RecorderTest, LogEventCarriesWorkerRunComponentFieldsPidAndHost) {
  Options options;
  options.host = "gpu-box";
  Fixture f(std::move(options));
  f.recorder.set_worker("gpu-1");
  f.recorder.set_run("batch-7");
  f.recorder.component("worker").info("Claimed meta task", kv("task", "d5de16d7"),
                                      kv("tokens", 1247), kv("ratio", 0.5), kv("ok", true),
                                      kv("size", 42u));
  auto events = f.events();
  ASSERT_EQ(events.size(), 1u);
  const auto& e = events[0];
  EXPECT_EQ(e.kind, Kind::Log);
  EXPECT_EQ(e.level, Level::Info);
  EXPECT_EQ(e.worker, "gpu-1");
  EXPECT_EQ(e.run, "batch-7");
  EXPECT_EQ(e.component, "worker");
  EXPECT_EQ(e.message, "Claimed meta task");
  EXPECT_EQ(e.ts_ns, test::FakeClock::kSeedStart);
  EXPECT_EQ(e.pid, getpid());
  EXPECT_EQ(e.host, "gpu-box");
  EXPECT_EQ(e.field("task"), "d5de16d7");
  EXPECT_EQ(e.field("tokens"), "1247");
  EXPECT_EQ(e.field("ok"), "true");
  EXPECT_EQ(e.field("size"), "42");
  ASSERT_EQ(e.fields.size(), 5u);
  EXPECT_EQ(std::get<double>(e.fields[2].second), 0.5);
}

TEST(RecorderTest, StringFieldsBuiltBeforeTheCallViewTheCallersString) {
  Fixture f;
  std::string task = "d5de16d7-and-a-long-enough-suffix-to-leave-small-string-storage";
  const Kv fields[] = {kv("task", task)};  // Kept past kv()'s return, as Workflow does.
  f.recorder.logger().log(Level::Info, "claimed", fields);
  auto events = f.events();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].field("task"), task);
}

TEST(RecorderTest, UnnamedThreadsGetNumberedWorkerIds) {
  Fixture f;
  f.recorder.logger().info("main thread");
  std::thread([&] { f.recorder.logger().info("second thread"); }).join();
  auto events = f.events();
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].worker, "t0");
  EXPECT_EQ(events[1].worker, "t1");
}

TEST(RecorderTest, DefaultRunComesFromOptions) {
  Options options;
  options.run = "exp-42";
  Fixture f(std::move(options));
  f.recorder.logger().info("hello");
  EXPECT_EQ(f.events().at(0).run, "exp-42");
}

TEST(RecorderTest, CallsBelowTheComponentLevelRecordNothing) {
  Fixture f;
  Logger log = f.recorder.component("quiet");
  log.set_level(Level::Warning);
  log.debug("not recorded", kv("n", 1));
  log.info("not recorded either");
  log.warning("recorded");
  auto events = f.events();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].message, "recorded");
  EXPECT_EQ(events[0].level, Level::Warning);
}

TEST(RecorderTest, ComponentLevelComesFromItsEnvironmentVariable) {
  ScopedEnv worker("WORKER_LOG_LEVEL", "debug");
  ScopedEnv global("STAGELOG_LEVEL", "ERROR");
  ScopedEnv dashed("GPU_AGENT_LOG_LEVEL", "Warn");
  Fixture f;
  EXPECT_EQ(f.recorder.component("worker").level(), Level::Debug);
  EXPECT_EQ(f.recorder.component("brain").level(), Level::Error);  // Falls back to STAGELOG_LEVEL.
  EXPECT_EQ(f.recorder.component("gpu-agent").level(), Level::Warning);
}

TEST(RecorderTest, LevelDefaultsToInfo) {
  ScopedEnv global("STAGELOG_LEVEL", nullptr);
  ScopedEnv brain("BRAIN_LOG_LEVEL", nullptr);
  Fixture f;
  EXPECT_EQ(f.recorder.component("brain").level(), Level::Info);
}

TEST(RecorderTest, InvalidLevelWarnsNamingVariableValueAndValidLevels) {
  ScopedEnv executor("EXECUTOR_LOG_LEVEL", "LOUD");
  Fixture f;
  EXPECT_EQ(f.recorder.component("executor").level(), Level::Info);
  auto events = f.events();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].level, Level::Warning);
  EXPECT_THAT(events[0].message, HasSubstr("EXECUTOR_LOG_LEVEL=LOUD"));
  EXPECT_THAT(events[0].message, HasSubstr("DEBUG"));
  EXPECT_THAT(events[0].message, HasSubstr("using INFO"));
}

TEST(RecorderTest, LevelSetInCodeSurvivesAskingForTheComponentAgain) {
  ScopedEnv worker("WORKER_LOG_LEVEL", "ERROR");
  Fixture f;
  f.recorder.component("worker").set_level(Level::Trace);
  EXPECT_EQ(f.recorder.component("worker").level(), Level::Trace);
}

TEST(RecorderTest, EmptyComponentNameThrows) {
  Fixture f;
  EXPECT_THROW(f.recorder.component(""), Error);
}

TEST(RecorderTest, SinkSeesOnlyEventsAtOrAboveItsLevel) {
  Fixture f;
  auto warnings = std::make_shared<test::MemorySink>(Level::Warning);
  f.recorder.add_sink(warnings);
  f.recorder.logger().info("info");
  f.recorder.logger().error("error");
  f.recorder.flush();
  EXPECT_EQ(f.sink->events().size(), 2u);
  ASSERT_EQ(warnings->events().size(), 1u);
  EXPECT_EQ(warnings->events()[0].message, "error");
}

TEST(RecorderTest, FlushReturnsAfterEveryEarlierEventIsWrittenAndSinksFlushed) {
  Fixture f;
  for (int i = 0; i < 10000; ++i) f.recorder.logger().info("event", kv("i", i));
  f.recorder.flush();
  auto events = f.sink->events();
  ASSERT_EQ(events.size(), 10000u);
  EXPECT_EQ(events.back().field("i"), "9999");
  EXPECT_GE(f.sink->flushes(), 1);
}

TEST(RecorderTest, AddSinkRejectsNull) {
  Fixture f;
  EXPECT_THROW(f.recorder.add_sink(nullptr), Error);
}

TEST(RecorderTest, OversizedQueueCapacityIsRejectedNamingTheValue) {
  Options options;
  options.queue_capacity = std::size_t{1} << 40;
  try {
    Recorder recorder(std::move(options));
    FAIL() << "expected stagelog::Error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("1099511627776"));
  }
}

class ThrowingSink : public Sink {
 public:
  void write(const Event&) override { throw std::runtime_error("disk on fire"); }
};

TEST(RecorderTest, SinkErrorGoesToOnErrorAndOtherSinksStillGetEvents) {
  std::mutex mu;
  std::vector<std::string> errors;
  Options options;
  options.on_error = [&](std::string_view message) {
    std::lock_guard lock(mu);
    errors.emplace_back(message);
  };
  Fixture f(std::move(options));
  f.recorder.add_sink(std::make_shared<ThrowingSink>());
  f.recorder.logger().info("one");
  f.recorder.logger().info("two");
  EXPECT_EQ(f.events().size(), 2u);
  std::lock_guard lock(mu);
  ASSERT_EQ(errors.size(), 2u);
  EXPECT_EQ(errors[0], "disk on fire");
}

TEST(RecorderTest, MessageLargerThanTheRingIsCutNotLost) {
  Options options;
  options.queue_capacity = 64 * 1024;
  Fixture f(std::move(options));
  std::string huge(1 << 20, 'x');
  f.recorder.logger().info(huge, kv("key", huge));
  f.recorder.logger().info("after");
  auto events = f.events();
  ASSERT_EQ(events.size(), 2u);
  EXPECT_GT(events[0].message.size(), 1000u);
  EXPECT_LE(events[0].message.size(), 32u * 1024);
  EXPECT_EQ(events[1].message, "after");
}

TEST(RecorderTest, EventsOfAThreadThatExitedAreStillWritten) {
  Fixture f;
  std::vector<std::thread> threads;
  for (int t = 0; t < 16; ++t) {
    threads.emplace_back([&f, t] {
      f.recorder.set_worker("w" + std::to_string(t));
      for (int i = 0; i < 100; ++i) f.recorder.logger().info("tick");
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(f.events().size(), 1600u);
}

TEST(RecorderTest, DestructorWritesEverythingToTheFile) {
  test::TempDir dir;
  {
    Recorder recorder;
    recorder.add_sink(std::make_shared<TextSink>(dir.path() / "run.log"));
    recorder.set_worker("T0_00");
    for (int i = 0; i < 1000; ++i) recorder.logger().info("line", kv("i", i));
  }
  auto lines = test::read_lines(dir.path() / "run.log");
  ASSERT_EQ(lines.size(), 1000u);
  EXPECT_THAT(lines.back(), HasSubstr("[T0_00] INFO app: line i=999"));
}

TEST(RecorderTest, EventsFromOneThreadKeepTheirOrderAndTimestampsAreMonotonic) {
  Recorder recorder;  // The real clock.
  auto sink = std::make_shared<test::MemorySink>();
  recorder.add_sink(sink);
  for (int i = 0; i < 1000; ++i) recorder.logger().info("e", kv("i", i));
  recorder.flush();
  auto events = sink->events();
  ASSERT_EQ(events.size(), 1000u);
  for (std::size_t i = 1; i < events.size(); ++i) {
    EXPECT_EQ(events[i].field("i"), std::to_string(i));
    EXPECT_GE(events[i].ts_ns, events[i - 1].ts_ns);
  }
  auto now = std::chrono::system_clock::now().time_since_epoch();
  auto now_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(now).count();
  EXPECT_LE(events.back().ts_ns, now_ns);
  EXPECT_GT(events.front().ts_ns, now_ns - 60'000'000'000);  // Within a minute: a real clock.
}

}  // namespace
}  // namespace stagelog
