#pragma once

#include <string>

namespace stagelog::detail {

// Appends JSON's two-character escape of an ASCII character that has one (RFC 8259: '"', '\\',
// and the controls \b \f \n \r \t) and returns true; false, appending nothing, for any other.
// Shared by the JSON writers that differ in the rest (UTF-8 kept, or \u escapes as Python's
// json.dumps writes them).
inline bool append_short_escape(std::string& out, unsigned char c) {
  const char* escape = nullptr;
  switch (c) {
    case '"':
      escape = "\\\"";
      break;
    case '\\':
      escape = "\\\\";
      break;
    case '\n':
      escape = "\\n";
      break;
    case '\r':
      escape = "\\r";
      break;
    case '\t':
      escape = "\\t";
      break;
    case '\b':
      escape = "\\b";
      break;
    case '\f':
      escape = "\\f";
      break;
    default:
      return false;
  }
  out.append(escape, 2);
  return true;
}

}  // namespace stagelog::detail
