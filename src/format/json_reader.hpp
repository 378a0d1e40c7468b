#pragma once

// A strict JSON (RFC 8259) reader that hands a document to a handler as SAX calls, in one pass
// over the text and without building anything: the JSONL event reader's parser. It replaces
// nlohmann's SAX parser there because ingest spends most of its request time parsing: this one
// gives strings and keys as views into the input when they hold no escape (no copy, no
// allocation), dispatches on bytes rather than a character-at-a-time lexer, and nests without
// recursion (a deep document cannot overflow the stack).
//
// The handler, called in document order; a call returning false stops the read:
//   bool null();  bool boolean(bool);
//   bool number_integer(std::int64_t);   // negative integers; "-0" comes here as 0
//   bool number_unsigned(std::uint64_t); // non-negative integers
//   bool number_float(double, std::string_view raw);  // fractions, exponents, and integers out
//                                                     // of 64-bit range; raw is the text
//   bool string(std::string_view);  bool key(std::string_view);
//   bool start_object();  bool end_object();  bool start_array();  bool end_array();
// A view passed to string() or key() lives until the next call only.
//
// read_json returns false when the handler stopped or the text is not one JSON value (with
// nothing but whitespace around it); in the latter case *error says what and at which byte
// (1-based), e.g. "unexpected ',' at byte 24".

#include <charconv>
#include <cmath>
#include <cstdint>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

namespace stagelog::detail {

class JsonCursor {
 public:
  explicit JsonCursor(std::string_view text)
      : begin_(text.data()), p_(text.data()), end_(text.data() + text.size()) {}

  bool at_end() const noexcept { return p_ == end_; }
  char peek() const noexcept { return *p_; }
  void advance() noexcept { ++p_; }

  void skip_space() noexcept {
    while (p_ != end_ && (*p_ == ' ' || *p_ == '\n' || *p_ == '\r' || *p_ == '\t')) ++p_;
  }

  // Reads a string whose opening quote is at the cursor. Its content is a view into the text
  // when it has no escape, else into scratch_.
  bool string(std::string_view& out, std::string* error);

  // Reads a number at the cursor; sets exactly one of the outputs' kinds.
  enum class Number : std::uint8_t { Negative, Unsigned, Float };
  bool number(Number& kind, std::int64_t& negative, std::uint64_t& value, double& real,
              std::string_view& raw, std::string* error);

  bool literal(std::string_view word, std::string* error);

  // "unexpected 'x' at byte N" / "unexpected end of input".
  bool unexpected(std::string* error) const;
  bool fail(std::string* error, std::string_view what, const char* at) const;

 private:
  const char* begin_;
  const char* p_;
  const char* end_;
  std::string scratch_;
};

template <typename Handler>
bool read_json(std::string_view text, Handler& handler, std::string* error) {
  JsonCursor in(text);
  // The open containers: '{' or '['. After a value inside one, a ',' or its end must follow.
  std::vector<char> open;
  open.reserve(8);
  std::string_view s;
  // A member's key and its ':', at the cursor (after '{' or ',' and white space).
  auto member_key = [&] {
    if (in.at_end() || in.peek() != '"') return in.unexpected(error);
    if (!in.string(s, error) || !handler.key(s)) return false;
    in.skip_space();
    if (in.at_end() || in.peek() != ':') return in.unexpected(error);
    in.advance();
    return true;
  };
  for (;;) {
    // A value is expected here.
    in.skip_space();
    if (in.at_end()) return in.unexpected(error);
    bool ok = true;
    switch (in.peek()) {
      case '{':
        in.advance();
        if (!handler.start_object()) return false;
        in.skip_space();
        if (!in.at_end() && in.peek() == '}') {
          in.advance();
          if (!handler.end_object()) return false;
          break;
        }
        open.push_back('{');
        if (!member_key()) return false;
        continue;  // The member's value.
      case '[':
        in.advance();
        if (!handler.start_array()) return false;
        in.skip_space();
        if (!in.at_end() && in.peek() == ']') {
          in.advance();
          if (!handler.end_array()) return false;
          break;
        }
        open.push_back('[');
        continue;  // The first element.
      case '"':
        if (!in.string(s, error)) return false;
        ok = handler.string(s);
        break;
      case 't':
        if (!in.literal("true", error)) return false;
        ok = handler.boolean(true);
        break;
      case 'f':
        if (!in.literal("false", error)) return false;
        ok = handler.boolean(false);
        break;
      case 'n':
        if (!in.literal("null", error)) return false;
        ok = handler.null();
        break;
      default: {
        JsonCursor::Number kind;
        std::int64_t negative = 0;
        std::uint64_t value = 0;
        double real = 0;
        std::string_view raw;
        if (!in.number(kind, negative, value, real, raw, error)) return false;
        switch (kind) {
          case JsonCursor::Number::Negative:
            ok = handler.number_integer(negative);
            break;
          case JsonCursor::Number::Unsigned:
            ok = handler.number_unsigned(value);
            break;
          case JsonCursor::Number::Float:
            ok = handler.number_float(real, raw);
            break;
        }
      }
    }
    if (!ok) return false;
    // A value ended: close the containers it ends, then a ',' leads to the next value.
    for (;;) {
      in.skip_space();
      if (open.empty()) {
        if (!in.at_end()) return in.unexpected(error);
        return true;
      }
      if (in.at_end()) return in.unexpected(error);
      char c = in.peek();
      if (c == ',') {
        in.advance();
        if (open.back() == '{') {
          in.skip_space();
          if (!member_key()) return false;
        }
        break;  // The next value.
      }
      if (c != (open.back() == '{' ? '}' : ']')) return in.unexpected(error);
      in.advance();
      bool object = open.back() == '{';
      open.pop_back();
      if (!(object ? handler.end_object() : handler.end_array())) return false;
    }
  }
}

}  // namespace stagelog::detail
