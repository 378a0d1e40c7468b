#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "stagelog/recorder.hpp"

namespace stagelog {

struct WorkflowOptions {
  // Where node and workflow events also go, for the progress display (ProgressSink) and the
  // other sinks; may be null.
  Recorder* recorder = nullptr;
  // Print the header and summary blocks to stdout, as the seed's observer does.
  bool print = true;
  // Write errors (disk full ...) after the first are counted, not printed; the first goes to
  // on_error (default: "stagelog: <message>" on stderr).
  std::function<void(std::string_view)> on_error;
  // Progress snapshots in the log files: at most one every this often (and one at the end).
  std::chrono::milliseconds log_progress_interval{1000};
};

// A run of a workflow of `total_nodes` nodes (seed 002's ExecutionObserver), writing the files
// the seed's observer writes, in the same places and formats:
//   <output_dir>/logs/execution_<id>_<YYYYmmdd_HHMMSS>.log        header, events, summary
//   <output_dir>/traces/trace_step_<NN>_<YYYYmmdd_HHMMSS>.jsonl   one JSON object per event
//   <output_dir>/audit/step_<NN>/{log_<NN>.log, trace_<NN>.jsonl, metadata_<NN>.json}
// NN comes from "step_(\d+)" in the workflow id, else "00". Any thread may call any method;
// nodes may run in parallel. The constructor creates the folders and opens the files, and throws
// Error naming the path if it cannot, before any work starts. A write that fails later (disk
// full) is reported once and counted; the run goes on, and the summary says the log is
// incomplete.
class Workflow {
 public:
  Workflow(std::string workflow_id, const std::filesystem::path& output_dir, int total_nodes,
           WorkflowOptions options = {});
  ~Workflow();
  Workflow(const Workflow&) = delete;
  Workflow& operator=(const Workflow&) = delete;

  void node_start(std::string_view node_id, int node_index);
  // output_summary is a JSON object's text, or empty.
  void node_success(std::string_view node_id, double duration_seconds,
                    std::string_view output_hash = {}, std::string_view output_summary = {});
  void node_failure(std::string_view node_id, std::string_view error, double duration_seconds);
  // The end of the run: summary block, workflow_complete event, metadata_<NN>.json.
  void complete(double cumulative_cost_usd = 0.0);
  // The run failed: error block, workflow_error event, metadata_<NN>.json with the error.
  void error(std::string_view message);

  const std::string& workflow_id() const noexcept { return id_; }
  const std::string& step_number() const noexcept { return step_; }
  const std::filesystem::path& log_file() const noexcept { return log_path_; }
  const std::filesystem::path& trace_file() const noexcept { return trace_path_; }
  const std::filesystem::path& audit_dir() const noexcept { return audit_dir_; }
  const std::filesystem::path& audit_log_file() const noexcept { return audit_log_path_; }
  const std::filesystem::path& audit_trace_file() const noexcept { return audit_trace_path_; }
  std::filesystem::path metadata_file() const {
    return audit_dir_ / ("metadata_" + step_ + ".json");
  }
  int nodes_completed() const;
  int nodes_failed() const;
  // Writes that failed (disk full ...); 0 when every file is complete.
  std::uint64_t failed_writes() const;

  // "04" for "step_04_populate_mpd", "00" when the id has no step number.
  static std::string extract_step_number(std::string_view workflow_id);

 private:
  class Files;
  class Obj;
  void record(std::string_view event_type, std::string_view message, std::string_view node_id,
              int node_index, bool has_index, const Obj& details);
  void finish(bool ok, std::string_view error, double cost);
  void progress_snapshot(bool force);
  void set_node_time(std::string_view node_id, double seconds);  // Under mu_.
  double elapsed_seconds() const;

  std::string id_;
  std::filesystem::path output_dir_;
  int total_;
  WorkflowOptions options_;
  std::string step_;
  std::int64_t pid_;
  std::int64_t start_wall_ns_;
  std::int64_t start_steady_ns_;
  std::filesystem::path log_path_, trace_path_, audit_dir_, audit_log_path_, audit_trace_path_;
  std::unique_ptr<Files> files_;
  Logger log_;  // Valid when options_.recorder is set.

  mutable std::mutex mu_;
  int completed_ = 0;
  int failed_ = 0;
  bool finished_ = false;
  std::vector<std::pair<std::string, double>> node_times_;  // In first-seen order, as the seed.
  std::map<std::string, std::int64_t, std::less<>> node_begin_ticks_;
  std::int64_t last_snapshot_ns_ = 0;
};

}  // namespace stagelog
