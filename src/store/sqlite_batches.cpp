// Ingest batch keys: one row per key in the batches table, written in the transaction of the
// batch's events and read back on a connection of its own.

#include "store/sqlite_batches.hpp"

#include <stdexcept>
#include <string>
#include <utility>

namespace stagelog::store {

using detail::ScopedReset;
using detail::Statement;

SqliteStore::BatchStatements::BatchStatements(detail::Database& db)
    : insert_batch(db,
                   "INSERT INTO batches (key, status, body, stored_at_ns, expires_at_ns) VALUES "
                   "(?1, ?2, ?3, ?4, ?5) ON CONFLICT (key) DO UPDATE SET "
                   "status = excluded.status, body = excluded.body, "
                   "stored_at_ns = excluded.stored_at_ns, expires_at_ns = excluded.expires_at_ns "
                   "WHERE batches.expires_at_ns <= excluded.stored_at_ns") {}

SqliteStore::BatchReader::BatchReader(const std::string& path,
                                      std::chrono::milliseconds busy_timeout)
    : db_(path, /*create=*/false),
      select_(db_,
              "SELECT status, body, stored_at_ns FROM batches WHERE key = ?1 AND "
              "expires_at_ns > ?2") {
  sqlite3_busy_timeout(db_.get(), static_cast<int>(busy_timeout.count()));
}

std::optional<BatchRecord> SqliteStore::BatchReader::find(std::string_view key,
                                                          std::int64_t now_ns) {
  std::lock_guard lock(mutex_);
  ScopedReset reset(select_);  // Ends the read transaction the step began.
  select_.bind(1, key).bind(2, now_ns);
  if (!select_.step()) return std::nullopt;
  BatchRecord record;
  record.key = std::string(key);
  record.status = static_cast<int>(select_.int64(0));
  record.body = select_.text(1);
  record.stored_at_ns = select_.int64(2);
  return record;
}

void SqliteStore::put_batch_locked(const BatchRecord& batch, std::int64_t expires_at_ns) {
  if (batch.key.empty()) throw std::runtime_error("a batch key is empty");
  Statement& s = bt_->insert_batch;
  ScopedReset reset(s);
  s.bind(1, std::string_view(batch.key))
      .bind(2, std::int64_t{batch.status})
      .bind(3, std::string_view(batch.body))
      .bind(4, batch.stored_at_ns)
      .bind(5, expires_at_ns)
      .run();
  if (db_->changes() == 0) {
    throw std::runtime_error("batch " + batch.key + " is already stored");
  }
}

Result<std::optional<BatchRecord>> SqliteStore::batch(std::string_view key, std::int64_t now_ns) {
  try {
    return batch_reader_->find(key, now_ns);
  } catch (...) {
    return error("cannot look up batch " + std::string(key));
  }
}

}  // namespace stagelog::store
