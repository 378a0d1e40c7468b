// Statistics: stage durations (GET /api/v1/stats/stages) and failure patterns
// (GET /api/v1/stats/failures).

#include <cmath>
#include <string>
#include <tuple>
#include <utility>

#include "base/time_text.hpp"
#include "server/api.hpp"
#include "server/api_params.hpp"

namespace stagelog::detail {

namespace {

using Json = nlohmann::ordered_json;

// Milliseconds to a tenth: percentiles are within 1% anyway.
double tenths(double ms) { return std::round(ms * 10) / 10; }

Json duration_stats_json(const store::DurationStats& s) {
  Json out = Json::object();
  out["count"] = s.count;
  out["failures"] = s.failures;
  out["skipped"] = s.skipped;
  out["p50_ms"] = tenths(s.p50_ms);
  out["p95_ms"] = tenths(s.p95_ms);
  out["p99_ms"] = tenths(s.p99_ms);
  out["max_ms"] = s.max_ms;
  return out;
}

}  // namespace

// Per stage (or stage and worker): count, failures, p50 / p95 / p99 / max, and a series per
// hour or day. Percentiles come from histograms kept per hour: within 1% of the exact value,
// and the range is widened to whole hours.
ApiResponse Api::stage_stats(ApiRequest& req, const RouteMatch&) {
  const std::int64_t now_ns = now();
  if (auto e = check_params(req, {"since", "until", "group", "interval"})) {
    return error_response(*e);
  }
  auto range = parse_range(req, now_ns);
  if (!range) return error_response(range.error());
  store::StageStatsQuery q;
  std::tie(q.since_ns, q.until_ns) = *range;
  std::string group = req.has_param("group") ? *req.param("group") : "stage";
  if (group != "stage" && group != "worker") {
    return error_response(bad_request("group: expected stage or worker, got \"" + group + "\""));
  }
  q.by_worker = group == "worker";
  // Hours for up to two days, days beyond: a chart of a week has 7 points, not 168.
  std::string interval = req.has_param("interval")               ? *req.param("interval")
                         : q.until_ns - q.since_ns <= 2 * kDayNs ? "hour"
                                                                 : "day";
  if (interval != "hour" && interval != "day") {
    return error_response(bad_request("interval: expected hour or day, got \"" + interval + "\""));
  }
  q.daily = interval == "day";
  auto stats = store_.stage_stats(q, now_ns);
  if (!stats) return read_refused(stats.error());
  Json rows = Json::array();
  for (const store::StageStats& s : *stats) {
    Json row = Json::object();
    row["stage"] = s.stage;
    if (q.by_worker) row["worker"] = s.worker;
    row.update(duration_stats_json(s.stats));
    Json series = Json::array();
    for (const store::StageStatsPoint& point : s.series) {
      Json p = Json::object();
      p["start"] = iso_timestamp(point.start_ns);
      p.update(duration_stats_json(point.stats));
      series.push_back(std::move(p));
    }
    row["series"] = std::move(series);
    rows.push_back(std::move(row));
  }
  Json body = Json::object();
  body["success"] = true;
  body["since"] = iso_timestamp(q.since_ns);
  body["until"] = iso_timestamp(q.until_ns);
  body["group"] = group;
  body["interval"] = interval;
  body["percentile_error"] = store::DurationStats::kPercentileError;
  body["stages"] = std::move(rows);
  return json_response(dump_json(body));
}

// Failed steps grouped by their error with numbers, ids, hex and paths masked: seed 004's
// error pattern analysis.
ApiResponse Api::failure_stats(ApiRequest& req, const RouteMatch&) {
  const std::int64_t now_ns = now();
  if (auto e = check_params(req, {"since", "until", "limit"})) return error_response(*e);
  auto range = parse_range(req, now_ns);
  if (!range) return error_response(range.error());
  auto limit = parse_limit(req);
  if (!limit) return error_response(limit.error());
  store::FailureQuery q;
  std::tie(q.since_ns, q.until_ns) = *range;
  q.limit = *limit;
  auto patterns = store_.failure_patterns(q, now_ns);
  if (!patterns) return read_refused(patterns.error());
  Json rows = Json::array();
  for (const store::FailurePattern& p : *patterns) {
    Json row = Json::object();
    row["pattern"] = p.pattern;
    row["count"] = p.count;
    row["first_seen"] = iso_timestamp(p.first_seen_ns);
    row["last_seen"] = iso_timestamp(p.last_seen_ns);
    row["stages"] = p.stages;
    row["example_tracking_ids"] = p.tracking_ids;
    row["example_error"] = p.example;
    rows.push_back(std::move(row));
  }
  Json body = Json::object();
  body["success"] = true;
  body["since"] = iso_timestamp(q.since_ns);
  body["until"] = iso_timestamp(q.until_ns);
  body["patterns"] = std::move(rows);
  return json_response(dump_json(body));
}

}  // namespace stagelog::detail
