// OwnedEvent, parse_json_event and parse_event: JSONL lines as JsonlSink writes them read back,
// text lines as events, copies that own their strings.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "events.hpp"
#include "fake_clock.hpp"
#include "format/format.hpp"
#include "line_mutator.hpp"
#include "stagelog/parse.hpp"

namespace stagelog {
namespace {

using test::FakeClock;
using ::testing::HasSubstr;
using ::testing::Not;
using json = nlohmann::json;

constexpr std::int64_t kMs = 1'000'000;
constexpr std::int64_t kSec = 1'000'000'000;
constexpr std::int64_t kInt64Max = std::numeric_limits<std::int64_t>::max();
constexpr std::int64_t kInt64Min = std::numeric_limits<std::int64_t>::min();

// format_json without its newline: one line of a JSONL file as a reader sees it.
std::string json_line(const Event& e) {
  std::string out;
  detail::format_json(e, out);
  out.pop_back();
  return out;
}

// parse_json_event that must succeed.
OwnedEvent parsed_json(std::string_view line) {
  std::string error;
  auto e = parse_json_event(line, &error);
  if (!e) {
    ADD_FAILURE() << "rejected: " << line << "\n  error: " << error;
    return {};
  }
  return std::move(*e);
}

// parse_json_event that must fail; returns the error.
std::string rejected_json(std::string_view line) {
  std::string error;
  auto e = parse_json_event(line, &error);
  EXPECT_FALSE(e.has_value()) << "accepted: " << line;
  EXPECT_FALSE(error.empty()) << "no error for: " << line;
  EXPECT_FALSE(parse_json_event(line).has_value()) << "accepted without an error pointer";
  return error;
}

// parse_event that must succeed.
OwnedEvent parsed_event(std::string_view line) {
  std::string error;
  auto e = parse_event(line, &error);
  if (!e) {
    ADD_FAILURE() << "rejected: " << line << "\n  error: " << error;
    return {};
  }
  return std::move(*e);
}

template <typename T>
T field_as(const OwnedEvent& e, std::string_view key) {
  const FieldValue* v = e.field(key);
  if (v == nullptr) {
    ADD_FAILURE() << "no field " << key;
    return T{};
  }
  if (!std::holds_alternative<T>(*v)) {
    ADD_FAILURE() << "field " << key << " holds alternative " << v->index();
    return T{};
  }
  return std::get<T>(*v);
}

// --- JSONL: reading ----------------------------------------------------------------------

TEST(EventParseTest, ReadsAJsonlSinkLine) {
  auto e = parsed_json(
      R"({"ts":"2026-01-04T19:30:28.456Z","ts_ns":1767555028456123456,"kind":"stage",)"
      R"("level":"warning","run":"item-07","worker":"T0_00","component":"app","stage":"AGENT",)"
      R"("status":"completed","elapsed_ns":13200000000,"message":"done",)"
      R"("fields":{"tokens":1247,"error_details":"x"},"pid":812,"host":"h1"})");
  EXPECT_EQ(e.ts_ns, 1767555028456123456);
  EXPECT_EQ(e.kind, Kind::Stage);
  EXPECT_EQ(e.level, Level::Warning);
  EXPECT_EQ(e.run, "item-07");
  EXPECT_EQ(e.worker, "T0_00");
  EXPECT_EQ(e.component, "app");
  EXPECT_EQ(e.stage, "AGENT");
  EXPECT_EQ(e.status, Status::Completed);
  EXPECT_EQ(e.elapsed_ns, 13'200'000'000);
  EXPECT_EQ(e.message, "done");
  EXPECT_EQ(e.pid, 812);
  EXPECT_EQ(e.host, "h1");
  ASSERT_EQ(e.fields().size(), 2u);
  EXPECT_EQ(e.fields()[0].key, "tokens");
  EXPECT_EQ(field_as<std::int64_t>(e, "tokens"), 1247);
  EXPECT_EQ(field_as<std::string_view>(e, "error_details"), "x");
  EXPECT_FALSE(e.fields_in_message);
}

TEST(EventParseTest, OnlyTimestampAndKindAreRequired) {
  auto e = parsed_json(R"({"ts":"2026-01-04T19:30:15.234Z","kind":"log"})");
  EXPECT_EQ(e.ts_ns, FakeClock::kSeedStart);
  EXPECT_EQ(e.kind, Kind::Log);
  EXPECT_EQ(e.level, Level::Info);
  EXPECT_EQ(e.status, Status::None);
  EXPECT_EQ(e.run, "");
  EXPECT_EQ(e.worker, "");
  EXPECT_EQ(e.component, "");
  EXPECT_EQ(e.stage, "");
  EXPECT_EQ(e.message, "");
  EXPECT_FALSE(e.elapsed_ns.has_value());
  EXPECT_EQ(e.pid, 0);
  EXPECT_EQ(e.host, "");
  EXPECT_TRUE(e.fields().empty());
  EXPECT_EQ(parsed_json(R"({"kind":"stage","ts_ns":5})").ts_ns, 5);
}

TEST(EventParseTest, TsNsWinsOverTs) {
  auto e = parsed_json(R"({"ts":"2026-01-04T19:30:15.234Z","ts_ns":42,"kind":"log"})");
  EXPECT_EQ(e.ts_ns, 42);
  // Either order; and "ts" is not even read when "ts_ns" is there.
  EXPECT_EQ(parsed_json(R"({"ts_ns":42,"ts":"2026-01-04T19:30:15.234Z","kind":"log"})").ts_ns, 42);
  EXPECT_EQ(parsed_json(R"({"ts_ns":42,"ts":"yesterday","kind":"log"})").ts_ns, 42);
}

TEST(EventParseTest, TsKeepsNanoseconds) {
  EXPECT_EQ(parsed_json(R"({"ts":"2026-01-04T19:30:15.234567891Z","kind":"log"})").ts_ns,
            FakeClock::kSeedStart + 567'891);
  EXPECT_EQ(parsed_json(R"({"ts":"2026-01-04T19:30:15Z","kind":"log"})").ts_ns,
            FakeClock::kSeedStart - 234 * kMs);
}

TEST(EventParseTest, NullMeansTheDefault) {
  auto e = parsed_json(
      R"({"ts":"2026-01-04T19:30:15.234Z","ts_ns":null,"kind":"stage","level":null,"run":null,)"
      R"("worker":null,"status":null,"elapsed_ns":null,"fields":null,"pid":null,"host":null})");
  EXPECT_EQ(e.ts_ns, FakeClock::kSeedStart);
  EXPECT_EQ(e.level, Level::Info);
  EXPECT_EQ(e.worker, "");
  EXPECT_EQ(e.status, Status::None);
  EXPECT_FALSE(e.elapsed_ns.has_value());
  EXPECT_TRUE(e.fields().empty());
  EXPECT_EQ(e.pid, 0);
}

TEST(EventParseTest, EmptyStatusIsNone) {
  EXPECT_EQ(parsed_json(R"({"ts_ns":1,"kind":"log","status":""})").status, Status::None);
}

TEST(EventParseTest, ReadsEveryKindLevelAndStatusName) {
  for (int k = 0; k <= static_cast<int>(Kind::Request); ++k) {
    auto kind = static_cast<Kind>(k);
    std::string line = R"({"ts_ns":1,"kind":")" + std::string(kind_name(kind)) + "\"}";
    EXPECT_EQ(parsed_json(line).kind, kind) << line;
  }
  for (int l = 0; l <= static_cast<int>(Level::Off); ++l) {
    auto level = static_cast<Level>(l);
    std::string line =
        R"({"ts_ns":1,"kind":"log","level":")" + std::string(level_json_name(level)) + "\"}";
    EXPECT_EQ(parsed_json(line).level, level) << line;
  }
  for (int s = 0; s <= static_cast<int>(Status::InProgress); ++s) {
    auto status = static_cast<Status>(s);
    std::string line =
        R"({"ts_ns":1,"kind":"stage","status":")" + std::string(status_name(status)) + "\"}";
    EXPECT_EQ(parsed_json(line).status, status) << line;
  }
  // The names are read as parse_kind, parse_level and parse_status read them.
  EXPECT_EQ(parsed_json(R"({"ts_ns":1,"kind":"STAGE","level":"WARN"})").level, Level::Warning);
}

TEST(EventParseTest, UnknownKeysAreIgnoredWhateverTheyHold) {
  auto e = parsed_json(
      R"({"x":[1,{"ts_ns":9,"fields":{"a":1}}],"ts_ns":7,"y":{"kind":"bogus","z":[[]]},)"
      R"("kind":"log","fields":{"k":1},"extra":"s","n":1.5})");
  EXPECT_EQ(e.ts_ns, 7);
  EXPECT_EQ(e.kind, Kind::Log);
  ASSERT_EQ(e.fields().size(), 1u);
  EXPECT_EQ(e.fields()[0].key, "k");
}

TEST(EventParseTest, FieldValuesKeepTheirJsonTypes) {
  auto e = parsed_json(
      R"({"ts_ns":1,"kind":"log","fields":{"int":1247,"neg":-3,"max":9223372036854775807,)"
      R"("min":-9223372036854775808,"big":18446744073709551615,"float":0.93,"exp":1e300,)"
      R"("t":true,"f":false,"s":"qwen2.5:7b","empty":"","nul":null,)"
      R"("arr":[1, "a\"b" ,{"k" : [true,null,-0.5e1]}],"obj":{},"earr":[]}})");
  EXPECT_EQ(field_as<std::int64_t>(e, "int"), 1247);
  EXPECT_EQ(field_as<std::int64_t>(e, "neg"), -3);
  EXPECT_EQ(field_as<std::int64_t>(e, "max"), kInt64Max);
  EXPECT_EQ(field_as<std::int64_t>(e, "min"), kInt64Min);
  EXPECT_EQ(field_as<std::uint64_t>(e, "big"), std::numeric_limits<std::uint64_t>::max());
  EXPECT_DOUBLE_EQ(field_as<double>(e, "float"), 0.93);
  EXPECT_DOUBLE_EQ(field_as<double>(e, "exp"), 1e300);
  EXPECT_EQ(field_as<bool>(e, "t"), true);
  EXPECT_EQ(field_as<bool>(e, "f"), false);
  EXPECT_EQ(field_as<std::string_view>(e, "s"), "qwen2.5:7b");
  EXPECT_EQ(field_as<std::string_view>(e, "empty"), "");
  // null, arrays and objects have no FieldValue of their own: they are kept as JSON text.
  EXPECT_EQ(field_as<std::string_view>(e, "nul"), "null");
  EXPECT_EQ(field_as<std::string_view>(e, "arr"), R"([1,"a\"b",{"k":[true,null,-0.5e1]}])");
  EXPECT_EQ(field_as<std::string_view>(e, "obj"), "{}");
  EXPECT_EQ(field_as<std::string_view>(e, "earr"), "[]");
  EXPECT_EQ(e.fields().size(), 15u);
}

TEST(EventParseTest, FieldsKeepTheirOrderAndRepeatedKeys) {
  auto e = parsed_json(R"({"ts_ns":1,"kind":"log","fields":{"z":1,"a":2,"m":3,"a":4}})");
  ASSERT_EQ(e.fields().size(), 4u);
  EXPECT_EQ(e.fields()[0].key, "z");
  EXPECT_EQ(e.fields()[1].key, "a");
  EXPECT_EQ(e.fields()[2].key, "m");
  EXPECT_EQ(e.fields()[3].key, "a");
  EXPECT_EQ(field_as<std::int64_t>(e, "a"), 2);  // field() finds the first.
  EXPECT_EQ(e.field("nope"), nullptr);
}

TEST(EventParseTest, DecodesEscapesAndUnicode) {
  auto e = parsed_json(
      R"({"ts_ns":1,"kind":"log","worker":"gpu-\u00e9","message":"a\"b\\c\nd\te\u0000f\ud83d\ude00",)"
      R"("stage":"ÉTAPE ✓ 日本","fields":{"k\u00e9y":"v\u2028"}})");
  EXPECT_EQ(e.worker, "gpu-\xC3\xA9");
  EXPECT_EQ(e.message, std::string("a\"b\\c\nd\te\0f\xF0\x9F\x98\x80", 15));
  EXPECT_EQ(e.stage, "ÉTAPE ✓ 日本");
  ASSERT_EQ(e.fields().size(), 1u);
  EXPECT_EQ(e.fields()[0].key, "k\xC3\xA9y");
  EXPECT_EQ(field_as<std::string_view>(e, "k\xC3\xA9y"), "v\xE2\x80\xA8");
}

TEST(EventParseTest, AcceptsWhitespaceAndCrLf) {
  EXPECT_EQ(parsed_json(" { \"ts_ns\" : 3 , \"kind\" : \"log\" } \r").ts_ns, 3);
  EXPECT_EQ(parsed_json("{\"ts_ns\":3,\"kind\":\"log\"}\n").ts_ns, 3);
}

// --- JSONL: round trips ------------------------------------------------------------------

TEST(EventParseTest, JsonlLinesRoundTrip) {
  static const Field kAllTypes[] = {
      {"tokens", std::int64_t{1247}},
      {"neg", std::int64_t{-42}},
      {"zero", std::int64_t{0}},
      {"max", kInt64Max},
      {"min", kInt64Min},
      {"big", std::uint64_t{18'446'744'073'709'551'615u}},
      {"gpu_util", 0.93},
      {"tiny", 5e-324},
      {"huge", 1.7976931348623157e308},
      {"neg_zero", -0.0},
      {"whole", 2.0},
      {"above_uint64", 18446744073709551616.0},
      {"ok", true},
      {"bad", false},
      {"model", std::string_view("qwen2.5:7b")},
      {"empty", std::string_view("")},
      {"quote\"key", std::string_view("line1\nline2\t\"q\" \\ \x01\x1f\x7f")},
      {"unicode", std::string_view("h\xC3\xA9llo \xE2\x9C\x93 \xF0\x9F\x98\x80 \xE2\x80\xA8")},
      {"nul", std::string_view("a\0b", 3)},
      {"tokens", std::int64_t{7}},  // A repeated key.
  };
  static const Field kOne[] = {{"error_details", std::string_view("x")}};
  const std::int64_t t0 = FakeClock::kSeedStart + 123'456;

  std::vector<Event> events;
  for (int k = 0; k <= static_cast<int>(Kind::Request); ++k) {
    for (int s = 0; s <= static_cast<int>(Status::InProgress); ++s) {
      Event e = test::stage_event("AGENT", static_cast<Status>(s), std::nullopt, {}, t0 + k + s);
      e.kind = static_cast<Kind>(k);
      if (s >= static_cast<int>(Status::Completed)) e.elapsed_ns = 13'200'000'000 + s;
      e.pid = 812;
      e.host = "h1";
      events.push_back(e);
    }
  }
  for (int l = 0; l <= static_cast<int>(Level::Off); ++l) {
    Event e;
    e.ts_ns = t0;
    e.level = static_cast<Level>(l);
    e.component = "worker";
    e.message = "claimed task";
    e.fields = kOne;
    events.push_back(e);
  }
  Event all = test::stage_event("JUDGE", Status::Failed, 6'700 * kMs, "timeout after 480000ms");
  all.run = "item-13";
  all.fields = kAllTypes;
  events.push_back(all);

  Event strings;  // Escapes, unicode, invalid UTF-8 (written as U+FFFD) and empty strings.
  strings.ts_ns = t0;
  strings.kind = Kind::Log;
  strings.run = "run \"7\"";
  strings.worker = "w\\1\xff";
  strings.component = "";
  strings.stage = "\xC3\xA9tape\n2";
  static constexpr char kMessage[] = "tab\there\r\n\0end \xE6\x97\xA5\xE6\x9C\xAC";
  strings.message = std::string_view(kMessage, sizeof kMessage - 1);
  strings.host = "h\x7f";
  events.push_back(strings);

  Event edges;  // Timestamps and times at the ends of their ranges; an empty event.
  edges.ts_ns = 0;
  events.push_back(edges);
  edges.ts_ns = -1'500 * kMs;  // Before 1970: "ts" is clamped, "ts_ns" wins.
  edges.elapsed_ns = 0;
  events.push_back(edges);
  edges.ts_ns = kInt64Max;
  edges.elapsed_ns = kInt64Max;
  edges.pid = kInt64Max;
  events.push_back(edges);
  edges.ts_ns = kInt64Min;
  edges.elapsed_ns = kInt64Min;
  edges.pid = -1;
  events.push_back(edges);

  for (const Event& e : events) {
    std::string line = json_line(e);
    SCOPED_TRACE(line);
    std::string error;
    auto back = parse_json_event(line, &error);
    ASSERT_TRUE(back.has_value()) << error;
    EXPECT_EQ(json_line(back->view()), line);
    EXPECT_EQ(back->ts_ns, e.ts_ns);
    EXPECT_EQ(back->kind, e.kind);
    EXPECT_EQ(back->level, e.level);
    EXPECT_EQ(back->status, e.status);
    EXPECT_EQ(back->elapsed_ns, e.elapsed_ns);
    EXPECT_EQ(back->pid, e.pid);
    EXPECT_EQ(back->fields().size(), e.fields.size());
    // With a newline, as read from a file by something that keeps it.
    EXPECT_TRUE(parse_json_event(line + "\n").has_value());
  }
}

TEST(EventParseTest, NonFiniteFieldsComeBackAsTheStringNull) {
  // JSON has no NaN or infinity: format_json writes null, and a null field is kept as the
  // text "null". This is the one field value that does not come back as it was written.
  static const Field kFields[] = {{"nan", std::numeric_limits<double>::quiet_NaN()},
                                  {"inf", std::numeric_limits<double>::infinity()}};
  Event e = test::stage_event("AGENT", Status::Completed, kSec);
  e.fields = kFields;
  std::string line = json_line(e);
  EXPECT_THAT(line, HasSubstr(R"("fields":{"nan":null,"inf":null})"));
  auto back = parsed_json(line);
  EXPECT_EQ(field_as<std::string_view>(back, "nan"), "null");
  EXPECT_EQ(field_as<std::string_view>(back, "inf"), "null");
}

TEST(EventParseTest, JsonlFromTheRecorderRoundTrips) {
  // Seed-example stage ends as the stage tests build them, then read back through parse_event.
  const std::int64_t t0 = FakeClock::kSeedStart;
  const Event events[] = {
      test::stage_event("AGENT", Status::Starting, std::nullopt, {}, t0, "T0_00"),
      test::stage_event("AGENT", Status::Completed, 13'222 * kMs, {}, t0 + 13'222 * kMs),
      test::stage_event("JUDGE", Status::Failed, 42 * kMs, "exit 1", t0 + 14 * kSec, "gpu-1"),
  };
  for (const Event& e : events) {
    std::string line = json_line(e);
    auto back = parsed_event(line);
    EXPECT_EQ(json_line(back.view()), line);
  }
}

// --- JSONL: errors -----------------------------------------------------------------------

TEST(EventParseTest, RejectsWhatIsNotJson) {
  EXPECT_THAT(rejected_json(""), HasSubstr("not valid JSON"));
  EXPECT_THAT(rejected_json("{"), HasSubstr("not valid JSON"));
  EXPECT_THAT(rejected_json(R"({"ts_ns":1,"kind":"log")"), HasSubstr("not valid JSON"));
  EXPECT_THAT(rejected_json(R"({"ts_ns":1,"kind":"log"} x)"), HasSubstr("not valid JSON"));
  EXPECT_THAT(rejected_json(R"({"ts_ns":1,"kind":"log",})"), HasSubstr("not valid JSON"));
  EXPECT_THAT(rejected_json(R"({'ts_ns':1})"), HasSubstr("not valid JSON"));
  EXPECT_THAT(rejected_json("{\"ts_ns\":1,\"kind\":\"l\xffg\"}"), HasSubstr("not valid JSON"));
  EXPECT_THAT(rejected_json(R"({"ts_ns":1,"kind":"log","n":NaN})"), HasSubstr("not valid JSON"));
  EXPECT_THAT(rejected_json(R"({"ts_ns":1,"kind":"log","n":1e400})"), HasSubstr("not valid JSON"));
  // nlohmann's exception id is left out.
  EXPECT_THAT(rejected_json("{"), Not(HasSubstr("json.exception")));
}

TEST(EventParseTest, RejectsWhatIsNotAnObject) {
  EXPECT_EQ(rejected_json("[1,2]"), "expected a JSON object");
  EXPECT_EQ(rejected_json("42"), "expected a JSON object");
  EXPECT_EQ(rejected_json(R"("ts")"), "expected a JSON object");
  EXPECT_EQ(rejected_json("null"), "expected a JSON object");
}

TEST(EventParseTest, RejectsMissingRequiredKeys) {
  EXPECT_EQ(rejected_json(R"({"kind":"log"})"), "missing \"ts\" or \"ts_ns\"");
  EXPECT_EQ(rejected_json(R"({"ts":null,"kind":"log"})"), "missing \"ts\" or \"ts_ns\"");
  EXPECT_EQ(rejected_json(R"({"ts":"2026-01-04T19:30:15.234Z"})"), "missing \"kind\"");
  EXPECT_EQ(rejected_json("{}"), "missing \"ts\" or \"ts_ns\"");
}

TEST(EventParseTest, RejectsUnknownNames) {
  EXPECT_THAT(rejected_json(R"({"ts_ns":1,"kind":"x"})"), HasSubstr("unknown kind \"x\""));
  EXPECT_THAT(rejected_json(R"({"ts_ns":1,"kind":""})"), HasSubstr("unknown kind \"\""));
  EXPECT_THAT(rejected_json(R"({"ts_ns":1,"kind":"log","level":"loud"})"),
              HasSubstr("unknown level \"loud\""));
  EXPECT_THAT(rejected_json(R"({"ts_ns":1,"kind":"log","status":"done"})"),
              HasSubstr("unknown status \"done\""));
  // The value is quoted as JSON, so the message stays on one line, and cut short.
  std::string error =
      rejected_json("{\"ts_ns\":1,\"kind\":\"a\\nb" + std::string(200, 'c') + "\"}");
  EXPECT_THAT(error, HasSubstr("unknown kind \"a\\nbccc"));
  EXPECT_THAT(error, HasSubstr("...\""));
  EXPECT_LT(error.size(), 200u);
}

TEST(EventParseTest, RejectsBadTimestamps) {
  EXPECT_THAT(rejected_json(R"({"ts":"2026-01-04 19:30:15","kind":"log"})"),
              HasSubstr("\"ts\" is not a UTC timestamp"));
  EXPECT_THAT(rejected_json(R"({"ts":"2026-02-31T00:00:00Z","kind":"log"})"),
              HasSubstr("\"2026-02-31T00:00:00Z\""));
  EXPECT_EQ(rejected_json(R"({"ts":12,"kind":"log"})"), "\"ts\" must be a string, not an integer");
  EXPECT_EQ(rejected_json(R"({"ts_ns":"12","kind":"log"})"),
            "\"ts_ns\" must be an integer, not a string");
  EXPECT_EQ(rejected_json(R"({"ts_ns":1.5,"kind":"log"})"),
            "\"ts_ns\" must be an integer, not a floating-point number");
  EXPECT_EQ(rejected_json(R"({"ts_ns":1e3,"kind":"log"})"),
            "\"ts_ns\" must be an integer, not a floating-point number");
  EXPECT_EQ(rejected_json(R"({"ts_ns":9223372036854775808,"kind":"log"})"),
            "\"ts_ns\" is out of range");
  EXPECT_THAT(rejected_json(R"({"ts_ns":99999999999999999999,"kind":"log"})"),
              HasSubstr("\"ts_ns\" must be an integer"));
}

TEST(EventParseTest, RejectsWrongTypes) {
  const std::string head = R"({"ts_ns":1,"kind":"log",)";
  EXPECT_EQ(rejected_json(head + R"("pid":"812"})"), "\"pid\" must be an integer, not a string");
  EXPECT_EQ(rejected_json(head + R"("pid":8.5})"),
            "\"pid\" must be an integer, not a floating-point number");
  EXPECT_EQ(rejected_json(head + R"("pid":true})"), "\"pid\" must be an integer, not a boolean");
  EXPECT_EQ(rejected_json(head + R"("elapsed_ns":"13.2s"})"),
            "\"elapsed_ns\" must be an integer, not a string");
  EXPECT_EQ(rejected_json(head + R"("elapsed_ns":18446744073709551615})"),
            "\"elapsed_ns\" is out of range");
  EXPECT_EQ(rejected_json(head + R"("worker":7})"), "\"worker\" must be a string, not an integer");
  EXPECT_EQ(rejected_json(head + R"("worker":["T0_00"]})"),
            "\"worker\" must be a string, not an array");
  EXPECT_EQ(rejected_json(head + R"("message":{"text":"x"}})"),
            "\"message\" must be a string, not an object");
  EXPECT_EQ(rejected_json(head + R"("run":false})"), "\"run\" must be a string, not a boolean");
  EXPECT_EQ(rejected_json(head + R"("component":1.5})"),
            "\"component\" must be a string, not a floating-point number");
  EXPECT_EQ(rejected_json(head + R"("stage":0})"), "\"stage\" must be a string, not an integer");
  EXPECT_EQ(rejected_json(head + R"("host":[]})"), "\"host\" must be a string, not an array");
  EXPECT_EQ(rejected_json(head + R"("level":3})"), "\"level\" must be a string, not an integer");
  EXPECT_EQ(rejected_json(head + R"("status":{}})"), "\"status\" must be a string, not an object");
  EXPECT_EQ(rejected_json(R"({"ts_ns":1,"kind":5})"), "\"kind\" must be a string, not an integer");
  EXPECT_EQ(rejected_json(head + R"("fields":[1]})"), "\"fields\" must be an object, not an array");
  EXPECT_EQ(rejected_json(head + R"("fields":"a=1"})"),
            "\"fields\" must be an object, not a string");
}

TEST(EventParseTest, LaterKeysWinAsInAnyJsonReader) {
  auto e = parsed_json(
      R"({"ts_ns":1,"kind":"log","worker":"a","worker":"b","fields":{"x":1},"fields":{"y":2}})");
  EXPECT_EQ(e.worker, "b");
  ASSERT_EQ(e.fields().size(), 1u);
  EXPECT_EQ(e.fields()[0].key, "y");
}

// --- parse_event: text lines -------------------------------------------------------------

TEST(EventParseTest, ParseEventReadsTextStageLines) {
  auto start = parsed_event("2026-01-04T19:30:15.234Z [T0_00] Stage: AGENT - Starting");
  EXPECT_EQ(start.ts_ns, FakeClock::kSeedStart);
  EXPECT_EQ(start.kind, Kind::Stage);
  EXPECT_EQ(start.worker, "T0_00");
  EXPECT_EQ(start.stage, "AGENT");
  EXPECT_EQ(start.status, Status::Starting);
  EXPECT_FALSE(start.elapsed_ns.has_value());
  EXPECT_EQ(start.level, Level::Info);

  auto end = parsed_event("2026-01-04T19:30:28.456Z [T0_00] Stage: AGENT - Complete (13.2s)");
  EXPECT_EQ(end.status, Status::Completed);
  EXPECT_EQ(end.elapsed_ns, 13'200'000'000);

  auto failed = parsed_event(
      "2026-01-04T19:30:35.789Z [gpu-1] Stage: JUDGE - Failed (0.042s): timeout after 480000ms");
  EXPECT_EQ(failed.status, Status::Failed);
  EXPECT_EQ(failed.elapsed_ns, 42'000'000);
  EXPECT_EQ(failed.message, "timeout after 480000ms");
}

TEST(EventParseTest, ParseEventReadsRunAndLogLines) {
  auto run = parsed_event(
      "2026-01-04T19:30:35.890Z [T0_00] Stage: COMPLETE - All stages complete (20.7s)");
  EXPECT_EQ(run.kind, Kind::Run);
  EXPECT_EQ(run.stage, "COMPLETE");
  EXPECT_EQ(run.status, Status::Completed);
  EXPECT_EQ(run.elapsed_ns, 20'700'000'000);

  auto log = parsed_event("2026-01-04T19:30:28.460Z [gpu-1] WARNING worker: slow key=value");
  EXPECT_EQ(log.kind, Kind::Log);
  EXPECT_EQ(log.level, Level::Warning);
  EXPECT_EQ(log.component, "worker");
  EXPECT_EQ(log.message, "slow key=value");
  EXPECT_EQ(log.status, Status::None);
}

TEST(EventParseTest, ParseEventRoundsDurationsToWholeNanoseconds) {
  const std::pair<const char*, std::int64_t> cases[] = {
      {"0.001", 1'000'000},     {"0.042", 42'000'000}, {"1.1", 1'100'000'000},
      {"13.2", 13'200'000'000}, {"0.0000000006", 1},   {"3600.3", 3'600'300'000'000},
  };
  for (const auto& [text, ns] : cases) {
    std::string line =
        std::string("2026-01-04T19:30:28.456Z [T0_00] Stage: AGENT - Complete (") + text + "s)";
    EXPECT_EQ(parsed_event(line).elapsed_ns, ns) << line;
  }
}

TEST(EventParseTest, TextLinesFormatBackToTheSameLine) {
  const char* lines[] = {
      "2026-01-04T19:30:15.234Z [T0_00] Stage: AGENT - Starting",
      "2026-01-04T19:30:28.456Z [T0_00] Stage: AGENT - Complete (13.2s)",
      "2026-01-04T19:30:28.456Z [T0_00] Stage: AGENT - Complete (0.4s)",
      "2026-01-04T19:30:35.789Z [T0_00] Stage: JUDGE - Failed (6.7s): timeout after 480000ms",
      "2026-01-04T19:30:35.890Z [T0_00] Stage: COMPLETE - All stages complete (20.7s)",
      "2026-01-04T19:30:35.890Z [T0_00] Stage: COMPLETE - Failed (20.7s): judge crashed",
      "2026-01-04T19:30:29.123Z [w.3] Stage: CLEANUP - Skipped: dry run",
      "2026-01-04T19:30:28.460Z [gpu-1] WARNING worker: message key=value",
  };
  for (const char* line : lines) {
    std::string text;
    ASSERT_TRUE(detail::format_text(parsed_event(line).view(), text)) << line;
    EXPECT_EQ(text, std::string(line) + "\n");
  }
}

TEST(EventParseTest, ParseEventReportsParseLineErrors) {
  const char* lines[] = {
      "",
      "hello world",
      "2026-13-04T19:30:28.456Z [T0_00] Stage: AGENT - Complete (13.2s)",
      "2026-01-04T19:30:29.123Z [T0_00] Stage: JUDGE - Finished",
      "2026-01-04T19:30:35.800Z [gpu-1] warning worker: lowercase level",
  };
  for (const char* line : lines) {
    std::string event_error, line_error;
    EXPECT_FALSE(parse_event(line, &event_error).has_value()) << line;
    EXPECT_FALSE(parse_line(line, &line_error).has_value()) << line;
    EXPECT_EQ(event_error, line_error);
    EXPECT_FALSE(event_error.empty());
  }
}

TEST(EventParseTest, ParseEventRejectsADurationBeyondTheInt64Range) {
  std::string error;
  EXPECT_FALSE(
      parse_event("2026-01-04T19:30:28.456Z [T0_00] Stage: AGENT - Complete "
                  "(99999999999999999999999.0s)",
                  &error));
  EXPECT_EQ(error, "duration out of range");
}

TEST(EventParseTest, ParseEventTellsTheFormatsApartByTheFirstCharacter) {
  EXPECT_EQ(parsed_event(R"(  {"ts_ns":1,"kind":"node"})").kind, Kind::Node);
  EXPECT_EQ(parsed_event("\t{\"ts_ns\":1,\"kind\":\"node\"}").kind, Kind::Node);
  std::string error;
  EXPECT_FALSE(parse_event("{not json", &error));
  EXPECT_THAT(error, HasSubstr("not valid JSON"));
  EXPECT_FALSE(parse_event(" 2026-01-04T19:30:15.234Z [T0_00] Stage: AGENT - Starting", &error));
  EXPECT_THAT(error, HasSubstr("timestamp"));
}

// --- OwnedEvent --------------------------------------------------------------------------

// An event whose strings all live in `storage`, freed by the caller when it likes.
Event event_over(const std::vector<std::string>& s, std::vector<Field>& fields) {
  fields = {{s[5], std::int64_t{1247}}, {s[6], std::string_view(s[7])}, {s[8], 0.5}};
  Event e;
  e.ts_ns = 11;
  e.kind = Kind::Stage;
  e.level = Level::Error;
  e.status = Status::Failed;
  e.run = s[0];
  e.worker = s[1];
  e.component = s[2];
  e.stage = s[3];
  e.message = s[4];
  e.elapsed_ns = 22;
  e.fields = fields;
  e.pid = 33;
  e.host = s[9];
  e.fields_in_message = true;
  return e;
}

// Long strings, so none of them fits in a std::string's own buffer.
std::vector<std::string> long_strings() {
  std::vector<std::string> s;
  for (const char* name : {"run", "worker", "component", "stage", "message", "tokens", "details",
                           "value", "ratio", "host"}) {
    s.push_back(std::string(name) + std::string(40, '.'));
  }
  return s;
}

void expect_the_long_event(const Event& e) {
  auto s = long_strings();
  EXPECT_EQ(e.ts_ns, 11);
  EXPECT_EQ(e.kind, Kind::Stage);
  EXPECT_EQ(e.level, Level::Error);
  EXPECT_EQ(e.status, Status::Failed);
  EXPECT_EQ(e.run, s[0]);
  EXPECT_EQ(e.worker, s[1]);
  EXPECT_EQ(e.component, s[2]);
  EXPECT_EQ(e.stage, s[3]);
  EXPECT_EQ(e.message, s[4]);
  EXPECT_EQ(e.elapsed_ns, 22);
  EXPECT_EQ(e.pid, 33);
  EXPECT_EQ(e.host, s[9]);
  EXPECT_TRUE(e.fields_in_message);
  ASSERT_EQ(e.fields.size(), 3u);
  EXPECT_EQ(e.fields[0].key, s[5]);
  EXPECT_EQ(std::get<std::int64_t>(e.fields[0].value), 1247);
  EXPECT_EQ(e.fields[1].key, s[6]);
  EXPECT_EQ(std::get<std::string_view>(e.fields[1].value), s[7]);
  EXPECT_EQ(e.fields[2].key, s[8]);
  EXPECT_EQ(std::get<double>(e.fields[2].value), 0.5);
}

TEST(OwnedEventTest, DeepCopiesAnEvent) {
  auto storage = std::make_unique<std::vector<std::string>>(long_strings());
  std::vector<Field> fields;
  OwnedEvent owned(event_over(*storage, fields));
  storage.reset();  // The event's views now dangle; the copy must not point there.
  fields.clear();
  expect_the_long_event(owned.view());
}

TEST(OwnedEventTest, CopyOutlivesTheOriginal) {
  auto storage = long_strings();
  std::vector<Field> fields;
  auto original = std::make_unique<OwnedEvent>(event_over(storage, fields));
  OwnedEvent copy(*original);
  original.reset();
  expect_the_long_event(copy.view());
  OwnedEvent copy_of_copy = copy;
  copy = OwnedEvent();
  expect_the_long_event(copy_of_copy.view());
}

TEST(OwnedEventTest, CopyAssignmentRebuildsTheViews) {
  auto storage = long_strings();
  std::vector<Field> fields;
  auto original = std::make_unique<OwnedEvent>(event_over(storage, fields));
  OwnedEvent target = parsed_json(R"({"ts_ns":1,"kind":"log","fields":{"old":"value"}})");
  target = *original;
  original.reset();
  expect_the_long_event(target.view());
  EXPECT_EQ(target.field("old"), nullptr);
}

TEST(OwnedEventTest, SelfAssignmentKeepsTheEvent) {
  auto storage = long_strings();
  std::vector<Field> fields;
  OwnedEvent e(event_over(storage, fields));
  const OwnedEvent& alias = e;
  e = alias;
  expect_the_long_event(e.view());
}

TEST(OwnedEventTest, MovedEventsKeepValidViews) {
  auto storage = long_strings();
  std::vector<Field> fields;
  std::vector<OwnedEvent> events;
  for (int i = 0; i < 100; ++i) {  // Reallocations move the elements.
    events.emplace_back(event_over(storage, fields));
    events.back().add_field("i", std::int64_t{i});
  }
  storage.clear();
  for (int i = 0; i < 100; ++i) {
    EXPECT_EQ(std::get<std::int64_t>(*events[static_cast<std::size_t>(i)].field("i")), i);
  }
  OwnedEvent moved = std::move(events[7]);
  events.clear();
  EXPECT_EQ(std::get<std::string_view>(*moved.field(long_strings()[6])), long_strings()[7]);
  OwnedEvent assigned;
  assigned = std::move(moved);
  EXPECT_EQ(assigned.fields().size(), 4u);
  EXPECT_EQ(std::get<std::int64_t>(*assigned.field("i")), 7);
}

TEST(OwnedEventTest, AddFieldCopiesKeyAndStringValue) {
  OwnedEvent e;
  {
    std::string key = "error_details" + std::string(30, '!');
    std::string value = "stack trace" + std::string(30, '?');
    e.add_field(key, std::string_view(value));
    e.add_field("n", std::uint64_t{5});
    key.assign(key.size(), 'X');
    value.assign(value.size(), 'Y');
  }
  for (int i = 0; i < 1000; ++i) e.add_field("k" + std::to_string(i), std::string_view("v"));
  std::string key = "error_details" + std::string(30, '!');
  ASSERT_NE(e.field(key), nullptr);
  EXPECT_EQ(std::get<std::string_view>(*e.field(key)), "stack trace" + std::string(30, '?'));
  EXPECT_EQ(std::get<std::uint64_t>(*e.field("n")), 5u);
  EXPECT_EQ(e.fields().size(), 1002u);
  EXPECT_EQ(e.view().fields.size(), 1002u);
  // A field copied from the event itself.
  e.add_field(e.fields()[0].key, e.fields()[0].value);
  EXPECT_EQ(e.fields().back().key, key);
}

// --- Robustness --------------------------------------------------------------------------

// A line as a JSON string, printable whatever bytes it holds.
std::string printable(const std::string& line) {
  return json(line).dump(-1, ' ', false, json::error_handler_t::replace);
}

// What an accepted JSON line must agree with: the same line read by nlohmann's DOM parser.
std::string disagreement(const std::string& line, const OwnedEvent& e) {
  if (!json::accept(line)) return "accepted invalid JSON";
  json j = json::parse(line);
  if (!j.is_object()) return "accepted a non-object";
  if (!j.contains("kind") || !j["kind"].is_string()) return "accepted without a kind";
  if (parse_kind(j["kind"].get<std::string>()) != e.kind) return "kind differs";
  if (j.contains("ts_ns") && j["ts_ns"].is_number_integer()) {
    if (j["ts_ns"].get<std::int64_t>() != e.ts_ns) return "ts_ns differs";
  } else if (!j.contains("ts") || !j["ts"].is_string() ||
             parse_timestamp(j["ts"].get<std::string>()) != e.ts_ns) {
    return "ts differs";
  }
  const std::pair<const char*, const std::string*> strings[] = {
      {"run", &e.run},     {"worker", &e.worker},   {"component", &e.component},
      {"stage", &e.stage}, {"message", &e.message}, {"host", &e.host}};
  for (const auto& [key, value] : strings) {
    if (j.contains(key) && j[key].is_string() && j[key].get<std::string>() != *value) {
      return std::string(key) + " differs";
    }
  }
  if (j.contains("fields") && j["fields"].is_object() && j["fields"].size() > e.fields().size()) {
    return "fields lost";
  }
  return {};
}

TEST(EventParseTest, SurvivesRandomAndMutatedLines) {
  static const Field kFields[] = {{"tokens", std::int64_t{1247}},
                                  {"gpu_util", 0.93},
                                  {"ok", true},
                                  {"details", std::string_view("a \"b\"\n\xC3\xA9")}};
  Event with_fields = test::stage_event("AGENT", Status::Completed, 13'200 * kMs);
  with_fields.fields = kFields;
  with_fields.run = "item-07";
  with_fields.pid = 812;
  with_fields.host = "h1";
  Event log;
  log.ts_ns = FakeClock::kSeedStart;
  log.level = Level::Warning;
  log.worker = "gpu-1";
  log.component = "worker";
  log.message = "slow";
  const std::vector<std::string> seeds = {
      json_line(with_fields),
      json_line(test::stage_event("JUDGE", Status::Failed, 42 * kMs, "timeout")),
      json_line(log),
      R"({"ts":"2026-01-04T19:30:15.234Z","kind":"stage","fields":{"a":[1,{"b":null}],"c":-0}})",
      "2026-01-04T19:30:15.234Z [T0_00] Stage: AGENT - Starting",
      "2026-01-04T19:30:28.456Z [T0_00] Stage: AGENT - Complete (13.2s)",
      "2026-01-04T19:30:35.890Z [T0_00] Stage: COMPLETE - All stages complete (20.7s)",
      "2026-01-04T19:30:35.789Z [T0_00] Stage: JUDGE - Failed (6.7s): timeout after 480000ms",
      "2026-01-04T19:30:28.460Z [gpu-1] WARNING worker: message key=value",
  };
  const std::string alphabet = std::string("{}[]\":,\\ 0123456789.-+eEtrufalsnTZ[]()") +
                               std::string("\0\x7f\xff\xC0\x80\xE2\xED\xA0\n\r\t", 11);
  test::LineMutator mutator(20260104, alphabet);

  int accepted_json = 0, accepted_text = 0, rejected = 0, failures = 0;
  for (int iteration = 0; iteration < 20000 && failures < 10; ++iteration) {
    std::string line = mutator.next(seeds, "{");
    auto fail = [&](std::string_view why, const std::string& more = {}) {
      ++failures;
      ADD_FAILURE() << why << ": " << printable(line) << "\n  " << more;
    };
    std::string error;
    auto e = parse_event(line, &error);
    if (e.has_value() != parse_event(line).has_value()) fail("result depends on the error pointer");
    if (!e) {
      ++rejected;
      if (error.empty()) fail("rejected without an error");
      continue;
    }
    auto first = line.find_first_not_of(" \t");
    bool is_json = first != std::string::npos && line[first] == '{';
    if (is_json) {
      ++accepted_json;
      if (std::string why = disagreement(line, *e); !why.empty()) fail(why);
    } else {
      ++accepted_text;
      auto p = parse_line(line);
      if (!p || p->ts_ns != e->ts_ns || p->worker != e->worker || p->kind != e->kind ||
          p->stage != e->stage || p->status != e->status ||
          p->duration.has_value() != e->elapsed_ns.has_value()) {
        fail("text event differs from parse_line");
      }
    }
    // Whatever was accepted is written and read back to the same line.
    std::string written = json_line(e->view());
    auto again = parse_json_event(written, &error);
    if (!again) {
      fail("written line rejected", written + "\n  " + error);
    } else if (json_line(again->view()) != written) {
      fail("written line changed", written + "\n  " + json_line(again->view()));
    }
  }
  EXPECT_EQ(failures, 0);
  EXPECT_GT(accepted_json, 500);
  EXPECT_GT(accepted_text, 500);
  EXPECT_GT(rejected, 2000);
}

}  // namespace
}  // namespace stagelog
