// The store's raw events: one row per event, its fields as a JSON object in JSONL's conventions
// (format/format.hpp's append_json_fields), read back with the JSONL reader.

#include "store/sqlite_events.hpp"

#include <string>
#include <utility>

#include "format/format.hpp"
#include "store/store_common.hpp"

namespace stagelog::store {

using detail::Database;
using detail::ScopedReset;
using detail::Statement;
using detail::Transaction;

namespace {

constexpr std::size_t kEventsPerInsert = 20;
// What read_event_row reads, in order; the row's id last.
constexpr const char* kEventColumnsRead =
    "ts_ns, kind, level, status, run, worker, component, stage, message, elapsed_ns, "
    "fields_json, pid, host, fields_in_message, id";
constexpr int kEventColumns = 15;

// INSERT INTO events (...) VALUES (?,...),(?,...)... for `rows` rows.
std::string sql_insert_events(std::size_t rows) {
  std::string sql =
      "INSERT INTO events (ts_ns, kind, level, status, run, worker, component, stage, message, "
      "elapsed_ns, fields_json, pid, host, fields_in_message, expires_at_ns) VALUES ";
  for (std::size_t r = 0; r < rows; ++r) {
    sql += r == 0 ? "(" : ",(";
    for (int c = 0; c < kEventColumns; ++c) sql += c == 0 ? "?" : ",?";
    sql += ')';
  }
  return sql;
}

// Binds one event as the row of the insert whose first parameter is `first`. `fields` holds
// the fields' JSON until the statement runs.
void bind_event(Statement& s, int first, const OwnedEvent& e, std::string& fields,
                std::int64_t expires_at_ns) {
  fields.clear();
  detail::append_json_fields(fields, e.fields());
  s.bind(first, e.ts_ns)
      .bind(first + 1, kind_name(e.kind))
      .bind(first + 2, level_json_name(e.level));
  if (e.status == Status::None) {
    s.bind_null(first + 3);
  } else {
    s.bind(first + 3, status_name(e.status));
  }
  s.bind(first + 4, std::string_view(e.run))
      .bind(first + 5, std::string_view(e.worker))
      .bind(first + 6, std::string_view(e.component))
      .bind(first + 7, std::string_view(e.stage))
      .bind(first + 8, std::string_view(e.message))
      .bind(first + 9, e.elapsed_ns)
      .bind(first + 10, std::string_view(fields))
      .bind(first + 11, e.pid)
      .bind(first + 12, std::string_view(e.host))
      .bind(first + 13, std::int64_t{e.fields_in_message ? 1 : 0})
      .bind(first + 14, expires_at_ns);
}

// The event of a row of kEventColumnsRead. Throws std::runtime_error for a row no stagelog
// wrote.
OwnedEvent read_event_row(const Statement& s) {
  OwnedEvent e;
  e.ts_ns = s.int64(0);
  detail::read_event_names(e, s.text(1), s.text(2), s.opt_text(3));
  e.run = s.text(4);
  e.worker = s.text(5);
  e.component = s.text(6);
  e.stage = s.text(7);
  e.message = s.text(8);
  e.elapsed_ns = s.opt_int64(9);
  detail::read_event_fields(s.text(10), e);
  e.pid = s.int64(11);
  e.host = s.text(12);
  e.fields_in_message = s.int64(13) != 0;
  return e;
}

}  // namespace

SqliteStore::EventStatements::EventStatements(Database& db)
    : insert_event(db, sql_insert_events(1)),
      insert_events(db, sql_insert_events(kEventsPerInsert)),
      select_events(db, std::string("SELECT ") + kEventColumnsRead +
                            " FROM events WHERE run = ?1 AND expires_at_ns > ?2 "
                            "ORDER BY ts_ns, id LIMIT ?3"),
      select_events_after(db, std::string("SELECT ") + kEventColumnsRead +
                                  " FROM events WHERE run = ?1 AND expires_at_ns > ?2 AND "
                                  "(ts_ns, id) > (?4, ?5) ORDER BY ts_ns, id LIMIT ?3") {}

void SqliteStore::append_locked(std::span<const OwnedEvent> events, std::int64_t expires_at_ns) {
  // kEventsPerInsert rows per statement while there are that many: a statement's own cost
  // (step, reset, the program's prologue) is paid once for them.
  std::vector<std::string>& fields = ev_->fields;
  fields.resize(kEventsPerInsert);
  while (events.size() >= kEventsPerInsert) {
    Statement& s = ev_->insert_events;
    ScopedReset reset(s);
    for (std::size_t i = 0; i < kEventsPerInsert; ++i) {
      bind_event(s, static_cast<int>(i) * kEventColumns + 1, events[i], fields[i], expires_at_ns);
    }
    s.run();
    events = events.subspan(kEventsPerInsert);
  }
  for (const OwnedEvent& e : events) {
    Statement& s = ev_->insert_event;
    ScopedReset reset(s);
    bind_event(s, 1, e, fields[0], expires_at_ns);
    s.run();
  }
}

Result<void> SqliteStore::append_events(std::span<const OwnedEvent> events,
                                        std::int64_t expires_at_ns) {
  if (events.empty()) return {};
  std::lock_guard lock(mutex_);
  try {
    Transaction tx(*db_);
    append_locked(events, expires_at_ns);
    tx.commit();
    return {};
  } catch (...) {
    return error("cannot store events");
  }
}

Result<std::vector<OwnedEvent>> SqliteStore::events(std::string_view run, std::int64_t now_ns,
                                                    std::size_t limit) {
  std::lock_guard lock(mutex_);
  try {
    Statement& s = ev_->select_events;
    ScopedReset reset(s);
    s.bind(1, run).bind(2, now_ns).bind(3, detail::row_limit(limit));
    std::vector<OwnedEvent> out;
    while (s.step()) out.push_back(read_event_row(s));
    return out;
  } catch (...) {
    return error("cannot read events");
  }
}

Result<std::vector<StoredEvent>> SqliteStore::event_page(std::string_view run,
                                                         std::optional<Position> after,
                                                         std::size_t limit, std::int64_t now_ns) {
  std::lock_guard lock(mutex_);
  try {
    Statement& s = after ? ev_->select_events_after : ev_->select_events;
    ScopedReset reset(s);
    s.bind(1, run).bind(2, now_ns).bind(3, detail::row_limit(limit));
    if (after) s.bind(4, after->ns).bind(5, after->seq);
    std::vector<StoredEvent> out;
    while (s.step()) {
      OwnedEvent e = read_event_row(s);
      Position at{e.ts_ns, s.int64(14)};
      out.push_back(StoredEvent{std::move(e), at});
    }
    return out;
  } catch (...) {
    return error("cannot read events");
  }
}

}  // namespace stagelog::store
