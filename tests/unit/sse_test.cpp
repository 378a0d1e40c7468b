// The Server-Sent Events reader, against the examples of the WHATWG HTML standard's "event
// stream" section and the cases a network splits.

#include "format/sse.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "stagelog/error.hpp"

namespace stagelog::detail {
namespace {

std::vector<SseEvent> parse_all(std::string_view text, SseParser& parser) {
  std::vector<SseEvent> out;
  parser.feed(text, out);
  return out;
}

TEST(SseParserTest, ReadsTypeDataAndId) {
  SseParser parser;
  auto events = parse_all(
      "id: e-1\nevent: event\ndata: {\"a\":1}\n\n"
      ": a comment\n\n"
      "data: first\ndata: second\n\n",
      parser);
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].type, "event");
  EXPECT_EQ(events[0].data, "{\"a\":1}");
  EXPECT_EQ(events[0].id, "e-1");
  EXPECT_EQ(events[1].type, "message");  // No event: field.
  EXPECT_EQ(events[1].data, "first\nsecond");
  EXPECT_EQ(events[1].id, "e-1");  // The last id stays until another comes.
}

TEST(SseParserTest, AnIdWithoutDataMovesTheLastIdAndDispatchesNothing) {
  SseParser parser;
  auto events = parse_all(": keep-alive\nid: e-7\n\n", parser);
  EXPECT_TRUE(events.empty());
  EXPECT_EQ(parser.last_event_id(), "e-7");
}

TEST(SseParserTest, LinesEndAtCrLfOrCrEvenWhenSplitAcrossPieces) {
  SseParser parser;
  std::vector<SseEvent> events;
  const std::string text = "data:no space\r\n\r\ndata: a\rdata:  two spaces\r\rdata: end\n\n";
  for (char c : text) parser.feed(std::string_view(&c, 1), events);  // One byte at a time.
  ASSERT_EQ(events.size(), 3u);
  EXPECT_EQ(events[0].data, "no space");
  EXPECT_EQ(events[1].data, "a\n two spaces");  // Only the first space is dropped.
  EXPECT_EQ(events[2].data, "end");
}

TEST(SseParserTest, AnEmptyDataLineIsAnEventWithEmptyData) {
  SseParser parser;
  auto events = parse_all("data\n\nevent: x\n\n", parser);
  ASSERT_EQ(events.size(), 1u);  // The second block has no data: nothing.
  EXPECT_EQ(events[0].data, "");
}

TEST(SseParserTest, ALineOverTheLimitThrows) {
  SseParser parser;
  std::vector<SseEvent> events;
  std::string big(SseParser::kMaxLine / 2 + 1, 'x');
  parser.feed("data: ", events);
  parser.feed(big, events);
  EXPECT_THROW(parser.feed(big, events), Error);
}

}  // namespace
}  // namespace stagelog::detail
