// The report (src/server/report.hpp): its three formats on a fixed data set against golden
// files, the HTML through tidy, and the scheduled report rule reaching a real webhook receiver
// once per period across restarts and with two servers sharing a store.

#include "server/report.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "ndjson_receiver.hpp"
#include "server/alerts.hpp"
#include "stagelog/server/alerts.hpp"
#include "stagelog/store/sqlite_store.hpp"
#include "temp_dir.hpp"

namespace stagelog {
namespace {

using test::Receiver;
using test::TempDir;
using ::testing::HasSubstr;
using ::testing::Not;
using Json = nlohmann::ordered_json;

constexpr std::int64_t kSecond = 1'000'000'000;
constexpr std::int64_t kHour = 3600 * kSecond;
// 2026-01-05T08:00:00Z, the fixed "now" of the golden reports.
constexpr std::int64_t kNow = std::int64_t{1767600000} * kSecond;
constexpr std::int64_t kExpires = kNow + 400 * 24 * kHour;

std::string iso(std::int64_t ns) {
  std::time_t s = ns / kSecond;
  std::tm tm{};
  gmtime_r(&s, &tm);
  char buf[40];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S.000Z", &tm);
  return buf;
}

struct StepSpec {
  const char* step;
  std::int64_t after_s;  // Since the start.
  const char* status;
  const char* error = nullptr;
};

void put(store::Store& store, const std::string& id, std::int64_t started,
         std::vector<StepSpec> steps) {
  Json doc = Json::object();
  doc["tracking_id"] = id;
  doc["execution_id"] = "exec_" + id;
  doc["started_at"] = iso(started);
  doc["company"] = "Acme Corp";
  Json list = Json::array();
  for (const StepSpec& s : steps) {
    Json step = Json::object();
    step["step"] = s.step;
    step["timestamp"] = iso(started + s.after_s * kSecond);
    step["status"] = s.status;
    step["message"] = std::string(s.step) + " " + s.status;
    if (s.error != nullptr) step["error_details"] = s.error;
    list.push_back(std::move(step));
  }
  doc["steps"] = std::move(list);
  std::string error;
  auto execution = parse_execution(doc.dump(), &error);
  ASSERT_TRUE(execution) << error;
  ASSERT_TRUE(store.put_execution(*execution, kExpires));
}

// Four executions in the 24 hours before kNow (two failed, one still running), two in the 24
// hours before those (one failed).
void seed(store::Store& store) {
  put(store, "job-a", kNow - 20 * kHour, {{"fetch", 1, "completed"}, {"AGENT", 14, "completed"}});
  put(store, "job-b", kNow - 10 * kHour,
      {{"fetch", 2, "completed"}, {"AGENT", 32, "failed", "timeout after 480000ms"}});
  put(store, "job-c", kNow - 5 * kHour,
      {{"fetch", 1, "completed"}, {"AGENT", 26, "failed", "timeout after 120000ms"}});
  put(store, "job-d", kNow - 1 * kHour, {{"fetch", 1, "completed"}, {"AGENT", 2, "in_progress"}});
  put(store, "job-p1", kNow - 30 * kHour, {{"fetch", 1, "completed"}, {"AGENT", 11, "completed"}});
  put(store, "job-p2", kNow - 40 * kHour,
      {{"fetch", 3, "completed"}, {"JUDGE", 8, "failed", "HTTP 503 from judge-7 | retry"}});
}

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// Compares with tests/integration/data/report/<name>; STAGELOG_UPDATE_GOLDEN=1 writes it.
void expect_golden(const std::string& name, const std::string& got) {
  const std::filesystem::path path =
      std::filesystem::path(STAGELOG_TEST_DATA) / "integration/data/report" / name;
  if (const char* update = std::getenv("STAGELOG_UPDATE_GOLDEN"); update && *update == '1') {
    std::ofstream(path, std::ios::binary) << got;
  }
  EXPECT_EQ(got, read_file(path)) << "golden file " << path;
}

detail::Report golden_report(store::Store& store) {
  detail::ReportQuery query;
  query.since_ns = kNow - 24 * kHour;
  query.until_ns = kNow;
  query.ui_base = "http://logs.example:8080/";
  auto report = detail::build_report(store, query, kNow);
  EXPECT_TRUE(report) << report.error().what();
  report->workers = std::vector<detail::WorkerIncident>{
      {kNow - 3 * kHour, "crashed", "T0_01", "AGENT", "process 4242 ended without a shutdown"},
      {kNow - 2 * kHour, "stuck", "T0_02", "JUDGE", "JUDGE running for 10m 0s (limit 5m)"}};
  report->alerts = std::vector<detail::FiredAlert>{
      {kNow - 5 * kHour, "agent-failing", "repeated_failures",
       "2 failures of stage AGENT within 600.0s (rule agent-failing)"}};
  return *report;
}

TEST(ReportTest, CountsTheFixedDataSetAgainstThePeriodBefore) {
  TempDir dir;
  auto store = store::open_sqlite_store(dir.path() / "stagelog.db");
  seed(*store);
  detail::Report r = golden_report(*store);
  EXPECT_EQ(r.current.executions, 4);
  EXPECT_EQ(r.current.failed, 2);
  EXPECT_EQ(r.current.in_progress, 1);
  EXPECT_EQ(r.previous.executions, 2);
  EXPECT_EQ(r.previous.failed, 1);
  ASSERT_EQ(r.buckets.size(), 24u);
  EXPECT_EQ(r.buckets[4].executions, 1);  // job-a, 20 hours before.
  EXPECT_EQ(r.buckets[14].failed, 1);     // job-b.
  ASSERT_FALSE(r.slowest.empty());
  EXPECT_EQ(r.slowest[0].stage, "AGENT");
  ASSERT_TRUE(r.slowest[0].previous_p95_ms);
  ASSERT_EQ(r.failures.size(), 1u);
  EXPECT_EQ(r.failures[0].count, 2);
  EXPECT_EQ(r.failures[0].example_tracking_id, "job-c");  // The most recent.
}

TEST(ReportTest, MarkdownJsonAndHtmlMatchTheirGoldenFiles) {
  TempDir dir;
  auto store = store::open_sqlite_store(dir.path() / "stagelog.db");
  seed(*store);
  detail::Report r = golden_report(*store);
  expect_golden("report.md", detail::report_markdown(r));
  expect_golden("report.json", detail::report_json(r));
  expect_golden("report.html", detail::report_html(r));

  // From the store alone: no worker nor alert section to fill, and it says so.
  r.workers.reset();
  r.alerts.reset();
  expect_golden("report_store_only.md", detail::report_markdown(r));
}

TEST(ReportTest, HtmlPassesTidyAndHasNoScript) {
  if (std::system("command -v tidy >/dev/null 2>&1") != 0) {
    GTEST_SKIP() << "tidy is not on PATH (scripts/setup installs it)";
  }
  TempDir dir;
  auto store = store::open_sqlite_store(dir.path() / "stagelog.db");
  seed(*store);
  const std::string html = detail::report_html(golden_report(*store));
  EXPECT_THAT(html, Not(HasSubstr("<script")));
  EXPECT_THAT(html, HasSubstr("<svg"));
  EXPECT_THAT(html, HasSubstr(R"(href="http://logs.example:8080/#/executions/job-c")"));
  const auto path = dir.path() / "report.html";
  std::ofstream(path, std::ios::binary) << html;
  const std::string command =
      "tidy -errors -quiet " + path.string() + " > " + (dir.path() / "tidy.txt").string() + " 2>&1";
  int status = std::system(command.c_str());
  EXPECT_EQ(status, 0) << read_file(dir.path() / "tidy.txt");
}

TEST(ReportTest, AnEmptyStoreIsAReportOfNothing) {
  TempDir dir;
  auto store = store::open_sqlite_store(dir.path() / "stagelog.db");
  detail::ReportQuery query{kNow - 7 * 24 * kHour, kNow, 5, 5, ""};
  auto r = detail::build_report(*store, query, kNow);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->buckets.size(), 7u);  // Days beyond two days.
  const std::string md = detail::report_markdown(*r);
  EXPECT_THAT(md, HasSubstr("No stage ended in the period."));
  EXPECT_THAT(md, HasSubstr("No step failed in the period."));
  EXPECT_EQ(Json::parse(detail::report_json(*r))["current"]["failure_rate"], 0.0);
}

// ---- The report rule ------------------------------------------------------------------------

server::AlertConfig report_config(const Receiver& receiver, const std::string& format) {
  return server::parse_alert_config(
      R"({"webhooks": [{"name": "chat", "url": ")" + receiver.url() +
      R"(/hook"}], "rules": [{"name": "daily", "type": "report", "every": "24h", "at": "08:00",
          "time_zone": "+01:00", "format": ")" +
      format + R"(", "ui_url": "http://ui.example"}], "retry": {"attempts": 1}})");
}

// A server's alert engine on the store file: made, asked to send the reports due at `at`,
// given until the receiver has `expect` requests, and stopped. Anything it had still queued at
// the stop (a report sent twice) is reported to `errors`.
struct Servers {
  std::filesystem::path db;
  server::AlertConfig config;
  std::mutex mu;
  std::vector<std::string> errors;

  detail::AlertEngine::Hooks hooks(std::int64_t at) {
    return {[at] { return at; },
            [this](std::string_view m) {
              std::lock_guard lock(mu);
              errors.emplace_back(m);
            },
            nullptr, nullptr};
  }
  std::vector<std::string> taken_errors() {
    std::lock_guard lock(mu);
    return std::exchange(errors, {});
  }
};

TEST(ScheduledReportTest, PeriodsEndAtTheRulesTimeOfDayInItsZone) {
  server::AlertRule rule;
  rule.type = server::AlertType::Report;
  rule.at_minute = 8 * 60;
  rule.utc_offset_minutes = 60;  // 08:00 at +01:00 is 07:00 UTC.
  EXPECT_EQ(detail::AlertEngine::report_due(rule, kNow), kNow - kHour);
  EXPECT_EQ(detail::AlertEngine::report_due(rule, kNow - kHour), kNow - kHour);
  EXPECT_EQ(detail::AlertEngine::report_due(rule, kNow - kHour - 1), kNow - 25 * kHour);
  rule.every = std::chrono::hours(1);
  rule.at_minute = 30;
  rule.utc_offset_minutes = 0;
  EXPECT_EQ(detail::AlertEngine::report_due(rule, kNow), kNow - kHour / 2);
}

TEST(ScheduledReportTest, AWebhookGetsEachPeriodsReportOnceAcrossTwoRestarts) {
  TempDir dir;
  Receiver receiver(0, test::kDefaultPatience, "/hook");
  Servers servers{dir.path() / "stagelog.db", report_config(receiver, "markdown"), {}, {}};
  {
    auto store = store::open_sqlite_store(servers.db);
    seed(*store);
  }
  const std::int64_t day1 = kNow - 30 * 60 * kSecond;  // 07:30Z: the 07:00Z report is due.
  {
    auto store = store::open_sqlite_store(servers.db);
    detail::AlertEngine engine(servers.config, *store, servers.hooks(day1));
    engine.send_reports(day1);
    ASSERT_TRUE(receiver.wait_for_requests(1));
  }
  EXPECT_THAT(servers.taken_errors(), ::testing::IsEmpty());
  std::vector<test::Received> got = receiver.requests();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].header("X-Stagelog-Alert-Id"), "daily/2026-01-05T07:00:00.000Z");
  Json body = Json::parse(got[0].lines.at(0));
  ASSERT_TRUE(body.contains("text"));
  const std::string text = body["text"].get<std::string>();
  EXPECT_THAT(text, HasSubstr("# stagelog report: the last 24h"));
  EXPECT_THAT(text, HasSubstr("2026-01-04 07:00 UTC to 2026-01-05 07:00 UTC"));
  EXPECT_THAT(text, HasSubstr("](http://ui.example/#/executions/job-c)"));

  // Restart 1, later in the same period: it was sent, the store says so.
  const std::int64_t later = kNow;
  {
    auto store = store::open_sqlite_store(servers.db);
    detail::AlertEngine engine(servers.config, *store, servers.hooks(later));
    engine.send_reports(later);
  }  // A report queued would be dropped here, and said.
  EXPECT_THAT(servers.taken_errors(), ::testing::IsEmpty());
  EXPECT_EQ(receiver.requests().size(), 1u);

  // Restart 2, the next day: that day's report, once.
  const std::int64_t day2 = day1 + 24 * kHour;
  {
    auto store = store::open_sqlite_store(servers.db);
    detail::AlertEngine engine(servers.config, *store, servers.hooks(day2));
    engine.send_reports(day2);
    engine.send_reports(day2 + kHour);
    ASSERT_TRUE(receiver.wait_for_requests(2));
  }
  EXPECT_THAT(servers.taken_errors(), ::testing::IsEmpty());
  got = receiver.requests();
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[1].header("X-Stagelog-Alert-Id"), "daily/2026-01-06T07:00:00.000Z");
}

TEST(ScheduledReportTest, TwoServersSharingAStoreSendItOnce) {
  TempDir dir;
  Receiver receiver(0, test::kDefaultPatience, "/hook");
  Servers servers{dir.path() / "stagelog.db", report_config(receiver, "json"), {}, {}};
  const std::int64_t at = kNow - 30 * 60 * kSecond;
  {
    auto store_a = store::open_sqlite_store(servers.db);
    auto store_b = store::open_sqlite_store(servers.db);
    seed(*store_a);
    detail::AlertEngine a(servers.config, *store_a, servers.hooks(at));
    detail::AlertEngine b(servers.config, *store_b, servers.hooks(at));
    a.send_reports(at);
    b.send_reports(at);
    ASSERT_TRUE(receiver.wait_for_requests(1));
  }
  EXPECT_THAT(servers.taken_errors(), ::testing::IsEmpty());
  std::vector<test::Received> got = receiver.requests();
  ASSERT_EQ(got.size(), 1u);
  Json body = Json::parse(got[0].lines.at(0));
  EXPECT_EQ(body["report_id"], "daily/2026-01-05T07:00:00.000Z");
  EXPECT_EQ(body["rule"], "daily");
  EXPECT_EQ(body["current"]["executions"], 3);  // job-d started at 07:00Z: the next period.
  EXPECT_EQ(body["failure_patterns"][0]["example_link"], "http://ui.example/#/executions/job-c");
}

TEST(ScheduledReportTest, ABadReportRuleSaysWhichKeyAndWhy) {
  auto error_of = [](const std::string& rule) {
    try {
      server::parse_alert_config(R"({"rules": [)" + rule + "]}");
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("(no error)");
  };
  EXPECT_THAT(error_of(R"({"name": "r", "type": "report", "at": "8am"})"),
              HasSubstr("rules[0].at: expected a time of day like \"08:00\""));
  EXPECT_THAT(error_of(R"({"name": "r", "type": "report", "at": "24:00"})"),
              HasSubstr("rules[0].at"));
  EXPECT_THAT(error_of(R"({"name": "r", "type": "report", "time_zone": "Europe/Paris"})"),
              HasSubstr("rules[0].time_zone: expected \"UTC\" or an offset"));
  EXPECT_THAT(error_of(R"({"name": "r", "type": "report", "every": "30s"})"),
              HasSubstr("rules[0].every: expected a minute or more"));
  EXPECT_THAT(error_of(R"({"name": "r", "type": "report", "format": "pdf"})"),
              HasSubstr("rules[0].format: expected markdown or json"));
  EXPECT_THAT(error_of(R"({"name": "r", "type": "report", "count": 3})"),
              HasSubstr("rules[0].count: unknown key"));
  EXPECT_THAT(error_of(R"({"name": "r", "type": "report", "ui_url": "ftp://x"})"),
              HasSubstr("rules[0].ui_url"));
  server::AlertConfig ok = server::parse_alert_config(
      R"({"rules": [{"name": "r", "type": "report", "time_zone": "-05:30", "at": "23:45"}]})");
  EXPECT_EQ(ok.rules[0].utc_offset_minutes, -330);
  EXPECT_EQ(ok.rules[0].at_minute, 23 * 60 + 45);
  EXPECT_EQ(ok.rules[0].every, std::chrono::hours(24));
}

}  // namespace
}  // namespace stagelog
