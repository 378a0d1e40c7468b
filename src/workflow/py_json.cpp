#include "workflow/py_json.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <vector>

#include "stagelog/error.hpp"
#include "stagelog/hash.hpp"

namespace stagelog::detail {

namespace {

void dump(std::string& out, const nlohmann::ordered_json& v, bool sort_keys) {
  switch (v.type()) {
    case nlohmann::ordered_json::value_t::object: {
      std::vector<std::pair<std::string, const nlohmann::ordered_json*>> items;
      for (auto it = v.begin(); it != v.end(); ++it) items.emplace_back(it.key(), &it.value());
      if (sort_keys) {
        // Python sorts str keys by code point; UTF-8 byte order is the same order.
        std::stable_sort(items.begin(), items.end(),
                         [](const auto& a, const auto& b) { return a.first < b.first; });
      }
      out += '{';
      bool first = true;
      for (const auto& [key, value] : items) {
        if (!first) out += ", ";
        first = false;
        append_py_string(out, key);
        out += ": ";
        dump(out, *value, sort_keys);
      }
      out += '}';
      break;
    }
    case nlohmann::ordered_json::value_t::array: {
      out += '[';
      bool first = true;
      for (const auto& item : v) {
        if (!first) out += ", ";
        first = false;
        dump(out, item, sort_keys);
      }
      out += ']';
      break;
    }
    case nlohmann::ordered_json::value_t::string:
      append_py_string(out, v.get_ref<const std::string&>());
      break;
    case nlohmann::ordered_json::value_t::boolean:
      out += v.get<bool>() ? "true" : "false";
      break;
    case nlohmann::ordered_json::value_t::number_integer:
      out += std::to_string(v.get<std::int64_t>());
      break;
    case nlohmann::ordered_json::value_t::number_unsigned:
      out += std::to_string(v.get<std::uint64_t>());
      break;
    case nlohmann::ordered_json::value_t::number_float:
      append_py_float(out, v.get<double>());
      break;
    default:
      out += "null";
  }
}

}  // namespace

void append_py_float(std::string& out, double v, bool json_nan) {
  if (std::isnan(v)) {
    out += json_nan ? "NaN" : "nan";
    return;
  }
  if (std::isinf(v)) {
    out += v > 0 ? (json_nan ? "Infinity" : "inf") : (json_nan ? "-Infinity" : "-inf");
    return;
  }
  out += python_float_repr(v);
}

std::string py_dumps(std::string_view json_text, bool sort_keys) {
  nlohmann::ordered_json value;
  try {
    value = nlohmann::ordered_json::parse(json_text);
  } catch (const nlohmann::json::exception& e) {
    throw Error(std::string("not valid JSON: ") + e.what());
  }
  std::string out;
  dump(out, value, sort_keys);
  return out;
}

}  // namespace stagelog::detail
