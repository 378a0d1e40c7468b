#pragma once

// A thin RAII layer over libpq for the PostgreSQL store, private to it: a connection, the
// parameters of one statement (binary: int8, bytea, text) and its result (read in binary).
// Nothing here is thread-safe: the store gives each connection to one thread at a time.

#include <libpq-fe.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "stagelog/error.hpp"

namespace stagelog::detail {

// Thrown by the wrappers below; PostgresStore turns it into a Result error or, when opening,
// into stagelog::Error. `message` is libpq's, on one line.
struct PgError {
  std::string message;
  ErrorKind kind = ErrorKind::Other;
};

// A one-dimensional array parameter (int8[], bytea[], text[] or bool[]), built element by
// element in PostgreSQL's binary array format: what lets one statement carry any number of
// rows (INSERT ... SELECT ... FROM unnest($1::int8[], $2::bytea[], ...)) under PostgreSQL's
// limit of 65535 parameters, parsed and planned once.
class PgArray {
 public:
  enum class Type { Int8, Bytea, Text, Bool };
  explicit PgArray(Type type) noexcept : type_(type) {}

  // Each adds one element; the element's type must be the array's (text: valid UTF-8 without
  // NUL).
  PgArray& int64(std::int64_t v);
  PgArray& int64(const std::optional<std::int64_t>& v);
  PgArray& bytes(std::string_view v);
  PgArray& bytes(const std::string& v) { return bytes(std::string_view(v)); }
  PgArray& bytes(const std::optional<std::string>& v);
  PgArray& boolean(bool v);
  PgArray& null();
  std::size_t size() const noexcept { return count_; }

 private:
  friend class PgParams;
  Type type_;
  std::string elements_;  // Each as its length (int4, -1 for NULL) and bytes.
  std::uint32_t count_ = 0;
  bool has_null_ = false;
};

// The parameters of one statement, $1, $2, ... in the order they are added. Every value is
// sent in binary: int8 as itself, bytea as its bytes (any byte, NUL included), text as UTF-8.
class PgParams {
 public:
  PgParams& int64(std::int64_t v);
  PgParams& int64(const std::optional<std::int64_t>& v);
  PgParams& bytes(std::string_view v);
  PgParams& bytes(const std::string& v) { return bytes(std::string_view(v)); }
  PgParams& bytes(const std::optional<std::string>& v);
  PgParams& text(std::string_view v);                        // Must be valid UTF-8 without NUL.
  PgParams& bytes_array(const std::vector<std::string>& v);  // bytea[]
  PgParams& array(const PgArray& v);
  PgParams& null();

  // "$n" of the parameter added last.
  std::string last() const { return "$" + std::to_string(values_.size()); }
  std::size_t size() const noexcept { return values_.size(); }

 private:
  friend class PgConnection;
  friend class PgPipeline;
  // The values as libpq's PQexecParams and PQsendQueryParams take them, pointing into this.
  struct Wire {
    std::vector<const char*> values;
    std::vector<int> lengths;
    std::vector<int> formats;
  };
  Wire wire() const;
  std::vector<Oid> types_;
  std::vector<std::string> values_;
  std::vector<bool> null_;
};

// A statement's result, cleared by the destructor. Columns are read as the binary format
// gives them: int64() takes int8 (or int4), bytes() any text or bytea column.
class PgResult {
 public:
  explicit PgResult(PGresult* r) noexcept : r_(r) {}
  ~PgResult() { PQclear(r_); }
  PgResult(PgResult&& other) noexcept : r_(other.r_) { other.r_ = nullptr; }
  PgResult& operator=(PgResult&&) = delete;
  PgResult(const PgResult&) = delete;
  PgResult& operator=(const PgResult&) = delete;

  int rows() const noexcept { return PQntuples(r_); }
  bool is_null(int row, int col) const noexcept { return PQgetisnull(r_, row, col) != 0; }
  std::int64_t int64(int row, int col) const noexcept;
  std::optional<std::int64_t> opt_int64(int row, int col) const noexcept;
  bool boolean(int row, int col) const noexcept;
  std::string bytes(int row, int col) const;
  std::optional<std::string> opt_bytes(int row, int col) const;
  // Rows an INSERT, UPDATE or DELETE touched.
  std::int64_t affected() const noexcept;

 private:
  friend class PgConnection;
  friend class PgPipeline;
  PGresult* r_;
};

// One connection (closed by the destructor).
class PgConnection {
 public:
  // Connects. Throws PgError with libpq's message.
  explicit PgConnection(const std::string& conninfo);
  ~PgConnection();
  PgConnection(const PgConnection&) = delete;
  PgConnection& operator=(const PgConnection&) = delete;

  bool ok() const noexcept { return PQstatus(conn_) == CONNECTION_OK; }
  // PQreset: connects again with the same parameters. Throws PgError when it cannot.
  void reset();

  // Runs one statement with parameters; results come in binary. Throws PgError.
  PgResult exec(const std::string& sql, const PgParams& params = {});
  // Runs statements without parameters (schema scripts). Throws PgError.
  void script(const char* sql);

  // For LISTEN (store/postgres_feed.cpp): the socket to poll() for input, then read what
  // arrived (throws PgError when the connection is lost) and the notifications' payloads.
  int socket() const noexcept { return PQsocket(conn_); }
  void consume_input();
  std::vector<std::string> notifications();

  // "user@host:port/db", for messages (never the password).
  std::string where() const;

 private:
  friend class PgPipeline;
  [[noreturn]] void fail(const PGresult* r) const;
  PGconn* conn_ = nullptr;
};

// Statements sent without waiting for each one's answer (libpq's pipeline mode): a write of
// many statements costs one round trip per sync(), not one per statement. The server runs
// them in order, as exec() would; after one fails, the rest up to the sync are skipped.
// Entered by the constructor, left by the destructor (which first reads what is left), so a
// PgTransaction made before the pipeline rolls back or commits after it as usual. Or the
// transaction goes through the pipeline too (begin(), commit()): then the destructor rolls
// back a transaction that began but did not commit.
class PgPipeline {
 public:
  // Throws PgError when the connection cannot enter pipeline mode.
  explicit PgPipeline(PgConnection& c);
  ~PgPipeline();
  PgPipeline(const PgPipeline&) = delete;
  PgPipeline& operator=(const PgPipeline&) = delete;

  // Queues one statement (results in binary, as exec()'s); returns its number, for result()
  // after the next sync(). Throws PgError when it cannot be sent.
  std::size_t send(const std::string& sql, const PgParams& params = {});
  // Sends what is queued and waits for the results of every statement sent since the last
  // sync. Throws PgError for the first statement that failed, having read all of them (the
  // connection stays usable; the transaction is aborted).
  void sync();
  // The result of statement `number` (send's), once a sync() read it. Throws
  // std::out_of_range before.
  const PgResult& result(std::size_t number) const { return results_.at(number); }
  // Whether a sync() read the result of statement `number`.
  bool read(std::size_t number) const noexcept { return number < results_.size(); }

  // Queue BEGIN; queue COMMIT and sync, so that the transaction costs no round trip of its
  // own. Throw PgError as send() and sync().
  void begin();
  void commit();

 private:
  PgConnection& c_;
  std::size_t sent_ = 0;  // Statements sent since the last sync.
  bool in_transaction_ = false;
  std::vector<PgResult> results_;
};

// A transaction rolled back by the destructor unless commit() ran.
class PgTransaction {
 public:
  enum class Mode { Write, Snapshot };  // Snapshot: REPEATABLE READ, READ ONLY.
  explicit PgTransaction(PgConnection& c, Mode mode = Mode::Write);
  ~PgTransaction();
  PgTransaction(const PgTransaction&) = delete;
  PgTransaction& operator=(const PgTransaction&) = delete;
  void commit();

 private:
  PgConnection& c_;
  bool done_ = false;
};

}  // namespace stagelog::detail
