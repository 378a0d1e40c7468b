#include "store/step_index.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "format/format.hpp"
#include "line_mutator.hpp"

namespace stagelog::detail {
namespace {

TEST(ErrorPatternTest, MasksWhatVariesBetweenOccurrencesOfOneFailure) {
  // The issue's example: one pattern for both timeouts.
  EXPECT_EQ(error_pattern("timeout after 480000ms"), "timeout after <n>ms");
  EXPECT_EQ(error_pattern("timeout after 300000ms"), "timeout after <n>ms");
  EXPECT_EQ(error_pattern("took 2.5s, limit 1s"), "took <n>s, limit <n>s");
  EXPECT_EQ(error_pattern("HTTP 503 from /api/v1/jobs"), "HTTP <n> from <path>");
  EXPECT_EQ(error_pattern("cannot open ./out/a.json: EACCES"), "cannot open <path>: EACCES");
  EXPECT_EQ(error_pattern("job exec_1767555015234_ab12cd34e failed"), "job <id> failed");
  EXPECT_EQ(error_pattern("item-13 on gpu-2"), "<id> on <id>");
  EXPECT_EQ(error_pattern("object 550e8400-e29b-41d4-a716-446655440000 gone"), "object <hex> gone");
  EXPECT_EQ(error_pattern("sha deadbeef0123 at 0x7ffd1234"), "sha <hex> at <hex>");
  EXPECT_EQ(error_pattern("key=\"abc12\" (code 7)"), "key=\"abc<n>\" (code <n>)");
  // Words without digits stay, whitespace runs become one space.
  EXPECT_EQ(error_pattern("  Model   not\n loaded "), "Model not loaded");
  EXPECT_EQ(error_pattern(""), "");
}

TEST(ErrorPatternTest, AVeryLongMessageIsCutAtACharacterBoundary) {
  std::string message;
  for (int i = 0; i < 400; ++i) message += "é ";
  std::string p = error_pattern(message);
  EXPECT_LE(p.size(), 512u);
  EXPECT_GE(p.size(), 500u);
  // Ends with a whole "é" (2 bytes) or the space after one: not inside a character.
  EXPECT_TRUE(p.back() == ' ' || p.substr(p.size() - 2) == "é") << p.substr(p.size() - 3);
}

TEST(ErrorPatternTest, AnyBytesGiveABoundedPatternThatIsUtf8WhenTheInputWas) {
  test::LineMutator mutate(7, "abc /0123456789x_-.:\"'()é");
  const std::vector<std::string> seeds = {"timeout after 480000ms at /srv/a.py:12",
                                          "worker gpu-3 lost exec_1_ab (0xdeadbeef) é"};
  for (int i = 0; i < 20'000; ++i) {
    std::string message = mutate.next(seeds);
    std::string p = error_pattern(message);
    EXPECT_LE(p.size(), 512u);
    if (invalid_utf8_at(message) == std::string::npos) {
      EXPECT_EQ(invalid_utf8_at(p), std::string::npos) << message;
    }
  }
}

TEST(DurationHistogramTest, PercentilesAreWithinOnePercentOfTheExactNearestRank) {
  std::mt19937_64 random(7);
  std::lognormal_distribution<double> duration(6.0, 2.0);  // Milliseconds, a long tail.
  std::vector<std::int64_t> values;
  DurationHistogram h;
  for (int i = 0; i < 20'000; ++i) {
    auto d = static_cast<std::int64_t>(duration(random));
    values.push_back(d);
    h.add(d);
  }
  std::sort(values.begin(), values.end());
  for (double p : {0.01, 0.25, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0}) {
    auto rank = static_cast<std::size_t>(std::ceil(p * static_cast<double>(values.size())));
    double exact = static_cast<double>(values[rank - 1]);
    EXPECT_LE(std::abs(h.percentile(p) - exact), exact * DurationHistogram::kRelativeError)
        << "p" << p;
  }
  EXPECT_EQ(h.count(), 20'000);
}

TEST(DurationHistogramTest, SmallDurationsAreExactAndZeroIsZero) {
  for (std::int64_t d : {0, 1, 2, 13, 49}) {
    DurationHistogram h;
    h.add(d);
    EXPECT_EQ(h.percentile(0.5), static_cast<double>(d));
  }
  EXPECT_EQ(DurationHistogram().percentile(0.5), 0);
}

TEST(DurationHistogramTest, SubtractingNeverGoesBelowZero) {
  DurationHistogram h;
  h.add(100, 2);
  h.add(100, -5);
  EXPECT_EQ(h.count(), 0);
  h.add(7);
  EXPECT_EQ(h.count(), 1);
  EXPECT_EQ(h.percentile(1.0), 7);
}

TEST(DurationHistogramTest, EncodesAndDecodesAndRefusesOtherBytes) {
  DurationHistogram h;
  for (std::int64_t d : {0L, 5L, 5L, 1000L, 3600000L, 86400000000L}) h.add(d);
  DurationHistogram back;
  ASSERT_TRUE(back.decode(h.encode()));
  EXPECT_EQ(back.encode(), h.encode());
  EXPECT_EQ(back.count(), 6);
  EXPECT_EQ(back.percentile(0.5), h.percentile(0.5));
  ASSERT_TRUE(back.decode(""));
  EXPECT_EQ(back.count(), 0);
  for (std::string bad : {std::string("\x80"), std::string("\x01"), std::string("\x01\x00", 2),
                          std::string("\x01\x01\x00\x01", 4), std::string(12, '\xff')}) {
    DurationHistogram d;
    d.add(3);
    EXPECT_FALSE(d.decode(bad));
    EXPECT_EQ(d.count(), 0);
  }
}

TEST(StepKeysTest, ReadsWorkerAndDurationFromTheTopLevelOnly) {
  StepKeys k = read_step_keys(R"({"a":{"worker":"inner"},"worker":"gpu-1","duration_ms":1234.6})");
  EXPECT_EQ(k.worker, "gpu-1");
  EXPECT_EQ(k.duration_ms, 1235);
  k = read_step_keys(R"({"worker":3,"duration_ms":"5","x":[{"worker":"no"}]})");
  EXPECT_EQ(k.worker, std::nullopt);
  EXPECT_EQ(k.duration_ms, std::nullopt);
  k = read_step_keys(R"({"duration_ms":-4})");
  EXPECT_EQ(k.duration_ms, std::nullopt);
  for (const char* bad : {"", "{}", "[]", "\"worker\"", "{\"worker\":\"x\"", "[{\"worker\":\"x\"}]",
                          "{\"worker\":\"x\"} 1"}) {
    k = read_step_keys(bad);
    EXPECT_EQ(k.worker, std::nullopt) << bad;
  }
}

}  // namespace
}  // namespace stagelog::detail
