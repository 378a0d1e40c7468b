// The network sink: events -> spool file (write-ahead log) -> sender thread -> HTTP POST.
//
// Who touches what. NetworkSinkImpl::mu guards everything but `client`, which only the sender
// thread uses (and close(), after joining it). The backend thread (write, flush, tick) formats
// into `pending` and appends it to the own spool file; the sender reads batches from the spool
// files without the lock (bytes between a file's `sent` and `end` never change), posts them
// without the lock, and takes it again to mark them sent. Only the sender removes or truncates
// spool files, so the range it read stays valid while it posts.

#include "stagelog/sinks/network_sink.hpp"

#include <fcntl.h>
#include <pthread.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <mutex>
#include <new>
#include <nlohmann/json.hpp>
#include <random>
#include <span>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "base/errno_text.hpp"
#include "format/format.hpp"
#include "net/http_client.hpp"
#include "stagelog/error.hpp"

namespace stagelog {

namespace detail {

namespace {

using Clock = std::chrono::steady_clock;

constexpr std::string_view kEventsPath = "/api/v1/events";
constexpr std::string_view kContentType = "application/x-ndjson";
// "#stagelog-spool v1 sent=00000000000000000045\n": the offset of the first unsent byte, in a
// fixed width so it is rewritten in place.
constexpr std::string_view kHeaderPrefix = "#stagelog-spool v1 sent=";
constexpr std::size_t kHeaderDigits = 20;
constexpr std::uint64_t kHeaderSize = kHeaderPrefix.size() + kHeaderDigits + 1;
// write() hands its buffer to the spool at this size (or batch_events events, or flush()).
constexpr std::size_t kSpillBytes = 64 * 1024;
constexpr std::size_t kReadChunk = 256 * 1024;
// Sent bytes at the front of a spool that is never empty long enough to be truncated are
// released with FALLOC_FL_PUNCH_HOLE once this many have accumulated.
constexpr std::uint64_t kPunchBytes = 4u << 20;
constexpr std::size_t kMaxQueuedReports = 32;
constexpr int kMaxSpoolAlternatives = 16;

std::string header_text(std::uint64_t sent) {
  char digits[kHeaderDigits + 1];
  std::snprintf(digits, sizeof digits, "%020llu", static_cast<unsigned long long>(sent));
  std::string out(kHeaderPrefix);
  out += digits;
  out += '\n';
  return out;
}

void pwrite_all(int fd, std::string_view data, std::uint64_t offset) {
  while (!data.empty()) {
    ssize_t n = ::pwrite(fd, data.data(), data.size(), static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) throw std::system_error(n < 0 ? errno : EIO, std::generic_category());
    data.remove_prefix(static_cast<std::size_t>(n));
    offset += static_cast<std::uint64_t>(n);
  }
}

// Reads exactly n bytes at offset; false if the file ends first.
bool pread_all(int fd, char* out, std::size_t n, std::uint64_t offset) {
  while (n > 0) {
    ssize_t r = ::pread(fd, out, n, static_cast<off_t>(offset));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) throw std::system_error(errno, std::generic_category());
    if (r == 0) return false;
    out += r;
    n -= static_cast<std::size_t>(r);
    offset += static_cast<std::uint64_t>(r);
  }
  return true;
}

// One spool file, opened and flock()ed by this sink.
struct SpoolFile {
  std::filesystem::path path;
  int fd = -1;
  std::uint64_t sent = kHeaderSize;  // First byte not yet acknowledged.
  std::uint64_t end = kHeaderSize;   // End of the last whole line.
  std::uint64_t events = 0;          // Lines in [sent, end).
  std::uint64_t punched = 0;         // Bytes released before this offset.

  SpoolFile() = default;
  SpoolFile(const SpoolFile&) = delete;
  SpoolFile& operator=(const SpoolFile&) = delete;
  ~SpoolFile() {
    if (fd >= 0) ::close(fd);
  }
  std::uint64_t backlog() const noexcept { return end - sent; }
};

// Reads the header and counts the unsent lines; an incomplete last line (the writer died in
// the middle of it) is cut off and said in `note`.
void load_spool(SpoolFile& f, std::uint64_t size, std::string& note) {
  if (size == 0) {
    pwrite_all(f.fd, header_text(kHeaderSize), 0);
    return;
  }
  std::string header(kHeaderSize, '\0');
  if (size < kHeaderSize || !pread_all(f.fd, header.data(), header.size(), 0) ||
      header.compare(0, kHeaderPrefix.size(), kHeaderPrefix) != 0 || header.back() != '\n') {
    throw Error(f.path.string() +
                " is not a stagelog spool file: remove it or choose another spool path");
  }
  std::uint64_t sent = kHeaderSize;
  const char* digits = header.data() + kHeaderPrefix.size();
  auto [ptr, ec] = std::from_chars(digits, digits + kHeaderDigits, sent);
  if (ec != std::errc() || ptr != digits + kHeaderDigits) sent = kHeaderSize;  // Resend all.
  sent = std::clamp<std::uint64_t>(sent, kHeaderSize, size);
  std::uint64_t last_line_end = sent;
  std::uint64_t lines = 0;
  std::string buf;
  for (std::uint64_t off = sent; off < size;) {
    std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(kReadChunk, size - off));
    buf.resize(n);
    if (!pread_all(f.fd, buf.data(), n, off)) break;
    const char* limit = buf.data() + n;
    for (const char* p = buf.data();
         (p = static_cast<const char*>(
              std::memchr(p, '\n', static_cast<std::size_t>(limit - p)))) != nullptr;
         ++p) {
      ++lines;
      last_line_end = off + static_cast<std::uint64_t>(p - buf.data()) + 1;
    }
    off += n;
  }
  if (last_line_end < size) {
    if (::ftruncate(f.fd, static_cast<off_t>(last_line_end)) != 0) {
      throw Error("cannot truncate spool " + f.path.string() + ": " + detail::errno_text(errno));
    }
    note = "network sink: cut an incomplete last line (" + std::to_string(size - last_line_end) +
           " bytes) off " + f.path.string();
  }
  f.sent = sent;
  f.end = last_line_end;
  f.events = lines;
}

// Opens and locks a spool file; nullptr when another open file (another process or sink)
// holds its lock. Throws Error naming the path.
std::unique_ptr<SpoolFile> open_spool(const std::filesystem::path& path, std::string& note) {
  for (int attempt = 0; attempt < 5; ++attempt) {
    int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) throw Error("cannot open spool " + path.string() + ": " + detail::errno_text(errno));
    auto f = std::make_unique<SpoolFile>();
    f->path = path;
    f->fd = fd;
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
      if (errno == EWOULDBLOCK) return nullptr;
      throw Error("cannot lock spool " + path.string() + ": " + detail::errno_text(errno));
    }
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
      throw Error("cannot stat spool " + path.string() + ": " + detail::errno_text(errno));
    }
    if (st.st_nlink == 0) continue;  // Its owner removed it between our open and our lock.
    if (!S_ISREG(st.st_mode)) throw Error("spool " + path.string() + " is not a regular file");
    try {
      load_spool(*f, static_cast<std::uint64_t>(st.st_size), note);
    } catch (const std::system_error& e) {
      throw Error("cannot read spool " + path.string() + ": " + e.code().message());
    }
    return f;
  }
  throw Error("cannot open spool " + path.string() + ": it keeps being removed");
}

// "<name>.<digits>" or "<name>.<digits>-<digits>": a per-process spool of `name`.
bool is_alternative_of(std::string_view file, std::string_view name) {
  if (file.size() <= name.size() + 1 || file.substr(0, name.size()) != name ||
      file[name.size()] != '.') {
    return false;
  }
  std::string_view rest = file.substr(name.size() + 1);
  bool dash = false;
  bool digit_before = false;
  for (char c : rest) {
    if (c >= '0' && c <= '9') {
      digit_before = true;
    } else if (c == '-' && !dash && digit_before) {
      dash = true;
      digit_before = false;
    } else {
      return false;
    }
  }
  return digit_before;
}

std::filesystem::path alternative(const std::filesystem::path& base, pid_t pid, int n) {
  std::string p = base.string() + "." + std::to_string(pid);
  if (n > 0) p += "-" + std::to_string(n);
  return p;
}

struct Batch {
  std::string body;
  std::uint64_t lines = 0;
};

// Up to `limit` whole lines from [from, end), at most max_bytes of them unless the first line
// alone is longer.
void read_batch(int fd, std::uint64_t from, std::uint64_t end, std::uint64_t limit,
                std::size_t max_bytes, Batch& batch) {
  batch.body.clear();
  batch.lines = 0;
  std::size_t whole = 0;  // Bytes of whole lines taken.
  std::size_t scanned = 0;
  bool full = false;
  for (std::uint64_t off = from; off < end && !full;) {
    std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(kReadChunk, end - off));
    std::size_t old = batch.body.size();
    batch.body.resize(old + n);
    if (!pread_all(fd, batch.body.data() + old, n, off)) {
      throw std::system_error(EIO, std::generic_category(), "the file is shorter than expected");
    }
    off += n;
    while (scanned < batch.body.size()) {
      const char* start = batch.body.data() + scanned;
      const auto* nl =
          static_cast<const char*>(std::memchr(start, '\n', batch.body.size() - scanned));
      if (nl == nullptr) {
        scanned = batch.body.size();
        break;
      }
      std::size_t line_end = static_cast<std::size_t>(nl - batch.body.data()) + 1;
      if (batch.lines > 0 && line_end > max_bytes) {
        full = true;
        break;
      }
      whole = line_end;
      scanned = line_end;
      if (++batch.lines == limit) {
        full = true;
        break;
      }
    }
  }
  batch.body.resize(whole);
}

struct Outcome {
  enum Kind { Sent, Rejected, Split, Retry } kind = Retry;
  std::uint64_t rejected = 0;  // Sent: lines the server refused.
  std::string message;         // Why, for the report.
  std::chrono::milliseconds retry_after{0};
};

// The answer's {"accepted": N, "rejected": [{"line": L, "error": "..."}]}: how many it
// refused and a short account of the first few.
std::uint64_t read_rejections(std::string_view body, std::string& detail) {
  auto json = nlohmann::json::parse(body, nullptr, false);
  if (!json.is_object()) return 0;
  auto it = json.find("rejected");
  if (it == json.end() || !it->is_array()) {
    auto error = json.find("error");
    if (error != json.end() && error->is_string()) detail = error->get<std::string>();
    return 0;
  }
  std::uint64_t n = 0;
  for (const auto& r : *it) {
    if (n < 3 && r.is_object()) {
      if (!detail.empty()) detail += "; ";
      auto line = r.find("line");
      if (line != r.end() && line->is_number_integer()) {
        detail += "line " + std::to_string(line->get<std::int64_t>()) + ": ";
      }
      auto error = r.find("error");
      detail += error != r.end() && error->is_string() ? error->get<std::string>() : "rejected";
    }
    ++n;
  }
  if (n > 3) detail += "; ...";
  return n;
}

std::string snippet(std::string_view body) {
  std::string out(body.substr(0, 200));
  for (char& c : out) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  return out;
}

std::chrono::milliseconds retry_after(const HttpResponse& response) {
  std::string_view value = response.header("retry-after");
  unsigned seconds = 0;
  auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), seconds);
  if (value.empty() || ec != std::errc() || end != value.data() + value.size()) return {};
  return std::chrono::milliseconds(std::uint64_t{std::min(seconds, 3600u)} * 1000);
}

std::string checked_token(const std::string& token) {
  for (char c : token) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      throw Error("network sink: the token holds a control character");
    }
  }
  return token;
}

HttpUrl checked_url(const std::string& url) {
  try {
    return parse_http_url(url);
  } catch (const Error& e) {
    throw Error("network sink: bad server URL '" + url + "': " + e.what());
  }
}

std::filesystem::path state_dir() {
  const char* xdg = std::getenv("XDG_STATE_HOME");
  if (xdg != nullptr && xdg[0] == '/') return std::filesystem::path(xdg) / "stagelog";
  const char* home = std::getenv("HOME");
  if (home != nullptr && home[0] == '/') {
    return std::filesystem::path(home) / ".local" / "state" / "stagelog";
  }
  return std::filesystem::path("/tmp") / ("stagelog-" + std::to_string(::getuid()));
}

void make_spool_dir(const std::filesystem::path& dir) {
  if (dir.empty()) return;
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) throw Error("cannot create " + dir.string() + ": " + ec.message());
}

}  // namespace

struct NetworkSinkImpl {
  explicit NetworkSinkImpl(NetworkSinkOptions opts)
      : options(std::move(opts)),
        url(checked_url(options.url)),
        auth(options.token.empty() ? std::string() : "Bearer " + checked_token(options.token)),
        base(options.spool_path.empty() ? default_spool_path(options.url) : options.spool_path),
        client(std::make_unique<HttpClient>(url)),
        rng(std::random_device{}()),
        backoff(options.retry_initial),
        batch_limit(options.batch_events),
        pid(::getpid()) {
    if (options.batch_events == 0) throw Error("network sink: batch_events must be at least 1");
    if (options.max_batch_bytes == 0) {
      throw Error("network sink: max_batch_bytes must be at least 1");
    }
    if (options.flush_interval.count() < 0) {
      throw Error("network sink: flush_interval must not be negative");
    }
    if (options.retry_initial.count() <= 0 || options.retry_max < options.retry_initial) {
      throw Error("network sink: need 0 < retry_initial <= retry_max");
    }
    if (options.request_timeout.count() <= 0 || options.shutdown_timeout.count() < 0) {
      throw Error("network sink: request_timeout must be positive, shutdown_timeout not negative");
    }
    if (options.spool_max_bytes == 0) {
      throw Error("network sink: spool_max_bytes must be at least 1");
    }
    if (options.spool_max_bytes > (std::uint64_t{1} << 62)) {
      options.spool_max_bytes = std::uint64_t{1} << 62;  // No overflow in the arithmetic below.
    }
  }

  void start();
  void write(const Event& event);
  void close();
  bool wait_sent(std::chrono::milliseconds timeout);
  void take_reports_or_throw();
  void after_fork_child() noexcept;

  // --- under mu ---
  void open_own_locked();
  void adopt_orphans_locked();
  void spill_locked();
  void start_gap_locked(std::string reason);
  void try_end_gap_locked(bool force);
  void report_locked(std::string message);
  std::uint64_t waiting_locked() const noexcept;  // Events in spool files.
  SpoolFile* front_locked() noexcept;
  void consume_locked(SpoolFile& file, std::uint64_t lines, std::uint64_t bytes);
  void apply_locked(const Outcome& outcome, SpoolFile& file, const Batch& batch);
  void deliver_reports(std::unique_lock<std::mutex>& lock);
  std::string own_path_text() const { return own ? own->path.string() : base.string(); }
  std::uint64_t own_backlog_locked() const noexcept {
    return (own ? own->backlog() : 0) + pending.size();
  }

  // --- sender thread ---
  void sender_main();
  Outcome post(const Batch& batch, Clock::time_point deadline);

  NetworkSinkOptions options;
  const HttpUrl url;
  const std::string auth;
  const std::filesystem::path base;

  std::mutex close_mu;  // One close() at a time.
  mutable std::mutex mu;
  std::condition_variable cv;       // Wakes the sender.
  std::condition_variable done_cv;  // Wakes wait_sent().

  std::string pending;  // Formatted lines not yet in the spool (backend side).
  std::uint64_t pending_events = 0;
  Clock::time_point pending_since{};
  std::unique_ptr<SpoolFile> own;                   // Where new lines go.
  std::vector<std::unique_ptr<SpoolFile>> adopted;  // Left by dead processes; sent first.
  Clock::time_point first_unsent{};  // When the own file last went from empty to not.
  int urgent = 0;                    // wait_sent() callers: do not wait for flush_interval.
  int delivering = 0;                // Threads calling on_error (unlocked) right now.
  bool closing = false;
  bool closed = false;
  bool close_one_try = false;  // The server was down when close() began.
  bool close_gave_up = false;
  Clock::time_point close_deadline{};
  Clock::time_point retry_at{};
  bool down = false;
  std::string down_reason;

  // A run of dropped events (spool full), reported as one line when it ends.
  bool gap = false;
  std::string gap_reason;
  std::uint64_t gap_dropped = 0;
  std::int64_t gap_ts = 0;
  std::int64_t gap_pid = 0;
  std::string gap_run;
  std::string gap_host;

  NetworkSinkStats stats;
  std::deque<std::string> reports;
  std::uint64_t reports_omitted = 0;
  std::atomic<bool> has_reports{false};

  std::unique_ptr<std::thread> sender;
  std::unique_ptr<HttpClient> client;  // Sender thread only.
  std::minstd_rand rng;
  std::chrono::milliseconds backoff;
  std::uint64_t batch_limit;
  pid_t pid;
};

namespace {

// Every live sink, for the fork and exit hooks.
std::mutex g_sinks_mu;
std::vector<NetworkSinkImpl*> g_sinks;

// Registered before main() (see the bottom of this file), hence before any Recorder's: the
// prepare handler runs after the recorder's (which parks the backend, flushed), the child
// handler before the recorder's (which starts a new backend that may call write()).
void fork_prepare() {
  g_sinks_mu.lock();
  for (NetworkSinkImpl* s : g_sinks) s->mu.lock();
}

void fork_parent() {
  for (NetworkSinkImpl* s : g_sinks) s->mu.unlock();
  g_sinks_mu.unlock();
}

void fork_child() {
  for (NetworkSinkImpl* s : g_sinks) {
    s->after_fork_child();
    s->mu.unlock();
  }
  g_sinks_mu.unlock();
}

// exit() runs no destructor of a recorder on main()'s stack: deliver what the sinks hold.
// Registered before any recorder's exit hook, so it runs after that hook flushed the
// recorders into their sinks.
void close_all_at_exit() {
  std::lock_guard lock(g_sinks_mu);
  for (NetworkSinkImpl* s : g_sinks) {
    try {
      s->close();
    } catch (...) {
    }
  }
}

[[maybe_unused]] const bool g_hooks_installed = [] {
  ::pthread_atfork(fork_prepare, fork_parent, fork_child);
  std::atexit(close_all_at_exit);
  return true;
}();

void register_sink(NetworkSinkImpl* s) {
  std::lock_guard lock(g_sinks_mu);
  g_sinks.push_back(s);
}

void unregister_sink(NetworkSinkImpl* s) noexcept {
  std::lock_guard lock(g_sinks_mu);
  std::erase(g_sinks, s);
}

}  // namespace

void NetworkSinkImpl::report_locked(std::string message) {
  if (reports.size() >= kMaxQueuedReports) {
    ++reports_omitted;
    return;
  }
  reports.push_back(std::move(message));
  has_reports.store(true, std::memory_order_release);
}

// With on_error: calls it for every queued report, without the lock.
void NetworkSinkImpl::deliver_reports(std::unique_lock<std::mutex>& lock) {
  if (!options.on_error || reports.empty()) return;
  std::deque<std::string> out;
  out.swap(reports);
  if (reports_omitted > 0) {
    out.push_back("network sink: " + std::to_string(reports_omitted) + " more reports left out");
    reports_omitted = 0;
  }
  has_reports.store(false, std::memory_order_relaxed);
  ++delivering;
  lock.unlock();
  for (const auto& m : out) {
    try {
      options.on_error(m);
    } catch (...) {
    }
  }
  lock.lock();
  if (--delivering == 0) done_cv.notify_all();
}

// Backend thread: hands reports to on_error, or throws the oldest for the recorder's handler.
void NetworkSinkImpl::take_reports_or_throw() {
  if (!has_reports.load(std::memory_order_acquire)) return;
  std::unique_lock lock(mu);
  if (options.on_error) {
    deliver_reports(lock);
    return;
  }
  if (reports.empty()) {
    has_reports.store(false, std::memory_order_relaxed);
    return;
  }
  std::string message = std::move(reports.front());
  reports.pop_front();
  if (reports.empty() && reports_omitted > 0) {
    report_locked("network sink: " + std::to_string(reports_omitted) + " more reports left out");
    reports_omitted = 0;
  }
  if (reports.empty()) has_reports.store(false, std::memory_order_relaxed);
  throw Error(message);
}

void NetworkSinkImpl::open_own_locked() {
  std::string note;
  auto file = open_spool(base, note);
  for (int n = 0; !file && n < kMaxSpoolAlternatives; ++n) {
    file = open_spool(alternative(base, pid, n), note);
  }
  if (!file) {
    throw Error("cannot open spool " + base.string() + ": it and " +
                std::to_string(kMaxSpoolAlternatives) + " per-process alternatives are in use");
  }
  if (!note.empty()) report_locked(std::move(note));
  if (file->events > 0) {
    stats.replayed += file->events;
    first_unsent = Clock::time_point{};  // Old: send at once.
  }
  own = std::move(file);
}

void NetworkSinkImpl::adopt_orphans_locked() {
  std::filesystem::path dir = base.parent_path();
  if (dir.empty()) dir = ".";
  std::string name = base.filename().string();
  struct Candidate {
    std::filesystem::file_time_type mtime;
    std::filesystem::path path;
  };
  std::vector<Candidate> found;
  std::error_code ec;
  for (std::filesystem::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    std::filesystem::path p = it->path();
    if (!is_alternative_of(p.filename().string(), name) || p == own->path) continue;
    std::error_code time_ec;
    auto mtime = std::filesystem::last_write_time(p, time_ec);
    found.push_back({mtime, p});
  }
  std::sort(found.begin(), found.end(), [](const Candidate& a, const Candidate& b) {
    return a.mtime != b.mtime ? a.mtime < b.mtime : a.path < b.path;
  });
  for (const auto& c : found) {
    std::string note;
    std::unique_ptr<SpoolFile> file;
    try {
      file = open_spool(c.path, note);
    } catch (const Error& e) {
      report_locked(std::string("network sink: ") + e.what());
      continue;
    }
    if (!file) continue;  // A live process holds it.
    if (!note.empty()) report_locked(std::move(note));
    if (file->events == 0) {
      ::unlink(file->path.c_str());
      continue;
    }
    stats.replayed += file->events;
    adopted.push_back(std::move(file));
  }
}

void NetworkSinkImpl::start() {
  make_spool_dir(base.parent_path());
  std::unique_lock lock(mu);
  open_own_locked();
  adopt_orphans_locked();
  sender = std::make_unique<std::thread>([this] { sender_main(); });
  lock.unlock();
  register_sink(this);
}

std::uint64_t NetworkSinkImpl::waiting_locked() const noexcept {
  std::uint64_t n = own ? own->events : 0;
  for (const auto& f : adopted) n += f->events;
  return n;
}

SpoolFile* NetworkSinkImpl::front_locked() noexcept {
  if (!adopted.empty()) return adopted.front().get();
  if (own && own->events > 0) return own.get();
  return nullptr;
}

void NetworkSinkImpl::start_gap_locked(std::string reason) {
  gap = true;
  gap_reason = std::move(reason);
  gap_dropped = 0;
  report_locked("network sink: " + gap_reason + ": dropping events until the server catches up");
}

// Ends a run of drops with the line that tells the server about it, once the spool has room
// again (half the bound free), or at once when forced (close()).
void NetworkSinkImpl::try_end_gap_locked(bool force) {
  if (!gap) return;
  if (!force && (!own || own_backlog_locked() > options.spool_max_bytes / 2)) return;
  gap = false;
  std::string message =
      "network sink dropped " + std::to_string(gap_dropped) + " events (" + gap_reason + ")";
  report_locked(message);
  if (gap_dropped == 0) return;
  std::string spool = own ? own->path.string() : base.string();
  Field fields[] = {{"dropped", FieldValue{gap_dropped}},
                    {"spool", FieldValue{std::string_view(spool)}},
                    {"spool_max_bytes", FieldValue{options.spool_max_bytes}}};
  Event e;
  e.ts_ns = gap_ts;
  e.kind = Kind::Log;
  e.level = Level::Warning;
  e.component = "stagelog";
  e.run = gap_run;
  e.message = message;
  e.fields = fields;
  e.pid = gap_pid;
  e.host = gap_host;
  if (pending.empty()) pending_since = Clock::now();
  format_json(e, pending);
  ++pending_events;
}

// Appends the buffered lines to the own spool file.
void NetworkSinkImpl::spill_locked() {
  if (pending.empty()) return;
  std::string failure;
  if (!own) {
    try {
      open_own_locked();
    } catch (const Error& e) {
      failure = e.what();
    }
  }
  if (own) {
    try {
      pwrite_all(own->fd, pending, own->end);
    } catch (const std::system_error& e) {
      failure = "cannot write spool " + own->path.string() + ": " + e.code().message();
      // Cut a partly written line so the file stays whole lines.
      if (::ftruncate(own->fd, static_cast<off_t>(own->end)) != 0) {
        failure += " (and cannot truncate it back: " + detail::errno_text(errno) + ")";
      }
    }
  }
  if (!failure.empty()) {
    stats.dropped += pending_events;
    report_locked("network sink: " + failure + "; dropped " + std::to_string(pending_events) +
                  " events");
    pending.clear();
    pending_events = 0;
    return;
  }
  bool was_empty = own->events == 0;
  own->end += pending.size();
  own->events += pending_events;
  if (down) stats.spooled += pending_events;
  if (was_empty) first_unsent = Clock::now();
  pending.clear();
  pending_events = 0;
  if (was_empty || waiting_locked() >= options.batch_events || closing || urgent > 0) {
    cv.notify_all();
  }
}

void NetworkSinkImpl::write(const Event& event) {
  std::lock_guard lock(mu);
  try_end_gap_locked(false);
  if (!gap) {
    std::size_t before = pending.size();
    format_json(event, pending);
    if (own_backlog_locked() > options.spool_max_bytes) {
      pending.resize(before);
      std::string where = own ? own->path.string() : base.string();
      start_gap_locked("spool full: " + where + ", " + std::to_string(options.spool_max_bytes) +
                       " bytes");
    } else {
      if (before == 0) pending_since = Clock::now();
      ++pending_events;
    }
  }
  if (gap) {
    ++gap_dropped;
    ++stats.dropped;
    gap_ts = event.ts_ns;
    gap_pid = event.pid;
    if (gap_run != event.run) gap_run.assign(event.run);
    if (gap_host != event.host) gap_host.assign(event.host);
  }
  if (pending_events >= options.batch_events || pending.size() >= kSpillBytes || closed) {
    spill_locked();
  }
}

void NetworkSinkImpl::consume_locked(SpoolFile& file, std::uint64_t lines, std::uint64_t bytes) {
  file.sent += bytes;
  file.events -= std::min(lines, file.events);
  try {
    if (file.events == 0 && &file != own.get()) {
      ::unlink(file.path.c_str());  // Still locked: whoever opens it next sees it is gone.
      std::erase_if(adopted, [&](const auto& f) { return f.get() == &file; });
      return;
    }
    if (file.events == 0) {
      // All sent: start the file over.
      file.sent = file.end = kHeaderSize;
      file.punched = 0;
      if (::ftruncate(file.fd, static_cast<off_t>(kHeaderSize)) != 0) {
        throw std::system_error(errno, std::generic_category());
      }
    } else if (file.sent - file.punched >= kPunchBytes) {
      // Give the sent front back to the file system; the header's page stays.
      const std::uint64_t page = 4096;
      std::uint64_t from = std::max(page, file.punched);
      std::uint64_t to = file.sent / page * page;
      if (to > from) {
        (void)::fallocate(file.fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                          static_cast<off_t>(from), static_cast<off_t>(to - from));
      }
      file.punched = file.sent;
    }
    pwrite_all(file.fd, header_text(file.sent), 0);
  } catch (const std::system_error& e) {
    report_locked("network sink: cannot update spool " + file.path.string() + ": " +
                  e.code().message() + " (its events may be sent again)");
  }
}

void NetworkSinkImpl::apply_locked(const Outcome& outcome, SpoolFile& file, const Batch& batch) {
  const auto now = Clock::now();
  switch (outcome.kind) {
    case Outcome::Sent:
    case Outcome::Rejected: {
      std::uint64_t rejected =
          outcome.kind == Outcome::Rejected ? batch.lines : std::min(outcome.rejected, batch.lines);
      stats.sent += batch.lines - rejected;
      stats.rejected += rejected;
      if (rejected > 0) {
        report_locked("network sink: " + url.text + " rejected " + std::to_string(rejected) +
                      " of " + std::to_string(batch.lines) + " events" +
                      (outcome.message.empty() ? std::string() : ": " + outcome.message));
      }
      consume_locked(file, batch.lines, batch.body.size());
      if (down) {
        down = false;
        report_locked("network sink: " + url.text + " is reachable again; sending the " +
                      std::to_string(waiting_locked()) + " events still in the spool");
      }
      backoff = options.retry_initial;
      retry_at = {};
      batch_limit = std::min<std::uint64_t>(options.batch_events, batch_limit * 2);
      try_end_gap_locked(false);
      spill_locked();
      done_cv.notify_all();
      break;
    }
    case Outcome::Split:
      batch_limit = std::max<std::uint64_t>(1, batch.lines / 2);
      break;
    case Outcome::Retry: {
      ++stats.failed_requests;
      if (!down) {
        down = true;
        stats.spooled += waiting_locked();
        report_locked("network sink: cannot deliver to " + url.text + ": " + outcome.message +
                      "; keeping events in " + own_path_text() + " and retrying");
      }
      if (closing && close_one_try) close_gave_up = true;
      auto delay = backoff;
      backoff = std::min(backoff * 2, options.retry_max);
      std::uniform_real_distribution<double> jitter(0.75, 1.25);
      delay = std::chrono::milliseconds(
          static_cast<std::int64_t>(static_cast<double>(delay.count()) * jitter(rng)));
      delay = std::clamp(std::max(delay, outcome.retry_after), std::chrono::milliseconds(1),
                         options.retry_max);
      retry_at = now + delay;
      break;
    }
  }
}

Outcome NetworkSinkImpl::post(const Batch& batch, Clock::time_point deadline) {
  Outcome out;
  HttpClient::Header headers[1];
  std::size_t n = 0;
  if (!auth.empty()) headers[n++] = {"Authorization", auth};
  HttpResponse response;
  try {
    response = client->post(kEventsPath, kContentType, batch.body,
                            std::span<const HttpClient::Header>(headers, n), deadline);
  } catch (const HttpError& e) {
    out.kind = Outcome::Retry;
    out.message = e.what();
    return out;
  }
  const int status = response.status;
  std::string status_text = "HTTP " + std::to_string(status);
  if (!response.reason.empty()) status_text += " " + response.reason;
  if (status >= 200 && status < 300) {
    out.kind = Outcome::Sent;
    out.rejected = read_rejections(response.body, out.message);
    return out;
  }
  if (status == 413 && batch.lines > 1) {
    out.kind = Outcome::Split;
    return out;
  }
  if (status >= 400 && status < 500 && status != 408 && status != 429) {
    out.kind = Outcome::Rejected;
    std::string detail;
    read_rejections(response.body, detail);
    out.message = status_text + ": " + (detail.empty() ? snippet(response.body) : detail);
    return out;
  }
  // 5xx, 408, 429, and answers we cannot act on (1xx, 3xx): keep the data and try again.
  out.kind = Outcome::Retry;
  out.message = status_text;
  if (!response.body.empty()) out.message += ": " + snippet(response.body);
  out.retry_after = retry_after(response);
  return out;
}

void NetworkSinkImpl::sender_main() {
  std::unique_lock lock(mu);
  Batch batch;
  for (;;) {
    deliver_reports(lock);
    const auto now = Clock::now();
    SpoolFile* file = front_locked();
    if (closing && (file == nullptr || now >= close_deadline || close_gave_up)) break;
    if (file == nullptr) {
      cv.wait(lock);
      continue;
    }
    if (now < retry_at) {
      cv.wait_until(lock, closing ? std::min(retry_at, close_deadline) : retry_at);
      continue;
    }
    const auto due = first_unsent + options.flush_interval;
    bool ready = closing || urgent > 0 || file != own.get() ||
                 waiting_locked() >= options.batch_events || now >= due;
    if (!ready) {
      cv.wait_until(lock, due);
      continue;
    }
    const int fd = file->fd;
    const std::uint64_t from = file->sent;
    const std::uint64_t end = file->end;
    const std::uint64_t limit = batch_limit;
    auto deadline = now + options.request_timeout;
    if (closing) deadline = std::min(deadline, close_deadline);
    const std::string path = file->path.string();
    lock.unlock();
    std::string read_error;
    Outcome outcome;
    try {
      read_batch(fd, from, end, limit, options.max_batch_bytes, batch);
    } catch (const std::system_error& e) {
      read_error = e.code().message();
    }
    if (read_error.empty() && batch.lines == 0) read_error = "no whole line where one should be";
    if (read_error.empty()) outcome = post(batch, deadline);
    lock.lock();
    if (!read_error.empty()) {
      // Unreadable: what is left of the file cannot be sent.
      std::uint64_t lost = file->events;
      stats.dropped += lost;
      report_locked("network sink: cannot read spool " + path + ": " + read_error + "; dropped " +
                    std::to_string(lost) + " events");
      consume_locked(*file, lost, file->end - file->sent);
      done_cv.notify_all();
      continue;
    }
    apply_locked(outcome, *file, batch);
  }
  deliver_reports(lock);
}

void NetworkSinkImpl::close() {
  std::lock_guard close_lock(close_mu);
  {
    std::unique_lock lock(mu);
    if (closed) return;
    spill_locked();
    closing = true;
    close_one_try = down;
    close_gave_up = false;
    close_deadline = Clock::now() + options.shutdown_timeout;
    cv.notify_all();
  }
  if (sender && sender->joinable()) sender->join();
  sender.reset();
  client->close();
  std::unique_lock lock(mu);
  closing = false;
  closed = true;
  try_end_gap_locked(true);
  spill_locked();
  std::uint64_t left = waiting_locked();
  if (left > 0) {
    report_locked("network sink: " + std::to_string(left) + " events not delivered to " + url.text +
                  " stay in the spool for the next process: " + own_path_text());
  } else if (own) {
    ::unlink(own->path.c_str());  // Nothing to keep; a later write() opens a new one.
    own.reset();
  }
  done_cv.notify_all();
  deliver_reports(lock);
}

bool NetworkSinkImpl::wait_sent(std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  std::unique_lock lock(mu);
  spill_locked();
  ++urgent;
  cv.notify_all();
  bool done =
      done_cv.wait_until(lock, deadline, [&] { return pending.empty() && waiting_locked() == 0; });
  --urgent;
  // Reports about what was sent may be on their way to on_error from the sender thread: they
  // are handed over before this returns, so a caller sees every report about its events.
  done_cv.wait_until(lock, deadline, [&] { return delivering == 0; });
  deliver_reports(lock);
  return done;
}

// In the child of fork(), with mu held by this (the only) thread. The sender thread is gone;
// the parent still holds the spool files, their locks and everything queued: start over with
// a spool of our own and a new sender.
void NetworkSinkImpl::after_fork_child() noexcept {
  pid = ::getpid();
  (void)sender.release();  // No thread to join; its handle is leaked on purpose.
  if (client) {
    if (client->fd() >= 0) ::close(client->fd());  // Our copy; the parent's stays open.
    (void)client.release();                        // The dead sender may have been inside it.
  }
  new (&cv) std::condition_variable();
  new (&done_cv) std::condition_variable();
  new (&close_mu) std::mutex();
  adopted.clear();  // Closing our copies keeps the parent's locks (flock is per open file).
  own.reset();
  pending.clear();
  pending_events = 0;
  stats = NetworkSinkStats{};
  reports.clear();
  reports_omitted = 0;
  has_reports.store(false, std::memory_order_relaxed);
  gap = false;
  down = false;
  retry_at = {};
  backoff = options.retry_initial;
  batch_limit = options.batch_events;
  urgent = 0;
  try {
    client = std::make_unique<HttpClient>(url);
    if (closing || closed) {
      closing = false;
      closed = true;  // The parent was closing: the child writes to a spool only.
      return;
    }
    open_own_locked();
    sender = std::make_unique<std::thread>([this] { sender_main(); });
  } catch (const std::exception& e) {
    closed = true;
    report_locked(std::string("network sink: after fork: ") + e.what());
  } catch (...) {
    closed = true;
  }
}

// ---------------------------------------------------------------------------------------------

}  // namespace detail

NetworkSink::NetworkSink(NetworkSinkOptions options)
    : Sink(options.level), impl_(std::make_unique<detail::NetworkSinkImpl>(std::move(options))) {
  impl_->start();
}

NetworkSink::~NetworkSink() {
  detail::unregister_sink(impl_.get());
  try {
    impl_->close();
  } catch (...) {
  }
}

void NetworkSink::write(const Event& event) { impl_->write(event); }

void NetworkSink::flush() {
  {
    std::lock_guard lock(impl_->mu);
    impl_->spill_locked();
  }
  impl_->take_reports_or_throw();
}

void NetworkSink::tick(std::int64_t /*now_ns*/) {
  {
    std::lock_guard lock(impl_->mu);
    // A backend that never idles never calls flush(): do not let lines wait past the interval.
    if (!impl_->pending.empty() &&
        detail::Clock::now() - impl_->pending_since >= impl_->options.flush_interval) {
      impl_->spill_locked();
    }
  }
  impl_->take_reports_or_throw();
}

void NetworkSink::close() { impl_->close(); }

bool NetworkSink::wait_sent(std::chrono::milliseconds timeout) { return impl_->wait_sent(timeout); }

NetworkSinkStats NetworkSink::stats() const {
  std::lock_guard lock(impl_->mu);
  NetworkSinkStats s = impl_->stats;
  s.queued = impl_->waiting_locked() + impl_->pending_events;
  return s;
}

std::filesystem::path NetworkSink::spool_path() const {
  std::lock_guard lock(impl_->mu);
  return impl_->own ? impl_->own->path : impl_->base;
}

const std::string& NetworkSink::url() const noexcept { return impl_->url.text; }

std::filesystem::path default_spool_path(std::string_view url) {
  detail::HttpUrl parsed = detail::checked_url(std::string(url));
  std::string name = parsed.host;
  for (char& c : name) {
    if (c == ':' || c == '/') c = '_';
  }
  return detail::state_dir() / "spool" / (name + "_" + std::to_string(parsed.port) + ".spool");
}

std::shared_ptr<NetworkSink> network_sink_from_env(NetworkSinkOptions options) {
  const char* server = std::getenv("STAGELOG_SERVER");
  if (server == nullptr || server[0] == '\0') return nullptr;
  try {
    (void)detail::parse_http_url(server);
  } catch (const Error& e) {
    throw Error(std::string("STAGELOG_SERVER=") + server + ": " + e.what());
  }
  options.url = server;
  if (const char* token = std::getenv("STAGELOG_TOKEN")) {
    options.token = token;
    for (char c : options.token) {  // Never echo the token itself.
      if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
        throw Error("STAGELOG_TOKEN holds a control character");
      }
    }
  }
  if (const char* spool = std::getenv("STAGELOG_SPOOL"); spool != nullptr && spool[0] != '\0') {
    options.spool_path = spool;
  }
  return std::make_shared<NetworkSink>(std::move(options));
}

}  // namespace stagelog
