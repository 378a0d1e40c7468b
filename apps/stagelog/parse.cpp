// stagelog parse [FILE...]: stage lines and log lines, in any of the formats LineReader knows,
// to the server's ingest JSON, one event per line.

#include <cstdio>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "commands.hpp"
#include "format/format.hpp"
#include "format/line_reader.hpp"
#include "log_lines.hpp"

namespace stagelog::cli {

namespace {

struct ParseOptions {
  std::vector<std::string> files;
  std::string format = "auto";
  std::size_t max_line = kDefaultMaxLine;
  bool quiet = false;
};

constexpr std::size_t kMaxMaxLine = std::size_t{256} << 20;

}  // namespace

Command add_parse(CLI::App& app) {
  auto options = std::make_shared<ParseOptions>();
  CLI::App* cmd = app.add_subcommand(
      "parse",
      "Read log files (or stdin) and print one JSON event per line, in the shape the server's\n"
      "POST /api/v1/events takes as it is (docs/EVENTS.md): {ts, kind, level, worker, stage,\n"
      "status, elapsed_ns, message, fields, ...}. Stage lines are found anywhere in a line,\n"
      "behind Python logging's, docker's, kubectl's or journald's prefixes; per-worker log\n"
      "files, workflow trace JSONL and stagelog's text and JSONL are read too. Lines that cannot\n"
      "be read are reported on stderr with their line numbers and skipped; the exit status is\n"
      "then 1.");
  cmd->add_option("files", options->files, "Files to read; '-' or none reads stdin");
  cmd->add_option("--format,--log-format", options->format,
                  "Input format: " + std::string(detail::LineReader::format_names()) +
                      ". 're:' takes a regex with named groups ts (required), worker, stage, "
                      "status, elapsed (seconds), level, component, run, message; any other "
                      "named group becomes a field")
      ->default_str("auto");
  cmd->add_option("--max-line", options->max_line,
                  "Longest line read, in bytes; the rest of a longer line is skipped with a "
                  "warning")
      ->check(CLI::Range(std::size_t{64}, kMaxMaxLine))
      ->default_str(std::to_string(kDefaultMaxLine));
  cmd->add_flag("-q,--quiet", options->quiet, "Do not report skipped lines");
  cmd->footer(
      "Examples:\n"
      "  $ echo 'INFO:scylla:2026-01-04T19:30:28.456Z [T0_00] Stage: AGENT - Complete (13.2s)' "
      "| stagelog parse\n"
      "  {\"ts\":\"2026-01-04T19:30:28.456Z\",\"ts_ns\":1767555028456000000,\"kind\":\"stage\","
      "...}\n"
      "  $ stagelog parse app.log | curl --data-binary @- http://127.0.0.1:8080/api/v1/events\n"
      "  $ stagelog parse --format 're:^(?<ts>\\S+) (?<worker>\\w+) (?<stage>\\w+) "
      "(?<status>\\w+)' my.log\n");
  return [options]() -> int {
    detail::LineReader reader(options->format);
    std::string json;
    std::size_t cut = 0;
    std::size_t skipped = read_log_lines(
        options->files, "parse", options->quiet,
        [&](std::string_view line, std::string& error) {
          auto event = reader.read(line, &error);
          if (!event) return false;
          json.clear();
          detail::format_json(event->view(), json);
          std::fwrite(json.data(), 1, json.size(), stdout);
          return true;
        },
        options->max_line, &cut);
    std::fflush(stdout);
    if (cut != 0 && !options->quiet) {
      std::fprintf(stderr, "stagelog parse: cut %zu line%s longer than %zu bytes\n", cut,
                   cut == 1 ? "" : "s", options->max_line);
    }
    if (skipped != 0 && !options->quiet) {
      std::fprintf(stderr, "stagelog parse: skipped %zu line%s\n", skipped,
                   skipped == 1 ? "" : "s");
    }
    return skipped == 0 ? 0 : 1;
  };
}

}  // namespace stagelog::cli
