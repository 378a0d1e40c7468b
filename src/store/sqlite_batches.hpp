#pragma once

// The SQLite store's ingest batch keys, private to it: the writing connection's statement that
// stores a key, and the connection of its own that looks keys up.

#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "store/sqlite.hpp"
#include "store/sqlite_store.hpp"

namespace stagelog::store {

struct SqliteStore::BatchStatements {
  explicit BatchStatements(detail::Database& db);

  detail::Statement insert_batch;
};

// Opened on the store's file once its schema is there; one lookup at a time.
class SqliteStore::BatchReader {
 public:
  // Throws SqliteError.
  BatchReader(const std::string& path, std::chrono::milliseconds busy_timeout);

  // Throws SqliteError.
  std::optional<BatchRecord> find(std::string_view key, std::int64_t now_ns);

 private:
  std::mutex mutex_;
  detail::Database db_;
  detail::Statement select_;
};

}  // namespace stagelog::store
