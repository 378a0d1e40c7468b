#include "store/postgres_feed.hpp"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

namespace stagelog::detail {

namespace {

constexpr const char* kChannel = "stagelog_events";
// Feed rows read per query while catching up.
constexpr std::int64_t kFeedRowsPerRead = 1000;

}  // namespace

void pg_feed_locked(PgPipeline& pipe, const std::string& origin,
                    std::vector<std::pair<std::vector<std::int64_t>, std::int64_t>> writes) {
  // One row per run of consecutive ids of one write.
  PgArray first(PgArray::Type::Int8), last(PgArray::Type::Int8), expires(PgArray::Type::Int8);
  for (auto& [ids, expires_at_ns] : writes) {
    std::sort(ids.begin(), ids.end());
    std::size_t i = 0;
    while (i < ids.size()) {
      std::size_t j = i;
      while (j + 1 < ids.size() && ids[j + 1] == ids[j] + 1) ++j;
      first.int64(ids[i]);
      last.int64(ids[j]);
      expires.int64(expires_at_ns);
      i = j + 1;
    }
  }
  if (first.size() == 0) return;
  // Held until commit: feed ids grow in commit order (postgres_feed.hpp).
  pipe.send("SELECT pg_advisory_xact_lock(" + std::to_string(kLockSpace) + ", " +
            std::to_string(kFeedLockId) + ")");
  pipe.send(
      "WITH f AS (INSERT INTO feed (origin, first_event, last_event, expires_at_ns) SELECT $1, "
      "first_event, last_event, expires_at_ns FROM unnest($2::int8[], $3::int8[], $4::int8[]) "
      "AS d(first_event, last_event, expires_at_ns) RETURNING id, first_event, last_event) "
      "SELECT pg_notify('" +
          std::string(kChannel) +
          "', $1 || ' ' || id || ' ' || first_event || ' ' || last_event) FROM f",
      PgParams().text(origin).array(first).array(last).array(expires));
}

PgChangeFeed::PgChangeFeed(std::string conninfo, std::string origin, std::string where)
    : conninfo_(std::move(conninfo)), origin_(std::move(origin)), where_(std::move(where)) {
  wake_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake_fd_ < 0) throw Error(std::string("change feed: eventfd: ") + std::strerror(errno));
}

PgChangeFeed::~PgChangeFeed() { ::close(wake_fd_); }

void PgChangeFeed::wake() noexcept {
  std::uint64_t one = 1;
  [[maybe_unused]] auto n = ::write(wake_fd_, &one, sizeof one);
}

void PgChangeFeed::connect() {
  conn_.reset();
  auto conn = std::make_unique<PgConnection>(conninfo_);
  conn->exec("SET application_name = 'stagelog feed'");  // For pg_stat_activity.
  conn->exec(std::string("LISTEN ") + kChannel);
  if (!last_) {
    last_ = conn->exec("SELECT COALESCE(MAX(id), 0) FROM feed").int64(0, 0);
  }
  conn_ = std::move(conn);
}

std::vector<OwnedEvent> PgChangeFeed::read_since() {
  std::vector<OwnedEvent> out;
  for (;;) {
    PgResult r = conn_->exec(
        "SELECT id, origin = $2, first_event, last_event FROM feed WHERE id > $1 ORDER BY id "
        "LIMIT $3",
        PgParams().int64(*last_).text(origin_).int64(kFeedRowsPerRead));
    for (int i = 0; i < r.rows(); ++i) {
      if (!r.boolean(i, 1)) {
        std::vector<OwnedEvent> events = pg_events_between(*conn_, r.int64(i, 2), r.int64(i, 3));
        std::move(events.begin(), events.end(), std::back_inserter(out));
      }
      last_ = r.int64(i, 0);
    }
    if (r.rows() < kFeedRowsPerRead) return out;
  }
}

Result<std::vector<OwnedEvent>> PgChangeFeed::next(std::chrono::milliseconds timeout) {
  try {
    if (conn_ == nullptr || !conn_->ok()) {
      // Notifications sent while no connection listened are lost: read what committed since.
      connect();
      return read_since();
    }
    std::vector<std::string> notes = conn_->notifications();
    if (notes.empty()) {
      pollfd fds[2] = {{conn_->socket(), POLLIN, 0}, {wake_fd_, POLLIN, 0}};
      int ready = ::poll(fds, 2, static_cast<int>(std::max<std::int64_t>(0, timeout.count())));
      if (ready < 0 && errno != EINTR) {
        return Error(std::string("change feed: poll: ") + std::strerror(errno));
      }
      if (ready > 0 && (fds[1].revents & POLLIN) != 0) {
        std::uint64_t count = 0;
        [[maybe_unused]] auto n = ::read(wake_fd_, &count, sizeof count);
      }
      if (ready > 0 && fds[0].revents != 0) {
        conn_->consume_input();
        if (!conn_->ok()) throw PgError{"the listening connection was closed", ErrorKind::Io};
        notes = conn_->notifications();
      }
    }
    // This store's own writes need no read (the server saw them as it stored them).
    bool others = std::any_of(notes.begin(), notes.end(), [&](const std::string& n) {
      return n.compare(0, n.find(' '), origin_) != 0;
    });
    if (!others) return std::vector<OwnedEvent>();
    return read_since();
  } catch (const PgError& e) {
    conn_.reset();  // The next call connects again and reads from last_.
    return Error("change feed " + where_ + ": " + e.message, e.kind);
  } catch (const std::exception& e) {
    conn_.reset();
    return Error("change feed " + where_ + ": " + e.what());
  }
}

PgLeaderLock::PgLeaderLock(std::string conninfo, std::string where)
    : conninfo_(std::move(conninfo)), where_(std::move(where)) {}

Result<bool> PgLeaderLock::hold() {
  try {
    if (conn_ == nullptr || !conn_->ok()) {
      held_ = false;  // A session that ended took its lock with it.
      conn_.reset();
      conn_ = std::make_unique<PgConnection>(conninfo_);
      conn_->exec("SET application_name = 'stagelog leader'");
    }
    if (held_) {
      conn_->exec("SELECT 1");  // Still the session that holds it.
      return true;
    }
    held_ = conn_
                ->exec("SELECT pg_try_advisory_lock(" + std::to_string(kLockSpace) + ", " +
                       std::to_string(kLeaderLockId) + ")")
                .boolean(0, 0);
    return held_;
  } catch (const PgError& e) {
    held_ = false;
    conn_.reset();
    return Error("leader lock " + where_ + ": " + e.message, e.kind);
  }
}

}  // namespace stagelog::detail
