// NetworkSink's spool: NetworkSpool on its own (files, replay, truncation, order, the bound),
// then the spool across processes through a whole sink. The sending side is in
// network_sink_test.cpp.

#include "sinks/network_spool.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include "format/format.hpp"
#include "ndjson_receiver.hpp"
#include "network_sink_harness.hpp"
#include "stagelog/error.hpp"
#include "stagelog/parse.hpp"
#include "stagelog/recorder.hpp"
#include "stagelog/sinks/network_sink.hpp"
#include "temp_dir.hpp"

namespace stagelog {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

using test::Events;
using test::free_port;
using test::numbered;
using test::options_for;
using test::Receiver;
using test::Reports;
using test::url_of;
using test::write_numbered;

constexpr auto kPatience = test::kDefaultPatience;  // Upper bound on any wait (20 s).

// ---- NetworkSpool on its own -----------------------------------------------------------------

// "#stagelog-spool v2 producer=<32 hex> seq=<20 digits> batch=<20 digits> sent=<20 digits>\n"
constexpr std::uint64_t kHeaderBytes = 139;

// A spool whose reports land in a vector.
struct Spool {
  explicit Spool(const fs::path& base, std::uint64_t max_bytes = 1 << 20)
      : spool(base, max_bytes, [this](std::string m) { reports.push_back(std::move(m)); }) {}
  std::vector<std::string> reports;
  detail::NetworkSpool spool;
};

// What next() and read() give: up to `limit` lines of the next file.
std::string read_next(detail::NetworkSpool& spool, std::uint64_t limit = 1000,
                      std::size_t max_bytes = 1 << 20) {
  auto range = spool.next();
  if (!range) return "<nothing>";
  detail::SpoolBatch batch;
  detail::NetworkSpool::read(*range, limit, max_bytes, batch);
  return batch.body;
}

TEST(NetworkSpoolTest, AppendedLinesOutliveTheProcessAndReplayFromTheHeader) {
  test::TempDir dir;
  const fs::path base = dir.path() / "spool";
  {
    Spool first(base);
    EXPECT_EQ(first.spool.open_own(getpid()), 0u);
    EXPECT_TRUE(first.spool.append("a\nb\nc\n", 3));
    auto range = first.spool.next();
    ASSERT_TRUE(range);
    first.spool.consume(*range, 1, 2);  // "a" acknowledged.
  }  // Gone without a word, as a killed process: the file stays, unlocked.
  Spool second(base);
  EXPECT_EQ(second.spool.open_own(getpid()), 2u);
  EXPECT_EQ(second.spool.path(), base);
  EXPECT_EQ(second.spool.waiting(), 2u);
  EXPECT_EQ(read_next(second.spool), "b\nc\n");
  EXPECT_THAT(second.reports, ElementsAre());
}

TEST(NetworkSpoolTest, CutsAHalfWrittenLastLineAndSaysSo) {
  test::TempDir dir;
  const fs::path base = dir.path() / "spool";
  std::ofstream(base, std::ios::binary) << "#stagelog-spool v1 sent=00000000000000000045\n"
                                        << "whole\nhal";
  Spool s(base);
  EXPECT_EQ(s.spool.open_own(getpid()), 1u);
  EXPECT_EQ(fs::file_size(base), 45u + 6);  // A version 1 header.
  ASSERT_EQ(s.reports.size(), 1u);
  EXPECT_THAT(s.reports[0],
              HasSubstr("cut an incomplete last line (3 bytes) off " + base.string()));
  EXPECT_EQ(read_next(s.spool), "whole\n");
}

TEST(NetworkSpoolTest, SpoolFilesAreTheOwnersAloneWhateverTheUmask) {
  test::TempDir dir;
  const fs::path base = dir.path() / "spool";
  const mode_t old_umask = ::umask(0);  // Nothing taken off what the spool asks for.
  std::ofstream(dir.path() / "spool.old", std::ios::binary) << "";
  fs::permissions(dir.path() / "spool.old", fs::perms(0644));  // As an older stagelog left one.
  {
    Spool fresh(base);
    fresh.spool.open_own(getpid());
    Spool old(dir.path() / "spool.old");
    old.spool.open_own(getpid());
  }
  ::umask(old_umask);
  EXPECT_EQ(fs::status(base).permissions(), fs::perms(0600));
  EXPECT_EQ(fs::status(dir.path() / "spool.old").permissions(), fs::perms(0600));
}

TEST(NetworkSpoolTest, OpenersAfterTheFirstGetPerProcessFiles) {
  test::TempDir dir;
  const fs::path base = dir.path() / "spool";
  Spool holder(base);
  holder.spool.open_own(getpid());
  Spool second(base);
  second.spool.open_own(getpid());
  Spool third(base);
  third.spool.open_own(getpid());
  EXPECT_EQ(second.spool.path(), base.string() + "." + std::to_string(getpid()));
  EXPECT_EQ(third.spool.path(), base.string() + "." + std::to_string(getpid()) + "-1");
}

TEST(NetworkSpoolTest, ReadsWholeLinesWithinTheCountAndTheBytes) {
  test::TempDir dir;
  Spool s(dir.path() / "spool");
  s.spool.open_own(getpid());
  s.spool.append("one\ntwo\nthree\n", 3);
  EXPECT_EQ(read_next(s.spool, 2), "one\ntwo\n");
  EXPECT_EQ(read_next(s.spool, 1000, 8), "one\ntwo\n");  // "three" would pass 8 bytes.
  EXPECT_EQ(read_next(s.spool, 1000, 2), "one\n");       // A first line longer still goes.
  EXPECT_EQ(read_next(s.spool), "one\ntwo\nthree\n");
}

TEST(NetworkSpoolTest, AFullySentOwnFileIsCutBackToItsHeader) {
  test::TempDir dir;
  const fs::path base = dir.path() / "spool";
  Spool s(base);
  s.spool.open_own(getpid());
  EXPECT_TRUE(s.spool.append("a\nb\n", 2));
  EXPECT_FALSE(s.spool.append("c\n", 1));
  auto range = s.spool.next();
  ASSERT_TRUE(range);
  EXPECT_FALSE(range->adopted);
  s.spool.consume(*range, 3, 6);
  EXPECT_EQ(s.spool.waiting(), 0u);
  EXPECT_FALSE(s.spool.next());
  EXPECT_EQ(fs::file_size(base), kHeaderBytes);
  EXPECT_TRUE(s.spool.append("d\n", 1));  // Starts over right after the header.
  EXPECT_EQ(read_next(s.spool), "d\n");
  EXPECT_THAT(test::read_file(base).substr(0, kHeaderBytes),
              ::testing::MatchesRegex("#stagelog-spool v2 producer=[0-9a-f]{32} "
                                      "seq=00000000000000000000 batch=00000000000000000000 "
                                      "sent=00000000000000000139\n"));
}

// The exactly-once half of the spool: a batch being sent keeps its lines and its key across a
// crash, an answered one spends its key, a refused one gives its key up.
TEST(NetworkSpoolTest, ABatchBeingSentKeepsItsLinesAndKeyAcrossAReopen) {
  test::TempDir dir;
  const fs::path base = dir.path() / "spool";
  std::string key;
  {
    Spool s(base);
    s.spool.open_own(getpid());
    s.spool.append("a\nb\nc\n", 3);
    auto range = s.spool.next();
    ASSERT_TRUE(range);
    EXPECT_THAT(range->key, ::testing::MatchesRegex("[0-9a-f]{32}-0"));
    EXPECT_EQ(range->batch_end, 0u);
    key = range->key;
    s.spool.begin_batch(*range, 4);  // "a\nb\n" goes out, no answer comes: the process dies.
    s.spool.append("d\n", 1);
  }
  Spool s(base);
  EXPECT_EQ(s.spool.open_own(getpid()), 4u);
  auto range = s.spool.next();
  ASSERT_TRUE(range);
  EXPECT_EQ(range->key, key);
  EXPECT_EQ(range->batch_end, kHeaderBytes + 4);
  s.spool.begin_batch(*range, 8);  // Already being sent: stays as it was.
  range = s.spool.next();
  ASSERT_TRUE(range);
  EXPECT_EQ(range->batch_end, kHeaderBytes + 4);
  s.spool.consume(*range, 2, 4);
  range = s.spool.next();
  ASSERT_TRUE(range);
  const std::string producer = key.substr(0, 32);
  EXPECT_EQ(range->key, producer + "-1");
  EXPECT_EQ(range->batch_end, 0u);
  s.spool.begin_batch(*range, 4);
  s.spool.abandon_batch(*range);  // 413: nothing stored, the key is not used again.
  range = s.spool.next();
  ASSERT_TRUE(range);
  EXPECT_EQ(range->key, producer + "-2");
  EXPECT_EQ(range->batch_end, 0u);
  EXPECT_EQ(read_next(s.spool), "c\nd\n");
}

TEST(NetworkSpoolTest, AVersion1FileIsSentWithKeysAndStartsOverAsVersion2) {
  test::TempDir dir;
  const fs::path base = dir.path() / "spool";
  std::ofstream(base, std::ios::binary) << "#stagelog-spool v1 sent=00000000000000000045\n"
                                        << "old\n";
  Spool s(base);
  EXPECT_EQ(s.spool.open_own(getpid()), 1u);
  auto range = s.spool.next();
  ASSERT_TRUE(range);
  EXPECT_THAT(range->key, ::testing::MatchesRegex("[0-9a-f]{32}-0"));
  EXPECT_EQ(read_next(s.spool), "old\n");
  s.spool.begin_batch(*range, 4);
  s.spool.consume(*range, 1, 4);
  EXPECT_EQ(fs::file_size(base), kHeaderBytes);
  EXPECT_THAT(test::read_file(base), ::testing::StartsWith("#stagelog-spool v2 producer="));
  EXPECT_TRUE(s.spool.append("new\n", 1));
  EXPECT_EQ(read_next(s.spool), "new\n");
}

TEST(NetworkSpoolTest, ADamagedVersion2HeaderIsRefusedWithAClearMessage) {
  test::TempDir dir;
  const fs::path base = dir.path() / "spool";
  std::string header = "#stagelog-spool v2 producer=" + std::string(32, 'x') +
                       " seq=00000000000000000000 batch=00000000000000000000 "
                       "sent=00000000000000000139\n";
  std::ofstream(base, std::ios::binary) << header << "line\n";
  Spool s(base);
  try {
    s.spool.open_own(getpid());
    ADD_FAILURE() << "opened";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), AllOf(::testing::HasSubstr(base.string()),
                                ::testing::HasSubstr("damaged stagelog spool")));
  }
}

TEST(NetworkSpoolTest, AdoptsOrphansOldestFirstBeforeItsOwnAndRemovesThemWhenSent) {
  test::TempDir dir;
  const fs::path base = dir.path() / "spool";
  const std::string header = "#stagelog-spool v1 sent=00000000000000000045\n";
  const fs::path older = base.string() + ".222";
  const fs::path newer = base.string() + ".111";
  std::ofstream(older, std::ios::binary) << header << "old\n";
  std::ofstream(newer, std::ios::binary) << header << "new1\nnew2\n";
  std::ofstream(base.string() + ".empty", std::ios::binary) << header << "not a spool's name\n";
  fs::last_write_time(older, fs::last_write_time(newer) - 1h);
  Spool s(base);
  s.spool.open_own(getpid());
  s.spool.append("own\n", 1);
  EXPECT_EQ(s.spool.adopt_orphans(), 3u);
  EXPECT_EQ(s.spool.waiting(), 4u);
  std::vector<std::string> order;
  while (auto range = s.spool.next()) {
    detail::SpoolBatch batch;
    detail::NetworkSpool::read(*range, 1000, 1 << 20, batch);
    order.push_back(batch.body);
    EXPECT_EQ(range->adopted, batch.body != "own\n");
    s.spool.consume(*range, batch.lines, batch.body.size());
  }
  EXPECT_THAT(order, ElementsAre("old\n", "new1\nnew2\n", "own\n"));
  EXPECT_FALSE(fs::exists(older));
  EXPECT_FALSE(fs::exists(newer));
  EXPECT_TRUE(fs::exists(base));
}

TEST(NetworkSpoolTest, TheBoundCountsTheOwnFilesUnsentBytes) {
  test::TempDir dir;
  Spool s(dir.path() / "spool", 100);
  EXPECT_FALSE(s.spool.under_half(0)) << "no file open: no room to speak of";
  s.spool.open_own(getpid());
  const std::string sixty(59, 'x');
  s.spool.append(sixty + "\n", 1);
  EXPECT_FALSE(s.spool.over_limit(40));
  EXPECT_TRUE(s.spool.over_limit(41));
  EXPECT_FALSE(s.spool.under_half(0));
  auto range = s.spool.next();
  ASSERT_TRUE(range);
  s.spool.consume(*range, 1, 60);
  EXPECT_TRUE(s.spool.under_half(50));
  EXPECT_FALSE(s.spool.under_half(51));
}

TEST(NetworkSpoolTest, AnUnreadableFileIsDroppedAndSaidSo) {
  test::TempDir dir;
  const fs::path base = dir.path() / "spool";
  Spool s(base);
  s.spool.open_own(getpid());
  s.spool.append("a\nb\n", 2);
  auto range = s.spool.next();
  ASSERT_TRUE(range);
  EXPECT_EQ(s.spool.drop_unreadable(*range, "Input/output error"), 2u);
  EXPECT_EQ(s.spool.waiting(), 0u);
  EXPECT_THAT(s.reports, ElementsAre("network sink: cannot read spool " + base.string() +
                                     ": Input/output error; dropped 2 events"));
}

// ---- The spool across processes -----------------------------------------------------------

TEST(NetworkSinkTest, ReplaysTheSpoolOfAProcessThatDied) {
  test::TempDir dir;
  const fs::path spool = dir.path() / "spool";
  const int port = free_port();
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    int code = 1;
    try {
      Events events;
      NetworkSink sink(options_for(url_of(port), spool));
      write_numbered(sink, events, "old", 0, 500);
      sink.flush();
      _exit(0);  // Dies without closing the sink.
    } catch (...) {
    }
    _exit(code);
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);

  Receiver receiver(port);
  Events events;
  NetworkSink sink(options_for(receiver.url(), spool));
  EXPECT_EQ(sink.stats().replayed, 500u);
  write_numbered(sink, events, "new", 0, 5);
  ASSERT_TRUE(sink.wait_sent(kPatience));
  auto expected = numbered("old", 0, 500);
  for (auto& m : numbered("new", 0, 5)) expected.push_back(m);
  EXPECT_EQ(receiver.messages(), expected);
}

TEST(NetworkSinkTest, ASecondSinkOnTheSameSpoolUsesAPerProcessFile) {
  test::TempDir dir;
  const fs::path spool = dir.path() / "spool";
  Receiver receiver;
  Events events;
  NetworkSink first(options_for(receiver.url(), spool));
  NetworkSink second(options_for(receiver.url(), spool));
  EXPECT_EQ(first.spool_path(), spool);
  EXPECT_EQ(second.spool_path(), spool.string() + "." + std::to_string(getpid()));
  write_numbered(first, events, "a", 0, 3);
  write_numbered(second, events, "b", 0, 3);
  ASSERT_TRUE(first.wait_sent(kPatience));
  ASSERT_TRUE(second.wait_sent(kPatience));
  EXPECT_EQ(receiver.lines().size(), 6u);
}

TEST(NetworkSinkTest, AdoptsAnOrphanedPerProcessSpoolBeforeAnythingNew) {
  test::TempDir dir;
  const fs::path spool = dir.path() / "spool";
  Receiver receiver;
  Events events;
  NetworkSink holder(options_for(receiver.url(), spool));  // Holds `spool` itself.
  // Left by a process that ran beside `holder` and died: header, then lines, the first sent.
  const fs::path orphan = spool.string() + ".999999";
  {
    std::string lines;
    for (int i = 0; i < 4; ++i)
      detail::format_json(events.make("orphan" + std::to_string(i)), lines);
    std::string first_line = lines.substr(0, lines.find('\n') + 1);
    char header[64];
    std::snprintf(header, sizeof header, "#stagelog-spool v1 sent=%020llu\n",
                  static_cast<unsigned long long>(45 + first_line.size()));
    std::ofstream(orphan, std::ios::binary) << header << lines;
  }
  NetworkSink sink(options_for(receiver.url(), spool));
  EXPECT_EQ(sink.stats().replayed, 3u);
  write_numbered(sink, events, "new", 0, 2);
  ASSERT_TRUE(sink.wait_sent(kPatience));
  EXPECT_THAT(receiver.messages(), ElementsAre("orphan1", "orphan2", "orphan3", "new0", "new1"));
  EXPECT_FALSE(fs::exists(orphan));
}

TEST(NetworkSinkTest, KeepsWhatItCouldNotSendAtCloseForTheNextProcess) {
  test::TempDir dir;
  const fs::path spool = dir.path() / "spool";
  const int port = free_port();
  Events events;
  {
    auto options = options_for(url_of(port), spool);
    options.shutdown_timeout = 100ms;
    NetworkSink sink(options);
    write_numbered(sink, events, "e", 0, 50);
    sink.close();
    EXPECT_EQ(sink.stats().queued, 50u);
    write_numbered(sink, events, "e", 50, 60);  // After close: straight to the spool.
    EXPECT_EQ(sink.stats().queued, 60u);
  }
  Receiver receiver(port);
  NetworkSink next(options_for(receiver.url(), spool));
  ASSERT_TRUE(next.wait_sent(kPatience));
  EXPECT_EQ(receiver.messages(), numbered("e", 0, 60));
}

TEST(NetworkSinkTest, RefusesAFileThatIsNotASpool) {
  test::TempDir dir;
  const fs::path spool = dir.path() / "notes.txt";
  std::ofstream(spool) << "my notes\n";
  try {
    NetworkSink sink(options_for(url_of(free_port()), spool));
    FAIL() << "took over a foreign file";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr(spool.string()));
    EXPECT_THAT(e.what(), HasSubstr("not a stagelog spool file"));
  }
  EXPECT_EQ(test::read_file(spool), "my notes\n");
}

TEST(NetworkSinkTest, CutsAnIncompleteLastLineLeftByACrash) {
  test::TempDir dir;
  const fs::path spool = dir.path() / "spool";
  Events events;
  {
    std::string lines;
    detail::format_json(events.make("whole"), lines);
    std::ofstream(spool, std::ios::binary) << "#stagelog-spool v1 sent=00000000000000000045\n"
                                           << lines << R"({"ts":"2026-)";
  }
  Receiver receiver;
  Reports reports;
  auto options = options_for(receiver.url(), spool);
  options.on_error = reports.fn();
  NetworkSink sink(options);
  ASSERT_TRUE(sink.wait_sent(kPatience));
  EXPECT_THAT(receiver.messages(), ElementsAre("whole"));
  EXPECT_TRUE(reports.any_contains("incomplete last line"));
}

TEST(NetworkSinkTest, AForkedChildSendsThroughASpoolOfItsOwn) {
#if defined(__SANITIZE_THREAD__)
  GTEST_SKIP() << "ThreadSanitizer cannot start threads after a multi-threaded fork";
#endif
  test::TempDir dir;
  const fs::path spool = dir.path() / "spool";
  Receiver receiver;
  Events events;
  NetworkSink sink(options_for(receiver.url(), spool));
  write_numbered(sink, events, "parent", 0, 5);
  ASSERT_TRUE(sink.wait_sent(kPatience));
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    bool ok = sink.spool_path() == fs::path(spool.string() + "." + std::to_string(getpid()));
    write_numbered(sink, events, "child", 0, 5);
    ok = sink.wait_sent(kPatience) && ok;
    ok = sink.stats().sent == 5 && ok;
    sink.close();
    _exit(ok ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  EXPECT_EQ(sink.spool_path(), spool);
  write_numbered(sink, events, "parent", 5, 10);
  ASSERT_TRUE(sink.wait_sent(kPatience));
  std::vector<std::string> parent, child_messages;
  for (const auto& m : receiver.messages()) {
    (m.rfind("parent", 0) == 0 ? parent : child_messages).push_back(m);
  }
  EXPECT_EQ(parent, numbered("parent", 0, 10));
  EXPECT_EQ(child_messages, numbered("child", 0, 5));
  EXPECT_EQ(sink.stats().sent, 10u);
}

TEST(NetworkSinkTest, AForkedChildOfARecorderKeepsLoggingToTheServer) {
#if defined(__SANITIZE_THREAD__)
  GTEST_SKIP() << "ThreadSanitizer cannot start threads after a multi-threaded fork";
#endif
  test::TempDir dir;
  Receiver receiver;
  Options options;
  options.watchdog = std::nullopt;
  options.install_crash_handlers = false;
  Recorder recorder(options);
  auto sink = std::make_shared<NetworkSink>(options_for(receiver.url(), dir.path() / "spool"));
  recorder.add_sink(sink);
  recorder.set_worker("main");
  recorder.logger().info("before fork");
  pid_t child = fork();  // The recorder's backend and the sink's sender are both running.
  ASSERT_GE(child, 0);
  if (child == 0) {
    recorder.set_worker("child");
    recorder.logger().info("in the child");
    recorder.flush();
    _exit(sink->wait_sent(kPatience) ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  recorder.logger().info("after fork");
  recorder.flush();
  ASSERT_TRUE(sink->wait_sent(kPatience));
  std::vector<std::string> parent, in_child;
  for (const auto& line : receiver.lines()) {
    auto e = parse_json_event(line);
    ASSERT_TRUE(e);
    (e->pid == child ? in_child : parent).push_back(e->message);
  }
  EXPECT_THAT(parent, ElementsAre("before fork", "after fork"));
  EXPECT_THAT(in_child, ElementsAre("in the child"));
}

}  // namespace
}  // namespace stagelog
