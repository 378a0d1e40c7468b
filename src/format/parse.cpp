#include "stagelog/parse.hpp"

#include <cctype>
#include <charconv>

#include "base/time_text.hpp"
#include "format/format.hpp"

namespace stagelog {

namespace {

bool consume(std::string_view& s, std::string_view prefix) {
  if (s.substr(0, prefix.size()) != prefix) return false;
  s.remove_prefix(prefix.size());
  return true;
}

std::optional<Status> status_word(std::string_view word) {
  if (word == "Starting") return Status::Starting;
  if (word == "Running") return Status::Running;
  if (word == "Complete" || word == "Completed") return Status::Completed;
  if (word == "Failed") return Status::Failed;
  if (word == "Skipped") return Status::Skipped;
  if (word == "InProgress") return Status::InProgress;
  return std::nullopt;
}

std::optional<ParsedLine> fail(std::string* error, std::string_view why) {
  if (error != nullptr) *error = std::string(why);
  return std::nullopt;
}

// " (13.2s)" at the front of s: the seconds, consumed.
std::optional<double> take_duration(std::string_view& s) {
  if (!s.starts_with(" (")) return std::nullopt;
  auto close = s.find("s)");
  if (close == std::string_view::npos) return std::nullopt;
  std::string_view number = s.substr(2, close - 2);
  if (number.empty() || number.find('.') == std::string_view::npos) return std::nullopt;
  double value = 0;
  auto r = std::from_chars(number.data(), number.data() + number.size(), value);
  if (r.ec != std::errc() || r.ptr != number.data() + number.size() || value < 0) {
    return std::nullopt;
  }
  s.remove_prefix(close + 2);
  return value;
}

}  // namespace

std::optional<std::int64_t> parse_timestamp(std::string_view t) noexcept {
  auto civil = detail::read_civil_seconds(t, /*space_too=*/false);
  if (!civil || t.size() < 20) return std::nullopt;
  std::size_t pos = 19;
  std::int64_t frac_ns = 0;
  if (t[pos] == '.') {
    ++pos;
    std::int64_t scale = 100'000'000;
    std::size_t start = pos;
    while (pos < t.size() && std::isdigit(static_cast<unsigned char>(t[pos]))) {
      if (pos - start >= 9) return std::nullopt;
      frac_ns += (t[pos] - '0') * scale;
      scale /= 10;
      ++pos;
    }
    if (pos == start) return std::nullopt;
  }
  if (pos + 1 != t.size() || t[pos] != 'Z') return std::nullopt;
  std::int64_t seconds = *civil;
  std::int64_t ns;
  if (__builtin_mul_overflow(seconds, std::int64_t{1'000'000'000}, &ns) ||
      __builtin_add_overflow(ns, frac_ns, &ns)) {
    return std::nullopt;  // Past 2262-04-11: not representable in int64 nanoseconds.
  }
  return ns;
}

std::optional<ParsedLine> parse_line(std::string_view s, std::string* error) {
  if (!s.empty() && s.back() == '\r') s.remove_suffix(1);
  ParsedLine out;
  auto space = s.find(' ');
  if (space == std::string_view::npos) return fail(error, "not a stagelog line (no space)");
  std::string_view ts = s.substr(0, space);
  auto ns = parse_timestamp(ts);
  if (!ns) return fail(error, "expected an ISO-8601 UTC timestamp like 2026-01-04T19:30:15.234Z");
  out.timestamp = std::string(ts);
  out.ts_ns = *ns;
  s.remove_prefix(space + 1);
  if (!consume(s, "[")) return fail(error, "expected '[worker]' after the timestamp");
  auto close = s.find(']');
  if (close == std::string_view::npos || close == 0) {
    return fail(error, "expected '[worker]' after the timestamp");
  }
  std::string_view worker = s.substr(0, close);
  for (char c : worker) {
    if (std::isspace(static_cast<unsigned char>(c))) {
      return fail(error, "worker id contains whitespace");
    }
  }
  out.worker = std::string(worker);
  s.remove_prefix(close + 1);
  if (!consume(s, " ")) return fail(error, "expected a space after ']'");

  if (consume(s, "Stage: ")) {
    auto dash = s.find(" - ");
    if (dash == std::string_view::npos || dash == 0) {
      return fail(error, "expected 'Stage: NAME - Status'");
    }
    out.stage = std::string(s.substr(0, dash));
    s.remove_prefix(dash + 3);
    out.kind = out.stage == "COMPLETE" ? Kind::Run : Kind::Stage;
    if (consume(s, "All stages complete")) {
      out.kind = Kind::Run;
      out.status = Status::Completed;
      out.message = "All stages complete";
      out.duration = take_duration(s);
      if (!s.empty() && s.front() != ' ') {
        return fail(error, "unexpected text after 'All stages complete'");
      }
      return out;
    }
    std::size_t word_end = 0;
    while (word_end < s.size() && std::isalpha(static_cast<unsigned char>(s[word_end]))) {
      ++word_end;
    }
    auto status = status_word(s.substr(0, word_end));
    if (!status) {
      return fail(error, "unknown stage status '" + std::string(s.substr(0, word_end)) +
                             "' (expected Starting, Running, Complete, Failed or Skipped)");
    }
    out.status = *status;
    s.remove_prefix(word_end);
    out.duration = take_duration(s);
    if (consume(s, ": ")) {
      out.message = std::string(s);
    } else if (consume(s, " ")) {
      while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
      out.message = std::string(s);  // Fields such as "tokens=1247".
    } else if (!s.empty()) {
      return fail(error, "unexpected text after the stage status");
    }
    return out;
  }

  auto level_end = s.find(' ');
  if (level_end == std::string_view::npos) return fail(error, "expected 'Stage:' or a level");
  auto level = parse_level(s.substr(0, level_end));
  if (!level || s.substr(0, level_end) != level_name(*level)) {
    return fail(error, "expected 'Stage: NAME - Status' or 'LEVEL component: message'");
  }
  out.kind = Kind::Log;
  out.level = *level;
  s.remove_prefix(level_end + 1);
  auto colon = s.find(": ");
  if (colon == std::string_view::npos || colon == 0) {
    return fail(error, "expected 'component: message' after the level");
  }
  out.component = std::string(s.substr(0, colon));
  out.message = std::string(s.substr(colon + 2));
  return out;
}

std::string to_json(const ParsedLine& line) {
  std::string out = "{\"timestamp\":";
  detail::append_json_string(out, line.timestamp);
  out += ",\"worker_id\":";
  detail::append_json_string(out, line.worker);
  if (line.kind == Kind::Log) {
    out += ",\"level\":\"";
    out += level_json_name(line.level);
    out += "\",\"component\":";
    detail::append_json_string(out, line.component);
  } else {
    out += ",\"stage\":";
    detail::append_json_string(out, line.stage);
    out += ",\"status\":\"";
    out += status_name(line.status);
    out += "\",\"duration\":";
    if (line.duration) {
      detail::append_json_double(out, *line.duration);
    } else {
      out += "null";
    }
  }
  out += ",\"message\":";
  detail::append_json_string(out, line.message);
  out += '}';
  return out;
}

}  // namespace stagelog
