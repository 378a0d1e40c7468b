// GET /api/v1/report?since=24h&until=...&format=json|md|html: the report of report.hpp, with
// what this server saw of its workers and alerts.

#include <string>

#include "server/api.hpp"
#include "server/api_params.hpp"
#include "server/report.hpp"

namespace stagelog::detail {

namespace {

// The web UI's address as the client reached it ("http://host:port/"), for the report's links;
// "" (relative links) for a Host header that is not a plain host[:port].
std::string ui_base(const ApiRequest& req, bool tls) {
  std::string_view host = req.header("Host");
  if (host.empty() || host.size() > 255) return "";
  for (char c : host) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '-' || c == ':' || c == '[' || c == ']';
    if (!ok) return "";
  }
  return std::string(tls ? "https://" : "http://") + std::string(host) + "/";
}

}  // namespace

ApiResponse Api::get_report(ApiRequest& req, const RouteMatch&) {
  const std::int64_t now_ns = now();
  if (auto e = check_params(req, {"since", "until", "format"})) return error_response(*e);
  ReportQuery query;
  query.until_ns = now_ns;
  if (const std::string* until = req.param("until")) {
    auto t = parse_time("until", *until, now_ns);
    if (!t) return error_response(t.error());
    query.until_ns = *t;
  }
  query.since_ns = query.until_ns - kDayNs;
  if (const std::string* since = req.param("since")) {
    auto t = parse_time("since", *since, query.until_ns);  // "24h": before until.
    if (!t) return error_response(t.error());
    query.since_ns = *t;
  }
  if (query.since_ns >= query.until_ns)
    return error_response(bad_request("since must be before until"));
  if (query.until_ns - query.since_ns > kMaxReportPeriodNs) {
    return error_response(bad_request("since: a report covers at most 366 days"));
  }
  const std::string format = req.has_param("format") ? *req.param("format") : "json";
  if (format != "json" && format != "md" && format != "html") {
    return error_response(bad_request("format: expected json, md or html, got \"" + format + "\""));
  }
  query.ui_base = ui_base(req, !options_.tls_cert_file.empty());
  auto report = build_report(store_, query, now_ns);
  if (!report) return read_refused(report.error());
  report->workers = incidents_.between(query.since_ns, query.until_ns);
  auto engine = alert_engine();
  report->alerts =
      engine ? engine->fired(query.since_ns, query.until_ns) : std::vector<FiredAlert>{};
  if (format == "json") return json_response(report_json(*report));
  ApiResponse response;
  if (format == "md") {
    response.content_type = "text/markdown; charset=utf-8";
    response.body = report_markdown(*report);
  } else {
    response.content_type = "text/html; charset=utf-8";
    response.body = report_html(*report);
    // A page to open as it is: its own CSS and SVG, nothing else, no script.
    response.set_header("Content-Security-Policy",
                        "default-src 'none'; style-src 'unsafe-inline'; img-src data:");
  }
  return response;
}

}  // namespace stagelog::detail
