#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <limits>
#include <memory>
#include <nlohmann/json.hpp>
#include <ostream>
#include <random>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include "recording.hpp"
#include "seed_004.hpp"
#include "stagelog/parse.hpp"
#include "stagelog/server/execution_log.hpp"
#include "stagelog/sink.hpp"
#include "stagelog/stage.hpp"

namespace stagelog::server {

// For failure messages: an execution as its document.
void PrintTo(const Execution& execution, std::ostream* out) {
  *out << execution_document(execution);
}

namespace {

using namespace std::chrono_literals;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::StartsWith;
using Json = nlohmann::json;
using OrderedJson = nlohmann::ordered_json;

using test::kSeed004Document;

std::int64_t ts(std::string_view text) {
  auto ns = parse_timestamp(text);
  EXPECT_TRUE(ns.has_value()) << text;
  return ns.value_or(0);
}

Execution parse_ok(std::string_view json) {
  std::string error;
  auto execution = parse_execution(json, &error);
  EXPECT_TRUE(execution.has_value()) << error << "\n" << json;
  return execution.value_or(Execution{});
}

std::string parse_error(std::string_view json) {
  std::string error;
  auto execution = parse_execution(json, &error);
  EXPECT_FALSE(execution.has_value()) << json;
  return error;
}

std::vector<std::string> keys_of(const OrderedJson& object) {
  std::vector<std::string> keys;
  for (const auto& [key, value] : object.items()) keys.push_back(key);
  return keys;
}

// ---- The seed's example ----------------------------------------------------------------------

TEST(ExecutionTest, ParsesTheSeedDocumentFieldByField) {
  Execution e = parse_ok(kSeed004Document);
  EXPECT_EQ(e.tracking_id, "60B3RNTB");
  EXPECT_EQ(e.execution_id, "exec_1703123456789_xyz123abc");
  EXPECT_EQ(e.started_at_ns, ts("2024-01-15T10:30:00.000Z"));
  EXPECT_EQ(e.completed_at_ns, ts("2024-01-15T10:32:30.000Z"));
  EXPECT_EQ(e.duration_ms, 150000);
  EXPECT_EQ(e.metadata_json, R"({"tier":"comprehensive","company":"Acme Corp"})");
  ASSERT_EQ(e.steps.size(), 4u);
  EXPECT_EQ(e.steps[0].step, "initialization");
  EXPECT_EQ(e.steps[0].timestamp_ns, ts("2024-01-15T10:30:00.000Z"));
  EXPECT_EQ(e.steps[0].status, "completed");
  EXPECT_EQ(e.steps[0].message, "Started processing for Acme Corp (comprehensive tier)");
  EXPECT_EQ(e.steps[0].error_details, std::nullopt);
  EXPECT_EQ(e.steps[0].custom_json, "{}");
  EXPECT_EQ(e.steps[2].status, "in_progress");
  EXPECT_EQ(e.steps[3].status, "failed");
  EXPECT_EQ(e.steps[3].error_details,
            "Error: AI generation timeout after 480000ms\n at AIService.generateContent "
            "(worker.js:1234:56)");
}

TEST(ExecutionTest, SeedDocumentGivesTheSeedResponse) {
  Execution e = parse_ok(kSeed004Document);
  std::string response = execution_log_response(e);
  Json expected = Json::parse(R"json({
    "success": true,
    "data": {
      "tracking_id": "60B3RNTB",
      "execution_id": "exec_1703123456789_xyz123abc",
      "company": "Acme Corp",
      "tier": "comprehensive",
      "started_at": "2024-01-15T10:30:00.000Z",
      "completed_at": "2024-01-15T10:32:30.000Z",
      "duration_ms": 150000,
      "duration_readable": "2m 30s",
      "total_steps": 4,
      "final_status": "failed",
      "steps": [
        {"step": "initialization", "status": "completed",
         "timestamp": "2024-01-15T10:30:00.000Z",
         "message": "Started processing for Acme Corp (comprehensive tier)",
         "time_from_start": "+0ms", "error_details": null},
        {"step": "status_update", "status": "completed",
         "timestamp": "2024-01-15T10:30:01.000Z",
         "message": "Updated status to processing",
         "time_from_start": "+1.0s", "error_details": null},
        {"step": "orchestrator_execution", "status": "in_progress",
         "timestamp": "2024-01-15T10:30:02.000Z",
         "message": "Starting orchestrator execution...",
         "time_from_start": "+2.0s", "error_details": null},
        {"step": "error_handling", "status": "failed",
         "timestamp": "2024-01-15T10:32:30.000Z",
         "message": "Processing failed: AI generation timeout after 480000ms",
         "time_from_start": "+2m 30s",
         "error_details": "Error: AI generation timeout after 480000ms\n at AIService.generateContent (worker.js:1234:56)"}
      ]
    }
  })json");
  EXPECT_EQ(Json::parse(response), expected) << response;
}

TEST(ExecutionTest, ResponseKeysComeInThePagesFunctionsOrder) {
  auto response = OrderedJson::parse(execution_log_response(parse_ok(kSeed004Document)));
  EXPECT_THAT(keys_of(response), ElementsAre("success", "data"));
  EXPECT_THAT(
      keys_of(response["data"]),
      ElementsAre("tracking_id", "execution_id", "company", "tier", "started_at", "completed_at",
                  "duration_ms", "duration_readable", "total_steps", "final_status", "steps"));
  for (const auto& step : response["data"]["steps"]) {
    EXPECT_THAT(keys_of(step), ElementsAre("step", "status", "timestamp", "message",
                                           "time_from_start", "error_details"));
  }
}

TEST(ExecutionTest, ResponseIsOneLineOfJson) {
  std::string response = execution_log_response(parse_ok(kSeed004Document));
  EXPECT_EQ(response.find('\n'), std::string::npos);
  EXPECT_THAT(response, StartsWith(R"({"success":true,"data":{"tracking_id":"60B3RNTB",)"));
}

TEST(ExecutionTest, MissingCompletionIsNullInTheResponse) {
  Execution e = parse_ok(R"({"tracking_id":"T1","execution_id":"exec_1_abc",
    "started_at":"2024-01-15T10:30:00.000Z","steps":[{"step":"initialization",
    "timestamp":"2024-01-15T10:30:00.500Z","status":"in_progress","message":"m"}]})");
  EXPECT_EQ(e.completed_at_ns, std::nullopt);
  EXPECT_EQ(e.duration_ms, std::nullopt);
  Json data = Json::parse(execution_log_response(e))["data"];
  EXPECT_TRUE(data["completed_at"].is_null());
  EXPECT_TRUE(data["duration_ms"].is_null());
  EXPECT_TRUE(data["duration_readable"].is_null());
  EXPECT_EQ(data["final_status"], "in_progress");
  EXPECT_EQ(data["steps"][0]["time_from_start"], "+500ms");
}

TEST(ExecutionTest, NullCompletionFieldsAreAbsent) {
  Execution e = parse_ok(R"({"tracking_id":"T1","execution_id":"x","started_at":
    "2024-01-15T10:30:00.000Z","completed_at":null,"duration_ms":null,"steps":[]})");
  EXPECT_EQ(e.completed_at_ns, std::nullopt);
  EXPECT_EQ(e.duration_ms, std::nullopt);
  Json data = Json::parse(execution_log_response(e))["data"];
  EXPECT_EQ(data["total_steps"], 0);
  EXPECT_EQ(data["final_status"], "unknown");
  EXPECT_EQ(data["steps"], Json::array());
}

TEST(ExecutionTest, EmptyOrNullErrorDetailsIsNullInTheResponse) {
  Execution e = parse_ok(R"({"tracking_id":"T","execution_id":"x","steps":[
    {"step":"a","timestamp":"2024-01-15T10:30:00.000Z","status":"failed","error_details":""},
    {"step":"b","timestamp":"2024-01-15T10:30:00.000Z","status":"failed","error_details":null}]})");
  EXPECT_EQ(e.steps[0].error_details, "");
  EXPECT_EQ(e.steps[1].error_details, std::nullopt);
  Json data = Json::parse(execution_log_response(e))["data"];
  EXPECT_TRUE(data["steps"][0]["error_details"].is_null());
  EXPECT_TRUE(data["steps"][1]["error_details"].is_null());
}

// ---- Verbatim documents ----------------------------------------------------------------------

TEST(ExecutionTest, KeysMayComeInAnyOrder) {
  Execution e = parse_ok(R"({"steps":[{"message":"m","status":"completed",
    "timestamp":"2024-01-15T10:30:00.000Z","step":"initialization"}],"company":"Acme Corp",
    "duration_ms":150000,"execution_id":"exec_1_a","tracking_id":"60B3RNTB",
    "started_at":"2024-01-15T10:30:00.000Z"})");
  EXPECT_EQ(e.tracking_id, "60B3RNTB");
  EXPECT_EQ(e.execution_id, "exec_1_a");
  EXPECT_EQ(e.duration_ms, 150000);
  EXPECT_EQ(e.metadata_json, R"({"company":"Acme Corp"})");
  ASSERT_EQ(e.steps.size(), 1u);
  EXPECT_EQ(e.steps[0].step, "initialization");
  EXPECT_EQ(e.steps[0].message, "m");
}

TEST(ExecutionTest, KeepsUnknownKeysAsMetadataAndCustomFieldsInDocumentOrder) {
  // The seed's "Custom Error Handling" and "Error Context" steps.
  Execution e = parse_ok(R"({"tracking_id":"T","zeta":1,"execution_id":"x","alpha":{"b":[1,2]},
    "started_at":"2024-01-15T10:30:00.000Z","mid":null,"steps":[
    {"step":"complex_operation","timestamp":"2024-01-15T10:30:00.000Z","status":"failed",
     "message":"Complex operation failed: boom","error_details":"Error: boom\n at x",
     "retry_attempt":2,"operation_params":{"depth":3,"mode":"fast"}},
    {"step":"operation_name","status":"failed","message":"Clear description: e",
     "error_details":"stack","error_code":"E_TIMEOUT","retry_possible":true,
     "timestamp":"2024-01-15T10:30:01.000Z"}]})");
  EXPECT_EQ(e.metadata_json, R"({"zeta":1,"alpha":{"b":[1,2]},"mid":null})");
  EXPECT_EQ(e.steps[0].custom_json,
            R"({"retry_attempt":2,"operation_params":{"depth":3,"mode":"fast"}})");
  EXPECT_EQ(e.steps[1].custom_json, R"({"error_code":"E_TIMEOUT","retry_possible":true})");
  // The document keeps them; the response has the metadata but only the seed's step keys.
  auto doc = OrderedJson::parse(execution_document(e));
  EXPECT_THAT(keys_of(doc), ElementsAre("tracking_id", "execution_id", "zeta", "alpha", "mid",
                                        "started_at", "steps"));
  EXPECT_THAT(keys_of(doc["steps"][0]),
              ElementsAre("step", "timestamp", "status", "message", "error_details",
                          "retry_attempt", "operation_params"));
  auto data = OrderedJson::parse(execution_log_response(e))["data"];
  EXPECT_THAT(keys_of(data),
              ElementsAre("tracking_id", "execution_id", "zeta", "alpha", "mid", "started_at",
                          "completed_at", "duration_ms", "duration_readable", "total_steps",
                          "final_status", "steps"));
  EXPECT_EQ(data["alpha"], OrderedJson::parse(R"({"b":[1,2]})"));
  EXPECT_FALSE(data["steps"][0].contains("retry_attempt"));
}

TEST(ExecutionTest, MetadataNamedLikeAComputedFieldLosesToItInTheResponse) {
  Execution e = parse_ok(R"({"tracking_id":"T","execution_id":"x","final_status":"bogus",
    "total_steps":99,"duration_readable":"soon","steps":[{"step":"a","status":"skipped",
    "timestamp":"2024-01-15T10:30:00.000Z"}]})");
  auto data = OrderedJson::parse(execution_log_response(e))["data"];
  EXPECT_EQ(data["final_status"], "skipped");
  EXPECT_EQ(data["total_steps"], 1);
  EXPECT_TRUE(data["duration_readable"].is_null());
  // ... and keeps it in the document.
  EXPECT_EQ(parse_ok(execution_document(e)), e);
}

TEST(ExecutionTest, DefaultsStartedAtExecutionIdAndMessage) {
  Execution e = parse_ok(R"({"tracking_id":"T","steps":[{"step":"a","status":"completed",
    "timestamp":"2024-01-15T10:30:05.000Z"}]})");
  EXPECT_EQ(e.started_at_ns, ts("2024-01-15T10:30:05.000Z"));
  EXPECT_TRUE(std::regex_match(e.execution_id, std::regex("exec_[0-9]+_[0-9a-z]{9}")))
      << e.execution_id;
  EXPECT_EQ(e.steps[0].message, "");
}

TEST(ExecutionTest, KeepsTimestampsToTheMillisecond) {
  Execution e = parse_ok(R"({"tracking_id":"T","execution_id":"x",
    "started_at":"2024-01-15T10:30:00.123456789Z","steps":[{"step":"a","status":"completed",
    "timestamp":"2024-01-15T10:30:00.9Z"}]})");
  EXPECT_EQ(e.started_at_ns, ts("2024-01-15T10:30:00.123Z"));
  EXPECT_EQ(e.steps[0].timestamp_ns, ts("2024-01-15T10:30:00.900Z"));
  auto doc = Json::parse(execution_document(e));
  EXPECT_EQ(doc["started_at"], "2024-01-15T10:30:00.123Z");
  EXPECT_EQ(doc["steps"][0]["timestamp"], "2024-01-15T10:30:00.900Z");
}

TEST(ExecutionTest, TrackingIdsAreOpaque) {
  const std::vector<std::string> ids = {
      "../../etc/passwd",          "a/b",         "..", "日本語-ü", "a b\tc", "%2F?#&",
      std::string("nul\0byte", 8), "\"quoted\"\\"};
  for (const std::string& id : ids) {
    Execution e;
    e.tracking_id = id;
    e.execution_id = "exec_1_abcdefghi";
    Execution back = parse_ok(execution_document(e));
    EXPECT_EQ(back, e);
    EXPECT_EQ(Json::parse(execution_log_response(e))["data"]["tracking_id"], id);
  }
}

// ---- Round trip ------------------------------------------------------------------------------

TEST(ExecutionTest, DocumentRoundTrips) {
  Execution e = parse_ok(kSeed004Document);
  std::string doc = execution_document(e);
  EXPECT_EQ(parse_ok(doc), e);
  EXPECT_EQ(execution_document(parse_ok(doc)), doc);
  // The seed's document comes back as it went in (same keys, same values).
  EXPECT_EQ(Json::parse(doc), Json::parse(kSeed004Document));
  EXPECT_THAT(keys_of(OrderedJson::parse(doc)),
              ElementsAre("tracking_id", "execution_id", "tier", "company", "started_at",
                          "completed_at", "duration_ms", "steps"));
}

TEST(ExecutionTest, BuiltExecutionRoundTrips) {
  Execution e;
  e.tracking_id = "T";
  e.execution_id = "";
  e.started_at_ns = ts("2024-01-15T10:30:00.000Z");
  e.completed_at_ns = ts("2024-01-15T10:30:00.000Z");
  e.duration_ms = 0;
  // As parse_execution keeps them: compact, in nlohmann's spelling.
  e.metadata_json =
      OrderedJson::parse(R"({"n":-0.0,"big":18446744073709551615,"f":1.5e300,"s":"\u0001"})")
          .dump();
  Step s;
  s.step = "x";
  s.status = "skipped";
  s.timestamp_ns = ts("2024-01-15T10:30:00.001Z");
  s.message = "line1\nline2 \"q\" \\";
  s.error_details = "";
  s.custom_json = R"({"a":[{"b":null}]})";  // Already compact.
  e.steps.push_back(s);
  EXPECT_EQ(parse_ok(execution_document(e)), e);
}

// ---- Bad input -------------------------------------------------------------------------------

struct BadCase {
  std::string json;
  std::string error;  // A part of the expected message.
};

std::string step_doc(const std::string& step) {
  return R"({"tracking_id":"T","execution_id":"x","started_at":"2024-01-15T10:30:00.000Z",)"
         R"("steps":[)" +
         step + "]}";
}
const std::string kGoodStep =
    R"({"step":"a","timestamp":"2024-01-15T10:30:00.000Z","status":"completed","message":"m"})";

TEST(ExecutionTest, RejectsBadInputNamingTheKey) {
  const std::string top = R"("execution_id":"x","started_at":"2024-01-15T10:30:00.000Z")";
  std::vector<BadCase> cases = {
      {"", "not valid JSON"},
      {"not json", "not valid JSON"},
      {"{", "not valid JSON"},
      {R"({"tracking_id":"T","steps":[]} x)", "not valid JSON"},
      {"[]", "expected a JSON object, got an array"},
      {"42", "expected a JSON object, got a number"},
      {"null", "expected a JSON object, got null"},
      {R"({"steps":[]})", "tracking_id: missing"},
      {R"({"tracking_id":"","steps":[]})", "tracking_id: empty"},
      {R"({"tracking_id":5,"steps":[]})", "tracking_id: expected a string, got a number"},
      {R"({"tracking_id":null,"steps":[]})", "tracking_id: expected a string, got null"},
      {R"({"tracking_id":["a"],"steps":[]})", "tracking_id: expected a string, got an array"},
      {"{\"tracking_id\":\"T\"," + top + "}", "steps: missing"},
      {"{\"tracking_id\":\"T\"," + top + ",\"steps\":{}}",
       "steps: expected an array, got an object"},
      {"{\"tracking_id\":\"T\"," + top + ",\"steps\":\"[]\"}",
       "steps: expected an array, got a string"},
      {R"({"tracking_id":"T","execution_id":5,"steps":[]})", "execution_id: expected a string"},
      {R"({"tracking_id":"T","steps":[]})", "started_at: missing, and no step"},
      {step_doc("1"), "steps[0]: expected an object, got a number"},
      {step_doc(kGoodStep + ",[]"), "steps[1]: expected an object, got an array"},
      {step_doc(R"({"timestamp":"2024-01-15T10:30:00.000Z","status":"completed"})"),
       "steps[0]: missing \"step\""},
      {step_doc(R"({"step":"","timestamp":"2024-01-15T10:30:00.000Z","status":"completed"})"),
       "steps[0].step: empty step name"},
      {step_doc(R"({"step":7,"timestamp":"2024-01-15T10:30:00.000Z","status":"completed"})"),
       "steps[0].step: expected a string, got a number"},
      {step_doc(R"({"step":"a","status":"completed"})"), "steps[0]: missing \"timestamp\""},
      {step_doc(R"({"step":"a","timestamp":"2024-01-15T10:30:00.000Z"})"),
       "steps[0]: missing \"status\""},
      {step_doc(kGoodStep + "," + kGoodStep +
                R"(,{"step":"a","timestamp":"2024-01-15T10:30:00.000Z","status":"done"})"),
       "steps[2].status: unknown status \"done\""},
      {step_doc(R"({"step":"a","timestamp":"2024-01-15T10:30:00.000Z","status":"Completed"})"),
       "steps[0].status: unknown status \"Completed\""},
      {step_doc(R"({"step":"a","timestamp":"2024-01-15T10:30:00.000Z","status":null})"),
       "steps[0].status: expected a string, got null"},
      {step_doc(R"({"step":"a","timestamp":"yesterday","status":"completed"})"),
       "steps[0].timestamp: not a UTC timestamp like \"2024-01-15T10:30:00.000Z\": \"yesterday\""},
      {step_doc(R"({"step":"a","timestamp":"2024-01-15T10:30:00.000+01:00","status":"completed"})"),
       "steps[0].timestamp: not a UTC timestamp"},
      {step_doc(R"({"step":"a","timestamp":"2024-02-30T10:30:00.000Z","status":"completed"})"),
       "steps[0].timestamp: not a UTC timestamp"},
      {step_doc(R"({"step":"a","timestamp":1705314600000,"status":"completed"})"),
       "steps[0].timestamp: expected a UTC timestamp string"},
      {step_doc(R"({"step":"a","timestamp":"2024-01-15T10:30:00.000Z","status":"failed",)"
                R"("error_details":{"stack":"x"}})"),
       "steps[0].error_details: expected a string or null, got an object"},
      {step_doc(R"({"step":"a","timestamp":"2024-01-15T10:30:00.000Z","status":"failed",)"
                R"("message":5})"),
       "steps[0].message: expected a string or null, got a number"},
      {R"({"tracking_id":"T","started_at":"2024-01-15 10:30:00","steps":[]})",
       "started_at: not a UTC timestamp"},
      {R"({"tracking_id":"T","started_at":"1969-12-31T23:59:59.000Z","steps":[]})",
       "started_at: before 1970-01-01"},
      {"{\"tracking_id\":\"T\"," + top + ",\"completed_at\":\"soon\",\"steps\":[]}",
       "completed_at: not a UTC timestamp"},
      {"{\"tracking_id\":\"T\"," + top + ",\"completed_at\":0,\"steps\":[]}",
       "completed_at: expected a UTC timestamp string"},
      {"{\"tracking_id\":\"T\"," + top + ",\"duration_ms\":-1,\"steps\":[]}",
       "duration_ms: expected a non-negative integer, got -1"},
      {"{\"tracking_id\":\"T\"," + top + ",\"duration_ms\":1.5,\"steps\":[]}",
       "duration_ms: expected a non-negative integer, got 1.5"},
      {"{\"tracking_id\":\"T\"," + top + ",\"duration_ms\":\"150000\",\"steps\":[]}",
       "duration_ms: expected a non-negative integer, got a string"},
      {"{\"tracking_id\":\"T\"," + top + ",\"duration_ms\":true,\"steps\":[]}",
       "duration_ms: expected a non-negative integer, got a boolean"},
      {"{\"tracking_id\":\"T\"," + top + ",\"duration_ms\":9223372036854775808,\"steps\":[]}",
       "duration_ms: too large"},
      {"{\"tracking_id\":\"T\"," + top + ",\"duration_ms\":1e30,\"steps\":[]}",
       "duration_ms: expected a non-negative integer"},
      {"{\"tracking_id\":\"T\xff\",\"steps\":[]}", "not valid JSON at tracking_id:"},
      {step_doc("{\"step\":\"a\",\"message\":\"bad \xc3\x28 utf8\"}"),
       "not valid JSON at steps[0].message:"},
      {"{\"tracking_id\":\"T\",\"k\xe2\x82\":1,\"steps\":[]}", "not valid JSON"},
      {R"({"tracking_id":"T","tracking_id":"U","steps":[]})", "duplicate key \"tracking_id\""},
      {step_doc(R"({"step":"a","status":"completed","status":"failed"})"),
       "steps[0]: duplicate key \"status\""},
      {R"({"tracking_id":"T","steps":[],"deep":)" + std::string(100, '[') + std::string(100, ']') +
           "}",
       "nested deeper than 64 levels"},
  };
  for (const BadCase& c : cases) {
    std::string error = parse_error(c.json);
    EXPECT_THAT(error, HasSubstr(c.error)) << c.json;
    // The reason is printable: valid UTF-8 JSON when quoted.
    EXPECT_TRUE(Json::accept(Json(error).dump())) << error;
  }
}

TEST(ExecutionTest, RejectsDeepNestingByName) {
  std::string deep = R"({"tracking_id":"T","steps":[],"deep":)" + std::string(100000, '[') +
                     std::string(100000, ']') + "}";
  EXPECT_THAT(parse_error(deep), HasSubstr("nested deeper than 64 levels"));
  std::string error = parse_error(deep);
  EXPECT_THAT(error, StartsWith("deep[0][0]"));
}

TEST(ExecutionTest, InvalidUtf8MessageIsValidUtf8) {
  std::string error = parse_error("{\"tracking_id\":\"\xff\xfe\",\"steps\":[]}");
  EXPECT_THAT(error, HasSubstr("ill-formed UTF-8"));
  EXPECT_TRUE(Json::accept(Json(error).dump()));
}

TEST(ExecutionTest, WorksWithoutAnErrorString) {
  EXPECT_FALSE(parse_execution("nope").has_value());
  EXPECT_TRUE(parse_execution(kSeed004Document).has_value());
}

// ---- Durations -------------------------------------------------------------------------------

TEST(ExecutionTest, ReadableDurationRoundsAtEachFormsPrecision) {
  EXPECT_EQ(readable_duration(0), "0ms");
  EXPECT_EQ(readable_duration(850), "850ms");
  EXPECT_EQ(readable_duration(999), "999ms");
  EXPECT_EQ(readable_duration(1000), "1.0s");
  EXPECT_EQ(readable_duration(1049), "1.0s");
  EXPECT_EQ(readable_duration(1050), "1.1s");
  EXPECT_EQ(readable_duration(12300), "12.3s");
  EXPECT_EQ(readable_duration(59949), "59.9s");
  EXPECT_EQ(readable_duration(59950), "1m 0s");
  EXPECT_EQ(readable_duration(60000), "1m 0s");
  EXPECT_EQ(readable_duration(60499), "1m 0s");
  EXPECT_EQ(readable_duration(60500), "1m 1s");
  EXPECT_EQ(readable_duration(150000), "2m 30s");
  EXPECT_EQ(readable_duration(3599499), "59m 59s");
  EXPECT_EQ(readable_duration(3599500), "1h 0m 0s");
  EXPECT_EQ(readable_duration(3599999), "1h 0m 0s");
  EXPECT_EQ(readable_duration(3600000), "1h 0m 0s");
  EXPECT_EQ(readable_duration(3725000), "1h 2m 5s");
  EXPECT_EQ(readable_duration(90061000), "25h 1m 1s");
  EXPECT_EQ(readable_duration(-1200), "-1.2s");
  EXPECT_EQ(readable_duration(std::numeric_limits<std::int64_t>::max()), "2562047788015h 12m 56s");
  EXPECT_EQ(readable_duration(std::numeric_limits<std::int64_t>::min()), "-2562047788015h 12m 56s");
}

TEST(ExecutionTest, TimeFromStartIsSignedReadableDuration) {
  std::int64_t start = ts("2024-01-15T10:30:00.000Z");
  EXPECT_EQ(time_from_start(start, start), "+0ms");
  EXPECT_EQ(time_from_start(start, ts("2024-01-15T10:32:30.000Z")), "+2m 30s");
  EXPECT_EQ(time_from_start(start, ts("2024-01-15T10:30:00.850Z")), "+850ms");
  EXPECT_EQ(time_from_start(start, ts("2024-01-15T11:32:05.000Z")), "+1h 2m 5s");
  EXPECT_EQ(time_from_start(start, ts("2024-01-15T10:29:58.800Z")), "-1.2s");
  // Whole milliseconds of each: 0.9999 ms after a start at .0001 ms is still +0ms.
  EXPECT_EQ(time_from_start(start + 100, start + 999'900), "+0ms");
  EXPECT_EQ(time_from_start(start + 999'999, start + 1'000'000), "+1ms");
  // Never overflows.
  constexpr auto kMin = std::numeric_limits<std::int64_t>::min();
  constexpr auto kMax = std::numeric_limits<std::int64_t>::max();
  EXPECT_THAT(time_from_start(kMin, kMax), StartsWith("+"));
  EXPECT_THAT(time_from_start(kMax, kMin), StartsWith("-"));
}

TEST(ExecutionTest, FinalStatusIsTheLastStepsOrUnknown) {
  Execution e;
  EXPECT_EQ(final_status(e), "unknown");
  Step step;
  step.status = "failed";
  e.steps.push_back(step);
  EXPECT_EQ(final_status(e), "failed");
  step.status = "completed";
  e.steps.push_back(step);
  EXPECT_EQ(final_status(e), "completed");
}

TEST(ExecutionTest, NewExecutionIdIsExecMillisAndNineBase36) {
  std::int64_t now = ts("2023-12-21T01:50:56.789Z");
  std::set<std::string> seen;
  for (int i = 0; i < 100; ++i) {
    std::string id = new_execution_id(now + 123'456);
    EXPECT_TRUE(std::regex_match(id, std::regex("exec_[0-9]+_[0-9a-z]{9}"))) << id;
    EXPECT_THAT(id, StartsWith("exec_1703123456789_"));
    seen.insert(id);
  }
  EXPECT_EQ(seen.size(), 100u);
}

// ---- Folding recorder events -----------------------------------------------------------------

// Folds what the recorder's backend thread hands it, as the server's sink will.
class FolderSink : public Sink {
 public:
  void write(const Event& event) override { folder.add(event); }
  ExecutionFolder folder;
};

struct FoldFixture {
  FoldFixture() { rec.recorder.add_sink(sink); }
  const Execution& execution(std::string_view id) {
    rec.recorder.flush();
    const Execution* e = sink->folder.find(id);
    EXPECT_NE(e, nullptr) << id;
    static const Execution kNone;
    return e != nullptr ? *e : kNone;
  }
  test::Recording rec;
  std::shared_ptr<FolderSink> sink = std::make_shared<FolderSink>();
};

std::vector<std::string> step_names(const Execution& e) {
  std::vector<std::string> out;
  for (const Step& s : e.steps) out.push_back(s.step + ":" + s.status);
  return out;
}

// Step fields and run metadata are written as JSON text directly when their keys are plain, and
// through a JSON object when keys repeat: both give the bytes the object's dump() gives.
TEST(ExecutionFolderTest, FieldsAreWrittenAsTheirJsonObjectWouldBe) {
  ExecutionFolder folder;
  OwnedEvent start;
  start.ts_ns = 1'767'555'015'234'000'000;
  start.kind = Kind::Run;
  start.status = Status::Starting;
  start.run = "r";
  start.add_field("tracking_id", std::string_view("ignored"));  // A document key: not metadata.
  start.add_field("ratio", 5.0);
  start.add_field("big", 1e100);
  start.add_field("text", std::string_view("tab\there \"q\" \x01 \xc3\xa9"));
  const Execution* e = folder.add(start.view());
  ASSERT_NE(e, nullptr);
  nlohmann::ordered_json expected_metadata = {
      {"ratio", 5.0}, {"big", 1e100}, {"text", "tab\there \"q\" \x01 \xc3\xa9"}};
  EXPECT_EQ(e->metadata_json, expected_metadata.dump());
  EXPECT_EQ(e->metadata_json,
            "{\"ratio\":5.0,\"big\":1e+100,\"text\":\"tab\\there \\\"q\\\" "
            "\\u0001 \xc3\xa9\"}");

  OwnedEvent end;
  end.ts_ns = start.ts_ns + 1;
  end.kind = Kind::Stage;
  end.status = Status::Failed;
  end.run = "r";
  end.stage = "JUDGE";
  end.worker = "w1";
  end.elapsed_ns = 13'200'000'000;
  end.add_field("score", 13.2);
  end.add_field("error_details", std::string_view("boom"));
  end.add_field("step", std::string_view("a step key: not a custom field"));
  end.add_field("note", std::string_view("x"));
  e = folder.add(end.view());
  EXPECT_EQ(e->steps.back().custom_json,
            R"({"worker":"w1","duration_ms":13200,"score":13.2,"note":"x"})");
  EXPECT_EQ(e->steps.back().error_details, "boom");

  // A key twice: one key, the first's place, the last value (as the object keeps it).
  OwnedEvent twice = end;
  twice.status = Status::Completed;
  twice.add_field("score", std::int64_t{7});
  e = folder.add(twice.view());
  EXPECT_EQ(e->steps.back().custom_json,
            R"({"worker":"w1","duration_ms":13200,"score":7,"note":"x"})");
}

// A run's end usually repeats its start's fields: the metadata stays as it was. Other values,
// new keys or another order merge into the object: the first key's place, the last value.
TEST(ExecutionFolderTest, RunMetadataMergesTheEndsFieldsIntoTheStarts) {
  ExecutionFolder folder;
  auto run_event = [](std::string run, Status status, std::int64_t ts_ns) {
    OwnedEvent e;
    e.ts_ns = ts_ns;
    e.kind = Kind::Run;
    e.status = status;
    e.run = std::move(run);
    e.add_field("tokens", std::int64_t{1247});
    e.add_field("model", std::string_view("llama-3-8b"));
    e.add_field("cached", true);
    e.add_field("offset", std::uint64_t{18'446'744'073'709'551'615ULL});
    return e;
  };
  const std::int64_t t0 = 1'767'555'015'234'000'000;
  const std::string first =
      R"({"tokens":1247,"model":"llama-3-8b","cached":true,"offset":18446744073709551615})";
  OwnedEvent start = run_event("same", Status::Starting, t0);
  const Execution* e = folder.add(start.view());
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->metadata_json, first);
  OwnedEvent same = run_event("same", Status::Completed, t0 + 1);
  e = folder.add(same.view());
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->metadata_json, first);

  start = run_event("changed", Status::Starting, t0);
  folder.add(start.view());
  OwnedEvent end;
  end.ts_ns = t0 + 2;
  end.kind = Kind::Run;
  end.status = Status::Completed;
  end.run = "changed";
  end.add_field("model", std::string_view("llama-3-70b"));
  end.add_field("tokens", std::int64_t{-3});
  end.add_field("gpu", false);
  e = folder.add(end.view());
  ASSERT_NE(e, nullptr);
  nlohmann::ordered_json expected = nlohmann::ordered_json::parse(first);
  expected["model"] = "llama-3-70b";
  expected["tokens"] = -3;
  expected["gpu"] = false;
  EXPECT_EQ(e->metadata_json, expected.dump());
  EXPECT_EQ(e->metadata_json,
            R"({"tokens":-3,"model":"llama-3-70b","cached":true,"offset":18446744073709551615,)"
            R"("gpu":false})");
}

// Folded steps carry "worker" and, at a stage's end, "duration_ms"; an event's own field of
// either name wins, in the place the step's own key would have.
TEST(ExecutionFolderTest, AFieldNamedWorkerOrDurationWinsOverTheEventsOwn) {
  ExecutionFolder folder;
  auto stage_end = [](std::string worker) {
    OwnedEvent e;
    e.ts_ns = 1'767'555'015'234'000'000;
    e.kind = Kind::Stage;
    e.status = Status::Completed;
    e.run = "r";
    e.stage = "AGENT";
    e.worker = std::move(worker);
    e.elapsed_ns = 5'000'000;
    return e;
  };
  OwnedEvent plain = stage_end("gpu-1");
  plain.add_field("tokens", std::int64_t{3});
  const Execution* e = folder.add(plain.view());
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->steps.back().custom_json, R"({"worker":"gpu-1","duration_ms":5,"tokens":3})");
  OwnedEvent named = stage_end("gpu-1");
  named.add_field("duration_ms", std::int64_t{7});
  named.add_field("worker", std::string_view("pool-a"));
  e = folder.add(named.view());
  EXPECT_EQ(e->steps.back().custom_json, R"({"worker":"pool-a","duration_ms":7})");
  OwnedEvent nobody = stage_end("");
  nobody.elapsed_ns.reset();
  e = folder.add(nobody.view());
  EXPECT_EQ(e->steps.back().custom_json, "{}");
}

TEST(ExecutionFolderTest, FoldsASuccessfulRun) {
  FoldFixture f;
  std::int64_t start = f.rec.clock.now();
  {
    RunScope run(f.rec.recorder, "60B3RNTB");
    { StageScope init(f.rec.recorder, "initialization"); }
    f.rec.clock.advance(1s);
    {
      StageScope orchestrator(f.rec.recorder, "orchestrator_execution");
      f.rec.clock.advance(2min + 29s);
      orchestrator.complete(kv("tokens", 1247));
    }
  }
  const Execution& e = f.execution("60B3RNTB");
  EXPECT_EQ(e.tracking_id, "60B3RNTB");
  EXPECT_TRUE(std::regex_match(e.execution_id, std::regex("exec_[0-9]+_[0-9a-z]{9}")));
  EXPECT_EQ(e.started_at_ns, start);
  EXPECT_EQ(e.completed_at_ns, start + std::int64_t{150'000'000'000});
  EXPECT_EQ(e.duration_ms, 150000);
  EXPECT_THAT(step_names(e), ElementsAre("initialization:in_progress", "initialization:completed",
                                         "orchestrator_execution:in_progress",
                                         "orchestrator_execution:completed"));
  // Who ran it and the stage's measured time come first, then the event's own fields.
  EXPECT_EQ(e.steps[3].custom_json, R"({"worker":"t0","duration_ms":149000,"tokens":1247})");
  EXPECT_EQ(e.steps[3].error_details, std::nullopt);
  EXPECT_EQ(final_status(e), "completed");
  Json data = Json::parse(execution_log_response(e))["data"];
  EXPECT_EQ(data["duration_readable"], "2m 30s");
  EXPECT_EQ(data["steps"][2]["time_from_start"], "+1.0s");
  EXPECT_EQ(data["steps"][3]["time_from_start"], "+2m 30s");
  EXPECT_EQ(parse_ok(execution_document(e)), e);
}

TEST(ExecutionFolderTest, AStageStepWithoutAMessageSaysWhatTheStageLineSays) {
  FoldFixture f;
  {
    RunScope run(f.rec.recorder, "item-07");
    StageScope agent(f.rec.recorder, "AGENT");
    f.rec.clock.advance(13200ms);
  }
  const Execution& e = f.execution("item-07");
  ASSERT_EQ(e.steps.size(), 2u);
  EXPECT_EQ(e.steps[0].message, "Starting");
  EXPECT_EQ(e.steps[1].message, "Complete (13.2s)");
}

TEST(ExecutionFolderTest, FoldsAFailedStageWithErrorDetails) {
  FoldFixture f;
  const std::string stack =
      "Error: AI generation timeout after 480000ms\n at AIService.generateContent "
      "(worker.js:1234:56)";
  {
    RunScope run(f.rec.recorder, "60B3RNTB");
    { StageScope init(f.rec.recorder, "initialization"); }
    StageScope orchestrator(f.rec.recorder, "orchestrator_execution");
    f.rec.clock.advance(8min);
    orchestrator.fail("AI generation timeout after 480000ms", kv("error_details", stack),
                      kv("retry_attempt", 2));
    run.fail("Processing failed: AI generation timeout after 480000ms");
  }
  const Execution& e = f.execution("60B3RNTB");
  EXPECT_THAT(step_names(e),
              ElementsAre("initialization:in_progress", "initialization:completed",
                          "orchestrator_execution:in_progress", "orchestrator_execution:failed"));
  EXPECT_EQ(e.steps[3].message, "AI generation timeout after 480000ms");
  EXPECT_EQ(e.steps[3].error_details, stack);
  EXPECT_EQ(e.steps[3].custom_json, R"({"worker":"t0","duration_ms":480000,"retry_attempt":2})");
  EXPECT_EQ(final_status(e), "failed");
  EXPECT_EQ(e.duration_ms, 480000);
  Json data = Json::parse(execution_log_response(e))["data"];
  EXPECT_EQ(data["final_status"], "failed");
  EXPECT_EQ(data["duration_readable"], "8m 0s");
  EXPECT_EQ(data["steps"][3]["error_details"], stack);
  EXPECT_EQ(parse_ok(execution_document(e)), e);
}

TEST(ExecutionFolderTest, FailureMessageIsTheErrorDetailsWithoutTheField) {
  FoldFixture f;
  {
    RunScope run(f.rec.recorder, "r1");
    StageScope stage(f.rec.recorder, "pdf_generation");
    stage.fail("Template not found for tier level");
  }
  const Execution& e = f.execution("r1");
  ASSERT_EQ(e.steps.size(), 2u);
  EXPECT_EQ(e.steps[1].error_details, "Template not found for tier level");
}

TEST(ExecutionFolderTest, AFailedRunAfterGoodStepsAddsAFailedStep) {
  FoldFixture f;
  {
    RunScope run(f.rec.recorder, "r1");
    { StageScope init(f.rec.recorder, "initialization"); }
    f.rec.clock.advance(3s);
    run.fail("Processing failed: quota exceeded");
  }
  const Execution& e = f.execution("r1");
  EXPECT_THAT(step_names(e),
              ElementsAre("initialization:in_progress", "initialization:completed", "app:failed"));
  EXPECT_EQ(e.steps[2].message, "Processing failed: quota exceeded");
  EXPECT_EQ(e.steps[2].error_details, "Processing failed: quota exceeded");
  EXPECT_EQ(final_status(e), "failed");
}

TEST(ExecutionFolderTest, AnExceptionFailsTheStageAndTheRunOnce) {
  FoldFixture f;
  try {
    RunScope run(f.rec.recorder, "r1");
    StageScope stage(f.rec.recorder, "data_validation");
    throw std::runtime_error("bad row");
  } catch (const std::runtime_error&) {
  }
  const Execution& e = f.execution("r1");
  EXPECT_THAT(step_names(e), ElementsAre("data_validation:in_progress", "data_validation:failed"));
  EXPECT_NE(e.completed_at_ns, std::nullopt);
}

TEST(ExecutionFolderTest, ErrorLogsBecomeFailedStepsNamedByComponent) {
  FoldFixture f;
  {
    RunScope run(f.rec.recorder, "r1");
    Logger brain = f.rec.recorder.component("brain");
    brain.info("thinking");
    brain.warning("slow");
    brain.error("model refused", kv("model", "qwen"));
    brain.critical("out of memory", kv("error_details", "OOM at layer 3"));
  }
  const Execution& e = f.execution("r1");
  EXPECT_THAT(step_names(e), ElementsAre("brain:failed", "brain:failed"));
  EXPECT_EQ(e.steps[0].message, "model refused");
  EXPECT_EQ(e.steps[0].error_details, "model refused");
  EXPECT_EQ(e.steps[0].custom_json, R"({"worker":"t0","model":"qwen"})");
  EXPECT_EQ(e.steps[1].error_details, "OOM at layer 3");
  // The run completed: its end closes the execution and adds no step.
  EXPECT_NE(e.completed_at_ns, std::nullopt);
}

TEST(ExecutionFolderTest, IgnoresEventsWithoutARun) {
  FoldFixture f;
  { StageScope stage(f.rec.recorder, "orphan"); }
  f.rec.recorder.logger().error("no run");
  f.rec.recorder.flush();
  ExecutionFolder folder;
  Event e;
  e.kind = Kind::Stage;
  e.status = Status::Starting;
  e.stage = "x";
  EXPECT_EQ(folder.add(e), nullptr);
  EXPECT_EQ(folder.find(""), nullptr);
}

TEST(ExecutionFolderTest, ARunIdWithoutARunScopeOpensTheExecutionImplicitly) {
  FoldFixture f;
  f.rec.recorder.set_run("tier-T0");
  std::int64_t start = f.rec.clock.now();
  {
    StageScope stage(f.rec.recorder, "AGENT");
    f.rec.clock.advance(13s);
  }
  const Execution& e = f.execution("tier-T0");
  EXPECT_EQ(e.started_at_ns, start);
  EXPECT_EQ(e.completed_at_ns, std::nullopt);
  EXPECT_THAT(step_names(e), ElementsAre("AGENT:in_progress", "AGENT:completed"));
  EXPECT_EQ(Json::parse(execution_log_response(e))["data"]["steps"][1]["time_from_start"],
            "+13.0s");
}

TEST(ExecutionFolderTest, AReprocessStartsAFreshExecution) {
  FoldFixture f;
  {
    RunScope run(f.rec.recorder, "60B3RNTB");
    StageScope stage(f.rec.recorder, "orchestrator_execution");
    stage.fail("timeout");
    run.fail("timeout");
  }
  std::string first_id = f.execution("60B3RNTB").execution_id;
  f.rec.clock.advance(1h);
  std::int64_t second_start = f.rec.clock.now();
  {
    RunScope run(f.rec.recorder, "60B3RNTB");
    StageScope stage(f.rec.recorder, "orchestrator_execution");
  }
  const Execution& e = f.execution("60B3RNTB");
  EXPECT_NE(e.execution_id, first_id);
  EXPECT_EQ(e.started_at_ns, second_start);
  EXPECT_THAT(step_names(e), ElementsAre("orchestrator_execution:in_progress",
                                         "orchestrator_execution:completed"));
  EXPECT_EQ(final_status(e), "completed");
}

TEST(ExecutionFolderTest, KeepsRunsApart) {
  FoldFixture f;
  {
    RunScope a(f.rec.recorder, "a");
    { StageScope s(f.rec.recorder, "one"); }
  }
  {
    RunScope b(f.rec.recorder, "b");
    { StageScope s(f.rec.recorder, "two"); }
  }
  EXPECT_THAT(step_names(f.execution("a")), ElementsAre("one:in_progress", "one:completed"));
  EXPECT_THAT(step_names(f.execution("b")), ElementsAre("two:in_progress", "two:completed"));
  EXPECT_EQ(f.sink->folder.find("c"), nullptr);
}

// A Workflow run inside a RunScope, as the recorder hands them over: the workflow's run
// events (component "workflow", stage the workflow id) and its node events.
TEST(ExecutionFolderTest, AWorkflowInsideARunIsANestedStep) {
  std::int64_t t0 = test::FakeClock::kSeedStart;
  auto event = [&](Kind kind, Status status, std::string_view component, std::string_view stage,
                   std::int64_t at_ms, std::string_view message = {}) {
    Event e;
    e.ts_ns = t0 + at_ms * 1'000'000;
    e.kind = kind;
    e.status = status;
    e.level = status == Status::Failed ? Level::Error : Level::Info;
    e.run = "job-1";
    e.worker = "T0_00";
    e.component = component;
    e.stage = stage;
    e.message = message;
    return e;
  };
  ExecutionFolder folder;
  const Field start_fields[] = {{"company", std::string_view("Acme Corp")},
                                {"tier", std::string_view("comprehensive")}};
  Event run_start = event(Kind::Run, Status::Starting, "app", "COMPLETE", 0);
  run_start.fields = start_fields;
  ASSERT_NE(folder.add(run_start), nullptr);
  const Field wf_fields[] = {{"workflow_id", std::string_view("wf_7")},
                             {"total_nodes", std::int64_t{2}}};
  Event wf_start =
      event(Kind::Run, Status::Starting, "workflow", "wf_7", 10, "Workflow execution started");
  wf_start.fields = wf_fields;
  folder.add(wf_start);
  folder.add(event(Kind::Node, Status::Starting, "workflow", "fetch", 20));
  Event node_end = event(Kind::Node, Status::Completed, "workflow", "fetch", 1020);
  node_end.elapsed_ns = 1'000'000'000;
  folder.add(node_end);
  Event wf_end = event(Kind::Run, Status::Completed, "workflow", "wf_7", 1030,
                       "1 of 2 nodes completed, 0 failed");
  wf_end.elapsed_ns = 1'020'000'000;
  folder.add(wf_end);
  Event run_end =
      event(Kind::Run, Status::Completed, "app", "COMPLETE", 2000, "All stages complete");
  run_end.elapsed_ns = 2'000'000'000;
  const Execution* e = folder.add(run_end);
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e, folder.find("job-1"));
  EXPECT_THAT(step_names(*e), ElementsAre("wf_7:in_progress", "fetch:in_progress",
                                          "fetch:completed", "wf_7:completed"));
  EXPECT_EQ(e->steps[0].custom_json, R"({"worker":"T0_00","workflow_id":"wf_7","total_nodes":2})");
  EXPECT_EQ(e->metadata_json, R"({"company":"Acme Corp","tier":"comprehensive"})");
  EXPECT_EQ(e->duration_ms, 2000);
  EXPECT_EQ(e->completed_at_ns, t0 + 2'000'000'000);
  Json data = Json::parse(execution_log_response(*e))["data"];
  EXPECT_EQ(data["company"], "Acme Corp");
  EXPECT_EQ(data["duration_readable"], "2.0s");
  EXPECT_EQ(parse_ok(execution_document(*e)), *e);
}

TEST(ExecutionFolderTest, MakesStringsValidUtf8AndDropsReservedFieldNames) {
  ExecutionFolder folder;
  const Field fields[] = {{"steps", std::int64_t{1}},
                          {"tracking_id", std::string_view("x")},
                          {"k\xff", std::string_view("v\xfe")}};
  Event start;
  start.ts_ns = test::FakeClock::kSeedStart;
  start.kind = Kind::Run;
  start.status = Status::Starting;
  start.run = "r\xff";
  start.fields = fields;
  folder.add(start);
  Event stage = start;
  stage.kind = Kind::Stage;
  stage.stage = "s\xc3";
  stage.message = "m\x80";
  const Field step_fields[] = {{"status", std::string_view("x")},
                               {"nan", std::numeric_limits<double>::quiet_NaN()},
                               {"u", std::uint64_t{18446744073709551615u}},
                               {"b", true}};
  stage.fields = step_fields;
  const Execution* e = folder.add(stage);
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->tracking_id, "r\xef\xbf\xbd");
  EXPECT_EQ(e->metadata_json, "{\"k\xef\xbf\xbd\":\"v\xef\xbf\xbd\"}");
  EXPECT_EQ(e->steps[0].step, "s\xef\xbf\xbd");
  EXPECT_EQ(e->steps[0].message, "m\xef\xbf\xbd");
  EXPECT_EQ(e->steps[0].custom_json, R"({"nan":null,"u":18446744073709551615,"b":true})");
  EXPECT_EQ(parse_ok(execution_document(*e)), *e);
}

// ---- Fuzz ------------------------------------------------------------------------------------

// parse_execution on mutated documents: never crashes, says why it rejects, and what it
// accepts round-trips and gives a response that is valid JSON.
void check_any(const std::string& text) {
  std::string error;
  auto e = parse_execution(text, &error);
  if (!e) {
    EXPECT_FALSE(error.empty()) << text;
    return;
  }
  std::string doc = execution_document(*e);
  auto back = parse_execution(doc, &error);
  ASSERT_TRUE(back.has_value()) << error << "\n" << doc;
  EXPECT_EQ(*back, *e) << text;
  EXPECT_TRUE(Json::accept(execution_log_response(*e))) << text;
}

TEST(ExecutionTest, ByteMutationsNeverCrashAndAcceptancesRoundTrip) {
  std::mt19937 random(4);
  const std::string seed(kSeed004Document);
  const std::string alphabet = "{}[]\",:\\ 0-9.eEnulltruefalseZT\x80\xff\xc3\x01";
  auto pick = [&](std::size_t n) {
    return std::uniform_int_distribution<std::size_t>(0, n - 1)(random);
  };
  int accepted = 0;
  for (int i = 0; i < 3000; ++i) {
    std::string text = seed;
    int edits = 1 + static_cast<int>(pick(4));
    for (int k = 0; k < edits && !text.empty(); ++k) {
      std::size_t at = pick(text.size());
      switch (pick(5)) {
        case 0:
          text.erase(at, 1 + pick(8));
          break;
        case 1:
          text.insert(at, 1, alphabet[pick(alphabet.size())]);
          break;
        case 2:
          text[at] = alphabet[pick(alphabet.size())];
          break;
        case 3:
          text.insert(at, text.substr(pick(text.size()), pick(40)));
          break;
        default:
          text.resize(at);
          break;
      }
    }
    check_any(text);
    if (parse_execution(text)) ++accepted;
  }
  EXPECT_GT(accepted, 0);  // Some mutations (inside strings) keep the document valid.
}

TEST(ExecutionTest, ValueMutationsNeverCrashAndAcceptancesRoundTrip) {
  std::mt19937 random(7);
  const OrderedJson seed = OrderedJson::parse(kSeed004Document);
  const std::vector<OrderedJson> values = {nullptr,
                                           true,
                                           0,
                                           -1,
                                           1.5,
                                           "",
                                           "x",
                                           "completed",
                                           "skipped",
                                           "2024-01-15T10:30:00.000Z",
                                           "2024-01-15T10:30:00.5Z",
                                           "1969-01-01T00:00:00.000Z",
                                           "\xc3\xa9t\xc3\xa9",
                                           OrderedJson::array(),
                                           OrderedJson::object(),
                                           OrderedJson::parse(R"({"a":[1,{"b":2}]})"),
                                           std::uint64_t{18446744073709551615u}};
  auto pick = [&](std::size_t n) {
    return std::uniform_int_distribution<std::size_t>(0, n - 1)(random);
  };
  int accepted = 0;
  for (int i = 0; i < 3000; ++i) {
    OrderedJson doc = seed;
    for (int k = 0, edits = 1 + static_cast<int>(pick(3)); k < edits; ++k) {
      // A random object: the top level or one of the steps.
      auto steps = doc.find("steps");
      bool top = pick(3) == 0 || steps == doc.end() || !steps->is_array() || steps->empty();
      OrderedJson& target = top ? doc : (*steps)[pick(steps->size())];
      if (!target.is_object()) continue;
      std::vector<std::string> keys = keys_of(target);
      switch (pick(3)) {
        case 0:
          if (!keys.empty()) target.erase(keys[pick(keys.size())]);
          break;
        case 1:
          if (!keys.empty()) target[keys[pick(keys.size())]] = values[pick(values.size())];
          break;
        default:
          target["extra_" + std::to_string(pick(3))] = values[pick(values.size())];
          break;
      }
    }
    std::string text = doc.dump();
    check_any(text);
    if (parse_execution(text)) ++accepted;
  }
  EXPECT_GT(accepted, 100);
}

// ---- Extensions for the server: a folder that holds only some executions ---------------------

Event run_event(std::string_view run, Kind kind, Status status, std::int64_t ts,
                std::string_view stage = "s") {
  Event e;
  e.ts_ns = ts;
  e.kind = kind;
  e.status = status;
  e.run = run;
  e.stage = stage;
  e.component = "app";
  return e;
}

TEST(ExecutionFolderTest, ARestoredOpenExecutionContinuesWithTheSameId) {
  std::int64_t t = test::FakeClock::kSeedStart;
  ExecutionFolder before;
  before.add(run_event("r", Kind::Run, Status::Starting, t));
  const Execution* open = before.add(run_event("r", Kind::Stage, Status::Starting, t + 1'000'000));
  ASSERT_NE(open, nullptr);
  Execution saved = *open;

  ExecutionFolder after;  // A restarted server.
  after.restore(saved);
  EXPECT_FALSE(after.finished("r"));
  after.add(run_event("r", Kind::Stage, Status::Completed, t + 2'000'000));
  const Execution* done = after.add(run_event("r", Kind::Run, Status::Completed, t + 3'000'000));
  ASSERT_NE(done, nullptr);
  EXPECT_EQ(done->execution_id, saved.execution_id);
  EXPECT_THAT(step_names(*done), ElementsAre("s:in_progress", "s:completed"));
  EXPECT_TRUE(after.finished("r"));
  // A run start on a finished one is a fresh attempt, as without the restore.
  const Execution* fresh = after.add(run_event("r", Kind::Run, Status::Starting, t + 4'000'000));
  ASSERT_NE(fresh, nullptr);
  EXPECT_NE(fresh->execution_id, saved.execution_id);
}

TEST(ExecutionFolderTest, DroppedStepsLeaveTheLastForTheFailureCheck) {
  std::int64_t t = test::FakeClock::kSeedStart;
  ExecutionFolder folder;
  folder.add(run_event("r", Kind::Run, Status::Starting, t));
  folder.add(run_event("r", Kind::Stage, Status::Starting, t));
  folder.add(run_event("r", Kind::Stage, Status::Failed, t));
  EXPECT_EQ(folder.drop_steps("r", 1), 1u);
  EXPECT_EQ(folder.drop_steps("r", 1), 0u);
  EXPECT_EQ(folder.drop_steps("nobody", 1), 0u);
  // The last step failed already: a failed run end adds none.
  const Execution* e = folder.add(run_event("r", Kind::Run, Status::Failed, t));
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->steps.size(), 1u);
  EXPECT_EQ(folder.size(), 1u);
  EXPECT_TRUE(folder.erase("r"));
  EXPECT_FALSE(folder.erase("r"));
  EXPECT_EQ(folder.find("r"), nullptr);
  EXPECT_EQ(folder.size(), 0u);
}

TEST(ExecutionTest, ADocumentWithoutTrackingIdTakesTheDefault) {
  OrderedJson doc = OrderedJson::parse(kSeed004Document);
  doc.erase("tracking_id");
  std::string error;
  EXPECT_FALSE(parse_execution(doc.dump(), &error).has_value());
  EXPECT_EQ(error, "tracking_id: missing");
  auto e = parse_execution(doc.dump(), "FROM-URL", &error);
  ASSERT_TRUE(e.has_value()) << error;
  EXPECT_EQ(e->tracking_id, "FROM-URL");
  auto own = parse_execution(kSeed004Document, "FROM-URL", &error);
  ASSERT_TRUE(own.has_value());
  EXPECT_EQ(own->tracking_id, "60B3RNTB");  // The document's own wins; the caller compares.
}

}  // namespace
}  // namespace stagelog::server
