#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "stagelog/event.hpp"

namespace stagelog::detail {

// Reads events out of logs that already exist: the one reader behind `stagelog parse`,
// `summary`, `tail` (files) and `run` (the child's output). A stage line is searched for
// anywhere in a line, as seed 000's own regex does ("<ts> [worker] Stage: NAME - status
// (1.2s)"), and what stands before it is read as a prefix: Python logging's defaults
// ("INFO:name:", "2026-01-04 19:30:15,234 - name - INFO - "), a `docker logs -t` / `kubectl
// logs --timestamps` time, journald's short format ("Jan 04 19:30:15 host ident[pid]: ").
// The prefix's logger, level and time become the fields "logger", "log_level" and
// "prefix_ts"; a status word the Status enum has no name for is kept as "status_text".
//
// Formats by name (format_names()): auto (all of them, the default), seed, python, worker
// (seed 003's per-worker files), trace (seed 002's trace JSONL), stagelog (stagelog's text
// lines), jsonl (stagelog's JSONL), docker, journald, and "re:<regex>" with named groups.
// A reader is immutable after construction: read() may be called from any thread.
class LineReader {
 public:
  // Throws Error for an unknown format name or a regex that does not compile.
  explicit LineReader(std::string_view format = "auto");
  ~LineReader();
  LineReader(LineReader&&) noexcept;
  LineReader& operator=(LineReader&&) noexcept;

  // One line, without its newline (a trailing '\r' is dropped). On failure returns nullopt
  // and says why in *error.
  std::optional<OwnedEvent> read(std::string_view line, std::string* error = nullptr) const;

  // "auto, seed, python, ...": for --help and error messages.
  static std::string_view format_names();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// An ISO-8601 time at the front of `text`: "2026-01-04T19:30:15.234Z", a space for the 'T',
// ',' or '.' before the fraction (1-9 digits), and an offset "Z", "+00:00", "+0000", "+00",
// "-05:00" or none (read as UTC). *used is how many bytes it took.
std::optional<std::int64_t> read_iso_time(std::string_view text, std::size_t* used) noexcept;

// A stage status as written ("Starting", "Complete", "In progress", "Retrying", "done") to
// the Status it means; nullopt for a word that fits none.
std::optional<Status> status_from_text(std::string_view text) noexcept;

}  // namespace stagelog::detail
