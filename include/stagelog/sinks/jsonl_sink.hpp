#pragma once

#include <filesystem>
#include <string>

#include "stagelog/sink.hpp"

namespace stagelog {

// Writes one JSON object per event per line (JSON Lines) to a file opened for appending:
//   {"ts":"2026-01-04T19:30:28.456Z","ts_ns":...,"kind":"stage","level":"info","run":"",
//    "worker":"T0_00","component":"app","stage":"AGENT","status":"completed",
//    "elapsed_ns":13200000000,"message":"","fields":{"tokens":1247},"pid":4242,"host":"gpu-box"}
// Strings are escaped and invalid UTF-8 is replaced by U+FFFD, so a line never breaks.
// The constructor throws Error naming the path if the file cannot be opened.
class JsonlSink : public Sink {
 public:
  explicit JsonlSink(const std::filesystem::path& path, Level level = Level::Trace);
  ~JsonlSink() override;

  void write(const Event& event) override;
  void flush() override;

  const std::filesystem::path& path() const noexcept { return path_; }

 private:
  std::filesystem::path path_;
  int fd_ = -1;
  std::string buffer_;
};

}  // namespace stagelog
