#include "server/report.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>
#include <utility>

#include "base/duration.hpp"
#include "base/time_text.hpp"
#include "net/url.hpp"
#include "server/http_errors.hpp"
#include "stagelog/server/execution_log.hpp"

namespace stagelog::detail {

namespace {

using Json = nlohmann::ordered_json;

constexpr std::int64_t kHourNs = std::int64_t{3600} * 1'000'000'000;
constexpr std::int64_t kDayNs = 24 * kHourNs;
constexpr std::size_t kPage = 1000;     // Attempts read at a time to count them.
constexpr std::size_t kMaxText = 160;   // Characters of an error or message shown.
constexpr std::size_t kMaxListed = 20;  // Worker incidents and alerts listed in md / html.

// Counts the attempts started in [since, until), and (when `buckets` is set) per bucket.
Result<ReportCounts> count_executions(store::Store& store, std::int64_t since_ns,
                                      std::int64_t until_ns, std::int64_t now_ns,
                                      std::vector<ReportBucket>* buckets, std::int64_t bucket_ns) {
  store::ExecutionQuery query;
  query.since_ns = since_ns;
  query.until_ns = until_ns;
  query.limit = kPage;
  ReportCounts counts;
  for (;;) {
    auto page = store.list_executions(query, now_ns);
    if (!page) return page.error();
    for (const store::ExecutionSummary& row : *page) {
      const std::string& status = row.attempt.final_status;
      ++counts.executions;
      counts.failed += status == "failed";
      counts.completed += status == "completed";
      counts.in_progress += status == "in_progress";
      if (buckets != nullptr && !buckets->empty()) {
        auto i = static_cast<std::size_t>((row.attempt.started_at_ns - since_ns) / bucket_ns);
        ReportBucket& b = (*buckets)[std::min(i, buckets->size() - 1)];
        ++b.executions;
        b.failed += status == "failed";
      }
    }
    if (page->empty()) return counts;
    query.after = page->back().position;
  }
}

// "x" cut to kMaxText characters (UTF-8 kept whole) and to its first line.
std::string short_text(std::string_view text) {
  std::size_t end = std::min(text.find('\n'), text.size());
  if (end > kMaxText) {
    end = kMaxText;
    while (end > 0 && (static_cast<unsigned char>(text[end]) & 0xC0) == 0x80) --end;
  }
  std::string out(text.substr(0, end));
  if (end < text.size()) out += "…";
  return out;
}

std::string percent(double ratio) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f%%", ratio * 100);
  return buf;
}

// "+25%", "-10%", "new" (nothing before), "±0%".
std::string change(double now, std::optional<double> before) {
  if (!before) return "new";
  if (*before <= 0) return now <= 0 ? "±0%" : "new";
  double r = (now - *before) / *before * 100;
  long rounded = std::lround(r);
  if (rounded == 0) return "±0%";
  return (rounded > 0 ? "+" : "") + std::to_string(rounded) + "%";
}

std::string count_change(std::int64_t now, std::int64_t before) {
  return change(static_cast<double>(now),
                before == 0 ? std::nullopt : std::optional<double>(static_cast<double>(before)));
}

// "+1.5 points" between two rates.
std::string rate_change(double now, double before) {
  char buf[48];
  double d = (now - before) * 100;
  if (std::fabs(d) < 0.05) return "±0.0 points";
  std::snprintf(buf, sizeof buf, "%+.1f points", d);
  return buf;
}

std::string ms_text(double ms) { return server::readable_duration(std::llround(ms)); }

// "2026-01-05 08:00 UTC".
std::string minute_text(std::int64_t ns) {
  std::string iso = iso_timestamp(ns);  // 2026-01-05T08:00:00.000Z
  return iso.substr(0, 10) + " " + iso.substr(11, 5) + " UTC";
}

// "24h", "7d", "90m": the period as it was most likely asked.
std::string period_text(const Report& r) {
  const std::int64_t length = r.until_ns - r.since_ns;
  constexpr std::int64_t kMinuteNs = 60'000'000'000;
  if (length % kDayNs == 0 && length >= 2 * kDayNs) return std::to_string(length / kDayNs) + "d";
  if (length % kHourNs == 0) return std::to_string(length / kHourNs) + "h";
  if (length % kMinuteNs == 0) return std::to_string(length / kMinuteNs) + "m";
  return compact_duration(length);
}

// Text in a Markdown table cell or list item: no line breaks, Markdown's characters escaped.
std::string md(std::string_view text) {
  std::string out;
  for (char c : text) {
    if (c == '\n' || c == '\r' || c == '\t') {
      out += ' ';
      continue;
    }
    if (std::string_view("\\`*_[]<>|#~").find(c) != std::string_view::npos) out += '\\';
    out += c;
  }
  return out;
}

std::string html(std::string_view text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string fixed(double v, int decimals) {
  char buf[48];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

double tenths(double ms) { return std::round(ms * 10) / 10; }

}  // namespace

void ReportIncidents::add(WorkerIncident incident) {
  std::lock_guard lock(mutex_);
  incidents_.push_back(std::move(incident));
  if (incidents_.size() > kMax) incidents_.pop_front();
}

std::vector<WorkerIncident> ReportIncidents::between(std::int64_t since_ns,
                                                     std::int64_t until_ns) const {
  std::lock_guard lock(mutex_);
  std::vector<WorkerIncident> out;
  for (const WorkerIncident& i : incidents_) {
    if (i.at_ns >= since_ns && i.at_ns < until_ns) out.push_back(i);
  }
  return out;
}

std::optional<WorkerIncident> worker_incident(const Event& report) {
  std::string_view rule;
  for (const Field& f : report.fields) {
    if (f.key != "rule") continue;
    if (const auto* s = std::get_if<std::string_view>(&f.value)) rule = *s;
  }
  std::string kind = rule == "crashed"                               ? "crashed"
                     : rule == "silent"                              ? "silent"
                     : rule == "stuck_stage" || rule == "stuck_task" ? "stuck"
                                                                     : "";
  if (kind.empty()) return std::nullopt;
  return WorkerIncident{report.ts_ns, std::move(kind), std::string(report.worker),
                        std::string(report.stage), std::string(report.message)};
}

std::string execution_link(const std::string& ui_base, std::string_view tracking_id) {
  return ui_base + "#/executions/" + percent_encode(tracking_id);
}

Result<Report> build_report(store::Store& store, const ReportQuery& query, std::int64_t now_ns) {
  Report r;
  r.since_ns = query.since_ns;
  r.until_ns = query.until_ns;
  r.ui_base = query.ui_base;
  const std::int64_t length = query.until_ns - query.since_ns;
  r.bucket_ns = length <= 2 * kDayNs ? kHourNs : kDayNs;
  const std::int64_t n = (length + r.bucket_ns - 1) / r.bucket_ns;
  for (std::int64_t i = 0; i < n; ++i) r.buckets.push_back({r.since_ns + i * r.bucket_ns, 0, 0});

  auto current = count_executions(store, r.since_ns, r.until_ns, now_ns, &r.buckets, r.bucket_ns);
  if (!current) return current.error();
  r.current = *current;
  auto previous =
      count_executions(store, r.since_ns - length, r.since_ns, now_ns, nullptr, r.bucket_ns);
  if (!previous) return previous.error();
  r.previous = *previous;

  auto stats = store.stage_stats({r.since_ns, r.until_ns, false, false}, now_ns);
  if (!stats) return stats.error();
  auto before = store.stage_stats({r.since_ns - length, r.since_ns, false, false}, now_ns);
  if (!before) return before.error();
  std::map<std::string, const store::StageStats*> earlier;
  for (const store::StageStats& s : *before) earlier[s.stage] = &s;
  for (const store::StageStats& s : *stats) {
    if (s.stats.count == 0) continue;
    ReportStage stage{s.stage,
                      s.stats.count,
                      s.stats.failures,
                      tenths(s.stats.p50_ms),
                      tenths(s.stats.p95_ms),
                      std::nullopt,
                      std::nullopt};
    if (auto it = earlier.find(s.stage); it != earlier.end() && it->second->stats.count > 0) {
      stage.previous_p50_ms = tenths(it->second->stats.p50_ms);
      stage.previous_p95_ms = tenths(it->second->stats.p95_ms);
    }
    r.slowest.push_back(std::move(stage));
  }
  std::stable_sort(r.slowest.begin(), r.slowest.end(),
                   [](const ReportStage& a, const ReportStage& b) {
                     if (a.p95_ms != b.p95_ms) return a.p95_ms > b.p95_ms;
                     return a.stage < b.stage;
                   });
  if (r.slowest.size() > query.stages) r.slowest.resize(query.stages);

  store::FailureQuery fq;
  fq.since_ns = r.since_ns;
  fq.until_ns = r.until_ns;
  fq.limit = query.failures;
  auto patterns = store.failure_patterns(fq, now_ns);
  if (!patterns) return patterns.error();
  for (const store::FailurePattern& p : *patterns) {
    r.failures.push_back({p.pattern, p.count, p.stages,
                          p.tracking_ids.empty() ? std::string() : p.tracking_ids.front(),
                          p.example});
  }
  return r;
}

std::string report_json(const Report& r) {
  Json out = Json::object();
  out["success"] = true;
  out["since"] = iso_timestamp(r.since_ns);
  out["until"] = iso_timestamp(r.until_ns);
  out["period"] = period_text(r);
  auto counts = [](const ReportCounts& c) {
    Json j = Json::object();
    j["executions"] = c.executions;
    j["completed"] = c.completed;
    j["failed"] = c.failed;
    j["in_progress"] = c.in_progress;
    j["failure_rate"] = std::round(c.failure_rate() * 10000) / 10000;
    return j;
  };
  out["current"] = counts(r.current);
  out["previous"] = counts(r.previous);
  out["previous"]["since"] = iso_timestamp(r.since_ns - (r.until_ns - r.since_ns));
  Json buckets = Json::array();
  for (const ReportBucket& b : r.buckets) {
    Json j = Json::object();
    j["start"] = iso_timestamp(b.start_ns);
    j["executions"] = b.executions;
    j["failed"] = b.failed;
    buckets.push_back(std::move(j));
  }
  out["interval"] = r.bucket_ns == kHourNs ? "hour" : "day";
  out["series"] = std::move(buckets);
  Json stages = Json::array();
  for (const ReportStage& s : r.slowest) {
    Json j = Json::object();
    j["stage"] = s.stage;
    j["count"] = s.count;
    j["failures"] = s.failures;
    j["p50_ms"] = s.p50_ms;
    j["p95_ms"] = s.p95_ms;
    j["previous_p50_ms"] = s.previous_p50_ms ? Json(*s.previous_p50_ms) : Json();
    j["previous_p95_ms"] = s.previous_p95_ms ? Json(*s.previous_p95_ms) : Json();
    j["p95_change"] = change(s.p95_ms, s.previous_p95_ms);
    stages.push_back(std::move(j));
  }
  out["slowest_stages"] = std::move(stages);
  Json failures = Json::array();
  for (const ReportFailure& f : r.failures) {
    Json j = Json::object();
    j["pattern"] = f.pattern;
    j["count"] = f.count;
    j["stages"] = f.stages;
    j["example_tracking_id"] = f.example_tracking_id;
    j["example_link"] = execution_link(r.ui_base, f.example_tracking_id);
    j["example_error"] = f.example_error;
    failures.push_back(std::move(j));
  }
  out["failure_patterns"] = std::move(failures);
  if (r.workers) {
    Json workers = Json::array();
    for (const WorkerIncident& w : *r.workers) {
      Json j = Json::object();
      j["at"] = iso_timestamp(w.at_ns);
      j["kind"] = w.kind;
      j["worker"] = w.worker;
      j["stage"] = w.stage;
      j["message"] = w.message;
      workers.push_back(std::move(j));
    }
    out["workers"] = std::move(workers);
  } else {
    out["workers"] = nullptr;
  }
  if (r.alerts) {
    Json alerts = Json::array();
    for (const FiredAlert& a : *r.alerts) {
      Json j = Json::object();
      j["at"] = iso_timestamp(a.at_ns);
      j["rule"] = a.rule;
      j["type"] = a.type;
      j["summary"] = a.summary;
      alerts.push_back(std::move(j));
    }
    out["alerts"] = std::move(alerts);
  } else {
    out["alerts"] = nullptr;
  }
  return dump_json(out) + "\n";
}

std::string report_markdown(const Report& r) {
  const std::string period = period_text(r);
  std::string out = "# stagelog report: the last " + period + "\n\n";
  out += minute_text(r.since_ns) + " to " + minute_text(r.until_ns) + ", compared with the " +
         period + " before.\n\n";
  out += "- **Executions:** " + std::to_string(r.current.executions) +
         " (before: " + std::to_string(r.previous.executions) + ", " +
         count_change(r.current.executions, r.previous.executions) + ")\n";
  out += "- **Failure rate:** " + percent(r.current.failure_rate()) + ", " +
         std::to_string(r.current.failed) +
         " failed (before: " + percent(r.previous.failure_rate()) + ", " +
         rate_change(r.current.failure_rate(), r.previous.failure_rate()) + ")\n";
  out += "- **Still running:** " + std::to_string(r.current.in_progress) + "\n\n";

  out += "## Slowest stages\n\n";
  if (r.slowest.empty()) {
    out += "No stage ended in the period.\n\n";
  } else {
    out += "| stage | runs | failed | p50 | p95 | p95 change |\n|---|---:|---:|---:|---:|---:|\n";
    for (const ReportStage& s : r.slowest) {
      out += "| " + md(s.stage) + " | " + std::to_string(s.count) + " | " +
             std::to_string(s.failures) + " | " + ms_text(s.p50_ms) + " | " + ms_text(s.p95_ms) +
             " | " + change(s.p95_ms, s.previous_p95_ms) + " |\n";
    }
    out += '\n';
  }

  out += "## Top failure patterns\n\n";
  if (r.failures.empty()) {
    out += "No step failed in the period.\n\n";
  } else {
    out += "| count | pattern | stages | example |\n|---:|---|---|---|\n";
    for (const ReportFailure& f : r.failures) {
      std::string stages;
      for (const std::string& s : f.stages) stages += (stages.empty() ? "" : ", ") + md(s);
      out += "| " + std::to_string(f.count) + " | " + md(short_text(f.pattern)) + " | " + stages +
             " | [" + md(f.example_tracking_id) + "](" +
             execution_link(r.ui_base, f.example_tracking_id) + ") |\n";
    }
    out += '\n';
  }

  out += "## Workers crashed, silent or stuck\n\n";
  if (!r.workers) {
    out += "Only a running server knows (this report was made from the store alone).\n\n";
  } else if (r.workers->empty()) {
    out += "None.\n\n";
  } else {
    std::size_t shown = 0;
    for (const WorkerIncident& w : *r.workers) {
      if (shown++ == kMaxListed) break;
      out += "- " + minute_text(w.at_ns) + " **" + w.kind + "** " + md(w.worker);
      if (!w.stage.empty()) out += " in " + md(w.stage);
      out += ": " + md(short_text(w.message)) + "\n";
    }
    if (r.workers->size() > kMaxListed) {
      out += "- and " + std::to_string(r.workers->size() - kMaxListed) + " more\n";
    }
    out += '\n';
  }

  out += "## Alerts fired\n\n";
  if (!r.alerts) {
    out += "Only a running server knows (this report was made from the store alone).\n";
  } else if (r.alerts->empty()) {
    out += "None.\n";
  } else {
    std::size_t shown = 0;
    for (const FiredAlert& a : *r.alerts) {
      if (shown++ == kMaxListed) break;
      out += "- " + minute_text(a.at_ns) + " **" + md(a.rule) + "** (" + a.type +
             "): " + md(short_text(a.summary)) + "\n";
    }
    if (r.alerts->size() > kMaxListed) {
      out += "- and " + std::to_string(r.alerts->size() - kMaxListed) + " more\n";
    }
  }
  return out;
}

namespace {

// Bars of executions per hour or day, the failed part of each in red.
std::string executions_svg(const Report& r) {
  constexpr int kWidth = 640, kHeight = 160, kTop = 10, kBottom = 20;
  std::int64_t most = 1;
  for (const ReportBucket& b : r.buckets) most = std::max(most, b.executions);
  const double slot = static_cast<double>(kWidth) / static_cast<double>(r.buckets.size());
  const double scale = static_cast<double>(kHeight - kTop - kBottom) / static_cast<double>(most);
  std::string out = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" + std::to_string(kWidth) +
                    "\" height=\"" + std::to_string(kHeight) + "\" viewBox=\"0 0 " +
                    std::to_string(kWidth) + " " + std::to_string(kHeight) +
                    "\" role=\"img\" aria-label=\"Executions per " +
                    (r.bucket_ns == kHourNs ? "hour" : "day") + ", failed in red\">\n";
  const int base = kHeight - kBottom;
  out += "<line x1=\"0\" y1=\"" + std::to_string(base) + "\" x2=\"" + std::to_string(kWidth) +
         "\" y2=\"" + std::to_string(base) + "\" stroke=\"#999\"/>\n";
  for (std::size_t i = 0; i < r.buckets.size(); ++i) {
    const ReportBucket& b = r.buckets[i];
    const double x = slot * static_cast<double>(i) + slot * 0.1;
    const double w = slot * 0.8;
    const double h = static_cast<double>(b.executions) * scale;
    const double hf = static_cast<double>(b.failed) * scale;
    if (b.executions > 0) {
      out += "<rect x=\"" + fixed(x, 1) + "\" y=\"" + fixed(base - h, 1) + "\" width=\"" +
             fixed(w, 1) + "\" height=\"" + fixed(h - hf, 1) + "\" fill=\"#4a90d9\"><title>" +
             html(minute_text(b.start_ns)) + ": " + std::to_string(b.executions) + " executions, " +
             std::to_string(b.failed) + " failed</title></rect>\n";
    }
    if (b.failed > 0) {
      out += "<rect x=\"" + fixed(x, 1) + "\" y=\"" + fixed(base - hf, 1) + "\" width=\"" +
             fixed(w, 1) + "\" height=\"" + fixed(hf, 1) + "\" fill=\"#d9534f\"/>\n";
    }
  }
  out += "<text x=\"0\" y=\"" + std::to_string(kHeight - 4) + "\" font-size=\"11\">" +
         html(minute_text(r.since_ns)) + "</text>\n";
  out += "<text x=\"" + std::to_string(kWidth) + "\" y=\"" + std::to_string(kHeight - 4) +
         "\" font-size=\"11\" text-anchor=\"end\">" + html(minute_text(r.until_ns)) + "</text>\n";
  out += "<text x=\"0\" y=\"" + std::to_string(kTop) + "\" font-size=\"11\">" +
         std::to_string(most) + "</text>\n";
  out += "</svg>\n";
  return out;
}

// The slowest stages' p95, this period (dark) over the period before (light).
std::string stages_svg(const Report& r) {
  constexpr int kWidth = 640, kRow = 26, kLabel = 180;
  const int height = static_cast<int>(r.slowest.size()) * kRow + 4;
  double most = 1;
  for (const ReportStage& s : r.slowest) {
    most = std::max({most, s.p95_ms, s.previous_p95_ms.value_or(0)});
  }
  const double scale = (kWidth - kLabel - 70) / most;
  std::string out = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" + std::to_string(kWidth) +
                    "\" height=\"" + std::to_string(height) + "\" viewBox=\"0 0 " +
                    std::to_string(kWidth) + " " + std::to_string(height) +
                    "\" role=\"img\" aria-label=\"p95 per stage, the period before in grey\">\n";
  for (std::size_t i = 0; i < r.slowest.size(); ++i) {
    const ReportStage& s = r.slowest[i];
    const int y = static_cast<int>(i) * kRow + 2;
    out += "<text x=\"" + std::to_string(kLabel - 6) + "\" y=\"" + std::to_string(y + 15) +
           "\" font-size=\"12\" text-anchor=\"end\">" + html(short_text(s.stage)) + "</text>\n";
    if (s.previous_p95_ms) {
      out += "<rect x=\"" + std::to_string(kLabel) + "\" y=\"" + std::to_string(y + 2) +
             "\" width=\"" + fixed(*s.previous_p95_ms * scale, 1) +
             "\" height=\"18\" fill=\"#ccc\"/>\n";
    }
    out += "<rect x=\"" + std::to_string(kLabel) + "\" y=\"" + std::to_string(y + 6) +
           "\" width=\"" + fixed(s.p95_ms * scale, 1) + "\" height=\"10\" fill=\"#4a90d9\"/>\n";
    out += "<text x=\"" +
           fixed(kLabel + std::max(s.p95_ms, s.previous_p95_ms.value_or(0)) * scale + 4, 1) +
           "\" y=\"" + std::to_string(y + 15) + "\" font-size=\"11\">" + html(ms_text(s.p95_ms)) +
           "</text>\n";
  }
  out += "</svg>\n";
  return out;
}

}  // namespace

std::string report_html(const Report& r) {
  const std::string period = period_text(r);
  std::string out =
      "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
      "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>";
  out += html("stagelog report: the last " + period) + "</title>\n";
  out +=
      "<style>\n"
      "body { font-family: -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; color: #222; "
      "max-width: 680px; margin: 16px auto; padding: 0 12px; }\n"
      "h1 { font-size: 20px; } h2 { font-size: 16px; margin-top: 24px; }\n"
      "table { border-collapse: collapse; width: 100%; font-size: 13px; }\n"
      "th, td { border-bottom: 1px solid #ddd; padding: 4px 6px; text-align: left; "
      "vertical-align: top; }\n"
      "td.n, th.n { text-align: right; }\n"
      ".worse { color: #c9302c; } .better { color: #2e7d32; } .muted { color: #777; }\n"
      ".big { font-size: 22px; font-weight: bold; }\n"
      "</style>\n</head>\n<body>\n";
  out += "<h1>" + html("stagelog report: the last " + period) + "</h1>\n";
  out += "<p class=\"muted\">" + html(minute_text(r.since_ns)) + " to " +
         html(minute_text(r.until_ns)) + ", compared with the " + html(period) + " before.</p>\n";
  auto trend = [](const std::string& text, bool up_is_bad) {
    std::string cls = text.starts_with('+')   ? (up_is_bad ? "worse" : "better")
                      : text.starts_with('-') ? (up_is_bad ? "better" : "worse")
                                              : "muted";
    return "<span class=\"" + cls + "\">" + html(text) + "</span>";
  };
  out += "<table>\n<tr><th>executions</th><th>failure rate</th><th>still running</th></tr>\n";
  out += "<tr><td><span class=\"big\">" + std::to_string(r.current.executions) +
         "</span><br>before: " + std::to_string(r.previous.executions) + ", " +
         trend(count_change(r.current.executions, r.previous.executions), false) + "</td>";
  out += "<td><span class=\"big\">" + percent(r.current.failure_rate()) + "</span><br>" +
         std::to_string(r.current.failed) +
         " failed; before: " + percent(r.previous.failure_rate()) + ", " +
         trend(rate_change(r.current.failure_rate(), r.previous.failure_rate()), true) + "</td>";
  out += "<td><span class=\"big\">" + std::to_string(r.current.in_progress) + "</span></td></tr>\n";
  out += "</table>\n";
  out += "<h2>Executions per " + std::string(r.bucket_ns == kHourNs ? "hour" : "day") +
         " (failed in red)</h2>\n";
  out += executions_svg(r);

  out += "<h2>Slowest stages</h2>\n";
  if (r.slowest.empty()) {
    out += "<p>No stage ended in the period.</p>\n";
  } else {
    out += stages_svg(r);
    out +=
        "<table>\n<tr><th>stage</th><th class=\"n\">runs</th><th class=\"n\">failed</th>"
        "<th class=\"n\">p50</th><th class=\"n\">p95</th><th class=\"n\">p95 change</th></tr>\n";
    for (const ReportStage& s : r.slowest) {
      out += "<tr><td>" + html(s.stage) + "</td><td class=\"n\">" + std::to_string(s.count) +
             "</td><td class=\"n\">" + std::to_string(s.failures) + "</td><td class=\"n\">" +
             html(ms_text(s.p50_ms)) + "</td><td class=\"n\">" + html(ms_text(s.p95_ms)) +
             "</td><td class=\"n\">" + trend(change(s.p95_ms, s.previous_p95_ms), true) +
             "</td></tr>\n";
    }
    out += "</table>\n";
  }

  out += "<h2>Top failure patterns</h2>\n";
  if (r.failures.empty()) {
    out += "<p>No step failed in the period.</p>\n";
  } else {
    out +=
        "<table>\n<tr><th class=\"n\">count</th><th>pattern</th><th>stages</th>"
        "<th>example</th></tr>\n";
    for (const ReportFailure& f : r.failures) {
      std::string stages;
      for (const std::string& s : f.stages) stages += (stages.empty() ? "" : ", ") + s;
      out += "<tr><td class=\"n\">" + std::to_string(f.count) + "</td><td>" +
             html(short_text(f.pattern)) + "</td><td>" + html(stages) + "</td><td><a href=\"" +
             html(execution_link(r.ui_base, f.example_tracking_id)) + "\">" +
             html(f.example_tracking_id) + "</a></td></tr>\n";
    }
    out += "</table>\n";
  }

  out += "<h2>Workers crashed, silent or stuck</h2>\n";
  if (!r.workers) {
    out +=
        "<p class=\"muted\">Only a running server knows (this report was made from the store "
        "alone).</p>\n";
  } else if (r.workers->empty()) {
    out += "<p>None.</p>\n";
  } else {
    out += "<ul>\n";
    std::size_t shown = 0;
    for (const WorkerIncident& w : *r.workers) {
      if (shown++ == kMaxListed) break;
      out += "<li>" + html(minute_text(w.at_ns)) + " <b>" + html(w.kind) + "</b> " +
             html(w.worker) + (w.stage.empty() ? "" : " in " + html(w.stage)) + ": " +
             html(short_text(w.message)) + "</li>\n";
    }
    if (r.workers->size() > kMaxListed) {
      out += "<li>and " + std::to_string(r.workers->size() - kMaxListed) + " more</li>\n";
    }
    out += "</ul>\n";
  }

  out += "<h2>Alerts fired</h2>\n";
  if (!r.alerts) {
    out +=
        "<p class=\"muted\">Only a running server knows (this report was made from the store "
        "alone).</p>\n";
  } else if (r.alerts->empty()) {
    out += "<p>None.</p>\n";
  } else {
    out += "<ul>\n";
    std::size_t shown = 0;
    for (const FiredAlert& a : *r.alerts) {
      if (shown++ == kMaxListed) break;
      out += "<li>" + html(minute_text(a.at_ns)) + " <b>" + html(a.rule) + "</b> (" + html(a.type) +
             "): " + html(short_text(a.summary)) + "</li>\n";
    }
    if (r.alerts->size() > kMaxListed) {
      out += "<li>and " + std::to_string(r.alerts->size() - kMaxListed) + " more</li>\n";
    }
    out += "</ul>\n";
  }
  out += "</body>\n</html>\n";
  return out;
}

}  // namespace stagelog::detail
