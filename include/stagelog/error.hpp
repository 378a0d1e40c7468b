#pragma once

#include <stdexcept>
#include <string>

namespace stagelog {

// What kind of failure an Error reports, where the caller may act on it: the server answers a
// write that failed on a full disk with 507 and on an I/O error or a busy store with 503, and
// says it is not ready until a write succeeds again; a store it cannot reach fails reads and
// writes alike with 503 until it answers again. Other: anything else (a bad value, a bug).
enum class ErrorKind {
  Other,
  DiskFull,     // ENOSPC, EDQUOT, SQLITE_FULL.
  Io,           // EIO, SQLITE_IOERR*, a store file that became read-only or unreadable.
  Busy,         // SQLITE_BUSY / SQLITE_LOCKED after the busy timeout.
  Unavailable,  // A database server not reachable: a connection lost or refused, a server
                // shutting down or starting up (a restart, a failover). Trying again later
                // may succeed, on a new connection.
};

// Thrown by setup calls (constructing a sink, bad options) with the path or value that was
// wrong in the message. The hot path never throws.
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what, ErrorKind kind = ErrorKind::Other)
      : std::runtime_error(what), kind_(kind) {}

  ErrorKind kind() const noexcept { return kind_; }

 private:
  ErrorKind kind_;
};

}  // namespace stagelog
