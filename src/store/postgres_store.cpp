#include "store/postgres_store.hpp"

#include <algorithm>
#include <array>
#include <random>
#include <stdexcept>
#include <utility>

#include "base/hex.hpp"
#include "store/postgres_facts.hpp"
#include "store/postgres_feed.hpp"
#include "store/postgres_schema.hpp"
#include "store/step_chunk.hpp"
#include "store/store_common.hpp"

namespace stagelog::store {

using detail::PgConnection;
using detail::PgError;
using detail::PgParams;
using detail::PgResult;
using detail::PgTransaction;

namespace {

constexpr const char* kExecutionColumns =
    "SELECT id, tracking_id, execution_id, started_at_ns, completed_at_ns, duration_ms, "
    "metadata_json FROM executions ";

// An advisory lock key for a tracking id (FNV-1a): attempts of one tracking id are numbered
// under it. Keys of different ids may collide; they then only wait for each other.
std::int64_t tracking_lock_key(std::string_view tracking_id) {
  std::uint64_t h = 14695981039346656037u;
  for (char c : tracking_id) {
    h ^= static_cast<unsigned char>(c);
    h *= 1099511628211u;
  }
  return static_cast<std::int64_t>(h);
}

// Takes the locks of the write's tracking ids in one order, so that two writes cannot deadlock.
void lock_tracking_ids(PgConnection& c, std::span<const ExecutionWrite> executions) {
  std::vector<std::int64_t> keys;
  keys.reserve(executions.size());
  for (const ExecutionWrite& w : executions) {
    keys.push_back(tracking_lock_key(w.execution.tracking_id));
  }
  std::sort(keys.begin(), keys.end());
  keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
  for (std::int64_t key : keys) {
    c.exec("SELECT pg_advisory_xact_lock($1)", PgParams().int64(key));
  }
}

}  // namespace

PostgresStore::PostgresStore(std::string conninfo, Options options)
    : conninfo_(std::move(conninfo)), options_(options) {
  if (options_.pool_size == 0) options_.pool_size = 1;
  std::random_device random;
  std::array<unsigned char, 8> origin{};
  for (unsigned char& b : origin) b = static_cast<unsigned char>(random());
  origin_ = detail::to_hex(origin);
  try {
    auto conn = std::make_unique<PgConnection>(conninfo_);
    where_ = conn->where();
    detail::pg_create_or_migrate(*conn);
    idle_.push_back(Idle{std::move(conn), generation_});
    open_ = 1;
  } catch (const PgError& e) {
    std::string at = where_.empty() ? std::string() : " " + where_;
    throw Error("cannot open postgres store" + at + ": " + e.message, e.kind);
  }
}

PostgresStore::~PostgresStore() = default;

std::unique_ptr<ChangeFeed> PostgresStore::changes() {
  return std::make_unique<detail::PgChangeFeed>(conninfo_, origin_, where_);
}

std::unique_ptr<LeaderLock> PostgresStore::leader_lock() {
  return std::make_unique<detail::PgLeaderLock>(conninfo_, where_);
}

PostgresStore::Lease::Lease(PostgresStore& store, std::unique_ptr<PgConnection> conn,
                            std::uint64_t generation) noexcept
    : store_(store), conn_(std::move(conn)), generation_(generation) {}

PostgresStore::Lease::~Lease() {
  if (conn_ == nullptr) return;  // Moved from.
  {
    std::lock_guard lock(store_.mutex_);
    store_.idle_.push_back(Idle{std::move(conn_), generation_});
  }
  store_.free_.notify_one();
}

void PostgresStore::Lease::failed() noexcept {
  if (conn_->ok()) return;
  std::lock_guard lock(store_.mutex_);
  ++store_.generation_;  // Every connection made before now connects again before its next use.
}

void PostgresStore::Lease::reconnect(std::uint64_t generation) {
  conn_->reset();
  generation_ = generation;
}

PostgresStore::Lease PostgresStore::acquire() {
  std::unique_lock lock(mutex_);
  free_.wait(lock, [&] { return !idle_.empty() || open_ < options_.pool_size; });
  if (idle_.empty()) {
    ++open_;
    std::uint64_t generation = generation_;
    lock.unlock();
    try {
      auto conn = std::make_unique<PgConnection>(conninfo_);
      return Lease(*this, std::move(conn), generation);
    } catch (...) {
      lock.lock();
      --open_;
      free_.notify_one();
      throw;
    }
  }
  Idle idle = std::move(idle_.back());
  idle_.pop_back();
  std::uint64_t generation = generation_;
  lock.unlock();
  Lease lease(*this, std::move(idle.conn), idle.generation);
  if (idle.generation < generation || !(*lease).ok()) {
    lease.reconnect(generation);  // Throws PgError when the server is still unreachable.
  }
  return lease;
}

Error PostgresStore::error(std::string_view operation) const {
  std::string message = "postgres store " + where_ + ": " + std::string(operation) + ": ";
  try {
    throw;
  } catch (const PgError& e) {
    return Error(message + e.message, e.kind);
  } catch (const Error& e) {
    return Error(message + e.what(), e.kind());
  } catch (const std::exception& e) {
    message += e.what();
  }
  return Error(message);
}

void PostgresStore::put_locked(PgConnection& c, const Execution& execution,
                               std::int64_t expires_at_ns, std::size_t steps_from) {
  std::int64_t count = detail::steps_end(steps_from, execution.steps.size());
  auto first = static_cast<std::int64_t>(steps_from);
  if (first > 0) {
    PgResult r =
        c.exec("SELECT steps_count FROM executions WHERE tracking_id = $1 AND execution_id = $2",
               PgParams().bytes(execution.tracking_id).bytes(execution.execution_id));
    std::int64_t stored = r.rows() > 0 ? r.int64(0, 0) : 0;
    detail::check_steps_kept(first, stored, execution.execution_id);
  }
  PgParams p;
  p.bytes(execution.tracking_id)
      .bytes(execution.execution_id)
      .int64(execution.started_at_ns)
      .int64(execution.completed_at_ns)
      .int64(execution.duration_ms)
      .bytes(execution.metadata_json)
      .int64(expires_at_ns)
      .int64(count);
  if (!execution.steps.empty()) {
    p.bytes(execution.steps.back().status);
  } else {
    p.bytes(std::optional<std::string>());
  }
  p.bytes_array(detail::metadata_pairs(execution.metadata_json));
  // A new attempt takes the next number of its tracking id (the caller holds its lock); a
  // known one keeps its number and id. final_status stays when no step is written (set below
  // from the steps kept).
  PgResult r = c.exec(
      "INSERT INTO executions AS x (tracking_id, execution_id, attempt, started_at_ns, "
      "completed_at_ns, duration_ms, metadata_json, expires_at_ns, steps_count, final_status, "
      "metadata_pairs) VALUES ($1, $2, (SELECT COALESCE(MAX(attempt), 0) + 1 FROM executions "
      "WHERE tracking_id = $1), $3, $4, $5, $6, $7, $8, $9, $10) "
      "ON CONFLICT (tracking_id, execution_id) DO UPDATE SET "
      "started_at_ns = excluded.started_at_ns, completed_at_ns = excluded.completed_at_ns, "
      "duration_ms = excluded.duration_ms, metadata_json = excluded.metadata_json, "
      "expires_at_ns = excluded.expires_at_ns, steps_count = excluded.steps_count, "
      "final_status = excluded.final_status, metadata_pairs = excluded.metadata_pairs "
      "RETURNING id, xmax = 0",
      p);
  std::int64_t id = r.int64(0, 0);
  const bool added = r.boolean(0, 1);  // A new attempt: no chunk or fact of it to replace.
  // Steps from `first` on are replaced: chunks that start there or later go, and a chunk that
  // straddles `first` is cut.
  if (!added) {
    c.exec("DELETE FROM step_chunks WHERE execution = $1 AND seq >= $2",
           PgParams().int64(id).int64(first));
  }
  if (first > 0) {
    PgResult before = c.exec(
        "SELECT seq, count, steps_json FROM step_chunks WHERE execution = $1 AND seq < $2 "
        "ORDER BY seq DESC LIMIT 1",
        PgParams().int64(id).int64(first));
    if (before.rows() > 0) {
      std::int64_t seq = before.int64(0, 0);
      std::vector<Step> steps;
      if (!detail::decode_steps(before.bytes(0, 2), steps) ||
          static_cast<std::int64_t>(steps.size()) != before.int64(0, 1)) {
        throw std::runtime_error("attempt " + execution.execution_id +
                                 " has a damaged step chunk at step " + std::to_string(seq));
      }
      if (seq + before.int64(0, 1) > first) {
        steps.resize(static_cast<std::size_t>(first - seq));
        std::string json;
        detail::encode_steps(steps, json);
        c.exec(
            "UPDATE step_chunks SET count = $3, steps_json = $4 WHERE execution = $1 AND "
            "seq = $2",
            PgParams()
                .int64(id)
                .int64(seq)
                .int64(static_cast<std::int64_t>(steps.size()))
                .bytes(json));
      }
      if (execution.steps.empty() && !steps.empty()) {
        c.exec("UPDATE executions SET final_status = $2 WHERE id = $1",
               PgParams().int64(id).bytes(steps.back().status));
      }
    }
  }
  if (!execution.steps.empty()) {
    std::string json;
    detail::encode_steps(execution.steps, json);
    c.exec("INSERT INTO step_chunks (execution, seq, count, steps_json) VALUES ($1, $2, $3, $4)",
           PgParams()
               .int64(id)
               .int64(first)
               .int64(static_cast<std::int64_t>(execution.steps.size()))
               .bytes(json));
  }
  index_locked(c, id, execution, first, added);
}

Result<void> PostgresStore::put_execution(const Execution& execution, std::int64_t expires_at_ns) {
  return call<void>("cannot store execution", [&](PgConnection& c) {
    PgTransaction tx(c);
    c.exec("SELECT pg_advisory_xact_lock($1)",
           PgParams().int64(tracking_lock_key(execution.tracking_id)));
    put_locked(c, execution, expires_at_ns, 0);
    tx.commit();
  });
}

void PostgresStore::read_steps(PgConnection& c, std::int64_t id, const std::string& execution_id,
                               std::vector<Step>& steps) {
  PgResult r = c.exec("SELECT steps_json FROM step_chunks WHERE execution = $1 ORDER BY seq",
                      PgParams().int64(id));
  for (int i = 0; i < r.rows(); ++i) {
    if (!detail::decode_steps(r.bytes(i, 0), steps)) {
      throw std::runtime_error("attempt " + execution_id + " has a damaged step chunk");
    }
  }
}

std::optional<Execution> PostgresStore::read_execution(PgConnection& c, const std::string& where,
                                                       const PgParams& params) {
  // The row and its steps from one snapshot.
  PgTransaction tx(c, PgTransaction::Mode::Snapshot);
  PgResult r = c.exec(kExecutionColumns + where, params);
  if (r.rows() == 0) {
    tx.commit();
    return std::nullopt;
  }
  Execution e;
  std::int64_t id = r.int64(0, 0);
  e.tracking_id = r.bytes(0, 1);
  e.execution_id = r.bytes(0, 2);
  e.started_at_ns = r.int64(0, 3);
  e.completed_at_ns = r.opt_int64(0, 4);
  e.duration_ms = r.opt_int64(0, 5);
  e.metadata_json = r.bytes(0, 6);
  read_steps(c, id, e.execution_id, e.steps);
  tx.commit();
  return e;
}

Result<std::optional<Execution>> PostgresStore::latest(std::string_view tracking_id,
                                                       std::int64_t now_ns) {
  return call<std::optional<Execution>>("cannot read execution", [&](PgConnection& c) {
    return read_execution(c,
                          "WHERE tracking_id = $1 AND expires_at_ns > $2 "
                          "ORDER BY started_at_ns DESC, id DESC LIMIT 1",
                          PgParams().bytes(tracking_id).int64(now_ns));
  });
}

Result<std::optional<Execution>> PostgresStore::attempt(std::string_view tracking_id, int n,
                                                        std::int64_t now_ns) {
  return call<std::optional<Execution>>("cannot read execution", [&](PgConnection& c) {
    return read_execution(c, "WHERE tracking_id = $1 AND attempt = $2 AND expires_at_ns > $3",
                          PgParams().bytes(tracking_id).int64(std::int64_t{n}).int64(now_ns));
  });
}

Result<std::vector<AttemptSummary>> PostgresStore::attempts(std::string_view tracking_id,
                                                            std::int64_t now_ns) {
  return call<std::vector<AttemptSummary>>("cannot list attempts", [&](PgConnection& c) {
    PgResult r = c.exec(
        "SELECT attempt, execution_id, started_at_ns, completed_at_ns, duration_ms, "
        "final_status, steps_count FROM executions WHERE tracking_id = $1 AND "
        "expires_at_ns > $2 ORDER BY attempt",
        PgParams().bytes(tracking_id).int64(now_ns));
    std::vector<AttemptSummary> out;
    for (int i = 0; i < r.rows(); ++i) {
      AttemptSummary a;
      a.n = static_cast<int>(r.int64(i, 0));
      a.execution_id = r.bytes(i, 1);
      a.started_at_ns = r.int64(i, 2);
      a.completed_at_ns = r.opt_int64(i, 3);
      a.duration_ms = r.opt_int64(i, 4);
      a.final_status = r.is_null(i, 5) ? std::string(detail::kUnknownFinalStatus) : r.bytes(i, 5);
      a.step_count = static_cast<std::size_t>(r.int64(i, 6));
      out.push_back(std::move(a));
    }
    return out;
  });
}

Result<void> PostgresStore::write(std::span<const EventsWrite> events,
                                  std::span<const ExecutionWrite> executions) {
  return call<void>("cannot store events and executions", [&](PgConnection& c) {
    PgTransaction tx(c);
    lock_tracking_ids(c, executions);
    std::vector<std::pair<std::vector<std::int64_t>, std::int64_t>> fed;  // Ids, expiry.
    for (const EventsWrite& w : events) {
      if (w.batch != nullptr) put_batch_locked(c, *w.batch, w.expires_at_ns);
      fed.emplace_back(std::vector<std::int64_t>(), w.expires_at_ns);
      append_locked(c, w.events, w.expires_at_ns, fed.back().first);
    }
    for (const ExecutionWrite& w : executions) {
      put_locked(c, w.execution, w.expires_at_ns, w.steps_from);
    }
    for (auto& [ids, expires_at_ns] : fed) {  // Last: the feed's lock is held until commit.
      detail::pg_feed_locked(c, origin_, std::move(ids), expires_at_ns);
    }
    tx.commit();
  });
}

Result<std::size_t> PostgresStore::purge(std::int64_t now_ns) {
  return call<std::size_t>("cannot purge", [&](PgConnection& c) {
    PgTransaction tx(c);
    std::size_t removed = 0;
    // Chunks and facts go with their attempt (ON DELETE CASCADE), not counted. Events are
    // deleted from the default partition only: the others go a whole day at a time, below.
    for (const char* sql : {"DELETE FROM executions WHERE expires_at_ns <= $1",
                            "DELETE FROM events_default WHERE expires_at_ns <= $1"}) {
      removed += static_cast<std::size_t>(c.exec(sql, PgParams().int64(now_ns)).affected());
    }
    c.exec("DELETE FROM batches WHERE expires_at_ns <= $1", PgParams().int64(now_ns));
    c.exec("DELETE FROM feed WHERE expires_at_ns <= $1", PgParams().int64(now_ns));
    tx.commit();
    return removed + detail::pg_partition_events(c, now_ns);
  });
}

Result<void> check_postgres_conninfo(std::string_view conninfo) {
  char* why = nullptr;
  PQconninfoOption* options = PQconninfoParse(std::string(conninfo).c_str(), &why);
  if (options == nullptr) {
    std::string message = why != nullptr ? why : "out of memory";
    PQfreemem(why);
    while (!message.empty() && message.back() == '\n') message.pop_back();
    return Error("not a PostgreSQL connection string: " + message);
  }
  bool password = false;
  for (const PQconninfoOption* o = options; o->keyword != nullptr; ++o) {
    if (std::string_view(o->keyword) == "password" && o->val != nullptr && *o->val != '\0') {
      password = true;
    }
  }
  PQconninfoFree(options);
  if (password) {
    return Error(
        "the PostgreSQL connection string holds a password, which any user of this machine "
        "can read on a command line or in the environment: leave it out and put it in "
        "~/.pgpass (or the file PGPASSFILE names)");
  }
  return {};
}

std::unique_ptr<Store> open_postgres_store(std::string_view conninfo,
                                           PostgresStoreOptions options) {
  return std::make_unique<PostgresStore>(std::string(conninfo), options);
}

}  // namespace stagelog::store
