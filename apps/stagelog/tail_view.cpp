#include "tail_view.hpp"

#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string_view>
#include <utility>
#include <variant>

#include "base/duration.hpp"
#include "base/time.hpp"
#include "base/time_text.hpp"

namespace stagelog::cli {

namespace {

constexpr std::size_t kRecentWarnings = 6;

bool interesting(WorkerState s) {
  return s == WorkerState::Stuck || s == WorkerState::Silent || s == WorkerState::Crashed ||
         s == WorkerState::Done;
}

}  // namespace

// --- Keys -----------------------------------------------------------------------------------

void TableKeys::read() {
  char c;
  while (::read(STDIN_FILENO, &c, 1) == 1) press(c);
}

void TableKeys::press(char c) {
  if (typing_) {
    if (c == '\n' || c == '\r') {
      typing_ = false;
    } else if (c == 27) {
      typing_ = false;
      filter_.clear();
    } else if ((c == 127 || c == 8) && !filter_.empty()) {
      filter_.pop_back();
    } else if (c >= 32 && c < 127) {
      filter_ += c;
    }
  } else if (c == 'q' || c == 'Q') {
    quit_ = true;
  } else if (c == '/') {
    typing_ = true;
    filter_.clear();
  } else if (c == 27) {
    filter_.clear();
  }
}

// --- The view -------------------------------------------------------------------------------

TailView::TailView(bool terminal, bool verbose) : terminal_(terminal), verbose_(verbose) {
  const char* no_color = std::getenv("NO_COLOR");
  color_ = terminal && (no_color == nullptr || *no_color == '\0');
}

void TailView::report(const Event& e) {
  if (e.component == "watchdog") {
    std::string_view rule;
    for (const auto& f : e.fields) {
      if (f.key == "rule") rule = std::get<std::string_view>(f.value);
    }
    if (rule == "running") return;
    if (e.level >= Level::Warning) ++warnings_;
  } else if ((e.kind == Kind::Lifecycle && e.status == Status::Failed) ||
             e.level >= Level::Critical) {
    // A worker that reported its own crash (Agent::crashed, the crash handler's CRITICAL
    // line): the watchdog says nothing more, but it was flagged all the same.
    ++warnings_;
  }
  std::string line = detail::iso_timestamp(e.ts_ns) + " " + std::string(level_name(e.level)) +
                     " [" + std::string(e.worker) + "] " + std::string(e.message);
  if (terminal_) {
    if (e.level < Level::Warning) {
      last_info_ = line;
      return;
    }
    recent_.push_back(std::move(line));
    if (recent_.size() > kRecentWarnings) recent_.pop_front();
  } else {
    std::printf("%s\n", line.c_str());
  }
}

void TailView::note(const std::string& text) {
  if (!terminal_) {
    std::fprintf(stderr, "stagelog tail: %s\n", text.c_str());
    return;
  }
  Event e;
  e.ts_ns = detail::realtime_ns();
  e.level = Level::Warning;
  e.worker = "server";
  e.message = text;
  report(e);  // Not counted: not the watchdog's.
}

void TailView::transitions(const Watchdog& watchdog, std::int64_t now) {
  if (terminal_) return;
  for (const auto& w : watchdog.workers(now)) {
    auto it = states_.find(w.worker);
    if (it == states_.end()) {
      states_.emplace(w.worker, w.state);
      std::string what = w.stage.empty() ? "" : " (stage " + w.stage + ")";
      std::printf("%s [%s] %s%s\n", detail::iso_timestamp(now).c_str(), w.worker.c_str(),
                  std::string(worker_state_name(w.state)).c_str(), what.c_str());
      continue;
    }
    if (it->second == w.state) continue;
    WorkerState was = std::exchange(it->second, w.state);
    if (!verbose_ && !interesting(was) && !interesting(w.state)) continue;
    std::string what = w.stage.empty() ? "" : " (stage " + w.stage + ")";
    if (w.stage.empty() && !w.task.empty()) what = " (task " + w.task + ")";
    std::printf("%s [%s] %s -> %s%s\n", detail::iso_timestamp(now).c_str(), w.worker.c_str(),
                std::string(worker_state_name(was)).c_str(),
                std::string(worker_state_name(w.state)).c_str(), what.c_str());
  }
  std::fflush(stdout);
}

void TailView::draw(const Watchdog& watchdog, std::int64_t now, const SourceStatus& sources,
                    const TableKeys& keys) {
  auto workers = watchdog.workers(now);
  winsize ws{};
  int rows = 24;
  int cols = 100;
  if (::ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_row > 0) {
    rows = ws.ws_row;
    cols = ws.ws_col;
  }
  std::map<WorkerState, int> counts;
  for (const auto& w : workers) ++counts[w.state];
  std::string out = "\x1b[H\x1b[2J";
  auto line = [&](const std::string& text, const char* color = nullptr) {
    std::string cut = text.substr(0, static_cast<std::size_t>(std::max(cols - 1, 10)));
    if (color != nullptr && color_) {
      out += color;
      out += cut;
      out += "\x1b[0m";
    } else {
      out += cut;
    }
    out += "\r\n";
  };
  std::string head = "stagelog tail  " + detail::iso_timestamp(now) + "  " +
                     std::to_string(workers.size()) + " workers:";
  for (auto s : {WorkerState::Running, WorkerState::Idle, WorkerState::Stuck, WorkerState::Silent,
                 WorkerState::Crashed, WorkerState::Done}) {
    if (counts[s] > 0) {
      head += " " + std::to_string(counts[s]) + " " + std::string(worker_state_name(s));
    }
  }
  head += "  warnings: " + std::to_string(warnings_);
  line(head, "\x1b[1m");
  std::string files = std::to_string(sources.files) + " files";
  if (sources.unreadable_lines > 0) {
    files += ", " + std::to_string(sources.unreadable_lines) + " unreadable lines";
  }
  if (!sources.server.empty()) {
    files += ", " + sources.server + (sources.reconnecting ? " (reconnecting)" : "");
  }
  if (!watchdog.queue().empty()) files += "  queue: " + watchdog.queue();
  line(files);
  for (const auto& r : recent_) {
    bool error =
        r.find(" ERROR ") != std::string::npos || r.find(" CRITICAL ") != std::string::npos;
    line(r, error ? "\x1b[31m" : "\x1b[33m");
  }
  if (!last_info_.empty()) line(last_info_, "\x1b[2m");
  line("");
  char buf[512];
  std::snprintf(buf, sizeof buf, "%-14s %-8s %-22s %9s %9s %6s %6s  %s", "WORKER", "STATE",
                "STAGE / TASK", "IN STAGE", "LAST EVT", "DONE", "FAILED", "LAST MESSAGE");
  line(buf, "\x1b[7m");
  const std::string& filter = keys.filter();
  int shown = 0;
  int room = rows - static_cast<int>(recent_.size()) - 7;
  for (const auto& w : workers) {
    std::string stage = !w.stage.empty() ? w.stage : w.task.empty() ? "-" : "task " + w.task;
    std::string state(worker_state_name(w.state));
    if (!filter.empty() && w.worker.find(filter) == std::string::npos &&
        stage.find(filter) == std::string::npos && state.find(filter) == std::string::npos) {
      continue;
    }
    if (shown >= room) {
      line("... " + std::to_string(workers.size() - static_cast<std::size_t>(shown)) + " more");
      break;
    }
    std::string in_stage = w.stage.empty() ? "-" : detail::compact_duration(now - w.stage_since_ns);
    std::snprintf(buf, sizeof buf, "%-14.14s %-8s %-22.22s %9s %9s %6llu %6llu  %s",
                  w.worker.c_str(), state.c_str(), stage.c_str(), in_stage.c_str(),
                  detail::compact_duration(now - w.last_event_ns).c_str(),
                  static_cast<unsigned long long>(w.tasks_done + w.stages_done),
                  static_cast<unsigned long long>(w.tasks_failed + w.stages_failed),
                  w.last_message.c_str());
    const char* color = nullptr;
    if (w.state == WorkerState::Stuck || w.state == WorkerState::Crashed) color = "\x1b[31m";
    if (w.state == WorkerState::Silent) color = "\x1b[38;5;214m";
    if (w.state == WorkerState::Done) color = "\x1b[2m";
    line(buf, color);
    ++shown;
  }
  out += "\x1b[" + std::to_string(rows) + ";1H";
  if (keys.typing()) {
    out += "filter: " + filter;
  } else {
    out += filter.empty() ? "q quit  / filter" : "q quit  / filter (" + filter + ")";
  }
  std::fwrite(out.data(), 1, out.size(), stdout);
  std::fflush(stdout);
}

void TailView::final_report(const Watchdog& watchdog, std::int64_t now) const {
  for (const auto& r : recent_) std::printf("%s\n", r.c_str());
  for (const auto& w : watchdog.workers(now)) {
    std::string where = !w.stage.empty() ? " in stage " + w.stage + " for " +
                                               detail::compact_duration(now - w.stage_since_ns)
                                         : "";
    std::printf("%-14s %-8s done %llu, failed %llu%s\n", w.worker.c_str(),
                std::string(worker_state_name(w.state)).c_str(),
                static_cast<unsigned long long>(w.tasks_done + w.stages_done),
                static_cast<unsigned long long>(w.tasks_failed + w.stages_failed), where.c_str());
  }
  std::printf("%zu warning%s\n", warnings_, warnings_ == 1 ? "" : "s");
}

// --- The terminal ---------------------------------------------------------------------------

Terminal::Terminal() {
  if (::tcgetattr(STDIN_FILENO, &saved_) == 0) {
    termios raw = saved_;
    raw.c_lflag &= static_cast<tcflag_t>(~(ICANON | ECHO));
    raw.c_cc[VMIN] = 0;
    raw.c_cc[VTIME] = 0;
    ::tcsetattr(STDIN_FILENO, TCSANOW, &raw);
    restore_ = true;
  }
  std::fputs("\x1b[?1049h\x1b[?25l", stdout);
  std::fflush(stdout);
}

Terminal::~Terminal() {
  std::fputs("\x1b[?25h\x1b[?1049l", stdout);
  std::fflush(stdout);
  if (restore_) ::tcsetattr(STDIN_FILENO, TCSANOW, &saved_);
}

}  // namespace stagelog::cli
