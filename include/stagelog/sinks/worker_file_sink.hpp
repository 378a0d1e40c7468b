#pragma once

#include <filesystem>
#include <string>
#include <string_view>

#include "stagelog/sinks/file_sink.hpp"

namespace stagelog {

struct WorkerFileOptions {
  Level level = Level::Info;
  Rotation rotation{100ull * 1024 * 1024, 5};  // Seed 001: "consider rotation (>100MB)".
};

// <log_dir>/worker_<rank>.log: where a worker's file is. Creates nothing, so a parent process
// can find its workers' files.
std::filesystem::path worker_log_path(const std::filesystem::path& log_dir, std::string_view rank);
std::filesystem::path worker_log_path(const std::filesystem::path& log_dir, int rank);

// One worker's own log file (seed 003): <log_dir>/worker_<rank>.log, the folder created,
// opened for appending so history survives restarts. Lines read
//   2026-02-04 19:36:20,123 - Worker 3 - worker - INFO - claimed task task=d5de16d7
// (UTC). When the file already held data, the first line this sink writes is
//   === Resume at 2026-02-04T19:36:20.123Z ===
// so sessions can be told apart; a new or empty file gets none. Rotates by size (100 MB, five
// old files by default). Throws Error naming the folder or file if it cannot be created.
class WorkerFileSink : public FileSink {
 public:
  WorkerFileSink(const std::filesystem::path& log_dir, std::string_view rank,
                 WorkerFileOptions options = {});
  WorkerFileSink(const std::filesystem::path& log_dir, int rank, WorkerFileOptions options = {})
      : WorkerFileSink(log_dir, std::to_string(rank), options) {}
  bool obeys_component_levels() const noexcept override { return true; }  // Lines for people.

 protected:
  void format(const Event& event, std::string& out) override;

 private:
  std::string label_;  // "Worker 3"
  bool marker_pending_;
};

}  // namespace stagelog
