#pragma once

// The SQL the SQLite store builds per query rather than prepares once: list_executions'
// statement for each shape of ExecutionQuery, and full text as an FTS5 query.

#include <cstdint>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "stagelog/store/store.hpp"
#include "store/sqlite.hpp"

namespace stagelog::detail {

// "time* out" as an FTS5 query that is only ever words: each word quoted ("time"* "out"), so
// that no character of the text is FTS5 syntax. Words are runs of letters, digits and any
// byte of a multi-byte UTF-8 character (unicode61 decides which of those are letters); '*'
// right after a word makes it a prefix. "" when the text has no word.
std::string fts5_query(std::string_view text);

// How list_executions filters on a worker or stage, decided by the store beforehand (it
// counts the steps of that worker or stage): true when it has few steps (or none).
struct ListingPlan {
  bool few_worker_steps = false;
  bool few_stage_steps = false;
};

// list_executions' statement for one query: the SQL of its shape, and its values, every one a
// bound parameter (nothing of the query is ever SQL text). The query must be valid
// (query_error), and with query.text, `fts_words` its fts5_query, not empty.
class ListingQuery {
 public:
  ListingQuery(const store::ExecutionQuery& query, std::string_view fts_words, ListingPlan plan,
               std::int64_t now_ns);

  const std::string& sql() const noexcept { return sql_; }

  // Binds every parameter of a statement prepared from sql(). The statement reads this
  // object's strings: it must outlive the statement's run.
  void bind(Statement& s) const;

  // The listing row the statement is on.
  static store::ExecutionSummary read_row(const Statement& s);

 private:
  using Value = std::variant<std::int64_t, std::string>;
  // The placeholder ("?3") of a new parameter.
  std::string param(Value value);

  std::string sql_;
  std::vector<Value> params_;
};

}  // namespace stagelog::detail
