// Seed-004 execution logs: the document, the GET response, and executions folded from events.

#include "stagelog/server/execution.hpp"

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <limits>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "core/clock.hpp"
#include "format/format.hpp"
#include "stagelog/parse.hpp"

namespace stagelog::server {

namespace {

// Ordered: metadata and custom step fields keep the document's key order.
using Json = nlohmann::ordered_json;

constexpr std::int64_t kNsPerMs = 1'000'000;
// Deeper documents are rejected: nlohmann's dump() recurses, and no execution log nests this far.
constexpr int kMaxDepth = 64;
constexpr std::array<std::string_view, 4> kStatuses = {"completed", "failed", "in_progress",
                                                       "skipped"};
// Keys the document itself uses; other top-level keys are metadata.
constexpr std::array<std::string_view, 6> kDocumentKeys = {
    "tracking_id", "execution_id", "started_at", "completed_at", "duration_ms", "steps"};
// Keys the response adds besides those: metadata with these names is left out of it.
constexpr std::array<std::string_view, 3> kResponseKeys = {"duration_readable", "total_steps",
                                                           "final_status"};
// Keys of a step; its other keys are custom fields.
constexpr std::array<std::string_view, 5> kStepKeys = {"step", "timestamp", "status", "message",
                                                       "error_details"};
// The two metadata keys seed 004's Pages function names, in its order: the response puts them
// first, then the rest of the metadata in document order.
constexpr std::array<std::string_view, 2> kSeedMetadata = {"company", "tier"};

template <std::size_t N>
bool contains(const std::array<std::string_view, N>& keys, std::string_view key) {
  return std::find(keys.begin(), keys.end(), key) != keys.end();
}

std::string dump(const Json& j) { return j.dump(-1, ' ', false, Json::error_handler_t::replace); }

// Floors to the millisecond: floor_ms(-1) is -1, not 0.
std::int64_t floor_ms(std::int64_t ns) {
  std::int64_t q = ns / kNsPerMs;
  if (ns % kNsPerMs < 0) --q;
  return q;
}

// A timestamp as the document keeps it: at or after the epoch, whole milliseconds.
std::int64_t document_ns(std::int64_t ns) { return ns <= 0 ? 0 : floor_ms(ns) * kNsPerMs; }

std::string timestamp_text(std::int64_t ns) {
  std::string out;
  detail::append_timestamp(out, ns);
  return out;
}

// The text as valid UTF-8: each invalid sequence becomes U+FFFD, as the JSON writers do.
std::string valid_utf8(std::string_view text) {
  if (std::all_of(text.begin(), text.end(), [](char c) { return (c & 0x80) == 0; })) {
    return std::string(text);
  }
  std::string literal;
  detail::append_json_string(literal, text);  // Replaces invalid UTF-8; always valid JSON.
  return Json::parse(literal).get<std::string>();
}

// For error messages: a value from the input, quoted, escaped, and cut short when long.
std::string quote(std::string_view text) {
  constexpr std::size_t kMax = 60;
  std::string out;
  detail::append_json_string(out, text.substr(0, kMax));
  if (text.size() > kMax) out.insert(out.size() - 1, "...");
  return out;
}

std::string a_type(const Json& j) {
  switch (j.type()) {
    case Json::value_t::null:
      return "null";
    case Json::value_t::boolean:
      return "a boolean";
    case Json::value_t::number_integer:
    case Json::value_t::number_unsigned:
    case Json::value_t::number_float:
      return "a number";
    case Json::value_t::string:
      return "a string";
    case Json::value_t::array:
      return "an array";
    case Json::value_t::object:
      return "an object";
    default:
      return "an unknown value";
  }
}

// ---- Parsing ---------------------------------------------------------------------------------

class Rejected : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A JSON path for error messages: tracking_id, steps[2].status, metadata["a b"].
void append_key(std::string& path, std::string_view key) {
  bool plain = !key.empty() && std::all_of(key.begin(), key.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
  });
  if (plain) {
    if (!path.empty()) path += '.';
    path += key;
  } else {
    path += '[';
    path += quote(key);
    path += ']';
  }
}

// Follows nlohmann's parser callbacks to know where it is (for the message when the JSON is
// bad), and rejects duplicate keys and deep nesting while parsing.
class Tracker {
 public:
  bool on_event(int depth, nlohmann::detail::parse_event_t event, Json& parsed) {
    using E = nlohmann::detail::parse_event_t;
    switch (event) {
      case E::object_start:
      case E::array_start:
        if (depth >= kMaxDepth) {
          throw Rejected(prefix(where()) + "nested deeper than " + std::to_string(kMaxDepth) +
                         " levels");
        }
        frames_.push_back(Frame{event == E::array_start, 0, {}, false, {}});
        break;
      case E::key: {
        Frame& f = frames_.back();
        f.key = parsed.get<std::string>();
        if (!f.keys.insert(f.key).second) {
          f.has_key = false;
          throw Rejected(prefix(where()) + "duplicate key " + quote(f.key));
        }
        f.has_key = true;
        break;
      }
      case E::object_end:
      case E::array_end:
        frames_.pop_back();
        element_done();
        break;
      case E::value:
        element_done();
        break;
    }
    return true;
  }

  // Where the parser is: "steps[1].message", "" at the top, or the object when it is between
  // a value and the next key.
  std::string where() const {
    std::string path;
    for (const Frame& f : frames_) {
      if (f.array) {
        path += '[' + std::to_string(f.index) + ']';
      } else if (f.has_key) {
        append_key(path, f.key);
      }
    }
    return path;
  }

  static std::string prefix(const std::string& path) { return path.empty() ? "" : path + ": "; }

 private:
  struct Frame {
    bool array;
    std::size_t index;  // Arrays: elements done so far.
    std::string key;    // Objects: the key whose value is being read, when has_key.
    bool has_key;
    std::set<std::string, std::less<>> keys;
  };

  void element_done() {
    if (frames_.empty()) return;
    Frame& f = frames_.back();
    if (f.array) {
      ++f.index;
    } else {
      f.has_key = false;
    }
  }

  std::vector<Frame> frames_;
};

Json parse_document(std::string_view text) {
  Tracker tracker;
  try {
    return Json::parse(
        text,
        [&tracker](int depth, nlohmann::detail::parse_event_t event, Json& parsed) {
          return tracker.on_event(depth, event, parsed);
        },
        true);
  } catch (const Json::parse_error& ex) {
    // "[json.exception.parse_error.101] parse error at line 1, column 2: ..." without the id.
    std::string_view what = ex.what();
    if (auto end = what.find("] "); what.starts_with('[') && end != std::string_view::npos) {
      what.remove_prefix(end + 2);
    }
    std::string where = tracker.where();
    // The message quotes the bytes last read, which may be the invalid UTF-8 it reports.
    throw Rejected(valid_utf8("not valid JSON" + (where.empty() ? "" : " at " + where) + ": " +
                              std::string(what)));
  }
}

std::int64_t timestamp_value(const Json& j, const std::string& path) {
  if (!j.is_string()) {
    throw Rejected(path +
                   ": expected a UTC timestamp string like \"2024-01-15T10:30:00.000Z\", got " +
                   a_type(j));
  }
  const auto& text = j.get_ref<const std::string&>();
  auto ns = parse_timestamp(text);
  if (!ns) {
    throw Rejected(path +
                   ": not a UTC timestamp like \"2024-01-15T10:30:00.000Z\": " + quote(text));
  }
  if (*ns < 0) throw Rejected(path + ": before 1970-01-01: " + quote(text));
  return document_ns(*ns);
}

// A string, or null for "absent" when null_ok.
std::optional<std::string> string_value(const Json& j, const std::string& path, bool null_ok) {
  if (null_ok && j.is_null()) return std::nullopt;
  if (!j.is_string()) {
    throw Rejected(path + ": expected a string" + (null_ok ? " or null" : "") + ", got " +
                   a_type(j));
  }
  return j.get<std::string>();
}

Step parse_step(const Json& j, std::size_t index) {
  std::string path = "steps[" + std::to_string(index) + "]";
  if (!j.is_object()) throw Rejected(path + ": expected an object, got " + a_type(j));
  Step step;
  Json custom = Json::object();
  bool have_step = false;
  bool have_timestamp = false;
  bool have_status = false;
  for (const auto& [key, value] : j.items()) {
    std::string key_path = path;
    append_key(key_path, key);
    if (key == "step") {
      step.step = *string_value(value, key_path, false);
      if (step.step.empty()) throw Rejected(key_path + ": empty step name");
      have_step = true;
    } else if (key == "timestamp") {
      step.timestamp_ns = timestamp_value(value, key_path);
      have_timestamp = true;
    } else if (key == "status") {
      step.status = *string_value(value, key_path, false);
      if (!contains(kStatuses, step.status)) {
        throw Rejected(key_path + ": unknown status " + quote(step.status) +
                       " (expected completed, failed, in_progress or skipped)");
      }
      have_status = true;
    } else if (key == "message") {
      step.message = string_value(value, key_path, true).value_or("");
    } else if (key == "error_details") {
      step.error_details = string_value(value, key_path, true);
    } else {
      custom[key] = value;
    }
  }
  if (!have_step) throw Rejected(path + ": missing \"step\" (the step's name)");
  if (!have_timestamp) throw Rejected(path + ": missing \"timestamp\"");
  if (!have_status) throw Rejected(path + ": missing \"status\"");
  step.custom_json = dump(custom);
  return step;
}

Execution parse_checked(std::string_view text, std::string_view default_tracking_id) {
  Json doc = parse_document(text);
  if (!doc.is_object()) throw Rejected("expected a JSON object, got " + a_type(doc));
  Execution out;
  Json metadata = Json::object();
  bool have_tracking_id = false;
  bool have_execution_id = false;
  bool have_started_at = false;
  const Json* steps = nullptr;
  for (const auto& [key, value] : doc.items()) {
    if (key == "tracking_id") {
      out.tracking_id = *string_value(value, key, false);
      if (out.tracking_id.empty()) throw Rejected("tracking_id: empty");
      have_tracking_id = true;
    } else if (key == "execution_id") {
      out.execution_id = *string_value(value, key, false);
      have_execution_id = true;
    } else if (key == "started_at") {
      if (!value.is_null()) {
        out.started_at_ns = timestamp_value(value, key);
        have_started_at = true;
      }
    } else if (key == "completed_at") {
      if (!value.is_null()) out.completed_at_ns = timestamp_value(value, key);
    } else if (key == "duration_ms") {
      if (value.is_number_unsigned()) {
        auto ms = value.get<std::uint64_t>();
        if (ms > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
          throw Rejected("duration_ms: too large: " + value.dump());
        }
        out.duration_ms = static_cast<std::int64_t>(ms);
      } else if (value.is_number_integer()) {  // A negative one: unsigned ones came first.
        throw Rejected("duration_ms: expected a non-negative integer, got " + value.dump());
      } else if (value.is_number_float()) {
        throw Rejected("duration_ms: expected a non-negative integer, got " + value.dump());
      } else if (!value.is_null()) {
        throw Rejected("duration_ms: expected a non-negative integer, got " + a_type(value));
      }
    } else if (key == "steps") {
      if (!value.is_array()) throw Rejected("steps: expected an array, got " + a_type(value));
      steps = &value;
    } else {
      metadata[key] = value;
    }
  }
  if (!have_tracking_id) {
    if (default_tracking_id.empty()) throw Rejected("tracking_id: missing");
    out.tracking_id = std::string(default_tracking_id);
  }
  if (steps == nullptr) throw Rejected("steps: missing");
  out.steps.reserve(steps->size());
  for (std::size_t i = 0; i < steps->size(); ++i) out.steps.push_back(parse_step((*steps)[i], i));
  if (!have_started_at) {
    if (out.steps.empty()) throw Rejected("started_at: missing, and no step to take it from");
    out.started_at_ns = out.steps.front().timestamp_ns;
  }
  if (!have_execution_id) {
    out.execution_id = new_execution_id(detail::realtime_ns());
  }
  out.metadata_json = dump(metadata);
  return out;
}

// The object a metadata_json or custom_json holds; an empty one if it holds anything else.
Json object_of(const std::string& text) {
  Json j = Json::parse(text, nullptr, false);
  return j.is_object() ? j : Json::object();
}

// ---- Folding ---------------------------------------------------------------------------------

Json field_json(const FieldValue& value) {
  return std::visit(
      [](const auto& v) -> Json {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, std::string_view>) {
          return valid_utf8(v);
        } else if constexpr (std::is_same_v<T, double>) {
          return std::isfinite(v) ? Json(v) : Json(nullptr);
        } else {
          return v;
        }
      },
      value);
}

std::optional<std::string_view> step_status(Status status) {
  switch (status) {
    case Status::Starting:
    case Status::InProgress:
      return "in_progress";
    case Status::Completed:
      return "completed";
    case Status::Failed:
      return "failed";
    case Status::Skipped:
      return "skipped";
    case Status::None:
    case Status::Running:  // A "still running" update: the in_progress step already says so.
      break;
  }
  return std::nullopt;
}

// A step from a stage, node, nested run or log event: error_details from the field of that
// name, else a failure's message; the other fields are the step's custom fields.
Step make_step(const Event& event, std::string_view name, std::string_view status) {
  Step step;
  step.step = valid_utf8(name);
  step.timestamp_ns = document_ns(event.ts_ns);
  step.status = std::string(status);
  step.message = valid_utf8(event.message);
  bool ends_or_starts = event.status == Status::Starting || event.status == Status::Completed ||
                        event.status == Status::Failed || event.status == Status::Skipped;
  if (step.message.empty() && event.kind == Kind::Stage && ends_or_starts) {
    // A stage event carries no text of its own: say what the seed's stage line says after
    // "Stage: NAME - ", so that a step reads "Complete (13.2s)" rather than nothing.
    detail::append_stage_status(event, step.message);
  }
  // Who ran the step and, at its end, how long it took: the step index's worker filter and
  // stage statistics read these (an event field of the same name wins). Written as text ahead
  // of the fields' object rather than through it: ingest folds every stage event this way.
  std::string own;  // "worker":...,"duration_ms":..., without braces.
  bool named_alike = false;
  for (const Field& f : event.fields) named_alike |= f.key == "worker" || f.key == "duration_ms";
  Json custom = Json::object();
  if (!event.worker.empty()) {
    if (named_alike) {
      custom["worker"] = valid_utf8(event.worker);
    } else {
      own += R"("worker":)";
      detail::append_json_string(own, valid_utf8(event.worker));
    }
  }
  if (event.elapsed_ns && status != "in_progress") {
    if (named_alike) {
      custom["duration_ms"] = *event.elapsed_ns / 1'000'000;
    } else {
      if (!own.empty()) own += ',';
      own += R"("duration_ms":)" + std::to_string(*event.elapsed_ns / 1'000'000);
    }
  }
  for (const Field& f : event.fields) {
    if (f.key == "error_details") {
      const auto* text = std::get_if<std::string_view>(&f.value);
      step.error_details = text != nullptr ? valid_utf8(*text) : dump(field_json(f.value));
    } else if (!contains(kStepKeys, f.key)) {
      custom[valid_utf8(f.key)] = field_json(f.value);
    }
  }
  if (!step.error_details && status == "failed" && !event.message.empty()) {
    step.error_details = step.message;
  }
  step.custom_json = dump(custom);
  if (!own.empty()) {
    bool empty = step.custom_json == "{}";
    step.custom_json.insert(1, empty ? own : own + ',');
  }
  return step;
}

void add_metadata(Execution& execution, const Event& event) {
  if (event.fields.empty()) return;
  Json metadata = object_of(execution.metadata_json);
  for (const Field& f : event.fields) {
    if (!contains(kDocumentKeys, f.key)) metadata[valid_utf8(f.key)] = field_json(f.value);
  }
  execution.metadata_json = dump(metadata);
}

}  // namespace

// ---- Public functions ------------------------------------------------------------------------

std::optional<Execution> parse_execution(std::string_view json, std::string* error) {
  return parse_execution(json, std::string_view(), error);
}

std::optional<Execution> parse_execution(std::string_view json,
                                         std::string_view default_tracking_id, std::string* error) {
  try {
    return parse_checked(json, default_tracking_id);
  } catch (const Rejected& ex) {
    if (error != nullptr) *error = ex.what();
    return std::nullopt;
  }
}

std::string execution_document(const Execution& execution) {
  Json doc = Json::object();
  doc["tracking_id"] = execution.tracking_id;
  doc["execution_id"] = execution.execution_id;
  const Json metadata = object_of(execution.metadata_json);  // Not a temporary: items() views it.
  for (const auto& [key, value] : metadata.items()) {
    if (!contains(kDocumentKeys, key)) doc[key] = value;
  }
  doc["started_at"] = timestamp_text(execution.started_at_ns);
  if (execution.completed_at_ns) doc["completed_at"] = timestamp_text(*execution.completed_at_ns);
  if (execution.duration_ms) doc["duration_ms"] = *execution.duration_ms;
  Json steps = Json::array();
  for (const Step& s : execution.steps) {
    Json step = Json::object();
    step["step"] = s.step;
    step["timestamp"] = timestamp_text(s.timestamp_ns);
    step["status"] = s.status;
    step["message"] = s.message;
    if (s.error_details) step["error_details"] = *s.error_details;
    const Json custom = object_of(s.custom_json);
    for (const auto& [key, value] : custom.items()) {
      if (!contains(kStepKeys, key)) step[key] = value;
    }
    steps.push_back(std::move(step));
  }
  doc["steps"] = std::move(steps);
  return dump(doc);
}

std::string execution_log_response(const Execution& execution) {
  Json data = Json::object();
  data["tracking_id"] = execution.tracking_id;
  data["execution_id"] = execution.execution_id;
  Json metadata = object_of(execution.metadata_json);
  for (std::string_view key : kSeedMetadata) {
    if (auto it = metadata.find(key); it != metadata.end()) data[std::string(key)] = *it;
  }
  for (const auto& [key, value] : metadata.items()) {
    if (!contains(kDocumentKeys, key) && !contains(kResponseKeys, key) &&
        !contains(kSeedMetadata, key)) {
      data[key] = value;
    }
  }
  data["started_at"] = timestamp_text(execution.started_at_ns);
  data["completed_at"] =
      execution.completed_at_ns ? Json(timestamp_text(*execution.completed_at_ns)) : Json(nullptr);
  data["duration_ms"] = execution.duration_ms ? Json(*execution.duration_ms) : Json(nullptr);
  data["duration_readable"] =
      execution.duration_ms ? Json(readable_duration(*execution.duration_ms)) : Json(nullptr);
  data["total_steps"] = execution.steps.size();
  data["final_status"] = final_status(execution);
  Json steps = Json::array();
  for (const Step& s : execution.steps) {
    Json step = Json::object();
    step["step"] = s.step;
    step["status"] = s.status;
    step["timestamp"] = timestamp_text(s.timestamp_ns);
    step["message"] = s.message;
    step["time_from_start"] = time_from_start(execution.started_at_ns, s.timestamp_ns);
    // `step.error_details || null`: an empty string is null too.
    step["error_details"] =
        s.error_details && !s.error_details->empty() ? Json(*s.error_details) : Json(nullptr);
    steps.push_back(std::move(step));
  }
  data["steps"] = std::move(steps);
  Json response = Json::object();
  response["success"] = true;
  response["data"] = std::move(data);
  return dump(response);
}

// Rounding: each form rounds half up at its own precision, and a value that rounds up to the
// next form's threshold is written in that form, so no form shows an impossible reading:
//   below 1 s:  whole milliseconds                 999 -> "999ms"
//   below 1 m:  tenths of a second                 1000 -> "1.0s", 59949 -> "59.9s"
//   below 1 h:  whole seconds, as minutes+seconds  59950 -> "1m 0s" (not "60.0s")
//   above:      whole seconds, as h+m+s            3599999 -> "1h 0m 0s", 3725000 -> "1h 2m 5s"
// A negative duration is the positive one with a '-'.
std::string readable_duration(std::int64_t ms) {
  std::string sign = ms < 0 ? "-" : "";
  // In unsigned arithmetic so that INT64_MIN and the rounding of INT64_MAX do not overflow.
  std::uint64_t v = ms < 0 ? 0 - static_cast<std::uint64_t>(ms) : static_cast<std::uint64_t>(ms);
  if (v < 1000) return sign + std::to_string(v) + "ms";
  std::uint64_t tenths = v / 100 + (v % 100 >= 50 ? 1 : 0);
  if (tenths < 600) {
    return sign + std::to_string(tenths / 10) + "." + std::to_string(tenths % 10) + "s";
  }
  std::uint64_t s = v / 1000 + (v % 1000 >= 500 ? 1 : 0);
  if (s < 3600) return sign + std::to_string(s / 60) + "m " + std::to_string(s % 60) + "s";
  return sign + std::to_string(s / 3600) + "h " + std::to_string(s / 60 % 60) + "m " +
         std::to_string(s % 60) + "s";
}

// In whole milliseconds of each timestamp, so that any two int64 timestamps subtract safely.
std::string time_from_start(std::int64_t started_at_ns, std::int64_t timestamp_ns) {
  std::int64_t ms = floor_ms(timestamp_ns) - floor_ms(started_at_ns);
  return ms < 0 ? readable_duration(ms) : "+" + readable_duration(ms);
}

std::string_view final_status(const Execution& execution) {
  return execution.steps.empty() ? std::string_view("unknown")
                                 : std::string_view(execution.steps.back().status);
}

std::string new_execution_id(std::int64_t now_ns) {
  static constexpr std::string_view kDigits = "0123456789abcdefghijklmnopqrstuvwxyz";
  thread_local std::mt19937_64 random{std::random_device{}()};
  std::uniform_int_distribution<std::size_t> digit(0, kDigits.size() - 1);
  std::string id = "exec_" + std::to_string(now_ns < 0 ? 0 : floor_ms(now_ns)) + "_";
  for (int i = 0; i < 9; ++i) id += kDigits[digit(random)];
  return id;
}

// ---- ExecutionFolder -------------------------------------------------------------------------

ExecutionFolder::Entry& ExecutionFolder::entry_for(const Event& event) {
  auto it = executions_.find(event.run);
  if (it != executions_.end()) return it->second;
  // Never started (set_run() without a RunScope, or the start was missed): it began when this
  // event's span did.
  std::int64_t began = event.ts_ns;
  if (event.elapsed_ns && *event.elapsed_ns > 0 &&
      __builtin_sub_overflow(event.ts_ns, *event.elapsed_ns, &began)) {
    began = event.ts_ns;
  }
  Entry entry;
  entry.execution.tracking_id = valid_utf8(event.run);
  entry.execution.execution_id = new_execution_id(began);
  entry.execution.started_at_ns = document_ns(began);
  return executions_.emplace(std::string(event.run), std::move(entry)).first->second;
}

const Execution* ExecutionFolder::add(const Event& event) {
  if (event.run.empty()) return nullptr;
  switch (event.kind) {
    case Kind::Run: {
      if (event.status == Status::Starting || event.status == Status::InProgress) {
        auto it = executions_.find(event.run);
        if (it != executions_.end() && it->second.open_runs > 0) {  // Nested.
          ++it->second.open_runs;
          it->second.execution.steps.push_back(make_step(event, event.stage, "in_progress"));
          return &it->second.execution;
        }
        Entry fresh;
        fresh.open_runs = 1;
        fresh.execution.tracking_id = valid_utf8(event.run);
        fresh.execution.execution_id = new_execution_id(event.ts_ns);
        fresh.execution.started_at_ns = document_ns(event.ts_ns);
        add_metadata(fresh.execution, event);
        auto [pos, inserted] =
            executions_.insert_or_assign(std::string(event.run), std::move(fresh));
        return &pos->second.execution;
      }
      auto status = step_status(event.status);
      if (!status || *status == "in_progress") return nullptr;
      Entry& entry = entry_for(event);
      Execution& execution = entry.execution;
      if (entry.open_runs > 1) {  // A nested run's end.
        --entry.open_runs;
        execution.steps.push_back(make_step(event, event.stage, *status));
        return &execution;
      }
      entry.open_runs = 0;
      execution.completed_at_ns = document_ns(event.ts_ns);
      execution.duration_ms =
          event.elapsed_ns ? std::max<std::int64_t>(0, *event.elapsed_ns / kNsPerMs)
                           : std::max<std::int64_t>(0, floor_ms(*execution.completed_at_ns) -
                                                           floor_ms(execution.started_at_ns));
      add_metadata(execution, event);
      if (*status == "failed" &&
          (execution.steps.empty() || execution.steps.back().status != "failed")) {
        std::string_view name = event.component.empty() ? std::string_view("run") : event.component;
        execution.steps.push_back(make_step(event, name, "failed"));
      }
      return &execution;
    }
    case Kind::Stage:
    case Kind::Node: {
      auto status = step_status(event.status);
      if (!status) return nullptr;
      Execution& execution = entry_for(event).execution;
      execution.steps.push_back(make_step(event, event.stage, *status));
      return &execution;
    }
    case Kind::Log: {
      if (event.level < Level::Error || event.level == Level::Off) return nullptr;
      std::string_view name = event.component.empty() ? std::string_view("log") : event.component;
      Execution& execution = entry_for(event).execution;
      execution.steps.push_back(make_step(event, name, "failed"));
      return &execution;
    }
    default:
      return nullptr;
  }
}

const Execution* ExecutionFolder::find(std::string_view tracking_id) const {
  auto it = executions_.find(tracking_id);
  return it == executions_.end() ? nullptr : &it->second.execution;
}

const Execution* ExecutionFolder::restore(Execution execution) {
  Entry entry;
  entry.open_runs = execution.completed_at_ns ? 0 : 1;
  std::string key = execution.tracking_id;
  entry.execution = std::move(execution);
  auto [pos, inserted] = executions_.insert_or_assign(std::move(key), std::move(entry));
  return &pos->second.execution;
}

std::size_t ExecutionFolder::drop_steps(std::string_view tracking_id, std::size_t keep) {
  auto it = executions_.find(tracking_id);
  if (it == executions_.end()) return 0;
  std::vector<Step>& steps = it->second.execution.steps;
  if (steps.size() <= keep) return 0;
  std::size_t dropped = steps.size() - keep;
  steps.erase(steps.begin(), steps.begin() + static_cast<std::ptrdiff_t>(dropped));
  return dropped;
}

bool ExecutionFolder::finished(std::string_view tracking_id) const {
  auto it = executions_.find(tracking_id);
  return it != executions_.end() && it->second.open_runs == 0 &&
         it->second.execution.completed_at_ns.has_value();
}

bool ExecutionFolder::erase(std::string_view tracking_id) {
  auto it = executions_.find(tracking_id);
  if (it == executions_.end()) return false;
  executions_.erase(it);
  return true;
}

}  // namespace stagelog::server
