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

// What read_event_row reads, in order; the row's id last.
constexpr const char* kEventColumnsRead =
    "SELECT ts_ns, kind, level, status, run, worker, component, stage, message, elapsed_ns, "
    "fields_json, pid, host, fields_in_message, id FROM events ";

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

std::size_t PostgresStore::send_events(detail::PgPipeline& pipe, std::span<const OwnedEvent> events,
                                       std::int64_t expires_at_ns) {
  // One statement whatever the count: a column per array. Ids are taken in the events' order.
  using detail::PgArray;
  PgArray ts(PgArray::Type::Int8), kind(PgArray::Type::Text), level(PgArray::Type::Text),
      status(PgArray::Type::Text), run(PgArray::Type::Bytea), worker(PgArray::Type::Bytea),
      component(PgArray::Type::Bytea), stage(PgArray::Type::Bytea), message(PgArray::Type::Bytea),
      elapsed(PgArray::Type::Int8), fields(PgArray::Type::Bytea), pid(PgArray::Type::Int8),
      host(PgArray::Type::Bytea), in_message(PgArray::Type::Bool);
  std::string json;
  for (const OwnedEvent& e : events) {
    json.clear();
    detail::append_json_fields(json, e.fields());
    ts.int64(e.ts_ns);
    kind.bytes(kind_name(e.kind));
    level.bytes(level_json_name(e.level));
    if (e.status == Status::None) {
      status.null();
    } else {
      status.bytes(status_name(e.status));
    }
    run.bytes(e.run);
    worker.bytes(e.worker);
    component.bytes(e.component);
    stage.bytes(e.stage);
    message.bytes(e.message);
    elapsed.int64(e.elapsed_ns);
    fields.bytes(json);
    pid.int64(e.pid);
    host.bytes(e.host);
    in_message.boolean(e.fields_in_message);
  }
  return pipe.send(
      "INSERT INTO events (ts_ns, kind, level, status, run, worker, component, stage, message, "
      "elapsed_ns, fields_json, pid, host, fields_in_message, expires_at_ns) SELECT ts_ns, "
      "kind, level, status, run, worker, component, stage, message, elapsed_ns, fields_json, "
      "pid, host, fields_in_message, $15 FROM unnest($1::int8[], $2::text[], $3::text[], "
      "$4::text[], $5::bytea[], $6::bytea[], $7::bytea[], $8::bytea[], $9::bytea[], "
      "$10::int8[], $11::bytea[], $12::int8[], $13::bytea[], $14::bool[]) AS d(ts_ns, kind, "
      "level, status, run, worker, component, stage, message, elapsed_ns, fields_json, pid, "
      "host, fields_in_message) RETURNING id",
      PgParams()
          .array(ts)
          .array(kind)
          .array(level)
          .array(status)
          .array(run)
          .array(worker)
          .array(component)
          .array(stage)
          .array(message)
          .array(elapsed)
          .array(fields)
          .array(pid)
          .array(host)
          .array(in_message)
          .int64(expires_at_ns));
}

Result<void> PostgresStore::append_events(std::span<const OwnedEvent> events,
                                          std::int64_t expires_at_ns) {
  if (events.empty()) return {};
  const EventsWrite write{events, expires_at_ns, nullptr};
  return this->write(std::span<const EventsWrite>(&write, 1), {});
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

std::size_t PostgresStore::send_batch(detail::PgPipeline& pipe, const BatchRecord& batch,
                                      std::int64_t expires_at_ns) {
  if (batch.key.empty()) throw std::runtime_error("a batch key is empty");
  // A key stored and live at stored_at_ns stays as it is (no row touched); an expired one is
  // replaced. A concurrent write of the same key waits for this transaction on the key's
  // unique index, then finds it.
  return pipe.send(
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
}

void PostgresStore::check_batch(const PgResult& result, const BatchRecord& batch) {
  if (result.affected() == 0) throw std::runtime_error("batch " + batch.key + " is already stored");
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
