#pragma once

#include <optional>
#include <utility>
#include <variant>

#include "stagelog/error.hpp"

namespace stagelog {

// What an operation whose failure is a normal outcome returns: a value, or the E that stopped
// it. A store query (an I/O error, a database locked past the busy timeout, a lost connection),
// a request the server refuses (E = its API error). The subset of C++23's std::expected<T, E>
// the callers need, kept here because a public header includes only the standard library and
// stagelog/ headers. T and E must differ: each converts implicitly.
//   auto r = store.latest(id, now);
//   if (!r) return r.error();
template <typename T, typename E = Error>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::in_place_index<0>, std::move(value)) {}  // NOLINT: implicit
  Result(E error) : v_(std::in_place_index<1>, std::move(error)) {}  // NOLINT: implicit

  bool has_value() const noexcept { return v_.index() == 0; }
  explicit operator bool() const noexcept { return has_value(); }

  // The value; throws the E when there is none.
  T& value() & {
    check();
    return std::get<0>(v_);
  }
  const T& value() const& {
    check();
    return std::get<0>(v_);
  }
  T&& value() && {
    check();
    return std::get<0>(std::move(v_));
  }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  // Precondition: !has_value().
  const E& error() const& { return std::get<1>(v_); }
  E&& error() && { return std::get<1>(std::move(v_)); }

 private:
  void check() const {
    if (!has_value()) throw std::get<1>(v_);
  }
  std::variant<T, E> v_;
};

template <typename E>
class [[nodiscard]] Result<void, E> {
 public:
  Result() = default;
  Result(E error) : error_(std::move(error)) {}  // NOLINT: implicit

  bool has_value() const noexcept { return !error_.has_value(); }
  explicit operator bool() const noexcept { return has_value(); }
  // Throws the E when the operation failed.
  void value() const {
    if (error_) throw *error_;
  }
  // Precondition: !has_value().
  const E& error() const& { return *error_; }
  E&& error() && { return *std::move(error_); }

 private:
  std::optional<E> error_;
};

}  // namespace stagelog
