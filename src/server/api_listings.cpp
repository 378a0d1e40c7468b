// The listings of executions: GET /api/v1/executions (JSON, in pages) and
// GET /api/v1/executions.csv (every step, streamed).

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/time_text.hpp"
#include "server/api.hpp"
#include "server/api_params.hpp"
#include "stagelog/server/execution_log.hpp"

namespace stagelog::detail {

namespace {

using Json = nlohmann::ordered_json;

constexpr std::size_t kCsvPage = 200;  // Attempts read from the store at a time.

// A text cell a spreadsheet would run as a formula (OWASP's CSV injection advice): one that
// starts with '=', '+', '-', '@', a tab or a CR. It gets a leading "'", which spreadsheets
// show as text. Numbers and timestamps never go through here, so a negative one stays one.
bool formula_like(std::string_view field) {
  return !field.empty() &&
         std::string_view("=+-@\t\r").find(field.front()) != std::string_view::npos;
}

// A CSV text field (RFC 4180): escaped when formula_like, then quoted when it holds a comma,
// a quote, CR or LF; quotes doubled.
void append_csv_field(std::string& out, std::string_view field) {
  const bool escape = formula_like(field);
  if (field.find_first_of(",\"\r\n") == std::string_view::npos) {
    if (escape) out += '\'';
    out += field;
    return;
  }
  out += '"';
  if (escape) out += '\'';
  for (char c : field) {
    if (c == '"') out += '"';
    out += c;
  }
  out += '"';
}

// The rows of one page of attempts: one per step, or one with the step columns empty for an
// attempt without steps.
void append_csv_rows(std::string& out, const std::vector<store::ExecutionSummary>& rows) {
  std::string prefix;
  std::string metadata;
  for (const store::ExecutionSummary& row : rows) {
    const store::AttemptSummary& a = row.attempt;
    prefix.clear();
    append_csv_field(prefix, row.tracking_id);
    prefix += ',';
    prefix += std::to_string(a.n);
    prefix += ',';
    append_csv_field(prefix, a.execution_id);
    prefix += ',';
    append_iso_timestamp(prefix, a.started_at_ns);
    prefix += ',';
    if (a.completed_at_ns) append_iso_timestamp(prefix, *a.completed_at_ns);
    prefix += ',';
    if (a.duration_ms) prefix += std::to_string(*a.duration_ms);
    prefix += ',';
    append_csv_field(prefix, a.final_status);
    prefix += ',';
    metadata.clear();
    append_csv_field(metadata, row.metadata_json);
    auto line = [&](std::size_t n, const Step* step) {
      out += prefix;
      if (step != nullptr) {
        out += std::to_string(n);
        out += ',';
        append_csv_field(out, step->step);
        out += ',';
        append_csv_field(out, step->status);
        out += ',';
        append_iso_timestamp(out, step->timestamp_ns);
        out += ',';
        out += std::to_string((step->timestamp_ns - a.started_at_ns) / 1'000'000);
        out += ',';
        append_csv_field(out, step->message);
        out += ',';
        if (step->error_details) append_csv_field(out, *step->error_details);
      } else {
        out += ",,,,,,";
      }
      out += ',';
      out += metadata;
      out += "\r\n";
    };
    if (row.steps.empty()) line(0, nullptr);
    for (std::size_t i = 0; i < row.steps.size(); ++i) line(i + 1, &row.steps[i]);
  }
}

}  // namespace

ApiResponse Api::list_executions(ApiRequest& req, const RouteMatch&) {
  const std::int64_t now_ns = now();
  auto filters = parse_filters(req, now_ns, /*paging=*/true);
  if (!filters) return error_response(filters.error());
  store::ExecutionQuery& query = filters->query;
  const std::string& canonical_text = filters->canonical;
  auto limit = parse_limit(req);
  if (!limit) return error_response(limit.error());
  if (const std::string* cursor = req.param("cursor")) {
    auto at = parse_cursor(*cursor, canonical_text);
    if (!at) return error_response(at.error());
    query.after = *at;
  }
  query.limit = *limit + 1;  // One more: is there a next page?
  auto rows = store_.list_executions(query, now_ns);
  if (!rows) return read_refused(rows.error());
  bool more = rows->size() > *limit;
  if (more) rows->pop_back();
  Json list = Json::array();
  for (const store::ExecutionSummary& row : *rows) {
    const store::AttemptSummary& a = row.attempt;
    Json item = Json::object();
    item["tracking_id"] = row.tracking_id;
    item["attempt"] = a.n;
    item["execution_id"] = a.execution_id;
    item["started_at"] = iso_timestamp(a.started_at_ns);
    item["completed_at"] = a.completed_at_ns ? Json(iso_timestamp(*a.completed_at_ns)) : Json();
    item["duration_ms"] = a.duration_ms ? Json(*a.duration_ms) : Json();
    item["duration_readable"] =
        a.duration_ms ? Json(server::readable_duration(*a.duration_ms)) : Json();
    item["final_status"] = a.final_status;
    item["total_steps"] = a.step_count;
    Json metadata = Json::parse(row.metadata_json, nullptr, /*allow_exceptions=*/false);
    item["metadata"] = metadata.is_object() ? std::move(metadata) : Json::object();
    list.push_back(std::move(item));
  }
  Json body = Json::object();
  body["success"] = true;
  body["executions"] = std::move(list);
  body["next_cursor"] = more ? Json(make_cursor(rows->back().position, canonical_text)) : Json();
  return json_response(dump_json(body));
}

// One row per step (an attempt without steps: one row with the step columns empty), attempts
// newest first, streamed a page of attempts at a time: memory stays flat whatever the size.
ApiResponse Api::export_csv(ApiRequest& req, const RouteMatch&) {
  const std::int64_t now_ns = now();
  auto filters = parse_filters(req, now_ns, /*paging=*/false);
  if (!filters) return error_response(filters.error());
  struct Export {
    store::ExecutionQuery query;
    std::vector<store::ExecutionSummary> rows;  // The page being written.
    bool header = true;
  };
  auto state = std::make_shared<Export>();
  state->query = std::move(filters->query);
  state->query.limit = kCsvPage;
  state->query.with_steps = true;  // Each page and its steps in one snapshot.
  // The first page is read now: a store that fails is an answer (503 or 500), not a cut-off
  // download.
  auto first = store_.list_executions(state->query, now_ns);
  if (!first) return read_refused(first.error());
  state->rows = std::move(*first);
  ApiResponse response;
  response.content_type = "text/csv; charset=utf-8";
  response.set_header("Content-Disposition", "attachment; filename=\"executions.csv\"");
  response.producer = [this, state, now_ns](std::string& out) {
    if (state->header) {
      out +=
          "tracking_id,attempt,execution_id,started_at,completed_at,duration_ms,"
          "final_status,step_number,step,status,timestamp,time_from_start_ms,message,"
          "error_details,metadata\r\n";
      state->header = false;
    }
    if (state->rows.empty()) return StreamStep::Done;
    append_csv_rows(out, state->rows);
    state->query.after = state->rows.back().position;
    auto next = store_.list_executions(state->query, now_ns);
    if (!next) {
      report("CSV export stopped: " + std::string(next.error().what()));
      return StreamStep::Abort;
    }
    state->rows = std::move(*next);
    return StreamStep::More;
  };
  return response;
}

}  // namespace stagelog::detail
