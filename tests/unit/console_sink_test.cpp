#include "stagelog/sinks/console_sink.hpp"

#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>

#include "events.hpp"
#include "fake_clock.hpp"
#include "scoped_env.hpp"
#include "stagelog/error.hpp"

namespace stagelog {
namespace {

using test::ScopedEnv;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr std::string_view kRed = "\x1b[31m";
constexpr std::string_view kYellow = "\x1b[33m";
constexpr std::string_view kGreen = "\x1b[32m";
constexpr std::string_view kDim = "\x1b[2m";
constexpr std::string_view kReset = "\x1b[0m";

// A pipe whose read end is non-blocking, so drain() returns what has been written so far.
class Pipe {
 public:
  Pipe() {
    if (::pipe(fds_) != 0) throw std::runtime_error("pipe failed");
    ::fcntl(fds_[0], F_SETFL, O_NONBLOCK);
  }
  ~Pipe() {
    ::close(fds_[0]);
    if (fds_[1] >= 0) ::close(fds_[1]);
  }
  Pipe(const Pipe&) = delete;
  Pipe& operator=(const Pipe&) = delete;

  int write_fd() const { return fds_[1]; }
  std::string drain() const {
    std::string out;
    char buf[4096];
    for (;;) {
      ssize_t n = ::read(fds_[0], buf, sizeof buf);
      if (n > 0) {
        out.append(buf, static_cast<std::size_t>(n));
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      return out;
    }
  }

 private:
  int fds_[2] = {-1, -1};
};

// The terminal side of a pseudo-terminal: an fd for which isatty() is true.
class PseudoTerminal {
 public:
  PseudoTerminal() {
    master_ = ::posix_openpt(O_RDWR | O_NOCTTY);
    if (master_ < 0 || ::grantpt(master_) != 0 || ::unlockpt(master_) != 0) return;
    const char* name = ::ptsname(master_);
    if (name != nullptr) slave_ = ::open(name, O_RDWR | O_NOCTTY);
  }
  ~PseudoTerminal() {
    if (slave_ >= 0) ::close(slave_);
    if (master_ >= 0) ::close(master_);
  }
  PseudoTerminal(const PseudoTerminal&) = delete;
  PseudoTerminal& operator=(const PseudoTerminal&) = delete;

  int fd() const { return slave_; }

 private:
  int master_ = -1;
  int slave_ = -1;
};

Event stage_event(Status status, std::optional<std::int64_t> elapsed_ns = std::nullopt) {
  return test::stage_event("AGENT", status, elapsed_ns);
}

Event log_event(Level level) {
  Event e;
  e.ts_ns = test::FakeClock::kSeedStart;
  e.kind = Kind::Log;
  e.level = level;
  e.worker = "gpu-1";
  e.component = "worker";
  e.message = "message";
  return e;
}

std::string write_through(ColorMode mode, const Event& e) {
  Pipe pipe;
  ConsoleSink sink({Level::Trace, pipe.write_fd(), mode});
  sink.write(e);
  sink.flush();
  return pipe.drain();
}

TEST(ConsoleSinkTest, NoColourWhenFdIsNotATerminalInAutoMode) {
  ScopedEnv no_color("NO_COLOR", nullptr);
  Pipe pipe;
  ConsoleSink sink({Level::Info, pipe.write_fd(), ColorMode::Auto});
  EXPECT_FALSE(sink.colored());
  sink.write(stage_event(Status::Completed, 13'200'000'000));
  sink.write(stage_event(Status::Failed, 6'700'000'000));
  sink.write(log_event(Level::Warning));
  sink.flush();
  EXPECT_EQ(pipe.drain(),
            "2026-01-04T19:30:15.234Z [T0_00] Stage: AGENT - Complete (13.2s)\n"
            "2026-01-04T19:30:15.234Z [T0_00] Stage: AGENT - Failed (6.7s)\n"
            "2026-01-04T19:30:15.234Z [gpu-1] WARNING worker: message\n");
}

TEST(ConsoleSinkTest, AlwaysModeWrapsLinesInColourAndResetsBeforeNewline) {
  EXPECT_EQ(write_through(ColorMode::Always, stage_event(Status::Completed, 13'200'000'000)),
            std::string(kGreen) +
                "2026-01-04T19:30:15.234Z [T0_00] Stage: AGENT - Complete (13.2s)" +
                std::string(kReset) + "\n");
}

TEST(ConsoleSinkTest, AlwaysModeColoursByOutcomeAndLevel) {
  std::string failed = write_through(ColorMode::Always, stage_event(Status::Failed, 1));
  EXPECT_TRUE(failed.starts_with(kRed)) << failed;
  EXPECT_TRUE(failed.ends_with(std::string(kReset) + "\n")) << failed;

  std::string error = write_through(ColorMode::Always, log_event(Level::Error));
  EXPECT_TRUE(error.starts_with(kRed)) << error;
  std::string critical = write_through(ColorMode::Always, log_event(Level::Critical));
  EXPECT_TRUE(critical.starts_with(kRed)) << critical;

  std::string warning = write_through(ColorMode::Always, log_event(Level::Warning));
  EXPECT_EQ(warning, std::string(kYellow) +
                         "2026-01-04T19:30:15.234Z [gpu-1] WARNING worker: message" +
                         std::string(kReset) + "\n");

  std::string debug = write_through(ColorMode::Always, log_event(Level::Debug));
  EXPECT_TRUE(debug.starts_with(kDim)) << debug;

  Event run_end = stage_event(Status::Completed, 20'700'000'000);
  run_end.kind = Kind::Run;
  run_end.stage = "COMPLETE";
  std::string run = write_through(ColorMode::Always, run_end);
  EXPECT_TRUE(run.starts_with(kGreen)) << run;
  EXPECT_THAT(run, HasSubstr("All stages complete (20.7s)"));
}

TEST(ConsoleSinkTest, AlwaysModeLeavesPlainLinesUncoloured) {
  EXPECT_EQ(write_through(ColorMode::Always, log_event(Level::Info)),
            "2026-01-04T19:30:15.234Z [gpu-1] INFO worker: message\n");
  EXPECT_EQ(write_through(ColorMode::Always, stage_event(Status::Starting)),
            "2026-01-04T19:30:15.234Z [T0_00] Stage: AGENT - Starting\n");
}

TEST(ConsoleSinkTest, EveryColouredLineIsReset) {
  Pipe pipe;
  ConsoleSink sink({Level::Trace, pipe.write_fd(), ColorMode::Always});
  sink.write(stage_event(Status::Starting));
  sink.write(stage_event(Status::Completed, 1'000'000'000));
  sink.write(log_event(Level::Error));
  sink.write(log_event(Level::Info));
  sink.write(log_event(Level::Warning));
  sink.flush();
  std::string out = pipe.drain();
  std::size_t start = 0;
  int lines = 0;
  while (start < out.size()) {
    auto end = out.find('\n', start);
    ASSERT_NE(end, std::string::npos);
    std::string_view line(out.data() + start, end - start);
    if (line.starts_with("\x1b")) {
      EXPECT_TRUE(line.ends_with(kReset)) << line;
    }
    EXPECT_EQ(line.find(kReset),
              line.starts_with("\x1b") ? line.size() - kReset.size() : std::string_view::npos);
    start = end + 1;
    ++lines;
  }
  EXPECT_EQ(lines, 5);
}

TEST(ConsoleSinkTest, NeverModeHasNoColour) {
  EXPECT_EQ(write_through(ColorMode::Never, stage_event(Status::Failed, 1)),
            "2026-01-04T19:30:15.234Z [T0_00] Stage: AGENT - Failed (0.0s)\n");
}

TEST(ConsoleSinkTest, RunStartWritesNothing) {
  Event run_start = stage_event(Status::Starting);
  run_start.kind = Kind::Run;
  run_start.stage = "COMPLETE";
  EXPECT_EQ(write_through(ColorMode::Always, run_start), "");
}

TEST(ConsoleSinkTest, AutoModeColoursATerminal) {
  ScopedEnv no_color("NO_COLOR", nullptr);
  PseudoTerminal tty;
  if (tty.fd() < 0) GTEST_SKIP() << "no pseudo-terminal available";
  ASSERT_EQ(::isatty(tty.fd()), 1);
  ConsoleSink sink({Level::Info, tty.fd(), ColorMode::Auto});
  EXPECT_TRUE(sink.colored());
}

TEST(ConsoleSinkTest, NoColorDisablesColourInAutoMode) {
  ScopedEnv no_color("NO_COLOR", "1");
  PseudoTerminal tty;
  if (tty.fd() >= 0) {
    ConsoleSink on_tty({Level::Info, tty.fd(), ColorMode::Auto});
    EXPECT_FALSE(on_tty.colored());
  }
  Pipe pipe;
  ConsoleSink sink({Level::Info, pipe.write_fd(), ColorMode::Auto});
  EXPECT_FALSE(sink.colored());
  sink.write(stage_event(Status::Failed, 1));
  sink.flush();
  EXPECT_THAT(pipe.drain(), Not(HasSubstr("\x1b")));
}

TEST(ConsoleSinkTest, EmptyNoColorDoesNotDisableColour) {
  ScopedEnv no_color("NO_COLOR", "");
  PseudoTerminal tty;
  if (tty.fd() < 0) GTEST_SKIP() << "no pseudo-terminal available";
  ConsoleSink sink({Level::Info, tty.fd(), ColorMode::Auto});
  EXPECT_TRUE(sink.colored());
}

TEST(ConsoleSinkTest, AlwaysAndNeverIgnoreNoColorAndTerminal) {
  ScopedEnv no_color("NO_COLOR", "1");
  Pipe pipe;
  EXPECT_TRUE(ConsoleSink({Level::Info, pipe.write_fd(), ColorMode::Always}).colored());
  PseudoTerminal tty;
  if (tty.fd() >= 0) {
    ScopedEnv unset("NO_COLOR", nullptr);
    EXPECT_FALSE(ConsoleSink({Level::Info, tty.fd(), ColorMode::Never}).colored());
  }
}

TEST(ConsoleSinkTest, LevelComesFromOptionsAndDefaultsToInfo) {
  EXPECT_EQ(ConsoleOptions{}.level, Level::Info);
  EXPECT_EQ(ConsoleOptions{}.fd, 1);
  EXPECT_EQ(ConsoleOptions{}.color, ColorMode::Auto);
  ConsoleSink by_default;
  EXPECT_EQ(by_default.level(), Level::Info);
  Pipe pipe;
  ConsoleSink debug({Level::Debug, pipe.write_fd(), ColorMode::Never});
  EXPECT_EQ(debug.level(), Level::Debug);
  debug.set_level(Level::Error);
  EXPECT_EQ(debug.level(), Level::Error);
}

TEST(ConsoleSinkTest, WriteDoesNotFilterByLevel) {
  // Filtering is the recorder's job: the sink prints whatever it is given.
  Pipe pipe;
  ConsoleSink sink({Level::Error, pipe.write_fd(), ColorMode::Never});
  sink.write(log_event(Level::Debug));
  sink.flush();
  EXPECT_EQ(pipe.drain(), "2026-01-04T19:30:15.234Z [gpu-1] DEBUG worker: message\n");
}

TEST(ConsoleSinkTest, DestructorFlushes) {
  Pipe pipe;
  {
    ConsoleSink sink({Level::Info, pipe.write_fd(), ColorMode::Never});
    sink.write(stage_event(Status::Starting));
  }
  EXPECT_EQ(pipe.drain(), "2026-01-04T19:30:15.234Z [T0_00] Stage: AGENT - Starting\n");
}

TEST(ConsoleSinkTest, InvalidFdThrows) {
  EXPECT_THROW(ConsoleSink sink({Level::Info, -1, ColorMode::Never}), Error);
}

}  // namespace
}  // namespace stagelog
