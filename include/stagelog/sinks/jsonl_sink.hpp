#pragma once

#include "stagelog/sinks/file_sink.hpp"

namespace stagelog {

// Writes one JSON object per event per line (JSON Lines), appending to a file:
//   {"ts":"2026-01-04T19:30:28.456Z","ts_ns":...,"kind":"stage","level":"info","run":"",
//    "worker":"T0_00","component":"app","stage":"AGENT","status":"completed",
//    "elapsed_ns":13200000000,"message":"","fields":{"tokens":1247},"pid":4242,"host":"gpu-box"}
// Strings are escaped and invalid UTF-8 is replaced by U+FFFD, so a line never breaks.
class JsonlSink : public FileSink {
 public:
  explicit JsonlSink(const std::filesystem::path& path, Level level = Level::Trace,
                     Rotation rotation = {})
      : FileSink(path, level, rotation) {}

 protected:
  void format(const Event& event, std::string& out) override;
};

}  // namespace stagelog
