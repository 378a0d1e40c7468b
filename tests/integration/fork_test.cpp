// A process that fork()s keeps logging in the child: the child's events carry its own pid,
// nothing logged before the fork is written twice, and the parent is unaffected.

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <map>
#include <nlohmann/json.hpp>
#include <thread>

#include "stagelog/sinks/jsonl_sink.hpp"
#include "stagelog/stage.hpp"
#include "temp_dir.hpp"

namespace stagelog {
namespace {

TEST(ForkTest, ChildKeepsLoggingWithItsOwnPidAndNothingIsWrittenTwice) {
  test::TempDir dir;
  Recorder recorder;
  recorder.add_sink(std::make_shared<JsonlSink>(dir.path() / "events.jsonl"));
  recorder.set_worker("parent");
  recorder.logger().info("before fork");

  // A second thread logs numbered events through the fork: each must appear exactly once.
  std::atomic<bool> stop{false};
  std::atomic<int> logged{0};
  std::thread busy([&] {
    recorder.set_worker("busy");
    for (int i = 0; !stop.load() && i < 1'000'000; ++i) {
      recorder.logger().info("tick", kv("seq", i));
      logged.store(i + 1);
    }
  });
  while (logged.load() < 1000) std::this_thread::yield();

  pid_t pid = fork();
  if (pid == 0) {
    recorder.set_worker("child");
    for (int i = 0; i < 100; ++i) recorder.logger().info("in child", kv("i", i));
    { StageScope stage(recorder, "child_stage"); }
    recorder.flush();
    _exit(0);
  }
  ASSERT_GT(pid, 0);
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status));
  ASSERT_EQ(WEXITSTATUS(status), 0);
  stop.store(true);
  busy.join();
  recorder.logger().info("after fork");
  recorder.flush();

  int before = 0, after = 0, in_child = 0, child_stage = 0;
  std::map<int, int> ticks;
  for (const auto& line : test::read_lines(dir.path() / "events.jsonl")) {
    auto j = nlohmann::json::parse(line);
    std::string message = j["message"];
    if (message == "before fork") ++before;
    if (message == "after fork") {
      ++after;
      EXPECT_EQ(j["pid"], getpid());
    }
    if (message == "in child") {
      ++in_child;
      EXPECT_EQ(j["pid"], pid);
      EXPECT_EQ(j["worker"], "child");
    }
    if (j["stage"] == "child_stage") {
      ++child_stage;
      EXPECT_EQ(j["pid"], pid);
    }
    if (message == "tick") {
      EXPECT_EQ(j["pid"], getpid());
      ++ticks[j["fields"]["seq"].get<int>()];
    }
  }
  EXPECT_EQ(before, 1);
  EXPECT_EQ(after, 1);
  EXPECT_EQ(in_child, 100);
  EXPECT_EQ(child_stage, 2);
  EXPECT_EQ(static_cast<int>(ticks.size()), logged.load());
  for (const auto& [seq, count] : ticks) ASSERT_EQ(count, 1) << "seq " << seq;
}

}  // namespace
}  // namespace stagelog
