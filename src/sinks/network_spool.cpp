#include "sinks/network_spool.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <system_error>
#include <utility>

#include "base/errno_text.hpp"
#include "base/fd_io.hpp"
#include "stagelog/error.hpp"

namespace stagelog::detail {

namespace {

// Version 1: "#stagelog-spool v1 sent=00000000000000000045\n": the offset of the first unsent
// byte, in a fixed width so it is rewritten in place. Still read; a file is written as version
// 2 once it is empty.
constexpr std::string_view kHeaderPrefix1 = "#stagelog-spool v1 sent=";
// Version 2: "#stagelog-spool v2 producer=<32 hex> seq=<20 digits> batch=<20 digits>
// sent=<20 digits>\n": the file's producer id and the sequence number of its next batch (the
// Idempotency-Key "<producer>-<seq>"), the end of the batch being sent (0: none), and the
// offset of the first unsent byte.
constexpr std::string_view kHeaderPrefix2 = "#stagelog-spool v2 producer=";
constexpr std::size_t kHeaderDigits = 20;
constexpr std::size_t kProducerDigits = 32;
constexpr std::uint64_t kHeaderSize1 = kHeaderPrefix1.size() + kHeaderDigits + 1;
constexpr std::uint64_t kHeaderSize2 = kHeaderPrefix2.size() + kProducerDigits +
                                       std::string_view(" seq=").size() + kHeaderDigits +
                                       std::string_view(" batch=").size() + kHeaderDigits +
                                       std::string_view(" sent=").size() + kHeaderDigits + 1;
constexpr std::size_t kReadChunk = 256 * 1024;
// Sent bytes at the front of a spool that is never empty long enough to be truncated are
// released with FALLOC_FL_PUNCH_HOLE once this many have accumulated.
constexpr std::uint64_t kPunchBytes = 4u << 20;
constexpr int kMaxSpoolAlternatives = 16;

std::string digits20(std::uint64_t n) {
  char digits[kHeaderDigits + 1];
  std::snprintf(digits, sizeof digits, "%020llu", static_cast<unsigned long long>(n));
  return digits;
}

std::string random_producer() {
  std::random_device rd;
  std::string out;
  static constexpr char kHex[] = "0123456789abcdef";
  for (std::size_t i = 0; i < kProducerDigits; ++i) out += kHex[rd() % 16];
  return out;
}

bool read_u64(std::string_view text, std::uint64_t& out) {
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  return ec == std::errc() && ptr == text.data() + text.size();
}

}  // namespace

// One spool file, opened and flock()ed by this sink.
struct SpoolFile {
  std::filesystem::path path;
  int fd = -1;
  int version = 2;
  std::uint64_t header = kHeaderSize2;  // Its size.
  std::string producer;                 // Version 1: made up when opened, not kept.
  std::uint64_t seq = 0;                // Of the next batch, or of the batch being sent.
  std::uint64_t batch_end = 0;          // The batch being sent ends here; 0: none.
  std::uint64_t sent = kHeaderSize2;    // First byte not yet acknowledged.
  std::uint64_t end = kHeaderSize2;     // End of the last whole line.
  std::uint64_t events = 0;             // Lines in [sent, end).
  std::uint64_t punched = 0;            // Bytes released before this offset.

  SpoolFile() = default;
  SpoolFile(const SpoolFile&) = delete;
  SpoolFile& operator=(const SpoolFile&) = delete;
  ~SpoolFile() {
    if (fd >= 0) ::close(fd);
  }
  std::uint64_t backlog() const noexcept { return end - sent; }

  std::string header_text() const {
    if (version == 1) return std::string(kHeaderPrefix1) + digits20(sent) + "\n";
    return std::string(kHeaderPrefix2) + producer + " seq=" + digits20(seq) +
           " batch=" + digits20(batch_end) + " sent=" + digits20(sent) + "\n";
  }
};

namespace {

// Reads the header and counts the unsent lines; an incomplete last line (the writer died in
// the middle of it) is cut off and said in `note`.
void load_spool(SpoolFile& f, std::uint64_t size, std::string& note) {
  if (size == 0) {
    f.producer = random_producer();
    pwrite_all(f.fd, f.header_text(), 0);
    return;
  }
  const std::string not_spool =
      f.path.string() + " is not a stagelog spool file: remove it or choose another spool path";
  std::string header(std::min<std::uint64_t>(size, kHeaderSize2), '\0');
  if (!pread_all(f.fd, header.data(), header.size(), 0)) throw Error(not_spool);
  std::uint64_t sent = 0;
  if (header.starts_with(kHeaderPrefix1)) {
    if (size < kHeaderSize1 || header[kHeaderSize1 - 1] != '\n') throw Error(not_spool);
    f.version = 1;
    f.header = kHeaderSize1;
    f.producer = random_producer();  // Its batches get keys from here on.
    if (!read_u64(std::string_view(header).substr(kHeaderPrefix1.size(), kHeaderDigits), sent)) {
      sent = kHeaderSize1;  // Resend all.
    }
  } else if (header.starts_with(kHeaderPrefix2)) {
    if (size < kHeaderSize2 || header.back() != '\n') throw Error(not_spool);
    std::string_view h(header);
    std::size_t at = kHeaderPrefix2.size();
    f.producer = std::string(h.substr(at, kProducerDigits));
    at += kProducerDigits;
    auto field = [&](std::string_view name, std::uint64_t& out) {
      bool ok = h.substr(at, name.size()) == name &&
                read_u64(h.substr(at + name.size(), kHeaderDigits), out);
      at += name.size() + kHeaderDigits;
      return ok;
    };
    bool hex = std::all_of(f.producer.begin(), f.producer.end(),
                           [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
    if (!hex || !field(" seq=", f.seq) || !field(" batch=", f.batch_end) ||
        !field(" sent=", sent)) {
      throw Error(f.path.string() + " is a damaged stagelog spool file (its header does not " +
                  "read): remove it or choose another spool path");
    }
  } else {
    throw Error(not_spool);
  }
  sent = std::clamp<std::uint64_t>(sent, f.header, size);
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
      throw Error("cannot truncate spool " + f.path.string() + ": " + errno_text(errno));
    }
    note = "network sink: cut an incomplete last line (" + std::to_string(size - last_line_end) +
           " bytes) off " + f.path.string();
  }
  f.sent = sent;
  f.end = last_line_end;
  f.events = lines;
  // A batch being sent ends on a whole line after `sent`; anything else is no batch.
  if (f.batch_end <= f.sent || f.batch_end > f.end) f.batch_end = 0;
}

// Opens and locks a spool file; nullptr when another open file (another process or sink)
// holds its lock. Throws Error naming the path.
std::unique_ptr<SpoolFile> open_spool(const std::filesystem::path& path, std::string& note) {
  for (int attempt = 0; attempt < 5; ++attempt) {
    int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) throw Error("cannot open spool " + path.string() + ": " + errno_text(errno));
    auto f = std::make_unique<SpoolFile>();
    f->path = path;
    f->fd = fd;
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
      if (errno == EWOULDBLOCK) return nullptr;
      throw Error("cannot lock spool " + path.string() + ": " + errno_text(errno));
    }
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
      throw Error("cannot stat spool " + path.string() + ": " + errno_text(errno));
    }
    if (st.st_nlink == 0) continue;  // Its owner removed it between our open and our lock.
    if (!S_ISREG(st.st_mode)) throw Error("spool " + path.string() + " is not a regular file");
    // Events at rest are the owner's alone: 0600 whatever the umask (a spool file is always
    // the sink's own).
    if ((st.st_mode & 07777) != 0600 && ::fchmod(fd, 0600) != 0) {
      throw Error("cannot set the mode of spool " + path.string() + ": " + errno_text(errno));
    }
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

}  // namespace

NetworkSpool::NetworkSpool(std::filesystem::path base, std::uint64_t max_bytes, Report report)
    : base_(std::move(base)), max_bytes_(max_bytes), report_(std::move(report)) {}

NetworkSpool::~NetworkSpool() = default;

void NetworkSpool::make_directory() const {
  const std::filesystem::path dir = base_.parent_path();
  if (dir.empty()) return;
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) throw Error("cannot create " + dir.string() + ": " + ec.message());
}

std::uint64_t NetworkSpool::open_own(pid_t pid) {
  std::string note;
  auto file = open_spool(base_, note);
  for (int n = 0; !file && n < kMaxSpoolAlternatives; ++n) {
    file = open_spool(alternative(base_, pid, n), note);
  }
  if (!file) {
    throw Error("cannot open spool " + base_.string() + ": it and " +
                std::to_string(kMaxSpoolAlternatives) + " per-process alternatives are in use");
  }
  if (!note.empty()) report_(std::move(note));
  own_ = std::move(file);
  return own_->events;
}

std::uint64_t NetworkSpool::adopt_orphans() {
  std::filesystem::path dir = base_.parent_path();
  if (dir.empty()) dir = ".";
  std::string name = base_.filename().string();
  struct Candidate {
    std::filesystem::file_time_type mtime;
    std::filesystem::path path;
  };
  std::vector<Candidate> found;
  std::error_code ec;
  for (std::filesystem::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    std::filesystem::path p = it->path();
    if (!is_alternative_of(p.filename().string(), name) || p == own_->path) continue;
    std::error_code time_ec;
    auto mtime = std::filesystem::last_write_time(p, time_ec);
    found.push_back({mtime, p});
  }
  std::sort(found.begin(), found.end(), [](const Candidate& a, const Candidate& b) {
    return a.mtime != b.mtime ? a.mtime < b.mtime : a.path < b.path;
  });
  std::uint64_t lines = 0;
  for (const auto& c : found) {
    std::string note;
    std::unique_ptr<SpoolFile> file;
    try {
      file = open_spool(c.path, note);
    } catch (const Error& e) {
      report_(std::string("network sink: ") + e.what());
      continue;
    }
    if (!file) continue;  // A live process holds it.
    if (!note.empty()) report_(std::move(note));
    if (file->events == 0) {
      ::unlink(file->path.c_str());
      continue;
    }
    lines += file->events;
    adopted_.push_back(std::move(file));
  }
  return lines;
}

bool NetworkSpool::append(std::string_view lines, std::uint64_t count) {
  try {
    pwrite_all(own_->fd, lines, own_->end);
  } catch (const std::system_error& e) {
    std::string failure = "cannot write spool " + own_->path.string() + ": " + e.code().message();
    // Cut a partly written line so the file stays whole lines.
    if (::ftruncate(own_->fd, static_cast<off_t>(own_->end)) != 0) {
      failure += " (and cannot truncate it back: " + errno_text(errno) + ")";
    }
    throw Error(failure);
  }
  const bool was_empty = own_->events == 0;
  own_->end += lines.size();
  own_->events += count;
  return was_empty;
}

std::optional<SpoolRange> NetworkSpool::next() noexcept {
  SpoolFile* file = nullptr;
  if (!adopted_.empty()) {
    file = adopted_.front().get();
  } else if (own_ && own_->events > 0) {
    file = own_.get();
  } else {
    return std::nullopt;
  }
  std::string key = file->producer + "-" + std::to_string(file->seq);
  return SpoolRange{file,           file->fd,       file->sent, file->end, file != own_.get(),
                    std::move(key), file->batch_end};
}

void NetworkSpool::read(const SpoolRange& range, std::uint64_t limit, std::size_t max_bytes,
                        SpoolBatch& batch) {
  batch.body.clear();
  batch.lines = 0;
  std::size_t whole = 0;  // Bytes of whole lines taken.
  std::size_t scanned = 0;
  bool full = false;
  for (std::uint64_t off = range.from; off < range.end && !full;) {
    std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(kReadChunk, range.end - off));
    std::size_t old = batch.body.size();
    batch.body.resize(old + n);
    if (!pread_all(range.fd, batch.body.data() + old, n, off)) {
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

void NetworkSpool::begin_batch(const SpoolRange& range, std::uint64_t bytes) {
  SpoolFile& file = *range.file;
  if (file.batch_end != 0) return;  // Being sent already: as it was.
  file.batch_end = file.sent + bytes;
  write_header(file);
}

void NetworkSpool::abandon_batch(const SpoolRange& range) {
  SpoolFile& file = *range.file;
  if (file.batch_end == 0) return;
  file.batch_end = 0;
  ++file.seq;
  write_header(file);
}

void NetworkSpool::write_header(SpoolFile& file) {
  try {
    pwrite_all(file.fd, file.header_text(), 0);
  } catch (const std::system_error& e) {
    report_("network sink: cannot update spool " + file.path.string() + ": " + e.code().message() +
            " (its events may be sent again)");
  }
}

void NetworkSpool::consume(const SpoolRange& range, std::uint64_t lines, std::uint64_t bytes) {
  SpoolFile& file = *range.file;
  file.sent += bytes;
  file.events -= std::min(lines, file.events);
  if (file.batch_end != 0) {  // The batch is answered: its key is spent.
    file.batch_end = 0;
    ++file.seq;
  }
  try {
    if (file.events == 0 && &file != own_.get()) {
      ::unlink(file.path.c_str());  // Still locked: whoever opens it next sees it is gone.
      std::erase_if(adopted_, [&](const auto& f) { return f.get() == &file; });
      return;
    }
    if (file.events == 0) {
      // All sent: start the file over (as version 2, whatever it was).
      file.version = 2;
      file.header = kHeaderSize2;
      file.sent = file.end = kHeaderSize2;
      file.punched = 0;
      if (::ftruncate(file.fd, static_cast<off_t>(kHeaderSize2)) != 0) {
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
    pwrite_all(file.fd, file.header_text(), 0);
  } catch (const std::system_error& e) {
    report_("network sink: cannot update spool " + file.path.string() + ": " + e.code().message() +
            " (its events may be sent again)");
  }
}

std::uint64_t NetworkSpool::drop_unreadable(const SpoolRange& range, std::string_view reason) {
  SpoolFile& file = *range.file;
  const std::uint64_t lost = file.events;
  report_("network sink: cannot read spool " + file.path.string() + ": " + std::string(reason) +
          "; dropped " + std::to_string(lost) + " events");
  consume(range, lost, file.end - file.sent);
  return lost;
}

void NetworkSpool::remove_own() noexcept {
  if (!own_) return;
  ::unlink(own_->path.c_str());
  own_.reset();
}

void NetworkSpool::forget_after_fork() noexcept {
  adopted_.clear();
  own_.reset();
}

std::filesystem::path NetworkSpool::path() const { return own_ ? own_->path : base_; }

std::uint64_t NetworkSpool::waiting() const noexcept {
  std::uint64_t n = own_ ? own_->events : 0;
  for (const auto& f : adopted_) n += f->events;
  return n;
}

std::uint64_t NetworkSpool::own_backlog() const noexcept { return own_ ? own_->backlog() : 0; }

bool NetworkSpool::over_limit(std::uint64_t buffered) const noexcept {
  return own_backlog() + buffered > max_bytes_;
}

bool NetworkSpool::under_half(std::uint64_t buffered) const noexcept {
  return own_ && own_backlog() + buffered <= max_bytes_ / 2;
}

}  // namespace stagelog::detail
