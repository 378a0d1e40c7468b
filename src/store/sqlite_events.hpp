#pragma once

// The SQLite store's raw events, private to it: the prepared statements of its events table
// (sqlite_events.cpp says how an event is stored).

#include <string>
#include <vector>

#include "store/sqlite.hpp"
#include "store/sqlite_store.hpp"

namespace stagelog::store {

struct SqliteStore::EventStatements {
  explicit EventStatements(detail::Database& db);

  detail::Statement insert_event;
  detail::Statement insert_events;  // Several rows: kEventsPerInsert (sqlite_events.cpp).
  std::vector<std::string> fields;  // The fields' JSON of the rows being inserted.
  detail::Statement select_events;
  detail::Statement select_events_after;
};

}  // namespace stagelog::store
