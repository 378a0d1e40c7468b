#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string_view>
#include <vector>

#include "core/ring.hpp"
#include "stagelog/event.hpp"
#include "stagelog/field.hpp"

namespace stagelog::detail {

// In a Structured record's kind word, above the Kind.
inline constexpr std::uint64_t kFieldsInMessage = 1u << 8;

inline constexpr std::size_t align8(std::size_t n) noexcept { return (n + 7) & ~std::size_t{7}; }

// memcpy for the short strings of the hot path (names, keys, short messages), inline: a call
// to the library's memcpy costs more than the copy. Overlapping word copies, never past n.
inline void copy_bytes(std::byte* d, const char* s, std::size_t n) noexcept {
  auto word = [](std::byte* to, const char* from, std::size_t size) {
    if (size == 8) {
      std::uint64_t v;
      std::memcpy(&v, from, 8);
      std::memcpy(to, &v, 8);
    } else {
      std::uint32_t v;
      std::memcpy(&v, from, 4);
      std::memcpy(to, &v, 4);
    }
  };
  if (n > 32) {
    std::memcpy(d, s, n);
  } else if (n > 16) {
    word(d, s, 8);
    word(d + 8, s + 8, 8);
    word(d + n - 16, s + n - 16, 8);
    word(d + n - 8, s + n - 8, 8);
  } else if (n >= 8) {
    word(d, s, 8);
    word(d + n - 8, s + n - 8, 8);
  } else if (n >= 4) {
    word(d, s, 4);
    word(d + n - 4, s + n - 4, 4);
  } else if (n > 0) {
    d[0] = static_cast<std::byte>(s[0]);
    d[n / 2] = static_cast<std::byte>(s[n / 2]);
    d[n - 1] = static_cast<std::byte>(s[n - 1]);
  }
}

inline std::size_t encoded_size(std::string_view s) noexcept { return 4 + s.size(); }

inline std::size_t encoded_size(const Kv& field) noexcept {
  return 1 + encoded_size(field.key) + (field.type == Kv::Type::String ? encoded_size(field.s) : 8);
}

// Sequential writer into memory reserved in a Ring.
class Encoder {
 public:
  explicit Encoder(std::byte* p) noexcept : p_(p) {}
  void u8(std::uint8_t v) noexcept { *p_++ = static_cast<std::byte>(v); }
  void u64(std::uint64_t v) noexcept { raw(&v, 8); }
  void i64(std::int64_t v) noexcept { raw(&v, 8); }
  void ptr(const void* v) noexcept { raw(&v, sizeof v); }
  void str(std::string_view s) noexcept {
    auto n = static_cast<std::uint32_t>(s.size());
    raw(&n, 4);
    copy_bytes(p_, s.data(), s.size());
    p_ += s.size();
  }
  void field(const Kv& f, std::size_t max_string) noexcept {
    u8(static_cast<std::uint8_t>(f.type));
    str(f.key.substr(0, max_string));
    switch (f.type) {
      case Kv::Type::Int:
        i64(f.i);
        break;
      case Kv::Type::Uint:
        u64(f.u);
        break;
      case Kv::Type::Double:
        raw(&f.d, 8);
        break;
      case Kv::Type::Bool:
        u64(f.b ? 1 : 0);
        break;
      case Kv::Type::String:
        str(f.s.substr(0, max_string));
        break;
    }
  }

 private:
  void raw(const void* src, std::size_t n) noexcept {
    std::memcpy(p_, src, n);  // n is a constant at every call: compiled to moves.
    p_ += n;
  }
  std::byte* p_;
};

// Sequential reader of a record's payload on the backend thread. The views it returns point
// into the ring and are valid until the record is popped.
class Decoder {
 public:
  explicit Decoder(const RecordHeader* header) noexcept
      : p_(reinterpret_cast<const std::byte*>(header) + sizeof(RecordHeader)) {}
  std::uint8_t u8() noexcept { return static_cast<std::uint8_t>(*p_++); }
  std::uint64_t u64() noexcept { return read<std::uint64_t>(); }
  std::int64_t i64() noexcept { return read<std::int64_t>(); }
  double f64() noexcept { return read<double>(); }
  template <typename T>
  const T* ptr() noexcept {
    return read<const T*>();
  }
  std::string_view str() noexcept {
    auto n = read<std::uint32_t>();
    std::string_view s(reinterpret_cast<const char*>(p_), n);
    p_ += n;
    return s;
  }
  void fields(std::size_t count, std::vector<Field>& out) {
    out.clear();
    for (std::size_t i = 0; i < count; ++i) {
      auto type = static_cast<Kv::Type>(u8());
      Field f{str(), FieldValue{}};
      switch (type) {
        case Kv::Type::Int:
          f.value = i64();
          break;
        case Kv::Type::Uint:
          f.value = u64();
          break;
        case Kv::Type::Double:
          f.value = f64();
          break;
        case Kv::Type::Bool:
          f.value = u64() != 0;
          break;
        case Kv::Type::String:
          f.value = str();
          break;
      }
      out.push_back(f);
    }
  }

 private:
  template <typename T>
  T read() noexcept {
    T v;
    std::memcpy(&v, p_, sizeof v);
    p_ += sizeof v;
    return v;
  }
  const std::byte* p_;
};

}  // namespace stagelog::detail
