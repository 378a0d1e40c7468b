// The PostgreSQL store's raw events and ingest batch keys: one row per event, its fields as a
// JSON object in JSONL's conventions (format/format.hpp's append_json_fields), read back with
// the JSONL reader, as the SQLite store keeps them.

#include <string>
#include <utility>

#include "format/format.hpp"
#include "store/postgres_feed.hpp"
#include "store/postgres_store.hpp"
#include "store/store_common.hpp"

namespace stagelog::store {

using detail::PgConnection;
using detail::PgParams;
using detail::PgResult;
using detail::PgTransaction;

namespace {

// Rows per INSERT: 15 parameters each, far below PostgreSQL's 65535.
constexpr std::size_t kEventsPerInsert = 200;
constexpr int kEventColumns = 15;
// What read_event_row reads, in order; the row's id last.
constexpr const char* kEventColumnsRead =
    "SELECT ts_ns, kind, level, status, run, worker, component, stage, message, elapsed_ns, "
    "fields_json, pid, host, fields_in_message, id FROM events ";

std::string sql_insert_events(std::size_t rows) {
  std::string sql =
      "INSERT INTO events (ts_ns, kind, level, status, run, worker, component, stage, message, "
      "elapsed_ns, fields_json, pid, host, fields_in_message, expires_at_ns) VALUES ";
  int p = 1;
  for (std::size_t r = 0; r < rows; ++r) {
    sql += r == 0 ? "(" : ",(";
    for (int c = 0; c < kEventColumns; ++c) {
      if (c > 0) sql += ',';
      sql += '$';
      sql += std::to_string(p++);
      if (c == 13) sql += " <> 0";  // fields_in_message, sent as 0 or 1.
    }
    sql += ')';
  }
  return sql + " RETURNING id";
}

void bind_event(PgParams& p, const OwnedEvent& e, std::int64_t expires_at_ns) {
  std::string fields;
  detail::append_json_fields(fields, e.fields());
  p.int64(e.ts_ns).text(kind_name(e.kind)).text(level_json_name(e.level));
  if (e.status == Status::None) {
    p.null();
  } else {
    p.text(status_name(e.status));
  }
  p.bytes(e.run)
      .bytes(e.worker)
      .bytes(e.component)
      .bytes(e.stage)
      .bytes(e.message)
      .int64(e.elapsed_ns)
      .bytes(fields)
      .int64(e.pid)
      .bytes(e.host)
      .int64(std::int64_t{e.fields_in_message ? 1 : 0})
      .int64(expires_at_ns);
}

OwnedEvent read_event_row(const PgResult& r, int i) {
  OwnedEvent e;
  e.ts_ns = r.int64(i, 0);
  detail::read_event_names(e, r.bytes(i, 1), r.bytes(i, 2), r.opt_bytes(i, 3));
  e.run = r.bytes(i, 4);
  e.worker = r.bytes(i, 5);
  e.component = r.bytes(i, 6);
  e.stage = r.bytes(i, 7);
  e.message = r.bytes(i, 8);
  e.elapsed_ns = r.opt_int64(i, 9);
  detail::read_event_fields(r.bytes(i, 10), e);
  e.pid = r.int64(i, 11);
  e.host = r.bytes(i, 12);
  e.fields_in_message = r.boolean(i, 13);
  return e;
}

}  // namespace

void PostgresStore::append_locked(PgConnection& c, std::span<const OwnedEvent> events,
                                  std::int64_t expires_at_ns, std::vector<std::int64_t>& ids) {
  while (!events.empty()) {
    std::size_t n = std::min(events.size(), kEventsPerInsert);
    PgParams p;
    for (std::size_t i = 0; i < n; ++i) bind_event(p, events[i], expires_at_ns);
    PgResult r = c.exec(sql_insert_events(n), p);
    for (int i = 0; i < r.rows(); ++i) ids.push_back(r.int64(i, 0));
    events = events.subspan(n);
  }
}

Result<void> PostgresStore::append_events(std::span<const OwnedEvent> events,
                                          std::int64_t expires_at_ns) {
  if (events.empty()) return {};
  return call<void>("cannot store events", [&](PgConnection& c) {
    PgTransaction tx(c);
    std::vector<std::int64_t> ids;
    append_locked(c, events, expires_at_ns, ids);
    detail::pg_feed_locked(c, origin_, std::move(ids), expires_at_ns);
    tx.commit();
  });
}

Result<std::vector<OwnedEvent>> PostgresStore::events(std::string_view run, std::int64_t now_ns,
                                                      std::size_t limit) {
  return call<std::vector<OwnedEvent>>("cannot read events", [&](PgConnection& c) {
    PgResult r = c.exec(std::string(kEventColumnsRead) +
                            "WHERE run = $1 AND expires_at_ns > $2 ORDER BY ts_ns, id LIMIT $3",
                        PgParams().bytes(run).int64(now_ns).int64(detail::row_limit(limit)));
    std::vector<OwnedEvent> out;
    out.reserve(static_cast<std::size_t>(r.rows()));
    for (int i = 0; i < r.rows(); ++i) out.push_back(read_event_row(r, i));
    return out;
  });
}

Result<std::vector<StoredEvent>> PostgresStore::event_page(std::string_view run,
                                                           std::optional<Position> after,
                                                           std::size_t limit, std::int64_t now_ns) {
  return call<std::vector<StoredEvent>>("cannot read events", [&](PgConnection& c) {
    PgParams p;
    p.bytes(run).int64(now_ns).int64(detail::row_limit(limit));
    std::string sql = std::string(kEventColumnsRead) + "WHERE run = $1 AND expires_at_ns > $2";
    if (after) {
      p.int64(after->ns).int64(after->seq);
      sql += " AND (ts_ns, id) > ($4, $5)";
    }
    sql += " ORDER BY ts_ns, id LIMIT $3";
    PgResult r = c.exec(sql, p);
    std::vector<StoredEvent> out;
    for (int i = 0; i < r.rows(); ++i) {
      OwnedEvent e = read_event_row(r, i);
      Position at{e.ts_ns, r.int64(i, 14)};
      out.push_back(StoredEvent{std::move(e), at});
    }
    return out;
  });
}

void PostgresStore::put_batch_locked(PgConnection& c, const BatchRecord& batch,
                                     std::int64_t expires_at_ns) {
  if (batch.key.empty()) throw std::runtime_error("a batch key is empty");
  // A key stored and live at stored_at_ns stays as it is (no row touched); an expired one is
  // replaced. A concurrent write of the same key waits for this transaction on the key's
  // unique index, then finds it.
  PgResult r = c.exec(
      "INSERT INTO batches AS b (key, status, body, stored_at_ns, expires_at_ns) VALUES "
      "($1, $2, $3, $4, $5) ON CONFLICT (key) DO UPDATE SET status = excluded.status, "
      "body = excluded.body, stored_at_ns = excluded.stored_at_ns, "
      "expires_at_ns = excluded.expires_at_ns WHERE b.expires_at_ns <= excluded.stored_at_ns",
      PgParams()
          .bytes(batch.key)
          .int64(std::int64_t{batch.status})
          .bytes(batch.body)
          .int64(batch.stored_at_ns)
          .int64(expires_at_ns));
  if (r.affected() == 0) throw std::runtime_error("batch " + batch.key + " is already stored");
}

Result<std::optional<BatchRecord>> PostgresStore::batch(std::string_view key, std::int64_t now_ns) {
  return call<std::optional<BatchRecord>>(
      "cannot look up batch " + std::string(key),
      [&](PgConnection& c) -> std::optional<BatchRecord> {
        PgResult r = c.exec(
            "SELECT status, body, stored_at_ns FROM batches WHERE key = $1 AND "
            "expires_at_ns > $2",
            PgParams().bytes(key).int64(now_ns));
        if (r.rows() == 0) return std::nullopt;
        BatchRecord record;
        record.key = std::string(key);
        record.status = static_cast<int>(r.int64(0, 0));
        record.body = r.bytes(0, 1);
        record.stored_at_ns = r.int64(0, 2);
        return record;
      });
}

}  // namespace stagelog::store

namespace stagelog::detail {

std::vector<OwnedEvent> pg_events_between(PgConnection& c, std::int64_t first, std::int64_t last) {
  PgResult r =
      c.exec(std::string(store::kEventColumnsRead) + "WHERE id BETWEEN $1 AND $2 ORDER BY id",
             PgParams().int64(first).int64(last));
  std::vector<OwnedEvent> out;
  out.reserve(static_cast<std::size_t>(r.rows()));
  for (int i = 0; i < r.rows(); ++i) out.push_back(store::read_event_row(r, i));
  return out;
}

}  // namespace stagelog::detail
