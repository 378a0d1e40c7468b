#pragma once

// What `stagelog tail` shows: the live table on a terminal (TailView, Terminal, TableKeys), or
// state changes and warnings as lines when piped. All of it runs on the tail's one loop thread.

#include <termios.h>

#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <string>

#include "stagelog/event.hpp"
#include "stagelog/watchdog.hpp"

namespace stagelog::cli {

// What the table's second line says about where the events come from.
struct SourceStatus {
  std::size_t files = 0;
  std::size_t unreadable_lines = 0;
  std::string server;  // The --server URL, or "".
  bool reconnecting = false;
};

// The filter the table's keys build: q quits, / starts a new filter (Enter keeps it, Esc drops
// it, Backspace edits it), Esc clears it.
class TableKeys {
 public:
  // Handles every key stdin holds now. Does not block once Terminal has set stdin's VMIN and
  // VTIME to 0.
  void read();

  bool quit() const { return quit_; }
  const std::string& filter() const { return filter_; }
  bool typing() const { return typing_; }

 private:
  void press(char c);

  bool quit_ = false;
  bool typing_ = false;
  std::string filter_;
};

// Turns the watchdog's reports and the workers' state changes into lines on stdout (`terminal`
// false) or into a table that draw() paints whole (`terminal` true; the last warnings and the
// last info line are kept for it). Counts the watchdog's warnings and the crashes workers
// reported themselves either way. Colours on a terminal unless $NO_COLOR is set.
class TailView {
 public:
  TailView(bool terminal, bool verbose);

  // A watchdog report or a worker's own warning.
  void report(const Event& e);
  // A source's note (a lost connection, a gap in the stream, an unreadable line): a line on
  // stderr when piped; on a terminal, among the warnings as from "server" (not counted).
  void note(const std::string& text);
  // Prints the workers' state changes since the last call (lines only; a no-op on a terminal).
  // Running <-> idle only when `verbose`.
  void transitions(const Watchdog& watchdog, std::int64_t now);
  // Paints the whole table for the terminal's current size.
  void draw(const Watchdog& watchdog, std::int64_t now, const SourceStatus& sources,
            const TableKeys& keys);
  // After the live table is gone: the workers as they ended and the last warnings, as lines.
  void final_report(const Watchdog& watchdog, std::int64_t now) const;

  std::size_t warnings() const { return warnings_; }

 private:
  bool terminal_;
  bool verbose_;
  bool color_ = false;
  std::size_t warnings_ = 0;
  std::deque<std::string> recent_;
  std::string last_info_;
  std::map<std::string, WorkerState> states_;
};

// Raw keys, no echo, the alternate screen, the cursor hidden; all undone on destruction. Only
// while stdin and stdout are a terminal.
class Terminal {
 public:
  Terminal();
  ~Terminal();
  Terminal(const Terminal&) = delete;
  Terminal& operator=(const Terminal&) = delete;

 private:
  termios saved_{};
  bool restore_ = false;
};

}  // namespace stagelog::cli
