// GET /api/v1/stream in process: a real SqliteStore in a TempDir, a Server on 127.0.0.1 and a
// free port; events are posted with httplib's client and the stream is read with the
// library's own streaming GET and SSE reader (as `stagelog tail --server` reads it). Every
// wait is bounded; none asserts on timing.

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <httplib.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "events.hpp"
#include "eventually.hpp"
#include "fake_clock.hpp"
#include "format/sse.hpp"
#include "net/http_client.hpp"
#include "stagelog/error.hpp"
#include "stagelog/parse.hpp"
#include "stagelog/server/alerts.hpp"
#include "stagelog/server/auth.hpp"
#include "stagelog/server/server.hpp"
#include "store/sqlite_store.hpp"
#include "temp_dir.hpp"

namespace stagelog::test {
namespace {

using namespace std::chrono_literals;
using server::Server;
using server::ServerOptions;
using ::testing::HasSubstr;
using ::testing::StartsWith;
using Json = nlohmann::json;
using Clock = std::chrono::steady_clock;

constexpr auto kPatience = kDefaultPatience;

// One event line as JsonlSink writes it.
std::string line(const std::string& worker, const std::string& kind, const std::string& stage,
                 const std::string& status, std::int64_t ts_ns, const std::string& run = "job-1",
                 const std::string& message = "") {
  return ndjson_line({.run = run,
                      .kind = kind,
                      .stage = stage,
                      .status = status,
                      .ts_ns = ts_ns,
                      .worker = worker,
                      .message = message}) +
         "\n";
}

// One stream, read on the test's thread: what has arrived is parsed as it comes.
class SseClient {
 public:
  SseClient(int port, const std::string& target, const std::string& token,
            const std::string& last_event_id = "")
      : client_(detail::parse_url("http://127.0.0.1:" + std::to_string(port))) {
    std::string bearer = "Bearer " + token;
    std::vector<detail::HttpClient::Header> headers = {
        {"Authorization", bearer},
        {"Accept", "text/event-stream"},
        {"Accept-Encoding", "gzip, deflate"}};  // As browsers send it.
    if (!last_event_id.empty()) headers.emplace_back("Last-Event-ID", last_event_id);
    head_ = client_.get_stream(target, headers, Clock::now() + kPatience);
    ended_ = head_.status != 200;
  }

  const detail::HttpResponse& head() const { return head_; }

  // Reads until `done` holds for what arrived; false when the stream ended first or the
  // patience ran out.
  bool read_until(const std::function<bool(const std::vector<detail::SseEvent>&)>& done) {
    const auto give_up = Clock::now() + kPatience;
    while (!done(events_)) {
      if (ended_ || Clock::now() > give_up) return false;
      pump(50ms);
    }
    return true;
  }
  // Until `n` events of `type` came.
  bool read_count(const std::string& type, std::size_t n) {
    return read_until([&](const auto&) { return of_type(type).size() >= n; });
  }
  // Until the stream ends (true) or the patience runs out.
  bool read_to_end() {
    const auto give_up = Clock::now() + kPatience;
    while (!ended_ && Clock::now() < give_up) pump(50ms);
    return ended_;
  }

  std::vector<detail::SseEvent> of_type(const std::string& type) const {
    std::vector<detail::SseEvent> out;
    for (const auto& e : events_) {
      if (e.type == type) out.push_back(e);
    }
    return out;
  }
  const std::vector<detail::SseEvent>& events() const { return events_; }
  const std::string& raw() const { return raw_; }
  void close() { client_.close(); }

 private:
  void pump(std::chrono::milliseconds wait) {
    std::string got;
    try {
      ended_ = !client_.read_stream(got, Clock::now() + wait);
    } catch (const detail::HttpError&) {
      ended_ = true;
    }
    raw_ += got;
    parser_.feed(got, events_);
  }

  detail::HttpClient client_;
  detail::HttpResponse head_;
  detail::SseParser parser_;
  std::vector<detail::SseEvent> events_;
  std::string raw_;
  bool ended_ = false;
};

// "<epoch>-<n>" split.
std::pair<std::string, std::uint64_t> split_id(const std::string& id) {
  auto dash = id.find('-');
  return {id.substr(0, dash), std::stoull(id.substr(dash + 1))};
}

class StreamTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store_ = std::make_unique<store::SqliteStore>(dir_.path() / "stagelog.db");
    tokens_path_ = dir_.path() / "tokens";
    admin_ = server::TokenFile::create_token(tokens_path_, server::Scope::Admin, "admin");
    read_ = server::TokenFile::create_token(tokens_path_, server::Scope::Read, "reader");
    ingest_ = server::TokenFile::create_token(tokens_path_, server::Scope::Ingest, "writer");
  }
  void TearDown() override {
    client_.reset();
    if (server_) server_->stop();
  }

  ServerOptions options() {
    ServerOptions o;
    o.clock = clock_.fn();
    o.threads = 8;
    o.read_timeout = 2s;
    o.keep_alive_timeout = 1s;
    o.stream_keep_alive = 100ms;
    o.on_error = [](std::string_view) {};
    o.watchdog.check_processes = false;
    return o;
  }
  void start(ServerOptions o) {
    server_ =
        std::make_unique<Server>(*store_, server::TokenFile::load(tokens_path_), std::move(o));
    server_->start();
    client_ = std::make_unique<httplib::Client>("127.0.0.1", server_->port());
    client_->set_read_timeout(10, 0);
  }
  void start() { start(options()); }

  // A stream that has said hello (it is registered: what is posted from now on reaches it).
  std::unique_ptr<SseClient> open(const std::string& query = "", const std::string& last_id = "",
                                  const std::string& token = "") {
    auto s = std::make_unique<SseClient>(server_->port(), "/api/v1/stream" + query,
                                         token.empty() ? read_ : token, last_id);
    EXPECT_EQ(s->head().status, 200) << s->head().body;
    EXPECT_TRUE(s->read_count("hello", 1)) << s->raw();
    return s;
  }

  void post(const std::string& body) {
    auto r = client_->Post("/api/v1/events", {{"Authorization", "Bearer " + ingest_}}, body,
                           "application/x-ndjson");
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 200) << r->body;
  }

  // The answer to a stream request that is refused at once (no stream follows).
  httplib::Result refused(const std::string& query, const httplib::Headers& extra = {}) {
    httplib::Headers headers = {{"Authorization", "Bearer " + read_}};
    headers.insert(extra.begin(), extra.end());
    return client_->Get("/api/v1/stream" + query, headers);
  }

  TempDir dir_;
  FakeClock clock_;
  std::unique_ptr<store::SqliteStore> store_;
  std::filesystem::path tokens_path_;
  std::string admin_, read_, ingest_;
  std::unique_ptr<Server> server_;
  std::unique_ptr<httplib::Client> client_;
};

TEST_F(StreamTest, StoredEventsArriveAsTheirJsonlObjects) {
  start();
  auto stream = open();
  EXPECT_EQ(stream->head().header("content-type"), "text/event-stream");
  EXPECT_EQ(stream->head().header("content-encoding"), "");  // Never held back in a gzip buffer.
  EXPECT_EQ(stream->head().header("cache-control"), "no-cache");
  const std::int64_t t = clock_.now();
  post(line("gpu-1", "stage", "AGENT", "starting", t) +
       line("gpu-1", "log", "", "", t + 1, "job-1", "line \"one\"\nand two") +
       line("gpu-1", "stage", "AGENT", "completed", t + 2));
  ASSERT_TRUE(stream->read_count("event", 3)) << stream->raw();
  auto events = stream->of_type("event");
  ASSERT_EQ(events.size(), 3u);
  EXPECT_THAT(stream->raw(), HasSubstr("\nevent: event\ndata: {\"ts\":"));
  std::string error;
  auto first = parse_json_event(events[0].data, &error);
  ASSERT_TRUE(first) << error;
  EXPECT_EQ(first->worker, "gpu-1");
  EXPECT_EQ(first->stage, "AGENT");
  EXPECT_EQ(first->status, Status::Starting);
  EXPECT_EQ(Json::parse(events[1].data)["message"], "line \"one\"\nand two");
  EXPECT_EQ(Json::parse(events[2].data)["status"], "completed");
  // Ids carry one epoch and go up by one per entry (no worker entry came between: no tick
  // published anything in between, or it has a higher id).
  auto hello = split_id(stream->of_type("hello")[0].id);
  std::uint64_t previous = hello.second;
  for (const auto& e : events) {
    auto [epoch, n] = split_id(e.id);
    EXPECT_EQ(epoch, hello.first);
    EXPECT_GT(n, previous);
    previous = n;
  }
}

TEST_F(StreamTest, FiltersKeepOnlyWhatMatches) {
  start();
  auto by_worker = open("?worker=gpu-2&types=event");
  auto by_stage_kind = open("?stage=JUDGE&stage=AGENT&kind=stage&types=event,warning");
  auto by_run = open("?run=job-9&types=event");
  const std::int64_t t = clock_.now();
  post(line("gpu-1", "stage", "AGENT", "starting", t) +
       line("gpu-2", "log", "", "", t + 1, "job-2", "hello") +
       line("gpu-2", "stage", "JUDGE", "starting", t + 2, "job-9") +
       line("gpu-1", "stage", "LOAD", "starting", t + 3) +
       line("gpu-1", "heartbeat", "AGENT", "running", t + 4, "job-9"));
  // The last event each stream should see ends the wait; nothing else may have come.
  ASSERT_TRUE(by_worker->read_count("event", 2)) << by_worker->raw();
  ASSERT_TRUE(by_stage_kind->read_count("event", 2)) << by_stage_kind->raw();
  ASSERT_TRUE(by_run->read_count("event", 2)) << by_run->raw();
  post(line("gpu-2", "stage", "AGENT", "completed", t + 5, "job-9"));  // Matches all three.
  ASSERT_TRUE(by_worker->read_count("event", 3));
  ASSERT_TRUE(by_stage_kind->read_count("event", 3));
  ASSERT_TRUE(by_run->read_count("event", 3));
  auto field = [](const std::vector<detail::SseEvent>& events, const char* key) {
    std::vector<std::string> out;
    for (const auto& e : events) out.push_back(Json::parse(e.data)[key]);
    return out;
  };
  EXPECT_THAT(field(by_worker->of_type("event"), "worker"),
              ::testing::ElementsAre("gpu-2", "gpu-2", "gpu-2"));
  EXPECT_THAT(field(by_stage_kind->of_type("event"), "stage"),
              ::testing::ElementsAre("AGENT", "JUDGE", "AGENT"));
  EXPECT_THAT(field(by_run->of_type("event"), "kind"),
              ::testing::ElementsAre("stage", "heartbeat", "stage"));
  EXPECT_TRUE(by_worker->of_type("worker").empty());
}

TEST_F(StreamTest, LastEventIdReplaysExactlyTheMissedEntriesThenGoesOnLive) {
  start();
  const std::int64_t t = clock_.now();
  auto first = open("?types=event");
  post(line("w", "log", "", "", t, "r", "m1") + line("w", "log", "", "", t, "r", "m2") +
       line("w", "log", "", "", t, "r", "m3"));
  ASSERT_TRUE(first->read_count("event", 3));
  const std::string resume_at = first->of_type("event")[1].id;  // After m2.
  first->close();
  post(line("w", "log", "", "", t, "r", "m4") + line("w", "log", "", "", t, "r", "m5"));

  auto messages = [](const SseClient& s) {
    std::vector<std::string> out;
    for (const auto& e : s.of_type("event")) out.push_back(Json::parse(e.data)["message"]);
    return out;
  };
  // The header, as a reconnecting EventSource sends it.
  auto resumed = open("?types=event", resume_at);
  ASSERT_TRUE(resumed->read_count("event", 3)) << resumed->raw();
  EXPECT_TRUE(resumed->of_type("reset").empty()) << resumed->raw();
  EXPECT_EQ(resumed->of_type("hello")[0].id, resume_at);
  post(line("w", "log", "", "", t, "r", "m6"));
  ASSERT_TRUE(resumed->read_count("event", 4)) << resumed->raw();
  EXPECT_THAT(messages(*resumed), ::testing::ElementsAre("m3", "m4", "m5", "m6"));

  // The parameter, for clients that cannot set headers; from=oldest for a first connection.
  auto by_param = open("?types=event&last_event_id=" + resume_at);
  ASSERT_TRUE(by_param->read_count("event", 4)) << by_param->raw();
  EXPECT_THAT(messages(*by_param), ::testing::ElementsAre("m3", "m4", "m5", "m6"));
  auto everything = open("?types=event&from=oldest");
  ASSERT_TRUE(everything->read_count("event", 6)) << everything->raw();
  EXPECT_THAT(messages(*everything), ::testing::ElementsAre("m1", "m2", "m3", "m4", "m5", "m6"));
}

TEST_F(StreamTest, AnIdOlderThanTheHistoryOrFromAnotherServerGetsAResetFirst) {
  ServerOptions o = options();
  o.stream_history = 4;
  start(o);
  const std::int64_t t = clock_.now();
  auto first = open("?types=event");
  post(line("w", "log", "", "", t, "r", "m1"));
  ASSERT_TRUE(first->read_count("event", 1));
  const std::string old_id = first->of_type("event")[0].id;
  first->close();
  std::string batch;
  for (int i = 2; i <= 9; ++i) batch += line("w", "log", "", "", t, "r", "m" + std::to_string(i));
  post(batch);

  auto behind = open("?types=event", old_id);
  ASSERT_TRUE(behind->read_count("event", 1)) << behind->raw();
  ASSERT_FALSE(behind->events().empty());
  EXPECT_EQ(behind->events()[0].type, "reset");  // First, before hello.
  Json reset = Json::parse(behind->events()[0].data);
  EXPECT_EQ(reset["reason"], "behind");
  EXPECT_GE(reset["missed"].get<int>(), 4);  // m2..m5 at least (worker entries may add more).
  EXPECT_EQ(behind->events()[1].type, "hello");
  // Then what is still kept, from its oldest: m9 is among it, m2 is not.
  ASSERT_TRUE(behind->read_until([](const auto& events) {
    return !events.empty() && events.back().type == "event" &&
           Json::parse(events.back().data)["message"] == "m9";
  })) << behind->raw();
  EXPECT_THAT(behind->raw(), ::testing::Not(HasSubstr("\"m2\"")));

  std::string other = old_id;
  other[0] = other[0] == 'a' ? 'b' : 'a';  // Same shape, another epoch.
  auto restarted = open("?types=event", other);
  ASSERT_FALSE(restarted->events().empty());
  EXPECT_EQ(restarted->events()[0].type, "reset");
  EXPECT_EQ(Json::parse(restarted->events()[0].data)["reason"], "restarted");
}

TEST_F(StreamTest, BadParametersAndIdsAre400WithTheReason) {
  start();
  auto expect_400 = [&](const std::string& query, const std::string& reason,
                        const httplib::Headers& extra = {}) {
    auto r = refused(query, extra);
    ASSERT_TRUE(r) << query;
    EXPECT_EQ(r->status, 400) << query;
    EXPECT_EQ(r->get_header_value("Content-Type"), "application/json") << query;
    Json body = Json::parse(r->body);
    EXPECT_EQ(body["success"], false);
    EXPECT_THAT(body["error"].get<std::string>(), HasSubstr(reason)) << query;
  };
  expect_400("?status=failed", "unknown parameter \"status\" (supported: worker, stage");
  expect_400("?kind=stage,bogus", "kind: unknown kind \"bogus\"");
  expect_400("?types=event,alerts", "types: unknown type \"alerts\"");
  expect_400("?from=yesterday", "from: expected oldest or now");
  expect_400("?worker=", "worker: empty value");
  expect_400("?last_event_id=12", "last_event_id: \"12\" is not an id of this stream");
  expect_400("", "Last-Event-ID: \"zzzz\" is not an id", {{"Last-Event-ID", "zzzz"}});
  expect_400("", "is not an id", {{"Last-Event-ID", "0123456789abcdeg-1"}});
  // An id of this server it has not given yet.
  auto stream = open();
  std::string epoch = split_id(stream->of_type("hello")[0].id).first;
  expect_400("", "is past this stream's latest id", {{"Last-Event-ID", epoch + "-999999"}});
}

TEST_F(StreamTest, NeedsAReadToken) {
  start();
  auto none = client_->Get("/api/v1/stream");
  ASSERT_TRUE(none);
  EXPECT_EQ(none->status, 401);
  EXPECT_EQ(Json::parse(none->body)["success"], false);
  auto ingest_only = client_->Get("/api/v1/stream", {{"Authorization", "Bearer " + ingest_}});
  ASSERT_TRUE(ingest_only);
  EXPECT_EQ(ingest_only->status, 403);
  open("", "", admin_);  // Admin may too.
}

TEST_F(StreamTest, StreamsPastTheCapAre503AndIngestGoesOn) {
  ServerOptions o = options();
  o.max_streams = 2;
  start(o);
  auto a = open();
  auto b = open();
  auto r = refused("");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 503);
  Json body = Json::parse(r->body);
  EXPECT_THAT(body["error"].get<std::string>(), HasSubstr("too many open streams (at most 2"));
  EXPECT_EQ(body["max_streams"], 2);
  post(line("w", "log", "", "", clock_.now()));
  ASSERT_TRUE(a->read_count("event", 1));
  EXPECT_EQ(client_->Get("/healthz")->status, 200);
  // A client that leaves frees its slot once the server notices (a keep-alive fails).
  b.reset();
  EXPECT_TRUE(eventually([&] {
    SseClient again(server_->port(), "/api/v1/stream", read_);
    return again.head().status == 200;
  }));
}

TEST_F(StreamTest, StreamsCanBeTurnedOff) {
  ServerOptions o = options();
  o.max_streams = 0;
  start(o);
  auto r = refused("");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 503);
  EXPECT_THAT(Json::parse(r->body)["error"].get<std::string>(), HasSubstr("streams are off"));
}

// A stream is a connection like any other: many more streams than request threads stay open,
// each gets what is posted, and the threads still answer everything else.
TEST_F(StreamTest, OpenStreamsHoldNoThread) {
  ServerOptions o = options();
  o.threads = 2;
  start(o);
  constexpr int kStreams = 16;
  std::vector<std::unique_ptr<SseClient>> streams;
  for (int i = 0; i < kStreams; ++i) streams.push_back(open());
  EXPECT_EQ(client_->Get("/healthz")->status, 200);
  post(line("w", "log", "", "", clock_.now()));
  for (auto& s : streams) EXPECT_TRUE(s->read_count("event", 1));
  auto listed = client_->Get("/api/v1/workers", {{"Authorization", "Bearer " + read_}});
  ASSERT_TRUE(listed);
  EXPECT_EQ(listed->status, 200);
}

TEST_F(StreamTest, StopEndsOpenStreamsInsteadOfWaitingForThem) {
  ServerOptions o = options();
  o.stream_keep_alive = std::chrono::hours(1);  // Nothing but stop() ends these.
  start(o);
  auto a = open();
  auto b = open("?types=warning");
  auto stopped = std::async(std::launch::async, [&] { server_->stop(); });
  ASSERT_EQ(stopped.wait_for(kPatience), std::future_status::ready) << "stop() hangs";
  EXPECT_TRUE(a->read_to_end());
  EXPECT_TRUE(b->read_to_end());
}

TEST_F(StreamTest, AlertsAreStreamedAsTheyFire) {
  ServerOptions o = options();
  o.alerts = server::parse_alert_config(
      R"({"rules":[{"name":"judge","type":"repeated_failures","stage":"JUDGE","count":2}]})");
  start(std::move(o));
  auto alerts = open("?types=alert");
  auto everything = open();
  const std::int64_t t = clock_.now();
  post(line("gpu-1", "stage", "JUDGE", "failed", t, "job-1") +
       line("gpu-1", "stage", "JUDGE", "failed", t + 1, "job-2") +
       line("gpu-1", "stage", "JUDGE", "failed", t + 2, "job-3"));
  ASSERT_TRUE(alerts->read_count("alert", 1)) << alerts->raw();
  Json alert = Json::parse(alerts->of_type("alert")[0].data);
  EXPECT_EQ(alert["rule"], "judge");
  EXPECT_EQ(alert["stage"], "JUDGE");
  EXPECT_EQ(alert["count"], 2);
  // In the unfiltered stream, after the events of the request that fired it. The events and
  // the alert are published one after the other, so they may arrive in separate reads: wait for
  // all four, not only for the events.
  ASSERT_TRUE(everything->read_until([&](const auto&) {
    return everything->of_type("event").size() >= 3 && !everything->of_type("alert").empty();
  })) << everything->raw();
  std::vector<std::string> order;
  for (const auto& e : everything->events()) {
    if (e.type == "event" || e.type == "alert") order.push_back(e.type);
  }
  EXPECT_EQ(order, (std::vector<std::string>{"event", "event", "event", "alert"}));
  EXPECT_TRUE(alerts->of_type("event").empty());
}

TEST_F(StreamTest, WatchdogWarningsAndWorkerChangesAreStreamed) {
  ServerOptions o = options();
  o.watchdog.stage_threshold = 2s;
  start(o);
  auto stream = open("?types=warning,worker&worker=gpu-1");
  const std::int64_t t = clock_.now();
  post(line("gpu-1", "stage", "AGENT", "starting", t) +
       line("gpu-2", "stage", "AGENT", "starting", t));
  ASSERT_TRUE(stream->read_count("worker", 1)) << stream->raw();
  Json running = Json::parse(stream->of_type("worker")[0].data);
  EXPECT_EQ(running["worker"], "gpu-1");
  EXPECT_EQ(running["state"], "running");
  EXPECT_EQ(running["stage"], "AGENT");
  EXPECT_TRUE(running["previous_state"].is_null());

  clock_.advance(3s);  // Past the threshold: the next tick flags it.
  ASSERT_TRUE(stream->read_count("warning", 1)) << stream->raw();
  Json warning = Json::parse(stream->of_type("warning")[0].data);
  EXPECT_EQ(warning["rule"], "stuck_stage");
  EXPECT_EQ(warning["worker"], "gpu-1");
  EXPECT_EQ(warning["stage"], "AGENT");
  EXPECT_EQ(warning["level"], "warning");
  EXPECT_THAT(warning["message"].get<std::string>(),
              StartsWith("Stage AGENT on gpu-1 open for 3.0s (threshold: 2.0s)"));
  EXPECT_EQ(warning["fields"]["threshold_s"], 2.0);
  ASSERT_TRUE(stream->read_until([&](const auto&) {
    for (const auto& e : stream->of_type("worker")) {
      if (Json::parse(e.data)["state"] == "stuck") return true;
    }
    return false;
  })) << stream->raw();

  post(line("gpu-1", "stage", "AGENT", "completed", clock_.now()));
  ASSERT_TRUE(stream->read_count("warning", 2)) << stream->raw();
  Json recovered = Json::parse(stream->of_type("warning")[1].data);
  EXPECT_EQ(recovered["rule"], "recovered");
  EXPECT_THAT(recovered["message"].get<std::string>(),
              HasSubstr("recovered: Stage AGENT on gpu-1"));
  // Only gpu-1's, as asked.
  EXPECT_THAT(stream->raw(), ::testing::Not(HasSubstr("gpu-2")));
}

}  // namespace
}  // namespace stagelog::test
