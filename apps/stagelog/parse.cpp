// stagelog parse [FILE...]: seed-format text lines to one JSON object per line.

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "base/errno_text.hpp"
#include "commands.hpp"
#include "stagelog/error.hpp"
#include "stagelog/parse.hpp"

namespace stagelog::cli {

namespace {

struct ParseOptions {
  std::vector<std::string> files;
  bool quiet = false;
};

// Returns the number of lines skipped.
std::size_t parse_stream(std::istream& in, const std::string& name, const ParseOptions& options) {
  std::size_t skipped = 0;
  std::size_t number = 0;
  std::string line;
  std::string error;
  while (std::getline(in, line)) {
    ++number;
    if (line.empty() || line == "\r") continue;
    if (auto parsed = parse_line(line, &error)) {
      std::string json = to_json(*parsed);
      json += '\n';
      std::fwrite(json.data(), 1, json.size(), stdout);
    } else {
      ++skipped;
      if (!options.quiet) {
        std::fprintf(stderr, "stagelog parse: %s:%zu: %s\n", name.c_str(), number, error.c_str());
      }
    }
  }
  return skipped;
}

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
      "  $ echo '2026-01-04T19:30:28.456Z [T0_00] Stage: AGENT - Complete (13.2s)' | stagelog parse\n"
      "  {\"timestamp\":\"2026-01-04T19:30:28.456Z\",\"worker_id\":\"T0_00\",\"stage\":\"AGENT\","
      "\"status\":\"completed\",\"duration\":13.2,\"message\":\"\"}\n");
  return [options]() -> int {
    std::size_t skipped = 0;
    if (options->files.empty()) options->files.push_back("-");
    for (const auto& file : options->files) {
      if (file == "-") {
        skipped += parse_stream(std::cin, "<stdin>", *options);
        continue;
      }
      std::ifstream in(file, std::ios::binary);
      if (!in) throw Error("cannot open " + file + ": " + detail::errno_text(errno));
      skipped += parse_stream(in, file, *options);
    }
    std::fflush(stdout);
    if (skipped != 0 && !options->quiet) {
      std::fprintf(stderr, "stagelog parse: skipped %zu line%s\n", skipped, skipped == 1 ? "" : "s");
    }
    return skipped == 0 ? 0 : 1;
  };
}

}  // namespace stagelog::cli
