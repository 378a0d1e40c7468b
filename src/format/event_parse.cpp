// Events read back: JSONL lines (parse_json_event) and either format (parse_event).

#include <charconv>
#include <cmath>
#include <cstdint>
#include <exception>
#include <limits>
#include <utility>
#include <variant>

#include "format/format.hpp"
#include "format/json_reader.hpp"
#include "stagelog/parse.hpp"

namespace stagelog {

namespace {

// A JSON scalar as the reader hands it over. Non-negative integers up to INT64_MAX are
// int64; only larger ones are uint64.
using Scalar = std::variant<std::nullptr_t, bool, std::int64_t, std::uint64_t, double, std::string>;

const char* type_name(const Scalar& value) {
  switch (value.index()) {
    case 0:
      return "null";
    case 1:
      return "a boolean";
    case 2:
    case 3:
      return "an integer";
    case 4:
      return "a floating-point number";
    default:
      return "a string";
  }
}

// A value from the input, quoted and escaped so an error message stays on one line; long
// values are cut short.
std::string quote_value(std::string_view text) {
  constexpr std::size_t kMax = 60;
  std::string out;
  detail::append_json_string(out, text.substr(0, kMax));
  if (text.size() > kMax) out.insert(out.size() - 1, "...");
  return out;
}

template <typename T>
void append_number(std::string& out, T value) {
  char buf[32];
  auto r = std::to_chars(buf, buf + sizeof buf, value);
  out.append(buf, r.ptr);
}

FieldValue field_value(const Scalar& value) {
  switch (value.index()) {
    case 0:
      return std::string_view("null");
    case 1:
      return std::get<bool>(value);
    case 2:
      return std::get<std::int64_t>(value);
    case 3:
      return std::get<std::uint64_t>(value);
    case 4:
      return std::get<double>(value);
    default:
      return std::string_view(std::get<std::string>(value));
  }
}

// Reads one event from nlohmann's SAX events, in one pass: the keys of the top-level object
// in any order, unknown keys skipped whatever they hold, and "fields" kept in their order and
// with repeated keys (a DOM would sort them or merge them). A field value that is an array or
// an object is kept as its JSON text. Returning false stops the parser; error() says why.
class EventReader {
 public:
  bool null() { return scalar(nullptr); }
  bool boolean(bool value) { return scalar(value); }
  // Only negative numbers come here ("-5"); 0 means the text was "-0", which format_json
  // writes for a double -0.0: a field keeps it a double so it is written back as "-0".
  bool number_integer(std::int64_t value) {
    if (value == 0 && stack_.size() >= 2) return scalar(-0.0);
    return scalar(std::int64_t{value});
  }
  bool number_unsigned(std::uint64_t value) {
    if (value <= static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
      return scalar(static_cast<std::int64_t>(value));
    }
    return scalar(std::uint64_t{value});
  }
  bool number_float(double value, std::string_view raw) {
    if (capturing()) {
      before_nested_value();
      capture_ += raw;  // The number as written.
      return true;
    }
    return scalar(double{value});
  }
  bool string(std::string_view value) {
    // A string of the top-level object goes straight where it belongs: no Scalar, no copy
    // but the one it is kept in.
    if (stack_.size() == 1) return top_level_text(value);
    return scalar(std::string(value));
  }
  bool start_object() { return open('{'); }
  bool start_array() { return open('['); }
  bool end_object() { return close(); }
  bool end_array() { return close(); }
  bool key(std::string_view value) {
    if (stack_.size() == 1) {
      key_ = value;
      key_id_ = key_id(value);
    } else if (stack_.size() == 2 && section_ == Section::Fields) {
      field_key_ = value;
    } else if (capturing()) {
      if (comma_.back()) capture_ += ',';
      comma_.back() = true;
      detail::append_json_string(capture_, value);
      capture_ += ':';
    }
    return true;
  }
  // After a successful parse: checks the required keys and fills `out`.
  bool finish(OwnedEvent& out) {
    if (ts_ns_) {
      out.ts_ns = *ts_ns_;
    } else if (ts_) {
      auto ns = parse_timestamp(*ts_);
      if (!ns) {
        return fail("\"ts\" is not a UTC timestamp like \"2026-01-04T19:30:15.234Z\": " +
                    quote_value(*ts_));
      }
      out.ts_ns = *ns;
    } else {
      return fail("missing \"ts\" or \"ts_ns\"");
    }
    if (!kind_) return fail("missing \"kind\"");
    out.kind = *kind_;
    out.level = level_;
    out.status = status_;
    out.run = std::move(run_);
    out.worker = std::move(worker_);
    out.component = std::move(component_);
    out.stage = std::move(stage_);
    out.message = std::move(message_);
    out.elapsed_ns = elapsed_ns_;
    out.pid = pid_;
    out.host = std::move(host_);
    for (const auto& [key, value] : fields_) out.add_field(key, field_value(value));
    return true;
  }

  const std::string& error() const noexcept { return error_; }

 private:
  // What the container at depth 2 (a value of the top-level object) is.
  enum class Section : std::uint8_t { Fields, Skipped };

  bool fail(std::string why) {
    error_ = std::move(why);
    return false;
  }

  // Inside an array or object that is the value of a field.
  bool capturing() const noexcept { return stack_.size() >= 3 && section_ == Section::Fields; }

  void before_nested_value() {
    if (stack_.back() != '[') return;  // In an object, key() wrote the comma.
    if (comma_.back()) capture_ += ',';
    comma_.back() = true;
  }

  bool scalar(Scalar value) {
    switch (stack_.size()) {
      case 0:
        return fail("expected a JSON object");
      case 1:
        return top_level(std::move(value));
      case 2:
        if (section_ == Section::Fields) fields_.emplace_back(field_key_, std::move(value));
        return true;
      default:
        if (!capturing()) return true;
        before_nested_value();
        switch (value.index()) {
          case 0:
            capture_ += "null";
            break;
          case 1:
            capture_ += std::get<bool>(value) ? "true" : "false";
            break;
          case 2:
            append_number(capture_, std::get<std::int64_t>(value));
            break;
          case 3:
            append_number(capture_, std::get<std::uint64_t>(value));
            break;
          case 4:
            detail::append_json_double(capture_, std::get<double>(value));
            break;
          default:
            detail::append_json_string(capture_, std::get<std::string>(value));
        }
        return true;
    }
  }

  bool open(char bracket) {
    const char* type = bracket == '{' ? "an object" : "an array";
    switch (stack_.size()) {
      case 0:
        if (bracket != '{') return fail("expected a JSON object");
        break;
      case 1:
        if (key_id_ == Key::Fields) {
          if (bracket != '{') return fail(std::string("\"fields\" must be an object, not ") + type);
          section_ = Section::Fields;
          fields_.clear();  // A repeated "fields" replaces the first, as other keys do.
        } else if (key_id_ != Key::Other) {
          return wrong_type(type);
        } else {
          section_ = Section::Skipped;
        }
        break;
      case 2:
        if (section_ == Section::Fields) {
          capture_.clear();
          comma_.clear();
        }
        [[fallthrough]];
      default:
        if (section_ == Section::Fields) {
          if (stack_.size() > 2) before_nested_value();
          capture_ += bracket;
          comma_.push_back(false);
        }
    }
    stack_.push_back(bracket);
    return true;
  }

  bool close() {
    char bracket = stack_.back();
    stack_.pop_back();
    if (stack_.size() >= 2 && section_ == Section::Fields) {
      capture_ += bracket == '{' ? '}' : ']';
      comma_.pop_back();
      if (stack_.size() == 2) fields_.emplace_back(field_key_, std::move(capture_));
    }
    return true;
  }

  // The keys an event has, and the rest.
  enum class Key : std::uint8_t {
    Ts,
    TsNs,
    Kind,
    Level,
    Run,
    Worker,
    Component,
    Stage,
    Status,
    ElapsedNs,
    Message,
    Pid,
    Host,
    Fields,
    Other
  };

  static Key key_id(std::string_view key) noexcept {
    switch (key.size()) {
      case 2:
        return key == "ts" ? Key::Ts : Key::Other;
      case 3:
        if (key == "run") return Key::Run;
        return key == "pid" ? Key::Pid : Key::Other;
      case 4:
        if (key == "kind") return Key::Kind;
        return key == "host" ? Key::Host : Key::Other;
      case 5:
        if (key == "ts_ns") return Key::TsNs;
        if (key == "level") return Key::Level;
        return key == "stage" ? Key::Stage : Key::Other;
      case 6:
        if (key == "worker") return Key::Worker;
        if (key == "status") return Key::Status;
        return key == "fields" ? Key::Fields : Key::Other;
      case 7:
        return key == "message" ? Key::Message : Key::Other;
      case 9:
        return key == "component" ? Key::Component : Key::Other;
      case 10:
        return key == "elapsed_ns" ? Key::ElapsedNs : Key::Other;
      default:
        return Key::Other;
    }
  }

  bool wrong_type(const char* type) {
    bool integer = key_id_ == Key::TsNs || key_id_ == Key::ElapsedNs || key_id_ == Key::Pid;
    return fail("\"" + key_ + "\" must be " + (integer ? "an integer" : "a string") + ", not " +
                type);
  }

  // An integer key: int64, or null for absent.
  bool integer(Scalar& value, std::optional<std::int64_t>& out) {
    if (value.index() == 0) {
      out.reset();
      return true;
    }
    if (value.index() == 3) return fail("\"" + key_ + "\" is out of range");
    if (value.index() != 2) return wrong_type(type_name(value));
    out = std::get<std::int64_t>(value);
    return true;
  }

  // A string value of the top-level object.
  bool top_level_text(std::string_view s) {
    switch (key_id_) {
      case Key::Run:
        run_.assign(s);
        return true;
      case Key::Worker:
        worker_.assign(s);
        return true;
      case Key::Component:
        component_.assign(s);
        return true;
      case Key::Stage:
        stage_.assign(s);
        return true;
      case Key::Message:
        message_.assign(s);
        return true;
      case Key::Host:
        host_.assign(s);
        return true;
      case Key::Ts:
        ts_ = std::string(s);
        return true;
      case Key::Kind:
        kind_ = parse_kind(s);
        if (!kind_) {
          return fail("unknown kind " + quote_value(s) +
                      " (expected stage, log, heartbeat, lifecycle, node, run, task or request)");
        }
        return true;
      case Key::Level: {
        auto level = parse_level(s);
        if (!level) {
          return fail("unknown level " + quote_value(s) +
                      " (expected trace, debug, info, warning, error, critical or off)");
        }
        level_ = *level;
        return true;
      }
      case Key::Status: {
        if (s.empty()) {
          status_ = Status::None;
          return true;
        }
        auto status = parse_status(s);
        if (!status) {
          return fail("unknown status " + quote_value(s) +
                      " (expected starting, running, completed, failed, skipped, in_progress or "
                      "\"\")");
        }
        status_ = *status;
        return true;
      }
      case Key::TsNs:
      case Key::ElapsedNs:
      case Key::Pid:
        return wrong_type("a string");
      case Key::Fields:
        return fail("\"fields\" must be an object, not a string");
      case Key::Other:
        return true;  // Unknown keys are ignored.
    }
    return true;
  }

  // A value of the top-level object that is not a string. null counts as absent: the key's
  // default.
  bool top_level(Scalar value) {
    switch (key_id_) {
      case Key::TsNs:
        return integer(value, ts_ns_);
      case Key::ElapsedNs:
        return integer(value, elapsed_ns_);
      case Key::Pid: {
        std::optional<std::int64_t> pid;
        if (!integer(value, pid)) return false;
        pid_ = pid.value_or(0);
        return true;
      }
      case Key::Fields:
        if (value.index() != 0) {
          return fail(std::string("\"fields\" must be an object, not ") + type_name(value));
        }
        fields_.clear();
        return true;
      case Key::Other:
        return true;  // Unknown keys are ignored.
      default:        // A string key.
        break;
    }
    if (value.index() != 0) return wrong_type(type_name(value));
    switch (key_id_) {
      case Key::Ts:
        ts_.reset();
        return true;
      case Key::Kind:
        kind_.reset();
        return true;
      case Key::Level:
        level_ = Level::Info;
        return true;
      default:
        return top_level_text("");  // Run, worker, ...: "". Status: none.
    }
  }

  std::vector<char> stack_;  // The open containers, '{' or '['; the top-level object first.
  std::string key_;          // The current key of the top-level object.
  Key key_id_ = Key::Other;
  Section section_ = Section::Skipped;
  std::string field_key_;
  std::string capture_;      // The JSON text of the field value being read, when it nests.
  std::vector<bool> comma_;  // Per nested container of that value: the next item needs a ','.
  std::string error_;

  std::optional<std::string> ts_;
  std::optional<std::int64_t> ts_ns_;
  std::optional<Kind> kind_;
  Level level_ = Level::Info;
  Status status_ = Status::None;
  std::string run_, worker_, component_, stage_, message_, host_;
  std::optional<std::int64_t> elapsed_ns_;
  std::int64_t pid_ = 0;
  std::vector<std::pair<std::string, Scalar>> fields_;
};

std::optional<OwnedEvent> fail(std::string* error, std::string_view why) {
  if (error != nullptr) *error = std::string(why);
  return std::nullopt;
}

}  // namespace

std::optional<OwnedEvent> parse_json_event(std::string_view line, std::string* error) {
  try {
    EventReader reader;
    std::string syntax;
    if (!detail::read_json(line, reader, &syntax)) {
      return fail(error, reader.error().empty() ? "not valid JSON: " + syntax : reader.error());
    }
    OwnedEvent event;
    if (!reader.finish(event)) return fail(error, reader.error());
    return event;
  } catch (const std::exception& e) {  // Out of memory.
    return fail(error, e.what());
  }
}

std::optional<OwnedEvent> parse_event(std::string_view line, std::string* error) {
  auto first = line.find_first_not_of(" \t");
  if (first != std::string_view::npos && line[first] == '{') return parse_json_event(line, error);
  try {
    auto parsed = parse_line(line, error);
    if (!parsed) return std::nullopt;
    OwnedEvent event;
    event.ts_ns = parsed->ts_ns;
    event.kind = parsed->kind;
    event.level = parsed->level;
    event.status = parsed->status;
    event.worker = std::move(parsed->worker);
    event.component = std::move(parsed->component);
    event.stage = std::move(parsed->stage);
    event.message = std::move(parsed->message);
    if (parsed->duration) {
      double ns = std::round(*parsed->duration * 1e9);
      if (!(ns < 9e18)) return fail(error, "duration out of range");  // About 285 years.
      event.elapsed_ns = static_cast<std::int64_t>(ns);
    }
    return event;
  } catch (const std::exception& e) {
    return fail(error, e.what());
  }
}

}  // namespace stagelog
