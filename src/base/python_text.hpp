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

// repr() of a str: 'gpu-1', "it's", with \n, \r, \t, \\ and \xNN escapes.
template <typename Out>
void append_python_repr(Out& out, std::string_view text) {
  // CPython's rule: single quotes unless the text holds a ' and no ".
  bool single = text.find('\'') != std::string_view::npos;
  bool dbl = text.find('"') != std::string_view::npos;
  const char quote = single && !dbl ? '"' : '\'';
  static constexpr char kHex[] = "0123456789abcdef";
  out.append(&quote, 1);
  std::size_t start = 0;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    const auto u = static_cast<unsigned char>(c);
    if (c != quote && c != '\\' && u >= 0x20 && u != 0x7f) continue;
    out.append(text.data() + start, i - start);
    start = i + 1;
    char esc[4] = {'\\', c, 0, 0};
    std::size_t n = 2;
    if (c == '\n') {
      esc[1] = 'n';
    } else if (c == '\r') {
      esc[1] = 'r';
    } else if (c == '\t') {
      esc[1] = 't';
    } else if (c != quote && c != '\\') {
      esc[1] = 'x';
      esc[2] = kHex[u >> 4];
      esc[3] = kHex[u & 15];
      n = 4;
    }
    out.append(esc, n);
  }
  out.append(text.data() + start, text.size() - start);  // UTF-8 passes through, as in Python.
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
