// StoreHealth: readiness from the requests' outcomes, and its rate-limited lines for the log.

#include "server/store_health.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

#include "fake_clock.hpp"
#include "stagelog/error.hpp"

namespace stagelog::detail {
namespace {

using namespace std::chrono_literals;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

struct Health {
  test::FakeClock clock{0};
  std::vector<std::string> lines;
  StoreHealth health{StoreHealth::Options{
      clock.fn(), [this](std::string_view line) { lines.emplace_back(line); }, 10s}};
};

const Error kFull("sqlite store /d/stagelog.db: cannot store events: database or disk is full",
                  ErrorKind::DiskFull);

TEST(StoreHealthTest, ReadyUntilAWriteFailsAndAgainOnceOneSucceeds) {
  Health h;
  EXPECT_EQ(h.health.not_ready(), std::nullopt);
  h.health.write_succeeded();
  EXPECT_EQ(h.health.not_ready(), std::nullopt);
  h.health.write_failed(kFull);
  EXPECT_EQ(h.health.not_ready(), "the last write to the store failed: disk full");
  h.health.write_failed(Error("i/o", ErrorKind::Io));
  EXPECT_EQ(h.health.not_ready(), "the last write to the store failed: I/O error");
  h.health.write_succeeded();
  EXPECT_EQ(h.health.not_ready(), std::nullopt);
}

TEST(StoreHealthTest, AFailureThatIsNotTheStoresChangesNothing) {
  Health h;
  h.health.write_failed(Error("the server is stopping"));
  EXPECT_EQ(h.health.not_ready(), std::nullopt);
  EXPECT_THAT(h.lines, IsEmpty());
}

TEST(StoreHealthTest, LogsAKindAtMostOncePerIntervalWithTheRequestsRefusedSince) {
  Health h;
  h.health.write_failed(kFull);
  ASSERT_EQ(h.lines.size(), 1u);
  EXPECT_EQ(h.lines[0],
            "cannot write to the store: disk full (sqlite store /d/stagelog.db: cannot store "
            "events: database or disk is full); refusing writes until it can");
  for (int i = 0; i < 36; ++i) {
    h.clock.advance(250ms);
    h.health.write_failed(kFull);
  }
  EXPECT_EQ(h.lines.size(), 1u);  // 9 s: not yet.
  h.clock.advance(1s);
  h.health.write_failed(kFull);  // 10 s after the first line: the 37th since.
  ASSERT_EQ(h.lines.size(), 2u);
  EXPECT_THAT(h.lines[1], HasSubstr("disk full ("));
  EXPECT_THAT(h.lines[1], HasSubstr("; 37 requests refused in the last 10 s"));
  // Another kind has its own interval.
  h.health.write_failed(Error("database is locked", ErrorKind::Busy));
  ASSERT_EQ(h.lines.size(), 3u);
  EXPECT_THAT(h.lines[2], HasSubstr("cannot write to the store: busy (database is locked)"));
}

TEST(StoreHealthTest, SaysOnceWhenWritesRecoverWithTheTotalRefused) {
  Health h;
  h.health.write_failed(kFull);
  h.clock.advance(3s);
  h.health.write_failed(kFull);
  h.clock.advance(2s);
  h.health.write_succeeded();
  h.health.write_succeeded();
  ASSERT_EQ(h.lines.size(), 2u);
  EXPECT_EQ(h.lines[1], "writes to the store succeed again, after 5 s and 2 requests refused");
  // A new failure starts afresh: logged at once, counted from one.
  h.health.write_failed(kFull);
  ASSERT_EQ(h.lines.size(), 3u);
  EXPECT_THAT(h.lines[2], HasSubstr("refusing writes until it can"));
  h.health.write_succeeded();
  EXPECT_THAT(h.lines.back(), HasSubstr("after 0 s and 1 request refused"));
}

const Error kLost("postgres store db/stagelog: cannot read execution: server closed the connection",
                  ErrorKind::Unavailable);

TEST(StoreHealthTest, AReadCountsOnlyAStoreNotReachedAndAReadThatSucceedsEndsOnlyThat) {
  Health h;
  h.health.read_failed(Error("i/o", ErrorKind::Io));  // Says nothing about writes.
  h.health.read_failed(Error("a bug"));
  EXPECT_EQ(h.health.not_ready(), std::nullopt);
  EXPECT_FALSE(h.health.unreachable());
  EXPECT_THAT(h.lines, IsEmpty());

  h.health.read_failed(kLost);
  EXPECT_EQ(h.health.not_ready(), "the store cannot be reached");
  EXPECT_TRUE(h.health.unreachable());
  ASSERT_EQ(h.lines.size(), 1u);
  EXPECT_EQ(h.lines[0],
            "cannot reach the store (postgres store db/stagelog: cannot read execution: server "
            "closed the connection); answering 503 until it can");
  h.clock.advance(4s);
  h.health.read_succeeded();
  EXPECT_EQ(h.health.not_ready(), std::nullopt);
  EXPECT_FALSE(h.health.unreachable());
  ASSERT_EQ(h.lines.size(), 2u);
  EXPECT_EQ(h.lines[1], "the store answers again, after 4 s and 1 request refused");

  // A full disk is not ended by a read: the store answers, and still takes no write.
  h.health.write_failed(kFull);
  h.health.read_succeeded();
  EXPECT_EQ(h.health.not_ready(), "the last write to the store failed: disk full");
  EXPECT_FALSE(h.health.unreachable());
  h.health.write_succeeded();
  EXPECT_EQ(h.health.not_ready(), std::nullopt);
}

TEST(StoreHealthTest, AWriteThatFindsTheStoreNotReachedCountsWithTheReads) {
  Health h;
  h.health.write_failed(kLost);
  h.clock.advance(1s);
  h.health.read_failed(kLost);
  EXPECT_EQ(h.health.not_ready(), "the store cannot be reached");
  EXPECT_EQ(h.lines.size(), 1u);  // One kind, one line per interval.
  h.clock.advance(10s);
  h.health.read_failed(kLost);
  ASSERT_EQ(h.lines.size(), 2u);
  EXPECT_THAT(h.lines[1], HasSubstr("; 2 requests refused in the last 11 s"));
  h.health.write_succeeded();
  ASSERT_EQ(h.lines.size(), 3u);
  EXPECT_EQ(h.lines[2], "the store answers again, after 11 s and 3 requests refused");
}

}  // namespace
}  // namespace stagelog::detail
