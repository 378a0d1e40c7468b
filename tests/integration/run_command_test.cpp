// `stagelog run`, run as a real process around real commands: what reaches the JSONL and text
// files, the exit status passed through, signals forwarded, heartbeats. Waits poll a file with
// a deadline; nothing sleeps in the hope that something has happened.

#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <pty.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "stagelog/parse.hpp"
#include "temp_dir.hpp"

extern char** environ;  // NOLINT(readability-identifier-naming): POSIX names it.

namespace stagelog {
namespace {

using json = nlohmann::json;
using ::testing::HasSubstr;
using ::testing::StartsWith;
using namespace std::chrono_literals;

constexpr auto kDeadline = 20s;

// `stagelog run --worker w1 --stage build --jsonl <dir>/run.jsonl <extra> -- <command>`, started
// in the background with stdin from /dev/null and stdout and stderr to files in `dir`. With a
// `terminal` (a pty's slave), it runs in a session of its own with that terminal as stdin and
// controlling terminal, in the foreground.
class RunProcess {
 public:
  RunProcess(const test::TempDir& dir, const std::vector<std::string>& command,
             const std::vector<std::string>& extra = {}, const char* terminal = nullptr)
      : dir_(dir.path()) {
    std::vector<std::string> args = {STAGELOG_CLI, "run",   "--worker", "w1",
                                     "--stage",    "build", "--jsonl",  jsonl().string()};
    args.insert(args.end(), extra.begin(), extra.end());
    args.emplace_back("--");
    args.insert(args.end(), command.begin(), command.end());
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    if (terminal != nullptr) {
      // setsid() comes before the file actions: opening the terminal then makes it ours.
      posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID);
      posix_spawn_file_actions_addopen(&actions, 0, terminal, O_RDWR, 0);
    } else {
      posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    }
    std::string out = (dir_ / "stdout.txt").string();
    std::string err = (dir_ / "stderr.txt").string();
    posix_spawn_file_actions_addopen(&actions, 1, out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_addopen(&actions, 2, err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int rc = posix_spawn(&pid_, argv[0], &actions, &attr, argv.data(), environ);
    posix_spawnattr_destroy(&attr);
    posix_spawn_file_actions_destroy(&actions);
    if (rc != 0) throw std::runtime_error("cannot start " + std::string(STAGELOG_CLI));
  }
  ~RunProcess() {
    if (!status_) {
      ::kill(pid_, SIGKILL);
      wait();
    }
  }
  RunProcess(const RunProcess&) = delete;
  RunProcess& operator=(const RunProcess&) = delete;

  pid_t pid() const noexcept { return pid_; }
  std::filesystem::path jsonl() const { return dir_ / "run.jsonl"; }

  // The exit status; -1 if it did not exit (a signal killed it).
  int wait() {
    if (!status_) {
      int status = 0;
      while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
      }
      status_ = status;
    }
    return WIFEXITED(*status_) ? WEXITSTATUS(*status_) : -1;
  }
  std::string out() const { return test::read_file(dir_ / "stdout.txt"); }
  std::string err() const { return test::read_file(dir_ / "stderr.txt"); }

  // Every event in the JSONL file (a partly written last line is left out).
  std::vector<json> events() const {
    std::vector<json> events;
    for (const auto& line : test::read_lines(jsonl())) {
      auto j = json::parse(line, nullptr, false);
      if (!j.is_discarded()) events.push_back(std::move(j));
    }
    return events;
  }

  // Polls the JSONL file until pred holds for its events, or kDeadline passes.
  bool wait_for(const std::function<bool(const std::vector<json>&)>& pred) const {
    auto deadline = std::chrono::steady_clock::now() + kDeadline;
    while (std::chrono::steady_clock::now() < deadline) {
      if (pred(events())) return true;
      std::this_thread::sleep_for(10ms);
    }
    return pred(events());
  }

 private:
  std::filesystem::path dir_;
  pid_t pid_ = -1;
  std::optional<int> status_;
};

// Runs to the end; returns the exit status.
int run(RunProcess& process) { return process.wait(); }

bool is_stage(const json& e, std::string_view status) {
  return e["kind"] == "stage" && e["stage"] == "build" && e["status"] == status;
}

const json* find_stage(const std::vector<json>& events, std::string_view status) {
  for (const auto& e : events) {
    if (is_stage(e, status)) return &e;
  }
  return nullptr;
}

// The messages of one component's events, in file order.
std::vector<std::string> lines_of(const std::vector<json>& events, std::string_view component) {
  std::vector<std::string> lines;
  for (const auto& e : events) {
    if (e["kind"] == "log" && e["component"] == component) lines.push_back(e["message"]);
  }
  return lines;
}

std::size_t count_kind(const std::vector<json>& events, std::string_view kind) {
  std::size_t n = 0;
  for (const auto& e : events) n += e["kind"] == kind ? 1 : 0;
  return n;
}

TEST(RunCommandTest, RecordsStdoutAndStderrLinesInsideTheStage) {
  test::TempDir dir;
  RunProcess p(dir, {"sh", "-c", "echo out one; echo err one >&2; echo out two"},
               {"--log", (dir.path() / "run.log").string(), "--run", "item-7"});
  ASSERT_EQ(run(p), 0) << p.err();
  auto events = p.events();

  EXPECT_THAT(lines_of(events, "stdout"), ::testing::ElementsAre("out one", "out two"));
  EXPECT_THAT(lines_of(events, "stderr"), ::testing::ElementsAre("err one"));
  const json* start = find_stage(events, "starting");
  const json* end = find_stage(events, "completed");
  ASSERT_NE(start, nullptr);
  ASSERT_NE(end, nullptr);
  EXPECT_EQ((*start)["component"], "run");
  EXPECT_TRUE((*end)["elapsed_ns"].is_number_integer());
  EXPECT_GE((*end)["elapsed_ns"].get<std::int64_t>(), 0);
  // Starting, then the lines, then Complete; all worker w1 of run item-7.
  std::vector<std::string> order;
  for (const auto& e : events) {
    EXPECT_EQ(e["worker"], "w1") << e.dump();
    EXPECT_EQ(e["run"], "item-7") << e.dump();
    if (e["kind"] == "stage") order.push_back(e["status"]);
    if (e["kind"] == "log" && e["component"] == "stdout") order.push_back("line");
  }
  EXPECT_THAT(order, ::testing::ElementsAre("starting", "line", "line", "completed"));
  // The agent's lifecycle frames the stage.
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.front()["kind"], "lifecycle");
  EXPECT_THAT(events.front()["message"].get<std::string>(), StartsWith("initialized"));
  EXPECT_EQ(events.front()["fields"]["command"],
            "sh -c 'echo out one; echo err one >&2; echo out two'");
  ASSERT_GE(events.size(), 2u);
  EXPECT_THAT(events[events.size() - 2]["message"].get<std::string>(), StartsWith("shutting down"));
  // Last, the recorder's close: the process ended normally.
  EXPECT_EQ(events.back()["message"], "recorder closed");
  EXPECT_EQ(events.back()["fields"]["recorder_closed"], true);

  // The text file has seed-format stage lines that parse back.
  auto text = test::read_lines(dir.path() / "run.log");
  std::vector<std::string> statuses;
  for (const auto& line : text) {
    auto parsed = parse_line(line);
    ASSERT_TRUE(parsed) << line;
    if (parsed->kind == Kind::Stage) statuses.emplace_back(status_name(parsed->status));
  }
  EXPECT_THAT(statuses, ::testing::ElementsAre("starting", "completed"));
  // The console (our stderr) shows the stage and the lines; our stdout stays empty.
  EXPECT_THAT(p.err(), HasSubstr("[w1] Stage: build - Starting"));
  EXPECT_THAT(p.err(), HasSubstr("[w1] INFO stdout: out one"));
  EXPECT_THAT(p.err(), HasSubstr("[w1] Stage: build - Complete ("));
  EXPECT_EQ(p.out(), "");
}

TEST(RunCommandTest, QuietShowsNothing) {
  test::TempDir dir;
  RunProcess p(dir, {"sh", "-c", "echo hello; echo oops >&2"}, {"--quiet"});
  ASSERT_EQ(run(p), 0);
  EXPECT_EQ(p.err(), "");
  EXPECT_EQ(p.out(), "");
  EXPECT_THAT(lines_of(p.events(), "stdout"), ::testing::ElementsAre("hello"));
}

TEST(RunCommandTest, PassesTheExitCodeThroughAndFails) {
  test::TempDir dir;
  RunProcess p(dir, {"sh", "-c", "exit 3"}, {"--quiet"});
  EXPECT_EQ(run(p), 3);
  auto events = p.events();
  const json* failed = find_stage(events, "failed");
  ASSERT_NE(failed, nullptr);
  EXPECT_EQ((*failed)["message"], "exit code 3");
  EXPECT_EQ((*failed)["fields"]["exit_code"], 3);
  EXPECT_EQ((*failed)["level"], "error");
  EXPECT_EQ(find_stage(events, "completed"), nullptr);
}

TEST(RunCommandTest, ReportsAKillingSignalAndExits128PlusIt) {
  test::TempDir dir;
  RunProcess p(dir, {"sh", "-c", "echo before; kill -9 $$"}, {"--quiet"});
  EXPECT_EQ(run(p), 137);
  auto events = p.events();
  const json* failed = find_stage(events, "failed");
  ASSERT_NE(failed, nullptr);
  EXPECT_EQ((*failed)["message"], "killed by SIGKILL");
  EXPECT_EQ((*failed)["fields"]["exit_code"], 137);
  EXPECT_THAT(lines_of(events, "stdout"), ::testing::ElementsAre("before"));
}

TEST(RunCommandTest, MissingCommandExits127WithAMessage) {
  test::TempDir dir;
  RunProcess p(dir, {"stagelog-no-such-command", "arg"}, {"--quiet"});
  EXPECT_EQ(run(p), 127);
  EXPECT_EQ(p.err(),
            "stagelog run: cannot run stagelog-no-such-command: No such file or directory\n");
  auto events = p.events();
  const json* failed = find_stage(events, "failed");
  ASSERT_NE(failed, nullptr);
  EXPECT_EQ((*failed)["message"], "cannot run stagelog-no-such-command: No such file or directory");
  EXPECT_EQ((*failed)["fields"]["exit_code"], 127);
}

TEST(RunCommandTest, NotExecutableExits126) {
  test::TempDir dir;
  auto script = dir.path() / "script.sh";
  std::ofstream(script) << "#!/bin/sh\necho hi\n";
  ::chmod(script.c_str(), 0644);
  RunProcess p(dir, {script.string()}, {"--quiet"});
  EXPECT_EQ(run(p), 126);
  EXPECT_EQ(p.err(), "stagelog run: cannot run " + script.string() + ": Permission denied\n");
  auto events = p.events();
  const json* failed = find_stage(events, "failed");
  ASSERT_NE(failed, nullptr);
  EXPECT_EQ((*failed)["fields"]["exit_code"], 126);
}

TEST(RunCommandTest, KeepsAPartialLastLineAndStripsCarriageReturns) {
  test::TempDir dir;
  RunProcess p(dir, {"printf", "dos\\r\\n\\nbare\\rinside\\nno newline"}, {"--quiet"});
  ASSERT_EQ(run(p), 0);
  EXPECT_THAT(lines_of(p.events(), "stdout"),
              ::testing::ElementsAre("dos", "", "bare\rinside", "no newline"));
}

TEST(RunCommandTest, CutsVeryLongLinesIntoPiecesBetweenCharacters) {
  test::TempDir dir;
  // 'a' and then 2-byte characters: 65536 bytes in, a character is split unless the cut
  // backs up to its start.
  std::string long_line = "a";
  for (int i = 0; i < 70000; ++i) long_line += "\xc3\xa9";  // é
  std::string input = long_line + "\nshort\n";
  std::ofstream(dir.path() / "input.txt", std::ios::binary) << input;
  RunProcess p(dir, {"cat", (dir.path() / "input.txt").string()}, {"--quiet"});
  ASSERT_EQ(run(p), 0);
  auto lines = lines_of(p.events(), "stdout");
  ASSERT_EQ(lines.size(), 4u);  // 140001 bytes: two full pieces and the rest, then "short".
  std::string joined;
  for (std::size_t i = 0; i + 1 < lines.size(); ++i) {
    EXPECT_LE(lines[i].size(), 65536u);
    if (i < 2) {
      EXPECT_GE(lines[i].size(), 65533u);
    }
    EXPECT_EQ(lines[i].find("\xef\xbf\xbd"), std::string::npos) << "piece " << i << " has U+FFFD";
    joined += lines[i];
  }
  EXPECT_EQ(joined, long_line);
  EXPECT_EQ(lines.back(), "short");
}

TEST(RunCommandTest, CapturesTenThousandLinesInOrder) {
  test::TempDir dir;
  RunProcess p(dir, {"seq", "1", "10000"}, {"--quiet"});
  ASSERT_EQ(run(p), 0);
  auto lines = lines_of(p.events(), "stdout");
  ASSERT_EQ(lines.size(), 10000u);
  for (std::size_t i = 0; i < lines.size(); ++i) {
    ASSERT_EQ(lines[i], std::to_string(i + 1)) << "line " << i;
  }
}

TEST(RunCommandTest, ForwardsSigtermToTheCommand) {
  test::TempDir dir;
  RunProcess p(dir, {"sleep", "30"}, {"--quiet"});
  ASSERT_TRUE(p.wait_for([](const auto& events) { return find_stage(events, "starting"); }))
      << "the stage did not start";
  ASSERT_EQ(::kill(p.pid(), SIGTERM), 0);
  EXPECT_EQ(p.wait(), 143);
  auto events = p.events();
  const json* failed = find_stage(events, "failed");
  ASSERT_NE(failed, nullptr);
  EXPECT_EQ((*failed)["message"], "killed by SIGTERM");
  EXPECT_EQ((*failed)["fields"]["exit_code"], 143);
  bool forwarded = false;
  for (const auto& e : events) {
    forwarded = forwarded || e["message"].get<std::string>().starts_with("received SIGTERM");
  }
  EXPECT_TRUE(forwarded);
}

TEST(RunCommandTest, LeavesATerminalInterruptToTheCommandWhichGotItToo) {
  // ^C on a terminal goes to the whole foreground process group, the command included:
  // forwarding it as well would interrupt the command twice.
  int master = -1;
  int slave = -1;
  char name[256];
  ASSERT_EQ(::openpty(&master, &slave, name, nullptr, nullptr), 0);
  ::close(slave);  // The child opens it by name, as its controlling terminal.
  test::TempDir dir;
  RunProcess p(dir, {"sleep", "30"}, {"--quiet"}, name);
  ASSERT_TRUE(p.wait_for([](const auto& events) { return find_stage(events, "starting"); }))
      << "the stage did not start";
  ASSERT_EQ(::write(master, "\x03", 1), 1);  // VINTR
  EXPECT_EQ(p.wait(), 130);
  ::close(master);
  auto events = p.events();
  const json* failed = find_stage(events, "failed");
  ASSERT_NE(failed, nullptr);
  EXPECT_EQ((*failed)["message"], "killed by SIGINT");
  bool noted = false;
  for (const auto& e : events) {
    noted = noted || e["message"] == "received SIGINT from the terminal, as the command did";
  }
  EXPECT_TRUE(noted);
}

TEST(RunCommandTest, HeartbeatsEveryIntervalWhileTheCommandRuns) {
  test::TempDir dir;
  auto fifo = dir.path() / "go";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  // The command ends once it has read a line from the fifo: only after we saw two heartbeats.
  RunProcess p(dir, {"sh", "-c", "read line < \"$0\"; echo \"got $line\"", fifo.string()},
               {"--quiet", "--interval", "100ms"});
  // Two heartbeats, and the watchdog's "Running" line for the open stage.
  bool beating = p.wait_for([](const auto& events) {
    return count_kind(events, "heartbeat") >= 2 && find_stage(events, "running") != nullptr;
  });
  // Open the fifo once the command has it open to read (ENXIO until then); write its line.
  int fd = -1;
  auto deadline = std::chrono::steady_clock::now() + kDeadline;
  while ((fd = ::open(fifo.c_str(), O_WRONLY | O_NONBLOCK)) < 0 &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(10ms);
  }
  ASSERT_GE(fd, 0) << "the command never opened the fifo";
  ASSERT_EQ(::write(fd, "go\n", 3), 3);
  ::close(fd);
  ASSERT_TRUE(beating) << "fewer than 2 heartbeats, or no Running line";
  ASSERT_EQ(p.wait(), 0);
  auto events = p.events();
  for (const auto& e : events) {
    if (e["kind"] != "heartbeat") continue;
    EXPECT_EQ(e["worker"], "w1");
    EXPECT_EQ(e["level"], "debug");
    EXPECT_EQ(e["fields"]["status"], "running");
    EXPECT_TRUE(e["fields"]["child_pid"].is_number_integer());
  }
  EXPECT_THAT(lines_of(events, "stdout"), ::testing::ElementsAre("got go"));
  EXPECT_NE(find_stage(events, "completed"), nullptr);
}

}  // namespace
}  // namespace stagelog
