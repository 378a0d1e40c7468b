// The recorder's record layout (src/core/codec.hpp): what encode() writes, decode() reads back,
// and record_size() cuts what would not fit.

#include "core/codec.hpp"

#include <gtest/gtest.h>

#include <cstddef>
#include <string>
#include <variant>
#include <vector>

#include "stagelog/recorder.hpp"

namespace stagelog::detail {
namespace {

constexpr std::size_t kMaxRecord = 2048;  // Half of the smallest ring.

// Room for one record, aligned as a ring's is.
struct Buffer {
  alignas(RecordHeader) std::byte bytes[kMaxRecord];
  const RecordHeader* header() const { return reinterpret_cast<const RecordHeader*>(bytes); }
};

template <typename R>
RecordSize encode_into(Buffer& buffer, const R& record, std::span<const Kv> fields = {}) {
  const RecordSize size = record_size(record, fields, kMaxRecord);
  encode(buffer.bytes, size, Level::Warning, Status::Completed, 42, record, fields);
  return size;
}

TEST(CodecTest, StageEndReadsBackEveryMemberFieldAndHeaderValue) {
  Component component{"worker", {}};
  const Kv fields[] = {kv("i", -3), kv("u", 7u), kv("d", 0.25), kv("b", true), kv("s", "text")};
  Buffer buffer;
  const RecordSize size =
      encode_into(buffer, StageEndRecord{&component, 9, 1234, "AGENT", "done"}, fields);

  const RecordHeader* h = buffer.header();
  EXPECT_EQ(h->size, size.bytes);
  EXPECT_EQ(h->type, RecordType::StageEnd);
  EXPECT_EQ(h->level, Level::Warning);
  EXPECT_EQ(h->status, Status::Completed);
  EXPECT_EQ(h->ts, 42);
  EXPECT_EQ(h->field_count, 5u);
  std::vector<Field> out;
  const auto r = decode<StageEndRecord>(h, out);
  EXPECT_EQ(r.component, &component);
  EXPECT_EQ(r.id, 9u);
  EXPECT_EQ(r.begin_ts, 1234);
  EXPECT_EQ(r.name, "AGENT");
  EXPECT_EQ(r.message, "done");
  ASSERT_EQ(out.size(), 5u);
  EXPECT_EQ(out[0].key, "i");
  EXPECT_EQ(std::get<std::int64_t>(out[0].value), -3);
  EXPECT_EQ(std::get<std::uint64_t>(out[1].value), 7u);
  EXPECT_EQ(std::get<double>(out[2].value), 0.25);
  EXPECT_TRUE(std::get<bool>(out[3].value));
  EXPECT_EQ(std::get<std::string_view>(out[4].value), "text");
}

TEST(CodecTest, StructuredKeepsItsKindFlagAndWorker) {
  Component component{"agent", {}};
  Buffer buffer;
  encode_into(buffer,
              StructuredRecord{&component, Kind::Heartbeat, true, 0, "subject", "msg", "gpu-1"});
  std::vector<Field> out;
  const auto r = decode<StructuredRecord>(buffer.header(), out);
  EXPECT_EQ(r.kind, Kind::Heartbeat);
  EXPECT_TRUE(r.fields_in_message);
  EXPECT_EQ(r.begin_ts, 0);
  EXPECT_EQ(r.subject, "subject");
  EXPECT_EQ(r.message, "msg");
  EXPECT_EQ(r.worker, "gpu-1");
  EXPECT_TRUE(out.empty());
}

TEST(CodecTest, ContextSaysWhichIdItSets) {
  Buffer buffer;
  encode_into(buffer, ContextRecord{ContextKey::Run, "batch-7"});
  std::vector<Field> out;
  const auto r = decode<ContextRecord>(buffer.header(), out);
  EXPECT_EQ(r.key, ContextKey::Run);
  EXPECT_EQ(r.value, "batch-7");
}

TEST(CodecTest, SizeIsHeaderPayloadAndPaddingToTheRecordAlignment) {
  Component component{"app", {}};
  // Header, pointer.
  EXPECT_EQ(record_size(RunBeginRecord{&component}, {}, kMaxRecord).bytes, 24u);
  // Header, pointer, length and "abc": 31, padded to 32.
  EXPECT_EQ(record_size(LogRecord{&component, "abc"}, {}, kMaxRecord).bytes, 32u);
  // ... and a field: tag, key length, "n", a word: 45, padded to 48.
  const Kv fields[] = {kv("n", 1)};
  EXPECT_EQ(record_size(LogRecord{&component, "abc"}, fields, kMaxRecord).bytes, 48u);
}

TEST(CodecTest, RecordLargerThanHalfTheRingHasEveryStringCutToFit) {
  Component component{"app", {}};
  const std::string huge(10'000, 'x');
  const Kv fields[] = {kv(huge, huge), kv("n", 1)};
  Buffer buffer;
  const RecordSize size = encode_into(buffer, LogRecord{&component, huge}, fields);
  EXPECT_LE(size.bytes, kMaxRecord);
  EXPECT_GT(size.limit, 100u);
  std::vector<Field> out;
  const auto r = decode<LogRecord>(buffer.header(), out);
  EXPECT_EQ(r.message.size(), size.limit);
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].key.size(), size.limit);
  EXPECT_EQ(std::get<std::string_view>(out[0].value).size(), size.limit);
  EXPECT_EQ(out[1].key, "n");
}

#ifndef NDEBUG
TEST(CodecTest, EncodeAssertsTheRecordIsTheSizeReserved) {
  Component component{"app", {}};
  const LogRecord record{&component, "a message longer than eight bytes"};
  RecordSize size = record_size(record, {}, kMaxRecord);
  size.bytes -= kRecordAlign;
  Buffer buffer;
  EXPECT_DEATH(encode(buffer.bytes, size, Level::Info, Status::None, 0, record), "position");
}

TEST(CodecTest, DecodeAssertsTheRecordType) {
  Component component{"app", {}};
  Buffer buffer;
  encode_into(buffer, RunBeginRecord{&component});
  std::vector<Field> out;
  EXPECT_DEATH(decode<RunEndRecord>(buffer.header(), out), "R::kType");
}
#endif

}  // namespace
}  // namespace stagelog::detail
