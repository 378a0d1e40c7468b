// stagelog summary [--format table|json] [FILE...]: how long each stage took (count, failures,
// p50 / p95 / max, total), the runs, each worker's items and time per stage, and the stages
// that started and never ended, from text or JSONL logs.

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <iostream>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include "base/duration.hpp"
#include "base/time_text.hpp"
#include "commands.hpp"
#include "format/format.hpp"
#include "format/line_reader.hpp"
#include "log_lines.hpp"
#include "stagelog/parse.hpp"

namespace stagelog::cli {

namespace {

constexpr std::int64_t kInt64Max = std::numeric_limits<std::int64_t>::max();

struct SummaryOptions {
  std::vector<std::string> files;
  std::string format = "table";
  std::string log_format = "auto";
  bool quiet = false;
};

// ---- Formatting ------------------------------------------------------------------------------

std::int64_t saturating_add(std::int64_t a, std::int64_t b) {
  std::int64_t sum;
  return __builtin_add_overflow(a, b, &sum) ? kInt64Max : sum;
}

// later - earlier, for later >= earlier.
std::int64_t saturating_sub(std::int64_t later, std::int64_t earlier) {
  std::int64_t difference;
  return __builtin_sub_overflow(later, earlier, &difference) ? kInt64Max : difference;
}

// Seconds as a JSON number: exact to the nanosecond, shortest form ("13.2", "0.042").
std::string seconds_json(std::int64_t ns) {
  char buf[32];
  auto r = std::to_chars(buf, buf + sizeof buf, static_cast<double>(ns) / 1e9);
  return std::string(buf, r.ptr);
}

using detail::append_json_string;

// A name for a table cell: control characters escaped so a row stays one line.
std::string cell(std::string_view s) {
  if (s.empty()) return "-";
  std::string out;
  detail::append_escaped_text(out, s);
  return out;
}

// Columns padded to their widest cell (counted in UTF-8 characters), two spaces apart; the
// columns marked right-aligned hold numbers.
class Table {
 public:
  Table(std::vector<std::string> header, std::vector<bool> right)
      : right_(std::move(right)), rows_{std::move(header)} {}

  void add(std::vector<std::string> row) { rows_.push_back(std::move(row)); }

  void print(std::string& out) const {
    std::vector<std::size_t> widths(right_.size(), 0);
    for (const auto& row : rows_) {
      for (std::size_t c = 0; c < row.size(); ++c) widths[c] = std::max(widths[c], width(row[c]));
    }
    for (const auto& row : rows_) {
      std::string line = "  ";
      for (std::size_t c = 0; c < row.size(); ++c) {
        std::string pad(widths[c] - width(row[c]), ' ');
        if (c > 0) line += "  ";
        line += right_[c] ? pad + row[c] : row[c] + pad;
      }
      while (line.ends_with(' ')) line.pop_back();
      out += line;
      out += '\n';
    }
  }

 private:
  static std::size_t width(std::string_view s) {
    return static_cast<std::size_t>(
        std::count_if(s.begin(), s.end(), [](char c) { return (c & 0xC0) != 0x80; }));
  }

  std::vector<bool> right_;
  std::vector<std::vector<std::string>> rows_;
};

// ---- Statistics ------------------------------------------------------------------------------

bool is_end(Status status) {
  return status == Status::Completed || status == Status::Failed || status == Status::Skipped;
}

// The ends of one stage name, or of the runs.
struct Durations {
  std::size_t count = 0;  // Ends: completed, failed or skipped.
  std::size_t failed = 0;
  std::vector<std::int64_t> ns;  // Of the ends that say how long they took; sorted by finish().
  std::int64_t total = 0;

  void add(Status status, std::optional<std::int64_t> elapsed) {
    ++count;
    if (status == Status::Failed) ++failed;
    if (elapsed) {
      ns.push_back(*elapsed);
      total = saturating_add(total, *elapsed);
    }
  }
  void finish() { std::sort(ns.begin(), ns.end()); }
  // Nearest rank: the smallest duration with at least p% of them at or below it.
  std::int64_t percentile(std::size_t p) const {
    std::size_t rank = (ns.size() * p + 99) / 100;
    return ns[std::max<std::size_t>(rank, 1) - 1];
  }
};

struct WorkerStats {
  std::set<std::string> runs;  // Run ids of its stage events.
  std::size_t run_ends = 0;
  std::map<std::string, std::int64_t> stage_ns;  // Total time per stage name.
  std::string slowest_stage;
  std::int64_t slowest_ns = -1;
  bool has_stages = false;

  // Items: the distinct run ids of the worker's stage events. JSONL lines carry them (a
  // RunScope is one item) and they also count an item whose run never ended. Text lines have
  // no run id: there, an item is a run end, "Stage: COMPLETE - ...".
  std::size_t items() const { return runs.empty() ? run_ends : runs.size(); }
};

struct StuckCandidate {
  std::string worker;
  std::string stage;
  std::int64_t started_ns;
};

class Summary {
 public:
  void count_line() { ++lines_; }
  void count_skipped() { ++skipped_; }
  std::size_t skipped() const { return skipped_; }

  void add(const OwnedEvent& e) {
    last_ns_ = std::max(last_ns_.value_or(e.ts_ns), e.ts_ns);
    // The watchdog's own reports ("Running (30.0s)", "stuck") describe stages it saw elsewhere.
    if (e.component == "watchdog") return;
    // A negative time can only come from a damaged line: count the end, not its time.
    std::optional<std::int64_t> elapsed = e.elapsed_ns;
    if (elapsed && *elapsed < 0) elapsed.reset();
    if (e.kind == Kind::Run) {
      // A Workflow's own run event spans all its items, and the text format shows it as a
      // plain line: counting it would make a JSONL log report one run more than its text twin.
      if (!is_end(e.status) || e.component == "workflow") return;
      runs_.add(e.status, elapsed);
      ++workers_[e.worker].run_ends;
      return;
    }
    if (e.kind != Kind::Stage) return;
    WorkerStats& worker = workers_[e.worker];
    worker.has_stages = true;
    if (!e.run.empty()) worker.runs.insert(e.run);
    auto key = std::make_pair(e.worker, e.stage);
    if (e.status == Status::Starting) {
      open_[key].push_back(e.ts_ns);
      return;
    }
    if (!is_end(e.status)) return;  // Running, InProgress: progress, not an end.
    // An end closes the latest open start of its stage on its worker: a nested stage of the
    // same name closes first, and a start left behind by a crashed attempt stays open.
    if (auto it = open_.find(key); it != open_.end()) {
      it->second.pop_back();
      if (it->second.empty()) open_.erase(it);
    }
    stages_[e.stage].add(e.status, elapsed);
    if (elapsed) {
      std::int64_t& total = worker.stage_ns[e.stage];
      total = saturating_add(total, *elapsed);
      if (*elapsed > worker.slowest_ns) {
        worker.slowest_ns = *elapsed;
        worker.slowest_stage = e.stage;
      }
    }
  }

  void print_table(std::string& out) {
    finish();
    if (order_.empty()) {
      out += "Stages: none\n";
    } else {
      out += "Stages, by total time:\n";
      Table table({"STAGE", "COUNT", "FAILED", "P50", "P95", "MAX", "TOTAL"},
                  {false, true, true, true, true, true, true});
      for (const auto* entry : order_) {
        const Durations& d = entry->second;
        auto time = [&](std::size_t p) {
          return d.ns.empty() ? std::string("-") : detail::elapsed_seconds_text(d.percentile(p));
        };
        table.add({cell(entry->first), std::to_string(d.count), std::to_string(d.failed), time(50),
                   time(95), time(100),
                   d.ns.empty() ? "-" : detail::elapsed_seconds_text(d.total)});
      }
      table.print(out);
    }

    out += "\nRuns: ";
    if (runs_.count == 0) {
      out += "none\n";
    } else {
      out += std::to_string(runs_.count) + " ended, " + std::to_string(runs_.failed) + " failed";
      if (!runs_.ns.empty()) {
        out += "; p50 " + detail::elapsed_seconds_text(runs_.percentile(50)) + ", p95 " +
               detail::elapsed_seconds_text(runs_.percentile(95)) + ", max " +
               detail::elapsed_seconds_text(runs_.percentile(100));
      }
      out += '\n';
    }

    if (staged_workers_.empty()) {
      out += "\nWorkers: none\n";
    } else {
      out += "\nWorkers:\n";
      std::vector<std::string> header = {"WORKER", "ITEMS"};
      std::vector<bool> right = {false, true};
      for (const auto* entry : order_) {
        header.push_back(cell(entry->first));
        right.push_back(true);
      }
      header.push_back("SLOWEST");
      right.push_back(false);
      Table table(std::move(header), std::move(right));
      for (const auto* entry : staged_workers_) {
        const WorkerStats& w = entry->second;
        std::vector<std::string> row = {cell(entry->first), std::to_string(w.items())};
        for (const auto* stage : order_) {
          auto it = w.stage_ns.find(stage->first);
          row.push_back(it == w.stage_ns.end() ? "-" : detail::elapsed_seconds_text(it->second));
        }
        row.push_back(w.slowest_ns < 0 ? "-"
                                       : cell(w.slowest_stage) + " " +
                                             detail::elapsed_seconds_text(w.slowest_ns));
        table.add(std::move(row));
      }
      table.print(out);
    }

    if (stuck_.empty()) {
      out += "\nStuck candidates: none\n";
    } else {
      out += "\nStuck candidates, started and not ended by the last event (" +
             detail::iso_timestamp(*last_ns_) + "):\n";
      Table table({"WORKER", "STAGE", "STARTED", "OPEN FOR"}, {false, false, false, true});
      for (const auto& s : stuck_) {
        table.add({cell(s.worker), cell(s.stage), detail::iso_timestamp(s.started_ns),
                   detail::elapsed_seconds_text(saturating_sub(*last_ns_, s.started_ns))});
      }
      table.print(out);
    }

    out +=
        "\nLines: " + std::to_string(lines_) + " read, " + std::to_string(skipped_) + " skipped\n";
  }

  void print_json(std::string& out) {
    finish();
    auto times = [&](const Durations& d) {
      for (auto [key, p] :
           {std::pair{"p50_s", 50}, std::pair{"p95_s", 95}, std::pair{"max_s", 100}}) {
        out += ",\"";
        out += key;
        out += "\":";
        out += d.ns.empty() ? "null" : seconds_json(d.percentile(static_cast<std::size_t>(p)));
      }
    };
    out += "{\"stages\":[";
    for (const auto* entry : order_) {
      const Durations& d = entry->second;
      if (entry != order_.front()) out += ',';
      out += "{\"stage\":";
      append_json_string(out, entry->first);
      out += ",\"count\":" + std::to_string(d.count) + ",\"failed\":" + std::to_string(d.failed);
      times(d);
      out += ",\"total_s\":";
      out += d.ns.empty() ? "null" : seconds_json(d.total);
      out += '}';
    }
    out += "],\"runs\":{\"count\":" + std::to_string(runs_.count) +
           ",\"failed\":" + std::to_string(runs_.failed);
    times(runs_);
    out += "},\"workers\":[";
    for (const auto* entry : staged_workers_) {
      const WorkerStats& w = entry->second;
      if (entry != staged_workers_.front()) out += ',';
      out += "{\"worker\":";
      append_json_string(out, entry->first);
      out += ",\"items\":" + std::to_string(w.items()) + ",\"stages\":{";
      bool first = true;
      for (const auto* stage : order_) {
        auto it = w.stage_ns.find(stage->first);
        if (it == w.stage_ns.end()) continue;
        if (!first) out += ',';
        first = false;
        append_json_string(out, it->first);
        out += ':' + seconds_json(it->second);
      }
      out += "},\"slowest\":";
      if (w.slowest_ns < 0) {
        out += "null";
      } else {
        out += "{\"stage\":";
        append_json_string(out, w.slowest_stage);
        out += ",\"duration_s\":" + seconds_json(w.slowest_ns) + '}';
      }
      out += '}';
    }
    out += "],\"stuck_candidates\":[";
    for (const auto& s : stuck_) {
      if (&s != &stuck_.front()) out += ',';
      out += "{\"worker\":";
      append_json_string(out, s.worker);
      out += ",\"stage\":";
      append_json_string(out, s.stage);
      out += ",\"started\":\"" + detail::iso_timestamp(s.started_ns) +
             "\",\"open_s\":" + seconds_json(saturating_sub(*last_ns_, s.started_ns)) + '}';
    }
    out += "],\"lines\":" + std::to_string(lines_) + ",\"skipped\":" + std::to_string(skipped_) +
           "}\n";
  }

 private:
  using StageEntry = std::pair<const std::string, Durations>;
  using WorkerEntry = std::pair<const std::string, WorkerStats>;

  // Sorts what the printers walk: stages by total time (then name), workers with stages by
  // name, stuck candidates by start time.
  void finish() {
    for (auto& entry : stages_) {
      entry.second.finish();
      order_.push_back(&entry);
    }
    std::sort(order_.begin(), order_.end(), [](const StageEntry* a, const StageEntry* b) {
      return a->second.total != b->second.total ? a->second.total > b->second.total
                                                : a->first < b->first;
    });
    runs_.finish();
    for (const auto& entry : workers_) {
      if (entry.second.has_stages) staged_workers_.push_back(&entry);
    }
    for (const auto& [key, starts] : open_) {
      for (std::int64_t start : starts) stuck_.push_back({key.first, key.second, start});
    }
    std::sort(stuck_.begin(), stuck_.end(), [](const StuckCandidate& a, const StuckCandidate& b) {
      return std::tie(a.started_ns, a.worker, a.stage) < std::tie(b.started_ns, b.worker, b.stage);
    });
  }

  std::size_t lines_ = 0;
  std::size_t skipped_ = 0;
  std::optional<std::int64_t> last_ns_;  // The latest timestamp of any event read.
  std::map<std::string, Durations> stages_;
  Durations runs_;
  std::map<std::string, WorkerStats> workers_;
  // Stage starts not yet ended, by worker and stage name, in the order they came.
  std::map<std::pair<std::string, std::string>, std::vector<std::int64_t>> open_;

  std::vector<StageEntry*> order_;
  std::vector<const WorkerEntry*> staged_workers_;
  std::vector<StuckCandidate> stuck_;
};

}  // namespace

Command add_summary(CLI::App& app) {
  auto options = std::make_shared<SummaryOptions>();
  CLI::App* cmd = app.add_subcommand(
      "summary",
      "Summarise logs (text lines, JSONL lines or both, from files or stdin): per stage, how\n"
      "many ended, how many failed and p50 / p95 / max / total duration; the runs; per worker,\n"
      "its items, its time in each stage and its slowest stage; and the stuck candidates,\n"
      "stages that started and had not ended by the last event. Durations are those the stage\n"
      "end lines report. The watchdog's own events are left out. Lines that cannot be read are\n"
      "reported on stderr with their line numbers and skipped; they are not an error.");
  cmd->add_option("files", options->files, "Files to read; '-' or none reads stdin");
  cmd->add_option("--format", options->format, "table (default) or json: one JSON object")
      ->check(CLI::IsMember({"table", "json"}));
  cmd->add_option("--log-format", options->log_format,
                  "Input format (as stagelog parse --format): " +
                      std::string(detail::LineReader::format_names()))
      ->default_str("auto");
  cmd->add_flag("-q,--quiet", options->quiet, "Do not report skipped lines");
  cmd->footer(
      "Lines look like\n"
      "  2026-01-04T19:30:28.456Z [T0_00] Stage: AGENT - Complete (13.2s)\n"
      "  {\"ts\":\"2026-01-04T19:30:28.456Z\",\"kind\":\"stage\",\"worker\":\"T0_00\","
      "\"stage\":\"AGENT\",\"status\":\"completed\",\"elapsed_ns\":13200000000}\n"
      "\n"
      "Example: the seed's two workers, both still judging when the log ends:\n"
      "  $ stagelog summary run.log\n"
      "  Stages, by total time:\n"
      "    STAGE  COUNT  FAILED    P50    P95    MAX  TOTAL\n"
      "    AGENT      2       0  13.2s  15.4s  15.4s  28.6s\n"
      "\n"
      "  Runs: none\n"
      "\n"
      "  Workers:\n"
      "    WORKER  ITEMS  AGENT  SLOWEST\n"
      "    T0_00       0  13.2s  AGENT 13.2s\n"
      "    T0_01       0  15.4s  AGENT 15.4s\n"
      "\n"
      "  Stuck candidates, started and not ended by the last event (2026-01-04T19:30:31.234Z):\n"
      "    WORKER  STAGE  STARTED                   OPEN FOR\n"
      "    T0_00   JUDGE  2026-01-04T19:30:29.123Z      2.1s\n"
      "    T0_01   JUDGE  2026-01-04T19:30:31.234Z    0.000s\n"
      "\n"
      "  Lines: 6 read, 0 skipped\n");
  return [options]() -> int {
    std::ios::sync_with_stdio(false);  // Only std::cin is read; output goes through stdio.
    Summary summary;
    detail::LineReader reader(options->log_format);
    read_log_lines(options->files, "summary", options->quiet,
                   [&summary, &reader](std::string_view line, std::string& error) {
                     summary.count_line();
                     auto event = reader.read(line, &error);
                     if (!event) {
                       summary.count_skipped();
                       return false;
                     }
                     summary.add(*event);
                     return true;
                   });
    std::string out;
    if (options->format == "json") {
      summary.print_json(out);
    } else {
      summary.print_table(out);
    }
    std::fwrite(out.data(), 1, out.size(), stdout);
    std::fflush(stdout);
    if (summary.skipped() != 0 && !options->quiet) {
      std::fprintf(stderr, "stagelog summary: skipped %zu line%s\n", summary.skipped(),
                   summary.skipped() == 1 ? "" : "s");
    }
    return 0;
  };
}

}  // namespace stagelog::cli
