#include "base/python_text.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>

namespace stagelog::detail {

std::size_t python_fixed(char* buf, std::size_t size, double value, int precision) noexcept {
  const char* special = nullptr;
  if (std::isnan(value)) special = "nan";
  if (std::isinf(value)) special = value > 0 ? "inf" : "-inf";
  if (special != nullptr) {
    std::size_t n = std::min(size, std::strlen(special));
    std::memcpy(buf, special, n);
    return n;
  }
  // std::to_chars with a precision works from the double's exact binary value, as CPython's
  // float formatting does, so halves round to even the same way.
  auto r = std::to_chars(buf, buf + size, value, std::chars_format::fixed, precision);
  return r.ec == std::errc() ? static_cast<std::size_t>(r.ptr - buf) : 0;
}

std::string python_seconds(std::int64_t ns, int precision) {
  std::string out;
  append_python_fixed(out, static_cast<double>(ns < 0 ? 0 : ns) / 1e9, precision);
  out += 's';
  return out;
}

}  // namespace stagelog::detail
