#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "stagelog/error.hpp"

namespace stagelog::detail {

// Thrown by the wrappers below; SqliteStore turns it into a Result error or, when opening,
// into stagelog::Error. `code` is SQLite's extended result code.
struct SqliteError {
  int code;
  std::string message;
};

// What a failure means for the server (507 for a full disk, 503 for I/O or a busy file):
// SQLITE_FULL is DiskFull; SQLITE_IOERR*, READONLY, CANTOPEN, CORRUPT and NOTADB are Io;
// SQLITE_BUSY and SQLITE_LOCKED (after the busy timeout) are Busy. `code` may be extended.
ErrorKind sqlite_error_kind(int code) noexcept;

// One connection (lnav style: RAII, closed by the destructor). Not thread-safe: the owner
// serializes calls.
class Database {
 public:
  // Opens (creating when `create`) the file. Throws SqliteError.
  Database(const std::string& path, bool create);
  ~Database();
  Database(const Database&) = delete;
  Database& operator=(const Database&) = delete;

  sqlite3* get() const noexcept { return db_; }
  // Runs statements without results or parameters. Throws SqliteError.
  void exec(const char* sql);
  std::int64_t changes() const noexcept { return sqlite3_changes64(db_); }
  // Throws SqliteError with the connection's message for `rc`.
  [[noreturn]] void fail(int rc) const;

 private:
  sqlite3* db_ = nullptr;
};

// A prepared statement, finalized by the destructor. Bind with 1-based indexes; step() until
// it returns false; reset() before running it again.
class Statement {
 public:
  Statement(Database& db, std::string_view sql);
  ~Statement();
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  Statement& bind(int i, std::int64_t v);
  // As TEXT, every byte kept (NUL included). Not copied: the text must stay alive and
  // unchanged until the statement is reset (ScopedReset), which every caller's does.
  Statement& bind(int i, std::string_view v);
  Statement& bind(int i, const std::optional<std::int64_t>& v);
  Statement& bind(int i, const std::optional<std::string>& v);
  Statement& bind_null(int i);
  // As a BLOB; not copied either.
  Statement& bind_blob(int i, std::string_view v);

  // True while there is a row to read; false when done. Throws SqliteError.
  bool step();
  // Runs a statement that returns no rows.
  void run() {
    while (step()) {
    }
  }
  void reset() noexcept;  // Also clears the bindings.

  bool is_null(int col) const noexcept;
  std::int64_t int64(int col) const noexcept;
  std::string text(int col) const;
  std::string blob(int col) const;
  std::optional<std::int64_t> opt_int64(int col) const noexcept;
  std::optional<std::string> opt_text(int col) const;

 private:
  Database& db_;
  sqlite3_stmt* stmt_ = nullptr;
};

// Resets a statement (kept prepared for reuse) when the scope ends, however it ends.
class ScopedReset {
 public:
  explicit ScopedReset(Statement& s) noexcept : s_(s) {}
  ~ScopedReset() { s_.reset(); }
  ScopedReset(const ScopedReset&) = delete;
  ScopedReset& operator=(const ScopedReset&) = delete;

 private:
  Statement& s_;
};

// A transaction rolled back by the destructor unless commit() ran. A write transaction is
// BEGIN IMMEDIATE: writers take the write lock up front, so two writers cannot deadlock
// upgrading a read lock. A read transaction gives several statements one snapshot.
class Transaction {
 public:
  enum class Mode { Read, Write };
  explicit Transaction(Database& db, Mode mode = Mode::Write);
  ~Transaction();
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;
  void commit();

 private:
  Database& db_;
  bool done_ = false;
};

}  // namespace stagelog::detail
