#include "stagelog/sinks/jsonl_sink.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "events.hpp"
#include "fake_clock.hpp"
#include "stagelog/error.hpp"
#include "temp_dir.hpp"

namespace stagelog {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using json = nlohmann::json;

constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD in UTF-8.

Event stage_end(std::string_view stage, std::int64_t elapsed_ns) {
  Event e = test::stage_event(stage, Status::Completed, elapsed_ns);
  e.run = "run-7";
  e.pid = 4242;
  e.host = "gpu-box";
  return e;
}

Event log_message(std::string_view message) {
  Event e;
  e.ts_ns = test::FakeClock::kSeedStart;
  e.kind = Kind::Log;
  e.level = Level::Warning;
  e.worker = "gpu-1";
  e.component = "worker";
  e.message = message;
  return e;
}

// Writes the events through a fresh sink and returns the file's lines, each parsed.
std::vector<json> write_and_parse(const std::vector<Event>& events,
                                  std::vector<std::string>* raw = nullptr) {
  test::TempDir dir;
  auto path = dir.path() / "run.jsonl";
  {
    JsonlSink sink(path);
    for (const auto& e : events) sink.write(e);
    sink.flush();
  }
  std::string content = test::read_file(path);
  EXPECT_TRUE(content.empty() || content.back() == '\n') << "last line is not terminated";
  auto lines = test::read_lines(path);
  std::vector<json> out;
  for (const auto& line : lines) {
    try {
      out.push_back(json::parse(line));
    } catch (const json::exception& e) {
      ADD_FAILURE() << "not valid JSON: " << e.what() << "\n" << line;
      out.emplace_back();
    }
  }
  if (raw != nullptr) *raw = lines;
  return out;
}

json write_one(const Event& e, std::string* raw = nullptr) {
  std::vector<std::string> lines;
  auto parsed = write_and_parse({e}, &lines);
  if (parsed.size() != 1) {
    ADD_FAILURE() << "expected one line, got " << parsed.size();
    return json();
  }
  if (raw != nullptr) *raw = lines[0];
  return parsed[0];
}

TEST(JsonlSinkTest, WritesOneJsonObjectPerLine) {
  std::vector<Event> events = {stage_end("AGENT", 13'200'000'000), log_message("hello"),
                               stage_end("JUDGE", 6'700'000'000)};
  auto lines = write_and_parse(events);
  ASSERT_EQ(lines.size(), 3u);
  for (const auto& j : lines) EXPECT_TRUE(j.is_object());
  EXPECT_EQ(lines[0]["stage"], "AGENT");
  EXPECT_EQ(lines[1]["message"], "hello");
  EXPECT_EQ(lines[2]["stage"], "JUDGE");
}

TEST(JsonlSinkTest, HasEveryDocumentedField) {
  Field fields[] = {{"tokens", std::int64_t{1247}}};
  Event e = stage_end("AGENT", 13'200'000'000);
  e.fields = fields;
  json j = write_one(e);
  for (const char* key : {"ts", "ts_ns", "kind", "level", "run", "worker", "component", "stage",
                          "status", "elapsed_ns", "message", "fields", "pid", "host"}) {
    EXPECT_TRUE(j.contains(key)) << key << " missing in " << j.dump();
  }
  EXPECT_EQ(j.size(), 14u) << j.dump();
  EXPECT_EQ(j["ts"], "2026-01-04T19:30:15.234Z");
  EXPECT_EQ(j["ts_ns"].get<std::int64_t>(), test::FakeClock::kSeedStart);
  EXPECT_EQ(j["kind"], "stage");
  EXPECT_EQ(j["level"], "info");
  EXPECT_EQ(j["run"], "run-7");
  EXPECT_EQ(j["worker"], "T0_00");
  EXPECT_EQ(j["component"], "app");
  EXPECT_EQ(j["stage"], "AGENT");
  EXPECT_EQ(j["status"], "completed");
  EXPECT_EQ(j["elapsed_ns"].get<std::int64_t>(), 13'200'000'000);
  EXPECT_EQ(j["message"], "");
  EXPECT_EQ(j["fields"], json({{"tokens", 1247}}));
  EXPECT_EQ(j["pid"].get<std::int64_t>(), 4242);
  EXPECT_EQ(j["host"], "gpu-box");
}

TEST(JsonlSinkTest, ElapsedIsNullWhenAbsentAndFieldsEmptyObject) {
  json j = write_one(log_message("m"));
  EXPECT_TRUE(j["elapsed_ns"].is_null());
  EXPECT_TRUE(j["fields"].is_object());
  EXPECT_TRUE(j["fields"].empty());
  EXPECT_EQ(j["kind"], "log");
  EXPECT_EQ(j["level"], "warning");
  EXPECT_EQ(j["status"], "");
}

TEST(JsonlSinkTest, KindAndStatusNames) {
  Event run_end = stage_end("COMPLETE", 20'700'000'000);
  run_end.kind = Kind::Run;
  Event failed = stage_end("JUDGE", 1);
  failed.status = Status::Failed;
  Event in_progress = stage_end("JUDGE", 1);
  in_progress.status = Status::InProgress;
  in_progress.kind = Kind::Heartbeat;
  auto lines = write_and_parse({run_end, failed, in_progress});
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[0]["kind"], "run");
  EXPECT_EQ(lines[0]["status"], "completed");
  EXPECT_EQ(lines[1]["status"], "failed");
  EXPECT_EQ(lines[2]["kind"], "heartbeat");
  EXPECT_EQ(lines[2]["status"], "in_progress");
}

TEST(JsonlSinkTest, FieldValuesKeepTheirTypes) {
  Field fields[] = {
      {"i", std::int64_t{-5}},
      {"imin", std::numeric_limits<std::int64_t>::min()},
      {"u", std::numeric_limits<std::uint64_t>::max()},
      {"d", 0.1},
      {"big", 1e300},
      {"b", true},
      {"s", std::string_view("qwen2.5:7b")},
  };
  Event e = log_message("m");
  e.fields = fields;
  json f = write_one(e)["fields"];
  EXPECT_EQ(f["i"].get<std::int64_t>(), -5);
  EXPECT_EQ(f["imin"].get<std::int64_t>(), std::numeric_limits<std::int64_t>::min());
  EXPECT_EQ(f["u"].get<std::uint64_t>(), std::numeric_limits<std::uint64_t>::max());
  EXPECT_EQ(f["d"].get<double>(), 0.1);  // Shortest round-trip form.
  EXPECT_EQ(f["big"].get<double>(), 1e300);
  EXPECT_EQ(f["b"], true);
  EXPECT_EQ(f["s"], "qwen2.5:7b");
}

TEST(JsonlSinkTest, NonFiniteDoublesBecomeNull) {
  Field fields[] = {
      {"nan", std::numeric_limits<double>::quiet_NaN()},
      {"inf", std::numeric_limits<double>::infinity()},
      {"ninf", -std::numeric_limits<double>::infinity()},
  };
  Event e = log_message("m");
  e.fields = fields;
  std::string raw;
  json f = write_one(e, &raw)["fields"];
  EXPECT_TRUE(f["nan"].is_null());
  EXPECT_TRUE(f["inf"].is_null());
  EXPECT_TRUE(f["ninf"].is_null());
  EXPECT_THAT(raw, HasSubstr(R"("fields":{"nan":null,"inf":null,"ninf":null})"));
}

TEST(JsonlSinkTest, EscapesQuotesBackslashesAndNewlines) {
  std::string raw;
  json j = write_one(log_message("say \"hi\"\\path\nnext\r\tend"), &raw);
  EXPECT_EQ(j["message"], "say \"hi\"\\path\nnext\r\tend");
  EXPECT_THAT(raw, HasSubstr(R"("message":"say \"hi\"\\path\nnext\r\tend")"));
}

TEST(JsonlSinkTest, EscapesNewlinesInStageNames) {
  std::string raw;
  json j = write_one(stage_end("load\nfile", 1'500'000'000), &raw);
  EXPECT_EQ(j["stage"], "load\nfile");
  EXPECT_THAT(raw, HasSubstr(R"("stage":"load\nfile")"));
}

TEST(JsonlSinkTest, EscapesControlCharactersAsUnicode) {
  std::string raw;
  json j = write_one(log_message(std::string_view("a\x01"
                                                  "b\x1f"
                                                  "c\0d\x1b",
                                                  8)),
                     &raw);
  EXPECT_EQ(j["message"], std::string("a\x01"
                                      "b\x1f"
                                      "c\0d\x1b",
                                      8));
  EXPECT_THAT(raw, HasSubstr(R"("message":"a\u0001b\u001fc\u0000d\u001b")"));
  j = write_one(log_message("\b\f"), &raw);
  EXPECT_EQ(j["message"], "\b\f");
}

TEST(JsonlSinkTest, EscapesKeysAndEveryStringField) {
  Field fields[] = {{"we\"ird\nkey", std::string_view("v\"al\n")}};
  Event e = stage_end("st\"age", 1);
  e.run = "r\nun";
  e.worker = "w\\1";
  e.component = "c\to";
  e.host = "h\"ost";
  e.message = "m\n";
  e.fields = fields;
  json j = write_one(e);
  EXPECT_EQ(j["run"], "r\nun");
  EXPECT_EQ(j["worker"], "w\\1");
  EXPECT_EQ(j["component"], "c\to");
  EXPECT_EQ(j["stage"], "st\"age");
  EXPECT_EQ(j["host"], "h\"ost");
  EXPECT_EQ(j["message"], "m\n");
  EXPECT_EQ(j["fields"]["we\"ird\nkey"], "v\"al\n");
}

TEST(JsonlSinkTest, KeepsValidMultibyteUtf8) {
  const std::string text = "héllo — 日本語 😀 \xF4\x8F\xBF\xBF";  // Up to U+10FFFF.
  std::string raw;
  json j = write_one(log_message(text), &raw);
  EXPECT_EQ(j["message"], text);
  EXPECT_THAT(raw, HasSubstr(text));
}

struct InvalidUtf8Case {
  const char* name;
  std::string bytes;
};

class JsonlSinkInvalidUtf8Test : public ::testing::TestWithParam<InvalidUtf8Case> {};

TEST_P(JsonlSinkInvalidUtf8Test, ReplacesInvalidBytesAndLineStillParses) {
  const std::string message = "before" + GetParam().bytes + "after";
  std::string raw;
  json j = write_one(log_message(message), &raw);
  ASSERT_TRUE(j["message"].is_string()) << raw;
  std::string got = j["message"];
  EXPECT_TRUE(got.starts_with("before")) << got;
  EXPECT_TRUE(got.ends_with("after")) << got;
  EXPECT_THAT(got, HasSubstr(kReplacement));
  // Only replacement characters between the two words: none of the bad bytes got through.
  std::string_view middle(got);
  middle.remove_prefix(6);
  middle.remove_suffix(5);
  while (middle.starts_with(kReplacement)) middle.remove_prefix(kReplacement.size());
  EXPECT_TRUE(middle.empty()) << "left over: " << json(std::string(middle)).dump();
  // The same applies to field values, keys and ids.
  Field fields[] = {{GetParam().bytes, std::string_view(GetParam().bytes)}};
  Event e = stage_end(GetParam().bytes, 1);
  e.worker = GetParam().bytes;
  e.fields = fields;
  json k = write_one(e, &raw);
  EXPECT_THAT(k["stage"].get<std::string>(), HasSubstr(kReplacement)) << raw;
  EXPECT_THAT(k["worker"].get<std::string>(), HasSubstr(kReplacement)) << raw;
  ASSERT_EQ(k["fields"].size(), 1u) << raw;
  EXPECT_THAT(k["fields"].begin().key(), HasSubstr(kReplacement)) << raw;
}

INSTANTIATE_TEST_SUITE_P(Bytes, JsonlSinkInvalidUtf8Test,
                         ::testing::Values(InvalidUtf8Case{"LoneFF", "\xff"},
                                           InvalidUtf8Case{"LoneContinuation", "\x80"},
                                           InvalidUtf8Case{"TruncatedThreeByte", "\xE2\x82"},
                                           InvalidUtf8Case{"TruncatedFourByte", "\xF0\x9F\x98"},
                                           InvalidUtf8Case{"OverlongNul", "\xC0\x80"},
                                           InvalidUtf8Case{"OverlongSlash", "\xE0\x80\xAF"},
                                           InvalidUtf8Case{"Surrogate", "\xED\xA0\x80"},
                                           InvalidUtf8Case{"AboveMaxCodePoint", "\xF4\x90\x80\x80"},
                                           InvalidUtf8Case{"F5Lead", "\xF5\x80\x80\x80"}),
                         [](const auto& info) { return std::string(info.param.name); });

TEST(JsonlSinkTest, InvalidUtf8AtEndOfStringStillParses) {
  std::string raw;
  json j = write_one(log_message("tail\xE2\x82"), &raw);
  ASSERT_TRUE(j["message"].is_string()) << raw;
  EXPECT_EQ(j["message"].get<std::string>().substr(0, 4), "tail");
  EXPECT_THAT(raw, HasSubstr(R"(,"fields":{})")) << "the closing quote was swallowed";
}

TEST(JsonlSinkTest, AppendsToExistingFile) {
  test::TempDir dir;
  auto path = dir.path() / "run.jsonl";
  {
    std::ofstream out(path);
    out << "{\"earlier\":true}\n";
  }
  {
    JsonlSink sink(path);
    sink.write(log_message("first"));
  }
  {
    JsonlSink sink(path);
    sink.write(log_message("second"));
  }
  auto lines = test::read_lines(path);
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[0], "{\"earlier\":true}");
  EXPECT_EQ(json::parse(lines[1])["message"], "first");
  EXPECT_EQ(json::parse(lines[2])["message"], "second");
}

TEST(JsonlSinkTest, FlushMakesLinesVisibleWhileOpen) {
  test::TempDir dir;
  auto path = dir.path() / "run.jsonl";
  JsonlSink sink(path);
  sink.write(log_message("one"));
  sink.flush();
  auto lines = test::read_lines(path);
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(json::parse(lines[0])["message"], "one");
}

TEST(JsonlSinkTest, ManyEventsAllArrive) {
  test::TempDir dir;
  auto path = dir.path() / "run.jsonl";
  const int n = 5000;  // More than the sink's buffer holds.
  {
    JsonlSink sink(path);
    for (int i = 0; i < n; ++i) {
      std::string message = "event " + std::to_string(i);
      sink.write(log_message(message));
    }
  }
  auto lines = test::read_lines(path);
  ASSERT_EQ(lines.size(), static_cast<std::size_t>(n));
  for (int i = 0; i < n; i += 997) {
    EXPECT_EQ(json::parse(lines[i])["message"], "event " + std::to_string(i));
  }
}

TEST(JsonlSinkTest, BadPathThrowsErrorNamingThePath) {
  test::TempDir dir;
  auto path = dir.path() / "no" / "such" / "dir" / "x.jsonl";
  try {
    JsonlSink sink(path);
    FAIL() << "no exception";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("cannot open " + path.string()));
    EXPECT_THAT(e.what(), HasSubstr("No such file or directory"));
  }
}

TEST(JsonlSinkTest, KeepsPathAndLevel) {
  test::TempDir dir;
  JsonlSink sink(dir.path() / "a.jsonl", Level::Warning);
  EXPECT_EQ(sink.path(), dir.path() / "a.jsonl");
  EXPECT_EQ(sink.level(), Level::Warning);
  JsonlSink all(dir.path() / "b.jsonl");
  EXPECT_EQ(all.level(), Level::Trace);
}

}  // namespace
}  // namespace stagelog
