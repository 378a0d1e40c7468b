#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <string>

#include "stagelog/sink.hpp"

namespace stagelog {

struct ProgressOptions {
  int fd = 2;                 // The terminal (or file, or pipe) to draw on.
  Level level = Level::Info;  // Log lines at or above this scroll above the display.
  // Auto: a live display on a terminal, plain lines otherwise. Always/Never force it.
  enum class Mode : std::uint8_t { Auto, Live, Plain } mode = Mode::Auto;
  std::chrono::milliseconds redraw_interval{100};   // Live: at most 10 redraws a second.
  std::chrono::milliseconds plain_interval{10000};  // Plain: a progress line at most this often
                                                    // (and one at every node end).
  int bar_width = 24;
};

// The progress display of a workflow run by parallel workers (seed 002's authors found that
// progress bars break with them; this one does not). It is a console sink: log lines and the
// display come from the recorder's one backend thread, so no amount of logging from other
// threads can tear it.
//
// On a terminal it draws, in place and at most 10 times a second,
//   Executing step_04 |█████████░░░░░░░░░░░░░░░| [12/40] 30% 1.2 nodes/s ETA 23s
//     T0_00   node n12    AGENT     3.2s
//     T0_01   node n13    JUDGE     0.4s
// with log lines scrolling above it. Elsewhere (CI, a file, a pipe) it writes plain
// "Executing step_04 [12/40] 30% 1.2 nodes/s ETA 23s" lines at every node end and at most every
// plain_interval: no carriage returns, no escape codes. It follows the Workflow's run and node
// events and every worker's stage events.
class ProgressSink : public Sink {
 public:
  explicit ProgressSink(ProgressOptions options = {});
  ~ProgressSink() override;

  void write(const Event& event) override;
  void flush() override;
  void tick(std::int64_t now_ns) override;

  bool live() const noexcept { return live_; }

 private:
  struct Worker {
    std::string node;
    std::string stage;
    std::int64_t stage_since_ns = 0;
  };
  void draw(std::int64_t now_ns, bool final);
  std::string bar_line(std::int64_t now_ns, bool plain) const;
  void emit(std::string_view text);

  ProgressOptions options_;
  bool live_;
  std::string workflow_;
  int total_ = 0;
  int done_ = 0;
  int failed_ = 0;
  bool running_ = false;
  std::int64_t start_ns_ = 0;
  std::int64_t last_ns_ = 0;  // Latest event time: the display's clock.
  std::map<std::string, Worker, std::less<>> workers_;
  std::string pending_;  // Log lines waiting for the next draw.
  int panel_lines_ = 0;  // Lines of the display now on the terminal.
  std::int64_t last_draw_ns_ = 0;
  std::int64_t last_plain_ns_ = 0;
  bool dirty_ = false;
};

}  // namespace stagelog
