#pragma once

#include <concepts>
#include <cstdint>
#include <string>
#include <string_view>
#include <type_traits>

namespace stagelog {

// A key/value argument to a log call or a stage scope: kv("tokens", 1247). It only refers
// to its key and value; the recorder copies both into the calling thread's ring buffer before
// the call returns, so temporaries made in the call's own expression are fine.
struct Kv {
  enum class Type : std::uint8_t { Int, Uint, Double, Bool, String };

  std::string_view key;
  Type type;
  union {
    std::int64_t i;
    std::uint64_t u;
    double d;
    bool b;
  };
  std::string_view s;
};

// By reference: a string value is viewed where the caller keeps it (taking it by value would
// view a copy that dies when kv returns). Like a std::string_view, a Kv must not outlive the
// value it names: build it in the call that records it, or from values that outlive it.
template <typename T>
Kv kv(std::string_view key, const T& value) noexcept {
  Kv f{key, Kv::Type::Int, {}, {}};
  if constexpr (std::is_same_v<T, bool>) {
    f.type = Kv::Type::Bool;
    f.b = value;
  } else if constexpr (std::is_floating_point_v<T>) {
    f.type = Kv::Type::Double;
    f.d = static_cast<double>(value);
  } else if constexpr (std::is_integral_v<T> && std::is_signed_v<T>) {
    f.type = Kv::Type::Int;
    f.i = static_cast<std::int64_t>(value);
  } else if constexpr (std::is_integral_v<T>) {
    f.type = Kv::Type::Uint;
    f.u = static_cast<std::uint64_t>(value);
  } else if constexpr (std::is_enum_v<T>) {
    f.type = Kv::Type::Int;
    f.i = static_cast<std::int64_t>(value);
  } else {
    static_assert(std::is_convertible_v<T, std::string_view>,
                  "kv() takes integers, floating point, bool and strings");
    f.type = Kv::Type::String;
    f.s = std::string_view(value);
  }
  return f;
}

}  // namespace stagelog
