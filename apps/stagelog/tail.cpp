// stagelog tail PATH...: follows JSONL (and seed-format text) logs of any number of processes,
// and with --server URL the event stream of a `stagelog serve`, runs the watchdog over them and
// shows every worker: a live table on a terminal, state changes and warnings as lines
// otherwise. --replay runs a finished recording through the watchdog with the events' own
// clock instead.

#include <fcntl.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "base/duration.hpp"
#include "base/time.hpp"
#include "base/time_text.hpp"
#include "commands.hpp"
#include "duration.hpp"
#include "format/format.hpp"
#include "format/sse.hpp"
#include "net/http_client.hpp"
#include "stagelog/error.hpp"
#include "stagelog/parse.hpp"
#include "stagelog/watchdog.hpp"

namespace stagelog::cli {

namespace {

namespace fs = std::filesystem;

constexpr std::size_t kMaxLine = std::size_t{1} << 20;  // Longer lines are cut and reported.
constexpr int kPollMs = 100;
constexpr std::int64_t kRescanNs = 500'000'000;
constexpr std::int64_t kRedrawNs = 250'000'000;
constexpr std::size_t kRecentWarnings = 6;

std::atomic<bool> g_stop{false};
std::atomic<bool> g_resized{false};

struct TailOptions {
  std::vector<std::string> paths;
  std::string server;      // --server URL
  std::string token_file;  // --token-file FILE
  bool replay = false;
  bool plain = false;
  bool verbose = false;
  bool exit_when_done = false;
  bool no_pid_check = false;
  std::string stage_threshold = "300s";
  std::string task_threshold = "1200s";
  std::string request_threshold = "60s";
  std::string heartbeat_timeout = "60s";
  std::string summary_interval = "60s";
  std::vector<std::string> stage_overrides;    // NAME=DURATION
  std::vector<std::string> task_overrides;
  std::vector<std::string> request_overrides;
};

std::chrono::nanoseconds duration_of(const std::string& text) {
  auto d = parse_duration(text);
  if (!d) throw Error(check_duration(text));
  return *d;
}

void add_overrides(WatchdogOptions::Overrides& out, const std::vector<std::string>& items,
                   std::string_view option) {
  for (const auto& item : items) {
    auto eq = item.rfind('=');
    if (eq == std::string::npos || eq == 0) {
      throw Error(std::string(option) + " expects NAME=DURATION, got '" + item + "'");
    }
    out[item.substr(0, eq)] = duration_of(item.substr(eq + 1));
  }
}

WatchdogOptions watchdog_options(const TailOptions& o) {
  WatchdogOptions w;
  w.progress_interval = std::chrono::nanoseconds(0);  // The table shows time in stage.
  w.stage_threshold = duration_of(o.stage_threshold);
  w.task_threshold = duration_of(o.task_threshold);
  w.request_threshold = duration_of(o.request_threshold);
  w.heartbeat_timeout = duration_of(o.heartbeat_timeout);
  w.summary_interval = duration_of(o.summary_interval);
  add_overrides(w.stage_thresholds, o.stage_overrides, "--stage");
  add_overrides(w.task_thresholds, o.task_overrides, "--task");
  add_overrides(w.request_thresholds, o.request_overrides, "--request");
  w.check_processes = !o.no_pid_check && !o.replay;
  return w;
}

// --- Following files ------------------------------------------------------------------------

// One followed file: reads what was appended since the last poll, follows a rotation (the
// path names a new file: the old one is read to its end first) and a truncation.
class FollowedFile {
 public:
  explicit FollowedFile(std::string path) : path_(std::move(path)) {}
  ~FollowedFile() { close_fd(); }
  FollowedFile(const FollowedFile&) = delete;
  FollowedFile& operator=(const FollowedFile&) = delete;

  const std::string& path() const { return path_; }

  // Appends the complete lines that arrived to `out` as (line number, text).
  void poll(std::vector<std::pair<std::size_t, std::string>>& out) {
    struct stat st {};
    bool exists = ::stat(path_.c_str(), &st) == 0;
    if (fd_ >= 0 && exists && (st.st_ino != ino_ || st.st_dev != dev_)) {
      read_available(out);  // Rotated: the rest of the old file, then the new one.
      if (!partial_.empty()) out.emplace_back(++line_, std::exchange(partial_, {}));
      close_fd();
    }
    if (fd_ < 0) {
      if (!exists) return;
      fd_ = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
      if (fd_ < 0) return;
      struct stat opened {};
      ::fstat(fd_, &opened);
      ino_ = opened.st_ino;
      dev_ = opened.st_dev;
      offset_ = 0;
      line_ = 0;
      head_.clear();
    } else if (exists && (st.st_size < offset_ || rewritten())) {
      ::lseek(fd_, 0, SEEK_SET);  // Truncated (and perhaps rewritten): start again.
      offset_ = 0;
      head_.clear();
      partial_.clear();
    }
    read_available(out);
  }

 private:
  void read_available(std::vector<std::pair<std::size_t, std::string>>& out) {
    char buf[1 << 16];
    for (;;) {
      ssize_t n = ::read(fd_, buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return;
      std::string_view chunk(buf, static_cast<std::size_t>(n));
      if (head_.size() < kHead && offset_ == static_cast<off_t>(head_.size())) {
        head_.append(chunk.substr(0, kHead - head_.size()));
      }
      offset_ += n;
      while (!chunk.empty()) {
        auto nl = chunk.find('\n');
        if (nl == std::string_view::npos) {
          partial_.append(chunk);
          if (partial_.size() > kMaxLine) out.emplace_back(++line_, std::exchange(partial_, {}));
          break;
        }
        partial_.append(chunk.substr(0, nl));
        chunk.remove_prefix(nl + 1);
        if (!partial_.empty() && partial_.back() == '\r') partial_.pop_back();
        out.emplace_back(++line_, std::exchange(partial_, {}));
      }
    }
  }

  // A file truncated and written again past where we were: its first bytes changed.
  bool rewritten() {
    if (head_.empty()) return false;
    char now[kHead];
    ssize_t n = ::pread(fd_, now, head_.size(), 0);
    return n != static_cast<ssize_t>(head_.size()) || std::memcmp(now, head_.data(), head_.size()) != 0;
  }

  void close_fd() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

  std::string path_;
  int fd_ = -1;
  ino_t ino_ = 0;
  dev_t dev_ = 0;
  off_t offset_ = 0;
  std::size_t line_ = 0;
  std::string partial_;
  static constexpr std::size_t kHead = 64;
  std::string head_;  // The file's first bytes as we read them.
};

struct Parsed {
  OwnedEvent event;
  std::size_t order = 0;  // Arrival order, for a stable merge.
};

// Files named on the command line, and the *.jsonl files under folders named there (found
// again every half second, three levels deep).
class Follower {
 public:
  explicit Follower(std::vector<std::string> roots) : roots_(std::move(roots)) {
    for (const auto& root : roots_) {
      std::error_code ec;
      if (!fs::exists(root, ec)) throw Error("cannot follow " + root + ": no such file or folder");
    }
  }

  // New events from every file, in time order.
  std::vector<Parsed> poll(std::int64_t now) {
    if (now - last_scan_ >= kRescanNs) {
      scan();
      last_scan_ = now;
    }
    std::vector<Parsed> events;
    std::vector<std::pair<std::size_t, std::string>> lines;
    std::string error;
    for (auto& [path, file] : files_) {
      lines.clear();
      file->poll(lines);
      for (auto& [number, line] : lines) {
        if (line.empty()) continue;
        if (auto e = parse_event(line, &error)) {
          events.push_back({std::move(*e), order_++});
        } else {
          ++skipped_;
          last_error_ = path + ":" + std::to_string(number) + ": " + error;
        }
      }
    }
    std::stable_sort(events.begin(), events.end(), [](const Parsed& a, const Parsed& b) {
      return a.event.ts_ns < b.event.ts_ns;
    });
    return events;
  }

  std::size_t files() const { return files_.size(); }
  std::size_t skipped() const { return skipped_; }
  // The last unreadable line since the previous call, for reporting, or "".
  std::string take_error() { return std::exchange(last_error_, {}); }

 private:
  void add(const fs::path& path) {
    std::string key = path.lexically_normal().string();
    if (!files_.contains(key)) files_.emplace(key, std::make_unique<FollowedFile>(key));
  }

  void scan() {
    for (const auto& root : roots_) {
      std::error_code ec;
      if (!fs::is_directory(root, ec)) {
        add(root);
        continue;
      }
      auto options = fs::directory_options::skip_permission_denied;
      for (fs::recursive_directory_iterator it(root, options, ec), end; !ec && it != end;
           it.increment(ec)) {
        if (it.depth() >= 3) it.disable_recursion_pending();
        if (it->path().extension() == ".jsonl" && it->is_regular_file(ec)) add(it->path());
      }
    }
  }

  std::vector<std::string> roots_;
  std::map<std::string, std::unique_ptr<FollowedFile>> files_;
  std::int64_t last_scan_ = std::numeric_limits<std::int64_t>::min() / 2;
  std::size_t order_ = 0;
  std::size_t skipped_ = 0;
  std::string last_error_;
};

// --- Following a server ---------------------------------------------------------------------

constexpr auto kConnectTimeout = std::chrono::seconds(10);
constexpr auto kFirstRetry = std::chrono::milliseconds(500);
constexpr auto kMaxRetry = std::chrono::seconds(10);

// The token for --server: the first line of --token-file, else STAGELOG_TOKEN, else none.
std::string server_token(const TailOptions& o) {
  std::string token;
  if (!o.token_file.empty()) {
    std::ifstream in(o.token_file);
    if (!in) throw Error("cannot read the token file " + o.token_file);
    std::getline(in, token);
    while (!token.empty() && (token.back() == '\r' || token.back() == ' ')) token.pop_back();
    if (token.empty()) throw Error("the token file " + o.token_file + " is empty");
  } else if (const char* env = std::getenv("STAGELOG_TOKEN")) {
    token = env;
  }
  for (char c : token) {  // Never echo the token itself.
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      throw Error("the token holds a control character");
    }
  }
  return token;
}

// The events `stagelog serve` stores, from GET /api/v1/stream (the events only: the watchdog
// runs here, on this side's thresholds). The first connection starts from the oldest event the
// server still keeps, as a file is read from its start; a dropped one is resumed with
// Last-Event-ID after 0.5 s, 1 s, 2 s ... at most 10 s apart. An answer no retry can change
// (bad URL, 401, 403, 404, 400) and a first connection that fails throw Error.
class ServerSource {
 public:
  ServerSource(const std::string& url, std::string token)
      : url_(parse(url)), client_(url_), token_(std::move(token)) {
    connect(true);
  }

  // New events, waiting up to `wait` for the first.
  std::vector<OwnedEvent> poll(std::chrono::milliseconds wait) {
    std::vector<OwnedEvent> out;
    auto now = std::chrono::steady_clock::now();
    if (!connected_) {
      if (now < next_attempt_) {
        std::this_thread::sleep_for(
            std::min<std::chrono::steady_clock::duration>(wait, next_attempt_ - now));
        return out;
      }
      connect(false);
      if (!connected_) return out;
    }
    std::string text;
    bool open = true;
    try {
      open = client_.read_stream(text, now + wait);
    } catch (const detail::HttpError& e) {
      lost(e.what());
    }
    std::vector<detail::SseEvent> events;
    try {
      parser_.feed(text, events);
    } catch (const Error& e) {
      client_.close();
      lost(e.what());
    }
    if (!parser_.last_event_id().empty()) last_id_ = parser_.last_event_id();
    for (auto& e : events) {
      if (e.type == "event") {
        std::string error;
        if (auto parsed = parse_json_event(e.data, &error)) {
          out.push_back(std::move(*parsed));
        } else {
          note("unreadable event from the server: " + error);
        }
      } else if (e.type == "reset") {
        note(gap_text(e.data));
      }
    }
    if (!open && connected_) lost("the server ended the stream");
    return out;
  }

  bool connected() const { return connected_; }
  const std::string& url() const { return url_.text; }
  // What happened since the last call (lost connections, gaps), for stderr or the table.
  std::vector<std::string> take_notes() { return std::exchange(notes_, {}); }

 private:
  static detail::HttpUrl parse(const std::string& url) {
    try {
      return detail::parse_http_url(url);
    } catch (const Error& e) {
      throw Error("--server " + url + ": " + e.what());
    }
  }

  void connect(bool first) {
    std::string target = "/api/v1/stream?types=event";
    if (last_id_.empty()) target += "&from=oldest";
    std::string bearer = "Bearer " + token_;
    std::vector<detail::HttpClient::Header> headers = {{"Accept", "text/event-stream"}};
    if (!token_.empty()) headers.emplace_back("Authorization", bearer);
    if (!last_id_.empty()) headers.emplace_back("Last-Event-ID", last_id_);
    detail::HttpResponse head;
    try {
      head =
          client_.get_stream(target, headers, std::chrono::steady_clock::now() + kConnectTimeout);
    } catch (const detail::HttpError& e) {
      if (first) throw Error(std::string(e.what()) + " (--server " + url_.text + ")");
      return retry_later(e.what());
    }
    if (head.status == 200) {
      connected_ = true;
      retry_ = kFirstRetry;
      parser_ = detail::SseParser();
      if (!first) note("reconnected to " + url_.text);
      return;
    }
    std::string why = server_error(head);
    switch (head.status) {
      case 401:
        throw Error(url_.text + " refused " +
                    std::string(token_.empty() ? "to stream without a token" : "the token") +
                    " (401: " + why + "): give --token-file FILE or set STAGELOG_TOKEN");
      case 403:
        throw Error(url_.text + ": the token may not read (403: " + why + ")");
      case 404:
        throw Error(url_.text + " has no event stream (404: " + why +
                    "); is it a stagelog server?");
      case 400:
        throw Error(url_.text + " refused the stream request (400: " + why + ")");
      default:
        if (first && head.status < 500) {
          throw Error(url_.text + " answered " + std::to_string(head.status) + ": " + why);
        }
        retry_later("the server answered " + std::to_string(head.status) + ": " + why);
    }
  }

  // The "error" of a JSON error body, else the body's start.
  static std::string server_error(const detail::HttpResponse& r) {
    std::string error;
    auto key = r.body.find("\"error\":\"");
    if (key != std::string::npos) {
      std::size_t start = key + 9;
      std::size_t end = r.body.find('"', start);
      if (end != std::string::npos) error = r.body.substr(start, end - start);
    }
    if (error.empty()) error = r.body.substr(0, 120);
    return error.empty() ? r.reason : error;
  }

  static std::string gap_text(const std::string& data) {
    if (data.find("\"restarted\"") != std::string::npos) {
      return "the server restarted: events it streamed before are not shown";
    }
    auto missed = data.find("\"missed\":");
    std::string n = missed == std::string::npos
                        ? "some"
                        : data.substr(missed + 9, data.find(',', missed) - missed - 9);
    return n + " events went by before tail could read them: not shown";
  }

  void lost(const std::string& why) {
    connected_ = false;
    client_.close();
    retry_later(why);
  }

  void retry_later(const std::string& why) {
    connected_ = false;
    char delay[32];
    std::snprintf(delay, sizeof delay, "%.1fs", static_cast<double>(retry_.count()) / 1000);
    note(why + "; reconnecting in " + delay);
    next_attempt_ = std::chrono::steady_clock::now() + retry_;
    retry_ = std::min<std::chrono::milliseconds>(retry_ * 2, kMaxRetry);
  }

  void note(std::string text) { notes_.push_back(std::move(text)); }

  detail::HttpUrl url_;
  detail::HttpClient client_;
  std::string token_;
  detail::SseParser parser_;
  std::string last_id_;
  bool connected_ = false;
  std::chrono::milliseconds retry_ = kFirstRetry;
  std::chrono::steady_clock::time_point next_attempt_;
  std::vector<std::string> notes_;
};

// --- What is shown --------------------------------------------------------------------------

bool interesting(WorkerState s) {
  return s == WorkerState::Stuck || s == WorkerState::Silent || s == WorkerState::Crashed ||
         s == WorkerState::Done;
}

// Turns the watchdog's reports and the workers' state changes into lines (plain mode) or a
// table (terminal mode).
class View {
 public:
  View(const TailOptions& options, bool terminal) : options_(options), terminal_(terminal) {
    const char* no_color = std::getenv("NO_COLOR");
    color_ = terminal && (no_color == nullptr || *no_color == '\0');
  }

  // A watchdog report or a worker's own warning.
  void report(const Event& e) {
    if (e.component == "watchdog") {
      std::string_view rule;
      for (const auto& f : e.fields) {
        if (f.key == "rule") rule = std::get<std::string_view>(f.value);
      }
      if (rule == "running") return;
      if (e.level >= Level::Warning) ++warnings_;
    }
    std::string line = detail::iso_timestamp(e.ts_ns) + " " + std::string(level_name(e.level)) + " [" +
                       std::string(e.worker) + "] " + std::string(e.message);
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

  // Prints state changes since the last call (plain mode).
  void transitions(const Watchdog& watchdog, std::int64_t now) {
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
      if (!options_.verbose && !interesting(was) && !interesting(w.state)) continue;
      std::string what = w.stage.empty() ? "" : " (stage " + w.stage + ")";
      if (w.stage.empty() && !w.task.empty()) what = " (task " + w.task + ")";
      std::printf("%s [%s] %s -> %s%s\n", detail::iso_timestamp(now).c_str(), w.worker.c_str(),
                  std::string(worker_state_name(was)).c_str(),
                  std::string(worker_state_name(w.state)).c_str(), what.c_str());
    }
    std::fflush(stdout);
  }

  void draw(const Watchdog& watchdog, std::int64_t now, const Follower& follower,
            const ServerSource* server, const std::string& filter, bool typing) {
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
    std::string head = "stagelog tail  " + detail::iso_timestamp(now) + "  " + std::to_string(workers.size()) +
                       " workers:";
    for (auto s : {WorkerState::Running, WorkerState::Idle, WorkerState::Stuck,
                   WorkerState::Silent, WorkerState::Crashed, WorkerState::Done}) {
      if (counts[s] > 0) {
        head += " " + std::to_string(counts[s]) + " " + std::string(worker_state_name(s));
      }
    }
    head += "  warnings: " + std::to_string(warnings_);
    line(head, "\x1b[1m");
    std::string files = std::to_string(follower.files()) + " files";
    if (follower.skipped() > 0) files += ", " + std::to_string(follower.skipped()) + " unreadable lines";
    if (server != nullptr) {
      files += ", " + server->url() + (server->connected() ? "" : " (reconnecting)");
    }
    if (!watchdog.queue().empty()) files += "  queue: " + watchdog.queue();
    line(files);
    for (const auto& r : recent_) line(r, r.find(" ERROR ") != std::string::npos ||
                                               r.find(" CRITICAL ") != std::string::npos
                                           ? "\x1b[31m"
                                           : "\x1b[33m");
    if (!last_info_.empty()) line(last_info_, "\x1b[2m");
    line("");
    char buf[512];
    std::snprintf(buf, sizeof buf, "%-14s %-8s %-22s %9s %9s %6s %6s  %s", "WORKER", "STATE",
                  "STAGE / TASK", "IN STAGE", "LAST EVT", "DONE", "FAILED", "LAST MESSAGE");
    line(buf, "\x1b[7m");
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
    if (typing) {
      out += "filter: " + filter;
    } else {
      out += filter.empty() ? "q quit  / filter" : "q quit  / filter (" + filter + ")";
    }
    std::fwrite(out.data(), 1, out.size(), stdout);
    std::fflush(stdout);
  }

  // After the live table is gone: the workers as they ended and the last warnings, as lines.
  void final_report(const Watchdog& watchdog, std::int64_t now) const {
    for (const auto& r : recent_) std::printf("%s\n", r.c_str());
    for (const auto& w : watchdog.workers(now)) {
      std::string where = !w.stage.empty() ? " in stage " + w.stage + " for " + detail::compact_duration(now - w.stage_since_ns)
                                           : "";
      std::printf("%-14s %-8s done %llu, failed %llu%s\n", w.worker.c_str(),
                  std::string(worker_state_name(w.state)).c_str(),
                  static_cast<unsigned long long>(w.tasks_done + w.stages_done),
                  static_cast<unsigned long long>(w.tasks_failed + w.stages_failed), where.c_str());
    }
    std::printf("%zu warning%s\n", warnings_, warnings_ == 1 ? "" : "s");
  }

  std::size_t warnings() const { return warnings_; }

 private:
  const TailOptions& options_;
  bool terminal_;
  bool color_ = false;
  std::size_t warnings_ = 0;
  std::deque<std::string> recent_;
  std::string last_info_;
  std::map<std::string, WorkerState> states_;
};

// Raw keys, no echo, the alternate screen; all undone on destruction.
class Terminal {
 public:
  Terminal() {
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
  ~Terminal() {
    std::fputs("\x1b[?25h\x1b[?1049l", stdout);
    std::fflush(stdout);
    if (restore_) ::tcsetattr(STDIN_FILENO, TCSANOW, &saved_);
  }
  Terminal(const Terminal&) = delete;
  Terminal& operator=(const Terminal&) = delete;

 private:
  termios saved_{};
  bool restore_ = false;
};

bool all_finished(const Watchdog& watchdog, std::int64_t now) {
  auto workers = watchdog.workers(now);
  return !workers.empty() && std::all_of(workers.begin(), workers.end(), [](const WorkerView& w) {
    return w.state == WorkerState::Done || w.state == WorkerState::Crashed;
  });
}

int replay(const TailOptions& options) {
  View view(options, false);
  Watchdog watchdog(watchdog_options(options), [&](const Event& e) { view.report(e); });
  Follower follower(options.paths);
  auto events = follower.poll(0);
  if (follower.skipped() > 0) {
    std::fprintf(stderr, "stagelog tail: %zu unreadable line%s, the last: %s\n", follower.skipped(),
                 follower.skipped() == 1 ? "" : "s", follower.take_error().c_str());
  }
  std::int64_t now = 0;
  for (const auto& p : events) {
    // The rules fire exactly when they would have live.
    while (watchdog.next_deadline() <= p.event.ts_ns) {
      now = watchdog.next_deadline();
      watchdog.tick(now);
      view.transitions(watchdog, now);
    }
    now = std::max(now, p.event.ts_ns);
    Event e = p.event.view();
    if (e.component != "watchdog" && e.level >= Level::Warning) view.report(e);
    watchdog.observe(e);
    watchdog.tick(now);
    view.transitions(watchdog, now);
  }
  if (!events.empty() && watchdog.options().summary_interval.count() > 0) watchdog.monitor(now);
  std::fflush(stdout);
  return view.warnings() == 0 ? 0 : 1;
}

void on_signal(int sig) {
  if (sig == SIGWINCH) {
    g_resized.store(true);
  } else {
    g_stop.store(true);
  }
}

int follow(const TailOptions& options) {
  bool terminal = !options.plain && ::isatty(STDOUT_FILENO) && ::isatty(STDIN_FILENO);
  View view(options, terminal);
  Watchdog watchdog(watchdog_options(options), [&](const Event& e) { view.report(e); });
  Follower follower(options.paths);
  std::optional<ServerSource> server;
  if (!options.server.empty()) server.emplace(options.server, server_token(options));
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  ::sigemptyset(&sa.sa_mask);
  for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGWINCH}) ::sigaction(sig, &sa, nullptr);
  std::optional<Terminal> screen;
  if (terminal) screen.emplace();
  std::string filter;
  bool typing = false;
  std::int64_t last_draw = 0;
  while (!g_stop.load()) {
    std::int64_t now = detail::realtime_ns();
    auto observe = [&](const OwnedEvent& owned) {
      Event e = owned.view();
      if (e.component != "watchdog" && e.level >= Level::Warning) view.report(e);
      watchdog.observe(e);
    };
    for (auto& p : follower.poll(now)) observe(p.event);
    if (server) {  // Waits on the connection instead of the keys' poll below.
      for (auto& e : server->poll(std::chrono::milliseconds(kPollMs))) observe(e);
    }
    if (!terminal) {
      std::string error = follower.take_error();
      if (!error.empty()) std::fprintf(stderr, "stagelog tail: %s\n", error.c_str());
      if (server) {
        for (const auto& note : server->take_notes()) {
          std::fprintf(stderr, "stagelog tail: %s\n", note.c_str());
        }
      }
    } else if (server) {
      for (const auto& note : server->take_notes()) {
        Event e;
        e.ts_ns = detail::realtime_ns();
        e.level = Level::Warning;
        e.worker = "server";
        e.message = note;
        view.report(e);  // Shown with the warnings (not counted: not the watchdog's).
      }
    }
    now = detail::realtime_ns();
    watchdog.tick(now);
    view.transitions(watchdog, now);
    if (options.exit_when_done && all_finished(watchdog, now)) break;
    if (terminal && (now - last_draw >= kRedrawNs || g_resized.exchange(false))) {
      view.draw(watchdog, now, follower, server ? &*server : nullptr, filter, typing);
      last_draw = now;
    }
    pollfd keys{STDIN_FILENO, POLLIN, 0};
    if (::poll(&keys, terminal ? 1 : 0, server ? 0 : kPollMs) > 0 && terminal) {
      char c;
      while (::read(STDIN_FILENO, &c, 1) == 1) {
        if (typing) {
          if (c == '\n' || c == '\r') {
            typing = false;
          } else if (c == 27) {
            typing = false;
            filter.clear();
          } else if ((c == 127 || c == 8) && !filter.empty()) {
            filter.pop_back();
          } else if (c >= 32 && c < 127) {
            filter += c;
          }
        } else if (c == 'q' || c == 'Q') {
          g_stop.store(true);
        } else if (c == '/') {
          typing = true;
          filter.clear();
        } else if (c == 27) {
          filter.clear();
        }
      }
      last_draw = 0;
    }
  }
  std::int64_t end = detail::realtime_ns();
  if (screen) {
    screen.reset();
    view.final_report(watchdog, end);
  }
  std::fflush(stdout);
  return view.warnings() == 0 ? 0 : 1;
}

}  // namespace

Command add_tail(CLI::App& app) {
  auto o = std::make_shared<TailOptions>();
  CLI::App* cmd = app.add_subcommand(
      "tail",
      "Follow the logs of every worker and flag the stuck, the silent and the crashed.\n"
      "Reads JSONL files (as JsonlSink writes them) and seed-format text lines; a folder means\n"
      "every *.jsonl file in it and below, including files that appear later. Rotated and\n"
      "truncated files are followed. With --server URL, also the events a `stagelog serve`\n"
      "stores, from its live stream. On a terminal: a live table, one row per worker (q quits,\n"
      "/ filters). Otherwise: state changes and warnings, one per line.");
  cmd->add_option("paths", o->paths, "Files and folders to follow");
  cmd->add_option("--server", o->server,
                  "Also follow what a `stagelog serve` at this http:// URL stores, through its "
                  "event stream (GET /api/v1/stream; a read token); reconnects and resumes when "
                  "the connection drops");
  cmd->add_option("--token-file", o->token_file,
                  "File whose first line is the token for --server (default: $STAGELOG_TOKEN)");
  cmd->add_flag("--replay", o->replay,
                "Run the recorded events through the watchdog on their own clock, print what it "
                "would have said, and exit (no process checks)");
  cmd->add_flag("--plain", o->plain, "Lines instead of the table, even on a terminal");
  cmd->add_flag("-v,--verbose", o->verbose, "Also print running <-> idle changes");
  cmd->add_flag("--exit-when-done", o->exit_when_done,
                "Exit once every worker has shut down or crashed");
  cmd->add_flag("--no-pid-check", o->no_pid_check,
                "Do not ask the kernel whether workers' processes still run");
  cmd->add_option("--stuck-stage", o->stage_threshold, "A stage open this long is stuck")
      ->check(check_duration)->capture_default_str();
  cmd->add_option("--stuck-task", o->task_threshold, "A task open this long is stuck")
      ->check(check_duration)->capture_default_str();
  cmd->add_option("--stale-request", o->request_threshold,
                  "A request open this long while workers wait is stale")
      ->check(check_duration)->capture_default_str();
  cmd->add_option("--heartbeat-timeout", o->heartbeat_timeout,
                  "A worker that heartbeats and then is quiet this long is silent")
      ->check(check_duration)->capture_default_str();
  cmd->add_option("--summary-interval", o->summary_interval,
                  "How often to print the MONITOR line (0: never)")
      ->check(check_duration)->capture_default_str();
  cmd->add_option("--stage", o->stage_overrides, "Per-stage threshold, NAME=DURATION (repeat)");
  cmd->add_option("--task", o->task_overrides, "Per-task-class threshold, CLASS=DURATION");
  cmd->add_option("--request", o->request_overrides, "Per-request threshold, WHAT=DURATION");
  cmd->footer(
      "Durations: 500ms, 30s, 1.5m, 2h, 7d.\n"
      "Exit status: 0, or 1 if any warning was raised; 2 on bad usage.\n"
      "Examples:\n"
      "  stagelog tail run/logs                          # live table of every worker\n"
      "  stagelog tail --plain --stuck-task 5m logs/ | tee watch.log\n"
      "  stagelog tail --replay --stage AGENT=10m run.jsonl  # what would have been flagged\n"
      "  STAGELOG_TOKEN=slg_... stagelog tail --server http://127.0.0.1:8080\n");
  return [o]() -> int {
    watchdog_options(*o);  // Bad values fail before anything is shown.
    if (o->paths.empty() && o->server.empty()) {
      throw Error("nothing to follow: give files or folders, or --server URL");
    }
    if (o->replay && !o->server.empty()) {
      throw Error("--replay reads recorded files; it cannot follow --server");
    }
    return o->replay ? replay(*o) : follow(*o);
  };
}

}  // namespace stagelog::cli
