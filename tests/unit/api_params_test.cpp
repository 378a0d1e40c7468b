// The API's shared parameters: here the Idempotency-Key of an ingest batch.

#include "server/api_params.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

namespace stagelog::detail {
namespace {

using ::testing::HasSubstr;

constexpr const char* kProducer = "0123456789abcdef0123456789abcdef";

ApiRequest with_headers(std::vector<std::pair<std::string, std::string>> headers) {
  ApiRequest req;
  req.method = "POST";
  req.target = "/api/v1/events";
  req.headers = std::move(headers);
  return req;
}

TEST(BatchKeyTest, ReadsProducerAndSequence) {
  auto key = parse_batch_key(std::string(kProducer) + "-42");
  ASSERT_TRUE(key.has_value());
  EXPECT_EQ(key->producer, kProducer);
  EXPECT_EQ(key->seq, 42u);
  EXPECT_EQ(key->text(), std::string(kProducer) + "-42");
  key = parse_batch_key(std::string(kProducer) + "-0");
  ASSERT_TRUE(key.has_value());
  EXPECT_EQ(key->seq, 0u);
  key = parse_batch_key(std::string(kProducer) + "-18446744073709551615");
  ASSERT_TRUE(key.has_value());
  EXPECT_EQ(key->seq, 18446744073709551615u);
}

TEST(BatchKeyTest, RefusesAnythingElse) {
  const std::string p = kProducer;
  for (const std::string& bad : std::vector<std::string>{
           std::string(),
           p,                                     // No sequence.
           p + "-",                               // Empty sequence.
           p + "-01",                             // Leading zero.
           p + "-+1",                             // Sign.
           p + "--1",                             // Negative.
           p + "-1 ",                             // Trailing space.
           p + "-18446744073709551616",           // Over 2^64-1.
           p + "-1x",                             // Not decimal.
           p.substr(1) + "-1",                    // 31 digits.
           p + "0-1",                             // 33 digits.
           "0123456789ABCDEF0123456789abcdef-1",  // Upper case.
           "0123456789abcdeg0123456789abcdef-1",  // Not hex.
           " " + p + "-1",                        // Leading space.
           p + "_1",                              // Wrong separator.
       }) {
    EXPECT_FALSE(parse_batch_key(bad).has_value()) << '"' << bad << '"';
  }
}

TEST(BatchKeyTest, AbsentHeaderIsNoKey) {
  auto key = batch_key(with_headers({{"Content-Type", "application/x-ndjson"}}));
  ASSERT_TRUE(key);
  EXPECT_FALSE(key->has_value());
}

TEST(BatchKeyTest, HeaderNameIsCaseInsensitive) {
  auto key = batch_key(with_headers({{"idempotency-KEY", std::string(kProducer) + "-7"}}));
  ASSERT_TRUE(key);
  ASSERT_TRUE(key->has_value());
  EXPECT_EQ((*key)->seq, 7u);
}

TEST(BatchKeyTest, BadOrRepeatedHeaderIsA400ThatSaysWhatAKeyLooksLike) {
  auto bad = batch_key(with_headers({{"Idempotency-Key", "retry-3"}}));
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().kind, ApiErrorKind::BadRequest);
  EXPECT_THAT(bad.error().message,
              AllOf(HasSubstr("Idempotency-Key"), HasSubstr("32 lowercase hex digits"),
                    HasSubstr("\"retry-3\"")));

  auto twice = batch_key(with_headers({{"Idempotency-Key", std::string(kProducer) + "-1"},
                                       {"Idempotency-Key", std::string(kProducer) + "-2"}}));
  ASSERT_FALSE(twice);
  EXPECT_EQ(twice.error().kind, ApiErrorKind::BadRequest);
  EXPECT_THAT(twice.error().message, HasSubstr("twice"));

  auto long_value = batch_key(with_headers({{"Idempotency-Key", std::string(5000, 'a')}}));
  ASSERT_FALSE(long_value);
  EXPECT_LT(long_value.error().message.size(), 400u);  // Not echoed whole.
}

}  // namespace
}  // namespace stagelog::detail
