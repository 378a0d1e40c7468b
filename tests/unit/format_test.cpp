// Golden lines for the seed-000 text format, built from hand-made events.

#include "format/format.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <regex>
#include <string>
#include <string_view>
#include <vector>

#include "base/duration.hpp"
#include "base/time_text.hpp"
#include "events.hpp"
#include "fake_clock.hpp"
#include "stagelog/event.hpp"

namespace stagelog {
namespace {

using test::FakeClock;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr std::int64_t kMs = 1'000'000;
constexpr std::int64_t kSec = 1'000'000'000;

// ns since the epoch for a UTC calendar time, computed with <chrono>, not with the library.
std::int64_t utc_ns(int y, unsigned mo, unsigned d, int h, int mi, int s, int ms = 0) {
  using namespace std::chrono;
  auto day = sys_days{year{y} / month{mo} / d};
  auto t = day + hours{h} + minutes{mi} + seconds{s} + milliseconds{ms};
  return duration_cast<nanoseconds>(t.time_since_epoch()).count();
}

using test::stage_event;

Event run_event(Status status, std::optional<std::int64_t> elapsed_ns = std::nullopt,
                std::string_view message = {}, std::int64_t ts_ns = FakeClock::kSeedStart) {
  Event e = stage_event("COMPLETE", status, elapsed_ns, message, ts_ns);
  e.kind = Kind::Run;
  return e;
}

Event log_event(Level level, std::string_view message, std::string_view worker = "gpu-1",
                std::string_view component = "worker") {
  Event e;
  e.ts_ns = FakeClock::kSeedStart;
  e.kind = Kind::Log;
  e.level = level;
  e.worker = worker;
  e.component = component;
  e.message = message;
  return e;
}

// format_text's output; the trailing newline is checked and removed.
std::string text(const Event& e) {
  std::string out;
  EXPECT_TRUE(detail::format_text(e, out));
  EXPECT_FALSE(out.empty());
  if (out.empty() || out.back() != '\n') {
    ADD_FAILURE() << "line does not end with a newline: " << out;
    return out;
  }
  out.pop_back();
  EXPECT_EQ(out.find('\n'), std::string::npos) << "one event must be one line: " << out;
  return out;
}

std::string seconds(std::int64_t ns) {
  std::string out;
  detail::append_elapsed_seconds(out, ns);
  return out;
}

std::string timestamp(std::int64_t ns) {
  std::string out;
  detail::append_iso_timestamp(out, ns);
  return out;
}

// --- Timestamps --------------------------------------------------------------------------

TEST(FormatTest, TimestampOfSeedStartIsTheSeedsFirstTimestamp) {
  EXPECT_EQ(timestamp(FakeClock::kSeedStart), "2026-01-04T19:30:15.234Z");
  EXPECT_EQ(FakeClock::kSeedStart, utc_ns(2026, 1, 4, 19, 30, 15, 234));
}

TEST(FormatTest, TimestampTruncatesToMilliseconds) {
  EXPECT_EQ(timestamp(FakeClock::kSeedStart + 999'999), "2026-01-04T19:30:15.234Z");
  EXPECT_EQ(timestamp(FakeClock::kSeedStart + kMs), "2026-01-04T19:30:15.235Z");
}

TEST(FormatTest, TimestampOfEpochIsZeroPadded) {
  EXPECT_EQ(timestamp(0), "1970-01-01T00:00:00.000Z");
  EXPECT_EQ(timestamp(7 * kMs), "1970-01-01T00:00:00.007Z");
}

TEST(FormatTest, TimestampCrossesDayAndYearBoundary) {
  const std::int64_t last = utc_ns(2025, 12, 31, 23, 59, 59, 999);
  EXPECT_EQ(timestamp(last), "2025-12-31T23:59:59.999Z");
  EXPECT_EQ(timestamp(last + kMs), "2026-01-01T00:00:00.000Z");
  EXPECT_EQ(timestamp(utc_ns(2026, 1, 4, 23, 59, 59, 500)), "2026-01-04T23:59:59.500Z");
  EXPECT_EQ(timestamp(utc_ns(2026, 1, 5, 0, 0, 0, 1)), "2026-01-05T00:00:00.001Z");
}

TEST(FormatTest, TimestampOnLeapDay) {
  EXPECT_EQ(timestamp(utc_ns(2028, 2, 28, 23, 59, 59, 999)), "2028-02-28T23:59:59.999Z");
  EXPECT_EQ(timestamp(utc_ns(2028, 2, 29, 0, 0, 0)), "2028-02-29T00:00:00.000Z");
  EXPECT_EQ(timestamp(utc_ns(2028, 2, 29, 12, 34, 56, 789)), "2028-02-29T12:34:56.789Z");
  EXPECT_EQ(timestamp(utc_ns(2028, 3, 1, 0, 0, 0)), "2028-03-01T00:00:00.000Z");
  // 2100 is not a leap year, 2000 is.
  EXPECT_EQ(timestamp(utc_ns(2100, 3, 1, 0, 0, 0)), "2100-03-01T00:00:00.000Z");
  EXPECT_EQ(timestamp(utc_ns(2000, 2, 29, 0, 0, 0)), "2000-02-29T00:00:00.000Z");
}

TEST(FormatTest, TimestampIsRightWhenTheSecondChangesBackAndForth) {
  // The date part is cached per second; going back to an earlier second must not reuse it.
  const std::int64_t a = utc_ns(2026, 1, 4, 19, 30, 15, 234);
  const std::int64_t b = utc_ns(2027, 6, 1, 8, 0, 1, 5);
  EXPECT_EQ(timestamp(a), "2026-01-04T19:30:15.234Z");
  EXPECT_EQ(timestamp(b), "2027-06-01T08:00:01.005Z");
  EXPECT_EQ(timestamp(a + 100 * kMs), "2026-01-04T19:30:15.334Z");
  EXPECT_EQ(timestamp(b), "2027-06-01T08:00:01.005Z");
}

TEST(FormatTest, TimestampAgreesWithChronoOverManyDays) {
  // One timestamp a day (plus a varying time of day) for ten years from 2024.
  std::int64_t ns = utc_ns(2024, 1, 1, 0, 0, 0);
  for (int i = 0; i < 3660; ++i, ns += 86400 * kSec + 7 * kSec + 13 * kMs) {
    using namespace std::chrono;
    sys_time<milliseconds> t{duration_cast<milliseconds>(nanoseconds{ns})};
    auto day = floor<days>(t);
    year_month_day ymd{day};
    hh_mm_ss hms{t - day};
    char expected[32];
    std::snprintf(expected, sizeof expected, "%04d-%02u-%02uT%02d:%02d:%02d.%03dZ",
                  static_cast<int>(ymd.year()), static_cast<unsigned>(ymd.month()),
                  static_cast<unsigned>(ymd.day()), static_cast<int>(hms.hours().count()),
                  static_cast<int>(hms.minutes().count()), static_cast<int>(hms.seconds().count()),
                  static_cast<int>(hms.subseconds().count()));
    ASSERT_EQ(timestamp(ns), expected) << "ns=" << ns;
  }
}

// --- Elapsed seconds ---------------------------------------------------------------------

TEST(FormatTest, SecondsUseOneDecimalAtOrAboveOneSecond) {
  EXPECT_EQ(seconds(13'200 * kMs), "13.2");
  EXPECT_EQ(seconds(6'700 * kMs), "6.7");
  EXPECT_EQ(seconds(20'700 * kMs), "20.7");
  EXPECT_EQ(seconds(1 * kSec), "1.0");
  EXPECT_EQ(seconds(3600 * kSec), "3600.0");
  EXPECT_EQ(seconds(13'249 * kMs), "13.2");
  EXPECT_EQ(seconds(13'250 * kMs), "13.3");  // Half rounds up.
  EXPECT_EQ(seconds(59'960 * kMs), "60.0");
}

TEST(FormatTest, SecondsUseThreeDecimalsBelowOneSecond) {
  EXPECT_EQ(seconds(42 * kMs), "0.042");
  EXPECT_EQ(seconds(0), "0.000");
  EXPECT_EQ(seconds(1 * kMs), "0.001");
  EXPECT_EQ(seconds(499'999), "0.000");
  EXPECT_EQ(seconds(500'000), "0.001");  // Half a millisecond rounds up.
  EXPECT_EQ(seconds(123'456'789), "0.123");
  EXPECT_EQ(seconds(999 * kMs), "0.999");
  EXPECT_EQ(seconds(999'499'999), "0.999");
}

TEST(FormatTest, SecondsRoundUpAcrossOneSecondAtHalfAMillisecond) {
  // 0.9995 s is 1.000 s to the millisecond, so it is at least one second: "1.0", not "0.000".
  EXPECT_EQ(seconds(999'500'000), "1.0");
  EXPECT_EQ(seconds(999'600'000), "1.0");
  EXPECT_EQ(seconds(999'949'999), "1.0");
}

TEST(FormatTest, SecondsRoundUpToOneSecondAt999Point95Milliseconds) {
  EXPECT_EQ(seconds(999'950'000), "1.0");
  EXPECT_EQ(seconds(999'999'999), "1.0");
  EXPECT_EQ(seconds(1'049'999'999), "1.0");
  EXPECT_EQ(seconds(1'050'000'000), "1.1");
}

TEST(FormatTest, SecondsNearTheLargestDurationDoNotOverflow) {
  // 9223372036854775807 ns is 9223372036.854... s; read back from a file, it must print.
  EXPECT_EQ(seconds(std::numeric_limits<std::int64_t>::max()), "9223372036.9");
  EXPECT_EQ(seconds(std::numeric_limits<std::int64_t>::max() - 60'000'000), "9223372036.8");
}

TEST(FormatTest, SecondsNeverGoBackwardsAsTimeGrows) {
  // The printed value (as a number) is monotonic in the elapsed time, across the switch from
  // three decimals to one.
  double previous = -1;
  for (std::int64_t ns = 990 * kMs; ns <= 1'010 * kMs; ns += 50'000) {
    double value = std::stod(seconds(ns));
    ASSERT_GE(value, previous) << "ns=" << ns << " printed " << seconds(ns);
    previous = value;
  }
}

TEST(FormatTest, NegativeElapsedPrintsAsZero) { EXPECT_EQ(seconds(-5 * kSec), "0.000"); }

// --- Stage lines -------------------------------------------------------------------------

TEST(FormatTest, StageStartIsTheSeedLine) {
  EXPECT_EQ(text(stage_event("AGENT", Status::Starting)),
            "2026-01-04T19:30:15.234Z [T0_00] Stage: AGENT - Starting");
}

TEST(FormatTest, StageCompleteShowsElapsedWithOneDecimal) {
  auto e = stage_event("AGENT", Status::Completed, 13'222 * kMs, {},
                       utc_ns(2026, 1, 4, 19, 30, 28, 456));
  EXPECT_EQ(text(e), "2026-01-04T19:30:28.456Z [T0_00] Stage: AGENT - Complete (13.2s)");
}

// Seed 001 (issue 22): f"{elapsed:.1f}s" below one second too; the time the seed's stage line
// pattern reads, (\d+\.\d+)s, is still there.
TEST(FormatTest, StageCompleteBelowOneSecondShowsOneDecimalAsPythonDoes) {
  EXPECT_EQ(text(stage_event("JUDGE", Status::Completed, 42 * kMs)),
            "2026-01-04T19:30:15.234Z [T0_00] Stage: JUDGE - Complete (0.0s)");
  EXPECT_EQ(text(stage_event("JUDGE", Status::Completed, 436 * kMs)),
            "2026-01-04T19:30:15.234Z [T0_00] Stage: JUDGE - Complete (0.4s)");
}

TEST(FormatTest, StageCompleteAtRoundingEdges) {
  EXPECT_EQ(text(stage_event("JUDGE", Status::Completed, 999'950'000)),
            "2026-01-04T19:30:15.234Z [T0_00] Stage: JUDGE - Complete (1.0s)");
  EXPECT_EQ(text(stage_event("JUDGE", Status::Completed, 999'499'999)),
            "2026-01-04T19:30:15.234Z [T0_00] Stage: JUDGE - Complete (1.0s)");
  // Python: f"{125.25:.1f}" is '125.2' (the exact binary value, halves to even).
  EXPECT_EQ(text(stage_event("JUDGE", Status::Completed, 125'250 * kMs)),
            "2026-01-04T19:30:15.234Z [T0_00] Stage: JUDGE - Complete (125.2s)");
}

TEST(FormatTest, StageFailedShowsElapsedAndMessage) {
  EXPECT_EQ(
      text(stage_event("JUDGE", Status::Failed, 6'700 * kMs, "timeout after 480000ms")),
      "2026-01-04T19:30:15.234Z [T0_00] Stage: JUDGE - Failed (6.7s): timeout after 480000ms");
}

TEST(FormatTest, StageFailedWithoutMessageHasNoColon) {
  EXPECT_EQ(text(stage_event("JUDGE", Status::Failed, 6'700 * kMs)),
            "2026-01-04T19:30:15.234Z [T0_00] Stage: JUDGE - Failed (6.7s)");
}

TEST(FormatTest, StageSkipped) {
  EXPECT_EQ(text(stage_event("CLEANUP", Status::Skipped)),
            "2026-01-04T19:30:15.234Z [T0_00] Stage: CLEANUP - Skipped");
  EXPECT_EQ(text(stage_event("CLEANUP", Status::Skipped, std::nullopt, "dry run")),
            "2026-01-04T19:30:15.234Z [T0_00] Stage: CLEANUP - Skipped: dry run");
}

TEST(FormatTest, StageRunningAndInProgressStatusWords) {
  EXPECT_EQ(text(stage_event("AGENT", Status::Running)),
            "2026-01-04T19:30:15.234Z [T0_00] Stage: AGENT - Running");
  EXPECT_EQ(text(stage_event("AGENT", Status::InProgress)),
            "2026-01-04T19:30:15.234Z [T0_00] Stage: AGENT - InProgress");
}

TEST(FormatTest, RunEndIsAllStagesComplete) {
  auto e = run_event(Status::Completed, 20'700 * kMs, {}, utc_ns(2026, 1, 4, 19, 30, 35, 890));
  EXPECT_EQ(text(e),
            "2026-01-04T19:30:35.890Z [T0_00] Stage: COMPLETE - All stages complete (20.7s)");
}

TEST(FormatTest, RunFailureIsAFailedCompleteLine) {
  EXPECT_EQ(text(run_event(Status::Failed, 20'700 * kMs, "judge crashed")),
            "2026-01-04T19:30:15.234Z [T0_00] Stage: COMPLETE - Failed (20.7s): judge crashed");
}

TEST(FormatTest, RunStartHasNoTextForm) {
  std::string out = "previous";
  EXPECT_FALSE(detail::format_text(run_event(Status::Starting), out));
  EXPECT_EQ(out, "previous");
}

TEST(FormatTest, SeedExampleOutputIsReproduced) {
  const std::vector<Event> events = {
      stage_event("AGENT", Status::Starting, std::nullopt, {}, utc_ns(2026, 1, 4, 19, 30, 15, 234)),
      stage_event("AGENT", Status::Completed, 13'222 * kMs, {},
                  utc_ns(2026, 1, 4, 19, 30, 28, 456)),
      stage_event("JUDGE", Status::Starting, std::nullopt, {}, utc_ns(2026, 1, 4, 19, 30, 29, 123)),
      stage_event("JUDGE", Status::Completed, 6'666 * kMs, {}, utc_ns(2026, 1, 4, 19, 30, 35, 789)),
      run_event(Status::Completed, 20'656 * kMs, {}, utc_ns(2026, 1, 4, 19, 30, 35, 890)),
  };
  std::string out;
  for (const auto& e : events) EXPECT_TRUE(detail::format_text(e, out));
  EXPECT_EQ(out,
            "2026-01-04T19:30:15.234Z [T0_00] Stage: AGENT - Starting\n"
            "2026-01-04T19:30:28.456Z [T0_00] Stage: AGENT - Complete (13.2s)\n"
            "2026-01-04T19:30:29.123Z [T0_00] Stage: JUDGE - Starting\n"
            "2026-01-04T19:30:35.789Z [T0_00] Stage: JUDGE - Complete (6.7s)\n"
            "2026-01-04T19:30:35.890Z [T0_00] Stage: COMPLETE - All stages complete (20.7s)\n");
}

TEST(FormatTest, FormatTextAppendsToExistingOutput) {
  std::string out = "x\n";
  EXPECT_TRUE(detail::format_text(stage_event("AGENT", Status::Starting), out));
  EXPECT_EQ(out, "x\n2026-01-04T19:30:15.234Z [T0_00] Stage: AGENT - Starting\n");
}

TEST(FormatTest, StageFieldsFollowTheStatus) {
  Field fields[] = {{"tokens", std::int64_t{1247}}};
  auto e = stage_event("AGENT", Status::Completed, 13'200 * kMs);
  e.fields = fields;
  EXPECT_EQ(text(e),
            "2026-01-04T19:30:15.234Z [T0_00] Stage: AGENT - Complete (13.2s) tokens=1247");
}

// Every stage line whose ids are word characters matches the seed's own parser regex, with
// the groups the seed's parse_stage_log() expects.
TEST(FormatTest, StageLinesMatchTheSeedRegex) {
  const std::regex pattern(R"((\S+) \[(\w+)\] Stage: (\w+) - (\w+)(?: \((\d+\.\d+)s\))?)");
  struct Case {
    Event event;
    std::string status;    // Group 4.
    std::string duration;  // Group 5, "" when absent.
  };
  const std::vector<Case> cases = {
      {stage_event("AGENT", Status::Starting), "Starting", ""},
      {stage_event("AGENT", Status::Completed, 13'200 * kMs), "Complete", "13.2"},
      {stage_event("JUDGE", Status::Completed, 42 * kMs), "Complete", "0.0"},
      {stage_event("JUDGE", Status::Completed, 999'950'000), "Complete", "1.0"},
      {stage_event("JUDGE", Status::Failed, 6'700 * kMs, "timeout after 480000ms"), "Failed",
       "6.7"},
      {stage_event("WORKTREE", Status::Skipped), "Skipped", ""},
      {stage_event("orchestrator_execution", Status::Running, std::nullopt, {},
                   FakeClock::kSeedStart, "w3"),
       "Running", ""},
      {run_event(Status::Failed, 20'700 * kMs, "boom"), "Failed", "20.7"},
      // The seed's regex reads "All" as the status of its own run-end line and no duration.
      {run_event(Status::Completed, 20'700 * kMs), "All", ""},
  };
  for (const auto& c : cases) {
    std::string line = text(c.event);
    std::smatch m;
    ASSERT_TRUE(std::regex_search(line, m, pattern, std::regex_constants::match_continuous))
        << line;
    EXPECT_EQ(m[1].str(), "2026-01-04T19:30:15.234Z") << line;
    EXPECT_EQ(m[2].str(), c.event.worker) << line;
    EXPECT_EQ(m[3].str(), c.event.stage) << line;
    EXPECT_EQ(m[4].str(), c.status) << line;
    EXPECT_EQ(m[5].str(), c.duration) << line;
  }
}

// --- Log lines ---------------------------------------------------------------------------

TEST(FormatTest, LogLineHasLevelComponentAndMessage) {
  Field fields[] = {{"key", std::string_view("value")}};
  auto e = log_event(Level::Warning, "message");
  e.fields = fields;
  EXPECT_EQ(text(e), "2026-01-04T19:30:15.234Z [gpu-1] WARNING worker: message key=value");
}

TEST(FormatTest, LogLineUsesUpperCaseLevelNames) {
  EXPECT_EQ(text(log_event(Level::Info, "claimed task")),
            "2026-01-04T19:30:15.234Z [gpu-1] INFO worker: claimed task");
  EXPECT_EQ(text(log_event(Level::Trace, "m")), "2026-01-04T19:30:15.234Z [gpu-1] TRACE worker: m");
  EXPECT_EQ(text(log_event(Level::Debug, "m")), "2026-01-04T19:30:15.234Z [gpu-1] DEBUG worker: m");
  EXPECT_EQ(text(log_event(Level::Error, "m")), "2026-01-04T19:30:15.234Z [gpu-1] ERROR worker: m");
  EXPECT_EQ(text(log_event(Level::Critical, "m")),
            "2026-01-04T19:30:15.234Z [gpu-1] CRITICAL worker: m");
}

TEST(FormatTest, FieldsOfEveryType) {
  Field fields[] = {
      {"i", std::int64_t{-42}},
      {"imin", std::numeric_limits<std::int64_t>::min()},
      {"u", std::uint64_t{18446744073709551615u}},
      {"d", 1.5},
      {"third", 0.1},
      {"whole", 3.0},
      {"yes", true},
      {"no", false},
      {"s", std::string_view("d5de16d7")},
  };
  auto e = log_event(Level::Info, "claimed task");
  e.fields = fields;
  EXPECT_EQ(text(e),
            "2026-01-04T19:30:15.234Z [gpu-1] INFO worker: claimed task i=-42 "
            "imin=-9223372036854775808 u=18446744073709551615 d=1.5 third=0.1 whole=3 yes=true "
            "no=false s=d5de16d7");
}

TEST(FormatTest, StringFieldsAreQuotedWhenNeeded) {
  Field fields[] = {
      {"space", std::string_view("a b")},
      {"quote", std::string_view(R"(say "hi")")},
      {"eq", std::string_view("k=v")},
      {"empty", std::string_view("")},
      {"backslash", std::string_view(R"(C:\tmp)")},
      {"plain", std::string_view("qwen2.5:7b")},
  };
  auto e = log_event(Level::Info, "m");
  e.fields = fields;
  EXPECT_EQ(text(e),
            "2026-01-04T19:30:15.234Z [gpu-1] INFO worker: m "
            R"(space="a b" quote="say \"hi\"" eq="k=v" empty="" backslash="C:\\tmp" )"
            "plain=qwen2.5:7b");
}

TEST(FormatTest, NonFiniteDoubleFieldsAreSpelledOut) {
  Field fields[] = {
      {"nan", std::numeric_limits<double>::quiet_NaN()},
      {"inf", std::numeric_limits<double>::infinity()},
      {"ninf", -std::numeric_limits<double>::infinity()},
  };
  auto e = log_event(Level::Info, "m");
  e.fields = fields;
  EXPECT_EQ(text(e), "2026-01-04T19:30:15.234Z [gpu-1] INFO worker: m nan=nan inf=inf ninf=-inf");
}

TEST(FormatTest, NewlinesInMessagesAreEscapedSoOneEventIsOneLine) {
  EXPECT_EQ(text(log_event(Level::Error, "first\nsecond\r\nthird\tend")),
            R"(2026-01-04T19:30:15.234Z [gpu-1] ERROR worker: first\nsecond\r\nthird\tend)");
  EXPECT_EQ(
      text(stage_event("JUDGE", Status::Failed, 6'700 * kMs, "Traceback:\n  line 1\n")),
      R"(2026-01-04T19:30:15.234Z [T0_00] Stage: JUDGE - Failed (6.7s): Traceback:\n  line 1\n)");
}

TEST(FormatTest, OtherControlCharactersAreHexEscaped) {
  EXPECT_EQ(text(log_event(Level::Info, std::string_view("a\x01"
                                                         "b\x1b[0m\x7f",
                                                         8))),
            R"(2026-01-04T19:30:15.234Z [gpu-1] INFO worker: a\x01b\x1b[0m\x7f)");
  EXPECT_EQ(text(log_event(Level::Info, std::string_view("nul\0end", 7))),
            R"(2026-01-04T19:30:15.234Z [gpu-1] INFO worker: nul\x00end)");
}

TEST(FormatTest, NewlinesInIdsAndFieldsAreEscaped) {
  Field fields[] = {{"multi\nkey", std::string_view("line1\nline2")}};
  Event e =
      stage_event("load\nfile", Status::Starting, std::nullopt, {}, FakeClock::kSeedStart, "w\n1");
  e.fields = fields;
  EXPECT_EQ(
      text(e),
      R"(2026-01-04T19:30:15.234Z [w\n1] Stage: load\nfile - Starting multi\nkey="line1\nline2")");
  EXPECT_EQ(text(log_event(Level::Info, "m", "gpu-1", "comp\nonent")),
            R"(2026-01-04T19:30:15.234Z [gpu-1] INFO comp\nonent: m)");
}

TEST(FormatTest, EscapedTextKeepsPrintableAndUtf8Bytes) {
  std::string out;
  detail::append_escaped_text(out, "héllo — ok\t\n");
  EXPECT_EQ(out, "héllo — ok\\t\\n");
}

}  // namespace
}  // namespace stagelog
