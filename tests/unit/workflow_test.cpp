#include "stagelog/workflow.hpp"

#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "stagelog/error.hpp"
#include "stagelog/hash.hpp"
#include "temp_dir.hpp"

namespace stagelog {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::StartsWith;
using json = nlohmann::json;
using ordered_json = nlohmann::ordered_json;

constexpr std::string_view kId = "step_04_populate_mpd";
const std::string kSeparator(80, '=');

// Designated initialisers would trip -Wmissing-field-initializers (-Werror).
WorkflowOptions quiet() {
  WorkflowOptions options;
  options.print = false;
  return options;
}

// The keys of the top-level object in `line`, in the order written, duplicates included.
std::vector<std::string> top_level_keys(const std::string& line) {
  std::vector<std::string> keys;
  json value = json::parse(line, [&](int depth, json::parse_event_t event, json& parsed) {
    if (event == json::parse_event_t::key && depth == 1) keys.push_back(parsed.get<std::string>());
    return true;
  });
  return keys;
}

// Every line of a JSONL file, parsed; a line that does not parse fails the test.
std::vector<json> parse_jsonl(const fs::path& path) {
  std::vector<json> out;
  for (const auto& line : test::read_lines(path)) {
    try {
      out.push_back(json::parse(line));
    } catch (const json::exception& e) {
      ADD_FAILURE() << "not JSON in " << path << ": " << line << " (" << e.what() << ")";
    }
  }
  return out;
}

// The raw trace lines of one event type.
std::vector<std::string> raw_events(const fs::path& trace, std::string_view type) {
  std::vector<std::string> out;
  std::string needle = "\"event_type\": \"" + std::string(type) + "\"";
  for (const auto& line : test::read_lines(trace)) {
    if (line.find(needle) != std::string::npos) out.push_back(line);
  }
  return out;
}

std::vector<std::string> with_common(std::vector<std::string> rest) {
  std::vector<std::string> keys = {"timestamp", "epoch_seconds", "event_type", "pid",
                                   "workflow_id"};
  keys.insert(keys.end(), rest.begin(), rest.end());
  return keys;
}

std::vector<std::string> files_in(const fs::path& dir) {
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(dir)) {
    names.push_back(entry.path().filename().string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

std::size_t index_of(const std::vector<std::string>& lines, const std::string& line) {
  auto it = std::find(lines.begin(), lines.end(), line);
  return static_cast<std::size_t>(it - lines.begin());
}

std::size_t open_fd_count() {
  std::size_t n = 0;
  for ([[maybe_unused]] const auto& entry : fs::directory_iterator("/proc/self/fd")) ++n;
  return n;
}

// Redirects fd 1 into a pipe until finish(); the output must stay below the pipe's 64 KiB.
class StdoutCapture {
 public:
  StdoutCapture() {
    std::fflush(stdout);
    if (::pipe(fds_) != 0) throw std::runtime_error("pipe failed");
    saved_ = ::dup(STDOUT_FILENO);
    ::dup2(fds_[1], STDOUT_FILENO);
    ::close(fds_[1]);
  }
  ~StdoutCapture() {
    if (saved_ >= 0) (void)finish();
  }
  StdoutCapture(const StdoutCapture&) = delete;
  StdoutCapture& operator=(const StdoutCapture&) = delete;

  std::string finish() {
    std::fflush(stdout);
    ::dup2(saved_, STDOUT_FILENO);
    ::close(saved_);
    saved_ = -1;
    std::string out;
    char buf[4096];
    for (ssize_t n; (n = ::read(fds_[0], buf, sizeof buf)) > 0;) {
      out.append(buf, static_cast<std::size_t>(n));
    }
    ::close(fds_[0]);
    return out;
  }

 private:
  int fds_[2] = {-1, -1};
  int saved_ = -1;
};

// A small run: n1 succeeds, n2 fails, n3 never runs.
void small_run(Workflow& w) {
  w.node_start("n1", 0);
  w.node_success("n1", 0.5, "abc123", R"({"rows": 10})");
  w.node_start("n2", 1);
  w.node_failure("n2", "boom", 0.25);
}

// ---- Files and names -----------------------------------------------------------------------

TEST(WorkflowTest, NamesFilesAfterWorkflowIdStepAndStartStamp) {
  test::TempDir dir;
  Workflow w(std::string(kId), dir.path(), 3, quiet());
  w.complete();

  std::smatch log_match;
  std::string log_name = w.log_file().filename().string();
  ASSERT_TRUE(std::regex_match(log_name, log_match,
                               std::regex(R"(execution_step_04_populate_mpd_(\d{8}_\d{6})\.log)")))
      << log_name;
  std::smatch trace_match;
  std::string trace_name = w.trace_file().filename().string();
  ASSERT_TRUE(std::regex_match(trace_name, trace_match,
                               std::regex(R"(trace_step_04_(\d{8}_\d{6})\.jsonl)")))
      << trace_name;
  EXPECT_EQ(log_match[1].str(), trace_match[1].str());

  EXPECT_EQ(w.log_file(), dir.path() / "logs" / log_name);
  EXPECT_EQ(w.trace_file(), dir.path() / "traces" / trace_name);
  EXPECT_EQ(w.audit_dir(), dir.path() / "audit" / "step_04");
  EXPECT_EQ(w.audit_log_file(), dir.path() / "audit" / "step_04" / "log_04.log");
  EXPECT_EQ(w.audit_trace_file(), dir.path() / "audit" / "step_04" / "trace_04.jsonl");
  EXPECT_EQ(w.metadata_file(), dir.path() / "audit" / "step_04" / "metadata_04.json");
  EXPECT_EQ(w.workflow_id(), kId);
  EXPECT_EQ(w.step_number(), "04");

  EXPECT_THAT(files_in(dir.path()), ElementsAre("audit", "logs", "traces"));
  EXPECT_THAT(files_in(dir.path() / "logs"), ElementsAre(log_name));
  EXPECT_THAT(files_in(dir.path() / "traces"), ElementsAre(trace_name));
  EXPECT_THAT(files_in(dir.path() / "audit"), ElementsAre("step_04"));
  EXPECT_THAT(files_in(w.audit_dir()),
              ElementsAre("log_04.log", "metadata_04.json", "trace_04.jsonl"));
}

TEST(WorkflowTest, StampIsTheStartTime) {
  test::TempDir dir;
  Workflow w(std::string(kId), dir.path(), 1, quiet());
  w.complete();
  std::string name = w.trace_file().filename().string();
  std::string stamp = name.substr(name.size() - std::string("YYYYmmdd_HHMMSS.jsonl").size(), 15);

  auto meta = json::parse(test::read_file(w.metadata_file()));
  std::string start = meta["start_time"].get<std::string>();  // 2026-02-08T12:34:56.789012
  ASSERT_GE(start.size(), 19u);
  std::string expected = start.substr(0, 4) + start.substr(5, 2) + start.substr(8, 2) + "_" +
                         start.substr(11, 2) + start.substr(14, 2) + start.substr(17, 2);
  EXPECT_EQ(stamp, expected);

  auto lines = test::read_lines(w.log_file());
  std::string started = " Started: " + start.substr(0, 10) + " " + start.substr(11, 8);
  EXPECT_NE(index_of(lines, started), lines.size()) << started;
}

TEST(WorkflowTest, WorkflowIdWithoutStepNumberUsesStep00) {
  test::TempDir dir;
  Workflow w("unknown_workflow", dir.path(), 1, quiet());
  w.complete();
  EXPECT_EQ(w.step_number(), "00");
  EXPECT_EQ(w.audit_dir(), dir.path() / "audit" / "step_00");
  EXPECT_TRUE(fs::is_regular_file(dir.path() / "audit" / "step_00" / "log_00.log"));
  EXPECT_TRUE(fs::is_regular_file(dir.path() / "audit" / "step_00" / "trace_00.jsonl"));
  EXPECT_TRUE(fs::is_regular_file(dir.path() / "audit" / "step_00" / "metadata_00.json"));
  EXPECT_TRUE(std::regex_match(w.trace_file().filename().string(),
                               std::regex(R"(trace_step_00_\d{8}_\d{6}\.jsonl)")));
  EXPECT_TRUE(std::regex_match(w.log_file().filename().string(),
                               std::regex(R"(execution_unknown_workflow_\d{8}_\d{6}\.log)")));
}

TEST(WorkflowTest, ExtractsStepNumberAsPythonsReSearch) {
  EXPECT_EQ(Workflow::extract_step_number("step_04_populate_mpd"), "04");
  EXPECT_EQ(Workflow::extract_step_number("step_05_publication_extraction"), "05");
  EXPECT_EQ(Workflow::extract_step_number("unknown_workflow"), "00");
  EXPECT_EQ(Workflow::extract_step_number(""), "00");
  EXPECT_EQ(Workflow::extract_step_number("step_7"), "7");
  EXPECT_EQ(Workflow::extract_step_number("step_123_x"), "123");
  EXPECT_EQ(Workflow::extract_step_number("pre_step_09_post"), "09");
  EXPECT_EQ(Workflow::extract_step_number("mystep_11"), "11");     // re.search, not a word match.
  EXPECT_EQ(Workflow::extract_step_number("step_1_step_2"), "1");  // The first match.
  EXPECT_EQ(Workflow::extract_step_number("step_x_step_3"), "3");
  EXPECT_EQ(Workflow::extract_step_number("step_"), "00");
  EXPECT_EQ(Workflow::extract_step_number("step04"), "00");
  EXPECT_EQ(Workflow::extract_step_number("STEP_04"), "00");  // Case-sensitive.
  EXPECT_EQ(Workflow::extract_step_number("step_-4"), "00");
}

// ---- Trace lines ---------------------------------------------------------------------------

TEST(WorkflowTest, EveryTraceLineIsJsonWithCommonKeysFirst) {
  test::TempDir dir;
  Workflow w(std::string(kId), dir.path(), 3, quiet());
  small_run(w);
  w.complete(0.0123);

  auto lines = test::read_lines(w.trace_file());
  ASSERT_EQ(lines.size(), 6u);  // start, 2 node_start, success, failure, complete.
  std::regex common(
      R"re(\{"timestamp": "\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}", "epoch_seconds": \d+\.\d+(e[+-]\d+)?, "event_type": "[a-z_]+", "pid": )re" +
      std::to_string(::getpid()) + R"re(, "workflow_id": "step_04_populate_mpd"(, .*)?\})re");
  std::vector<std::string> types;
  for (const auto& line : lines) {
    EXPECT_TRUE(std::regex_match(line, common)) << line;
    auto keys = top_level_keys(line);
    ASSERT_GE(keys.size(), 5u) << line;
    EXPECT_EQ(std::vector<std::string>(keys.begin(), keys.begin() + 5), with_common({})) << line;
    std::set<std::string> unique(keys.begin(), keys.end());
    EXPECT_EQ(unique.size(), keys.size()) << "duplicate keys: " << line;
    auto j = json::parse(line);
    EXPECT_TRUE(j["epoch_seconds"].is_number_float()) << line;
    EXPECT_EQ(j["pid"].get<long long>(), static_cast<long long>(::getpid()));
    types.push_back(j["event_type"].get<std::string>());
  }
  EXPECT_THAT(types, ElementsAre("workflow_start", "node_start", "node_success", "node_start",
                                 "node_failure", "workflow_complete"));
}

TEST(WorkflowTest, WorkflowStartTakesDetailsTimestampAndAddsTotalNodes) {
  test::TempDir dir;
  Workflow w(std::string(kId), dir.path(), 3, quiet());
  w.complete();
  auto lines = raw_events(w.trace_file(), "workflow_start");
  ASSERT_EQ(lines.size(), 1u);
  // dict.update: workflow_id, pid and timestamp replace the entry's values in place.
  EXPECT_EQ(top_level_keys(lines[0]), with_common({"message", "total_nodes"}));
  auto j = json::parse(lines[0]);
  EXPECT_EQ(j["message"], "Workflow execution started: step_04_populate_mpd");
  EXPECT_EQ(j["total_nodes"], 3);
  EXPECT_EQ(j["workflow_id"], kId);
  auto meta = json::parse(test::read_file(w.metadata_file()));
  EXPECT_EQ(j["timestamp"], meta["start_time"]);  // The details' timestamp: the start time.
}

TEST(WorkflowTest, NodeStartHasNodeIdAndIndexKeepingZero) {
  test::TempDir dir;
  Workflow w(std::string(kId), dir.path(), 2, quiet());
  w.node_start("first", 0);
  w.node_start("second", 1);
  auto lines = raw_events(w.trace_file(), "node_start");
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(top_level_keys(lines[0]), with_common({"node_id", "node_index"}));
  EXPECT_THAT(lines[0], HasSubstr(R"("node_id": "first", "node_index": 0)"));
  EXPECT_EQ(top_level_keys(lines[1]), with_common({"node_id", "node_index"}));
  EXPECT_EQ(json::parse(lines[1])["node_index"], 1);
}

TEST(WorkflowTest, NodeSuccessHasDurationHashAndSummary) {
  test::TempDir dir;
  Workflow w(std::string(kId), dir.path(), 2, quiet());
  w.node_success("plain", 1.5);
  w.node_success("full", 0.25, "deadbeef", R"({"b":1,"a":[1,2.50,"x"],"c":{"d":null}})");
  auto lines = raw_events(w.trace_file(), "node_success");
  ASSERT_EQ(lines.size(), 2u);
  auto keys = with_common({"node_id", "duration_seconds", "output_hash", "output_summary"});
  EXPECT_EQ(top_level_keys(lines[0]), keys);
  EXPECT_EQ(top_level_keys(lines[1]), keys);

  auto plain = json::parse(lines[0]);
  EXPECT_EQ(plain["node_id"], "plain");
  EXPECT_EQ(plain["duration_seconds"], 1.5);
  EXPECT_TRUE(plain["output_hash"].is_null());
  EXPECT_TRUE(plain["output_summary"].is_null());
  EXPECT_THAT(lines[0], HasSubstr(R"("duration_seconds": 1.5, "output_hash": null, )"));
  EXPECT_THAT(lines[0], HasSubstr(R"(, "output_summary": null})"));

  auto full = json::parse(lines[1]);
  EXPECT_EQ(full["output_hash"], "deadbeef");
  ASSERT_TRUE(full["output_summary"].is_object());
  EXPECT_EQ(full["output_summary"]["b"], 1);
  // Written as json.dumps writes the dict: keys in their order, ", " and ": " separators.
  EXPECT_THAT(lines[1],
              HasSubstr(R"("output_summary": {"b": 1, "a": [1, 2.5, "x"], "c": {"d": null}}})"));
  EXPECT_EQ(w.nodes_completed(), 2);
  EXPECT_EQ(w.nodes_failed(), 0);
}

TEST(WorkflowTest, OutputSummaryIsWrittenAsPythonJsonDumpsWritesIt) {
  test::TempDir dir;
  Workflow w(std::string(kId), dir.path(), 1, quiet());
  // json.dumps(json.loads(text)): ensure_ascii, repr floats, exact integers, last duplicate wins
  // in the first one's place.
  w.node_success(
      "n", 0.1, {},
      R"({"name":"caf\u00e9 \u2603","f":1E2,"g":-0.0,"big":123456789012345678901234567890,"k":1,"k":2})");
  auto lines = raw_events(w.trace_file(), "node_success");
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_THAT(lines[0], HasSubstr(R"("name": "caf\u00e9 \u2603")"));
  EXPECT_THAT(lines[0], HasSubstr(R"("f": 100.0, "g": -0.0)"));
  EXPECT_THAT(lines[0], HasSubstr(R"("k": 2})"));
  EXPECT_THAT(lines[0], HasSubstr(R"("big": 123456789012345678901234567890)"));
}

TEST(WorkflowTest, NodeFailureHasDurationAndError) {
  test::TempDir dir;
  Workflow w(std::string(kId), dir.path(), 1, quiet());
  w.node_failure("n1", "bad \"input\"\nline 2", 2.0);
  auto lines = raw_events(w.trace_file(), "node_failure");
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(top_level_keys(lines[0]), with_common({"node_id", "duration_seconds", "error"}));
  auto j = json::parse(lines[0]);
  EXPECT_EQ(j["duration_seconds"], 2.0);
  EXPECT_EQ(j["error"], "bad \"input\"\nline 2");
  EXPECT_THAT(lines[0], HasSubstr(R"("duration_seconds": 2.0, "error": "bad \"input\"\nline 2")"));
  EXPECT_EQ(w.nodes_failed(), 1);
  EXPECT_EQ(w.nodes_completed(), 0);
}

TEST(WorkflowTest, WorkflowCompleteHasCountsCostPathsAndNodeTimesInFirstSeenOrder) {
  test::TempDir dir;
  Workflow w(std::string(kId), dir.path(), 4, quiet());
  w.node_success("zeta", 1.0);
  w.node_failure("alpha", "x", 2.0);
  w.node_success("mid", 3.0);
  w.node_success("zeta", 4.5);  // A retry: keeps its first place, takes the new time.
  w.complete(0.0123);
  auto lines = raw_events(w.trace_file(), "workflow_complete");
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(top_level_keys(lines[0]),
            with_common({"nodes_completed", "nodes_failed", "total_time_seconds",
                         "cumulative_cost_usd", "trace_file", "log_file", "node_times"}));
  EXPECT_THAT(lines[0], HasSubstr(R"("node_times": {"zeta": 4.5, "alpha": 2.0, "mid": 3.0})"));
  auto j = json::parse(lines[0]);
  EXPECT_EQ(j["nodes_completed"], 3);
  EXPECT_EQ(j["nodes_failed"], 1);
  EXPECT_TRUE(j["total_time_seconds"].is_number_float());
  EXPECT_GE(j["total_time_seconds"].get<double>(), 0.0);
  EXPECT_EQ(j["cumulative_cost_usd"], 0.0123);
  EXPECT_EQ(j["trace_file"], w.trace_file().string());
  EXPECT_EQ(j["log_file"], w.log_file().string());
  EXPECT_TRUE(j["epoch_seconds"].is_number_float());
  EXPECT_GE(
      j["epoch_seconds"].get<double>(),
      json::parse(raw_events(w.trace_file(), "workflow_start")[0])["epoch_seconds"].get<double>());
}

TEST(WorkflowTest, WorkflowErrorHasErrorTimeAndCounts) {
  test::TempDir dir;
  Workflow w(std::string(kId), dir.path(), 3, quiet());
  small_run(w);
  w.error("database gone");
  auto lines = raw_events(w.trace_file(), "workflow_error");
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(top_level_keys(lines[0]),
            with_common({"error", "total_time_seconds", "nodes_completed", "nodes_failed"}));
  auto j = json::parse(lines[0]);
  EXPECT_EQ(j["error"], "database gone");
  EXPECT_EQ(j["nodes_completed"], 1);
  EXPECT_EQ(j["nodes_failed"], 1);
  EXPECT_TRUE(j["total_time_seconds"].is_number_float());
  EXPECT_TRUE(raw_events(w.trace_file(), "workflow_complete").empty());
}

TEST(WorkflowTest, AuditTraceHasTheSameContentAsTrace) {
  test::TempDir dir;
  Workflow w(std::string(kId), dir.path(), 3, quiet());
  small_run(w);
  w.complete(1.0);
  std::string trace = test::read_file(w.trace_file());
  EXPECT_FALSE(trace.empty());
  EXPECT_EQ(test::read_file(w.audit_trace_file()), trace);
}

// ---- The log file --------------------------------------------------------------------------

TEST(WorkflowTest, LogHasHeaderBlock) {
  test::TempDir dir;
  Workflow w(std::string(kId), dir.path(), 3, quiet());
  auto lines = test::read_lines(w.log_file());
  std::size_t run = index_of(lines, "[RUN] Executing: step_04_populate_mpd");
  ASSERT_LT(run, lines.size());
  ASSERT_GE(run, 2u);
  ASSERT_LT(run + 5, lines.size());
  EXPECT_EQ(lines[run - 2], "");
  EXPECT_EQ(lines[run - 1], kSeparator);
  EXPECT_EQ(lines[run + 1], "[DIR] Output: " + fs::absolute(dir.path()).string());
  EXPECT_EQ(lines[run + 2], " PID: " + std::to_string(::getpid()));
  EXPECT_TRUE(std::regex_match(lines[run + 3],
                               std::regex(R"( Started: \d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2})")))
      << lines[run + 3];
  EXPECT_EQ(lines[run + 4], kSeparator);
  EXPECT_EQ(lines[run + 5], "");
}

TEST(WorkflowTest, LogHasOneLinePerEventWithTheTracesTimestampAndDetails) {
  test::TempDir dir;
  Workflow w(std::string(kId), dir.path(), 3, quiet());
  small_run(w);
  w.complete();

  std::regex event_line(
      R"(\[(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6})\] ([A-Z_]+)( [^ :|]+)?(: [^|]*)? \| (\{.*\}))");
  std::vector<std::string> seen;
  auto trace = test::read_lines(w.trace_file());
  for (const auto& line : test::read_lines(w.log_file())) {
    if (line.empty() || line[0] != '[' || line.rfind("[RUN]", 0) == 0 ||
        line.rfind("[DIR]", 0) == 0) {
      continue;
    }
    std::smatch m;
    ASSERT_TRUE(std::regex_match(line, m, event_line)) << line;
    std::string details = m[5].str();
    EXPECT_TRUE(json::accept(details)) << line;
    ASSERT_LT(seen.size(), trace.size());
    auto event = json::parse(trace[seen.size()]);
    // workflow_start's trace timestamp is the details' one (the start time), as in the seed.
    if (event["event_type"] != "workflow_start") {
      EXPECT_EQ(m[1].str(), event["timestamp"].get<std::string>()) << line;
    }
    seen.push_back(line.substr(line.find(']') + 2));
  }
  ASSERT_EQ(seen.size(), 6u);
  EXPECT_THAT(seen[0], StartsWith("WORKFLOW_START: Workflow execution started: "
                                  "step_04_populate_mpd | {\"workflow_id\": "
                                  "\"step_04_populate_mpd\", \"pid\": "));
  EXPECT_THAT(seen[0], HasSubstr("\"total_nodes\": 3}"));
  EXPECT_THAT(seen[1], StartsWith("NODE_START n1 | {\"epoch_seconds\": "));
  EXPECT_THAT(seen[2], StartsWith("NODE_SUCCESS n1 | {\"duration_seconds\": 0.5, "
                                  "\"output_hash\": \"abc123\", \"epoch_seconds\": "));
  EXPECT_THAT(seen[2], HasSubstr(", \"output_summary\": {\"rows\": 10}}"));
  EXPECT_THAT(seen[3], StartsWith("NODE_START n2 | "));
  EXPECT_THAT(seen[4], StartsWith("NODE_FAILURE n2 | {\"duration_seconds\": 0.25, "
                                  "\"error\": \"boom\", \"epoch_seconds\": "));
  EXPECT_THAT(seen[5], StartsWith("WORKFLOW_COMPLETE | {\"workflow_id\": "));
}

TEST(WorkflowTest, LogHasProgressSnapshots) {
  test::TempDir dir;
  WorkflowOptions options = quiet();
  options.log_progress_interval = std::chrono::milliseconds(0);  // One per node.
  Workflow w(std::string(kId), dir.path(), 3, options);
  small_run(w);
  w.complete();
  std::vector<std::string> snapshots;
  for (const auto& line : test::read_lines(w.log_file())) {
    if (line.rfind("Executing ", 0) == 0) snapshots.push_back(line);
  }
  ASSERT_EQ(snapshots.size(), 3u);  // After n1, after n2, and the last one.
  EXPECT_THAT(snapshots[0], StartsWith("Executing step_04_populate_mpd [1/3] 33% "));
  EXPECT_THAT(snapshots[1], StartsWith("Executing step_04_populate_mpd [2/3] 66% "));
  EXPECT_THAT(snapshots[1], HasSubstr("1 failed"));
  EXPECT_THAT(snapshots[2], StartsWith("Executing step_04_populate_mpd [2/3] "));
}

TEST(WorkflowTest, ProgressSnapshotsAreRateLimitedWithAFinalOne) {
  test::TempDir dir;
  WorkflowOptions options = quiet();
  options.log_progress_interval = std::chrono::hours(24 * 365);
  Workflow w(std::string(kId), dir.path(), 10, options);
  for (int i = 0; i < 10; ++i) w.node_success("n" + std::to_string(i), 0.1);
  w.complete();
  std::vector<std::string> snapshots;
  for (const auto& line : test::read_lines(w.log_file())) {
    if (line.rfind("Executing ", 0) == 0) snapshots.push_back(line);
  }
  ASSERT_GE(snapshots.size(), 1u);
  EXPECT_LE(snapshots.size(), 2u);
  EXPECT_THAT(snapshots.back(), StartsWith("Executing step_04_populate_mpd [10/10] 100% "));
}

TEST(WorkflowTest, LogEndsWithSummaryBlock) {
  test::TempDir dir;
  Workflow w(std::string(kId), dir.path(), 3, quiet());
  small_run(w);
  w.complete(0.0123);
  auto lines = test::read_lines(w.log_file());
  std::size_t done = index_of(lines, " Workflow completed: step_04_populate_mpd");
  ASSERT_LT(done, lines.size());
  ASSERT_GE(done, 2u);
  ASSERT_LT(done + 8, lines.size());
  std::string out = dir.path().filename().string();
  EXPECT_EQ(lines[done - 2], "");
  EXPECT_EQ(lines[done - 1], kSeparator);
  EXPECT_EQ(lines[done + 1], " Nodes executed: 1/3");
  EXPECT_EQ(lines[done + 2], " Nodes failed: 1");
  EXPECT_TRUE(
      std::regex_match(lines[done + 3], std::regex(R"( Total time: \d+\.\d\ds \(\d+\.\d\dm\))")))
      << lines[done + 3];
  EXPECT_EQ(lines[done + 4], " Cost: $0.0123");
  EXPECT_EQ(lines[done + 5],
            " Trace file: " + out + "/traces/" + w.trace_file().filename().string());
  EXPECT_EQ(lines[done + 6], " Log file: " + out + "/logs/" + w.log_file().filename().string());
  EXPECT_EQ(lines[done + 7], kSeparator);
  EXPECT_EQ(lines[done + 8], "");
  EXPECT_EQ(test::read_file(w.log_file()).find("Log incomplete"), std::string::npos);
}

TEST(WorkflowTest, SummaryLeavesOutFailedAndCostWhenZero) {
  test::TempDir dir;
  Workflow w(std::string(kId), dir.path(), 3, quiet());
  w.node_success("n1", 0.5);
  w.complete(0.0);
  auto lines = test::read_lines(w.log_file());
  std::size_t done = index_of(lines, " Workflow completed: step_04_populate_mpd");
  ASSERT_LT(done + 3, lines.size());
  EXPECT_EQ(lines[done + 1], " Nodes executed: 1/3");
  EXPECT_THAT(lines[done + 2], StartsWith(" Total time: "));
  EXPECT_THAT(lines[done + 3], StartsWith(" Trace file: "));
  std::string log = test::read_file(w.log_file());
  EXPECT_EQ(log.find(" Nodes failed:"), std::string::npos);
  EXPECT_EQ(log.find(" Cost:"), std::string::npos);
}

TEST(WorkflowTest, LogEndsWithErrorBlockOnError) {
  test::TempDir dir;
  Workflow w(std::string(kId), dir.path(), 3, quiet());
  small_run(w);
  w.error("database gone");
  auto lines = test::read_lines(w.log_file());
  std::size_t failed = index_of(lines, " Workflow failed: step_04_populate_mpd");
  ASSERT_LT(failed + 5, lines.size());
  EXPECT_EQ(lines[failed - 1], kSeparator);
  EXPECT_EQ(lines[failed + 1], " Error: database gone");
  EXPECT_TRUE(std::regex_match(lines[failed + 2], std::regex(R"( Time: \d+\.\d\ds)")))
      << lines[failed + 2];
  EXPECT_EQ(lines[failed + 3], " Trace: " + dir.path().filename().string() + "/traces/" +
                                   w.trace_file().filename().string());
  EXPECT_EQ(lines[failed + 4], kSeparator);
  EXPECT_EQ(test::read_file(w.log_file()).find(" Workflow completed:"), std::string::npos);
}

TEST(WorkflowTest, AuditLogHasTheSameContentAsLog) {
  test::TempDir dir;
  WorkflowOptions options = quiet();
  options.log_progress_interval = std::chrono::milliseconds(0);
  Workflow w(std::string(kId), dir.path(), 3, options);
  small_run(w);
  w.complete(0.5);
  std::string log = test::read_file(w.log_file());
  EXPECT_THAT(log, HasSubstr(" Workflow completed: "));
  EXPECT_EQ(test::read_file(w.audit_log_file()), log);
}

// Python: Path(output_dir) drops a trailing slash, and relative_to(output_dir.parent) keeps the
// output folder's own name: " Trace file: out/traces/...".
TEST(WorkflowTest, TrailingSlashOnOutputFolderDoesNotChangeSummaryPaths) {
  test::TempDir dir;
  fs::path out = dir.path() / "out";
  Workflow w(std::string(kId), out.string() + "/", 3, quiet());
  w.complete();
  auto lines = test::read_lines(w.log_file());
  std::string trace_line = " Trace file: out/traces/" + w.trace_file().filename().string();
  std::string log_line = " Log file: out/logs/" + w.log_file().filename().string();
  EXPECT_NE(index_of(lines, trace_line), lines.size()) << "no line " << trace_line << " in:\n"
                                                       << test::read_file(w.log_file());
  EXPECT_NE(index_of(lines, log_line), lines.size()) << "no line " << log_line;
  EXPECT_NE(index_of(lines, "[DIR] Output: " + out.string()), lines.size())
      << "Path.absolute() drops the trailing slash";
}

// Python's relative_to is lexical: a symlinked output folder keeps its own name.
TEST(WorkflowTest, SymlinkedOutputFolderKeepsItsNameInSummaryPaths) {
  test::TempDir dir;
  fs::create_directory(dir.path() / "real");
  fs::create_directory_symlink(dir.path() / "real", dir.path() / "out");
  Workflow w(std::string(kId), dir.path() / "out", 3, quiet());
  w.complete();
  auto lines = test::read_lines(w.log_file());
  std::string trace_line = " Trace file: out/traces/" + w.trace_file().filename().string();
  EXPECT_NE(index_of(lines, trace_line), lines.size()) << "no line " << trace_line << " in:\n"
                                                       << test::read_file(w.log_file());
}

// ---- metadata_<NN>.json ----------------------------------------------------------------------

TEST(WorkflowTest, MetadataOnCompleteIsJsonDumpIndent2) {
  test::TempDir dir;
  Workflow w(std::string(kId), dir.path(), 3, quiet());
  small_run(w);
  w.complete(0.0123);
  std::string text = test::read_file(w.metadata_file());
  ASSERT_FALSE(text.empty());
  EXPECT_EQ(text.front(), '{');
  EXPECT_EQ(text.back(), '}');  // json.dump writes no final newline.
  EXPECT_EQ(top_level_keys(text),
            (std::vector<std::string>{"workflow_id", "step_number", "start_time", "end_time", "pid",
                                      "total_nodes", "nodes_completed", "nodes_failed",
                                      "total_time_seconds", "cumulative_cost_usd", "node_times",
                                      "log_file", "trace_file"}));
  auto lines = test::read_lines(w.metadata_file());
  ASSERT_GE(lines.size(), 3u);
  for (std::size_t i = 1; i + 1 < lines.size(); ++i) {
    EXPECT_THAT(lines[i], StartsWith("  ")) << i;
    EXPECT_NE(lines[i][2], ' ') << "nested lines only inside node_times: " << lines[i];
    if (lines[i].rfind("  \"node_times\"", 0) == 0) i += 2;
  }
  EXPECT_THAT(text, HasSubstr("  \"workflow_id\": \"step_04_populate_mpd\",\n"
                              "  \"step_number\": \"04\",\n"));
  EXPECT_THAT(text, HasSubstr("  \"node_times\": {\n    \"n1\": 0.5,\n    \"n2\": 0.25\n  },\n"));
  EXPECT_THAT(text, HasSubstr("  \"cumulative_cost_usd\": 0.0123,\n"));

  auto meta = json::parse(text);
  EXPECT_EQ(meta["pid"].get<long long>(), static_cast<long long>(::getpid()));
  EXPECT_EQ(meta["total_nodes"], 3);
  EXPECT_EQ(meta["nodes_completed"], 1);
  EXPECT_EQ(meta["nodes_failed"], 1);
  EXPECT_EQ(meta["log_file"], w.audit_log_file().string());
  EXPECT_EQ(meta["trace_file"], w.audit_trace_file().string());
  std::regex iso(R"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6})");
  EXPECT_TRUE(std::regex_match(meta["start_time"].get<std::string>(), iso));
  EXPECT_TRUE(std::regex_match(meta["end_time"].get<std::string>(), iso));
  EXPECT_LE(meta["start_time"].get<std::string>(), meta["end_time"].get<std::string>());
  auto complete = json::parse(raw_events(w.trace_file(), "workflow_complete").at(0));
  EXPECT_EQ(meta["total_time_seconds"], complete["total_time_seconds"]);
  EXPECT_FALSE(fs::exists(w.metadata_file().string() + ".tmp"));
}

TEST(WorkflowTest, MetadataOnErrorHasErrorInsteadOfCost) {
  test::TempDir dir;
  Workflow w(std::string(kId), dir.path(), 3, quiet());
  w.error("database gone");
  std::string text = test::read_file(w.metadata_file());
  EXPECT_EQ(top_level_keys(text),
            (std::vector<std::string>{"workflow_id", "step_number", "start_time", "end_time", "pid",
                                      "total_nodes", "nodes_completed", "nodes_failed",
                                      "total_time_seconds", "error", "node_times", "log_file",
                                      "trace_file"}));
  EXPECT_THAT(text, HasSubstr("  \"error\": \"database gone\",\n  \"node_times\": {},\n"));
  for (const auto& line : test::read_lines(w.metadata_file())) {
    if (line != "{" && line != "}") {
      EXPECT_THAT(line, StartsWith("  "));
    }
  }
}

TEST(WorkflowTest, CompleteAfterErrorOrTwiceWritesNothingMore) {
  test::TempDir dir;
  Workflow w(std::string(kId), dir.path(), 3, quiet());
  small_run(w);
  w.error("first");
  std::vector<fs::path> files = {w.log_file(), w.trace_file(), w.audit_log_file(),
                                 w.audit_trace_file(), w.metadata_file()};
  std::vector<std::string> before;
  for (const auto& f : files) before.push_back(test::read_file(f));
  w.complete(5.0);
  w.complete(6.0);
  w.error("second");
  for (std::size_t i = 0; i < files.size(); ++i) {
    EXPECT_EQ(test::read_file(files[i]), before[i]) << files[i];
  }
  EXPECT_EQ(json::parse(before[4])["error"], "first");

  test::TempDir dir2;
  Workflow twice(std::string(kId), dir2.path(), 1, quiet());
  twice.complete(1.0);
  std::string trace = test::read_file(twice.trace_file());
  std::string meta = test::read_file(twice.metadata_file());
  twice.complete(2.0);
  EXPECT_EQ(test::read_file(twice.trace_file()), trace);
  EXPECT_EQ(test::read_file(twice.metadata_file()), meta);
  EXPECT_EQ(json::parse(meta)["cumulative_cost_usd"], 1.0);
}

// ---- Failure modes ---------------------------------------------------------------------------

TEST(WorkflowTest, UnwritableOutputFolderThrowsErrorNamingThePathAndCreatesNothing) {
  test::TempDir dir;
  fs::path blocker = dir.path() / "blocker";
  { std::ofstream(blocker) << "a file"; }
  fs::path out = blocker / "out";
  try {
    Workflow w(std::string(kId), out, 3, quiet());
    ADD_FAILURE() << "no exception";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr(out.string()));
  }
  EXPECT_THAT(files_in(dir.path()), ElementsAre("blocker"));
  EXPECT_TRUE(fs::is_regular_file(blocker));
  EXPECT_EQ(test::read_file(blocker), "a file");
}

TEST(WorkflowTest, FileThatCannotBeOpenedThrowsErrorAndLeaksNoDescriptors) {
  test::TempDir dir;
  fs::create_directories(dir.path() / "audit" / "step_04" / "trace_04.jsonl");  // A folder.
  std::size_t fds_before = open_fd_count();
  try {
    Workflow w(std::string(kId), dir.path(), 3, quiet());
    ADD_FAILURE() << "no exception";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(),
                HasSubstr((dir.path() / "audit" / "step_04" / "trace_04.jsonl").string()));
  }
  EXPECT_EQ(open_fd_count(), fds_before) << "descriptors of the files opened before leaked";
}

TEST(WorkflowTest, DiskFullIsReportedOnceAndTheOtherFilesStayComplete) {
  test::TempDir dir;
  fs::create_directories(dir.path() / "audit" / "step_04");
  fs::create_symlink("/dev/full", dir.path() / "audit" / "step_04" / "log_04.log");

  std::mutex mu;
  std::vector<std::string> errors;
  WorkflowOptions options = quiet();
  options.on_error = [&](std::string_view message) {
    std::lock_guard lock(mu);
    errors.emplace_back(message);
  };
  std::unique_ptr<Workflow> w;
  ASSERT_NO_THROW(w = std::make_unique<Workflow>(std::string(kId), dir.path(), 5, options));
  for (int i = 0; i < 5; ++i) {
    std::string id = "n" + std::to_string(i);
    w->node_start(id, i);
    if (i == 3) {
      w->node_failure(id, "bad", 0.1);
    } else {
      w->node_success(id, 0.1 * i, hash_output(i), R"({"i": 1})");
    }
  }
  w->complete(0.25);

  ASSERT_EQ(errors.size(), 1u);
  EXPECT_THAT(errors[0], HasSubstr(w->audit_log_file().string()));
  EXPECT_THAT(errors[0], HasSubstr("No space left on device"));
  EXPECT_GT(w->failed_writes(), 0u);
  EXPECT_EQ(w->nodes_completed(), 4);
  EXPECT_EQ(w->nodes_failed(), 1);

  auto events = parse_jsonl(w->trace_file());
  ASSERT_EQ(events.size(), 12u);  // start, 5 x (node_start + end), complete.
  EXPECT_EQ(events.front()["event_type"], "workflow_start");
  EXPECT_EQ(events.back()["event_type"], "workflow_complete");
  EXPECT_EQ(test::read_file(w->audit_trace_file()), test::read_file(w->trace_file()));

  std::string log = test::read_file(w->log_file());
  EXPECT_THAT(log, HasSubstr("[RUN] Executing: step_04_populate_mpd"));
  EXPECT_THAT(log, HasSubstr("] NODE_SUCCESS n4 | "));
  EXPECT_THAT(log, HasSubstr("] NODE_FAILURE n3 | "));
  EXPECT_THAT(log, HasSubstr(" Workflow completed: step_04_populate_mpd"));
  EXPECT_THAT(log, HasSubstr(" Log incomplete"));
  EXPECT_THAT(log, HasSubstr("] WORKFLOW_COMPLETE | "));

  auto meta = json::parse(test::read_file(w->metadata_file()));
  EXPECT_EQ(meta["nodes_completed"], 4);
  EXPECT_EQ(meta["cumulative_cost_usd"], 0.25);
  EXPECT_TRUE(fs::is_symlink(w->audit_log_file()));
  w.reset();
  EXPECT_EQ(errors.size(), 1u);
}

// ---- Parallel nodes --------------------------------------------------------------------------

TEST(WorkflowTest, ParallelNodesAreAllCountedAndEveryLineIsWhole) {
  test::TempDir dir;
  constexpr int kThreads = 4;
  constexpr int kPerThread = 25;
  WorkflowOptions options = quiet();
  options.log_progress_interval = std::chrono::milliseconds(0);
  Workflow w(std::string(kId), dir.path(), kThreads * kPerThread, options);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&w, t] {
      for (int i = 0; i < kPerThread; ++i) {
        int index = t * kPerThread + i;
        std::string id = "t" + std::to_string(t) + "_n" + std::to_string(i);
        w.node_start(id, index);
        w.node_success(id, 0.001 * index, hash_output(index), R"({"t": 1})");
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(w.nodes_completed(), kThreads * kPerThread);
  w.complete();

  auto events = parse_jsonl(w.trace_file());
  EXPECT_EQ(events.size(), 2u + 2u * kThreads * kPerThread);
  std::set<std::string> succeeded;
  std::set<int> indexes;
  for (const auto& e : events) {
    if (e["event_type"] == "node_success") succeeded.insert(e["node_id"].get<std::string>());
    if (e["event_type"] == "node_start") indexes.insert(e["node_index"].get<int>());
  }
  EXPECT_EQ(succeeded.size(), static_cast<std::size_t>(kThreads * kPerThread));
  EXPECT_EQ(indexes.size(), static_cast<std::size_t>(kThreads * kPerThread));
  EXPECT_EQ(raw_events(w.trace_file(), "node_success").size(),
            static_cast<std::size_t>(kThreads * kPerThread));
  EXPECT_EQ(test::read_file(w.audit_trace_file()), test::read_file(w.trace_file()));

  // Every log line is whole: header/summary text, a snapshot, or an event with JSON details.
  for (const auto& line : test::read_lines(w.log_file())) {
    if (line.rfind("[20", 0) == 0) {
      auto bar = line.find(" | ");
      ASSERT_NE(bar, std::string::npos) << line;
      EXPECT_TRUE(json::accept(line.substr(bar + 3))) << line;
    } else if (line.rfind("Executing ", 0) == 0) {
      EXPECT_TRUE(std::regex_match(line, std::regex(R"(Executing \S+ \[\d+/100\] .*)"))) << line;
    }
  }
  auto meta = json::parse(test::read_file(w.metadata_file()));
  EXPECT_EQ(meta["nodes_completed"], kThreads * kPerThread);
  EXPECT_EQ(meta["node_times"].size(), static_cast<std::size_t>(kThreads * kPerThread));
  EXPECT_EQ(w.failed_writes(), 0u);
}

// ---- Hashes ----------------------------------------------------------------------------------

TEST(WorkflowTest, OutputHashTestVectorsAreWrittenAsGiven) {
  test::TempDir dir;
  Workflow w(std::string(kId), dir.path(), 2, quiet());
  w.node_success("dict", 0.1, hash_output_json(R"({"b":1,"a":2})"), R"({"b":1,"a":2})");
  w.node_success("text", 0.1, hash_output("abc"));
  auto lines = raw_events(w.trace_file(), "node_success");
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_THAT(lines[0], HasSubstr(R"("output_hash": "21501dbaf73f5223")"));
  EXPECT_THAT(lines[1], HasSubstr(R"("output_hash": "ba7816bf8f01cfea")"));
  EXPECT_THAT(test::read_file(w.log_file()), HasSubstr(R"("output_hash": "21501dbaf73f5223")"));
}

// ---- Bad input -------------------------------------------------------------------------------

TEST(WorkflowTest, EmptyWorkflowIdThrowsAndCreatesNothing) {
  test::TempDir dir;
  EXPECT_THROW(Workflow("", dir.path() / "out", 3, quiet()), Error);
  EXPECT_FALSE(fs::exists(dir.path() / "out"));
}

TEST(WorkflowTest, NegativeTotalNodesThrowsNamingTheValue) {
  test::TempDir dir;
  try {
    Workflow w(std::string(kId), dir.path() / "out", -1, quiet());
    ADD_FAILURE() << "no exception";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("-1"));
  }
  EXPECT_FALSE(fs::exists(dir.path() / "out"));
  EXPECT_NO_THROW(Workflow(std::string(kId), dir.path() / "zero", 0, quiet()));
}

TEST(WorkflowTest, OutputSummaryThatIsNotJsonThrowsAndFilesStayValid) {
  test::TempDir dir;
  Workflow w(std::string(kId), dir.path(), 3, quiet());
  w.node_start("n1", 0);
  for (std::string_view bad :
       {"{not json", R"({"a": 1)", R"({"a": 1} trailing)", "   ", "{'a': 1}"}) {
    EXPECT_THROW(w.node_success("n1", 0.5, "h", bad), Error) << bad;
  }
  EXPECT_EQ(w.nodes_completed(), 0);
  w.node_success("n1", 0.5, "h", R"({"a": 1})");
  w.complete();

  auto events = parse_jsonl(w.trace_file());
  ASSERT_EQ(events.size(), 4u);  // start, node_start, node_success, complete.
  EXPECT_EQ(events[2]["output_summary"]["a"], 1);
  EXPECT_EQ(events[3]["nodes_completed"], 1);
  EXPECT_EQ(events[3]["node_times"].size(), 1u);
  for (const auto& line : test::read_lines(w.log_file())) {
    auto bar = line.find(" | ");
    if (line.rfind("[20", 0) == 0 && bar != std::string::npos) {
      EXPECT_TRUE(json::accept(line.substr(bar + 3))) << line;
    }
  }
  EXPECT_EQ(json::parse(test::read_file(w.metadata_file()))["nodes_completed"], 1);
}

// ---- Printing --------------------------------------------------------------------------------

TEST(WorkflowTest, PrintsHeaderAndSummaryToStdout) {
  test::TempDir dir;
  std::string printed;
  {
    StdoutCapture capture;
    WorkflowOptions options;
    options.print = true;
    Workflow w(std::string(kId), dir.path(), 3, options);
    small_run(w);
    w.complete(0.0123);
    printed = capture.finish();
  }
  EXPECT_THAT(printed, HasSubstr("\n" + kSeparator +
                                 "\n[RUN] Executing: step_04_populate_mpd\n"
                                 "[DIR] Output: " +
                                 dir.path().string() + "\n PID: "));
  EXPECT_THAT(printed, HasSubstr("\n Workflow completed: step_04_populate_mpd\n"
                                 " Nodes executed: 1/3\n Nodes failed: 1\n Total time: "));
  EXPECT_THAT(printed, HasSubstr(" Cost: $0.0123\n Trace file: "));
  EXPECT_EQ(printed.find("NODE_SUCCESS"), std::string::npos);  // Events go to the files only.
}

TEST(WorkflowTest, PrintsNothingWhenPrintIsOff) {
  test::TempDir dir;
  std::string printed;
  {
    StdoutCapture capture;
    Workflow w(std::string(kId), dir.path(), 3, quiet());
    small_run(w);
    w.complete(0.5);
    printed = capture.finish();
  }
  EXPECT_EQ(printed, "");
}

}  // namespace
}  // namespace stagelog
