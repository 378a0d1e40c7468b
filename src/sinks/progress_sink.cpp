#include "stagelog/sinks/progress_sink.hpp"

#include <unistd.h>

#include <cstdio>

#include "base/duration.hpp"
#include "base/fd_io.hpp"
#include "format/format.hpp"

namespace stagelog {

namespace {

constexpr std::string_view kUp = "\x1b[1A";         // Cursor up one line.
constexpr std::string_view kClearLine = "\x1b[2K";  // Erase the whole line.

std::string padded(std::string_view s, std::size_t width) {
  std::string out(s.substr(0, width));
  out.append(width - out.size(), ' ');
  return out;
}

std::int64_t field_int(const Event& e, std::string_view key, std::int64_t fallback) {
  for (const auto& f : e.fields) {
    if (f.key != key) continue;
    if (const auto* v = std::get_if<std::int64_t>(&f.value)) return *v;
    if (const auto* u = std::get_if<std::uint64_t>(&f.value)) return static_cast<std::int64_t>(*u);
  }
  return fallback;
}

}  // namespace

ProgressSink::ProgressSink(ProgressOptions options)
    : Sink(Level::Trace),
      options_(options),
      live_(options.mode == ProgressOptions::Mode::Live ||
            (options.mode == ProgressOptions::Mode::Auto && ::isatty(options.fd) == 1)) {}

ProgressSink::~ProgressSink() {
  try {
    flush();
  } catch (...) {
  }
}

void ProgressSink::write(const Event& e) {
  last_ns_ = e.ts_ns;
  bool progress_changed = false;
  if (e.kind == Kind::Run && e.component == "workflow") {
    if (e.status == Status::Starting) {
      workflow_ = std::string(e.stage);
      total_ = static_cast<int>(field_int(e, "total_nodes", 0));
      done_ = failed_ = 0;
      start_ns_ = e.ts_ns;
      running_ = true;
    } else {
      draw(e.ts_ns, true);
      running_ = false;
      workers_.clear();
    }
    dirty_ = true;
  } else if (e.kind == Kind::Node) {
    Worker& w = workers_[std::string(e.worker)];
    if (e.status == Status::Starting) {
      w.node = std::string(e.stage);
    } else {
      w.node.clear();
      w.stage.clear();
      done_ = static_cast<int>(field_int(e, "nodes_completed", done_)) +
              static_cast<int>(field_int(e, "nodes_failed", failed_));
      failed_ = static_cast<int>(field_int(e, "nodes_failed", failed_));
      progress_changed = true;
    }
    dirty_ = true;
  } else if (e.kind == Kind::Stage) {
    Worker& w = workers_[std::string(e.worker)];
    if (e.status == Status::Starting) {
      w.stage = std::string(e.stage);
      w.stage_since_ns = e.ts_ns;
    } else {
      w.stage.clear();
    }
    dirty_ = true;
  }
  if (e.level >= options_.level && !(e.kind == Kind::Node && e.status == Status::Starting)) {
    detail::format_text(e, pending_);
  }
  if (!live_) {
    // Plain: lines go out as they come; a progress line at node ends and every interval.
    if (!pending_.empty()) {
      emit(pending_);
      pending_.clear();
    }
    if (running_ && progress_changed) {
      emit(bar_line(e.ts_ns, true) + "\n");
      last_plain_ns_ = e.ts_ns;
    }
  }
}

void ProgressSink::tick(std::int64_t now_ns) {
  if (live_) {
    bool due = now_ns - last_draw_ns_ >= options_.redraw_interval.count() * 1'000'000;
    if (due && (dirty_ || !pending_.empty() || running_)) draw(now_ns, false);
  } else if (running_ && now_ns - last_plain_ns_ >= options_.plain_interval.count() * 1'000'000) {
    emit(bar_line(now_ns, true) + "\n");
    last_plain_ns_ = now_ns;
  }
}

void ProgressSink::flush() {
  if (live_) {
    if (!pending_.empty()) draw(last_ns_, false);
  } else if (!pending_.empty()) {
    emit(pending_);
    pending_.clear();
  }
}

std::string ProgressSink::bar_line(std::int64_t now_ns, bool plain) const {
  double elapsed = static_cast<double>(now_ns - start_ns_) / 1e9;
  double rate = elapsed > 0 ? done_ / elapsed : 0;
  int percent = total_ > 0 ? done_ * 100 / total_ : 100;
  std::string line = "Executing " + workflow_ + " ";
  if (!plain) {
    int filled = total_ > 0 ? options_.bar_width * done_ / total_ : options_.bar_width;
    line += "|";
    for (int i = 0; i < options_.bar_width; ++i) line += i < filled ? "\u2588" : "\u2591";
    line += "| ";
  }
  char buf[96];
  std::snprintf(buf, sizeof buf, "[%d/%d] %d%% %.1f nodes/s", done_, total_, percent, rate);
  line += buf;
  if (rate > 0 && done_ < total_)
    line += " ETA " +
            detail::compact_duration(static_cast<std::int64_t>((total_ - done_) / rate * 1e9));
  if (failed_ > 0) line += " (" + std::to_string(failed_) + " failed)";
  return line;
}

void ProgressSink::draw(std::int64_t now_ns, bool final) {
  if (!live_) {
    if (final && running_) emit(bar_line(now_ns, true) + "\n");
    return;
  }
  std::string out;
  for (int i = 0; i < panel_lines_; ++i) {  // Erase the display, bottom up.
    out += kUp;
    out += kClearLine;
  }
  out += '\r';
  out += pending_;  // Log lines scroll above.
  pending_.clear();
  panel_lines_ = 0;
  if (running_) {
    out += bar_line(now_ns, false);
    out += '\n';
    panel_lines_ = 1;
    if (!final) {
      for (const auto& [name, w] : workers_) {
        if (w.node.empty() && w.stage.empty()) continue;
        out += "  " + padded(name, 10) + " ";
        out += w.node.empty() ? padded("", 16) : "node " + padded(w.node, 11);
        out += " " + padded(w.stage, 14);
        if (!w.stage.empty()) {
          out += " " + detail::compact_duration(now_ns - w.stage_since_ns);
        }
        out += '\n';
        ++panel_lines_;
      }
    } else {
      panel_lines_ = 0;  // The final bar stays on screen as a line of its own.
    }
  }
  emit(out);
  last_draw_ns_ = now_ns;
  dirty_ = false;
}

void ProgressSink::emit(std::string_view text) {
  if (text.empty()) return;
  detail::write_all(options_.fd, text, options_.fd == 1 ? "stdout" : "the progress display");
}

}  // namespace stagelog
