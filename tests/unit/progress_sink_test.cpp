#include "stagelog/sinks/progress_sink.hpp"

#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <pty.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "eventually.hpp"
#include "stagelog/stage.hpp"
#include "stagelog/workflow.hpp"
#include "temp_dir.hpp"

namespace stagelog {
namespace {

// Replays what a program wrote to a terminal, for the few controls ProgressSink uses: text,
// \r, \n, ESC[1A (up) and ESC[2K (erase line). Returns the screen's lines.
std::vector<std::string> replay(const std::string& bytes) {
  std::vector<std::string> screen(1);
  std::size_t row = 0;
  std::size_t col = 0;
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    char c = bytes[i];
    if (c == '\x1b' && bytes.compare(i, 4, "\x1b[1A") == 0) {
      if (row > 0) --row;
      i += 3;
    } else if (c == '\x1b' && bytes.compare(i, 4, "\x1b[2K") == 0) {
      screen[row].clear();
      i += 3;
    } else if (c == '\r') {
      col = 0;
    } else if (c == '\n') {
      ++row;
      col = 0;
      if (row == screen.size()) screen.emplace_back();
    } else {
      std::string& line = screen[row];
      if (col < line.size()) {
        line[col] = c;
      } else {
        line.append(col - line.size(), ' ');
        line += c;
      }
      ++col;
    }
  }
  return screen;
}

// Runs 4 workers through a workflow of 40 nodes, each node two stages and a log line, with a
// ProgressSink on `fd`.
void run_workflow(int fd, ProgressOptions::Mode mode, const std::filesystem::path& dir) {
  Recorder recorder;
  ProgressOptions options;
  options.fd = fd;
  options.mode = mode;
  options.redraw_interval = std::chrono::milliseconds(1);  // Redraw as often as possible.
  recorder.add_sink(std::make_shared<ProgressSink>(options));
  WorkflowOptions workflow_options;
  workflow_options.recorder = &recorder;
  workflow_options.print = false;
  Workflow workflow("step_07_render", dir, 40, workflow_options);
  std::atomic<int> next{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      recorder.set_worker("T0_0" + std::to_string(t));
      Logger log = recorder.component("worker");
      for (int node; (node = next.fetch_add(1)) < 40;) {
        std::string id = "n" + std::to_string(node);
        workflow.node_start(id, node);
        for (const char* stage : {"AGENT", "JUDGE"}) {
          StageScope scope(log, stage);
          for (int i = 0; i < 20; ++i) log.info("working on a long enough line", kv("i", i));
        }
        workflow.node_success(id, 0.01);
        // Halfway, wait until the backend has drawn the display once while the run is open, so
        // the next draw must erase it: the redraw the live test looks for does not depend on
        // the backend thread being scheduled mid-run.
        if (node == 20) recorder.flush();
      }
    });
  }
  for (auto& t : threads) t.join();
  workflow.complete();
  recorder.flush();
}

TEST(ProgressSinkTest, LiveDisplayOnATerminalLeavesOnlyWholeLines) {
  test::TempDir dir;
  int master = -1;
  int slave = -1;
  winsize size{50, 200, 0, 0};
  ASSERT_EQ(openpty(&master, &slave, nullptr, nullptr, &size), 0);
  ASSERT_TRUE(isatty(slave));
  std::string output;
  // Reads until the terminal is hung up: once the slave side is closed, the master reads what
  // is still in flight through the line discipline (under load it can trail the writer by
  // more than any fixed wait), then EIO. Bounded by the default patience.
  std::thread reader([&] {
    char buf[65536];
    const auto give_up = std::chrono::steady_clock::now() + test::kDefaultPatience;
    while (std::chrono::steady_clock::now() < give_up) {
      pollfd p{master, POLLIN, 0};
      if (poll(&p, 1, 100) <= 0) continue;
      ssize_t n = read(master, buf, sizeof buf);
      if (n <= 0) break;
      output.append(buf, static_cast<std::size_t>(n));
    }
  });
  run_workflow(slave, ProgressOptions::Mode::Auto, dir.path());
  close(slave);
  reader.join();
  close(master);

  ASSERT_NE(output.find("\x1b[1A"), std::string::npos) << "no live redraw happened";
  std::regex log_line(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z \[[\w.-]+\] .*)");
  std::regex bar_line(R"(Executing step_07_render \|.*\| \[\d+/40\] \d+% .*)");
  int logs = 0;
  for (const auto& raw : replay(output)) {
    std::string line = raw;
    while (!line.empty() && (line.back() == ' ' || line.back() == '\r')) line.pop_back();
    if (line.empty()) continue;
    if (std::regex_match(line, log_line)) {
      ++logs;
      // A whole line: one timestamp, and it ends the way the recorder ends it.
      EXPECT_EQ(line.find("Z [", 25), std::string::npos) << "two lines in one: " << line;
      continue;
    }
    EXPECT_TRUE(std::regex_match(line, bar_line)) << "torn or stray line: [" << line << "]";
  }
  EXPECT_GT(logs, 40 * 2 * 2);  // Every stage start and end at least.
  // The last line is the final bar: 40 of 40.
  auto screen = replay(output);
  std::string final_bar;
  for (const auto& l : screen) {
    if (l.find("Executing step_07_render") != std::string::npos) final_bar = l;
  }
  EXPECT_THAT(final_bar, ::testing::HasSubstr("[40/40] 100%"));
}

TEST(ProgressSinkTest, PlainModeWritesNoCarriageReturnsOrEscapes) {
  test::TempDir dir;
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  std::string output;
  std::thread reader([&] {
    char buf[65536];
    for (ssize_t n; (n = read(fds[0], buf, sizeof buf)) > 0;)
      output.append(buf, static_cast<std::size_t>(n));
  });
  run_workflow(fds[1], ProgressOptions::Mode::Auto, dir.path());  // A pipe: not a terminal.
  close(fds[1]);
  reader.join();
  close(fds[0]);
  EXPECT_EQ(output.find('\r'), std::string::npos);
  EXPECT_EQ(output.find('\x1b'), std::string::npos);
  EXPECT_THAT(output, ::testing::HasSubstr("Executing step_07_render [40/40] 100%"));
  EXPECT_THAT(output, ::testing::HasSubstr("Executing step_07_render [1/40]"));
}

}  // namespace
}  // namespace stagelog
