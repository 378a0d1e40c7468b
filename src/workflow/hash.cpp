#include "stagelog/hash.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <numeric>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/hex.hpp"
#include "base/json_escape.hpp"
#include "base/python_text.hpp"
#include "base/sha256.hpp"
#include "stagelog/error.hpp"
#include "workflow/py_json.hpp"

namespace stagelog {

namespace {

constexpr std::size_t kHexDigits = 16;
// Python's json gives up with RecursionError a little before 1000 levels (default recursion
// limit); we stop at 1000 so that the recursive writer below cannot exhaust the stack.
constexpr std::size_t kMaxDepth = 1000;

// First 16 hex digits of SHA-256 of `data`.
std::string sha256_prefix(std::string_view data) {
  detail::Sha256 digest = detail::sha256(data);
  return detail::to_hex(std::span(digest).first(kHexDigits / 2));
}

// ---- The parsed document -------------------------------------------------------------------

enum class Type { Null, True, False, Number, String, Array, Object };

struct Node {
  Type type = Type::Null;
  std::string text;               // Number: as Python writes it. String: the UTF-8 contents.
  std::vector<Node> children;     // Array elements, or object values.
  std::vector<std::string> keys;  // Object keys, parallel to children.
};

// Builds a Node tree from nlohmann's SAX events. Numbers are rendered as Python would render
// the int or float json.loads makes of them, while their text is still at hand.
class TreeBuilder {
 public:
  using Json = nlohmann::json;

  // The numbers that stand for NaN, Infinity and -Infinity, by their index among the
  // document's numbers (see find_constants).
  explicit TreeBuilder(std::vector<std::pair<std::size_t, std::string_view>> constants)
      : constants_(std::move(constants)) {}

  bool null() { return add(Node{Type::Null, {}, {}, {}}); }
  bool boolean(bool value) { return add(Node{value ? Type::True : Type::False, {}, {}, {}}); }
  bool number_integer(Json::number_integer_t value) { return add_number(std::to_string(value)); }
  bool number_unsigned(Json::number_unsigned_t value) { return add_number(std::to_string(value)); }
  bool number_float(Json::number_float_t value, const std::string& raw) {
    // nlohmann hands integers that do not fit 64 bits over as doubles. Python's int keeps
    // every digit, so write the digits as given (JSON has no leading zeros or '+').
    bool integral = !raw.empty() && raw.find_first_not_of("-0123456789") == std::string::npos;
    return add_number(integral ? raw : python_float_repr(value));
  }
  bool string(std::string& value) { return add(Node{Type::String, std::move(value), {}, {}}); }
  bool binary(Json::binary_t& /*value*/) {
    error_ = "binary values are not JSON";
    return false;
  }
  bool start_object(std::size_t /*elements*/) { return open(Type::Object); }
  bool key(std::string& value) {
    stack_.back()->keys.push_back(std::move(value));
    return true;
  }
  bool end_object() {
    stack_.pop_back();
    return true;
  }
  bool start_array(std::size_t /*elements*/) { return open(Type::Array); }
  bool end_array() {
    stack_.pop_back();
    return true;
  }
  bool parse_error(std::size_t /*position*/, const std::string& /*last_token*/,
                   const nlohmann::detail::exception& ex) {
    // "[json.exception.parse_error.101] parse error at line 1, column 2: ..." without the id.
    std::string_view what = ex.what();
    if (auto end = what.find("] ");
        !what.empty() && what.front() == '[' && end != std::string_view::npos) {
      what.remove_prefix(end + 2);
    }
    error_ = std::string(what);
    return false;
  }

  [[nodiscard]] const std::string& error() const noexcept { return error_; }
  Node take_root() { return std::move(root_); }

 private:
  bool add_number(std::string text) {
    if (next_constant_ < constants_.size() && constants_[next_constant_].first == numbers_) {
      text = std::string(constants_[next_constant_++].second);
    }
    ++numbers_;
    return add(Node{Type::Number, std::move(text), {}, {}});
  }

  // The top of the stack is the innermost open container; only its children vector grows, so
  // the pointers to its ancestors (elements of vectors that do not change) stay valid.
  bool add(Node node) {
    if (stack_.empty()) {
      root_ = std::move(node);
    } else {
      stack_.back()->children.push_back(std::move(node));
    }
    return true;
  }

  bool open(Type type) {
    if (stack_.size() >= kMaxDepth) {
      error_ = "nested deeper than " + std::to_string(kMaxDepth) + " levels";
      return false;
    }
    add(Node{type, {}, {}, {}});
    stack_.push_back(stack_.empty() ? &root_ : &stack_.back()->children.back());
    return true;
  }

  Node root_;
  std::vector<Node*> stack_;
  std::string error_;
  std::vector<std::pair<std::size_t, std::string_view>> constants_;
  std::size_t next_constant_ = 0;
  std::size_t numbers_ = 0;  // Numbers seen so far.
};

// json.loads also reads NaN, Infinity and -Infinity (as float('nan'), float('inf'),
// float('-inf')), which nlohmann's parser does not. Outside strings, each that stands alone
// (not glued to a number or a word, which stays an error) is overwritten with a 0 padded with
// spaces to its length, so that error columns stay right, and noted with its index among the
// document's number tokens: a number starts with '-' or a digit that does not follow a number
// or word character. In valid JSON these tokens are exactly the numbers the parser reports, in
// order. Returns the constants; `text` is changed only if there are some.
std::vector<std::pair<std::size_t, std::string_view>> find_constants(std::string& text) {
  static constexpr std::string_view kConstants[] = {"NaN", "Infinity", "-Infinity"};
  auto is_word = [](char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '.' ||
           c == '+' || c == '-' || c == '_';
  };
  std::vector<std::pair<std::size_t, std::string_view>> found;
  std::size_t numbers = 0;
  bool in_string = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') {
        ++i;  // The escaped character cannot end the string.
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') {
      in_string = true;
      continue;
    }
    if (i > 0 && is_word(text[i - 1])) continue;
    for (std::string_view constant : kConstants) {
      if (std::string_view(text).substr(i, constant.size()) == constant) {
        found.emplace_back(numbers, constant);
        text.replace(i, constant.size(), constant.size(), ' ');
        text[i] = '0';
        break;
      }
    }
    if (text[i] == '-' || (text[i] >= '0' && text[i] <= '9')) ++numbers;
  }
  return found;
}

Node parse(std::string_view json_text, std::string_view caller) {
  std::string text(json_text);
  TreeBuilder builder(find_constants(text));
  bool ok = nlohmann::json::sax_parse(text.begin(), text.end(), &builder);
  if (!ok) {
    std::string reason = builder.error().empty() ? "parse error" : builder.error();
    throw Error(std::string(caller) + ": invalid JSON: " + reason);
  }
  return builder.take_root();
}

// ---- Writing as json.dumps(obj, sort_keys=True) --------------------------------------------

void append_u_escape(std::string& out, std::uint32_t unit) {
  static constexpr std::string_view kHex = "0123456789abcdef";
  out += "\\u";
  for (int shift = 12; shift >= 0; shift -= 4) out += kHex[(unit >> shift) & 0xF];
}

}  // namespace

// ensure_ascii=True: only ' '..'~' other than '"' and '\\' are written as they are.
void detail::append_py_string(std::string& out, std::string_view s) {
  out += '"';
  std::size_t i = 0;
  while (i < s.size()) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      if (!append_short_escape(out, c)) {
        if (c < 0x20 || c == 0x7F) {
          append_u_escape(out, c);
        } else {
          out += static_cast<char>(c);
        }
      }
      ++i;
      continue;
    }
    // Decode one UTF-8 sequence (nlohmann has validated it; check anyway).
    std::size_t length = 0;
    std::uint32_t cp = 0;
    std::uint32_t min = 0;
    if ((c & 0xE0) == 0xC0) {
      length = 2, cp = c & 0x1F, min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
      length = 3, cp = c & 0x0F, min = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
      length = 4, cp = c & 0x07, min = 0x10000;
    }
    bool valid = length != 0 && i + length <= s.size();
    for (std::size_t k = 1; valid && k < length; ++k) {
      auto cc = static_cast<unsigned char>(s[i + k]);
      valid = (cc & 0xC0) == 0x80;
      cp = (cp << 6) | (cc & 0x3F);
    }
    if (!valid || cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
      throw Error("python_json_dumps_sorted: invalid UTF-8 in a string");
    }
    if (cp >= 0x10000) {
      cp -= 0x10000;
      append_u_escape(out, 0xD800 + (cp >> 10));
      append_u_escape(out, 0xDC00 + (cp & 0x3FF));
    } else {
      append_u_escape(out, cp);
    }
    i += length;
  }
  out += '"';
}

namespace {

// The entries of the dict json.loads makes of an object, as indices into its keys and
// children: one per distinct key, with the last value given for it (as json.loads keeps), either
// sorted by key or in the order the keys first appeared (a dict keeps insertion order). Python
// sorts str keys by code point, which is the byte order of their UTF-8 (std::string compares
// bytes as unsigned char).
std::vector<std::size_t> dict_items(const Node& node, bool sort_keys) {
  std::vector<std::size_t> order(node.keys.size());
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::stable_sort(order.begin(), order.end(),
                   [&node](std::size_t a, std::size_t b) { return node.keys[a] < node.keys[b]; });
  // (where the key first appeared, where it last appeared) for each distinct key.
  std::vector<std::pair<std::size_t, std::size_t>> items;
  for (std::size_t k = 0; k < order.size();) {
    std::size_t j = k;
    while (j + 1 < order.size() && node.keys[order[j + 1]] == node.keys[order[k]]) ++j;
    items.emplace_back(order[k], order[j]);
    k = j + 1;
  }
  if (!sort_keys) std::sort(items.begin(), items.end());
  std::vector<std::size_t> indices;
  indices.reserve(items.size());
  for (const auto& item : items) indices.push_back(item.second);
  return indices;
}

void append_node(std::string& out, const Node& node, bool sort_keys = true) {
  switch (node.type) {
    case Type::Null:
      out += "null";
      return;
    case Type::True:
      out += "true";
      return;
    case Type::False:
      out += "false";
      return;
    case Type::Number:
      out += node.text;
      return;
    case Type::String:
      detail::append_py_string(out, node.text);
      return;
    case Type::Array: {
      out += '[';
      for (std::size_t i = 0; i < node.children.size(); ++i) {
        if (i != 0) out += ", ";
        append_node(out, node.children[i], sort_keys);
      }
      out += ']';
      return;
    }
    case Type::Object: {
      out += '{';
      bool first = true;
      for (std::size_t i : dict_items(node, sort_keys)) {
        if (!first) out += ", ";
        first = false;
        detail::append_py_string(out, node.keys[i]);
        out += ": ";
        append_node(out, node.children[i], sort_keys);
      }
      out += '}';
      return;
    }
  }
}

// str() of a float json.loads made of NaN, Infinity or -Infinity; other numbers are as Python
// writes them already.
std::string_view python_number(const std::string& text) {
  if (text == "NaN") return "nan";
  if (text == "Infinity") return "inf";
  if (text == "-Infinity") return "-inf";
  return text;
}

// repr() of the value json.loads makes of `node`: None, True, False, numbers, 'strings' (see
// detail::append_python_repr), [lists] and {dicts} in the order their keys first appeared.
void append_repr(std::string& out, const Node& node) {
  switch (node.type) {
    case Type::Null:
      out += "None";
      return;
    case Type::True:
      out += "True";
      return;
    case Type::False:
      out += "False";
      return;
    case Type::Number:
      out += python_number(node.text);
      return;
    case Type::String:
      detail::append_python_repr(out, node.text);
      return;
    case Type::Array: {
      out += '[';
      for (std::size_t i = 0; i < node.children.size(); ++i) {
        if (i != 0) out += ", ";
        append_repr(out, node.children[i]);
      }
      out += ']';
      return;
    }
    case Type::Object: {
      out += '{';
      bool first = true;
      for (std::size_t i : dict_items(node, false)) {
        if (!first) out += ", ";
        first = false;
        detail::append_python_repr(out, node.keys[i]);
        out += ": ";
        append_repr(out, node.children[i]);
      }
      out += '}';
      return;
    }
  }
}

// str() of that value: a string is its own text, anything else its repr().
std::string python_str(const Node& node) {
  if (node.type == Type::String) return node.text;
  std::string out;
  append_repr(out, node);
  return out;
}

}  // namespace

std::string python_float_repr(double value) {
  if (std::isnan(value)) return "nan";
  if (std::isinf(value)) return value < 0 ? "-inf" : "inf";
  // Shortest round-trip digits, as "-d.ddde+XX" (at least two exponent digits, as Python).
  std::array<char, 64> buffer{};
  auto [end, ec] = std::to_chars(buffer.data(), buffer.data() + buffer.size(), value,
                                 std::chars_format::scientific);
  if (ec != std::errc()) throw Error("python_float_repr: to_chars failed");
  std::string_view sci(buffer.data(), static_cast<std::size_t>(end - buffer.data()));

  std::size_t e_pos = sci.find('e');
  std::string_view exponent_text = sci.substr(e_pos + 1);
  bool negative_exponent = exponent_text.front() == '-';
  exponent_text.remove_prefix(1);  // '+' or '-'.
  int exponent = 0;
  std::from_chars(exponent_text.data(), exponent_text.data() + exponent_text.size(), exponent);
  if (negative_exponent) exponent = -exponent;
  if (exponent < -4 || exponent >= 16) return std::string(sci);

  std::string out;
  std::string_view mantissa = sci.substr(0, e_pos);
  if (mantissa.front() == '-') {
    out += '-';
    mantissa.remove_prefix(1);
  }
  std::string digits(1, mantissa.front());
  if (mantissa.size() > 2) digits.append(mantissa.substr(2));  // Skip "d.".

  if (exponent >= 0) {
    auto int_digits = static_cast<std::size_t>(exponent) + 1;
    if (digits.size() <= int_digits) {
      out += digits;
      out.append(int_digits - digits.size(), '0');
      out += ".0";
    } else {
      out.append(digits, 0, int_digits);
      out += '.';
      out.append(digits, int_digits);
    }
  } else {
    out += "0.";
    out.append(static_cast<std::size_t>(-exponent - 1), '0');
    out += digits;
  }
  return out;
}

std::string hash_output(std::string_view text) { return sha256_prefix(text); }

std::string hash_output(const char* text) {
  return sha256_prefix(text == nullptr ? std::string_view("None") : std::string_view(text));
}

std::string hash_output(std::int64_t value) { return sha256_prefix(std::to_string(value)); }

std::string hash_output(double value) { return sha256_prefix(python_float_repr(value)); }

std::string hash_output(bool value) { return sha256_prefix(value ? "True" : "False"); }

std::string detail::py_dumps(std::string_view json_text, bool sort_keys) {
  Node root = parse(json_text, "JSON value");
  std::string out;
  append_node(out, root, sort_keys);
  return out;
}

void detail::append_py_float(std::string& out, double v, bool json_nan) {
  if (json_nan && std::isnan(v)) {
    out += "NaN";
  } else if (json_nan && std::isinf(v)) {
    out += v > 0 ? "Infinity" : "-Infinity";
  } else {
    out += python_float_repr(v);
  }
}

std::string python_json_dumps_sorted(std::string_view json_text) {
  Node root = parse(json_text, "python_json_dumps_sorted");
  std::string out;
  append_node(out, root);
  return out;
}

std::string python_str_of_json(std::string_view json_text) {
  return python_str(parse(json_text, "python_str_of_json"));
}

std::string hash_output_json(std::string_view json_text) {
  Node root = parse(json_text, "hash_output_json");
  if (root.type != Type::Object) return sha256_prefix(python_str(root));
  std::string out;
  append_node(out, root);
  return sha256_prefix(out);
}

}  // namespace stagelog
