// Exactly-once ingest batches in process: the IngestWriter with batch keys (a repeat stored
// once, also while its first is being written and within one write) over a real SqliteStore,
// and POST /api/v1/events with an Idempotency-Key over HTTP.

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <httplib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "events.hpp"
#include "eventually.hpp"
#include "fake_clock.hpp"
#include "forwarding_store.hpp"
#include "ndjson_receiver.hpp"
#include "network_sink_harness.hpp"
#include "server/ingest.hpp"
#include "stagelog/server/auth.hpp"
#include "stagelog/server/server.hpp"
#include "store/sqlite_store.hpp"
#include "temp_dir.hpp"

namespace stagelog::test {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;

constexpr std::int64_t kSecond = 1'000'000'000;
constexpr std::int64_t kDay = 86'400 * kSecond;
constexpr const char* kProducer = "00112233445566778899aabbccddeeff";

// A store whose next write can be held until the test lets it go, failing or not.
class GatedStore final : public ForwardingStore {
 public:
  using ForwardingStore::ForwardingStore;

  void hold() {
    std::lock_guard lock(mutex_);
    held_ = true;
  }
  bool holding_a_write() {
    std::lock_guard lock(mutex_);
    return waiting_;
  }
  void release(bool fail) {
    {
      std::lock_guard lock(mutex_);
      held_ = false;
      fail_ = fail;
    }
    cv_.notify_all();
  }

  // The next batch key lookups block in batch() until release_lookups().
  void hold_lookups() {
    std::lock_guard lock(mutex_);
    lookups_held_ = true;
  }
  bool holding_a_lookup() {
    std::lock_guard lock(mutex_);
    return lookup_waiting_;
  }
  void release_lookups() {
    {
      std::lock_guard lock(mutex_);
      lookups_held_ = false;
    }
    cv_.notify_all();
  }

  stagelog::Result<std::optional<store::BatchRecord>> batch(std::string_view key,
                                                            std::int64_t now_ns) override {
    {
      std::unique_lock lock(mutex_);
      if (lookups_held_) {
        lookup_waiting_ = true;
        cv_.wait(lock, [&] { return !lookups_held_; });
        lookup_waiting_ = false;
      }
    }
    return inner_.batch(key, now_ns);
  }

  stagelog::Result<void> write(std::span<const store::EventsWrite> events,
                               std::span<const store::ExecutionWrite> executions) override {
    bool fail = false;
    {
      std::unique_lock lock(mutex_);
      if (held_) {
        waiting_ = true;
        cv_.notify_all();
        cv_.wait(lock, [&] { return !held_; });
        waiting_ = false;
        fail = std::exchange(fail_, false);
      }
    }
    if (fail) return Error("sqlite store x.db: cannot store: disk I/O error");
    return inner_.write(events, executions);
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  bool held_ = false;
  bool waiting_ = false;
  bool fail_ = false;
  bool lookups_held_ = false;
  bool lookup_waiting_ = false;
};

std::vector<OwnedEvent> batch_of(const std::string& run, int n, std::int64_t t) {
  std::vector<OwnedEvent> events;
  for (int i = 0; i < n; ++i) {
    events.push_back(run_event(run, Kind::Log, Status::None, t + i, "step"));
  }
  return events;
}

store::BatchRecord record(std::uint64_t seq, std::string body, std::int64_t t) {
  return store::BatchRecord{std::string(kProducer) + "-" + std::to_string(seq), 200,
                            std::move(body), t};
}

class IngestWriterBatchTest : public ::testing::Test {
 protected:
  std::size_t rows(const std::string& run) {
    auto got = store_.events(run, clock_.now(), 1'000'000);
    EXPECT_TRUE(got) << got.error().what();
    return got ? got->size() : 0;
  }

  TempDir dir_;
  FakeClock clock_;
  store::SqliteStore store_{dir_.path() / "stagelog.db"};
  GatedStore gated_{store_};
};

TEST_F(IngestWriterBatchTest, ARepeatIsAnsweredWithTheFirstRecordAlsoAfterARestart) {
  const std::int64_t t = clock_.now();
  auto events = batch_of("r", 3, t);
  auto first = record(1, R"({"accepted":3})", t);
  {
    detail::IngestWriter writer(gated_, {100, clock_.fn()});
    auto stored = writer.add_batch(events, t + kDay, first);
    ASSERT_TRUE(stored) << stored.error().what();
    EXPECT_FALSE(stored->has_value());  // Stored by this call.

    auto again = record(1, R"({"accepted":"other"})", t + kSecond);
    auto repeat = writer.add_batch(events, t + kDay, again);
    ASSERT_TRUE(repeat) << repeat.error().what();
    ASSERT_TRUE(repeat->has_value());
    EXPECT_EQ(**repeat, first);
    // Another key is another batch.
    auto other = writer.add_batch(events, t + kDay, record(2, "{}", t));
    ASSERT_TRUE(other);
    EXPECT_FALSE(other->has_value());
  }
  detail::IngestWriter restarted(gated_, {100, clock_.fn()});
  auto repeat = restarted.add_batch(events, t + kDay, record(1, "{}", t));
  ASSERT_TRUE(repeat) << repeat.error().what();
  ASSERT_TRUE(repeat->has_value());
  EXPECT_EQ(**repeat, first);
  EXPECT_EQ(rows("r"), 6u);
}

// The concurrent duplicate: a repeat arriving while its first is in the store's hands waits
// for the first's outcome instead of being folded into the next write.
TEST_F(IngestWriterBatchTest, ARepeatSentWhileItsFirstIsBeingWrittenIsNotStoredAgain) {
  detail::IngestWriter writer(gated_, {100, clock_.fn()});
  const std::int64_t t = clock_.now();
  auto events = batch_of("r", 4, t);
  auto first = record(5, "first", t);
  gated_.hold();
  stagelog::Result<std::optional<store::BatchRecord>> a_result = Error("not run");
  std::thread a([&] { a_result = writer.add_batch(events, t + kDay, first); });
  ASSERT_TRUE(eventually([&] { return gated_.holding_a_write(); }));
  stagelog::Result<std::optional<store::BatchRecord>> b_result = Error("not run");
  auto second = record(5, "second", t);
  std::thread b([&] { b_result = writer.add_batch(events, t + kDay, second); });
  ASSERT_TRUE(eventually([&] { return writer.queued() == 0; }));  // B is taken by the fold.
  gated_.release(/*fail=*/false);
  a.join();
  b.join();
  ASSERT_TRUE(a_result) << a_result.error().what();
  EXPECT_FALSE(a_result->has_value());
  ASSERT_TRUE(b_result) << b_result.error().what();
  ASSERT_TRUE(b_result->has_value());
  EXPECT_EQ((*b_result)->body, "first");
  EXPECT_EQ(rows("r"), 4u);
}

// A first write that fails stores nothing, so its repeat stores the batch: at once when it
// waited for the first's outcome, or when sent again if it was folded on the failed write.
TEST_F(IngestWriterBatchTest, ARepeatOfAFailedFirstStoresTheBatch) {
  detail::IngestWriter writer(gated_, {100, clock_.fn()});
  const std::int64_t t = clock_.now();
  auto events = batch_of("r", 2, t);
  auto first = record(9, "first", t);
  gated_.hold();
  stagelog::Result<std::optional<store::BatchRecord>> a_result = Error("not run");
  std::thread a([&] { a_result = writer.add_batch(events, t + kDay, first); });
  ASSERT_TRUE(eventually([&] { return gated_.holding_a_write(); }));
  stagelog::Result<std::optional<store::BatchRecord>> b_result = Error("not run");
  auto second = record(9, "second", t);
  std::thread b([&] { b_result = writer.add_batch(events, t + kDay, second); });
  gated_.release(/*fail=*/true);
  a.join();
  b.join();
  EXPECT_FALSE(a_result);
  if (!b_result) b_result = writer.add_batch(events, t + kDay, second);  // The sender's retry.
  ASSERT_TRUE(b_result) << b_result.error().what();
  EXPECT_FALSE(b_result->has_value());  // Stored by B.
  EXPECT_EQ(rows("r"), 2u);
  auto kept = store_.batch(second.key, t);
  ASSERT_TRUE(kept && kept->has_value());
  EXPECT_EQ((**kept).body, "second");
}

// Two requests with one key folded into one write: the second follows the first.
TEST_F(IngestWriterBatchTest, TwoCopiesInOneWriteAreStoredOnce) {
  detail::IngestWriter writer(gated_, {100, clock_.fn()});
  const std::int64_t t = clock_.now();
  // X's key lookup is held, so the fold thread waits there while A and B queue behind it.
  auto x_events = batch_of("x", 1, t);
  auto x_key = record(1, "x", t);
  gated_.hold_lookups();
  std::thread x([&] { (void)writer.add_batch(x_events, t + kDay, x_key); });
  ASSERT_TRUE(eventually([&] { return gated_.holding_a_lookup(); }));

  auto events = batch_of("r", 3, t);
  auto first = record(2, "first", t);
  auto second = record(2, "second", t);
  stagelog::Result<std::optional<store::BatchRecord>> a_result = Error("not run");
  stagelog::Result<std::optional<store::BatchRecord>> b_result = Error("not run");
  std::thread a([&] { a_result = writer.add_batch(events, t + kDay, first); });
  ASSERT_TRUE(eventually([&] { return writer.queued() == 1; }));
  std::thread b([&] { b_result = writer.add_batch(events, t + kDay, second); });
  ASSERT_TRUE(eventually([&] { return writer.queued() == 2; }));
  gated_.release_lookups();
  for (std::thread* th : {&x, &a, &b}) th->join();
  ASSERT_TRUE(a_result) << a_result.error().what();
  ASSERT_TRUE(b_result) << b_result.error().what();
  EXPECT_FALSE(a_result->has_value());
  ASSERT_TRUE(b_result->has_value());
  EXPECT_EQ((*b_result)->body, "first");
  EXPECT_EQ(rows("r"), 3u);
  EXPECT_EQ(rows("x"), 1u);
}

// ---- Over HTTP --------------------------------------------------------------------------------

// A store whose n-th write from a given moment fails with an I/O error (a full disk part way
// through a large batch).
class FlakyStore final : public ForwardingStore {
 public:
  using ForwardingStore::ForwardingStore;

  void fail_write(int nth) {
    std::lock_guard lock(mutex_);
    countdown_ = nth;
  }

  stagelog::Result<void> write(std::span<const store::EventsWrite> events,
                               std::span<const store::ExecutionWrite> executions) override {
    {
      std::lock_guard lock(mutex_);
      if (countdown_ > 0 && --countdown_ == 0) {
        return Error("sqlite store x.db: cannot store: disk I/O error", ErrorKind::Io);
      }
    }
    return inner_.write(events, executions);
  }

 private:
  std::mutex mutex_;
  int countdown_ = 0;
};

class IdempotencyKeyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store_ = std::make_unique<store::SqliteStore>(dir_.path() / "stagelog.db");
    flaky_ = std::make_unique<FlakyStore>(*store_);
    auto tokens = dir_.path() / "tokens";
    token_ = server::TokenFile::create_token(tokens, server::Scope::Admin, "admin");
    server::ServerOptions o;
    o.port = 0;
    o.clock = clock_.fn();
    o.threads = 4;
    o.on_error = [](std::string_view) {};
    server_ = std::make_unique<server::Server>(*flaky_, server::TokenFile::load(tokens), o);
    server_->start();
    client_ = std::make_unique<httplib::Client>("127.0.0.1", server_->port());
    client_->set_read_timeout(10, 0);
  }
  void TearDown() override {
    client_.reset();
    server_->stop();
  }

  httplib::Result post(const std::string& body, std::optional<std::string> key) {
    httplib::Headers headers = {{"Authorization", "Bearer " + token_}};
    if (key) headers.emplace("Idempotency-Key", *key);
    return client_->Post("/api/v1/events", headers, body, "application/x-ndjson");
  }
  std::size_t rows(const std::string& run) {
    auto got = store_->events(run, clock_.now(), 1'000'000);
    EXPECT_TRUE(got) << got.error().what();
    return got ? got->size() : 0;
  }
  std::string lines(const std::string& run, int n, const std::string& extra = "") {
    std::string body;
    for (int i = 0; i < n; ++i) {
      body += ndjson_line({.run = run, .kind = "log", .ts_ns = clock_.now() + i}) + "\n";
    }
    return body + extra;
  }

  TempDir dir_;
  FakeClock clock_;
  std::unique_ptr<store::SqliteStore> store_;
  std::unique_ptr<FlakyStore> flaky_;
  std::string token_;
  std::unique_ptr<server::Server> server_;
  std::unique_ptr<httplib::Client> client_;
};

TEST_F(IdempotencyKeyTest, ARepeatGetsTheFirstAnswerAndStoresNothing) {
  const std::string key = std::string(kProducer) + "-1";
  auto first = post(lines("r", 3, "not json\n"), key);
  ASSERT_TRUE(first);
  ASSERT_EQ(first->status, 200) << first->body;
  EXPECT_FALSE(first->has_header("Idempotent-Replayed"));
  clock_.advance(5s);
  auto again = post(lines("r", 3, "not json\n"), key);
  ASSERT_TRUE(again);
  EXPECT_EQ(again->status, 200);
  EXPECT_EQ(again->body, first->body);
  EXPECT_EQ(again->get_header_value("Idempotent-Replayed"), "true");
  EXPECT_EQ(rows("r"), 3u);
  // A new key, or none, is a new batch.
  ASSERT_TRUE(post(lines("r", 2), std::string(kProducer) + "-2"));
  ASSERT_TRUE(post(lines("r", 1), std::nullopt));
  ASSERT_TRUE(post(lines("r", 1), std::nullopt));
  EXPECT_EQ(rows("r"), 7u);
}

TEST_F(IdempotencyKeyTest, ABadKeyIs400AndStoresNothing) {
  auto bad = post(lines("r", 2), "batch-1");
  ASSERT_TRUE(bad);
  EXPECT_EQ(bad->status, 400);
  EXPECT_THAT(bad->body, AllOf(HasSubstr("Idempotency-Key"), HasSubstr("batch-1")));
  EXPECT_EQ(rows("r"), 0u);
}

TEST_F(IdempotencyKeyTest, ABatchRefusedWholeIsNotRememberedUnderItsKey) {
  const std::string key = std::string(kProducer) + "-3";
  auto refused = post("not json\n", key);
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->status, 400);
  auto stored = post(lines("r", 2), key);
  ASSERT_TRUE(stored);
  EXPECT_EQ(stored->status, 200) << stored->body;
  EXPECT_FALSE(stored->has_header("Idempotent-Replayed"));
  EXPECT_EQ(rows("r"), 2u);
}

// A body over one piece (detail::kIngestPieceBytes) is parsed and stored piece by piece; its
// answer is the one answer of the whole batch, lines numbered as the body numbers them.
TEST_F(IdempotencyKeyTest, ABodyOfManyPiecesIsAnsweredAndStoredAsOneBatch) {
  const std::string key = std::string(kProducer) + "-4";
  std::string body = "not json\n";  // Line 1.
  int events = 0;
  while (body.size() < 2 * detail::kIngestPieceBytes + 1000) {
    body += lines("big", 100);
    events += 100;
  }
  const std::size_t last_line = static_cast<std::size_t>(events) + 2;
  body += "{\"kind\":\"nope\"}\n";  // The last line, in the third piece.
  auto first = post(body, key);
  ASSERT_TRUE(first);
  ASSERT_EQ(first->status, 200) << first->body;
  auto answer = nlohmann::json::parse(first->body);
  EXPECT_EQ(answer["accepted"], events);
  ASSERT_EQ(answer["rejected"].size(), 2u) << first->body;
  EXPECT_EQ(answer["rejected"][0]["line"], 1);
  EXPECT_EQ(answer["rejected"][1]["line"], last_line);
  EXPECT_EQ(rows("big"), static_cast<std::size_t>(events));
  // Sent again: every piece is known, nothing is stored twice, the answer is the first one.
  auto again = post(body, key);
  ASSERT_TRUE(again);
  EXPECT_EQ(again->status, 200);
  EXPECT_EQ(again->body, first->body);
  EXPECT_EQ(again->get_header_value("Idempotent-Replayed"), "true");
  EXPECT_EQ(rows("big"), static_cast<std::size_t>(events));
}

// The store fails on the second piece of a large batch: the answer says which lines are
// stored; sent again under the same key, the batch stores the rest, and nothing twice.
TEST_F(IdempotencyKeyTest, ALargeBatchThatFailsPartWayStoresTheRestOnceWhenSentAgain) {
  const std::string key = std::string(kProducer) + "-5";
  std::string body;
  int events = 0;
  while (body.size() < 2 * detail::kIngestPieceBytes + 1000) {
    body += lines("part", 100);
    events += 100;
  }
  std::string_view rest = body;
  const std::size_t first_piece_lines =
      static_cast<std::size_t>(std::ranges::count(detail::take_piece(rest), '\n'));
  flaky_->fail_write(2);
  auto failed = post(body, key);
  ASSERT_TRUE(failed);
  ASSERT_EQ(failed->status, 503) << failed->body;
  EXPECT_EQ(failed->get_header_value("Retry-After"), "10");
  auto answer = nlohmann::json::parse(failed->body);
  EXPECT_EQ(answer["stored_lines"], first_piece_lines) << failed->body;
  EXPECT_THAT(failed->body, HasSubstr("lines 1 to " + std::to_string(first_piece_lines)));
  EXPECT_EQ(rows("part"), first_piece_lines);

  auto again = post(body, key);
  ASSERT_TRUE(again);
  ASSERT_EQ(again->status, 200) << again->body;
  EXPECT_FALSE(again->has_header("Idempotent-Replayed"));
  EXPECT_EQ(nlohmann::json::parse(again->body)["accepted"], events);
  EXPECT_EQ(rows("part"), static_cast<std::size_t>(events));
}

// Without a key, the answer to a failure part way still says what was stored.
TEST_F(IdempotencyKeyTest, AKeylessLargeBatchThatFailsPartWaySaysWhatWasStored) {
  std::string body;
  while (body.size() < 2 * detail::kIngestPieceBytes + 1000) body += lines("nokey", 100);
  std::string_view rest = body;
  const std::size_t first_piece_lines =
      static_cast<std::size_t>(std::ranges::count(detail::take_piece(rest), '\n'));
  flaky_->fail_write(2);
  auto failed = post(body, std::nullopt);
  ASSERT_TRUE(failed);
  ASSERT_EQ(failed->status, 503) << failed->body;
  EXPECT_EQ(nlohmann::json::parse(failed->body)["stored_lines"], first_piece_lines);
  EXPECT_THAT(failed->body, HasSubstr("stores them twice"));
  EXPECT_EQ(rows("nokey"), first_piece_lines);
}

// A NetworkSink posts through a stand-in proxy to the real server: the proxy passes each
// request on, but loses the server's answer to every batch's first sending (answering 503 in
// its place) after the server stored it. The sink retries with the same key; the server
// answers the retry as the first time, from the stored key, and stores nothing more.
TEST_F(IdempotencyKeyTest, ASinkRetryingAfterALostAnswerStoresEachBatchOnce) {
  constexpr int kEvents = 200;
  httplib::Client upstream("127.0.0.1", server_->port());
  upstream.set_read_timeout(10, 0);
  std::mutex mu;
  std::set<std::string> seen_keys;
  std::atomic<int> lost{0};
  std::atomic<int> replayed{0};
  std::atomic<int> without_key{0};
  Receiver proxy;
  proxy.set_policy([&](const Received& r) {
    std::string body;
    for (const std::string& line : r.lines) body += line + "\n";
    const std::string key = r.header("Idempotency-Key");
    if (key.empty()) ++without_key;
    httplib::Headers headers = {{"Authorization", "Bearer " + token_}};
    if (!key.empty()) headers.emplace("Idempotency-Key", key);
    auto answer = upstream.Post("/api/v1/events", headers, body, "application/x-ndjson");
    if (!answer) return Reply{502, "no answer from upstream"};
    if (answer->get_header_value("Idempotent-Replayed") == "true") ++replayed;
    bool first_sending = false;
    {
      std::lock_guard lock(mu);
      first_sending = seen_keys.insert(key).second;
    }
    if (first_sending && answer->status == 200) {
      ++lost;
      return Reply{503, "answer lost"};
    }
    return Reply{answer->status, answer->body};
  });

  auto o = options_for(proxy.url(), dir_.path() / "sink.spool");
  o.batch_events = 20;
  Events events;
  NetworkSink sink(o);
  for (int i = 0; i < kEvents; ++i) {
    Event e = events.make("e" + std::to_string(i));
    e.run = "sink-run";
    sink.write(e);
  }
  ASSERT_TRUE(sink.wait_sent(kDefaultPatience)) << "queued " << sink.stats().queued;
  EXPECT_EQ(sink.stats().sent, std::uint64_t{kEvents});
  EXPECT_EQ(without_key.load(), 0);
  EXPECT_GT(lost.load(), 0);
  EXPECT_EQ(replayed.load(), lost.load());  // Every lost answer's batch was sent again.
  EXPECT_EQ(rows("sink-run"), std::size_t{kEvents});
}

}  // namespace
}  // namespace stagelog::test
