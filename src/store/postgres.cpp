#include "store/postgres.hpp"

#include <charconv>
#include <cstdlib>
#include <cstring>
#include <utility>

namespace stagelog::detail {

namespace {

constexpr Oid kInt8 = 20;
constexpr Oid kBytea = 17;
constexpr Oid kText = 25;
constexpr Oid kBool = 16;
constexpr Oid kByteaArray = 1001;
constexpr Oid kInt8Array = 1016;
constexpr Oid kTextArray = 1009;
constexpr Oid kBoolArray = 1000;

void append_int4(std::string& out, std::uint32_t n) {
  for (int shift = 24; shift >= 0; shift -= 8) out += static_cast<char>((n >> shift) & 0xff);
}

std::string big_endian(std::uint64_t v) {
  std::string out(8, '\0');
  for (int i = 7; i >= 0; --i) {
    out[static_cast<std::size_t>(i)] = static_cast<char>(v & 0xff);
    v >>= 8;
  }
  return out;
}

// libpq's messages end in a newline and may span lines ("ERROR: ...\nDETAIL: ...", or a
// connection failure's "...\n\tIs the server running ...?"): one line, its lines joined by
// "; " and runs of blanks made one space.
std::string one_line(const char* message) {
  std::string out;
  const char* gap = nullptr;  // What goes before the next visible character.
  for (const char* p = message != nullptr ? message : ""; *p != '\0'; ++p) {
    if (*p == '\n') {
      if (!out.empty()) gap = "; ";
      continue;
    }
    if (*p == '\t' || *p == ' ') {
      if (!out.empty() && gap == nullptr) gap = " ";
      continue;
    }
    if (gap != nullptr) out += gap;
    gap = nullptr;
    out += *p;
  }
  return out.empty() ? std::string("unknown error") : out;
}

// What a failed statement means for the server. A connection that is gone, or a server that
// ends sessions or takes none (08: connection exception; 57P01 admin shutdown, 57P02 crash
// shutdown, 57P03 cannot connect now, 57P05 idle session timeout) is Unavailable: a restart or a
// failover, over once a new connection gets through (503 meanwhile, for reads and writes). A
// server out of disk is DiskFull (507); out of other resources or failing its own I/O, Io (503);
// a serialization failure, a deadlock or a lock not available is Busy. Anything else (a bad
// statement, a constraint) is Other: a bug, 500.
ErrorKind kind_of(const PGconn* conn, const PGresult* r) {
  if (PQstatus(conn) != CONNECTION_OK) return ErrorKind::Unavailable;
  const char* state = r != nullptr ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : nullptr;
  if (state == nullptr) return ErrorKind::Unavailable;  // No answer from the server at all.
  std::string_view s(state);
  if (s.starts_with("08") || s == "57P01" || s == "57P02" || s == "57P03" || s == "57P05") {
    return ErrorKind::Unavailable;
  }
  if (s == "53100") return ErrorKind::DiskFull;
  if (s.starts_with("57P") || s.starts_with("53") || s.starts_with("58")) return ErrorKind::Io;
  if (s == "40001" || s == "40P01" || s == "55P03") return ErrorKind::Busy;
  return ErrorKind::Other;
}

void no_notices(void*, const char*) {}

}  // namespace

PgParams& PgParams::int64(std::int64_t v) {
  types_.push_back(kInt8);
  values_.push_back(big_endian(static_cast<std::uint64_t>(v)));
  null_.push_back(false);
  return *this;
}

PgParams& PgParams::int64(const std::optional<std::int64_t>& v) {
  if (!v) {
    types_.push_back(kInt8);
    values_.emplace_back();
    null_.push_back(true);
    return *this;
  }
  return int64(*v);
}

PgParams& PgParams::bytes(std::string_view v) {
  types_.push_back(kBytea);
  values_.emplace_back(v);
  null_.push_back(false);
  return *this;
}

PgParams& PgParams::bytes(const std::optional<std::string>& v) {
  if (!v) {
    types_.push_back(kBytea);
    values_.emplace_back();
    null_.push_back(true);
    return *this;
  }
  return bytes(std::string_view(*v));
}

PgParams& PgParams::text(std::string_view v) {
  types_.push_back(kText);
  values_.emplace_back(v);
  null_.push_back(false);
  return *this;
}

PgParams& PgParams::bytes_array(const std::vector<std::string>& v) {
  // PostgreSQL's binary array: dimensions, has-nulls, element type, then per dimension its
  // length and lower bound, then each element as length and bytes.
  auto int4 = [](std::string& out, std::uint32_t n) {
    for (int shift = 24; shift >= 0; shift -= 8) out += static_cast<char>((n >> shift) & 0xff);
  };
  std::string out;
  int4(out, v.empty() ? 0 : 1);
  int4(out, 0);
  int4(out, kBytea);
  if (!v.empty()) {
    int4(out, static_cast<std::uint32_t>(v.size()));
    int4(out, 1);
    for (const std::string& e : v) {
      int4(out, static_cast<std::uint32_t>(e.size()));
      out += e;
    }
  }
  types_.push_back(kByteaArray);
  values_.push_back(std::move(out));
  null_.push_back(false);
  return *this;
}

PgParams& PgParams::array(const PgArray& v) {
  // As bytes_array: dimensions, has-nulls, element type, length and lower bound, elements.
  Oid element = kInt8;
  Oid type = kInt8Array;
  switch (v.type_) {
    case PgArray::Type::Int8:
      break;
    case PgArray::Type::Bytea:
      element = kBytea;
      type = kByteaArray;
      break;
    case PgArray::Type::Text:
      element = kText;
      type = kTextArray;
      break;
    case PgArray::Type::Bool:
      element = kBool;
      type = kBoolArray;
      break;
  }
  std::string out;
  out.reserve(20 + v.elements_.size());
  append_int4(out, v.count_ == 0 ? 0 : 1);
  append_int4(out, v.has_null_ ? 1 : 0);
  append_int4(out, element);
  if (v.count_ > 0) {
    append_int4(out, v.count_);
    append_int4(out, 1);
    out += v.elements_;
  }
  types_.push_back(type);
  values_.push_back(std::move(out));
  null_.push_back(false);
  return *this;
}

PgArray& PgArray::int64(std::int64_t v) {
  append_int4(elements_, 8);
  elements_ += big_endian(static_cast<std::uint64_t>(v));
  ++count_;
  return *this;
}

PgArray& PgArray::int64(const std::optional<std::int64_t>& v) { return v ? int64(*v) : null(); }

PgArray& PgArray::bytes(std::string_view v) {
  append_int4(elements_, static_cast<std::uint32_t>(v.size()));
  elements_ += v;
  ++count_;
  return *this;
}

PgArray& PgArray::bytes(const std::optional<std::string>& v) {
  return v ? bytes(std::string_view(*v)) : null();
}

PgArray& PgArray::boolean(bool v) {
  append_int4(elements_, 1);
  elements_ += static_cast<char>(v ? 1 : 0);
  ++count_;
  return *this;
}

PgArray& PgArray::null() {
  append_int4(elements_, 0xffffffffu);  // -1: NULL.
  has_null_ = true;
  ++count_;
  return *this;
}

PgParams& PgParams::null() {
  types_.push_back(0);
  values_.emplace_back();
  null_.push_back(true);
  return *this;
}

std::int64_t PgResult::int64(int row, int col) const noexcept {
  const auto* p = reinterpret_cast<const unsigned char*>(PQgetvalue(r_, row, col));
  int n = PQgetlength(r_, row, col);
  if (n == 4) {
    std::uint32_t v = 0;
    for (int i = 0; i < 4; ++i) v = (v << 8) | p[i];
    return static_cast<std::int32_t>(v);
  }
  std::uint64_t v = 0;
  for (int i = 0; i < n && i < 8; ++i) v = (v << 8) | p[i];
  return static_cast<std::int64_t>(v);
}

std::optional<std::int64_t> PgResult::opt_int64(int row, int col) const noexcept {
  if (is_null(row, col)) return std::nullopt;
  return int64(row, col);
}

bool PgResult::boolean(int row, int col) const noexcept {
  return PQgetlength(r_, row, col) == 1 && PQgetvalue(r_, row, col)[0] != 0;
}

std::string PgResult::bytes(int row, int col) const {
  return std::string(PQgetvalue(r_, row, col), static_cast<std::size_t>(PQgetlength(r_, row, col)));
}

std::optional<std::string> PgResult::opt_bytes(int row, int col) const {
  if (is_null(row, col)) return std::nullopt;
  return bytes(row, col);
}

std::int64_t PgResult::affected() const noexcept {
  const char* n = PQcmdTuples(r_);
  std::int64_t count = 0;
  if (n != nullptr) std::from_chars(n, n + std::strlen(n), count);
  return count;
}

PgConnection::PgConnection(const std::string& conninfo) {
  // Defaults the conninfo (and libpq's environment, for connect_timeout) may override: a server
  // that does not answer (a failover, a dropped route) fails a connect within 10 s, and a
  // connection to one that vanished is found dead by TCP keepalives within a minute, rather
  // than holding a request for the system's defaults (minutes to hours).
  std::vector<const char*> keys;
  std::vector<const char*> values;
  const char* timeout = std::getenv("PGCONNECT_TIMEOUT");
  if (timeout == nullptr || *timeout == '\0') {
    keys.push_back("connect_timeout");
    values.push_back("10");
  }
  for (auto [key, value] :
       {std::pair{"keepalives_idle", "30"}, std::pair{"keepalives_interval", "10"},
        std::pair{"keepalives_count", "3"}}) {
    keys.push_back(key);
    values.push_back(value);
  }
  keys.push_back("dbname");  // Expanded: the conninfo's own settings override those above.
  values.push_back(conninfo.c_str());
  keys.push_back(nullptr);
  values.push_back(nullptr);
  conn_ = PQconnectdbParams(keys.data(), values.data(), /*expand_dbname=*/1);
  if (conn_ == nullptr) throw PgError{"out of memory", ErrorKind::Other};
  if (PQstatus(conn_) != CONNECTION_OK) {
    // No SQLSTATE comes with a failed connect: refused, timed out, or the server starting or
    // stopping (57P03) all read as a server not reachable now.
    PgError e{one_line(PQerrorMessage(conn_)), ErrorKind::Unavailable};
    PQfinish(conn_);
    conn_ = nullptr;
    throw e;
  }
  PQsetNoticeProcessor(conn_, &no_notices, nullptr);
}

PgConnection::~PgConnection() { PQfinish(conn_); }

void PgConnection::reset() {
  PQreset(conn_);
  if (PQstatus(conn_) != CONNECTION_OK) {
    throw PgError{"cannot connect again: " + one_line(PQerrorMessage(conn_)),
                  ErrorKind::Unavailable};
  }
}

void PgConnection::fail(const PGresult* r) const {
  std::string message = one_line(r != nullptr ? PQresultErrorMessage(r) : PQerrorMessage(conn_));
  if (r != nullptr && message == "unknown error") message = one_line(PQerrorMessage(conn_));
  throw PgError{std::move(message), kind_of(conn_, r)};
}

PgParams::Wire PgParams::wire() const {
  const std::size_t n = values_.size();
  Wire w{std::vector<const char*>(n), std::vector<int>(n), std::vector<int>(n, 1)};
  for (std::size_t i = 0; i < n; ++i) {
    w.values[i] = null_[i] ? nullptr : values_[i].data();
    w.lengths[i] = static_cast<int>(values_[i].size());
  }
  return w;
}

PgResult PgConnection::exec(const std::string& sql, const PgParams& params) {
  const PgParams::Wire w = params.wire();
  PgResult r(PQexecParams(conn_, sql.c_str(), static_cast<int>(params.size()), params.types_.data(),
                          w.values.data(), w.lengths.data(), w.formats.data(), /*resultFormat=*/1));
  ExecStatusType status = PQresultStatus(r.r_);
  if (status != PGRES_TUPLES_OK && status != PGRES_COMMAND_OK) fail(r.r_);
  return r;
}

void PgConnection::script(const char* sql) {
  PgResult r(PQexec(conn_, sql));
  ExecStatusType status = PQresultStatus(r.r_);
  if (status != PGRES_TUPLES_OK && status != PGRES_COMMAND_OK) fail(r.r_);
}

void PgConnection::consume_input() {
  if (PQconsumeInput(conn_) == 0) {
    throw PgError{one_line(PQerrorMessage(conn_)), ErrorKind::Unavailable};
  }
}

std::vector<std::string> PgConnection::notifications() {
  std::vector<std::string> out;
  while (PGnotify* n = PQnotifies(conn_)) {
    out.emplace_back(n->extra != nullptr ? n->extra : "");
    PQfreemem(n);
  }
  return out;
}

std::string PgConnection::where() const {
  std::string out;
  const char* user = PQuser(conn_);
  const char* host = PQhost(conn_);
  const char* port = PQport(conn_);
  const char* db = PQdb(conn_);
  if (user != nullptr && *user != '\0') out += std::string(user) + "@";
  out += host != nullptr ? host : "";
  if (port != nullptr && *port != '\0') out += std::string(":") + port;
  out += "/";
  out += db != nullptr ? db : "";
  return out;
}

PgPipeline::PgPipeline(PgConnection& c) : c_(c) {
  if (PQenterPipelineMode(c_.conn_) != 1) {
    throw PgError{"cannot enter pipeline mode: " + one_line(PQerrorMessage(c_.conn_)),
                  c_.ok() ? ErrorKind::Other : ErrorKind::Io};
  }
}

PgPipeline::~PgPipeline() {
  if (!c_.ok()) return;  // Nothing more can be read or sent.
  try {
    if (sent_ > 0) sync();  // An error left statements unread: read them, and drop them.
  } catch (const PgError&) {
  }
  PQexitPipelineMode(c_.conn_);
  if (in_transaction_ && c_.ok() && PQtransactionStatus(c_.conn_) != PQTRANS_IDLE) {
    try {
      c_.script("ROLLBACK");
    } catch (const PgError&) {  // The connection is gone: so is the transaction.
    }
  }
}

void PgPipeline::begin() {
  send("BEGIN");
  in_transaction_ = true;
}

void PgPipeline::commit() {
  send("COMMIT");
  sync();
  in_transaction_ = false;
}

std::size_t PgPipeline::send(const std::string& sql, const PgParams& params) {
  const PgParams::Wire w = params.wire();
  if (PQsendQueryParams(c_.conn_, sql.c_str(), static_cast<int>(params.size()),
                        params.types_.data(), w.values.data(), w.lengths.data(), w.formats.data(),
                        /*resultFormat=*/1) != 1) {
    throw PgError{one_line(PQerrorMessage(c_.conn_)), c_.ok() ? ErrorKind::Other : ErrorKind::Io};
  }
  return results_.size() + sent_++;
}

void PgPipeline::sync() {
  if (sent_ == 0) return;
  const std::size_t expected = results_.size() + sent_;
  sent_ = 0;
  auto lost = [&] {
    return PgError{"the pipeline ended early: " + one_line(PQerrorMessage(c_.conn_)),
                   ErrorKind::Io};
  };
  if (PQpipelineSync(c_.conn_) != 1) throw lost();
  // Each statement's result, then a NULL that ends it; last the sync's own result. After a
  // statement fails, those after it up to the sync come back as PGRES_PIPELINE_ABORTED.
  std::vector<PgResult>& out = results_;
  out.reserve(expected);
  std::optional<PgError> error;
  int nulls = 0;  // In a row: two mean nothing more will come.
  for (;;) {
    PGresult* r = PQgetResult(c_.conn_);
    if (r == nullptr) {
      if (++nulls == 2 || !c_.ok()) throw error ? *error : lost();
      continue;
    }
    nulls = 0;
    ExecStatusType status = PQresultStatus(r);
    if (status == PGRES_PIPELINE_SYNC) {
      PQclear(r);
      break;
    }
    out.emplace_back(r);
    if (status != PGRES_TUPLES_OK && status != PGRES_COMMAND_OK &&
        status != PGRES_PIPELINE_ABORTED && !error) {
      try {
        c_.fail(r);
      } catch (PgError& e) {
        error = std::move(e);
      }
    }
  }
  if (error) throw *error;
  if (out.size() != expected) throw lost();
}

PgTransaction::PgTransaction(PgConnection& c, Mode mode) : c_(c) {
  c_.script(mode == Mode::Write ? "BEGIN" : "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
}

PgTransaction::~PgTransaction() {
  if (done_ || !c_.ok()) return;
  try {
    c_.script("ROLLBACK");
  } catch (const PgError&) {  // The connection is gone: so is the transaction.
  }
}

void PgTransaction::commit() {
  c_.script("COMMIT");
  done_ = true;
}

}  // namespace stagelog::detail
