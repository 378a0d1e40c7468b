#pragma once

// What several `stagelog serve` processes on one PostgreSQL database share beyond the data:
// the change feed (Store::changes) and the leader lock (Store::leader_lock).
//
// The feed: a write that stores events also adds, just before it commits, one row per range of
// their ids to the table `feed` (its origin: the writing store's random id) and sends NOTIFY
// stagelog_events with "<origin> <feed id> <first event id> <last event id>" for each, in the
// same transaction: the rows and the notifications exist only once it commits. Feed ids are
// taken under a transaction-scoped advisory lock, held until commit, so they grow in commit
// order: a reader that has seen feed id n has seen every row below n that will ever commit,
// and reads from the last id it saw after any gap (a reconnect), missing nothing.
//
// The leader lock: a session-level advisory lock on a connection of its own.

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "stagelog/store/store.hpp"
#include "store/postgres.hpp"

namespace stagelog::detail {

// Advisory locks in the two-int4 key space ("stlg", n): never the same lock as the bigint keys
// of the schema and the tracking ids.
inline constexpr std::int32_t kLockSpace = 0x73746c67;
inline constexpr std::int32_t kLeaderLockId = 1;
inline constexpr std::int32_t kFeedLockId = 2;

// Inside a write transaction, last before its commit: queues the feed rows and notifications
// of the events stored with these ids (each list in any order, with its events' expiry).
void pg_feed_locked(PgPipeline& pipe, const std::string& origin,
                    std::vector<std::pair<std::vector<std::int64_t>, std::int64_t>> writes);

// The events with ids first to last, by id, whether or not they expired (postgres_events.cpp).
std::vector<OwnedEvent> pg_events_between(PgConnection& c, std::int64_t first, std::int64_t last);

class PgChangeFeed final : public store::ChangeFeed {
 public:
  // Connects on the first next(); feeds writes committed after that. Throws stagelog::Error
  // when no eventfd can be made.
  PgChangeFeed(std::string conninfo, std::string origin, std::string where);
  ~PgChangeFeed() override;
  Result<std::vector<OwnedEvent>> next(std::chrono::milliseconds timeout) override;
  void wake() noexcept override;

 private:
  // Connects, LISTENs, and starts at the newest feed row the first time.
  void connect();
  // The events of other origins' feed rows after last_, advancing it.
  std::vector<OwnedEvent> read_since();

  std::string conninfo_;
  std::string origin_;
  std::string where_;
  std::unique_ptr<PgConnection> conn_;
  std::optional<std::int64_t> last_;
  int wake_fd_ = -1;
};

class PgLeaderLock final : public store::LeaderLock {
 public:
  PgLeaderLock(std::string conninfo, std::string where);
  Result<bool> hold() override;

 private:
  std::string conninfo_;
  std::string where_;
  std::unique_ptr<PgConnection> conn_;
  bool held_ = false;
};

}  // namespace stagelog::detail
