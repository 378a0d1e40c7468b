// Seed-004 execution-log documents: parsing one (with errors that name the key), writing one,
// execution ids.

#include <algorithm>
#include <array>
#include <cstdint>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "base/time.hpp"
#include "base/time_text.hpp"
#include "execution/document_json.hpp"
#include "format/format.hpp"
#include "stagelog/execution.hpp"
#include "stagelog/parse.hpp"

namespace stagelog {

namespace detail {

std::string dump(const ExecutionJson& j) {
  return j.dump(-1, ' ', false, ExecutionJson::error_handler_t::replace);
}

std::int64_t floor_ms(std::int64_t ns) {
  std::int64_t q = ns / kNsPerMs;
  if (ns % kNsPerMs < 0) --q;
  return q;
}

// A timestamp as the document keeps it: at or after the epoch, whole milliseconds.
std::int64_t document_ns(std::int64_t ns) { return ns <= 0 ? 0 : floor_ms(ns) * kNsPerMs; }

std::string valid_utf8(std::string_view text) {
  if (std::all_of(text.begin(), text.end(), [](char c) { return (c & 0x80) == 0; })) {
    return std::string(text);
  }
  std::string literal;
  append_json_string(literal, text);  // Replaces invalid UTF-8; always valid JSON.
  return ExecutionJson::parse(literal).get<std::string>();
}

ExecutionJson object_of(const std::string& text) {
  ExecutionJson j = ExecutionJson::parse(text, nullptr, false);
  return j.is_object() ? j : ExecutionJson::object();
}

namespace {

using Json = ExecutionJson;

// Deeper documents are rejected: nlohmann's dump() recurses, and no execution log nests this far.
constexpr int kMaxDepth = 64;
constexpr std::array<std::string_view, 4> kStatuses = {"completed", "failed", "in_progress",
                                                       "skipped"};

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

}  // namespace

}  // namespace detail

namespace {

using Json = detail::ExecutionJson;

}  // namespace

std::optional<Execution> parse_execution(std::string_view json, std::string* error) {
  return parse_execution(json, std::string_view(), error);
}

std::optional<Execution> parse_execution(std::string_view json,
                                         std::string_view default_tracking_id, std::string* error) {
  try {
    return detail::parse_checked(json, default_tracking_id);
  } catch (const detail::Rejected& ex) {
    if (error != nullptr) *error = ex.what();
    return std::nullopt;
  }
}

std::string execution_document(const Execution& execution) {
  Json doc = Json::object();
  doc["tracking_id"] = execution.tracking_id;
  doc["execution_id"] = execution.execution_id;
  const Json metadata =
      detail::object_of(execution.metadata_json);  // Not a temporary: items() views it.
  for (const auto& [key, value] : metadata.items()) {
    if (!detail::contains(detail::kDocumentKeys, key)) doc[key] = value;
  }
  doc["started_at"] = detail::iso_timestamp(execution.started_at_ns);
  if (execution.completed_at_ns)
    doc["completed_at"] = detail::iso_timestamp(*execution.completed_at_ns);
  if (execution.duration_ms) doc["duration_ms"] = *execution.duration_ms;
  Json steps = Json::array();
  for (const Step& s : execution.steps) {
    Json step = Json::object();
    step["step"] = s.step;
    step["timestamp"] = detail::iso_timestamp(s.timestamp_ns);
    step["status"] = s.status;
    step["message"] = s.message;
    if (s.error_details) step["error_details"] = *s.error_details;
    const Json custom = detail::object_of(s.custom_json);
    for (const auto& [key, value] : custom.items()) {
      if (!detail::contains(detail::kStepKeys, key)) step[key] = value;
    }
    steps.push_back(std::move(step));
  }
  doc["steps"] = std::move(steps);
  return detail::dump(doc);
}

std::string_view final_status(const Execution& execution) {
  return execution.steps.empty() ? std::string_view("unknown")
                                 : std::string_view(execution.steps.back().status);
}

std::string new_execution_id(std::int64_t now_ns) {
  static constexpr std::string_view kDigits = "0123456789abcdefghijklmnopqrstuvwxyz";
  thread_local std::mt19937_64 random{std::random_device{}()};
  std::uniform_int_distribution<std::size_t> digit(0, kDigits.size() - 1);
  std::string id = "exec_" + std::to_string(now_ns < 0 ? 0 : detail::floor_ms(now_ns)) + "_";
  for (int i = 0; i < 9; ++i) id += kDigits[digit(random)];
  return id;
}

}  // namespace stagelog
