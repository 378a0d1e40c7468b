#include "format/json_reader.hpp"

#include <cstdio>
#include <cstdlib>

#include "format/format.hpp"

namespace stagelog::detail {

namespace {

int hex_digit(char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool is_digit(char c) noexcept { return c >= '0' && c <= '9'; }

}  // namespace

bool JsonCursor::fail(std::string* error, std::string_view what, const char* at) const {
  if (error != nullptr) {
    *error = std::string(what) + " at byte " + std::to_string(at - begin_ + 1);
  }
  return false;
}

bool JsonCursor::unexpected(std::string* error) const {
  if (error == nullptr) return false;
  if (p_ == end_) {
    *error = "unexpected end of input";
    return false;
  }
  auto c = static_cast<unsigned char>(*p_);
  char what[32];
  if (c >= 0x20 && c < 0x7F) {
    std::snprintf(what, sizeof what, "unexpected '%c'", c);
  } else {
    std::snprintf(what, sizeof what, "unexpected byte 0x%02X", c);
  }
  return fail(error, what, p_);
}

bool JsonCursor::literal(std::string_view word, std::string* error) {
  for (char c : word) {
    if (p_ == end_ || *p_ != c) return unexpected(error);
    ++p_;
  }
  return true;
}

bool JsonCursor::string(std::string_view& out, std::string* error) {
  const char* quote = p_;
  ++p_;  // The opening quote.
  const char* start = p_;
  bool copied = false;  // Whether the content so far is in scratch_ (an escape was seen).
  for (;;) {
    // The common case: printable ASCII up to the closing quote.
    while (p_ != end_) {
      auto c = static_cast<unsigned char>(*p_);
      if (c == '"' || c == '\\' || c < 0x20 || c >= 0x80) break;
      ++p_;
    }
    if (p_ == end_) return fail(error, "unterminated string", quote);
    auto c = static_cast<unsigned char>(*p_);
    if (c == '"') {
      if (copied) {
        scratch_.append(start, p_);
        out = scratch_;
      } else {
        out = std::string_view(start, static_cast<std::size_t>(p_ - start));
      }
      ++p_;
      return true;
    }
    if (c < 0x20) {
      char what[48];
      std::snprintf(what, sizeof what, "control character U+%04X in a string", c);
      return fail(error, what, p_);
    }
    if (c >= 0x80) {
      std::size_t n =
          utf8_sequence_at(std::string_view(p_, static_cast<std::size_t>(end_ - p_)), 0);
      if (n == 0) return fail(error, "invalid UTF-8", p_);
      p_ += n;
      continue;
    }
    // An escape: from here on the content is built in scratch_.
    if (!copied) {
      scratch_.clear();
      copied = true;
    }
    scratch_.append(start, p_);
    const char* escape = p_;
    ++p_;
    if (p_ == end_) return fail(error, "unterminated string", quote);
    switch (*p_) {
      case '"':
        scratch_ += '"';
        break;
      case '\\':
        scratch_ += '\\';
        break;
      case '/':
        scratch_ += '/';
        break;
      case 'b':
        scratch_ += '\b';
        break;
      case 'f':
        scratch_ += '\f';
        break;
      case 'n':
        scratch_ += '\n';
        break;
      case 'r':
        scratch_ += '\r';
        break;
      case 't':
        scratch_ += '\t';
        break;
      case 'u': {
        auto hex4 = [&](const char* at, std::uint32_t& value) {
          if (end_ - at < 4) return false;
          value = 0;
          for (int i = 0; i < 4; ++i) {
            int d = hex_digit(at[i]);
            if (d < 0) return false;
            value = value * 16 + static_cast<std::uint32_t>(d);
          }
          return true;
        };
        std::uint32_t cp;
        if (!hex4(p_ + 1, cp)) return fail(error, "invalid \\u escape", escape);
        p_ += 4;
        if (cp >= 0xDC00 && cp <= 0xDFFF) {
          return fail(error, "lone low surrogate in a \\u escape", escape);
        }
        if (cp >= 0xD800 && cp <= 0xDBFF) {
          std::uint32_t low;
          if (end_ - p_ < 3 || p_[1] != '\\' || p_[2] != 'u' || !hex4(p_ + 3, low) ||
              low < 0xDC00 || low > 0xDFFF) {
            return fail(error, "high surrogate without its low surrogate in a \\u escape", escape);
          }
          p_ += 6;
          cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
        }
        append_utf8(scratch_, cp);
        break;
      }
      default:
        return fail(error, "invalid escape", escape);
    }
    ++p_;
    start = p_;
  }
}

bool JsonCursor::number(Number& kind, std::int64_t& negative, std::uint64_t& value, double& real,
                        std::string_view& raw, std::string* error) {
  const char* first = p_;
  bool minus = false;
  if (*p_ == '-') {
    minus = true;
    ++p_;
  }
  const char* digits = p_;
  if (p_ == end_ || !is_digit(*p_)) return unexpected(error);
  if (*p_ == '0') {
    ++p_;
  } else {
    while (p_ != end_ && is_digit(*p_)) ++p_;
  }
  bool integer = true;
  if (p_ != end_ && *p_ == '.') {
    integer = false;
    ++p_;
    if (p_ == end_ || !is_digit(*p_)) return unexpected(error);
    while (p_ != end_ && is_digit(*p_)) ++p_;
  }
  if (p_ != end_ && (*p_ == 'e' || *p_ == 'E')) {
    integer = false;
    ++p_;
    if (p_ != end_ && (*p_ == '+' || *p_ == '-')) ++p_;
    if (p_ == end_ || !is_digit(*p_)) return unexpected(error);
    while (p_ != end_ && is_digit(*p_)) ++p_;
  }
  raw = std::string_view(first, static_cast<std::size_t>(p_ - first));
  if (integer) {
    std::uint64_t magnitude = 0;
    auto [end, ec] = std::from_chars(digits, p_, magnitude);
    if (ec == std::errc() && end == p_) {
      constexpr std::uint64_t kMinMagnitude = std::uint64_t{1} << 63;  // -INT64_MIN
      if (!minus) {
        kind = Number::Unsigned;
        value = magnitude;
        return true;
      }
      if (magnitude <= kMinMagnitude) {
        kind = Number::Negative;
        negative = magnitude == kMinMagnitude ? INT64_MIN : -static_cast<std::int64_t>(magnitude);
        return true;
      }
    }
    // Out of 64-bit range: a floating-point number, as other JSON readers make it.
  }
  kind = Number::Float;
  auto [end, ec] = std::from_chars(first, p_, real);
  if (ec == std::errc::result_out_of_range) {
    // Too small is zero (or a subnormal); too large is refused.
    std::string text(raw);
    real = std::strtod(text.c_str(), nullptr);
    if (std::isinf(real)) return fail(error, "number out of range: " + text, first);
    return true;
  }
  if (ec != std::errc() || end != p_) return fail(error, "invalid number", first);
  return true;
}

}  // namespace stagelog::detail
