#include "store/sqlite_query.hpp"

#include <utility>

#include "store/store_common.hpp"

namespace stagelog::detail {

std::string fts5_query(std::string_view text) {
  std::string out;
  auto is_word = [](unsigned char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c >= 0x80;
  };
  for (std::size_t i = 0; i < text.size();) {
    if (!is_word(static_cast<unsigned char>(text[i]))) {
      ++i;
      continue;
    }
    std::size_t end = i;
    while (end < text.size() && is_word(static_cast<unsigned char>(text[end]))) ++end;
    if (!out.empty()) out += ' ';
    out += '"';
    out.append(text.substr(i, end - i));
    out += '"';
    if (end < text.size() && text[end] == '*') out += '*';
    i = end;
  }
  return out;
}

ListingQuery::ListingQuery(const store::ExecutionQuery& query, std::string_view fts_words,
                           ListingPlan plan, std::int64_t now_ns) {
  // What read_row reads, in order.
  sql_ =
      "SELECT id, tracking_id, attempt, execution_id, started_at_ns, completed_at_ns, "
      "duration_ms, final_status, steps_count, metadata_json FROM executions "
      "WHERE expires_at_ns > " +
      param(now_ns);
  if (query.final_status) {
    sql_ += *query.final_status == kUnknownFinalStatus
                ? " AND final_status IS NULL"
                : " AND final_status = " + param(*query.final_status);
  }
  if (query.since_ns) sql_ += " AND started_at_ns >= " + param(*query.since_ns);
  if (query.until_ns) sql_ += " AND started_at_ns < " + param(*query.until_ns);
  // A worker or stage of many steps: walk the attempts newest first and probe the index for
  // each (the first page is found early). One of few steps (or none): take its attempts from
  // the index and sort those, rather than walk every attempt to find them.
  auto step_filter = [&](const char* column, const std::string& value, bool few) {
    std::string p = param(value);
    if (few) {
      sql_ += std::string(" AND id IN (SELECT execution FROM step_facts WHERE ") + column + " = " +
              p + ")";
    } else {
      sql_ += std::string(" AND EXISTS (SELECT 1 FROM step_facts f WHERE f.") + column + " = " + p +
              " AND f.execution = executions.id)";
    }
  };
  if (query.worker) step_filter("worker", *query.worker, plan.few_worker_steps);
  if (query.stage) step_filter("stage", *query.stage, plan.few_stage_steps);
  if (query.text) {
    sql_ +=
        " AND id IN (SELECT f.execution FROM step_text JOIN step_facts f ON f.id = "
        "step_text.rowid WHERE step_text MATCH " +
        param(std::string(fts_words)) + ")";
  }
  for (const auto& [key, value] : query.metadata) {
    // The value as text: a string as it is, anything else as its JSON text.
    std::string path = param("$.\"" + key + '"');
    std::string extract = "json_extract(metadata_json, " + path + ")";
    sql_ += " AND (CASE json_type(metadata_json, " + path +
            ") WHEN 'true' THEN 'true' WHEN 'false' THEN 'false' WHEN 'null' THEN 'null' "
            "WHEN 'integer' THEN CAST(" +
            extract + " AS TEXT) WHEN 'real' THEN CAST(" + extract + " AS TEXT) ELSE " + extract +
            " END) = " + param(value);
  }
  if (query.after) {
    std::string ns = param(query.after->ns);
    std::string seq = param(query.after->seq);
    sql_ += " AND (started_at_ns, id) < (" + ns + ", " + seq + ")";
  }
  sql_ += " ORDER BY started_at_ns DESC, id DESC LIMIT " + param(row_limit(query.limit));
}

std::string ListingQuery::param(Value value) {
  params_.push_back(std::move(value));
  std::string p = "?";  // Not "?" + ...: GCC 12 warns falsely (-Wrestrict) in release.
  p += std::to_string(params_.size());
  return p;
}

void ListingQuery::bind(Statement& s) const {
  int i = 1;
  for (const Value& v : params_) {
    if (const auto* n = std::get_if<std::int64_t>(&v)) {
      s.bind(i++, *n);
    } else {
      s.bind(i++, std::string_view(std::get<std::string>(v)));
    }
  }
}

store::ExecutionSummary ListingQuery::read_row(const Statement& s) {
  store::ExecutionSummary e;
  e.position = store::Position{s.int64(4), s.int64(0)};
  e.tracking_id = s.text(1);
  e.attempt.n = static_cast<int>(s.int64(2));
  e.attempt.execution_id = s.text(3);
  e.attempt.started_at_ns = s.int64(4);
  e.attempt.completed_at_ns = s.opt_int64(5);
  e.attempt.duration_ms = s.opt_int64(6);
  e.attempt.final_status = s.is_null(7) ? std::string(kUnknownFinalStatus) : s.text(7);
  e.attempt.step_count = static_cast<std::size_t>(s.int64(8));
  e.metadata_json = s.text(9);
  return e;
}

}  // namespace stagelog::detail
