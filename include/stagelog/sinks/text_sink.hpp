#pragma once

#include "stagelog/sinks/file_sink.hpp"

namespace stagelog {

// Writes events as text lines in the seed-000 format, appending to a file:
//   2026-01-04T19:30:15.234Z [T0_00] Stage: AGENT - Starting
//   2026-01-04T19:30:28.456Z [T0_00] Stage: AGENT - Complete (13.2s)
//   2026-01-04T19:30:28.460Z [T0_00] INFO worker: claimed task task=d5de16d7
class TextSink : public FileSink {
 public:
  explicit TextSink(const std::filesystem::path& path, Level level = Level::Trace,
                    Rotation rotation = {})
      : FileSink(path, level, rotation) {}
  bool obeys_component_levels() const noexcept override { return true; }  // Lines for people.

 protected:
  void format(const Event& event, std::string& out) override;
};

}  // namespace stagelog
