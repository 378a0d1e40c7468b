#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace stagelog::server {

// What `stagelog serve --alerts FILE` watches for, and where it says so. The file is JSON:
//
//   {"webhooks": [{"name": "ops", "url": "http://127.0.0.1:9000/hook",
//                  "headers": {"Authorization": "Bearer abc"}},
//                 {"name": "chat", "url": "https://chat.example/hook", "ca_file": "ca.pem"}],
//    "rules": [
//      {"name": "judge-failing", "type": "repeated_failures", "stage": "JUDGE",
//       "count": 5, "window": "10m", "cooldown": "30m"},
//      {"name": "stuck", "type": "stuck"},            // a stage or task open past its threshold
//      {"name": "silent", "type": "silent"},          // heartbeats stopped
//      {"name": "crashed", "type": "crashed"},        // the process is gone without a shutdown
//      {"name": "agent-slow", "type": "slow_stage", "stage": "AGENT", "factor": 2,
//       "min_count": 20},
//      {"name": "daily", "type": "report", "every": "24h", "at": "08:00",
//       "time_zone": "+01:00", "format": "markdown", "ui_url": "https://logs.example/",
//       "webhooks": ["chat"]}],
//    "retry": {"attempts": 5, "first_delay": "1s"},
//    "evaluate_every": "1m"}
//
// Every rule fires once per incident: an incident is the rule with its stage (and worker, for
// the watchdog's rules), and it does not fire again before its cooldown has passed. Each alert
// is POSTed as JSON to every webhook (or those the rule names in "webhooks"), retried with
// doubling delays until a 2xx answer; its "alert_id" (also the X-Stagelog-Alert-Id header)
// stays the same across retries, so a receiver can drop a duplicate.
//
// A report rule fires on a schedule instead: at every "at" (a time of day in its time zone),
// and then every "every" after it, it posts the report of the period that just ended (its
// length is "every") to its webhooks, as {"text": "<Markdown>"} (format "markdown", what a
// Slack-compatible incoming webhook takes) or as the report's JSON (format "json", with
// "report_id"). A period's report is sent once, even by several servers sharing one store and
// across restarts: the server that sends it first records it in the store; one started after
// a report was due sends it late. Its X-Stagelog-Alert-Id is "<rule>/<period end>".
enum class AlertType { RepeatedFailures, Stuck, Silent, Crashed, SlowStage, Report };

std::string_view alert_type_name(AlertType type) noexcept;

struct Webhook {
  std::string name;
  std::string url;  // http://host:port/path or https://host:port/path.
  std::vector<std::pair<std::string, std::string>> headers;
  // https only: a PEM file of the CAs the webhook's certificate must chain to; empty: the
  // system's CAs.
  std::string ca_file;
};

struct AlertRule {
  std::string name;
  AlertType type = AlertType::RepeatedFailures;
  // repeated_failures, slow_stage: the stage ("" or absent: each stage on its own).
  std::string stage;
  // repeated_failures: `count` failed steps of the stage within `window`.
  std::int64_t count = 5;
  std::chrono::nanoseconds window = std::chrono::minutes(10);
  // slow_stage: its p95 over the last hour above factor x its p95 over the 7 days before,
  // judged once the last hour has min_count ended steps.
  double factor = 2.0;
  std::int64_t min_count = 20;
  std::chrono::nanoseconds cooldown = std::chrono::minutes(30);
  std::vector<std::string> webhooks;  // Names; empty: every webhook.
  // report: every `every` (at least a minute), starting at `at_minute` (minutes after
  // midnight) in a time zone `utc_offset_minutes` east of UTC ("UTC", "+02:00", "-05:30");
  // "markdown" or "json"; links to executions start with ui_url ("" : relative links).
  std::chrono::nanoseconds every = std::chrono::hours(24);
  int at_minute = 0;
  int utc_offset_minutes = 0;
  std::string format = "markdown";
  std::string ui_url;
};

struct AlertConfig {
  std::vector<Webhook> webhooks;
  std::vector<AlertRule> rules;
  int attempts = 5;  // Deliveries tried per alert and webhook, the first one included.
  std::chrono::milliseconds first_delay{1000};  // Before the first retry; doubled each time.
  std::chrono::nanoseconds evaluate_every = std::chrono::minutes(1);  // slow_stage rules.

  bool empty() const noexcept { return rules.empty(); }
};

// Parses the file's text. Throws stagelog::Error naming the key and what is wrong with it:
// "rules[1].count: expected a whole number from 1, got 0".
AlertConfig parse_alert_config(std::string_view json);
// Reads and parses a file; the Error also names the file.
AlertConfig load_alert_config(const std::filesystem::path& path);

}  // namespace stagelog::server
