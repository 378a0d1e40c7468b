#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace stagelog::detail {

struct SpoolFile;

// Whole NDJSON lines read from the spool, for one request.
struct SpoolBatch {
  std::string body;
  std::uint64_t lines = 0;
};

// The unsent lines of one spool file as they stood under the owner's lock. The bytes in
// [from, end) stay as they are until consume() or drop_unreadable() is given this range, so
// read() needs no lock. Valid until then.
struct SpoolRange {
  SpoolFile* file = nullptr;
  int fd = -1;
  std::uint64_t from = 0;
  std::uint64_t end = 0;
  bool adopted = false;         // Left by a dead process: nothing will be added to it, send it now.
  std::string key;              // The Idempotency-Key of the batch at `from`.
  std::uint64_t batch_end = 0;  // Set: that batch is [from, batch_end), sent before as it is.
};

// The network sink's spool: the on-disk queue of NDJSON lines on their way to the server, a
// write-ahead log. Files hold a fixed-width header (the file's producer id, the sequence number
// of its next batch, the end of the batch being sent and the offset of the first unsent byte,
// rewritten in place) and whole lines. Each batch is sent with the Idempotency-Key
// "<producer>-<seq>", the same on every retry and after a restart, so the server stores it
// once. Version 1 files (no producer) are still read; they are given a producer while open. Each is
// flock()ed by one open file, so one process (or sink) per file: the own file is `base`, or
// "<base>.<pid>[-N]" when another holds that. Files
// "<base>.<N>" that no live process holds are adopted and sent first, oldest first. A fully
// sent own file is truncated to its header, an adopted one removed.
//
// Threads: not locked by itself. The owner calls everything under its one mutex — append()
// from whichever thread hands it lines; next(), consume() and drop_unreadable() from the
// sender thread — except read(), which the sender calls without the lock: a range's bytes
// change only through consume() and drop_unreadable(), which the sender itself calls.
//
// Crash: a line is in the file before it is sent, and the header moves past it only once the
// server has answered for it. A process killed at any point leaves a file that the next opener
// replays from the header's offset, cutting a half-written last line: nothing appended is lost,
// and what was acknowledged just before the kill may be sent again. (No fsync: a power loss may
// lose what the page cache held.)
class NetworkSpool {
 public:
  // Called with the spool's trouble reports ("network sink: ..."), within the call that has
  // them, so under the owner's lock.
  using Report = std::function<void(std::string)>;

  // `max_bytes` bounds the own file's unsent bytes (see over_limit()). Opens nothing:
  // make_directory() and open_own() do.
  NetworkSpool(std::filesystem::path base, std::uint64_t max_bytes, Report report);
  ~NetworkSpool();
  NetworkSpool(const NetworkSpool&) = delete;
  NetworkSpool& operator=(const NetworkSpool&) = delete;

  // Creates base's directory. Throws Error naming it.
  void make_directory() const;
  // Opens and locks the own file: base, else "<base>.<pid>", "<base>.<pid>-1", ... Returns the
  // lines it already held (left by an earlier process), which go first. Throws Error naming
  // the path (cannot be opened, not a spool file, every alternative in use).
  std::uint64_t open_own(pid_t pid);
  // Takes over the "<base>.<N>" files no live process holds, oldest first; returns the lines
  // they hold. Needs the own file open. What cannot be opened is reported and skipped; empty
  // files are removed.
  std::uint64_t adopt_orphans();

  // Appends whole lines (`count` of them) to the open own file. Returns whether it held no
  // unsent line before. Throws Error "cannot write spool <path>: ...", the file cut back to
  // whole lines.
  bool append(std::string_view lines, std::uint64_t count);

  // What to send next: the oldest adopted file, else the own file; nullopt when nothing waits.
  std::optional<SpoolRange> next() noexcept;
  // Without the lock: up to `limit` whole lines from the range's front, at most `max_bytes`
  // of them unless the first line alone is longer. Throws std::system_error.
  static void read(const SpoolRange& range, std::uint64_t limit, std::size_t max_bytes,
                   SpoolBatch& batch);
  // The range's first `bytes` bytes are the batch being sent under the range's key: written
  // in the file's header before the request goes out, so that a retry, by this process or the
  // next, sends the same lines under the same key (unless the range has a batch already).
  void begin_batch(const SpoolRange& range, std::uint64_t bytes);
  // The server refused the batch whole, storing nothing (413): its key is not used again.
  void abandon_batch(const SpoolRange& range);
  // Marks `lines` lines (`bytes` bytes) at the range's front as done (sent or rejected), the
  // batch's key spent. A file left empty is truncated (own) or removed (adopted); the range is
  // then spent.
  void consume(const SpoolRange& range, std::uint64_t lines, std::uint64_t bytes);
  // The range's file could not be read: reports it and gives up all its unsent lines, whose
  // number it returns.
  std::uint64_t drop_unreadable(const SpoolRange& range, std::string_view reason);

  // With the sender stopped: removes the own file, which must hold nothing unsent; append()
  // needs open_own() again.
  void remove_own() noexcept;
  // In a forked child: closes this process's copies of the files, leaving the files and the
  // parent's locks (flock is per open file) as they are.
  void forget_after_fork() noexcept;

  bool is_open() const noexcept { return own_ != nullptr; }
  // The own file, or base when none is open.
  std::filesystem::path path() const;
  // Unsent lines in all files.
  std::uint64_t waiting() const noexcept;

  // Whether the own file's unsent bytes and `buffered` more would pass max_bytes.
  bool over_limit(std::uint64_t buffered) const noexcept;
  // Whether the own file is open and it with `buffered` more bytes fills at most half the
  // bound: where the sink stops dropping.
  bool under_half(std::uint64_t buffered) const noexcept;

 private:
  std::uint64_t own_backlog() const noexcept;
  void write_header(SpoolFile& file);  // Reports a failure.

  const std::filesystem::path base_;
  const std::uint64_t max_bytes_;
  Report report_;
  std::unique_ptr<SpoolFile> own_;                   // Where new lines go.
  std::vector<std::unique_ptr<SpoolFile>> adopted_;  // Left by dead processes; sent first.
};

}  // namespace stagelog::detail
