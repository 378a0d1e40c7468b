// The routes of one execution: seed 004's execution log, the document, its attempts and its
// raw events; and the two writes, POST /api/v1/events and PUT /api/v1/executions/{id}.

#include <charconv>
#include <memory>
#include <optional>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "base/time_text.hpp"
#include "format/format.hpp"
#include "server/api.hpp"
#include "server/api_params.hpp"
#include "stagelog/execution.hpp"
#include "stagelog/server/execution_log.hpp"

namespace stagelog::detail {

namespace {

using Json = nlohmann::ordered_json;

}  // namespace

ApiResponse Api::execution_log(ApiRequest&, const RouteMatch& match) {
  const std::string& id = match.id;
  auto latest = store_.latest(id, now());
  if (!latest) return read_refused(latest.error());
  if (!*latest) return error_response(not_found(id));
  return json_response(server::execution_log_response(**latest));
}

ApiResponse Api::get_execution(ApiRequest& req, const RouteMatch& match) {
  const std::string& id = match.id;
  std::optional<int> attempt;
  if (const std::string* text = req.param("attempt")) {
    int n = 0;
    auto [end, ec] = std::from_chars(text->data(), text->data() + text->size(), n);
    if (ec != std::errc() || end != text->data() + text->size() || n < 1) {
      return error_response(
          bad_request("attempt: expected a whole number from 1, got \"" + *text + "\""));
    }
    attempt = n;
  }
  auto found = attempt ? store_.attempt(id, *attempt, now()) : store_.latest(id, now());
  if (!found) return read_refused(found.error());
  if (!*found) {
    ApiError error = not_found(id);
    if (attempt) error.extra["attempt"] = *attempt;
    return error_response(error);
  }
  return json_response(execution_document(**found));
}

ApiResponse Api::attempts(ApiRequest&, const RouteMatch& match) {
  const std::string& id = match.id;
  auto list = store_.attempts(id, now());
  if (!list) return read_refused(list.error());
  if (list->empty()) return error_response(not_found(id));
  Json attempts = Json::array();
  for (const store::AttemptSummary& a : *list) {
    Json item = Json::object();
    item["attempt"] = a.n;
    item["execution_id"] = a.execution_id;
    item["started_at"] = iso_timestamp(a.started_at_ns);
    item["completed_at"] = a.completed_at_ns ? Json(iso_timestamp(*a.completed_at_ns)) : Json();
    item["duration_ms"] = a.duration_ms ? Json(*a.duration_ms) : Json();
    item["final_status"] = a.final_status;
    item["total_steps"] = a.step_count;
    attempts.push_back(std::move(item));
  }
  Json body = Json::object();
  body["success"] = true;
  body["tracking_id"] = id;
  body["attempts"] = std::move(attempts);
  return json_response(dump_json(body));
}

ApiResponse Api::execution_events(ApiRequest& req, const RouteMatch& match) {
  const std::string& id = match.id;
  for (const auto& [name, value] : req.params) {
    if (name != "limit" && name != "cursor") {
      return error_response(
          bad_request("unknown parameter \"" + name + "\" (supported: limit, cursor)"));
    }
  }
  const std::string canonical = "events&" + id;
  auto limit = parse_limit(req);
  if (!limit) return error_response(limit.error());
  std::optional<store::Position> after;
  if (const std::string* cursor = req.param("cursor")) {
    auto at = parse_cursor(*cursor, canonical);
    if (!at) return error_response(at.error());
    after = *at;
  }
  std::size_t n = *limit;
  auto page = store_.event_page(id, after, n + 1, now());
  if (!page) return read_refused(page.error());
  bool more = page->size() > n;
  if (more) page->pop_back();
  // The events as JSONL writes them, one object each, written straight into the body.
  std::string body = R"({"success":true,"tracking_id":)";
  append_json_string(body, id);
  body += R"(,"events":[)";
  for (std::size_t i = 0; i < page->size(); ++i) {
    if (i > 0) body += ',';
    format_json((*page)[i].event.view(), body);
    body.pop_back();  // Its newline.
  }
  body += R"(],"next_cursor":)";
  if (more) {
    append_json_string(body, make_cursor(page->back().position, canonical));
  } else {
    body += "null";
  }
  body += '}';
  return json_response(std::move(body));
}

// ---- Writes ----------------------------------------------------------------------------------

// A body over kIngestPieceBytes is parsed and stored piece by piece (take_piece), each piece in
// its own store write, so that the request holds its body and one piece's events, not the
// events of the whole body. With a key, piece i is stored under the derived key "<key>.<i>" (a
// '.' is in no sender's key) and the last piece under the key itself, with the answer for the
// whole batch: a retry after a failure part way skips the pieces stored and stores the rest
// once, and a repeat of a batch stored whole is answered as the first time.
ApiResponse Api::post_events(ApiRequest& req, const RouteMatch&) {
  std::int64_t expires_at_ns = expiry(req).value();  // admit() checked it.
  auto key = batch_key(req);
  if (!key) return error_response(key.error());
  const std::string body = std::move(req.body);
  std::string_view rest = body;

  std::size_t accepted = 0;
  std::size_t rejected_count = 0;
  Json rejected = Json::array();
  std::size_t lines = 0;         // Lines read.
  std::size_t stored_lines = 0;  // Lines whose events are stored: the pieces before this one.
  for (std::size_t piece = 0;; ++piece) {
    ParsedBatch batch = parse_batch(take_piece(rest), options_.max_event_bytes, lines + 1);
    lines += batch.lines;
    accepted += batch.events.size();
    rejected_count += batch.rejected_count;
    for (RejectedLine& r : batch.rejected) {
      if (rejected.size() == kMaxRejectedListed) break;
      Json item = Json::object();
      item["line"] = r.line;
      item["error"] = std::move(r.error);
      rejected.push_back(std::move(item));
    }
    const bool last = rest.empty();
    if (!last) {
      if (!batch.events.empty()) {
        std::optional<store::BatchRecord> record;
        if (*key)
          record =
              store::BatchRecord{(*key)->text() + "." + std::to_string(piece), 200, "{}", now()};
        auto stored = store_piece(batch.events, expires_at_ns, record ? &*record : nullptr);
        if (!stored) return partial_write_refused(stored.error(), stored_lines, key->has_value());
      }
      stored_lines = lines;
      continue;
    }

    Json answer = Json::object();
    answer["accepted"] = accepted;
    answer["rejected"] = std::move(rejected);
    if (rejected_count > answer["rejected"].size()) {
      answer["rejected_not_listed"] = rejected_count - answer["rejected"].size();
    }
    if (accepted == 0) {
      return error_response(ApiError{
          ApiErrorKind::BadRequest,
          rejected_count == 0 ? "no event in the request body" : "no valid event in the batch",
          std::move(answer)});
    }
    // With a key, the answer is kept with the events, and a repeat of the batch gets it again.
    std::optional<store::BatchRecord> record;
    if (*key) record = store::BatchRecord{(*key)->text(), 200, dump_json(answer), now()};
    auto stored = store_piece(batch.events, expires_at_ns, record ? &*record : nullptr);
    if (!stored) return partial_write_refused(stored.error(), stored_lines, key->has_value());
    if (*stored) {  // A repeat: stored before, answered as then.
      ApiResponse response = json_response(std::move((*stored)->body), (*stored)->status);
      response.set_header("Idempotent-Replayed", "true");
      return response;
    }
    health_.write_succeeded();
    return json_response(record ? std::move(record->body) : dump_json(answer));
  }
}

Result<std::optional<store::BatchRecord>> Api::store_piece(std::vector<OwnedEvent>& events,
                                                           std::int64_t expires_at_ns,
                                                           const store::BatchRecord* record) {
  Result<std::optional<store::BatchRecord>> stored = std::optional<store::BatchRecord>();
  if (record != nullptr) {
    stored = writer_.add_batch(events, expires_at_ns, *record);
  } else if (auto written = writer_.add_events(events, expires_at_ns); !written) {
    stored = written.error();
  }
  if (stored && !*stored && !events.empty()) {
    // Stored now (not a repeat): the events go to the live state as they are, the stream
    // keeping them, not a copy.
    auto shared = std::make_shared<const std::vector<OwnedEvent>>(std::move(events));
    live_.observe(shared);
    if (auto engine = alert_engine()) engine->observe(*shared);
  }
  return stored;
}

void Api::observe_stored(std::vector<OwnedEvent> events) {
  if (events.empty()) return;
  auto shared = std::make_shared<const std::vector<OwnedEvent>>(std::move(events));
  live_.observe(shared, /*here=*/false);
  if (auto engine = alert_engine()) engine->observe(*shared);
}

ApiResponse Api::partial_write_refused(const Error& error, std::size_t stored_lines, bool keyed) {
  if (stored_lines == 0) {
    return write_refused(error, "cannot store the events; nothing of this batch was stored");
  }
  std::string message = "cannot store the events; lines 1 to " + std::to_string(stored_lines) +
                        " of this batch were stored, the rest was not";
  message += keyed ? " (sent again with the same Idempotency-Key, the batch stores the rest once)"
                   : " (without an Idempotency-Key, sending the batch again stores them twice)";
  Json extra = Json::object();
  extra["stored_lines"] = stored_lines;
  return write_refused(error, std::move(message), std::move(extra));
}

// The tracking id comes from the URL; the document may leave it out (then it is the URL's)
// or repeat it, but a different one is refused: a PUT to one id never writes another.
ApiResponse Api::put_execution(ApiRequest& req, const RouteMatch& match) {
  const std::string& id = match.id;
  std::int64_t expires_at_ns = expiry(req).value();  // admit() checked it.
  if (invalid_utf8_at(id) != std::string_view::npos) {
    return error_response(bad_request("the tracking id in the URL is not valid UTF-8"));
  }
  std::string why;
  auto execution = parse_execution(req.body, id, &why);
  if (!execution) return error_response(bad_request("not an execution log: " + why));
  if (execution->tracking_id != id) {
    Json extra = Json::object();
    extra["tracking_id"] = id;
    extra["document_tracking_id"] = execution->tracking_id;
    return error_response(ApiError{ApiErrorKind::BadRequest,
                                   "the document's tracking_id does not match the URL's",
                                   std::move(extra)});
  }
  std::string execution_id = execution->execution_id;
  auto stored = writer_.put_execution(std::move(*execution), expires_at_ns);
  if (!stored) return write_refused(stored.error(), "cannot store the execution log");
  health_.write_succeeded();
  Json answer = Json::object();
  answer["success"] = true;
  answer["tracking_id"] = id;
  answer["execution_id"] = execution_id;
  return json_response(dump_json(answer));
}

}  // namespace stagelog::detail
