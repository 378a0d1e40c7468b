#include "format/format.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>

#include "base/duration.hpp"
#include "base/json_escape.hpp"
#include "base/python_text.hpp"
#include "base/time_text.hpp"

namespace stagelog::detail {

namespace {

template <typename T>
void append_int(std::string& out, T v) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

bool needs_quotes(std::string_view s) {
  if (s.empty()) return true;
  for (unsigned char c : s) {
    if (c <= ' ' || c == '"' || c == '=' || c == '\\' || c == 0x7f) return true;
  }
  return false;
}

void append_field_value(std::string& out, const FieldValue& value) {
  switch (value.index()) {
    case 0:
      append_int(out, std::get<std::int64_t>(value));
      break;
    case 1:
      append_int(out, std::get<std::uint64_t>(value));
      break;
    case 2: {
      double d = std::get<double>(value);
      if (std::isfinite(d)) {
        char buf[32];
        auto r = std::to_chars(buf, buf + sizeof buf, d);
        out.append(buf, r.ptr);
      } else {
        out += std::isnan(d) ? "nan" : (d > 0 ? "inf" : "-inf");
      }
      break;
    }
    case 3:
      out += std::get<bool>(value) ? "true" : "false";
      break;
    case 4: {
      std::string_view s = std::get<std::string_view>(value);
      if (!needs_quotes(s)) {
        out += s;
        break;
      }
      out += '"';
      for (char c : s) {
        if (c == '"' || c == '\\') out += '\\';
        if (static_cast<unsigned char>(c) < 0x20) {
          append_escaped_text(out, std::string_view(&c, 1));
        } else {
          out += c;
        }
      }
      out += '"';
      break;
    }
  }
}

void append_fields_text(std::string& out, const Event& e) {
  if (e.fields_in_message) return;
  for (const auto& f : e.fields) {
    out += ' ';
    append_escaped_text(out, f.key);
    out += '=';
    append_field_value(out, f.value);
  }
}

void append_json_value(std::string& out, const FieldValue& value) {
  switch (value.index()) {
    case 0:
      append_int(out, std::get<std::int64_t>(value));
      break;
    case 1:
      append_int(out, std::get<std::uint64_t>(value));
      break;
    case 2:
      append_json_double(out, std::get<double>(value));
      break;
    case 3:
      out += std::get<bool>(value) ? "true" : "false";
      break;
    case 4:
      append_json_string(out, std::get<std::string_view>(value));
      break;
  }
}

}  // namespace

std::size_t utf8_sequence_at(std::string_view s, std::size_t i) {
  auto byte = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
  unsigned char c = byte(i);
  std::size_t n;
  unsigned lo = 0x80, hi = 0xBF;  // Allowed range of the second byte.
  if (c >= 0xC2 && c <= 0xDF) {
    n = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    n = 3;
    if (c == 0xE0) lo = 0xA0;  // No overlong forms.
    if (c == 0xED) hi = 0x9F;  // No UTF-16 surrogates.
  } else if (c >= 0xF0 && c <= 0xF4) {
    n = 4;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;  // Nothing above U+10FFFF.
  } else {
    return 0;
  }
  if (i + n > s.size()) return 0;
  if (byte(i + 1) < lo || byte(i + 1) > hi) return 0;
  for (std::size_t k = 2; k < n; ++k) {
    if (byte(i + k) < 0x80 || byte(i + k) > 0xBF) return 0;
  }
  return n;
}

std::size_t invalid_utf8_at(std::string_view s) {
  for (std::size_t i = 0; i < s.size();) {
    if (static_cast<unsigned char>(s[i]) < 0x80) {
      ++i;
      continue;
    }
    std::size_t n = utf8_sequence_at(s, i);
    if (n == 0) return i;
    i += n;
  }
  return std::string_view::npos;
}

void append_escaped_text(std::string& out, std::string_view s) {
  std::size_t start = 0;
  for (std::size_t i = 0; i < s.size(); ++i) {
    auto u = static_cast<unsigned char>(s[i]);
    if (u >= 0x20 && u != 0x7f) [[likely]]
      continue;
    out.append(s.data() + start, i - start);
    start = i + 1;
    switch (s[i]) {
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default: {
        static constexpr char kHex[] = "0123456789abcdef";
        char buf[4] = {'\\', 'x', kHex[u >> 4], kHex[u & 15]};
        out.append(buf, 4);
      }
    }
  }
  out.append(s.data() + start, s.size() - start);
}

namespace {

// " (13.2s)" when the event measured a time: seed 001's f"{elapsed:.1f}s", Python's rounding
// included (125.25 -> "125.2", 0.436 -> "0.4").
void append_elapsed(const Event& e, std::string& out) {
  if (e.elapsed_ns) {
    out += " (";
    append_python_fixed(out, static_cast<double>(std::max<std::int64_t>(0, *e.elapsed_ns)) / 1e9,
                        1);
    out += "s)";
  }
}

// "Stage: AGENT - Complete (13.2s): message", the part after "[worker] " in a stage line.
void append_stage_body(const Event& e, std::string& out) {
  out += "Stage: ";
  append_escaped_text(out, e.stage);
  out += " - ";
  if (e.kind == Kind::Run && e.status == Status::Completed) {
    append_escaped_text(out,
                        e.message.empty() ? std::string_view("All stages complete") : e.message);
    append_elapsed(e, out);
    return;
  }
  append_stage_status(e, out);
  if (!e.message.empty()) {
    out += ": ";
    append_escaped_text(out, e.message);
  }
}

// Stages, and the COMPLETE line of a RunScope; a workflow's run events are plain lines.
bool is_stage_line(const Event& e) {
  return e.kind == Kind::Stage || (e.kind == Kind::Run && e.stage == "COMPLETE");
}

// A RunScope's start has no line of its own (seed 000 shows none).
bool is_silent(const Event& e) {
  return (e.kind == Kind::Run && e.status == Status::Starting && e.stage == "COMPLETE") ||
         is_recorder_closed(e);
}

// A message, and "(13.2s)" after it when the event measured a time (a task's end).
void append_message(const Event& e, std::string& out) {
  append_escaped_text(out, e.message);
  append_elapsed(e, out);
}

}  // namespace

void append_stage_status(const Event& e, std::string& out) {
  switch (e.status) {
    case Status::Starting:
      out += "Starting";
      break;
    case Status::Running:
      out += "Running";
      break;
    case Status::Completed:
      out += "Complete";
      break;
    case Status::Failed:
      out += "Failed";
      break;
    case Status::Skipped:
      out += "Skipped";
      break;
    case Status::InProgress:
      out += "InProgress";
      break;
    case Status::None:
      out += "Event";
      break;
  }
  append_elapsed(e, out);
}

bool format_text(const Event& e, std::string& out) {
  if (is_silent(e)) return false;
  append_iso_timestamp(out, e.ts_ns);
  out += " [";
  append_escaped_text(out, e.worker);
  out += "] ";
  if (is_stage_line(e)) {
    append_stage_body(e, out);
  } else {
    out += level_name(e.level);
    out += ' ';
    append_escaped_text(out, e.component);
    out += ": ";
    append_message(e, out);
  }
  append_fields_text(out, e);
  out += '\n';
  return true;
}

bool format_worker_line(const Event& e, std::string_view worker_label, std::string& out) {
  if (is_silent(e)) return false;
  append_asctime(out, e.ts_ns);
  out += " - ";
  append_escaped_text(out, worker_label);
  out += " - ";
  append_escaped_text(out, e.component);
  out += " - ";
  out += level_name(e.level);
  out += " - ";
  if (is_stage_line(e)) {
    append_stage_body(e, out);
  } else {
    append_message(e, out);
  }
  append_fields_text(out, e);
  out += '\n';
  return true;
}

void append_json_string(std::string& out, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  out += '"';
  std::size_t i = 0;
  while (i < s.size()) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
      std::size_t j = i + 1;
      while (j < s.size()) {
        auto d = static_cast<unsigned char>(s[j]);
        if (d < 0x20 || d >= 0x80 || d == '"' || d == '\\') break;
        ++j;
      }
      out.append(s.data() + i, j - i);
      i = j;
      continue;
    }
    if (c < 0x80) {
      if (!append_short_escape(out, c)) {
        char buf[6] = {'\\', 'u', '0', '0', kHex[c >> 4], kHex[c & 15]};
        out.append(buf, 6);
      }
      ++i;
      continue;
    }
    std::size_t n = utf8_sequence_at(s, i);
    if (n == 0) {
      out += "\xEF\xBF\xBD";  // U+FFFD REPLACEMENT CHARACTER
      ++i;
    } else {
      out.append(s.data() + i, n);
      i += n;
    }
  }
  out += '"';
}

void append_utf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

void append_json_double(std::string& out, double v) {
  if (!std::isfinite(v)) {
    out += "null";
    return;
  }
  char buf[32];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

void append_json_fields(std::string& out, std::span<const Field> fields) {
  out += '{';
  bool first = true;
  for (const auto& f : fields) {
    if (!first) out += ',';
    first = false;
    append_json_string(out, f.key);
    out += ':';
    append_json_value(out, f.value);
  }
  out += '}';
}

void format_json(const Event& e, std::string& out) {
  out += "{\"ts\":\"";
  append_iso_timestamp(out, e.ts_ns);
  out += "\",\"ts_ns\":";
  append_int(out, e.ts_ns);
  out += ",\"kind\":\"";
  out += kind_name(e.kind);
  out += "\",\"level\":\"";
  out += level_json_name(e.level);
  out += "\",\"run\":";
  append_json_string(out, e.run);
  out += ",\"worker\":";
  append_json_string(out, e.worker);
  out += ",\"component\":";
  append_json_string(out, e.component);
  out += ",\"stage\":";
  append_json_string(out, e.stage);
  out += ",\"status\":\"";
  out += status_name(e.status);
  out += "\",\"elapsed_ns\":";
  if (e.elapsed_ns) {
    append_int(out, *e.elapsed_ns);
  } else {
    out += "null";
  }
  out += ",\"message\":";
  append_json_string(out, e.message);
  out += ",\"fields\":";
  append_json_fields(out, e.fields);
  out += ",\"pid\":";
  append_int(out, e.pid);
  out += ",\"host\":";
  append_json_string(out, e.host);
  out += "}\n";
}

}  // namespace stagelog::detail
