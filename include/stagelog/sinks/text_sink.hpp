#pragma once

#include <filesystem>
#include <string>

#include "stagelog/sink.hpp"

namespace stagelog {

// Writes events as text lines in the seed-000 format to a file opened for appending:
//   2026-01-04T19:30:15.234Z [T0_00] Stage: AGENT - Starting
//   2026-01-04T19:30:28.456Z [T0_00] Stage: AGENT - Complete (13.2s)
//   2026-01-04T19:30:28.460Z [T0_00] INFO worker: claimed task task=d5de16d7
// Whole lines reach the file in single write() calls, so several processes may append to one
// file without splitting each other's lines. The constructor throws Error naming the path if
// the file cannot be opened.
class TextSink : public Sink {
 public:
  explicit TextSink(const std::filesystem::path& path, Level level = Level::Trace);
  ~TextSink() override;

  void write(const Event& event) override;
  void flush() override;

  const std::filesystem::path& path() const noexcept { return path_; }

 private:
  std::filesystem::path path_;
  int fd_ = -1;
  std::string buffer_;
};

}  // namespace stagelog
