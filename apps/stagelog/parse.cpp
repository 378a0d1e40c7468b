// stagelog parse [FILE...]: seed-format text lines to one JSON object per line.

#include "stagelog/parse.hpp"

#include <cstdio>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "commands.hpp"
#include "log_lines.hpp"

namespace stagelog::cli {

namespace {

struct ParseOptions {
  std::vector<std::string> files;
  bool quiet = false;
};

}  // namespace

Command add_parse(CLI::App& app) {
  auto options = std::make_shared<ParseOptions>();
  CLI::App* cmd = app.add_subcommand(
      "parse",
      "Read stagelog text lines (files or stdin) and print one JSON object per event.\n"
      "Stage lines give {timestamp, worker_id, stage, status, duration, message}; log lines give\n"
      "{timestamp, worker_id, level, component, message}. Lines that cannot be read are\n"
      "reported on stderr with their line numbers and skipped; the exit status is then 1.");
  cmd->add_option("files", options->files, "Files to read; '-' or none reads stdin");
  cmd->add_flag("-q,--quiet", options->quiet, "Do not report skipped lines");
  cmd->footer(
      "Example:\n"
      "  $ echo '2026-01-04T19:30:28.456Z [T0_00] Stage: AGENT - Complete (13.2s)' | stagelog "
      "parse\n"
      "  {\"timestamp\":\"2026-01-04T19:30:28.456Z\",\"worker_id\":\"T0_00\",\"stage\":\"AGENT\","
      "\"status\":\"completed\",\"duration\":13.2,\"message\":\"\"}\n");
  return [options]() -> int {
    std::size_t skipped = read_log_lines(options->files, "parse", options->quiet,
                                         [](std::string_view line, std::string& error) {
                                           auto parsed = parse_line(line, &error);
                                           if (!parsed) return false;
                                           std::string json = to_json(*parsed);
                                           json += '\n';
                                           std::fwrite(json.data(), 1, json.size(), stdout);
                                           return true;
                                         });
    std::fflush(stdout);
    if (skipped != 0 && !options->quiet) {
      std::fprintf(stderr, "stagelog parse: skipped %zu line%s\n", skipped,
                   skipped == 1 ? "" : "s");
    }
    return skipped == 0 ? 0 : 1;
  };
}

}  // namespace stagelog::cli
