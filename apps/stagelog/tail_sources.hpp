#pragma once

// Where `stagelog tail` gets its events: files and folders (FileSource) and the event stream
// of a `stagelog serve` (ServerSource). Both are polled from the tail's one loop thread.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "format/sse.hpp"
#include "net/http_client.hpp"
#include "stagelog/event.hpp"

namespace stagelog::cli {

// The files named on the command line and the *.jsonl files under the folders named there
// (looked for again every half second, three levels deep). Each file is followed through
// rotation (the rest of the old file is read first) and truncation; its complete lines are
// read as events in any format `stagelog parse` reads (detail::LineReader). A line that holds
// none is counted and skipped. Control characters in an event's texts (from a file or the
// server) are escaped as it is read, so nothing tail prints can forge a line or move the
// terminal's cursor.
// The constructor throws Error when a root does not exist.
class FileSource {
 public:
  explicit FileSource(std::vector<std::string> roots);
  ~FileSource();
  FileSource(const FileSource&) = delete;
  FileSource& operator=(const FileSource&) = delete;

  // The events that arrived since the last call, from every file, in time order (arrival
  // order among equal times). `now_ns` decides when to look for new files.
  std::vector<OwnedEvent> poll(std::int64_t now_ns);

  std::size_t files() const { return files_.size(); }
  std::size_t skipped() const { return skipped_; }
  // The last unreadable line since the previous call, "path:line: why", or "".
  std::string take_error();

 private:
  class FollowedFile;  // One file's reader; defined in tail_sources.cpp.

  void add(const std::filesystem::path& path);
  void scan();

  std::vector<std::string> roots_;
  std::map<std::string, std::unique_ptr<FollowedFile>> files_;
  std::int64_t last_scan_ = std::numeric_limits<std::int64_t>::min() / 2;
  std::size_t skipped_ = 0;
  std::string last_error_;
};

// The token for --server: the first line of `token_file` when one is given, else
// $STAGELOG_TOKEN, else "". Throws Error for an unreadable or empty file and for a token with a
// control character (without echoing the token).
std::string server_token(const std::string& token_file);

// The events `stagelog serve` stores, from GET /api/v1/stream (the events only: the watchdog
// runs on this side's thresholds). The first connection starts from the oldest event the
// server still keeps, as a file is read from its start; a dropped one is resumed with
// Last-Event-ID after 0.5 s, 1 s, 2 s ... at most 10 s apart. An answer no retry can change
// (bad URL, 401, 403, 404, 400) and a first connection that fails throw Error, from the
// constructor or from poll().
class ServerSource {
 public:
  // `ca_file`: for an https URL, the CAs to check the server with (empty: the system's).
  ServerSource(const std::string& url, std::string token, const std::string& ca_file = {});

  // New events, waiting up to `wait` for the first (also while waiting to reconnect).
  std::vector<OwnedEvent> poll(std::chrono::milliseconds wait);

  bool connected() const { return connected_; }
  const std::string& url() const { return url_.text; }
  // What happened since the last call (lost connections, gaps), for stderr or the table.
  std::vector<std::string> take_notes();

 private:
  void connect(bool first);
  void lost(const std::string& why);
  void retry_later(const std::string& why);
  void note(std::string text);

  detail::Url url_;
  detail::HttpClient client_;
  std::string token_;
  detail::SseParser parser_;
  std::string last_id_;
  bool connected_ = false;
  std::chrono::milliseconds retry_;
  std::chrono::steady_clock::time_point next_attempt_;
  std::vector<std::string> notes_;
};

}  // namespace stagelog::cli
