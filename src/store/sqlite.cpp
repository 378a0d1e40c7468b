#include "sqlite.hpp"

namespace stagelog::detail {

ErrorKind sqlite_error_kind(int code) noexcept {
  switch (code & 0xff) {
    case SQLITE_FULL:
      return ErrorKind::DiskFull;
    case SQLITE_IOERR:
    case SQLITE_READONLY:
    case SQLITE_CANTOPEN:
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      return ErrorKind::Io;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return ErrorKind::Busy;
    default:
      return ErrorKind::Other;
  }
}

Database::Database(const std::string& path, bool create) {
  int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_EXRESCODE;
  if (create) flags |= SQLITE_OPEN_CREATE;
  int rc = sqlite3_open_v2(path.c_str(), &db_, flags, nullptr);
  if (rc != SQLITE_OK) {
    std::string message = db_ != nullptr ? sqlite3_errmsg(db_) : sqlite3_errstr(rc);
    sqlite3_close_v2(db_);
    db_ = nullptr;
    throw SqliteError{rc, message};
  }
}

Database::~Database() { sqlite3_close_v2(db_); }

void Database::exec(const char* sql) {
  int rc = sqlite3_exec(db_, sql, nullptr, nullptr, nullptr);
  if (rc != SQLITE_OK) fail(rc);
}

void Database::fail(int rc) const {
  // The connection's message is more precise ("no such table: x") when it is about rc.
  std::string message = sqlite3_extended_errcode(db_) == rc ? sqlite3_errmsg(db_) : "";
  if (message.empty()) message = sqlite3_errstr(rc);
  throw SqliteError{rc, message};
}

Statement::Statement(Database& db, std::string_view sql) : db_(db) {
  int rc = sqlite3_prepare_v3(db.get(), sql.data(), static_cast<int>(sql.size()),
                              SQLITE_PREPARE_PERSISTENT, &stmt_, nullptr);
  if (rc != SQLITE_OK) db.fail(rc);
}

Statement::~Statement() { sqlite3_finalize(stmt_); }

Statement& Statement::bind(int i, std::int64_t v) {
  int rc = sqlite3_bind_int64(stmt_, i, v);
  if (rc != SQLITE_OK) db_.fail(rc);
  return *this;
}

Statement& Statement::bind(int i, std::string_view v) {
  // SQLITE_STATIC: no copy (ingest binds a dozen strings per event); see the header.
  int rc = sqlite3_bind_text64(stmt_, i, v.data(), v.size(), SQLITE_STATIC, SQLITE_UTF8);
  if (rc != SQLITE_OK) db_.fail(rc);
  return *this;
}

Statement& Statement::bind_blob(int i, std::string_view v) {
  int rc = sqlite3_bind_blob64(stmt_, i, v.data(), v.size(), SQLITE_STATIC);
  if (rc != SQLITE_OK) db_.fail(rc);
  return *this;
}

Statement& Statement::bind(int i, const std::optional<std::int64_t>& v) {
  return v ? bind(i, *v) : bind_null(i);
}

Statement& Statement::bind(int i, const std::optional<std::string>& v) {
  return v ? bind(i, std::string_view(*v)) : bind_null(i);
}

Statement& Statement::bind_null(int i) {
  int rc = sqlite3_bind_null(stmt_, i);
  if (rc != SQLITE_OK) db_.fail(rc);
  return *this;
}

bool Statement::step() {
  int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  db_.fail(rc);
}

void Statement::reset() noexcept {
  sqlite3_reset(stmt_);
  sqlite3_clear_bindings(stmt_);
}

bool Statement::is_null(int col) const noexcept {
  return sqlite3_column_type(stmt_, col) == SQLITE_NULL;
}

std::int64_t Statement::int64(int col) const noexcept { return sqlite3_column_int64(stmt_, col); }

std::string Statement::text(int col) const {
  const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, col));
  int n = sqlite3_column_bytes(stmt_, col);  // After column_text: the length of that text.
  return p != nullptr ? std::string(p, static_cast<std::size_t>(n)) : std::string();
}

std::string Statement::blob(int col) const {
  const auto* p = static_cast<const char*>(sqlite3_column_blob(stmt_, col));
  int n = sqlite3_column_bytes(stmt_, col);
  return p != nullptr ? std::string(p, static_cast<std::size_t>(n)) : std::string();
}

std::optional<std::int64_t> Statement::opt_int64(int col) const noexcept {
  if (is_null(col)) return std::nullopt;
  return int64(col);
}

std::optional<std::string> Statement::opt_text(int col) const {
  if (is_null(col)) return std::nullopt;
  return text(col);
}

Transaction::Transaction(Database& db, Mode mode) : db_(db) {
  db_.exec(mode == Mode::Write ? "BEGIN IMMEDIATE" : "BEGIN");
}

Transaction::~Transaction() {
  if (!done_) sqlite3_exec(db_.get(), "ROLLBACK", nullptr, nullptr, nullptr);
}

void Transaction::commit() {
  db_.exec("COMMIT");
  done_ = true;
}

}  // namespace stagelog::detail
