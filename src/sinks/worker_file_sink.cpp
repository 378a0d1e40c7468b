#include "stagelog/sinks/worker_file_sink.hpp"

#include <system_error>

#include "base/time_text.hpp"
#include "format/format.hpp"
#include "stagelog/error.hpp"
#include "stagelog/sinks/network_sink.hpp"
#include "stagelog/worker_logging.hpp"

namespace stagelog {

namespace {

std::string_view checked_rank(std::string_view rank) {
  if (rank.empty()) throw Error("worker rank is empty");
  return rank;
}

const std::filesystem::path& created(const std::filesystem::path& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) throw Error("cannot create " + dir.string() + ": " + ec.message());
  return dir;
}

}  // namespace

std::filesystem::path worker_log_path(const std::filesystem::path& log_dir, std::string_view rank) {
  return log_dir / ("worker_" + std::string(rank) + ".log");
}

std::filesystem::path worker_log_path(const std::filesystem::path& log_dir, int rank) {
  return worker_log_path(log_dir, std::to_string(rank));
}

WorkerFileSink::WorkerFileSink(const std::filesystem::path& log_dir, std::string_view rank,
                               WorkerFileOptions options)
    : FileSink(worker_log_path(created(log_dir), checked_rank(rank)), options.level,
               options.rotation),
      label_("Worker " + std::string(rank)),
      marker_pending_(opened_non_empty()) {}

void WorkerFileSink::format(const Event& event, std::string& out) {
  if (marker_pending_) {
    marker_pending_ = false;
    out += "=== Resume at ";
    detail::append_iso_timestamp(out, event.ts_ns);
    out += " ===\n";
  }
  detail::format_worker_line(event, label_, out);
}

std::shared_ptr<WorkerFileSink> setup_worker_logging(Recorder& recorder,
                                                     const std::filesystem::path& log_dir,
                                                     std::string_view rank,
                                                     WorkerLoggingOptions options) {
  auto file = std::make_shared<WorkerFileSink>(
      log_dir, rank, WorkerFileOptions{options.file_level, options.rotation});
  auto network = network_sink_from_env();  // Before add_sink: a bad URL adds nothing.
  recorder.add_sink(file);
  if (network) recorder.add_sink(std::move(network));
  recorder.add_sink(std::make_shared<ConsoleSink>(ConsoleOptions{options.console_level, 2}));
  recorder.set_worker(rank);
  return file;
}

}  // namespace stagelog
