#pragma once

#include <filesystem>
#include <memory>
#include <string_view>

#include "stagelog/recorder.hpp"
#include "stagelog/sinks/console_sink.hpp"
#include "stagelog/sinks/worker_file_sink.hpp"

namespace stagelog {

struct WorkerLoggingOptions {
  Level file_level = Level::Info;
  // Seed 003 started at WARNING to keep the terminal quiet, then moved to INFO: a setting.
  Level console_level = Level::Warning;
  Rotation rotation{100ull * 1024 * 1024, 5};
};

// Seed 003's setup_worker_logging(rank, log_dir): a WorkerFileSink for <log_dir>/worker_<rank>
// .log and a ConsoleSink on stderr at console_level, added to the recorder; the calling thread
// becomes worker <rank>. When STAGELOG_SERVER is set, a NetworkSink from
// network_sink_from_env() (STAGELOG_TOKEN, STAGELOG_SPOOL) is added too, at every level, so the
// server sees the worker's events; the recorder owns it. Returns the file sink. Throws Error if
// the folder or file cannot be created, or if STAGELOG_SERVER is malformed.
std::shared_ptr<WorkerFileSink> setup_worker_logging(Recorder& recorder,
                                                     const std::filesystem::path& log_dir,
                                                     std::string_view rank,
                                                     WorkerLoggingOptions options = {});

}  // namespace stagelog
