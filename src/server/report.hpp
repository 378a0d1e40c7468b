#pragma once

// The report a team lead reads in a minute (issue 25): executions and their failure rate
// against the period before of the same length, the slowest stages and how they changed, the
// top failure patterns with an example tracking id each, the workers that crashed, went silent
// or were stuck, and the alerts fired. Computed from the Store (build_report), then rendered
// as Markdown (chat), JSON (machines) or one self-contained HTML page (mail: inline CSS, two
// inline SVG charts, no script).
//
// Threads: build_report() blocks on the store; the rest is pure. ReportIncidents is
// thread-safe.

#include <cstddef>
#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "stagelog/event.hpp"
#include "stagelog/result.hpp"
#include "stagelog/store/store.hpp"

namespace stagelog::detail {

// A worker the watchdog reported: crashed, silent or stuck (a stage or task open too long).
struct WorkerIncident {
  std::int64_t at_ns = 0;
  std::string kind;  // crashed | silent | stuck
  std::string worker;
  std::string stage;  // "" when none.
  std::string message;
};

// An alert a rule fired (its summary as the alert says it).
struct FiredAlert {
  std::int64_t at_ns = 0;
  std::string rule;
  std::string type;
  std::string summary;
};

// The incident a watchdog report is, by its "rule" field (crashed, silent, stuck_stage,
// stuck_task); nullopt for the watchdog's other reports.
std::optional<WorkerIncident> worker_incident(const Event& report);

// What the running server saw that the store does not keep: the watchdog's worker incidents,
// the last kMax of them. Fed from the live thread, read by the report.
class ReportIncidents {
 public:
  static constexpr std::size_t kMax = 1000;
  void add(WorkerIncident incident);
  std::vector<WorkerIncident> between(std::int64_t since_ns, std::int64_t until_ns) const;

 private:
  mutable std::mutex mutex_;
  std::deque<WorkerIncident> incidents_;  // Oldest first.
};

struct ReportCounts {
  std::int64_t executions = 0;  // Attempts started in the period.
  std::int64_t failed = 0;      // ... whose final status is failed.
  std::int64_t completed = 0;
  std::int64_t in_progress = 0;
  double failure_rate() const {
    return executions == 0 ? 0.0 : static_cast<double>(failed) / static_cast<double>(executions);
  }
};

struct ReportStage {
  std::string stage;
  std::int64_t count = 0;
  std::int64_t failures = 0;
  double p50_ms = 0;
  double p95_ms = 0;
  std::optional<double> previous_p50_ms;  // None: the stage did not run in the period before.
  std::optional<double> previous_p95_ms;
};

struct ReportFailure {
  std::string pattern;
  std::int64_t count = 0;
  std::vector<std::string> stages;
  std::string example_tracking_id;  // The most recent one.
  std::string example_error;
};

// One bar of the executions chart: an hour (periods up to two days) or a UTC day.
struct ReportBucket {
  std::int64_t start_ns = 0;
  std::int64_t executions = 0;
  std::int64_t failed = 0;
};

struct Report {
  std::int64_t since_ns = 0;
  std::int64_t until_ns = 0;
  std::string ui_base;  // The web UI the links point to: "http://host:port/" or "".
  ReportCounts current;
  ReportCounts previous;  // The period of equal length before since_ns.
  std::int64_t bucket_ns = 0;
  std::vector<ReportBucket> buckets;  // Oldest first, every bucket of the period.
  std::vector<ReportStage> slowest;   // By p95, the slowest first.
  std::vector<ReportFailure> failures;
  // Known only to a running server (the report made from a store alone has none): null then.
  std::optional<std::vector<WorkerIncident>> workers;
  std::optional<std::vector<FiredAlert>> alerts;
};

struct ReportQuery {
  std::int64_t since_ns = 0;
  std::int64_t until_ns = 0;
  std::size_t stages = 5;    // Slowest stages listed.
  std::size_t failures = 5;  // Failure patterns listed.
  std::string ui_base;
};

// Reads the store. A period longer than kMaxReportPeriod is refused by the callers.
Result<Report> build_report(store::Store& store, const ReportQuery& query, std::int64_t now_ns);

inline constexpr std::int64_t kMaxReportPeriodNs = std::int64_t{366} * 86'400 * 1'000'000'000;

// The web UI's address of a tracking id's execution ("<ui_base>#/executions/<id, encoded>").
std::string execution_link(const std::string& ui_base, std::string_view tracking_id);

std::string report_markdown(const Report& report);
std::string report_json(const Report& report);
std::string report_html(const Report& report);

}  // namespace stagelog::detail
