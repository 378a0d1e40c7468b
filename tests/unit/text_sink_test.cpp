#include "stagelog/sinks/text_sink.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

#include "fake_clock.hpp"
#include "stagelog/error.hpp"
#include "temp_dir.hpp"

namespace stagelog {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr std::int64_t kMs = 1'000'000;

Event stage(std::int64_t ts_ns, std::string_view worker, std::string_view name, Status status,
            std::optional<std::int64_t> elapsed_ns = std::nullopt) {
  Event e;
  e.ts_ns = ts_ns;
  e.kind = name == "COMPLETE" ? Kind::Run : Kind::Stage;
  e.status = status;
  e.worker = worker;
  e.component = "app";
  e.stage = name;
  e.elapsed_ns = elapsed_ns;
  return e;
}

// ms after 2026-01-04T19:30:00.000Z.
std::int64_t at(std::int64_t ms) { return test::FakeClock::kSeedStart + (ms - 15'234) * kMs; }

TEST(TextSinkTest, WritesTheSeedExampleLines) {
  test::TempDir dir;
  auto path = dir.path() / "run.log";
  {
    TextSink sink(path);
    Event run_start = stage(at(15'234), "T0_00", "COMPLETE", Status::Starting);
    sink.write(run_start);  // No text form.
    sink.write(stage(at(15'234), "T0_00", "AGENT", Status::Starting));
    sink.write(stage(at(28'456), "T0_00", "AGENT", Status::Completed, 13'222 * kMs));
    sink.write(stage(at(29'123), "T0_00", "JUDGE", Status::Starting));
    sink.write(stage(at(35'789), "T0_00", "JUDGE", Status::Completed, 6'666 * kMs));
    sink.write(stage(at(35'890), "T0_00", "COMPLETE", Status::Completed, 20'656 * kMs));
    sink.flush();
  }
  EXPECT_EQ(test::read_file(path),
            "2026-01-04T19:30:15.234Z [T0_00] Stage: AGENT - Starting\n"
            "2026-01-04T19:30:28.456Z [T0_00] Stage: AGENT - Complete (13.2s)\n"
            "2026-01-04T19:30:29.123Z [T0_00] Stage: JUDGE - Starting\n"
            "2026-01-04T19:30:35.789Z [T0_00] Stage: JUDGE - Complete (6.7s)\n"
            "2026-01-04T19:30:35.890Z [T0_00] Stage: COMPLETE - All stages complete (20.7s)\n");
}

TEST(TextSinkTest, WritesTheSeedParallelWorkerLines) {
  test::TempDir dir;
  auto path = dir.path() / "run.log";
  {
    TextSink sink(path);
    sink.write(stage(at(15'234), "T0_00", "AGENT", Status::Starting));
    sink.write(stage(at(15'245), "T0_01", "AGENT", Status::Starting));
    sink.write(stage(at(28'456), "T0_00", "AGENT", Status::Completed, 13'222 * kMs));
    sink.write(stage(at(29'123), "T0_00", "JUDGE", Status::Starting));
    sink.write(stage(at(30'678), "T0_01", "AGENT", Status::Completed, 15'433 * kMs));
    sink.write(stage(at(31'234), "T0_01", "JUDGE", Status::Starting));
  }
  EXPECT_THAT(test::read_lines(path),
              ElementsAre("2026-01-04T19:30:15.234Z [T0_00] Stage: AGENT - Starting",
                          "2026-01-04T19:30:15.245Z [T0_01] Stage: AGENT - Starting",
                          "2026-01-04T19:30:28.456Z [T0_00] Stage: AGENT - Complete (13.2s)",
                          "2026-01-04T19:30:29.123Z [T0_00] Stage: JUDGE - Starting",
                          "2026-01-04T19:30:30.678Z [T0_01] Stage: AGENT - Complete (15.4s)",
                          "2026-01-04T19:30:31.234Z [T0_01] Stage: JUDGE - Starting"));
}

TEST(TextSinkTest, WritesLogLinesWithFields) {
  test::TempDir dir;
  auto path = dir.path() / "run.log";
  Field fields[] = {{"task", std::string_view("d5de16d7")}};
  Event e;
  e.ts_ns = at(28'460);
  e.kind = Kind::Log;
  e.level = Level::Info;
  e.worker = "T0_00";
  e.component = "worker";
  e.message = "claimed task";
  e.fields = fields;
  {
    TextSink sink(path);
    sink.write(e);
  }
  EXPECT_THAT(
      test::read_lines(path),
      ElementsAre("2026-01-04T19:30:28.460Z [T0_00] INFO worker: claimed task task=d5de16d7"));
}

TEST(TextSinkTest, AppendsToExistingFile) {
  test::TempDir dir;
  auto path = dir.path() / "run.log";
  {
    std::ofstream out(path);
    out << "earlier line\n";
  }
  {
    TextSink sink(path);
    sink.write(stage(at(15'234), "T0_00", "AGENT", Status::Starting));
  }
  {
    TextSink sink(path);
    sink.write(stage(at(15'245), "T0_01", "AGENT", Status::Starting));
  }
  EXPECT_THAT(
      test::read_lines(path),
      ElementsAre("earlier line", "2026-01-04T19:30:15.234Z [T0_00] Stage: AGENT - Starting",
                  "2026-01-04T19:30:15.245Z [T0_01] Stage: AGENT - Starting"));
}

TEST(TextSinkTest, FlushMakesDataVisibleWhileOpen) {
  test::TempDir dir;
  auto path = dir.path() / "run.log";
  TextSink sink(path);
  sink.write(stage(at(15'234), "T0_00", "AGENT", Status::Starting));
  sink.flush();
  EXPECT_EQ(test::read_file(path), "2026-01-04T19:30:15.234Z [T0_00] Stage: AGENT - Starting\n");
  sink.write(stage(at(28'456), "T0_00", "AGENT", Status::Completed, 13'222 * kMs));
  sink.flush();
  EXPECT_EQ(test::read_lines(path).size(), 2u);
  sink.flush();  // Nothing pending: no change.
  EXPECT_EQ(test::read_lines(path).size(), 2u);
}

TEST(TextSinkTest, TwoSinksOnOneFileKeepWholeLines) {
  test::TempDir dir;
  auto path = dir.path() / "shared.log";
  {
    TextSink a(path);
    TextSink b(path);
    for (int i = 0; i < 2000; ++i) {
      a.write(stage(at(15'234), "A", "AGENT", Status::Starting));
      b.write(stage(at(15'234), "B", "JUDGE", Status::Starting));
    }
  }
  auto lines = test::read_lines(path);
  ASSERT_EQ(lines.size(), 4000u);
  for (const auto& line : lines) {
    ASSERT_TRUE(line == "2026-01-04T19:30:15.234Z [A] Stage: AGENT - Starting" ||
                line == "2026-01-04T19:30:15.234Z [B] Stage: JUDGE - Starting")
        << line;
  }
}

TEST(TextSinkTest, BadPathThrowsErrorNamingThePath) {
  test::TempDir dir;
  auto path = dir.path() / "missing" / "run.log";
  try {
    TextSink sink(path);
    FAIL() << "no exception";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()),
              "cannot open " + path.string() + ": No such file or directory");
  }
}

TEST(TextSinkTest, DirectoryAsPathThrows) {
  test::TempDir dir;
  EXPECT_THROW(TextSink sink(dir.path()), Error);
}

TEST(TextSinkTest, LongMessageStaysOneLine) {
  test::TempDir dir;
  auto path = dir.path() / "run.log";
  std::string message(100 * 1024, 'x');
  for (std::size_t i = 1000; i < message.size(); i += 10'000) message[i] = '\n';
  Event e;
  e.ts_ns = at(15'234);
  e.kind = Kind::Log;
  e.level = Level::Error;
  e.worker = "T0_00";
  e.component = "agent";
  e.message = message;
  {
    TextSink sink(path);
    sink.write(e);
    sink.write(stage(at(15'235), "T0_00", "AGENT", Status::Starting));
  }
  auto lines = test::read_lines(path);
  ASSERT_EQ(lines.size(), 2u);
  const std::string prefix = "2026-01-04T19:30:15.234Z [T0_00] ERROR agent: ";
  EXPECT_TRUE(lines[0].starts_with(prefix));
  // Each newline became the two characters "\n".
  EXPECT_EQ(lines[0].size(), prefix.size() + message.size() + 11);
  EXPECT_EQ(lines[0].substr(prefix.size() + 995, 10), "xxxxx\\nxxx");
  EXPECT_EQ(lines[1], "2026-01-04T19:30:15.235Z [T0_00] Stage: AGENT - Starting");
}

TEST(TextSinkTest, KeepsPathAndLevel) {
  test::TempDir dir;
  TextSink sink(dir.path() / "a.log", Level::Debug);
  EXPECT_EQ(sink.path(), dir.path() / "a.log");
  EXPECT_EQ(sink.level(), Level::Debug);
  TextSink all(dir.path() / "b.log");
  EXPECT_EQ(all.level(), Level::Trace);
}

}  // namespace
}  // namespace stagelog
