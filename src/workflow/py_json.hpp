#pragma once

#include <string>
#include <string_view>

namespace stagelog::detail {

// JSON written the way Python's json.dumps writes it by default (seed 002's trace files and
// hash): ", " and ": " separators, non-ASCII escaped as \uXXXX (ensure_ascii), floats in
// Python's repr. Invalid UTF-8 becomes \ufffd.
void append_py_string(std::string& out, std::string_view s);
// repr(float): "1.5", "100.0", "1e+20", "1e-05", "NaN"/"Infinity" in JSON (json_nan) or
// "nan"/"inf" (str()).
void append_py_float(std::string& out, double v, bool json_nan = true);
// A JSON value given as text, re-serialised as json.dumps would after json.loads (keys in
// their order, or sorted; integers of any size exact). Throws Error if the text is not valid
// JSON (NaN, Infinity and -Infinity are read, as json.loads reads them). These three live in
// hash.cpp, beside the parser they share.
std::string py_dumps(std::string_view json_text, bool sort_keys);

}  // namespace stagelog::detail
