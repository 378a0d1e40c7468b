#include "store/postgres_store.hpp"

#include <algorithm>
#include <array>
#include <random>
#include <stdexcept>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
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
using detail::PgPipeline;
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

// A new attempt takes the next number of its tracking id (the caller holds its lock, and a
// statement holds a tracking id once); a known one keeps its number and id. final_status
// stays when no step is written (set by put_round from the steps kept). One statement for
// any number of attempts, its text always the same: metadata_pairs, an array per attempt,
// comes as bytea[]'s text form in a text[] (an array parameter holds no arrays of different
// lengths).
constexpr const char* kUpsertExecutions =
    "INSERT INTO executions AS x (tracking_id, execution_id, attempt, started_at_ns, "
    "completed_at_ns, duration_ms, metadata_json, expires_at_ns, steps_count, final_status, "
    "metadata_pairs) SELECT d.tracking_id, d.execution_id, (SELECT COALESCE(MAX(attempt), 0) + "
    "1 FROM executions e WHERE e.tracking_id = d.tracking_id), d.started_at_ns, "
    "d.completed_at_ns, d.duration_ms, d.metadata_json, d.expires_at_ns, d.steps_count, "
    "d.final_status, d.metadata_pairs::bytea[] FROM unnest($1::bytea[], $2::bytea[], "
    "$3::int8[], $4::int8[], $5::int8[], $6::bytea[], $7::int8[], $8::int8[], $9::bytea[], "
    "$10::text[]) AS d(tracking_id, execution_id, started_at_ns, completed_at_ns, duration_ms, "
    "metadata_json, expires_at_ns, steps_count, final_status, metadata_pairs) "
    "ON CONFLICT (tracking_id, execution_id) DO UPDATE SET "
    "started_at_ns = excluded.started_at_ns, completed_at_ns = excluded.completed_at_ns, "
    "duration_ms = excluded.duration_ms, metadata_json = excluded.metadata_json, "
    "expires_at_ns = excluded.expires_at_ns, steps_count = excluded.steps_count, "
    "final_status = excluded.final_status, metadata_pairs = excluded.metadata_pairs "
    "RETURNING tracking_id, id, xmax = 0";

// Values as bytea[]'s text form: {"\\x6b6579",...}, each element in hex.
std::string bytea_array_text(const std::vector<std::string>& values) {
  std::string out = "{";
  for (const std::string& v : values) {
    if (out.size() > 1) out += ',';
    out += "\"\\\\x";
    out += detail::to_hex(std::span(reinterpret_cast<const unsigned char*>(v.data()), v.size()));
    out += '"';
  }
  out += '}';
  return out;
}

// For each attempt written from step `first` > 0 (in the order given, WITH ORDINALITY): its
// row's id and stored step count, the last chunk before `first` (its steps only when they are
// needed: the chunk straddles `first`, or no step is written and the status of step first - 1
// becomes the final one), and the time of step first - 1. Lateral subqueries, so that each
// is an index lookup whatever the table sizes.
constexpr const char* kReadBefore =
    "SELECT x.id, x.steps_count, c.seq, c.count, CASE WHEN c.seq + c.count > d.first OR "
    "d.no_steps THEN c.steps_json END, f.ts_ns FROM unnest($1::bytea[], $2::bytea[], "
    "$3::int8[], $4::bool[]) WITH ORDINALITY AS d(tracking_id, execution_id, first, no_steps, "
    "n) LEFT JOIN LATERAL (SELECT id, steps_count FROM executions e WHERE e.tracking_id = "
    "d.tracking_id AND e.execution_id = d.execution_id) x ON true LEFT JOIN LATERAL (SELECT "
    "seq, count, steps_json FROM step_chunks s WHERE s.execution = x.id AND s.seq < d.first "
    "ORDER BY s.seq DESC LIMIT 1) c ON true LEFT JOIN LATERAL (SELECT ts_ns FROM step_facts t "
    "WHERE t.execution = x.id AND t.n = d.first - 1) f ON true ORDER BY d.n";

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

PostgresStore::PreparedExecution PostgresStore::prepare(const ExecutionWrite& write) {
  PreparedExecution p;
  p.write = &write;
  detail::steps_end(write.steps_from, write.execution.steps.size());  // Throws when too far.
  p.first = static_cast<std::int64_t>(write.steps_from);
  p.metadata_pairs = detail::metadata_pairs(write.execution.metadata_json);
  if (!write.execution.steps.empty()) detail::encode_steps(write.execution.steps, p.chunk_json);
  p.facts = detail::step_facts(write.execution);
  return p;
}

void PostgresStore::put_locked(PgPipeline& pipe, std::span<PreparedExecution> executions) {
  // Rounds, in the write's order: a round ends before an attempt whose tracking id it holds,
  // so that a round's statements hold each tracking id once (an attempt's number counts the
  // rows before its statement, and ON CONFLICT cannot touch one row twice), and rows get ids
  // in the write's order (listings break ties by id, as the SQLite store's rowid). Most writes
  // are one round.
  std::vector<std::vector<PreparedExecution*>> rounds(1);
  std::unordered_set<std::string_view> in_round;
  for (PreparedExecution& e : executions) {
    if (!in_round.insert(e.write->execution.tracking_id).second) {
      rounds.emplace_back();
      in_round.clear();
      in_round.insert(e.write->execution.tracking_id);
    }
    rounds.back().push_back(&e);
  }
  if (rounds.back().empty()) return;
  for (std::vector<PreparedExecution*>& round : rounds) put_round(pipe, round);
}

void PostgresStore::put_round(PgPipeline& pipe, std::span<PreparedExecution*> round) {
  using detail::PgArray;
  // What the attempts written from a step > 0 keep, read before their rows change.
  std::vector<PreparedExecution*> appending;
  PgArray tracking(PgArray::Type::Bytea), execution(PgArray::Type::Bytea),
      first(PgArray::Type::Int8), no_steps(PgArray::Type::Bool);
  for (PreparedExecution* e : round) {
    if (e->first == 0) continue;
    appending.push_back(e);
    tracking.bytes(e->write->execution.tracking_id);
    execution.bytes(e->write->execution.execution_id);
    first.int64(e->first);
    no_steps.boolean(e->write->execution.steps.empty());
  }
  std::optional<std::size_t> before;
  if (!appending.empty()) {
    before = pipe.send(kReadBefore,
                       PgParams().array(tracking).array(execution).array(first).array(no_steps));
  }
  using Type = PgArray::Type;
  PgArray tracking_ids(Type::Bytea), execution_ids(Type::Bytea), started(Type::Int8),
      completed(Type::Int8), duration(Type::Int8), metadata(Type::Bytea), expires(Type::Int8),
      steps_count(Type::Int8), final_status(Type::Bytea), pairs(Type::Text);
  for (const PreparedExecution* e : round) {
    const Execution& x = e->write->execution;
    tracking_ids.bytes(x.tracking_id);
    execution_ids.bytes(x.execution_id);
    started.int64(x.started_at_ns);
    completed.int64(x.completed_at_ns);
    duration.int64(x.duration_ms);
    metadata.bytes(x.metadata_json);
    expires.int64(e->write->expires_at_ns);
    steps_count.int64(e->first + static_cast<std::int64_t>(x.steps.size()));
    if (x.steps.empty()) {
      final_status.null();
    } else {
      final_status.bytes(x.steps.back().status);
    }
    pairs.bytes(bytea_array_text(e->metadata_pairs));
  }
  const std::size_t upsert = pipe.send(kUpsertExecutions, PgParams()
                                                              .array(tracking_ids)
                                                              .array(execution_ids)
                                                              .array(started)
                                                              .array(completed)
                                                              .array(duration)
                                                              .array(metadata)
                                                              .array(expires)
                                                              .array(steps_count)
                                                              .array(final_status)
                                                              .array(pairs));
  pipe.sync();

  std::unordered_map<std::string_view, PreparedExecution*> by_tracking_id;
  for (PreparedExecution* e : round) by_tracking_id.emplace(e->write->execution.tracking_id, e);
  const PgResult& upserted = pipe.result(upsert);
  for (int i = 0; i < upserted.rows(); ++i) {
    auto it = by_tracking_id.find(upserted.bytes(i, 0));
    if (it == by_tracking_id.end()) throw std::runtime_error("an attempt came back unasked");
    it->second->id = upserted.int64(i, 1);
    it->second->added = upserted.boolean(i, 2);  // A new attempt: no chunk or fact to replace.
  }
  if (before) {
    const PgResult& r = pipe.result(*before);
    for (int i = 0; i < r.rows() && static_cast<std::size_t>(i) < appending.size(); ++i) {
      PreparedExecution& e = *appending[static_cast<std::size_t>(i)];
      const Execution& x = e.write->execution;
      detail::check_steps_kept(e.first, r.opt_int64(i, 1).value_or(0), x.execution_id);
      if (!r.is_null(i, 5) && !e.facts.empty()) e.facts.front().with_previous(r.int64(i, 5));
      if (r.is_null(i, 2) || r.is_null(i, 4)) continue;
      // The last chunk before `first` straddles it (it is cut), or gives the final status.
      std::int64_t seq = r.int64(i, 2);
      std::vector<Step> steps;
      if (!detail::decode_steps(r.bytes(i, 4), steps) ||
          static_cast<std::int64_t>(steps.size()) != r.int64(i, 3)) {
        throw std::runtime_error("attempt " + x.execution_id +
                                 " has a damaged step chunk at step " + std::to_string(seq));
      }
      if (seq + r.int64(i, 3) > e.first) {
        steps.resize(static_cast<std::size_t>(e.first - seq));
        std::string json;
        detail::encode_steps(steps, json);
        pipe.send(
            "UPDATE step_chunks SET count = $3, steps_json = $4 WHERE execution = $1 AND "
            "seq = $2",
            PgParams()
                .int64(e.id)
                .int64(seq)
                .int64(static_cast<std::int64_t>(steps.size()))
                .bytes(json));
      }
      if (x.steps.empty() && !steps.empty()) {
        pipe.send("UPDATE executions SET final_status = $2 WHERE id = $1",
                  PgParams().int64(e.id).bytes(steps.back().status));
      }
    }
  }
  // Steps from `first` on are replaced: chunks that start there or later go (a chunk that
  // straddles `first` was cut above), and so do their facts.
  PgArray replaced(PgArray::Type::Int8), replaced_from(PgArray::Type::Int8);
  PgArray chunk_execution(PgArray::Type::Int8), chunk_seq(PgArray::Type::Int8),
      chunk_count(PgArray::Type::Int8), chunk_json(PgArray::Type::Bytea);
  for (PreparedExecution* e : round) {
    if (!e->added) {
      replaced.int64(e->id);
      replaced_from.int64(e->first);
    }
    if (e->chunk_json.empty()) continue;
    chunk_execution.int64(e->id);
    chunk_seq.int64(e->first);
    chunk_count.int64(static_cast<std::int64_t>(e->write->execution.steps.size()));
    chunk_json.bytes(e->chunk_json);
  }
  if (replaced.size() > 0) {
    for (const char* sql :
         {"DELETE FROM step_chunks c USING unnest($1::int8[], $2::int8[]) AS d(execution, "
          "first) WHERE c.execution = d.execution AND c.seq >= d.first",
          "DELETE FROM step_facts f USING unnest($1::int8[], $2::int8[]) AS d(execution, "
          "first) WHERE f.execution = d.execution AND f.n >= d.first"}) {
      pipe.send(sql, PgParams().array(replaced).array(replaced_from));
    }
  }
  if (chunk_execution.size() > 0) {
    pipe.send(
        "INSERT INTO step_chunks (execution, seq, count, steps_json) SELECT * FROM "
        "unnest($1::int8[], $2::int8[], $3::int8[], $4::bytea[])",
        PgParams().array(chunk_execution).array(chunk_seq).array(chunk_count).array(chunk_json));
  }
  send_facts(pipe, round);
}

Result<void> PostgresStore::put_execution(const Execution& execution, std::int64_t expires_at_ns) {
  const ExecutionWrite write{execution, expires_at_ns, 0};
  return this->write({}, std::span<const ExecutionWrite>(&write, 1));
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
  constexpr std::string_view kOperation = "cannot store events and executions";
  // What the write alone determines (chunks, facts, search words) is computed before its
  // transaction begins, so that the transaction holds its locks for its statements only.
  std::vector<PreparedExecution> prepared;
  std::vector<std::int64_t> keys;
  try {
    prepared.reserve(executions.size());
    for (const ExecutionWrite& w : executions) {
      prepared.push_back(prepare(w));
      keys.push_back(tracking_lock_key(w.execution.tracking_id));
    }
  } catch (...) {
    return error(kOperation);
  }
  // The locks of the write's tracking ids in one order, so that two writes cannot deadlock.
  std::sort(keys.begin(), keys.end());
  keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
  return call<void>(kOperation, [&](PgConnection& c) {
    // One pipeline, the transaction's BEGIN and COMMIT in it: two round trips for a write of
    // new attempts, one more per round of attempts written from a step > 0 or repeated.
    PgPipeline pipe(c);
    pipe.begin();
    if (!keys.empty()) {
      detail::PgArray array(detail::PgArray::Type::Int8);
      for (std::int64_t key : keys) array.int64(key);
      pipe.send("SELECT pg_advisory_xact_lock(k) FROM unnest($1::int8[]) AS k",
                PgParams().array(array));
    }
    constexpr auto kNone = static_cast<std::size_t>(-1);
    std::vector<std::pair<std::size_t, std::size_t>> sent;  // Batch, events.
    for (const EventsWrite& w : events) {
      sent.emplace_back(w.batch != nullptr ? send_batch(pipe, *w.batch, w.expires_at_ns) : kNone,
                        w.events.empty() ? kNone : send_events(pipe, w.events, w.expires_at_ns));
    }
    put_locked(pipe, prepared);
    for (const auto& [batch, ids] : sent) {
      if ((batch != kNone && !pipe.read(batch)) || (ids != kNone && !pipe.read(ids))) {
        pipe.sync();
      }
    }
    std::vector<std::pair<std::vector<std::int64_t>, std::int64_t>> fed;  // Ids, expiry.
    for (std::size_t i = 0; i < events.size(); ++i) {
      if (sent[i].first != kNone) check_batch(pipe.result(sent[i].first), *events[i].batch);
      if (sent[i].second == kNone) continue;
      const PgResult& ids = pipe.result(sent[i].second);
      fed.emplace_back(std::vector<std::int64_t>(), events[i].expires_at_ns);
      fed.back().first.reserve(static_cast<std::size_t>(ids.rows()));
      for (int row = 0; row < ids.rows(); ++row) fed.back().first.push_back(ids.int64(row, 0));
    }
    // Last: the feed's lock is held until commit.
    detail::pg_feed_locked(pipe, origin_, std::move(fed));
    pipe.commit();  // The ack comes after this: the write is durable.
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
