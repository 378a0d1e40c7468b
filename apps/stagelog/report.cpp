// stagelog report: the report of the last N hours (executions and failure rate against the
// period before, slowest stages, top failure patterns, workers, alerts) as Markdown, HTML or
// JSON, from a running `stagelog serve` (--server) or from its store folder (--data).

#include "server/report.hpp"

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>

#include "base/time.hpp"
#include "commands.hpp"
#include "net/http_client.hpp"
#include "net/url.hpp"
#include "server/api_params.hpp"
#include "stagelog/error.hpp"
#include "stagelog/store/sqlite_store.hpp"
#include "tail_sources.hpp"

namespace stagelog::cli {

namespace {

namespace fs = std::filesystem;

struct ReportOptions {
  std::string since = "24h";
  std::string until;
  std::string format = "md";
  std::string server;
  std::string token_file;
  std::string ca_file;
  std::string data;
  std::string ui_url;
};

constexpr auto kTimeout = std::chrono::seconds(60);

std::string from_server(const ReportOptions& o) {
  detail::Url url = detail::parse_url(o.server);
  std::shared_ptr<const detail::TlsConfig> tls;
  if (url.tls) tls = std::make_shared<const detail::TlsConfig>(o.ca_file);
  detail::HttpClient client(url, std::move(tls));
  const std::string token = server_token(o.token_file);
  const std::string bearer = "Bearer " + token;
  std::vector<detail::HttpClient::Header> headers;
  if (!token.empty()) headers.emplace_back("Authorization", bearer);
  std::string path = "/api/v1/report?since=" + detail::percent_encode(o.since) +
                     "&format=" + detail::percent_encode(o.format);
  if (!o.until.empty()) path += "&until=" + detail::percent_encode(o.until);
  const auto deadline = std::chrono::steady_clock::now() + kTimeout;
  detail::HttpResponse res = client.get_stream(path, headers, deadline);
  std::string body = res.body;
  if (res.status >= 200 && res.status <= 299) {
    while (client.read_stream(body, deadline)) {
      if (std::chrono::steady_clock::now() > deadline) throw Error(o.server + ": timed out");
    }
    return body;
  }
  throw Error(o.server + " answered " + std::to_string(res.status) + ": " + body);
}

std::string from_store(const ReportOptions& o) {
  const fs::path db = fs::path(o.data) / "stagelog.db";
  if (!fs::exists(db)) {
    throw Error(o.data + ": no stagelog.db in it (is it the --data folder of stagelog serve?)");
  }
  std::unique_ptr<store::Store> store = store::open_sqlite_store(db);
  const std::int64_t now_ns = detail::realtime_ns();
  detail::ReportQuery query;
  query.until_ns = now_ns;
  if (!o.until.empty()) {
    auto t = detail::parse_time("--until", o.until, now_ns);
    if (!t) throw Error(t.error().message);
    query.until_ns = *t;
  }
  auto t = detail::parse_time("--since", o.since, query.until_ns);
  if (!t) throw Error(t.error().message);
  query.since_ns = *t;
  if (query.since_ns >= query.until_ns) throw Error("--since must be before --until");
  if (query.until_ns - query.since_ns > detail::kMaxReportPeriodNs) {
    throw Error("--since: a report covers at most 366 days");
  }
  query.ui_base = o.ui_url;
  if (!query.ui_base.empty() && !query.ui_base.ends_with('/')) query.ui_base += '/';
  auto report = detail::build_report(*store, query, now_ns);
  if (!report) throw report.error();
  if (o.format == "json") return detail::report_json(*report);
  if (o.format == "html") return detail::report_html(*report);
  return detail::report_markdown(*report);
}

}  // namespace

Command add_report(CLI::App& app) {
  auto o = std::make_shared<ReportOptions>();
  CLI::App* cmd = app.add_subcommand(
      "report",
      "The report of a period that a team lead reads in a minute: executions and their failure\n"
      "rate against the period before of the same length, the slowest stages (p50 / p95 and\n"
      "their change), the top failure patterns with an example tracking id each (linked to the\n"
      "web UI), the workers that crashed, went silent or were stuck, and the alerts fired.\n"
      "From a running server (--server; it alone knows the workers and alerts) or from the\n"
      "folder of its store (--data).");
  cmd->add_option("--since", o->since,
                  "Start of the period: a duration before --until (24h, 7d) or a UTC timestamp "
                  "(default: 24h)");
  cmd->add_option("--until", o->until, "End of the period, a UTC timestamp (default: now)");
  cmd->add_option("--format", o->format,
                  "md (default: Markdown, for chat), html (one self-contained page, for mail) "
                  "or json")
      ->check(CLI::IsMember({"md", "html", "json"}));
  cmd->add_option("--server", o->server, "URL of a stagelog serve (a read token)");
  cmd->add_option("--token-file", o->token_file,
                  "File whose first line is the token for --server (default: $STAGELOG_TOKEN)");
  cmd->add_option("--ca-file", o->ca_file,
                  "PEM file of the CA certificates that an https:// --server's certificate must "
                  "chain to (default: the system's)");
  cmd->add_option("--data", o->data, "The --data folder of a stagelog serve (its stagelog.db)");
  cmd->add_option("--ui-url", o->ui_url,
                  "With --data: the web UI's address for the links (default: relative links)");
  cmd->footer(
      "Examples:\n"
      "  STAGELOG_TOKEN=slg_... stagelog report --server http://127.0.0.1:8080\n"
      "  stagelog report --data ./data --since 7d --format html > week.html\n"
      "  stagelog report --server https://logs.example.com --token-file tok --format json\n");
  return [o]() -> int {
    if (o->server.empty() == o->data.empty()) {
      throw Error("give one of --server URL or --data DIR");
    }
    if (!o->ca_file.empty() && o->server.empty()) throw Error("--ca-file needs --server URL");
    if (!o->ui_url.empty() && o->data.empty()) {
      throw Error("--ui-url is for --data (a server links to itself)");
    }
    std::string out = o->server.empty() ? from_store(*o) : from_server(*o);
    std::fwrite(out.data(), 1, out.size(), stdout);
    std::fflush(stdout);
    return std::ferror(stdout) ? 1 : 0;
  };
}

}  // namespace stagelog::cli
