#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace stagelog::detail {

// Text as Python prints it, for the lines seed 001's brain and agents write with f-strings and
// str() of lists and dicts: greps and alerts written against the seed's text match ours. `Out`
// is a std::string or any buffer with append(const char*, std::size_t), such as the Agent's
// fixed line buffer (the hot path does not allocate).

// str.isprintable() of one code point, as Python 3.11 (Unicode kPythonUnicodeVersion) answers
// it: false for the categories Cc, Cf, Cs, Co, Cn, Zl, Zp and Zs but the space. repr() escapes
// the characters for which it is false.
inline constexpr std::string_view kPythonUnicodeVersion = "14.0.0";
bool python_printable(char32_t cp) noexcept;

// The UTF-8 sequence at the start of `text`: its length (1 to 4) with the code point in `cp`, or
// 0 if it is not valid UTF-8 (truncated, overlong, a surrogate, above U+10FFFF).
std::size_t decode_utf8(std::string_view text, char32_t& cp) noexcept;

// repr()'s escape of one character inside `quote`s: \\, \' (or \"), \n, \r, \t, else \xNN up to
// U+00FF, \uNNNN up to U+FFFF, \UNNNNNNNN above (lowercase hex). Writes at most 10 bytes to buf
// and returns the length.
std::size_t python_escape(char* buf, char32_t cp, char quote) noexcept;

// repr() of a str: 'gpu-1', "it's", 'a\nb', 'café' stays 'café' (UTF-8 passes through)
// while what is not printable is escaped: '\x00', '\x85', '\u200b', '\U000e0001'. Bytes that
// are not valid UTF-8 show as the lone surrogates Python's surrogateescape decodes them to
// ('\udcff'), as a seed program shows a file name or argument that is not UTF-8.
template <typename Out>
void append_python_repr(Out& out, std::string_view text) {
  // CPython's rule: single quotes unless the text holds a ' and no ".
  bool single = text.find('\'') != std::string_view::npos;
  bool dbl = text.find('"') != std::string_view::npos;
  const char quote = single && !dbl ? '"' : '\'';
  out.append(&quote, 1);
  std::size_t start = 0;
  std::size_t i = 0;
  while (i < text.size()) {
    const auto u = static_cast<unsigned char>(text[i]);
    char32_t cp = u;
    std::size_t length = 1;
    if (u >= 0x80) {
      length = decode_utf8(text.substr(i), cp);
      if (length != 0 && python_printable(cp)) {
        i += length;
        continue;
      }
      if (length == 0) {
        length = 1;
        cp = 0xDC00 + u;  // surrogateescape.
      }
    } else if (u != static_cast<unsigned char>(quote) && u != '\\' && u >= 0x20 && u != 0x7f) {
      ++i;
      continue;
    }
    out.append(text.data() + start, i - start);
    char esc[10];
    out.append(esc, python_escape(esc, cp, quote));
    i += length;
    start = i;
  }
  out.append(text.data() + start, text.size() - start);
  out.append(&quote, 1);
}

// str() of a list of str: ['resource', 'llm'], [] when empty.
template <typename Out, typename Items>
void append_python_list(Out& out, const Items& items) {
  out.append("[", 1);
  bool first = true;
  for (const auto& item : items) {
    if (!first) out.append(", ", 2);
    first = false;
    append_python_repr(out, std::string_view(item));
  }
  out.append("]", 1);
}

// str() of a bool: True, False.
constexpr std::string_view python_bool(bool value) noexcept { return value ? "True" : "False"; }

// f"{value:.{precision}f}" (precision 0 to 9): correctly rounded from the double's exact
// value, ties to even, as CPython does (125.25 -> "125.2", 2.5 -> "2"), and without the
// locale's decimal point. Returns the length written to buf (at most 400 bytes).
std::size_t python_fixed(char* buf, std::size_t size, double value, int precision) noexcept;

template <typename Out>
void append_python_fixed(Out& out, double value, int precision) {
  char buf[400];
  out.append(buf, python_fixed(buf, sizeof buf, value, precision));
}

// f"{elapsed:.1f}s" for a duration in ns ("0.4s", "125.2s"); negative durations print as 0.
std::string python_seconds(std::int64_t ns, int precision = 1);

}  // namespace stagelog::detail
