#include "tail_sources.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <string_view>
#include <thread>
#include <utility>

#include "format/format.hpp"
#include "format/line_reader.hpp"
#include "stagelog/error.hpp"
#include "stagelog/parse.hpp"

namespace stagelog::cli {

namespace {

// What tail prints of an event comes from its text: control characters in it are escaped
// (\n, \x1b ...) as it is read, so a message cannot forge a line of tail's own or reach the
// terminal as an escape sequence.
void make_printable(std::string& text) {
  bool control = std::any_of(text.begin(), text.end(), [](char c) {
    auto u = static_cast<unsigned char>(c);
    return u < 0x20 || u == 0x7f;
  });
  if (!control) return;
  std::string out;
  detail::append_escaped_text(out, text);
  text = std::move(out);
}

void make_printable(OwnedEvent& e) {
  make_printable(e.run);
  make_printable(e.worker);
  make_printable(e.component);
  make_printable(e.stage);
  make_printable(e.message);
}

namespace fs = std::filesystem;

constexpr std::size_t kMaxLine = std::size_t{1} << 20;  // Longer lines are cut and reported.
constexpr std::int64_t kRescanNs = 500'000'000;

constexpr auto kConnectTimeout = std::chrono::seconds(10);
constexpr auto kFirstRetry = std::chrono::milliseconds(500);
constexpr auto kMaxRetry = std::chrono::seconds(10);

using Lines = std::vector<std::pair<std::size_t, std::string>>;  // (line number, text)

}  // namespace

// --- Following files ------------------------------------------------------------------------

// One followed file: reads what was appended since the last poll, follows a rotation (the
// path names a new file: the old one is read to its end first) and a truncation.
class FileSource::FollowedFile {
 public:
  explicit FollowedFile(std::string path) : path_(std::move(path)) {}
  ~FollowedFile() { close_fd(); }
  FollowedFile(const FollowedFile&) = delete;
  FollowedFile& operator=(const FollowedFile&) = delete;

  // Appends the complete lines that arrived to `out`.
  void poll(Lines& out) {
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
  void read_available(Lines& out) {
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
    return n != static_cast<ssize_t>(head_.size()) ||
           std::memcmp(now, head_.data(), head_.size()) != 0;
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

FileSource::FileSource(std::vector<std::string> roots) : roots_(std::move(roots)) {
  for (const auto& root : roots_) {
    std::error_code ec;
    if (!fs::exists(root, ec)) throw Error("cannot follow " + root + ": no such file or folder");
  }
}

FileSource::~FileSource() = default;

std::vector<OwnedEvent> FileSource::poll(std::int64_t now_ns) {
  if (now_ns - last_scan_ >= kRescanNs) {
    scan();
    last_scan_ = now_ns;
  }
  static const detail::LineReader reader;  // Every format parse reads, found by itself.
  std::vector<OwnedEvent> events;
  Lines lines;
  std::string error;
  for (auto& [path, file] : files_) {
    lines.clear();
    file->poll(lines);
    for (auto& [number, line] : lines) {
      if (line.empty()) continue;
      if (auto e = reader.read(line, &error)) {
        make_printable(*e);
        events.push_back(std::move(*e));
      } else {
        ++skipped_;
        last_error_ = path + ":" + std::to_string(number) + ": " + error;
      }
    }
  }
  std::stable_sort(events.begin(), events.end(),
                   [](const OwnedEvent& a, const OwnedEvent& b) { return a.ts_ns < b.ts_ns; });
  return events;
}

std::string FileSource::take_error() { return std::exchange(last_error_, {}); }

void FileSource::add(const fs::path& path) {
  std::string key = path.lexically_normal().string();
  if (!files_.contains(key)) files_.emplace(key, std::make_unique<FollowedFile>(key));
}

void FileSource::scan() {
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

// --- Following a server ---------------------------------------------------------------------

std::string server_token(const std::string& token_file) {
  std::string token;
  if (!token_file.empty()) {
    std::ifstream in(token_file);
    if (!in) throw Error("cannot read the token file " + token_file);
    std::getline(in, token);
    while (!token.empty() && (token.back() == '\r' || token.back() == ' ')) token.pop_back();
    if (token.empty()) throw Error("the token file " + token_file + " is empty");
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

namespace {

detail::Url parse_server_url(const std::string& url) {
  try {
    return detail::parse_url(url);
  } catch (const Error& e) {
    throw Error("--server " + url + ": " + e.what());
  }
}

// How an https server is checked: --ca-file's CAs or the system's. Throws Error for a CA file
// with an http URL, or one that cannot be read.
std::shared_ptr<const detail::TlsConfig> tls_config(const detail::Url& url,
                                                    const std::string& ca_file) {
  if (!url.tls) {
    if (!ca_file.empty()) throw Error("--ca-file needs an https:// server URL, not " + url.text);
    return nullptr;
  }
  return std::make_shared<const detail::TlsConfig>(ca_file);
}

// The "error" of a JSON error body, else the body's start.
std::string server_error(const detail::HttpResponse& r) {
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

// What a "reset" event of the stream means for the reader.
std::string gap_text(const std::string& data) {
  if (data.find("\"restarted\"") != std::string::npos) {
    return "the server restarted: events it streamed before are not shown";
  }
  auto missed = data.find("\"missed\":");
  std::string n = missed == std::string::npos
                      ? "some"
                      : data.substr(missed + 9, data.find(',', missed) - missed - 9);
  return n + " events went by before tail could read them: not shown";
}

}  // namespace

ServerSource::ServerSource(const std::string& url, std::string token, const std::string& ca_file)
    : url_(parse_server_url(url)),
      client_(url_, tls_config(url_, ca_file)),
      token_(std::move(token)),
      retry_(kFirstRetry) {
  connect(true);
}

std::vector<OwnedEvent> ServerSource::poll(std::chrono::milliseconds wait) {
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
        make_printable(*parsed);
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

std::vector<std::string> ServerSource::take_notes() { return std::exchange(notes_, {}); }

void ServerSource::connect(bool first) {
  std::string target = "/api/v1/stream?types=event";
  if (last_id_.empty()) target += "&from=oldest";
  std::string bearer = "Bearer " + token_;
  std::vector<detail::HttpClient::Header> headers = {{"Accept", "text/event-stream"}};
  if (!token_.empty()) headers.emplace_back("Authorization", bearer);
  if (!last_id_.empty()) headers.emplace_back("Last-Event-ID", last_id_);
  detail::HttpResponse head;
  try {
    head = client_.get_stream(target, headers, std::chrono::steady_clock::now() + kConnectTimeout);
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
      throw Error(url_.text + " has no event stream (404: " + why + "); is it a stagelog server?");
    case 400:
      throw Error(url_.text + " refused the stream request (400: " + why + ")");
    default:
      if (first && head.status < 500) {
        throw Error(url_.text + " answered " + std::to_string(head.status) + ": " + why);
      }
      retry_later("the server answered " + std::to_string(head.status) + ": " + why);
  }
}

void ServerSource::lost(const std::string& why) {
  connected_ = false;
  client_.close();
  retry_later(why);
}

void ServerSource::retry_later(const std::string& why) {
  connected_ = false;
  char delay[32];
  std::snprintf(delay, sizeof delay, "%.1fs", static_cast<double>(retry_.count()) / 1000);
  note(why + "; reconnecting in " + delay);
  next_attempt_ = std::chrono::steady_clock::now() + retry_;
  retry_ = std::min<std::chrono::milliseconds>(retry_ * 2, kMaxRetry);
}

void ServerSource::note(std::string text) { notes_.push_back(std::move(text)); }

}  // namespace stagelog::cli
