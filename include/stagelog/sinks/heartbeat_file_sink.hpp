#pragma once

#include <filesystem>
#include <string>

#include "stagelog/sink.hpp"

namespace stagelog {

// Mirrors each worker's latest heartbeat to <dir>/<worker>.heartbeat.json, for tools that read
// files rather than logs (seed 001's brain). Written to a temporary file and renamed over the
// old one, so a reader sees the previous heartbeat or the new one, never half of either:
//   {"worker":"gpu-1","timestamp":"2026-02-07T21:45:30.000Z","ts_ns":...,"status":"idle",
//    "idle_s":34,"tasks_completed":42,"gpu_util":0.93,"pid":4242,"host":"gpu-box"}
// Only heartbeat events are written; the folder is created. Throws Error naming the folder if it
// cannot be created.
class HeartbeatFileSink : public Sink {
 public:
  explicit HeartbeatFileSink(const std::filesystem::path& dir);

  void write(const Event& event) override;

  std::filesystem::path path_for(std::string_view worker) const;

 private:
  std::filesystem::path dir_;
  std::string buffer_;
};

}  // namespace stagelog
