// The per-thread record ring (src/core/ring.hpp), driven from one thread: both sides' calls in
// the order the recorder makes them, and the asserts that catch calls out of that order.

#include "core/ring.hpp"

#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <vector>

namespace stagelog::detail {
namespace {

constexpr std::size_t kCapacity = 4096;

// Publishes a record of `bytes` whose ts is `id`; false when the ring is full.
bool publish(Ring& ring, std::size_t bytes, std::int64_t id) {
  std::byte* p = ring.try_reserve(bytes);
  if (p == nullptr) return false;
  *reinterpret_cast<RecordHeader*>(p) = RecordHeader{
      static_cast<std::uint32_t>(bytes), RecordType::Log, Level::Info, Status::None, 0, id};
  ring.commit();
  return true;
}

TEST(RingTest, RecordsComeOutInOrderAcrossTheWrap) {
  Ring ring(kCapacity);
  std::vector<std::int64_t> seen;
  std::int64_t next = 0;
  // 1016-byte records do not divide the ring: every lap ends in a Pad (the first, 32 bytes).
  for (int round = 0; round < 20; ++round) {
    ASSERT_TRUE(publish(ring, 1016, next++));
    ASSERT_TRUE(publish(ring, 1016, next++));
    while (const RecordHeader* h = ring.peek()) {
      EXPECT_EQ(h->type, RecordType::Log);
      seen.push_back(h->ts);
      ring.pop(h);
    }
  }
  ASSERT_EQ(seen.size(), 40u);
  for (std::size_t i = 0; i < seen.size(); ++i) EXPECT_EQ(seen[i], static_cast<std::int64_t>(i));
}

TEST(RingTest, FullRingRefusesUntilTheConsumerPops) {
  Ring ring(kCapacity);
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(publish(ring, kCapacity / 4, i));
  EXPECT_FALSE(publish(ring, 64, 4));
  ring.pop(ring.peek());
  EXPECT_TRUE(publish(ring, 64, 4));
}

#ifndef NDEBUG
TEST(RingTest, CommitWithoutAReservationAsserts) {
  Ring ring(kCapacity);
  EXPECT_DEATH(ring.commit(), "pending_ != 0");
}

TEST(RingTest, CommitAfterAFailedReservationAsserts) {
  Ring ring(kCapacity);
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(publish(ring, kCapacity / 4, i));
  ASSERT_EQ(ring.try_reserve(64), nullptr);
  EXPECT_DEATH(ring.commit(), "pending_ != 0");
}

TEST(RingTest, ReservationOfAPartialRecordAsserts) {
  Ring ring(kCapacity);
  EXPECT_DEATH(ring.try_reserve(20), "kRecordAlign");
  EXPECT_DEATH(ring.try_reserve(kCapacity / 2 + kRecordAlign), "capacity_ / 2");
}

TEST(RingTest, PopOfARecordNotPeekedAsserts) {
  Ring ring(kCapacity);
  ASSERT_TRUE(publish(ring, 64, 0));
  ASSERT_TRUE(publish(ring, 64, 1));
  const RecordHeader* first = ring.peek();
  ring.pop(first);
  EXPECT_DEATH(ring.pop(first), "read_pos_");
}
#endif

}  // namespace
}  // namespace stagelog::detail
