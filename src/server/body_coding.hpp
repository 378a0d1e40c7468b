#pragma once

// Content-Encoding for the server's bodies: request bodies decoded strictly (to their end:
// trailer, checksum, length), response bodies gzipped cheaply.

#include <zlib.h>

#include <cstddef>
#include <string>
#include <string_view>

#include "server/http_errors.hpp"
#include "stagelog/result.hpp"

namespace stagelog::detail {

// The body as sent, decoded by its Content-Encoding ("", "identity", "gzip", "deflate" (zlib,
// or raw deflate as some clients send it), "br"). A body that does not decode to its very end
// (cut short, a bad checksum, bytes after the end) is BadRequest; one that decodes to more than
// `max` bytes is PayloadTooLarge; an encoding not listed is UnsupportedMediaType. gzip may hold
// several members, one after the other (RFC 1952), as `cat a.gz b.gz` makes.
Result<std::string, ApiError> decode_body(std::string_view encoding, std::string body,
                                          std::size_t max);

// Whether an Accept-Encoding header value accepts gzip (a q=0 refuses it).
bool accepts_gzip(std::string_view accept_encoding);
// Whether a response of this type is worth compressing: text, JSON, JavaScript, CSV, SVG.
// Never text/event-stream: a compressor would hold events back.
bool compressible(std::string_view content_type);
// Responses smaller than this go as they are.
inline constexpr std::size_t kMinCompressBytes = 1024;

// gzip, level 1 (fast: a response is made for one reader), fed in pieces: each piece comes
// out flushed (Z_SYNC_FLUSH), so a streamed response is never held back. Not copyable.
class GzipEncoder {
 public:
  GzipEncoder();
  ~GzipEncoder();
  GzipEncoder(const GzipEncoder&) = delete;
  GzipEncoder& operator=(const GzipEncoder&) = delete;

  // Appends `in`, compressed and flushed, to `out`; with `last`, the gzip trailer too.
  void add(std::string_view in, std::string& out, bool last);

 private:
  z_stream zs_{};
};

// `body` gzipped whole.
std::string gzip(std::string_view body);

}  // namespace stagelog::detail
