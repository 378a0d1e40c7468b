// The listings of executions: GET /api/v1/executions (JSON, in pages), and the exports of
// every step with its custom fields, streamed: GET /api/v1/executions.csv and .jsonl.

#include <algorithm>
#include <array>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/time_text.hpp"
#include "format/format.hpp"
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

// The export's fixed columns, then one per custom step field.
constexpr std::array<std::string_view, 15> kColumns = {
    "tracking_id",  "attempt",       "execution_id", "started_at",
    "completed_at", "duration_ms",   "final_status", "step_number",
    "step",         "status",        "timestamp",    "time_from_start_ms",
    "message",      "error_details", "metadata"};

constexpr std::size_t kMaxFieldColumns = 1000;  // Custom fields an export may have as columns.
constexpr std::size_t kMaxFieldName = 200;      // Bytes of a name in ?fields=.

// The custom step fields an export has as columns (seed 004's retry_attempt, error_code ...):
// their keys and their column names, which are the keys, but "step.<key>" for a key named like
// a fixed column (steps folded from events carry their own duration_ms).
struct FieldColumns {
  std::vector<std::string> keys;
  std::vector<std::string> names;

  void add(const std::string& key) {
    keys.push_back(key);
    bool fixed = std::find(kColumns.begin(), kColumns.end(), key) != kColumns.end();
    names.push_back(fixed ? "step." + key : key);
  }
};

// The step's custom fields as an object; an empty one when its text is not one (never stored).
Json custom_fields(const Step& step) {
  Json custom = Json::parse(step.custom_json, nullptr, /*allow_exceptions=*/false);
  return custom.is_object() ? custom : Json::object();
}

// ?fields=a,b,c: these custom fields as columns, in this order (?fields= with nothing: none).
// Taken out of the request's parameters, which are then the listing's filters. nullopt when
// absent: every field the export's steps hold.
Result<std::optional<FieldColumns>, ApiError> take_fields(ApiRequest& req) {
  if (req.params.count("fields") > 1) return bad_request("fields: given more than once");
  auto it = req.params.find("fields");
  if (it == req.params.end()) return std::optional<FieldColumns>();
  std::string text = std::move(it->second);
  req.params.erase(it);
  FieldColumns columns;
  std::size_t begin = 0;
  while (!text.empty() && begin <= text.size()) {
    std::size_t comma = std::min(text.find(',', begin), text.size());
    std::string key = text.substr(begin, comma - begin);
    begin = comma + 1;
    if (key.empty() || key.size() > kMaxFieldName || invalid_utf8_at(key) != std::string::npos) {
      return bad_request("fields: expected field names of 1 to " + std::to_string(kMaxFieldName) +
                         " bytes of UTF-8, separated by commas, got \"" + text + "\"");
    }
    if (std::find(columns.keys.begin(), columns.keys.end(), key) != columns.keys.end()) {
      return bad_request("fields: \"" + key + "\" is named twice");
    }
    if (columns.keys.size() == kMaxFieldColumns) {
      return bad_request("fields: at most " + std::to_string(kMaxFieldColumns) + " names");
    }
    columns.add(key);
  }
  return std::optional<FieldColumns>(std::move(columns));
}

// A custom field's cell: a string as text (escaped like every text), a number or true / false
// as its JSON text, an object or array as its JSON text (quoted as needed), null as "null".
// An absent field is an empty cell.
void append_csv_value(std::string& out, const Json& value) {
  if (value.is_string()) {
    append_csv_field(out, value.get_ref<const std::string&>());
  } else if (value.is_structured()) {
    append_csv_field(out, dump_json(value));
  } else {
    out += dump_json(value);
  }
}

// The rows of one page of attempts: one per step, or one with the step columns empty for an
// attempt without steps.
void append_csv_rows(std::string& out, const std::vector<store::ExecutionSummary>& rows,
                     const FieldColumns& columns) {
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
      if (!columns.keys.empty()) {
        Json custom =
            step != nullptr && step->custom_json != "{}" ? custom_fields(*step) : Json::object();
        for (const std::string& key : columns.keys) {
          out += ',';
          auto it = custom.find(key);
          if (it != custom.end()) append_csv_value(out, *it);
        }
      }
      out += "\r\n";
    };
    if (row.steps.empty()) line(0, nullptr);
    for (std::size_t i = 0; i < row.steps.size(); ++i) line(i + 1, &row.steps[i]);
  }
}

// The same rows as JSON lines: the CSV's columns as keys, with their JSON types (null for an
// empty cell, metadata as an object), then the custom fields (`columns`, or every field of the
// step when null) under their column names.
void append_jsonl_rows(std::string& out, const std::vector<store::ExecutionSummary>& rows,
                       const FieldColumns* columns) {
  for (const store::ExecutionSummary& row : rows) {
    const store::AttemptSummary& a = row.attempt;
    Json metadata = Json::parse(row.metadata_json, nullptr, /*allow_exceptions=*/false);
    if (!metadata.is_object()) metadata = Json::object();
    auto line = [&](std::size_t n, const Step* step) {
      Json item = Json::object();
      item["tracking_id"] = row.tracking_id;
      item["attempt"] = a.n;
      item["execution_id"] = a.execution_id;
      item["started_at"] = iso_timestamp(a.started_at_ns);
      item["completed_at"] = a.completed_at_ns ? Json(iso_timestamp(*a.completed_at_ns)) : Json();
      item["duration_ms"] = a.duration_ms ? Json(*a.duration_ms) : Json();
      item["final_status"] = a.final_status;
      item["step_number"] = step != nullptr ? Json(n) : Json();
      item["step"] = step != nullptr ? Json(step->step) : Json();
      item["status"] = step != nullptr ? Json(step->status) : Json();
      item["timestamp"] = step != nullptr ? Json(iso_timestamp(step->timestamp_ns)) : Json();
      item["time_from_start_ms"] =
          step != nullptr ? Json((step->timestamp_ns - a.started_at_ns) / 1'000'000) : Json();
      item["message"] = step != nullptr ? Json(step->message) : Json();
      item["error_details"] =
          step != nullptr && step->error_details ? Json(*step->error_details) : Json();
      item["metadata"] = metadata;
      Json custom = step != nullptr ? custom_fields(*step) : Json::object();
      if (columns != nullptr) {
        for (std::size_t i = 0; i < columns->keys.size(); ++i) {
          auto it = custom.find(columns->keys[i]);
          if (it != custom.end()) item[columns->names[i]] = *it;
        }
      } else {
        FieldColumns all;
        for (auto& [key, value] : custom.items()) {
          all.add(key);
          item[all.names.back()] = std::move(value);
        }
      }
      out += dump_json(item);
      out += '\n';
    };
    if (row.steps.empty()) line(0, nullptr);
    for (std::size_t i = 0; i < row.steps.size(); ++i) line(i + 1, &row.steps[i]);
  }
}

// Every custom step field of the attempts `query` lists, in order of first appearance (newest
// attempt first, steps in order, keys in document order), read a page at a time. Also where
// the listing stood when it began: the export then lists from there, so that an attempt
// stored meanwhile (whose fields may not be columns) is not in it.
struct FieldScan {
  FieldColumns columns;
  std::optional<store::Position> before_first;
  bool too_many = false;  // More than kMaxFieldColumns fields; columns has the first ones.
};

Result<FieldScan> scan_fields(store::Store& store, store::ExecutionQuery query,
                              std::int64_t now_ns) {
  FieldScan scan;
  std::set<std::string, std::less<>> seen;
  for (;;) {
    auto page = store.list_executions(query, now_ns);
    if (!page) return page.error();
    if (page->empty()) return scan;
    if (!scan.before_first) {
      const store::Position& first = page->front().position;
      scan.before_first = store::Position{first.ns, first.seq + 1};
    }
    for (const store::ExecutionSummary& row : *page) {
      for (const Step& step : row.steps) {
        if (step.custom_json == "{}") continue;
        const Json custom = custom_fields(step);
        for (auto it = custom.begin(); it != custom.end(); ++it) {
          const std::string& key = it.key();
          if (seen.contains(key)) continue;
          if (seen.size() == kMaxFieldColumns) {
            scan.too_many = true;
            return scan;
          }
          seen.insert(key);
          scan.columns.add(key);
        }
      }
    }
    query.after = page->back().position;
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
// Without ?fields=, a first pass over the attempts finds the custom fields (the columns).
ApiResponse Api::export_csv(ApiRequest& req, const RouteMatch&) {
  return export_rows(req, /*csv=*/true);
}

// The CSV export's rows as JSON lines, every custom field of each step in its row.
ApiResponse Api::export_jsonl(ApiRequest& req, const RouteMatch&) {
  return export_rows(req, /*csv=*/false);
}

ApiResponse Api::export_rows(ApiRequest& req, bool csv) {
  const std::int64_t now_ns = now();
  auto fields = take_fields(req);
  if (!fields) return error_response(fields.error());
  auto filters = parse_filters(req, now_ns, /*paging=*/false);
  if (!filters) return error_response(filters.error());
  struct Export {
    store::ExecutionQuery query;
    std::vector<store::ExecutionSummary> rows;  // The page being written.
    std::optional<FieldColumns> columns;
    bool header = true;
  };
  auto state = std::make_shared<Export>();
  state->query = std::move(filters->query);
  state->query.limit = kCsvPage;
  state->query.with_steps = true;  // Each page and its steps in one snapshot.
  state->columns = std::move(*fields);
  if (csv && !state->columns) {
    auto scan = scan_fields(store_, state->query, now_ns);
    if (!scan) return read_refused(scan.error());
    if (scan->too_many) {
      return error_response(bad_request("the export's steps have more than " +
                                        std::to_string(kMaxFieldColumns) +
                                        " custom fields: choose some with fields=a,b,c"));
    }
    state->columns = std::move(scan->columns);
    if (scan->before_first) state->query.after = scan->before_first;
  }
  // The first page is read now: a store that fails is an answer (503 or 500), not a cut-off
  // download.
  auto first = store_.list_executions(state->query, now_ns);
  if (!first) return read_refused(first.error());
  state->rows = std::move(*first);
  ApiResponse response;
  response.content_type = csv ? "text/csv; charset=utf-8" : "application/x-ndjson";
  response.set_header("Content-Disposition", csv ? "attachment; filename=\"executions.csv\""
                                                 : "attachment; filename=\"executions.jsonl\"");
  response.producer = [this, state, now_ns, csv](std::string& out) {
    if (state->header && csv) {
      for (std::string_view column : kColumns) {
        out += column;
        out += ',';
      }
      out.pop_back();
      for (const std::string& name : state->columns->names) {
        out += ',';
        append_csv_field(out, name);
      }
      out += "\r\n";
    }
    state->header = false;
    if (state->rows.empty()) return StreamStep::Done;
    if (csv) {
      append_csv_rows(out, state->rows, *state->columns);
    } else {
      append_jsonl_rows(out, state->rows, state->columns ? &*state->columns : nullptr);
    }
    state->query.after = state->rows.back().position;
    auto next = store_.list_executions(state->query, now_ns);
    if (!next) {
      report(std::string(csv ? "CSV" : "JSONL") +
             " export stopped: " + std::string(next.error().what()));
      return StreamStep::Abort;
    }
    state->rows = std::move(*next);
    return StreamStep::More;
  };
  return response;
}

}  // namespace stagelog::detail
