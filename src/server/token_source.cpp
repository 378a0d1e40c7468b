#include "server/token_source.hpp"

#include <sys/stat.h>

#include <cerrno>
#include <string>
#include <utility>

#include "base/errno_text.hpp"
#include "base/time.hpp"
#include "stagelog/error.hpp"

namespace stagelog::detail {

namespace {

std::int64_t ns_of(const timespec& t) { return std::int64_t{t.tv_sec} * kNsPerSecond + t.tv_nsec; }

}  // namespace

TokenSource::TokenSource(server::TokenFile tokens)
    : tokens_(std::make_shared<const server::TokenFile>(std::move(tokens))) {}

TokenSource::TokenSource(std::filesystem::path path, Options options)
    : path_(std::move(path)), options_(std::move(options)) {
  if (!options_.clock) options_.clock = steady_ns;
  if (!options_.report) options_.report = [](std::string_view) {};
  // The stamp before the read: a change made while reading shows as a change next time.
  seen_ = stamp_of(path_);
  tokens_ = std::make_shared<const server::TokenFile>(server::TokenFile::load(path_));
  next_check_ = options_.clock() + options_.check_interval.count();
}

std::optional<TokenSource::Stamp> TokenSource::stamp_of(const std::filesystem::path& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return std::nullopt;
  return Stamp{static_cast<std::uint64_t>(st.st_dev), static_cast<std::uint64_t>(st.st_ino),
               static_cast<std::int64_t>(st.st_size), ns_of(st.st_mtim), ns_of(st.st_ctim)};
}

std::shared_ptr<const server::TokenFile> TokenSource::current() const {
  std::lock_guard lock(mutex_);
  return tokens_;
}

server::AuthResult TokenSource::check(std::optional<std::string_view> authorization,
                                      server::Scope needed) const {
  if (!path_.empty()) {
    const std::int64_t now = options_.clock();
    std::int64_t due = next_check_.load(std::memory_order_relaxed);
    // One request looks; the others go on with the tokens in force.
    if (now >= due && next_check_.compare_exchange_strong(
                          due, now + options_.check_interval.count(), std::memory_order_relaxed)) {
      (void)refresh(/*force=*/false);
    }
  }
  return current()->check(authorization, needed);
}

Result<std::size_t> TokenSource::reload() {
  if (path_.empty()) return current()->size();
  return refresh(/*force=*/true);
}

Result<std::size_t> TokenSource::refresh(bool force) const {
  std::lock_guard lock(reload_mutex_);
  std::optional<Stamp> stamp = stamp_of(path_);
  if (!force && stamp == seen_) return current()->size();
  const bool changed = stamp != seen_;
  seen_ = stamp;
  try {
    if (!stamp) {
      const int err = errno;
      throw Error("cannot open " + path_.string() + ": " + errno_text(err));
    }
    auto loaded = std::make_shared<const server::TokenFile>(server::TokenFile::load(path_));
    const std::size_t count = loaded->size();
    {
      std::lock_guard tokens_lock(mutex_);
      tokens_ = std::move(loaded);
    }
    return count;
  } catch (const Error& e) {
    // Said once per change of the file (and on every forced reload, which a person asked for).
    if (changed || force) {
      options_.report("cannot re-read the tokens file, the tokens read before stay in force: " +
                      std::string(e.what()));
    }
    return Error(e.what());
  }
}

}  // namespace stagelog::detail
