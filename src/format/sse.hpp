#pragma once

// Server-Sent Events as a client reads them (the WHATWG HTML standard, "Interpreting an event
// stream"): `stagelog tail --server` and the tests read GET /api/v1/stream with it.

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace stagelog::detail {

struct SseEvent {
  std::string type;  // The event: field, "message" when there was none.
  std::string data;  // The data: lines joined by '\n'.
  std::string id;    // The last event id as of this event (what to resume from).
};

// Splits a stream of bytes into events. Lines end at "\n", "\r\n" or "\r" (also when the two
// bytes of a "\r\n" arrive in different pieces); comments and unknown fields are skipped; a
// block with no data dispatches nothing but still updates last_event_id(), as a browser does.
class SseParser {
 public:
  // Appends the events completed by `bytes` to `out`. Throws stagelog::Error for a line longer
  // than kMaxLine.
  void feed(std::string_view bytes, std::vector<SseEvent>& out);

  const std::string& last_event_id() const noexcept { return last_id_; }

  static constexpr std::size_t kMaxLine = std::size_t{16} << 20;

 private:
  void line(std::string_view text, std::vector<SseEvent>& out);

  std::string line_;
  bool after_cr_ = false;  // The previous byte ended a line with '\r': a '\n' now is its end.
  std::string type_;
  std::string data_;
  bool has_data_ = false;
  std::string id_buffer_;
  std::string last_id_;
};

}  // namespace stagelog::detail
