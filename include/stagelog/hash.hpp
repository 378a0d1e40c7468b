#pragma once

#include <concepts>
#include <cstdint>
#include <string>
#include <string_view>
#include <type_traits>

namespace stagelog {

// Output hashes compatible with the Python workflow's hash_output (seed 002):
//
//   def hash_output(data):
//       if isinstance(data, dict):
//           data_str = json.dumps(data, sort_keys=True)
//       else:
//           data_str = str(data)
//       return hashlib.sha256(data_str.encode()).hexdigest()[:16]
//
// Every function returns the first 16 lowercase hex digits of SHA-256 over the UTF-8 bytes of
// what Python would hash, so hashes written by either side can be compared.

// str(s) of a Python str: the bytes as given (expected to be UTF-8).
std::string hash_output(std::string_view text);
// Same as the string_view overload (and keeps string literals away from the bool overload). A
// null pointer hashes "None", as Python's str(None).
std::string hash_output(const char* text);
// str(int): "42", "-7".
std::string hash_output(std::int64_t value);
// str(float), which is repr(float): "1.5", "100.0", "1e+20", "0.0001", "1e-05", "-0.0", "inf",
// "nan". See python_float_repr.
std::string hash_output(double value);
// str(bool): "True" / "False".
std::string hash_output(bool value);

// Any other integer type (int, unsigned, std::uint64_t, ...): str(int) too. Without this,
// hash_output(42) would be ambiguous between the int64, double and bool overloads. Character
// types are left out on purpose: say hash_output("a") or hash_output(std::int64_t{'a'}).
template <std::integral T>
requires(!std::same_as<T, bool> && !std::same_as<T, std::int64_t> && !std::same_as<T, char> &&
         !std::same_as<T, wchar_t> && !std::same_as<T, char8_t> && !std::same_as<T, char16_t> &&
         !std::same_as<T, char32_t>) std::string hash_output(T value) {
  if constexpr (std::is_signed_v<T>) {
    return hash_output(static_cast<std::int64_t>(value));
  } else {
    return hash_output(std::string_view(std::to_string(static_cast<unsigned long long>(value))));
  }
}

// Any JSON value given as JSON text, hashed as the seed's hash_output hashes what json.loads
// makes of it: an object as json.dumps(obj, sort_keys=True) (python_json_dumps_sorted), anything
// else as str(obj) (python_str_of_json), so a list, a string or a number a node returned can be
// hashed from its JSON too. NaN, Infinity and -Infinity are read as json.loads reads them.
// Throws stagelog::Error for what python_json_dumps_sorted refuses.
std::string hash_output_json(std::string_view json_text);

// json.dumps(json.loads(json_text), sort_keys=True), byte for byte: keys sorted by code point
// (nested objects too, arrays kept in order; of duplicate keys the last wins), ", " and ": "
// separators, non-ASCII and DEL escaped as \uXXXX with lowercase hex (surrogate pairs above
// U+FFFF), \" \\ \n \r \t \b \f and \u00XX for other control characters, "/" not escaped,
// integers exact (also beyond 64 bits), floats as python_float_repr, true/false/null, and
// NaN, Infinity, -Infinity, which json.loads reads and json.dumps writes. Accepts any JSON
// value at the top level. Throws stagelog::Error for invalid JSON, and for what json.loads
// accepts but we do not (lone surrogate escapes, numbers that overflow a double such as 1e400),
// and for nesting deeper than 1000 levels (Python itself gives up with RecursionError a little
// before that).
std::string python_json_dumps_sorted(std::string_view json_text);

// str(json.loads(json_text)), byte for byte: a string's own text (UTF-8), "None", "True",
// "False", numbers as Python writes them ("nan", "inf", "-inf" for NaN and Infinity), and the
// repr() of lists and dicts: [1, 'a', None, nan], {'k': [1.5, {'z': True}]}, with dict keys in
// the order they first appeared (of duplicates, the last value) and strings quoted and escaped
// as repr() does, non-printable characters included ('\x00', '\u200b', '\U000e0001': Python
// 3.11's printable table, Unicode 14.0). Throws as python_json_dumps_sorted does.
std::string python_str_of_json(std::string_view json_text);

// Python's repr(float) (= str(float)): the shortest digits that read back as the same double,
// in scientific notation when the decimal exponent is below -4 or at least 16 ("1e+16",
// "1.5e-07", exponent at least two digits), otherwise positional with ".0" when integral
// ("100.0", "0.0001"); "inf", "-inf", "nan" (NaN's sign is not shown, as in Python).
std::string python_float_repr(double value);

}  // namespace stagelog
