#pragma once

// The binary layout of a ring record, all of it. A record is a RecordHeader, a payload and, for
// the types that carry them, the event's fields; the whole is padded to a multiple of
// kRecordAlign. Each payload struct below lists its members once, in ring order, in members():
// record_size() measures, encode() writes and decode() reads through that one list, so the
// three cannot drift apart. A field's layout is likewise written once for each direction, side
// by side (Encoder::field, Decoder::field, field_bytes).
//
// Threads: record_size() and encode() run on the producing thread, on the hot path: all inline
// and noexcept, no allocation. decode() runs on the backend thread; the views it returns point
// into the ring and stay valid until the record is popped.
//
// The asserts state the preconditions; they are on in the dev, asan and tsan presets (Debug, no
// NDEBUG) and compiled out in release.

#include <algorithm>
#include <cassert>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <span>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "stagelog/event.hpp"
#include "stagelog/field.hpp"

namespace stagelog::detail {

struct Component;  // stagelog/recorder.hpp; records carry a pointer to it.

// --- Sizes -----------------------------------------------------------------------------------

inline constexpr std::size_t kRecordAlign = 8;  // Records start and end at multiples of it.
inline constexpr std::size_t kTagBytes = 1;     // An enum or a bool.
using StringLength = std::uint32_t;             // Before a string's bytes.
inline constexpr std::size_t kLengthBytes = sizeof(StringLength);
inline constexpr std::size_t kWordBytes = sizeof(std::uint64_t);  // A field's non-string value.
inline constexpr std::size_t kPointerBytes = sizeof(const void*);
// A field without its strings' bytes, at most: tag, key length, and a word or a value length.
inline constexpr std::size_t kFieldMaxFixedBytes =
    kTagBytes + kLengthBytes + std::max(kWordBytes, kLengthBytes);
inline constexpr std::size_t kMaxFields = 255;  // RecordHeader::field_count is a byte.
inline constexpr std::size_t kNoLimit = std::numeric_limits<std::size_t>::max();

inline constexpr std::size_t align_record(std::size_t n) noexcept {
  return (n + kRecordAlign - 1) & ~(kRecordAlign - 1);
}

// --- Header ----------------------------------------------------------------------------------

enum class RecordType : std::uint8_t {
  Pad,  // Filler up to the end of the buffer; the next record starts at offset 0.
  Log,  // The payload structs below, one per type.
  StageBegin,
  StageEnd,
  RunBegin,
  RunEnd,
  Context,
  Lifecycle,
  Structured,
};

// Every record starts with this header; `size` counts the header, payload and padding.
struct RecordHeader {
  std::uint32_t size;
  RecordType type;
  Level level;
  Status status;
  std::uint8_t field_count;
  std::int64_t ts;  // TSC ticks, or ns when a clock is injected.
};
static_assert(sizeof(RecordHeader) == 16 && sizeof(RecordHeader) % kRecordAlign == 0);

// A Pad record: only its size and type are written, and it may be as short as kRecordAlign.
inline void encode_pad(std::byte* at, std::size_t bytes) noexcept {
  assert(bytes >= kRecordAlign && bytes % kRecordAlign == 0);
  auto* header = reinterpret_cast<RecordHeader*>(at);
  header->size = static_cast<std::uint32_t>(bytes);
  header->type = RecordType::Pad;
}

// --- Payloads --------------------------------------------------------------------------------
// members() ties the members that go into the ring, in their order. A string_view is cut to the
// RecordSize's limit when encoded; fields, when kHasFields, follow the payload.

// What a Context record sets for the thread's following records.
enum class ContextKey : std::uint8_t { Worker, Run };

// RecordType::Log (Logger) and RecordType::Lifecycle (terminate and crash handlers).
template <RecordType T>
struct MessageRecord {
  static constexpr RecordType kType = T;
  static constexpr bool kHasFields = true;
  const Component* component = nullptr;
  std::string_view message;
  static auto members(auto& r) noexcept { return std::tie(r.component, r.message); }
};
using LogRecord = MessageRecord<RecordType::Log>;
using LifecycleRecord = MessageRecord<RecordType::Lifecycle>;

struct StageBeginRecord {
  static constexpr RecordType kType = RecordType::StageBegin;
  static constexpr bool kHasFields = true;
  const Component* component = nullptr;
  std::uint64_t id = 0;
  std::string_view name;
  static auto members(auto& r) noexcept { return std::tie(r.component, r.id, r.name); }
};

struct StageEndRecord {
  static constexpr RecordType kType = RecordType::StageEnd;
  static constexpr bool kHasFields = true;
  const Component* component = nullptr;
  std::uint64_t id = 0;
  std::int64_t begin_ts = 0;
  std::string_view name;
  std::string_view message;
  static auto members(auto& r) noexcept {
    return std::tie(r.component, r.id, r.begin_ts, r.name, r.message);
  }
};

struct RunBeginRecord {
  static constexpr RecordType kType = RecordType::RunBegin;
  static constexpr bool kHasFields = false;
  const Component* component = nullptr;
  static auto members(auto& r) noexcept { return std::tie(r.component); }
};

struct RunEndRecord {
  static constexpr RecordType kType = RecordType::RunEnd;
  static constexpr bool kHasFields = false;
  const Component* component = nullptr;
  std::int64_t begin_ts = 0;
  std::string_view message;
  static auto members(auto& r) noexcept { return std::tie(r.component, r.begin_ts, r.message); }
};

// The worker or run id of the thread's following records.
struct ContextRecord {
  static constexpr RecordType kType = RecordType::Context;
  static constexpr bool kHasFields = false;
  ContextKey key = ContextKey::Worker;
  std::string_view value;
  static auto members(auto& r) noexcept { return std::tie(r.key, r.value); }
};

// Any kind of event (Logger::event). begin_ts 0: no elapsed time; worker empty: the thread's.
struct StructuredRecord {
  static constexpr RecordType kType = RecordType::Structured;
  static constexpr bool kHasFields = true;
  const Component* component = nullptr;
  Kind kind = Kind::Log;
  bool fields_in_message = false;
  std::int64_t begin_ts = 0;
  std::string_view subject;
  std::string_view message;
  std::string_view worker;
  static auto members(auto& r) noexcept {
    return std::tie(r.component, r.kind, r.fields_in_message, r.begin_ts, r.subject, r.message,
                    r.worker);
  }
};

// --- Members ---------------------------------------------------------------------------------
// A string is its length and its bytes; an enum or a bool is one byte; a pointer or a 64-bit
// integer is its own bytes. member_bytes() is the fixed part: a string's bytes come on top.

template <typename T>
inline constexpr bool kIsString = std::is_same_v<T, std::string_view>;
template <typename T>
inline constexpr bool kIsTag = std::is_enum_v<T> || std::is_same_v<T, bool>;

template <typename T>
constexpr std::size_t member_bytes() noexcept {
  if constexpr (kIsString<T>) {
    return kLengthBytes;
  } else if constexpr (kIsTag<T>) {
    static_assert(sizeof(T) == kTagBytes);
    return kTagBytes;
  } else if constexpr (std::is_pointer_v<T>) {
    return kPointerBytes;
  } else {
    static_assert(std::is_integral_v<T> && sizeof(T) == kWordBytes);
    return kWordBytes;
  }
}

// A string's bytes, cut to `limit`; the other members have none.
template <typename T>
std::size_t variable_bytes(const T& member, std::size_t limit) noexcept {
  if constexpr (kIsString<T>) {
    return std::min(member.size(), limit);
  } else {
    return 0;
  }
}

template <typename Tie>
struct Layout;
template <typename... T>
struct Layout<std::tuple<T&...>> {
  static constexpr std::size_t kFixedBytes = (member_bytes<std::remove_cv_t<T>>() + ... + 0);
  static constexpr std::size_t kStrings = (std::size_t{kIsString<std::remove_cv_t<T>>} + ... + 0);
};
// The payload of record R: its fixed bytes and how many strings it has.
template <typename R>
using LayoutOf = Layout<decltype(R::members(std::declval<R&>()))>;

// Sequential writer into memory reserved in a Ring; every string is cut to `limit`.
class Encoder {
 public:
  Encoder(std::byte* p, std::size_t limit) noexcept : p_(p), limit_(limit) {}

  template <typename T>
  void put(const T& v) noexcept {
    if constexpr (kIsString<T>) {
      const std::string_view s = v.substr(0, limit_);
      const auto n = static_cast<StringLength>(s.size());
      raw(&n, kLengthBytes);
      copy_bytes(p_, s.data(), s.size());
      p_ += s.size();
    } else if constexpr (kIsTag<T>) {
      *p_++ = static_cast<std::byte>(v);
    } else {
      raw(&v, member_bytes<T>());
    }
  }

  void field(const Kv& f) noexcept;
  const std::byte* position() const noexcept { return p_; }

 private:
  // memcpy for the short strings of the hot path (names, keys, short messages), inline: a call
  // to the library's memcpy costs more than the copy. Overlapping word copies, never past n.
  static void copy_bytes(std::byte* d, const char* s, std::size_t n) noexcept {
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
  void raw(const void* src, std::size_t n) noexcept {
    std::memcpy(p_, src, n);  // n is a constant at every call: compiled to moves.
    p_ += n;
  }

  std::byte* p_;
  std::size_t limit_;
};

// Sequential reader of a record's payload.
class Decoder {
 public:
  explicit Decoder(const RecordHeader* header) noexcept
      : p_(reinterpret_cast<const std::byte*>(header) + sizeof(RecordHeader)) {}

  template <typename T>
  void get(T& v) noexcept {
    if constexpr (kIsString<T>) {
      const auto n = read<StringLength>();
      v = std::string_view(reinterpret_cast<const char*>(p_), n);
      p_ += n;
    } else if constexpr (kIsTag<T>) {
      v = static_cast<T>(read<std::uint8_t>());
    } else {
      static_assert(sizeof(T) == member_bytes<T>());
      v = read<T>();
    }
  }

  Field field() noexcept;
  const std::byte* position() const noexcept { return p_; }

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

// --- Fields ----------------------------------------------------------------------------------
// A field: its value type (a tag), its key (a string), then its value: a string, or a word for
// the others (a bool as 0 or 1).

inline std::size_t field_bytes(const Kv& f, std::size_t limit) noexcept {
  return kTagBytes + kLengthBytes + std::min(f.key.size(), limit) +
         (f.type == Kv::Type::String ? kLengthBytes + std::min(f.s.size(), limit) : kWordBytes);
}

inline void Encoder::field(const Kv& f) noexcept {
  put(f.type);
  put(f.key);
  switch (f.type) {
    case Kv::Type::Int:
      raw(&f.i, kWordBytes);
      break;
    case Kv::Type::Uint:
      raw(&f.u, kWordBytes);
      break;
    case Kv::Type::Double:
      raw(&f.d, kWordBytes);
      break;
    case Kv::Type::Bool:
      put(std::uint64_t{f.b ? 1u : 0u});
      break;
    case Kv::Type::String:
      put(f.s);
      break;
  }
}

inline Field Decoder::field() noexcept {
  Kv::Type type;
  get(type);
  assert(type <= Kv::Type::String);
  Field f{{}, FieldValue{}};
  get(f.key);
  switch (type) {
    case Kv::Type::Int:
      f.value = read<std::int64_t>();
      break;
    case Kv::Type::Uint:
      f.value = read<std::uint64_t>();
      break;
    case Kv::Type::Double:
      f.value = read<double>();
      break;
    case Kv::Type::Bool:
      f.value = read<std::uint64_t>() != 0;
      break;
    case Kv::Type::String: {
      std::string_view s;
      get(s);
      f.value = s;
      break;
    }
  }
  return f;
}

// At most kMaxFields: the header counts them in a byte.
inline std::span<const Kv> cap_fields(std::span<const Kv> fields) noexcept {
  return fields.size() > kMaxFields ? fields.first(kMaxFields) : fields;
}

// --- Sizing ----------------------------------------------------------------------------------

struct RecordSize {
  std::size_t bytes;  // Header to padding: what to reserve in the ring.
  std::size_t limit;  // The length every string is cut to; kNoLimit when none is.
};

// Bytes of a record with every string cut to `limit`, header and padding included.
template <typename R>
inline std::size_t measure(const R& record, std::span<const Kv> fields,
                           std::size_t limit) noexcept {
  std::size_t n = sizeof(RecordHeader) + LayoutOf<R>::kFixedBytes;
  std::apply([&](const auto&... m) { ((n += variable_bytes(m, limit)), ...); }, R::members(record));
  for (const Kv& f : fields) n += field_bytes(f, limit);
  return align_record(n);
}

// The rare record that does not fit: the one limit that cuts every string (payload strings,
// field keys and string values alike) so that it does.
template <typename R>
[[gnu::noinline]] RecordSize record_size_cut(const R& record, std::span<const Kv> fields,
                                             std::size_t max_record) noexcept {
  const std::size_t pieces = LayoutOf<R>::kStrings + 2 * fields.size();
  const std::size_t overhead = sizeof(RecordHeader) + LayoutOf<R>::kFixedBytes +
                               kFieldMaxFixedBytes * fields.size() + kRecordAlign;
  const std::size_t limit =
      overhead < max_record ? (max_record - overhead) / std::max<std::size_t>(pieces, 1) : 0;
  return {measure(record, fields, limit), limit};
}

// The size of a record and the limit to cut its strings to. Almost always it fits in
// max_record (half the ring) as it is; else its strings are cut until it does. (Only the fixed
// parts of 255 fields can outgrow half of a 4 KiB ring: Ring::try_reserve asserts.)
template <typename R>
inline RecordSize record_size(const R& record, std::span<const Kv> fields,
                              std::size_t max_record) noexcept {
  const std::size_t bytes = measure(record, fields, kNoLimit);
  if (bytes <= max_record) [[likely]] {
    return {bytes, kNoLimit};
  }
  return record_size_cut(record, fields, max_record);
}

// --- Encode and decode -----------------------------------------------------------------------

// Writes a record of type R::kType at `at`, which has room for size.bytes (record_size()'s).
template <typename R>
inline void encode(std::byte* at, RecordSize size, Level level, Status status, std::int64_t ts,
                   const R& record, std::span<const Kv> fields = {}) noexcept {
  assert(reinterpret_cast<std::uintptr_t>(at) % kRecordAlign == 0);
  assert(size.bytes % kRecordAlign == 0 && size.bytes <= std::numeric_limits<std::uint32_t>::max());
  assert(fields.size() <= kMaxFields && (R::kHasFields || fields.empty()));
  *reinterpret_cast<RecordHeader*>(at) =
      RecordHeader{static_cast<std::uint32_t>(size.bytes),   R::kType, level, status,
                   static_cast<std::uint8_t>(fields.size()), ts};
  Encoder e(at + sizeof(RecordHeader), size.limit);
  std::apply([&](const auto&... m) { (e.put(m), ...); }, R::members(record));
  for (const Kv& f : fields) e.field(f);
  assert(align_record(static_cast<std::size_t>(e.position() - at)) == size.bytes);
}

// Reads a record of type R::kType; its fields, if any, go to `fields` (cleared first). The
// header's level, status and ts are the caller's to read.
template <typename R>
inline R decode(const RecordHeader* header, std::vector<Field>& fields) {
  assert(header->type == R::kType);
  R record;
  Decoder d(header);
  std::apply([&](auto&... m) { (d.get(m), ...); }, R::members(record));
  fields.clear();
  if constexpr (R::kHasFields) {
    for (std::size_t i = 0; i < header->field_count; ++i) fields.push_back(d.field());
  } else {
    assert(header->field_count == 0);
  }
  assert(align_record(static_cast<std::size_t>(
             d.position() - reinterpret_cast<const std::byte*>(header))) == header->size);
  return record;
}

}  // namespace stagelog::detail
