#pragma once

// The tokens the server checks requests against: a TokenFile fixed when the server starts, or
// a tokens file that is re-read when it changes, so that a token added with `stagelog token
// create` works, and one whose line was deleted stops working, without a restart.
//
// Change is noticed from the file's identity and times (device, inode, size, mtime and ctime
// in ns), looked at by a request at most once per check_interval: a change is in force for the
// first request that comes check_interval after it, at the latest. reload() re-reads at once,
// changed or not (SIGHUP). A file that cannot be read or does not parse any more is reported
// once (until it changes again) and the tokens read before stay in force: a bad edit does not
// lock everyone out, nor let anyone in.
//
// Threads: check() and reload() may be called from any thread at once. A request never waits
// for another's re-read: it checks against the tokens in force.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string_view>

#include "stagelog/result.hpp"
#include "stagelog/server/auth.hpp"

namespace stagelog::detail {

class TokenSource {
 public:
  struct Options {
    std::function<std::int64_t()> clock;           // Monotonic ns. Default: steady_ns.
    std::function<void(std::string_view)> report;  // A file not taken; never holds a token.
    std::chrono::nanoseconds check_interval = std::chrono::seconds(1);
  };

  // Fixed tokens: never re-read.
  explicit TokenSource(server::TokenFile tokens);
  // The file's tokens, read now: throws stagelog::Error as TokenFile::load does.
  TokenSource(std::filesystem::path path, Options options);

  // TokenFile::check against the tokens in force, after looking whether the file changed
  // when check_interval has passed since the last look.
  [[nodiscard]] server::AuthResult check(std::optional<std::string_view> authorization,
                                         server::Scope needed) const;

  // Re-reads the file now. The number of tokens read, or why the file was not taken (the
  // tokens read before stay). With fixed tokens: their number.
  Result<std::size_t> reload();

 private:
  struct Stamp {
    std::uint64_t device = 0;
    std::uint64_t inode = 0;
    std::int64_t size = -1;
    std::int64_t mtime_ns = 0;
    std::int64_t ctime_ns = 0;
    bool operator==(const Stamp&) const = default;
  };

  std::shared_ptr<const server::TokenFile> current() const;
  // Re-reads the file when its stamp differs from the last one seen (or always when `force`).
  Result<std::size_t> refresh(bool force) const;
  static std::optional<Stamp> stamp_of(const std::filesystem::path& path);

  const std::filesystem::path path_;  // Empty: fixed tokens.
  Options options_;
  mutable std::atomic<std::int64_t> next_check_{0};
  mutable std::mutex reload_mutex_;    // One re-read at a time; guards seen_.
  mutable std::optional<Stamp> seen_;  // The file as last looked at (taken or not).
  mutable std::mutex mutex_;           // Guards tokens_.
  mutable std::shared_ptr<const server::TokenFile> tokens_;
};

}  // namespace stagelog::detail
