// Real worker processes, one log file each (seed 003): every rank's lines land in its own
// worker_<rank>.log, whole, and nowhere else; a worker that dies of an uncaught exception
// leaves what terminate saw in its file.

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <exception>
#include <regex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "stagelog/agent.hpp"
#include "stagelog/worker_logging.hpp"
#include "temp_dir.hpp"

namespace stagelog {
namespace {

using ::testing::HasSubstr;

#if defined(__SANITIZE_ADDRESS__)
constexpr bool kSanitized = true;
#else
constexpr bool kSanitized = false;
#endif

constexpr int kRanks = 3;
constexpr int kLinesPerRank = 1000;

// In a child process: worker <rank>'s own recorder and files, kLinesPerRank lines. The
// recorder is destroyed on return, which flushes it.
void log_as_rank(const std::filesystem::path& dir, int rank) {
  Recorder recorder;
  setup_worker_logging(recorder, dir, std::to_string(rank), {.console_level = Level::Critical});
  Logger log = recorder.component("worker");
  for (int i = 0; i < kLinesPerRank; ++i) log.info("working", kv("rank", rank), kv("i", i));
  if (rank == kRanks - 1) {
    // The last rank exits with its recorder still on the stack: the atexit flush writes it.
    std::exit(0);
  }
}

TEST(WorkerFilesTest, EachRankWritesOnlyItsOwnFile) {
  test::TempDir dir;
  std::vector<pid_t> children;
  for (int rank = 0; rank < kRanks; ++rank) {
    pid_t pid = fork();
    if (pid == 0) {
      try {
        log_as_rank(dir.path(), rank);
      } catch (...) {
        _exit(2);
      }
      std::exit(0);
    }
    ASSERT_GT(pid, 0);
    children.push_back(pid);
  }
  for (pid_t pid : children) {
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status)) << "status " << status;
    EXPECT_EQ(WEXITSTATUS(status), 0);
  }

  const std::regex line_re(R"(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2},\d{3} )"
                           R"(- Worker (\d+) - worker - INFO - working rank=(\d+) i=(\d+))");
  for (int rank = 0; rank < kRanks; ++rank) {
    auto lines = test::read_lines(worker_log_path(dir.path(), rank));
    ASSERT_EQ(lines.size(), static_cast<std::size_t>(kLinesPerRank)) << "rank " << rank;
    for (int i = 0; i < kLinesPerRank; ++i) {
      std::smatch m;
      ASSERT_TRUE(std::regex_match(lines[i], m, line_re))
          << "rank " << rank << " line " << i << ": " << lines[i];
      EXPECT_EQ(std::stoi(m[1]), rank) << lines[i];
      EXPECT_EQ(std::stoi(m[2]), rank) << lines[i];
      EXPECT_EQ(std::stoi(m[3]), i) << lines[i];
    }
  }
  std::size_t files = 0;
  for ([[maybe_unused]] const auto& entry : std::filesystem::directory_iterator(dir.path())) {
    ++files;
  }
  EXPECT_EQ(files, static_cast<std::size_t>(kRanks));
}

[[noreturn]] void load_model() { throw std::runtime_error("model_name missing"); }

TEST(WorkerFilesTest, UncaughtExceptionInAnAgentLeavesTerminateInItsFile) {
  test::TempDir dir;
  pid_t pid = fork();
  if (pid == 0) {
    auto* recorder = new Recorder();  // Never destroyed: the process dies first.
    setup_worker_logging(*recorder, dir.path(), "0", {.console_level = Level::Off});
    // An exception nobody catches: on a thread of its own, since the test body's own frames
    // would catch it on this one.
    std::thread([recorder] {
      Agent agent(*recorder, "0");
      agent.starting();
      agent.claimed("a1b2c3d4", "load_llm");
      load_model();
    }).join();
    _exit(99);  // Not reached.
  }
  ASSERT_GT(pid, 0);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  if (!kSanitized) {
    ASSERT_TRUE(WIFSIGNALED(status)) << "status " << status;
    EXPECT_EQ(WTERMSIG(status), SIGABRT);
  }
  auto text = test::read_file(worker_log_path(dir.path(), 0));
  EXPECT_THAT(text,
              HasSubstr(" - Worker 0 - worker - INFO - Claimed meta task: a1b2c3d4 (load_llm)\n"));
  EXPECT_THAT(text, HasSubstr(" - Worker 0 - stagelog - CRITICAL - terminate called: "
                              "std::runtime_error: model_name missing\n"));
}

}  // namespace
}  // namespace stagelog
