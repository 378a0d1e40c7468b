#pragma once

// The SQLite store's schema: its tables and indexes, the version the file carries
// (SqliteStore::kSchemaVersion) and the steps that migrate an older file to it.

#include <cstdint>
#include <string>

#include "store/sqlite.hpp"

namespace stagelog::detail {

// The schema version of the file `db` has open, read without writing anything: 0 for a new
// file. Throws stagelog::Error (`where` and why) for another application's database or a
// version newer than SqliteStore::kSchemaVersion, and SqliteError for a file that is not SQLite.
std::int64_t stored_schema_version(Database& db, const std::string& where);

// Creates the schema in a new file or migrates an older one to SqliteStore::kSchemaVersion, in
// the caller's write transaction. Reads the version again first: another process may have
// created or migrated the file since. Throws as stored_schema_version, or SqliteError.
void create_or_migrate(Database& db, const std::string& where);

}  // namespace stagelog::detail
