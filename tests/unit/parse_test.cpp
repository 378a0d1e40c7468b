#include "stagelog/parse.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "base/time_text.hpp"
#include "events.hpp"
#include "fake_clock.hpp"
#include "format/format.hpp"
#include "line_mutator.hpp"

namespace stagelog {
namespace {

using ::testing::HasSubstr;
using json = nlohmann::json;

constexpr std::int64_t kMs = 1'000'000;
constexpr std::int64_t kSec = 1'000'000'000;

std::int64_t utc_ns(int y, unsigned mo, unsigned d, int h, int mi, int s, std::int64_t ns = 0) {
  using namespace std::chrono;
  auto t = sys_days{year{y} / month{mo} / d} + hours{h} + minutes{mi} + seconds{s};
  return duration_cast<nanoseconds>(t.time_since_epoch()).count() + ns;
}

// parse_line that must succeed.
ParsedLine parsed(std::string_view line) {
  std::string error;
  auto p = parse_line(line, &error);
  if (!p) {
    ADD_FAILURE() << "rejected: " << line << "\n  error: " << error;
    return {};
  }
  return *p;
}

// parse_line that must fail; returns the error.
std::string rejected(std::string_view line) {
  std::string error;
  auto p = parse_line(line, &error);
  EXPECT_FALSE(p.has_value()) << "accepted: " << line;
  EXPECT_FALSE(error.empty()) << "no error for: " << line;
  EXPECT_FALSE(parse_line(line).has_value()) << "accepted without an error pointer: " << line;
  return error;
}

// --- Stage lines -------------------------------------------------------------------------

TEST(ParseTest, ParsesSeedExampleLines) {
  auto a = parsed("2026-01-04T19:30:15.234Z [T0_00] Stage: AGENT - Starting");
  EXPECT_EQ(a.kind, Kind::Stage);
  EXPECT_EQ(a.timestamp, "2026-01-04T19:30:15.234Z");
  EXPECT_EQ(a.ts_ns, test::FakeClock::kSeedStart);
  EXPECT_EQ(a.worker, "T0_00");
  EXPECT_EQ(a.stage, "AGENT");
  EXPECT_EQ(a.status, Status::Starting);
  EXPECT_FALSE(a.duration.has_value());
  EXPECT_EQ(a.message, "");

  auto b = parsed("2026-01-04T19:30:28.456Z [T0_00] Stage: AGENT - Complete (13.2s)");
  EXPECT_EQ(b.kind, Kind::Stage);
  EXPECT_EQ(b.ts_ns, utc_ns(2026, 1, 4, 19, 30, 28, 456 * kMs));
  EXPECT_EQ(b.stage, "AGENT");
  EXPECT_EQ(b.status, Status::Completed);
  ASSERT_TRUE(b.duration.has_value());
  EXPECT_DOUBLE_EQ(*b.duration, 13.2);
  EXPECT_EQ(b.message, "");

  auto c = parsed("2026-01-04T19:30:29.123Z [T0_00] Stage: JUDGE - Starting");
  EXPECT_EQ(c.stage, "JUDGE");
  EXPECT_EQ(c.status, Status::Starting);

  auto d = parsed("2026-01-04T19:30:35.789Z [T0_00] Stage: JUDGE - Complete (6.7s)");
  EXPECT_EQ(d.status, Status::Completed);
  EXPECT_DOUBLE_EQ(d.duration.value_or(-1), 6.7);
}

TEST(ParseTest, ParsesRunCompleteLine) {
  auto p = parsed("2026-01-04T19:30:35.890Z [T0_00] Stage: COMPLETE - All stages complete (20.7s)");
  EXPECT_EQ(p.kind, Kind::Run);
  EXPECT_EQ(p.worker, "T0_00");
  EXPECT_EQ(p.stage, "COMPLETE");
  EXPECT_EQ(p.status, Status::Completed);
  ASSERT_TRUE(p.duration.has_value());
  EXPECT_DOUBLE_EQ(*p.duration, 20.7);
  EXPECT_EQ(p.message, "All stages complete");
}

TEST(ParseTest, ParsesRunFailedLine) {
  auto p =
      parsed("2026-01-04T19:30:35.890Z [T0_00] Stage: COMPLETE - Failed (20.7s): judge crashed");
  EXPECT_EQ(p.kind, Kind::Run);
  EXPECT_EQ(p.status, Status::Failed);
  EXPECT_DOUBLE_EQ(p.duration.value_or(-1), 20.7);
  EXPECT_EQ(p.message, "judge crashed");
}

TEST(ParseTest, ParsesSeedParallelWorkerLines) {
  const char* lines[] = {
      "2026-01-04T19:30:15.234Z [T0_00] Stage: AGENT - Starting",
      "2026-01-04T19:30:15.245Z [T0_01] Stage: AGENT - Starting",
      "2026-01-04T19:30:28.456Z [T0_00] Stage: AGENT - Complete (13.2s)",
      "2026-01-04T19:30:29.123Z [T0_00] Stage: JUDGE - Starting",
      "2026-01-04T19:30:30.678Z [T0_01] Stage: AGENT - Complete (15.4s)",
      "2026-01-04T19:30:31.234Z [T0_01] Stage: JUDGE - Starting",
  };
  const char* workers[] = {"T0_00", "T0_01", "T0_00", "T0_00", "T0_01", "T0_01"};
  for (int i = 0; i < 6; ++i) {
    auto p = parsed(lines[i]);
    EXPECT_EQ(p.worker, workers[i]) << lines[i];
    EXPECT_EQ(p.kind, Kind::Stage) << lines[i];
  }
  EXPECT_DOUBLE_EQ(parsed(lines[4]).duration.value_or(-1), 15.4);
}

TEST(ParseTest, SeedLineWithTrailingCommentIsAcceptedWithCommentAsMessage) {
  // Seed section 5 annotates one line with "  # Slower!". The parser reads text after the
  // status like fields ("tokens=1247"): the line is accepted and the comment becomes the
  // message (after the one separating space).
  auto p = parsed("2026-01-04T19:30:30.678Z [T0_01] Stage: AGENT - Complete (15.4s)  # Slower!");
  EXPECT_EQ(p.status, Status::Completed);
  EXPECT_DOUBLE_EQ(p.duration.value_or(-1), 15.4);
  EXPECT_THAT(p.message, HasSubstr("# Slower!"));
}

TEST(ParseTest, WorkerIdsMayContainDashesAndDots) {
  EXPECT_EQ(parsed("2026-01-04T19:30:15.234Z [gpu-1] Stage: AGENT - Starting").worker, "gpu-1");
  EXPECT_EQ(parsed("2026-01-04T19:30:15.234Z [w.3] Stage: AGENT - Starting").worker, "w.3");
  EXPECT_EQ(parsed("2026-01-04T19:30:15.234Z [host:4242/t1] INFO app: m").worker, "host:4242/t1");
}

TEST(ParseTest, FailedKeepsTheMessage) {
  auto p = parsed(
      "2026-01-04T19:30:35.789Z [T0_00] Stage: JUDGE - Failed (6.7s): timeout after 480000ms");
  EXPECT_EQ(p.kind, Kind::Stage);
  EXPECT_EQ(p.status, Status::Failed);
  EXPECT_DOUBLE_EQ(p.duration.value_or(-1), 6.7);
  EXPECT_EQ(p.message, "timeout after 480000ms");
  auto colon = parsed("2026-01-04T19:30:35.789Z [T0_00] Stage: JUDGE - Failed (6.7s): error: a: b");
  EXPECT_EQ(colon.message, "error: a: b");
}

TEST(ParseTest, FailedWithoutDurationKeepsTheMessage) {
  auto p = parsed("2026-01-04T19:30:35.789Z [T0_00] Stage: JUDGE - Failed: no GPU");
  EXPECT_EQ(p.status, Status::Failed);
  EXPECT_FALSE(p.duration.has_value());
  EXPECT_EQ(p.message, "no GPU");
}

TEST(ParseTest, ParsesEveryStatusWord) {
  const std::string prefix = "2026-01-04T19:30:15.234Z [T0_00] Stage: AGENT - ";
  EXPECT_EQ(parsed(prefix + "Starting").status, Status::Starting);
  EXPECT_EQ(parsed(prefix + "Running").status, Status::Running);
  EXPECT_EQ(parsed(prefix + "Complete (1.0s)").status, Status::Completed);
  EXPECT_EQ(parsed(prefix + "Completed (1.0s)").status, Status::Completed);
  EXPECT_EQ(parsed(prefix + "Failed (1.0s)").status, Status::Failed);
  EXPECT_EQ(parsed(prefix + "Skipped").status, Status::Skipped);
  EXPECT_EQ(parsed(prefix + "InProgress").status, Status::InProgress);
  auto skipped = parsed(prefix + "Skipped: dry run");
  EXPECT_EQ(skipped.message, "dry run");
}

TEST(ParseTest, DurationBelowOneSecondHasThreeDecimals) {
  auto p = parsed("2026-01-04T19:30:15.234Z [T0_00] Stage: JUDGE - Complete (0.042s)");
  EXPECT_DOUBLE_EQ(p.duration.value_or(-1), 0.042);
}

TEST(ParseTest, TextAfterTheDurationBecomesTheMessage) {
  auto p = parsed("2026-01-04T19:30:15.234Z [T0_00] Stage: AGENT - Complete (13.2s) tokens=1247");
  EXPECT_DOUBLE_EQ(p.duration.value_or(-1), 13.2);
  EXPECT_EQ(p.message, "tokens=1247");
}

TEST(ParseTest, StripsCarriageReturn) {
  auto p = parsed("2026-01-04T19:30:28.456Z [T0_00] Stage: AGENT - Complete (13.2s)\r");
  EXPECT_DOUBLE_EQ(p.duration.value_or(-1), 13.2);
  EXPECT_EQ(p.message, "");
}

TEST(ParseTest, StageNamesAreFreeText) {
  auto p = parsed("2026-01-04T19:30:15.234Z [T0_00] Stage: orchestrator execution.v2 - Starting");
  EXPECT_EQ(p.stage, "orchestrator execution.v2");
}

// --- Log lines ---------------------------------------------------------------------------

TEST(ParseTest, ParsesLogLine) {
  auto p = parsed("2026-01-04T19:30:28.460Z [gpu-1] WARNING worker: message key=value");
  EXPECT_EQ(p.kind, Kind::Log);
  EXPECT_EQ(p.worker, "gpu-1");
  EXPECT_EQ(p.level, Level::Warning);
  EXPECT_EQ(p.component, "worker");
  EXPECT_EQ(p.message, "message key=value");
  EXPECT_EQ(p.stage, "");
  EXPECT_EQ(p.status, Status::None);
  EXPECT_FALSE(p.duration.has_value());
}

TEST(ParseTest, ParsesEveryLogLevel) {
  const std::pair<const char*, Level> levels[] = {
      {"TRACE", Level::Trace},     {"DEBUG", Level::Debug}, {"INFO", Level::Info},
      {"WARNING", Level::Warning}, {"ERROR", Level::Error}, {"CRITICAL", Level::Critical}};
  for (const auto& [name, level] : levels) {
    auto p = parsed(std::string("2026-01-04T19:30:28.460Z [T0_00] ") + name + " worker: m");
    EXPECT_EQ(p.level, level) << name;
    EXPECT_EQ(p.kind, Kind::Log) << name;
  }
}

TEST(ParseTest, LogMessageMayContainColonsAndBeEmpty) {
  auto p = parsed("2026-01-04T19:30:28.460Z [T0_00] ERROR agent: failed: exit 1: see log");
  EXPECT_EQ(p.component, "agent");
  EXPECT_EQ(p.message, "failed: exit 1: see log");
  auto empty = parsed("2026-01-04T19:30:28.460Z [T0_00] INFO agent: ");
  EXPECT_EQ(empty.message, "");
}

// --- Rejections --------------------------------------------------------------------------

TEST(ParseTest, RejectsMissingTimestamp) {
  rejected("[T0_00] Stage: AGENT - Starting");
  rejected(" [T0_00] Stage: AGENT - Starting");
  rejected("Stage: AGENT - Starting");
}

TEST(ParseTest, RejectsBadTimestamp) {
  rejected("2026-13-04T19:30:15.234Z [T0_00] Stage: AGENT - Starting");  // Month 13.
  rejected("2026-00-04T19:30:15.234Z [T0_00] Stage: AGENT - Starting");
  rejected("2026-01-32T19:30:15.234Z [T0_00] Stage: AGENT - Starting");
  rejected("2026-01-04T24:30:15.234Z [T0_00] Stage: AGENT - Starting");
  rejected("2026-01-04T19:30:15.234 [T0_00] Stage: AGENT - Starting");  // No Z.
  rejected("2026-01-04 19:30:15.234Z [T0_00] Stage: AGENT - Starting");
  rejected("26-01-04T19:30:15.234Z [T0_00] Stage: AGENT - Starting");
}

TEST(ParseTest, RejectsMissingBrackets) {
  rejected("2026-01-04T19:30:15.234Z T0_00 Stage: AGENT - Starting");
  rejected("2026-01-04T19:30:15.234Z [T0_00 Stage: AGENT - Starting");
  rejected("2026-01-04T19:30:15.234Z [] Stage: AGENT - Starting");
  rejected("2026-01-04T19:30:15.234Z [T0_00]Stage: AGENT - Starting");
  rejected("2026-01-04T19:30:15.234Z  [T0_00] Stage: AGENT - Starting");
}

TEST(ParseTest, RejectsWhitespaceInWorker) {
  rejected("2026-01-04T19:30:15.234Z [T0 00] Stage: AGENT - Starting");
  rejected("2026-01-04T19:30:15.234Z [T0\t00] Stage: AGENT - Starting");
}

TEST(ParseTest, RejectsUnknownStatusWord) {
  std::string error = rejected("2026-01-04T19:30:15.234Z [T0_00] Stage: AGENT - Finished (1.0s)");
  EXPECT_THAT(error, HasSubstr("Finished"));
  rejected("2026-01-04T19:30:15.234Z [T0_00] Stage: AGENT - complete (1.0s)");
  rejected("2026-01-04T19:30:15.234Z [T0_00] Stage: AGENT - ");
  rejected("2026-01-04T19:30:15.234Z [T0_00] Stage: AGENT - 42");
}

TEST(ParseTest, RejectsMalformedStagePart) {
  rejected("2026-01-04T19:30:15.234Z [T0_00] Stage: AGENT Starting");
  rejected("2026-01-04T19:30:15.234Z [T0_00] Stage:  - Starting");
  rejected("2026-01-04T19:30:15.234Z [T0_00] Stage: AGENT - Complete(13.2s)");
  rejected("2026-01-04T19:30:15.234Z [T0_00] Stage: AGENT - Complete;");
}

TEST(ParseTest, RejectsLowercaseLevel) {
  rejected("2026-01-04T19:30:28.460Z [gpu-1] warning worker: message");
  rejected("2026-01-04T19:30:28.460Z [gpu-1] Info worker: message");
}

TEST(ParseTest, RejectsMalformedLogLines) {
  rejected("2026-01-04T19:30:28.460Z [gpu-1] NOTICE worker: message");
  rejected("2026-01-04T19:30:28.460Z [gpu-1] INFO worker message");
  rejected("2026-01-04T19:30:28.460Z [gpu-1] INFO : message");
  rejected("2026-01-04T19:30:28.460Z [gpu-1] INFO");
  rejected("2026-01-04T19:30:28.460Z [gpu-1] ");
}

TEST(ParseTest, RejectsEmptyAndGarbage) {
  rejected("");
  rejected("\r");
  rejected("hello world");
  rejected("# Slower!");
}

// --- parse_timestamp ---------------------------------------------------------------------

TEST(ParseTest, TimestampFractionOfZeroToNineDigits) {
  const std::int64_t base = utc_ns(2026, 1, 4, 19, 30, 15);
  EXPECT_EQ(parse_timestamp("2026-01-04T19:30:15Z"), base);
  EXPECT_EQ(parse_timestamp("2026-01-04T19:30:15.2Z"), base + 200 * kMs);
  EXPECT_EQ(parse_timestamp("2026-01-04T19:30:15.23Z"), base + 230 * kMs);
  EXPECT_EQ(parse_timestamp("2026-01-04T19:30:15.234Z"), base + 234 * kMs);
  EXPECT_EQ(parse_timestamp("2026-01-04T19:30:15.2345Z"), base + 234'500'000);
  EXPECT_EQ(parse_timestamp("2026-01-04T19:30:15.23456Z"), base + 234'560'000);
  EXPECT_EQ(parse_timestamp("2026-01-04T19:30:15.234567Z"), base + 234'567'000);
  EXPECT_EQ(parse_timestamp("2026-01-04T19:30:15.2345678Z"), base + 234'567'800);
  EXPECT_EQ(parse_timestamp("2026-01-04T19:30:15.23456789Z"), base + 234'567'890);
  EXPECT_EQ(parse_timestamp("2026-01-04T19:30:15.234567891Z"), base + 234'567'891);
  EXPECT_EQ(parse_timestamp("2026-01-04T19:30:15.000000001Z"), base + 1);
  EXPECT_EQ(parse_timestamp("2026-01-04T19:30:15.234Z"), test::FakeClock::kSeedStart);
}

TEST(ParseTest, TimestampRejectsBadFractions) {
  EXPECT_FALSE(parse_timestamp("2026-01-04T19:30:15.2345678912Z"));  // Ten digits.
  EXPECT_FALSE(parse_timestamp("2026-01-04T19:30:15.Z"));
  EXPECT_FALSE(parse_timestamp("2026-01-04T19:30:15.23aZ"));
  EXPECT_FALSE(parse_timestamp("2026-01-04T19:30:15,234Z"));
}

TEST(ParseTest, TimestampRejectsMalformedText) {
  EXPECT_FALSE(parse_timestamp(""));
  EXPECT_FALSE(parse_timestamp("2026-01-04T19:30:15"));
  EXPECT_FALSE(parse_timestamp("2026-01-04T19:30:15.234"));
  EXPECT_FALSE(parse_timestamp("2026-01-04T19:30:15.234z"));
  EXPECT_FALSE(parse_timestamp("2026-01-04T19:30:15.234+00:00"));
  EXPECT_FALSE(parse_timestamp("2026-01-04T19:30:15.234ZZ"));
  EXPECT_FALSE(parse_timestamp("2026-01-04t19:30:15.234Z"));
  EXPECT_FALSE(parse_timestamp("2026/01/04T19:30:15.234Z"));
  EXPECT_FALSE(parse_timestamp("2026-1-04T19:30:15.234Z"));
  EXPECT_FALSE(parse_timestamp("+026-01-04T19:30:15.234Z"));
  EXPECT_FALSE(parse_timestamp("2026-13-04T19:30:15.234Z"));
  EXPECT_FALSE(parse_timestamp("2026-00-04T19:30:15.234Z"));
  EXPECT_FALSE(parse_timestamp("2026-01-00T19:30:15.234Z"));
  EXPECT_FALSE(parse_timestamp("2026-01-32T19:30:15.234Z"));
  EXPECT_FALSE(parse_timestamp("2026-01-04T24:00:00.000Z"));
  EXPECT_FALSE(parse_timestamp("2026-01-04T19:60:15.234Z"));
  EXPECT_FALSE(parse_timestamp("2026-01-04T19:30:61.234Z"));
}

TEST(ParseTest, TimestampAcrossDayYearAndLeapDay) {
  EXPECT_EQ(parse_timestamp("2025-12-31T23:59:59.999Z"),
            utc_ns(2025, 12, 31, 23, 59, 59, 999 * kMs));
  EXPECT_EQ(parse_timestamp("2026-01-01T00:00:00.000Z"), utc_ns(2026, 1, 1, 0, 0, 0));
  EXPECT_EQ(parse_timestamp("2028-02-29T12:00:00.000Z"), utc_ns(2028, 2, 29, 12, 0, 0));
  EXPECT_EQ(parse_timestamp("2028-03-01T00:00:00Z"), utc_ns(2028, 3, 1, 0, 0, 0));
  EXPECT_EQ(parse_timestamp("1970-01-01T00:00:00.000Z"), 0);
  EXPECT_EQ(parse_timestamp("1969-12-31T23:59:59.999Z"), -kMs);
}

TEST(ParseTest, TimestampRejectsDaysPastTheEndOfTheMonth) {
  // A date that does not exist must not silently become another date (2026-02-31 would be
  // read as 2026-03-03).
  EXPECT_FALSE(parse_timestamp("2026-02-31T00:00:00Z"));
  EXPECT_FALSE(parse_timestamp("2027-02-29T00:00:00Z"));  // 2027 is not a leap year.
  EXPECT_FALSE(parse_timestamp("2026-04-31T00:00:00Z"));
}

TEST(ParseTest, TimestampAtTheEndOfTheInt64RangeIsExact) {
  EXPECT_EQ(parse_timestamp("2262-04-11T23:47:16.854775807Z"),
            std::numeric_limits<std::int64_t>::max());
}

TEST(ParseTest, TimestampBeyondTheInt64RangeIsRejected) {
  // Four-digit years reach 9999, but ns since 1970 in an int64 end in April 2262. Later
  // timestamps cannot be represented; they must be rejected, not overflow.
  EXPECT_EQ(parse_timestamp("2262-04-11T23:47:17Z"), std::nullopt);
  EXPECT_EQ(parse_timestamp("9999-12-31T23:59:59.999Z"), std::nullopt);
  EXPECT_FALSE(parse_line("9999-12-31T23:59:59.999Z [T0_00] Stage: AGENT - Starting"));
}

// --- to_json -----------------------------------------------------------------------------

json to_parsed_json(const ParsedLine& line) {
  std::string text = to_json(line);
  EXPECT_EQ(text.find('\n'), std::string::npos) << text;
  try {
    return json::parse(text);
  } catch (const json::exception& e) {
    ADD_FAILURE() << "to_json is not valid JSON: " << e.what() << "\n" << text;
    return json();
  }
}

TEST(ParseTest, ToJsonOfStageLineHasTheSeedKeys) {
  json j =
      to_parsed_json(parsed("2026-01-04T19:30:28.456Z [T0_00] Stage: AGENT - Complete (13.2s)"));
  EXPECT_EQ(j, json::parse(R"({"timestamp":"2026-01-04T19:30:28.456Z","worker_id":"T0_00",
      "stage":"AGENT","status":"completed","duration":13.2,"message":""})"));
}

TEST(ParseTest, ToJsonDurationIsNullWhenAbsent) {
  json j = to_parsed_json(parsed("2026-01-04T19:30:15.234Z [T0_00] Stage: AGENT - Starting"));
  ASSERT_TRUE(j.contains("duration"));
  EXPECT_TRUE(j["duration"].is_null());
  EXPECT_EQ(j["status"], "starting");
  EXPECT_EQ(j.size(), 6u);
}

TEST(ParseTest, ToJsonOfRunLine) {
  json j = to_parsed_json(
      parsed("2026-01-04T19:30:35.890Z [T0_00] Stage: COMPLETE - All stages complete (20.7s)"));
  EXPECT_EQ(j, json::parse(R"({"timestamp":"2026-01-04T19:30:35.890Z","worker_id":"T0_00",
      "stage":"COMPLETE","status":"completed","duration":20.7,"message":"All stages complete"})"));
}

TEST(ParseTest, ToJsonOfLogLineHasLevelAndComponent) {
  json j =
      to_parsed_json(parsed("2026-01-04T19:30:28.460Z [gpu-1] WARNING worker: message key=value"));
  EXPECT_EQ(j, json::parse(R"({"timestamp":"2026-01-04T19:30:28.460Z","worker_id":"gpu-1",
      "level":"warning","component":"worker","message":"message key=value"})"));
}

TEST(ParseTest, ToJsonEscapesStringsAndReplacesInvalidUtf8) {
  ParsedLine line =
      parsed("2026-01-04T19:30:28.460Z [w\"1\xff] ERROR c\\o: say \"hi\"\t\x01\xC0\x80");
  json j = to_parsed_json(line);
  EXPECT_EQ(j["worker_id"], "w\"1\xEF\xBF\xBD");
  EXPECT_EQ(j["component"], "c\\o");
  EXPECT_THAT(j["message"].get<std::string>(), HasSubstr("say \"hi\"\t\x01"));
  EXPECT_THAT(j["message"].get<std::string>(), HasSubstr("\xEF\xBF\xBD"));
}

// --- Round trip: format_text then parse_line ---------------------------------------------

struct RoundTripCase {
  Event event;
  std::string expected_message;
};

TEST(ParseTest, FormatTextThenParseLineRoundTrips) {
  static const Field kFields[] = {{"tokens", std::int64_t{1247}}};
  auto stage = [](std::int64_t ts, std::string_view worker, std::string_view name, Status status,
                  std::optional<std::int64_t> elapsed = std::nullopt,
                  std::string_view message = {}) {
    return test::stage_event(name, status, elapsed, message, ts, worker);
  };
  auto run = [&](std::int64_t ts, Status status, std::int64_t elapsed, std::string_view message) {
    Event e = stage(ts, "T0_00", "COMPLETE", status, elapsed, message);
    e.kind = Kind::Run;
    return e;
  };
  auto log = [](std::int64_t ts, Level level, std::string_view worker, std::string_view component,
                std::string_view message) {
    Event e;
    e.ts_ns = ts;
    e.kind = Kind::Log;
    e.level = level;
    e.worker = worker;
    e.component = component;
    e.message = message;
    return e;
  };
  const std::int64_t t0 = test::FakeClock::kSeedStart;
  Event with_fields = stage(t0, "T0_00", "AGENT", Status::Completed, 13'222 * kMs);
  with_fields.fields = kFields;
  Event log_with_fields = log(t0, Level::Info, "T0_00", "worker", "claimed task");
  log_with_fields.fields = kFields;

  // Elapsed times avoid [999.5 ms, 999.95 ms), see FormatTest.SecondsRoundUpAcrossOneSecond.
  const std::vector<RoundTripCase> cases = {
      {stage(t0, "T0_00", "AGENT", Status::Starting), ""},
      {stage(t0 + 13'222 * kMs + 123'456, "T0_00", "AGENT", Status::Completed, 13'222 * kMs), ""},
      {stage(t0 + 1, "gpu-1", "JUDGE", Status::Completed, 42 * kMs + 400'000), ""},
      {stage(t0, "w.3", "JUDGE", Status::Completed, 999'400'000), ""},
      {stage(t0, "w.3", "JUDGE", Status::Completed, 999'950'000), ""},
      {stage(t0, "w.3", "JUDGE", Status::Completed, 1'049'999'999), ""},
      {stage(t0, "T0_01", "JUDGE", Status::Completed, 0), ""},
      {stage(t0, "T0_01", "JUDGE", Status::Completed, 3'600'040 * kMs), ""},
      {stage(t0, "T0_00", "JUDGE", Status::Failed, 6'666 * kMs, "timeout after 480000ms"),
       "timeout after 480000ms"},
      {stage(t0, "T0_00", "JUDGE", Status::Failed, 6'666 * kMs), ""},
      {stage(t0, "T0_00", "CLEANUP", Status::Skipped), ""},
      {stage(t0, "T0_00", "CLEANUP", Status::Skipped, std::nullopt, "dry run"), "dry run"},
      {stage(t0, "T0_00", "orchestrator_execution", Status::Running), ""},
      {stage(t0, "T0_00", "AGENT", Status::InProgress, 5 * kSec), ""},
      {stage(utc_ns(2028, 2, 29, 23, 59, 59, 999 * kMs), "T0_00", "AGENT", Status::Starting), ""},
      {stage(utc_ns(2025, 12, 31, 23, 59, 59, 999'999'999), "T0_00", "AGENT", Status::Starting),
       ""},
      {with_fields, "tokens=1247"},
      {run(t0, Status::Completed, 20'656 * kMs, {}), "All stages complete"},
      {run(t0, Status::Failed, 20'656 * kMs, "judge crashed"), "judge crashed"},
      {log(t0, Level::Warning, "gpu-1", "worker", "message"), "message"},
      {log(t0, Level::Trace, "t0", "app", "x"), "x"},
      {log(t0, Level::Debug, "t0", "app", "x"), "x"},
      {log(t0, Level::Error, "t0", "app", "failed: exit 1"), "failed: exit 1"},
      {log(t0, Level::Critical, "t0", "app", ""), ""},
      {log_with_fields, "claimed task tokens=1247"},
  };
  for (const auto& c : cases) {
    const Event& e = c.event;
    std::string text;
    ASSERT_TRUE(detail::format_text(e, text));
    ASSERT_TRUE(text.ends_with('\n'));
    text.pop_back();
    SCOPED_TRACE(text);
    std::string error;
    auto p = parse_line(text, &error);
    ASSERT_TRUE(p.has_value()) << error;
    EXPECT_EQ(p->ts_ns, e.ts_ns / kMs * kMs);
    std::string ts;
    detail::append_iso_timestamp(ts, e.ts_ns);
    EXPECT_EQ(p->timestamp, ts);
    EXPECT_EQ(p->worker, e.worker);
    EXPECT_EQ(p->message, c.expected_message);
    if (e.kind == Kind::Log) {
      EXPECT_EQ(p->kind, Kind::Log);
      EXPECT_EQ(p->level, e.level);
      EXPECT_EQ(p->component, e.component);
      continue;
    }
    EXPECT_EQ(p->kind, e.kind);
    EXPECT_EQ(p->stage, e.stage);
    EXPECT_EQ(p->status, e.status);
    ASSERT_EQ(p->duration.has_value(), e.elapsed_ns.has_value());
    if (e.elapsed_ns) {
      double seconds = static_cast<double>(*e.elapsed_ns) / 1e9;
      double tolerance = 0.05;  // One decimal, as seed 001's f"{elapsed:.1f}s" prints it.
      EXPECT_NEAR(*p->duration, seconds, tolerance + 1e-9);
    }
  }
}

// --- Robustness --------------------------------------------------------------------------

// A line as a JSON string, printable whatever bytes it holds.
std::string printable(const std::string& line) {
  return json(line).dump(-1, ' ', false, json::error_handler_t::replace);
}

TEST(ParseTest, SurvivesRandomAndMutatedLines) {
  const std::vector<std::string> seeds = {
      "2026-01-04T19:30:15.234Z [T0_00] Stage: AGENT - Starting",
      "2026-01-04T19:30:28.456Z [T0_00] Stage: AGENT - Complete (13.2s)",
      "2026-01-04T19:30:35.789Z [T0_00] Stage: JUDGE - Complete (0.042s)",
      "2026-01-04T19:30:35.890Z [T0_00] Stage: COMPLETE - All stages complete (20.7s)",
      "2026-01-04T19:30:35.789Z [T0_00] Stage: JUDGE - Failed (6.7s): timeout after 480000ms",
      "2026-01-04T19:30:30.678Z [T0_01] Stage: AGENT - Complete (15.4s)  # Slower!",
      "2026-01-04T19:30:15.234Z [w.3] Stage: CLEANUP - Skipped: dry run",
      "2026-01-04T19:30:28.460Z [gpu-1] WARNING worker: message key=value",
      "2026-01-04T19:30:28.460Z [T0_00] INFO worker: claimed task task=d5de16d7",
      "2028-02-29T23:59:59.999999999Z [x] ERROR a: b: c",
  };
  const std::string alphabet = std::string("[]:-(). s0123456789TZ\r\n\t\"\\AaCSF") +
                               std::string("\0\x7f\xff\xC0\x80\xE2\xED\xA0", 8);
  test::LineMutator mutator(20260104, alphabet);

  int accepted = 0, rejected_count = 0, failures = 0;
  for (int iteration = 0; iteration < 20000 && failures < 10; ++iteration) {
    std::string line = mutator.next(seeds);
    std::string error;
    auto p = parse_line(line, &error);
    if (p.has_value() != parse_line(line).has_value()) {
      ++failures;
      ADD_FAILURE() << "result depends on the error pointer: " << printable(line);
    }
    if (!p) {
      ++rejected_count;
      if (error.empty()) {
        ++failures;
        ADD_FAILURE() << "rejected without an error: " << printable(line);
      }
      continue;
    }
    ++accepted;
    std::string text = to_json(*p);
    try {
      json j = json::parse(text);
      bool ok = j.is_object() && j["timestamp"] == p->timestamp && j.contains("worker_id") &&
                j.contains("message") &&
                (p->kind == Kind::Log ? j.size() == 5 : j.size() == 6 && j.contains("duration"));
      if (!ok) {
        ++failures;
        ADD_FAILURE() << "unexpected JSON " << text;
      }
    } catch (const json::exception& e) {
      ++failures;
      ADD_FAILURE() << "invalid JSON from to_json: " << e.what() << "\n" << text;
    }
    if (parse_timestamp(p->timestamp) != p->ts_ns || p->worker.empty()) {
      ++failures;
      ADD_FAILURE() << "inconsistent parse of " << text;
    }
  }
  EXPECT_EQ(failures, 0);
  EXPECT_GT(accepted, 1000);
  EXPECT_GT(rejected_count, 1000);
}

}  // namespace
}  // namespace stagelog
