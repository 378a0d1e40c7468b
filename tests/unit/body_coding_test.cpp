// src/server/body_coding.hpp: request bodies decoded to their very end, responses gzipped.

#include "server/body_coding.hpp"

#include <brotli/encode.h>
#include <gtest/gtest.h>
#include <zlib.h>

#include <string>

namespace stagelog::detail {
namespace {

std::string text(std::size_t n) {
  std::string s;
  for (std::size_t i = 0; s.size() < n; ++i) s += "line " + std::to_string(i) + " of a body\n";
  s.resize(n);
  return s;
}

std::string zlib_deflate(const std::string& in, int window_bits) {
  z_stream zs{};
  deflateInit2(&zs, 6, Z_DEFLATED, window_bits, 8, Z_DEFAULT_STRATEGY);
  std::string out(deflateBound(&zs, in.size()) + 16, '\0');
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  zs.avail_in = static_cast<uInt>(in.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  deflate(&zs, Z_FINISH);
  out.resize(out.size() - zs.avail_out);
  deflateEnd(&zs);
  return out;
}

std::string brotli(const std::string& in) {
  std::string out(BrotliEncoderMaxCompressedSize(in.size()), '\0');
  std::size_t size = out.size();
  BrotliEncoderCompress(5, BROTLI_DEFAULT_WINDOW, BROTLI_MODE_TEXT, in.size(),
                        reinterpret_cast<const std::uint8_t*>(in.data()), &size,
                        reinterpret_cast<std::uint8_t*>(out.data()));
  out.resize(size);
  return out;
}

ApiErrorKind kind_of(const Result<std::string, ApiError>& r) {
  return r ? ApiErrorKind::Internal : r.error().kind;
}

TEST(BodyCodingTest, EveryEncodingDecodesToTheBody) {
  const std::string body = text(100'000);
  EXPECT_EQ(*decode_body("", body, 1 << 20), body);
  EXPECT_EQ(*decode_body("identity", body, 1 << 20), body);
  EXPECT_EQ(*decode_body("gzip", gzip(body), 1 << 20), body);
  EXPECT_EQ(*decode_body("GZIP", gzip(body), 1 << 20), body);
  EXPECT_EQ(*decode_body("deflate", zlib_deflate(body, MAX_WBITS), 1 << 20), body);
  EXPECT_EQ(*decode_body("deflate", zlib_deflate(body, -MAX_WBITS), 1 << 20), body);  // Raw.
  EXPECT_EQ(*decode_body("br", brotli(body), 1 << 20), body);
}

TEST(BodyCodingTest, GzipMembersFollowingEachOtherAreOneBody) {
  EXPECT_EQ(*decode_body("gzip", gzip("first\n") + gzip("second\n"), 1024), "first\nsecond\n");
}

TEST(BodyCodingTest, ABodyThatDoesNotDecodeToItsEndIsABadRequest) {
  const std::string body = text(50'000);
  const std::string packed = gzip(body);
  std::string bad_crc = packed;
  bad_crc[packed.size() - 6] ^= 1;
  std::string bad_length = packed;
  bad_length[packed.size() - 1] ^= 1;
  for (const std::string& damaged :
       {packed.substr(0, packed.size() / 2), packed.substr(0, packed.size() - 1), bad_crc,
        bad_length, packed + "x", std::string("not gzip at all")}) {
    auto r = decode_body("gzip", damaged, 1 << 20);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().kind, ApiErrorKind::BadRequest);
    EXPECT_NE(r.error().message.find("not valid gzip data"), std::string::npos)
        << r.error().message;
  }
  const std::string deflated = zlib_deflate(body, MAX_WBITS);
  EXPECT_EQ(kind_of(decode_body("deflate", deflated.substr(0, deflated.size() / 2), 1 << 20)),
            ApiErrorKind::BadRequest);
  const std::string br = brotli(body);
  EXPECT_EQ(kind_of(decode_body("br", br.substr(0, br.size() / 2), 1 << 20)),
            ApiErrorKind::BadRequest);
  EXPECT_EQ(kind_of(decode_body("br", br + "x", 1 << 20)), ApiErrorKind::BadRequest);
}

TEST(BodyCodingTest, TheLimitAppliesToWhatComesOut) {
  const std::string body = std::string(1'000'000, 'a');  // Compresses to ~1 KB.
  EXPECT_EQ(kind_of(decode_body("gzip", gzip(body), 999'999)), ApiErrorKind::PayloadTooLarge);
  EXPECT_EQ(decode_body("gzip", gzip(body), 1'000'000)->size(), body.size());
  EXPECT_EQ(kind_of(decode_body("br", brotli(body), 999'999)), ApiErrorKind::PayloadTooLarge);
  EXPECT_EQ(kind_of(decode_body("", body, 999'999)), ApiErrorKind::PayloadTooLarge);
}

TEST(BodyCodingTest, AnUnknownEncodingIsUnsupported) {
  auto r = decode_body("zstd", "x", 10);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().kind, ApiErrorKind::UnsupportedMediaType);
  EXPECT_NE(r.error().message.find("\"zstd\""), std::string::npos);
}

TEST(BodyCodingTest, AcceptEncodingIsReadAsRfc9110Says) {
  EXPECT_TRUE(accepts_gzip("gzip"));
  EXPECT_TRUE(accepts_gzip("gzip, deflate, br"));
  EXPECT_TRUE(accepts_gzip("br;q=1.0, GZIP;q=0.5"));
  EXPECT_TRUE(accepts_gzip("*"));
  EXPECT_FALSE(accepts_gzip(""));
  EXPECT_FALSE(accepts_gzip("br, deflate"));
  EXPECT_FALSE(accepts_gzip("gzip;q=0"));
  EXPECT_FALSE(accepts_gzip("gzip; q=0.000"));
  EXPECT_FALSE(accepts_gzip("x-gzipped"));
}

TEST(BodyCodingTest, OnlyTextIsCompressedAndNeverAnEventStream) {
  EXPECT_TRUE(compressible("application/json"));
  EXPECT_TRUE(compressible("text/csv; charset=utf-8"));
  EXPECT_TRUE(compressible("application/javascript"));
  EXPECT_FALSE(compressible("text/event-stream"));
  EXPECT_FALSE(compressible("image/png"));
}

TEST(BodyCodingTest, AGzipStreamInPiecesDecodesAfterEachPiece) {
  GzipEncoder encoder;
  std::string out;
  std::string sent;
  for (int i = 0; i < 5; ++i) {
    std::string piece = text(10'000 + i);
    sent += piece;
    encoder.add(piece, out, false);
    // Flushed: what came out so far inflates to everything sent so far.
    z_stream zs{};
    inflateInit2(&zs, 16 + MAX_WBITS);
    std::string got(sent.size() + 16, '\0');
    zs.next_in = reinterpret_cast<Bytef*>(out.data());
    zs.avail_in = static_cast<uInt>(out.size());
    zs.next_out = reinterpret_cast<Bytef*>(got.data());
    zs.avail_out = static_cast<uInt>(got.size());
    inflate(&zs, Z_SYNC_FLUSH);
    got.resize(got.size() - zs.avail_out);
    inflateEnd(&zs);
    EXPECT_EQ(got, sent) << "after piece " << i;
  }
  encoder.add("", out, true);
  EXPECT_EQ(*decode_body("gzip", out, 1 << 20), sent);
}

}  // namespace
}  // namespace stagelog::detail
