// The stream's hub, queries and sessions on their own (src/server/stream.hpp); the route over
// HTTP is tests/integration/stream_test.cpp.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <map>
#include <string>
#include <vector>

#include "events.hpp"
#include "format/sse.hpp"
#include "server/stream.hpp"

namespace stagelog::detail {
namespace {

using namespace std::chrono_literals;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using Params = std::multimap<std::string, std::string>;

StreamEntry entry(std::string data, std::string worker = "w", StreamType type = StreamType::Event) {
  StreamEntry e;
  e.type = type;
  e.data = std::move(data);
  e.worker = std::move(worker);
  return e;
}

std::vector<std::uint64_t> ids(const StreamHub::Read& r) {
  std::vector<std::uint64_t> out;
  for (const auto& e : r.entries) out.push_back(e->id);
  return out;
}

const auto kNow = [] { return std::chrono::steady_clock::now(); };

TEST(StreamHubTest, NumbersEntriesAndKeepsTheLatestByCountAndBytes) {
  StreamHub hub(3, 1 << 20);
  hub.publish({entry("a"), entry("b")});
  hub.publish({entry("c"), entry("d")});
  EXPECT_EQ(hub.span().oldest, 2u);
  EXPECT_EQ(hub.span().last, 4u);
  auto r = hub.read(2, 10, kNow());
  EXPECT_THAT(ids(r), ElementsAre(3u, 4u));
  EXPECT_EQ(r.missed, 0u);
  // Behind the oldest: what is gone is counted, the rest follows from the oldest.
  r = hub.read(0, 10, kNow());
  EXPECT_EQ(r.missed, 1u);
  EXPECT_THAT(ids(r), ElementsAre(2u, 3u, 4u));
  EXPECT_THAT(ids(hub.read(0, 2, kNow())), ElementsAre(2u, 3u));  // At most `max`.

  StreamHub small(100, 10);  // Ten bytes: the newest entry is kept whatever its size.
  small.publish({entry("12345"), entry("67890"), entry("abc")});
  EXPECT_EQ(small.span().oldest, 2u);
  small.publish({entry(std::string(50, 'x'))});
  EXPECT_EQ(small.span().oldest, 4u);
  EXPECT_EQ(small.span().last, 4u);
}

TEST(StreamHubTest, AReadWaitsForAnEntryUntilItsDeadlineAndCloseWakesIt) {
  StreamHub hub(10, 1 << 20);
  auto r = hub.read(0, 10, kNow() + 5ms);
  EXPECT_TRUE(r.entries.empty());
  EXPECT_FALSE(r.closed);
  hub.close();
  r = hub.read(0, 10, kNow() + std::chrono::hours(1));  // Returns at once.
  EXPECT_TRUE(r.closed);
}

TEST(StreamHubTest, SlotsAreCappedAndReleasedWithTheirLastCopy) {
  StreamHub hub(10, 1 << 20);
  auto a = hub.acquire(2);
  auto b = hub.acquire(2);
  ASSERT_TRUE(a);
  ASSERT_TRUE(b);
  EXPECT_FALSE(hub.acquire(2));
  auto copy = a;
  a.reset();
  EXPECT_FALSE(hub.acquire(2));
  copy.reset();
  EXPECT_TRUE(hub.acquire(2));
  EXPECT_FALSE(hub.acquire(0));  // Streams off.
}

TEST(StreamQueryTest, ParsesFiltersAndTheResumePoint) {
  Params params = {{"worker", "gpu-1"},   {"worker", "gpu,2"},
                   {"kind", "stage,log"}, {"types", "event,warning"},
                   {"from", "oldest"},    {"last_event_id", "00000000000000ff-12"}};
  auto parsed = parse_stream_query(params, "");
  ASSERT_TRUE(parsed.has_value()) << parsed.error();
  const auto& q = *parsed;
  EXPECT_THAT(q.workers, ElementsAre("gpu-1", "gpu,2"));  // Names are not split at commas.
  EXPECT_THAT(q.kinds, ElementsAre(Kind::Stage, Kind::Log));
  EXPECT_TRUE(q.from_oldest);
  ASSERT_TRUE(q.resume);
  EXPECT_EQ(q.resume->epoch, "00000000000000ff");
  EXPECT_EQ(q.resume->id, 12u);
  // The header wins over the parameter.
  parsed = parse_stream_query(params, "00000000000000aa-3");
  EXPECT_EQ(parsed->resume->id, 3u);

  StreamEntry e = entry("{}", "gpu,2");
  e.kind = Kind::Log;
  EXPECT_TRUE(q.matches(e));
  e.worker = "gpu-3";
  EXPECT_FALSE(q.matches(e));
  e.worker = "gpu-1";
  e.type = StreamType::Worker;
  EXPECT_FALSE(q.matches(e));  // Not among the types.
}

TEST(StreamQueryTest, RefusesWhatItCannotReadNamingIt) {
  auto error = [](Params params, std::string_view header = "") {
    auto parsed = parse_stream_query(params, header);
    return parsed ? std::string() : parsed.error();
  };
  EXPECT_THAT(error({{"limit", "5"}}), HasSubstr("unknown parameter \"limit\""));
  EXPECT_THAT(error({{"stage", ""}}), HasSubstr("stage: empty value"));
  EXPECT_THAT(error({{"kind", "stage,"}}), HasSubstr("kind: unknown kind \"\""));
  EXPECT_THAT(error({{"types", "events"}}), HasSubstr("types: unknown type \"events\""));
  EXPECT_THAT(error({}, "00000000000000ff-"), HasSubstr("Last-Event-ID"));
  EXPECT_THAT(error({}, "00000000000000FF-1"), HasSubstr("is not an id"));  // Lower-case hex.
  EXPECT_THAT(error({}, "0ff-1"), HasSubstr("is not an id"));
  EXPECT_THAT(error({}, "00000000000000ff-99999999999999999999999"), HasSubstr("is not an id"));
}

// Reads a session's text through the SSE reader.
std::vector<SseEvent> events_of(StreamSession& s, int pieces) {
  SseParser parser;
  std::vector<SseEvent> out;
  for (int i = 0; i < pieces; ++i) parser.feed(s.next(1ms), out);
  return out;
}

TEST(StreamSessionTest, ALateReaderGetsAResetThenGoesOnFromTheOldest) {
  StreamHub hub(3, 1 << 20);
  hub.publish({entry("{\"n\":1}")});
  auto opened = StreamSession::open(hub, StreamQuery{});  // Live: after entry 1.
  auto& session = *opened;
  for (int i = 2; i <= 7; ++i) hub.publish({entry("{\"n\":" + std::to_string(i) + "}")});
  auto events = events_of(session, 2);  // hello, then what it can still read.
  ASSERT_EQ(events.size(), 5u);
  EXPECT_EQ(events[0].type, "hello");
  EXPECT_EQ(events[0].id, hub.epoch() + "-1");
  EXPECT_EQ(events[1].type, "reset");
  EXPECT_EQ(events[1].data.substr(0, 31), R"({"reason":"behind","missed":3,")");
  EXPECT_EQ(events[2].data, R"({"n":5})");
  EXPECT_EQ(events[4].data, R"({"n":7})");
  EXPECT_EQ(events[4].id, hub.epoch() + "-7");
  // Nothing more: a keep-alive that carries the position.
  EXPECT_EQ(session.next(1ms), ": keep-alive\nid: " + hub.epoch() + "-7\n\n");
  hub.close();
  EXPECT_EQ(session.next(1ms), "");
}

TEST(StreamSessionTest, AFilteredStreamsPositionMovesPastWhatItSkips) {
  StreamHub hub(10, 1 << 20);
  StreamQuery q;
  q.workers = {"b"};
  auto opened = StreamSession::open(hub, q);
  auto& session = *opened;
  session.next(1ms);  // hello
  hub.publish({entry("{}", "a"), entry("{}", "a")});
  EXPECT_EQ(session.next(5ms), ": keep-alive\nid: " + hub.epoch() + "-2\n\n");
}

TEST(StreamSessionTest, WarningEntriesLeadWithTheRuleAndSkipProgressLines) {
  Event report = test::stage_event("AGENT", Status::None, std::nullopt, "Stage AGENT on w open");
  report.component = "watchdog";
  Field fields[] = {{"rule", std::string_view("stuck_stage")}, {"worker", std::string_view("w")}};
  report.fields = fields;
  auto warning = warning_entry(report);
  ASSERT_TRUE(warning);
  EXPECT_EQ(warning->data.substr(0, 30), R"({"rule":"stuck_stage","ts":"20)");
  EXPECT_EQ(warning->worker, "w");
  EXPECT_EQ(warning->stage, "AGENT");
  fields[0].value = std::string_view("running");
  EXPECT_FALSE(warning_entry(report));
  fields[0].value = std::string_view("monitor");
  EXPECT_FALSE(warning_entry(report));
}

}  // namespace
}  // namespace stagelog::detail
