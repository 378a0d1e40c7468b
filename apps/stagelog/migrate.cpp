// stagelog migrate: copies a SQLite store (the data folder of `stagelog serve`) into a
// PostgreSQL database, so that servers on PostgreSQL start with its history. The SQLite file
// is never written: it is read once into a snapshot in a temporary folder (SQLite's backup,
// consistent even while a server writes to it), and the copy is read through the Store
// interface, with the expiry times, event ids and batch keys the interface does not show read
// from the snapshot's tables. What PostgreSQL already holds is looked up first and left as it
// is, so a second run, or one after an interrupted run, adds only what is missing.

#include <sqlite3.h>
#include <stdlib.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#include "commands.hpp"
#include "format/format.hpp"
#include "stagelog/error.hpp"
#include "stagelog/store/postgres_store.hpp"
#include "stagelog/store/sqlite_store.hpp"

namespace stagelog::cli {

namespace {

namespace fs = std::filesystem;

constexpr std::size_t kAttemptsPerWrite = 200;
constexpr std::size_t kEventsPerWrite = 1000;
constexpr std::size_t kBatchKeysPerWrite = 500;
constexpr std::size_t kEventPage = 1000;

struct MigrateOptions {
  std::string from;
  std::string to;
};

// A read-only SQLite connection with one-line queries; throws stagelog::Error naming `what`.
class Sqlite {
 public:
  Sqlite(const fs::path& path, int flags) {
    if (sqlite3_open_v2(path.c_str(), &db_, flags, nullptr) != SQLITE_OK) {
      std::string message = db_ != nullptr ? sqlite3_errmsg(db_) : "out of memory";
      sqlite3_close(db_);
      throw Error("cannot open " + path.string() + ": " + message);
    }
  }
  ~Sqlite() { sqlite3_close(db_); }
  Sqlite(const Sqlite&) = delete;
  Sqlite& operator=(const Sqlite&) = delete;

  sqlite3* get() const noexcept { return db_; }

  // Runs `sql` with `now` bound to ?1 (when it has a parameter), calling row(stmt) per row.
  template <typename Row>
  void query(const char* sql, std::int64_t now, Row&& row) const {
    sqlite3_stmt* s = nullptr;
    if (sqlite3_prepare_v2(db_, sql, -1, &s, nullptr) != SQLITE_OK) {
      throw Error(sqlite3_errmsg(db_));
    }
    std::unique_ptr<sqlite3_stmt, int (*)(sqlite3_stmt*)> owned(s, sqlite3_finalize);
    if (sqlite3_bind_parameter_count(s) > 0) sqlite3_bind_int64(s, 1, now);
    int rc = 0;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) row(s);
    if (rc != SQLITE_DONE) throw Error(sqlite3_errmsg(db_));
  }

  std::int64_t count(const char* sql, std::int64_t now) const {
    std::int64_t n = 0;
    query(sql, now, [&](sqlite3_stmt* s) { n = sqlite3_column_int64(s, 0); });
    return n;
  }

 private:
  sqlite3* db_ = nullptr;
};

std::string text(sqlite3_stmt* s, int col) {
  const auto* p = static_cast<const char*>(sqlite3_column_blob(s, col));
  return p == nullptr ? std::string()
                      : std::string(p, static_cast<std::size_t>(sqlite3_column_bytes(s, col)));
}

// A temporary folder, removed with what it holds.
class TempFolder {
 public:
  TempFolder() {
    std::string pattern = (fs::temp_directory_path() / "stagelog-migrate-XXXXXX").string();
    if (mkdtemp(pattern.data()) == nullptr) {
      throw Error("cannot make a temporary folder under " + fs::temp_directory_path().string());
    }
    path_ = pattern;
  }
  ~TempFolder() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  TempFolder(const TempFolder&) = delete;
  TempFolder& operator=(const TempFolder&) = delete;
  const fs::path& path() const noexcept { return path_; }

 private:
  fs::path path_;
};

// Checks that DIR/stagelog.db is a stagelog store and copies it into `snapshot`, opening the
// original read-only.
void take_snapshot(const fs::path& from, const fs::path& snapshot) {
  std::error_code ec;
  if (!fs::is_directory(from, ec)) {
    throw Error("--from " + from.string() +
                ": no such folder (the --data folder of stagelog serve)");
  }
  const fs::path db = from / "stagelog.db";
  if (!fs::is_regular_file(db, ec)) {
    throw Error("--from " + from.string() +
                ": no stagelog.db in it (is it the --data folder of stagelog serve?)");
  }
  Sqlite source(db, SQLITE_OPEN_READONLY);
  try {
    source.count("SELECT version FROM schema_version", 0);
  } catch (const Error& e) {
    throw Error(db.string() + " is not a stagelog store: " + e.what());
  }
  Sqlite copy(snapshot, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
  sqlite3_backup* backup = sqlite3_backup_init(copy.get(), "main", source.get(), "main");
  if (backup == nullptr)
    throw Error("cannot read " + db.string() + ": " + sqlite3_errmsg(copy.get()));
  int rc = sqlite3_backup_step(backup, -1);
  sqlite3_backup_finish(backup);
  if (rc != SQLITE_DONE) {
    throw Error("cannot read " + db.string() + ": " + sqlite3_errstr(rc));
  }
}

struct Counts {
  std::size_t copied = 0;
  std::size_t present = 0;  // Already in PostgreSQL, left as they were.
};

void progress(const char* what, const Counts& c, std::int64_t total) {
  std::fprintf(stderr, "stagelog migrate: %s %zu/%lld (%zu copied, %zu already there)\n", what,
               c.copied + c.present, static_cast<long long>(total), c.copied, c.present);
}

template <typename T>
T must(Result<T> r, const std::string& what) {
  if (!r) throw Error(what + ": " + r.error().what());
  if constexpr (!std::is_void_v<T>) return std::move(*r);
}

// Every live attempt, in the SQLite store's insertion order (so that PostgreSQL numbers a
// tracking id's attempts alike and breaks ties of started_at_ns alike). An attempt whose
// execution id PostgreSQL holds for its tracking id is left as it is there.
Counts copy_attempts(const Sqlite& raw, store::Store& sqlite, store::Store& pg, std::int64_t now) {
  const std::int64_t total =
      raw.count("SELECT COUNT(*) FROM executions WHERE expires_at_ns > ?1", now);
  struct Row {
    std::string tracking_id;
    std::string execution_id;
    int n;
    std::int64_t expires_at_ns;
  };
  std::vector<Row> rows;
  raw.query(
      "SELECT tracking_id, execution_id, attempt, expires_at_ns FROM executions "
      "WHERE expires_at_ns > ?1 ORDER BY id",
      now, [&](sqlite3_stmt* s) {
        rows.push_back(
            Row{text(s, 0), text(s, 1), sqlite3_column_int(s, 2), sqlite3_column_int64(s, 3)});
      });
  std::unordered_map<std::string, std::set<std::string>> in_pg;  // Tracking id: execution ids.
  Counts counts;
  std::vector<store::ExecutionWrite> pending;
  auto flush = [&] {
    if (!pending.empty()) must(pg.write({}, pending), "cannot write to PostgreSQL");
    counts.copied += pending.size();
    pending.clear();
    progress("attempts", counts, total);
  };
  for (const Row& row : rows) {
    auto known = in_pg.find(row.tracking_id);
    if (known == in_pg.end()) {
      std::set<std::string> ids;
      for (const auto& a : must(pg.attempts(row.tracking_id, now), "cannot read PostgreSQL")) {
        ids.insert(a.execution_id);
      }
      known = in_pg.emplace(row.tracking_id, std::move(ids)).first;
    }
    if (!known->second.insert(row.execution_id).second) {
      ++counts.present;
      continue;
    }
    auto execution = must(sqlite.attempt(row.tracking_id, row.n, now), "cannot read the snapshot");
    if (!execution || execution->execution_id != row.execution_id) {
      throw Error("the snapshot lost attempt " + std::to_string(row.n) + " of " + row.tracking_id);
    }
    pending.push_back(store::ExecutionWrite{std::move(*execution), row.expires_at_ns, 0});
    if (pending.size() == kAttemptsPerWrite) flush();
  }
  flush();
  return counts;
}

// An event as a string that tells it from any other of its run.
std::string event_key(const OwnedEvent& e) {
  std::string key;
  detail::format_json(e.view(), key);
  key += e.fields_in_message ? '1' : '0';
  return key;
}

template <typename Page>
std::vector<store::StoredEvent> all_events(std::string_view run, Page&& page) {
  std::vector<store::StoredEvent> out;
  std::optional<store::Position> after;
  for (;;) {
    auto events = page(run, after);
    for (auto& e : events) out.push_back(std::move(e));
    if (events.size() < kEventPage) return out;
    after = out.back().position;
  }
}

// Every live event, run by run, in the order events() reads them, each with its expiry. Events
// of a run that PostgreSQL holds already (the same fields, as many times) are not added again.
Counts copy_events(const Sqlite& raw, store::Store& sqlite, store::Store& pg, std::int64_t now) {
  const std::int64_t total = raw.count("SELECT COUNT(*) FROM events WHERE expires_at_ns > ?1", now);
  std::map<std::string, std::unordered_map<std::int64_t, std::int64_t>> runs;  // id: expiry
  raw.query("SELECT run, id, expires_at_ns FROM events WHERE expires_at_ns > ?1", now,
            [&](sqlite3_stmt* s) {
              runs[text(s, 0)][sqlite3_column_int64(s, 1)] = sqlite3_column_int64(s, 2);
            });
  Counts counts;
  std::vector<std::pair<OwnedEvent, std::int64_t>> pending;  // With its expiry.
  auto flush = [&] {
    std::vector<OwnedEvent> events;
    events.reserve(pending.size());
    std::vector<store::EventsWrite> writes;
    for (std::size_t i = 0; i < pending.size(); ++i) events.push_back(pending[i].first);
    for (std::size_t i = 0; i < pending.size();) {
      std::size_t j = i;
      while (j < pending.size() && pending[j].second == pending[i].second) ++j;
      writes.push_back(store::EventsWrite{std::span<const OwnedEvent>(events.data() + i, j - i),
                                          pending[i].second, nullptr});
      i = j;
    }
    if (!writes.empty()) must(pg.write(writes, {}), "cannot write to PostgreSQL");
    counts.copied += pending.size();
    pending.clear();
    progress("events", counts, total);
  };
  for (const auto& [run, expiries] : runs) {
    auto from = all_events(run, [&](std::string_view r, std::optional<store::Position> after) {
      return must(sqlite.event_page(r, after, kEventPage, now), "cannot read the snapshot");
    });
    auto there = all_events(run, [&](std::string_view r, std::optional<store::Position> after) {
      return must(pg.event_page(r, after, kEventPage, now), "cannot read PostgreSQL");
    });
    std::unordered_map<std::string, std::size_t> in_pg;
    for (const auto& e : there) ++in_pg[event_key(e.event)];
    for (auto& e : from) {
      auto expiry = expiries.find(e.position.seq);
      if (expiry == expiries.end()) throw Error("the snapshot lost an event of run " + run);
      auto found = in_pg.find(event_key(e.event));
      if (found != in_pg.end() && found->second > 0) {
        --found->second;
        ++counts.present;
        continue;
      }
      pending.emplace_back(std::move(e.event), expiry->second);
      if (pending.size() == kEventsPerWrite) flush();
    }
  }
  flush();
  return counts;
}

// Ingest batch keys with their first answers, so that a batch a producer retries after the
// move is still answered as a repeat.
Counts copy_batch_keys(const Sqlite& raw, store::Store& pg, std::int64_t now) {
  std::vector<std::pair<store::BatchRecord, std::int64_t>> keys;  // With its expiry.
  raw.query(
      "SELECT key, status, body, stored_at_ns, expires_at_ns FROM batches "
      "WHERE expires_at_ns > ?1 ORDER BY id",
      now, [&](sqlite3_stmt* s) {
        keys.emplace_back(store::BatchRecord{text(s, 0), sqlite3_column_int(s, 1), text(s, 2),
                                             sqlite3_column_int64(s, 3)},
                          sqlite3_column_int64(s, 4));
      });
  Counts counts;
  std::vector<store::EventsWrite> pending;
  auto flush = [&] {
    if (!pending.empty()) must(pg.write(pending, {}), "cannot write to PostgreSQL");
    counts.copied += pending.size();
    pending.clear();
    progress("batch keys", counts, static_cast<std::int64_t>(keys.size()));
  };
  for (const auto& [record, expires_at_ns] : keys) {
    if (must(pg.batch(record.key, now), "cannot read PostgreSQL")) {
      ++counts.present;
      continue;
    }
    pending.push_back(store::EventsWrite{{}, expires_at_ns, &record});
    if (pending.size() == kBatchKeysPerWrite) flush();
  }
  flush();
  return counts;
}

int migrate(const MigrateOptions& o) {
  if (auto checked = store::check_postgres_conninfo(o.to); !checked) {
    throw Error("--to: " + std::string(checked.error().what()));
  }
  TempFolder temp;
  const fs::path snapshot = temp.path() / "stagelog.db";
  take_snapshot(fs::path(o.from), snapshot);
  std::unique_ptr<store::Store> pg;
  try {
    pg = store::open_postgres_store(o.to);
  } catch (const Error& e) {
    throw Error("--to: cannot open the PostgreSQL store: " + std::string(e.what()));
  }
  // The snapshot's schema is brought up to this stagelog's when it is older; then its tables
  // are read as this version writes them.
  std::unique_ptr<store::Store> sqlite = store::open_sqlite_store(snapshot);
  Sqlite raw(snapshot, SQLITE_OPEN_READONLY);
  const std::int64_t now = std::chrono::duration_cast<std::chrono::nanoseconds>(
                               std::chrono::system_clock::now().time_since_epoch())
                               .count();
  Counts attempts = copy_attempts(raw, *sqlite, *pg, now);
  Counts events = copy_events(raw, *sqlite, *pg, now);
  Counts keys = copy_batch_keys(raw, *pg, now);
  std::printf(
      "migrated %s to PostgreSQL: %zu attempts (%zu already there), %zu events (%zu already "
      "there), %zu batch keys (%zu already there)\n",
      (fs::path(o.from) / "stagelog.db").c_str(), attempts.copied, attempts.present, events.copied,
      events.present, keys.copied, keys.present);
  return 0;
}

}  // namespace

Command add_migrate(CLI::App& app) {
  auto o = std::make_shared<MigrateOptions>();
  CLI::App* cmd = app.add_subcommand(
      "migrate",
      "Copy a SQLite store (the --data folder of stagelog serve) into PostgreSQL: every live\n"
      "attempt with its steps, every live event, and the ingest batch keys, each with its\n"
      "expiry. The SQLite file is only read (a snapshot of it goes to a temporary folder,\n"
      "TMPDIR, as large as stagelog.db), so a server may go on using it meanwhile; what it\n"
      "stores after the snapshot is not copied. Safe to run again: what PostgreSQL holds\n"
      "already is left as it is and not added twice, so a run that stopped part way is\n"
      "finished by the next one.");
  cmd->add_option("--from", o->from, "The data folder holding stagelog.db")->required();
  cmd->add_option("--to", o->to,
                  "The PostgreSQL database, a libpq connection string\n"
                  "(postgresql://USER@HOST/DB) as serve --store takes it; no password\n"
                  "in it (~/.pgpass or PGPASSFILE)")
      ->required();
  cmd->footer(
      "Prints its progress on stderr and a summary on stdout. Attempt numbers are PostgreSQL's:\n"
      "they match SQLite's unless a tracking id's earlier attempts expired before its later\n"
      "ones (PostgreSQL numbers the live ones 1, 2, ...).\n"
      "Example:\n"
      "  PGPASSFILE=/etc/stagelog/pgpass stagelog migrate --from /var/lib/stagelog \\\n"
      "      --to postgresql://stagelog@db.internal/stagelog\n");
  return [o]() -> int { return migrate(*o); };
}

}  // namespace stagelog::cli
