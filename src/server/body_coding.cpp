#include "server/body_coding.hpp"

#include <brotli/decode.h>

#include <algorithm>
#include <memory>
#include <utility>

#include "base/ascii.hpp"

namespace stagelog::detail {

namespace {

constexpr std::size_t kChunk = std::size_t{64} << 10;

ApiError too_large(std::size_t max) {
  return ApiError{
      ApiErrorKind::PayloadTooLarge,
      "request body over the limit of " + std::to_string(max) + " bytes (after decompression)",
      nullptr};
}

ApiError damaged(std::string_view encoding, std::string_view why) {
  return ApiError{ApiErrorKind::BadRequest,
                  "cannot read the request body: not valid " + std::string(encoding) + " data (" +
                      std::string(why) + "); nothing was stored",
                  nullptr};
}

struct Inflater {
  z_stream zs{};
  bool open = false;
  explicit Inflater(int window_bits) { open = inflateInit2(&zs, window_bits) == Z_OK; }
  ~Inflater() {
    if (open) inflateEnd(&zs);
  }
  Inflater(const Inflater&) = delete;
  Inflater& operator=(const Inflater&) = delete;
};

enum class Inflated { Ok, TooLarge, Damaged };

// Inflates all of `in` (every gzip member when `members`) into `out`. `why` says what was
// wrong when Damaged.
Inflated inflate_all(std::string_view in, int window_bits, bool members, std::size_t max,
                     std::string& out, std::string& why) {
  Inflater inflater(window_bits);
  if (!inflater.open) {
    why = "cannot start zlib";
    return Inflated::Damaged;
  }
  z_stream& zs = inflater.zs;
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  zs.avail_in = static_cast<uInt>(in.size());
  for (;;) {
    const std::size_t before = out.size();
    const std::size_t room = std::min(kChunk, max + 1 - std::min(max + 1, before));
    if (room == 0) return Inflated::TooLarge;
    out.resize(before + room);
    zs.next_out = reinterpret_cast<Bytef*>(out.data() + before);
    zs.avail_out = static_cast<uInt>(room);
    const int rc = inflate(&zs, Z_NO_FLUSH);
    out.resize(before + room - zs.avail_out);
    if (out.size() > max) return Inflated::TooLarge;
    if (rc == Z_STREAM_END) {
      if (zs.avail_in == 0) return Inflated::Ok;
      if (!members) {
        why = "bytes after the end of the compressed data";
        return Inflated::Damaged;
      }
      inflateReset(&zs);  // The next gzip member.
      continue;
    }
    if (rc == Z_OK) continue;
    if (rc == Z_BUF_ERROR && zs.avail_in == 0) {
      why = "cut short: no end of the compressed data";
      return Inflated::Damaged;
    }
    if (rc == Z_BUF_ERROR) continue;  // Output was full; more room next round.
    why = zs.msg != nullptr ? zs.msg : "zlib error " + std::to_string(rc);
    return Inflated::Damaged;
  }
}

Result<std::string, ApiError> inflated(std::string_view encoding, std::string_view body,
                                       int window_bits, bool members, std::size_t max) {
  std::string out;
  std::string why;
  switch (inflate_all(body, window_bits, members, max, out, why)) {
    case Inflated::Ok:
      return out;
    case Inflated::TooLarge:
      return too_large(max);
    case Inflated::Damaged:
      break;
  }
  return damaged(encoding, why);
}

Result<std::string, ApiError> unbrotli(std::string_view body, std::size_t max) {
  std::unique_ptr<BrotliDecoderState, void (*)(BrotliDecoderState*)> state(
      BrotliDecoderCreateInstance(nullptr, nullptr, nullptr), BrotliDecoderDestroyInstance);
  if (!state) return damaged("br", "cannot start the brotli decoder");
  std::string out;
  std::size_t available_in = body.size();
  const auto* next_in = reinterpret_cast<const std::uint8_t*>(body.data());
  for (;;) {
    const std::size_t before = out.size();
    const std::size_t room = std::min(kChunk, max + 1 - std::min(max + 1, before));
    if (room == 0) return too_large(max);
    out.resize(before + room);
    std::size_t available_out = room;
    auto* next_out = reinterpret_cast<std::uint8_t*>(out.data() + before);
    BrotliDecoderResult rc = BrotliDecoderDecompressStream(state.get(), &available_in, &next_in,
                                                           &available_out, &next_out, nullptr);
    out.resize(before + room - available_out);
    if (out.size() > max) return too_large(max);
    switch (rc) {
      case BROTLI_DECODER_RESULT_SUCCESS:
        if (available_in != 0) return damaged("br", "bytes after the end of the compressed data");
        return out;
      case BROTLI_DECODER_RESULT_NEEDS_MORE_OUTPUT:
        continue;
      case BROTLI_DECODER_RESULT_NEEDS_MORE_INPUT:
        return damaged("br", "cut short: no end of the compressed data");
      case BROTLI_DECODER_RESULT_ERROR:
        break;
    }
    return damaged("br", BrotliDecoderErrorString(BrotliDecoderGetErrorCode(state.get())));
  }
}

}  // namespace

Result<std::string, ApiError> decode_body(std::string_view encoding, std::string body,
                                          std::size_t max) {
  if (encoding.empty() || iequals_ascii(encoding, "identity")) {
    if (body.size() > max) return too_large(max);
    return body;
  }
  if (iequals_ascii(encoding, "gzip") || iequals_ascii(encoding, "x-gzip")) {
    return inflated("gzip", body, 16 + MAX_WBITS, true, max);
  }
  if (iequals_ascii(encoding, "deflate")) {
    // RFC 9110 says zlib; some clients send raw deflate. A zlib stream starts with a header
    // whose check bits a raw stream fails.
    auto zlib = inflated("deflate", body, MAX_WBITS, false, max);
    if (zlib || zlib.error().kind != ApiErrorKind::BadRequest) return zlib;
    auto raw = inflated("deflate", body, -MAX_WBITS, false, max);
    if (raw) return raw;
    return zlib;
  }
  if (iequals_ascii(encoding, "br")) return unbrotli(body, max);
  return ApiError{ApiErrorKind::UnsupportedMediaType,
                  "unsupported Content-Encoding \"" + std::string(encoding) +
                      "\" (accepted: gzip, deflate, br)",
                  nullptr};
}

bool accepts_gzip(std::string_view accept_encoding) {
  while (!accept_encoding.empty()) {
    std::size_t comma = accept_encoding.find(',');
    std::string_view item = accept_encoding.substr(0, comma);
    accept_encoding.remove_prefix(comma == std::string_view::npos ? accept_encoding.size()
                                                                  : comma + 1);
    std::size_t semi = item.find(';');
    std::string_view name = trim_ascii(item.substr(0, semi));
    if (!iequals_ascii(name, "gzip") && name != "*") continue;
    if (semi == std::string_view::npos) return true;
    std::string_view q = trim_ascii(item.substr(semi + 1));
    if (!q.starts_with("q=") && !q.starts_with("Q=")) return true;
    q.remove_prefix(2);
    // q=0, 0.0, 0.00, 0.000 refuse; anything else accepts.
    return q.find_first_not_of("0.") != std::string_view::npos;
  }
  return false;
}

bool compressible(std::string_view content_type) {
  if (content_type.starts_with("text/event-stream")) return false;
  return content_type.starts_with("text/") || content_type.starts_with("application/json") ||
         content_type.starts_with("application/javascript") ||
         content_type.starts_with("application/x-ndjson") ||
         content_type.starts_with("image/svg+xml");
}

GzipEncoder::GzipEncoder() {
  // Level 1, gzip wrapping (16 + window bits), memLevel 8: zlib's default memory.
  deflateInit2(&zs_, 1, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY);
}

GzipEncoder::~GzipEncoder() { deflateEnd(&zs_); }

void GzipEncoder::add(std::string_view in, std::string& out, bool last) {
  zs_.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  zs_.avail_in = static_cast<uInt>(in.size());
  const int flush = last ? Z_FINISH : Z_SYNC_FLUSH;
  for (;;) {
    const std::size_t before = out.size();
    const std::size_t room = deflateBound(&zs_, zs_.avail_in) + 64;
    out.resize(before + room);
    zs_.next_out = reinterpret_cast<Bytef*>(out.data() + before);
    zs_.avail_out = static_cast<uInt>(room);
    const int rc = deflate(&zs_, flush);
    out.resize(before + room - zs_.avail_out);
    if (last ? rc == Z_STREAM_END : (zs_.avail_in == 0 && zs_.avail_out != 0)) return;
    if (rc != Z_OK && rc != Z_BUF_ERROR) return;  // Cannot happen with a valid stream.
  }
}

std::string gzip(std::string_view body) {
  GzipEncoder encoder;
  std::string out;
  out.reserve(body.size() / 4 + 64);
  encoder.add(body, out, true);
  return out;
}

}  // namespace stagelog::detail
