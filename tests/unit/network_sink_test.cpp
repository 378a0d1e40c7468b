// NetworkSink's sending side: URLs, the HTTP client, batching, retries and rejections, the
// recorder and the environment. The spool's side is in network_spool_test.cpp.

#include "stagelog/sinks/network_sink.hpp"

#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "eventually.hpp"
#include "format/format.hpp"
#include "ndjson_receiver.hpp"
#include "net/http_client.hpp"
#include "network_sink_harness.hpp"
#include "scoped_env.hpp"
#include "stagelog/error.hpp"
#include "stagelog/parse.hpp"
#include "stagelog/recorder.hpp"
#include "stagelog/worker_logging.hpp"
#include "temp_dir.hpp"

namespace stagelog {
namespace {

using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

using test::Events;
using test::eventually;
using test::free_port;
using test::numbered;
using test::options_for;
using test::Received;
using test::Receiver;
using test::Reply;
using test::Reports;
using test::ScopedEnv;
using test::SilentServer;
using test::url_of;
using test::write_numbered;

constexpr auto kPatience = test::kDefaultPatience;  // Upper bound on any wait (20 s).

// ---- The HTTP client -------------------------------------------------------------------------

TEST(HttpClientTest, ReadsAChunkedAnswerAndKeepsTheConnection) {
  Receiver receiver;
  receiver.set_policy([](const Received&) {
    return Reply{200, R"({"accepted":3,"rejected":[{"line":2,"error":"bad status"}]})", true};
  });
  detail::HttpClient client(detail::parse_url(receiver.url()));
  auto deadline = std::chrono::steady_clock::now() + kPatience;
  auto first = client.post("/api/v1/events", "application/x-ndjson", "{}\n{}\n{}\n", {}, deadline);
  EXPECT_EQ(first.status, 200);
  EXPECT_EQ(first.body, R"({"accepted":3,"rejected":[{"line":2,"error":"bad status"}]})");
  EXPECT_EQ(first.header("transfer-encoding"), "chunked");
  int fd = client.fd();
  EXPECT_GE(fd, 0);
  auto second = client.post("/api/v1/events", "application/x-ndjson", "{}\n", {}, deadline);
  EXPECT_EQ(second.status, 200);
  EXPECT_EQ(client.fd(), fd) << "the keep-alive connection was not reused";
  auto requests = receiver.requests();
  ASSERT_EQ(requests.size(), 2u);
  EXPECT_EQ(requests[0].lines.size(), 3u);
  EXPECT_EQ(requests[0].content_type, "application/x-ndjson");
}

TEST(HttpClientTest, ReconnectsWhenTheServerClosedAKeptConnection) {
  Receiver receiver;
  detail::HttpClient client(detail::parse_url(receiver.url()));
  auto deadline = std::chrono::steady_clock::now() + kPatience;
  EXPECT_EQ(client.post("/api/v1/events", "application/x-ndjson", "{}\n", {}, deadline).status,
            200);
  receiver.stop();  // Closes the kept connection.
  receiver.start();
  EXPECT_EQ(client.post("/api/v1/events", "application/x-ndjson", "{}\n", {}, deadline).status,
            200);
  EXPECT_EQ(receiver.requests().size(), 2u);
}

TEST(HttpClientTest, TimesOutOnAServerThatNeverAnswers) {
  SilentServer silent;
  detail::HttpClient client(detail::parse_url(url_of(silent.port())));
  auto deadline = std::chrono::steady_clock::now() + 200ms;
  try {
    client.post("/api/v1/events", "application/x-ndjson", "{}\n", {}, deadline);
    FAIL() << "no timeout";
  } catch (const detail::HttpError& e) {
    EXPECT_THAT(e.what(), HasSubstr("timed out"));
  }
  EXPECT_EQ(client.fd(), -1);
}

TEST(HttpClientTest, SaysWhenItCannotConnect) {
  detail::HttpClient client(detail::parse_url(url_of(free_port())));
  try {
    client.post("/x", "text/plain", "", {}, std::chrono::steady_clock::now() + kPatience);
    FAIL() << "connected to nothing";
  } catch (const detail::HttpError& e) {
    EXPECT_THAT(e.what(), HasSubstr("cannot connect to 127.0.0.1:"));
  }
}

// A GET whose body is streamed: a chunked answer the test releases piece by piece.
class StreamingServer {
 public:
  StreamingServer() {
    http_.Get("/stream", [this](const httplib::Request&, httplib::Response& res) {
      res.set_chunked_content_provider("text/plain", [this](std::size_t, httplib::DataSink& sink) {
        std::unique_lock lock(mutex_);
        if (!wake_.wait_for(lock, kPatience, [&] { return !pieces_.empty(); })) return false;
        std::string piece = std::move(pieces_.front());
        pieces_.erase(pieces_.begin());
        lock.unlock();
        if (piece == "<end>") {
          sink.done();
          return true;
        }
        if (piece == "<break>") return false;  // The connection is cut mid-body.
        return sink.write(piece.data(), piece.size());
      });
    });
    http_.Get("/secret", [](const httplib::Request&, httplib::Response& res) {
      res.status = 401;
      res.set_content(R"({"success":false,"error":"missing token"})", "application/json");
    });
    port_ = http_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { http_.listen_after_bind(); });
    EXPECT_TRUE(eventually([&] { return http_.is_running(); }));
  }
  ~StreamingServer() {
    send("<break>");
    http_.stop();
    thread_.join();
  }
  StreamingServer(const StreamingServer&) = delete;
  StreamingServer& operator=(const StreamingServer&) = delete;

  std::string url() const { return url_of(port_); }
  void send(std::string piece) {
    {
      std::lock_guard lock(mutex_);
      pieces_.push_back(std::move(piece));
    }
    wake_.notify_all();
  }

 private:
  httplib::Server http_;
  int port_ = 0;
  std::thread thread_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::vector<std::string> pieces_;
};

// Reads the stream until `want` bytes came (false if the body ended or the patience ran out).
bool read_until(detail::HttpClient& client, std::string& got, std::size_t want) {
  const auto give_up = std::chrono::steady_clock::now() + kPatience;
  while (got.size() < want && std::chrono::steady_clock::now() < give_up) {
    if (!client.read_stream(got, std::chrono::steady_clock::now() + 50ms)) return false;
  }
  return got.size() >= want;
}

TEST(HttpClientTest, StreamsAChunkedBodyAsItArrives) {
  StreamingServer server;
  detail::HttpClient client(detail::parse_url(server.url()));
  const detail::HttpClient::Header headers[] = {{"Accept", "text/event-stream"}};
  auto head = client.get_stream("/stream", headers, std::chrono::steady_clock::now() + kPatience);
  ASSERT_EQ(head.status, 200);
  EXPECT_EQ(head.header("transfer-encoding"), "chunked");
  EXPECT_EQ(head.body, "");
  std::string got;
  // Nothing sent yet: a short wait returns with nothing, the stream still open.
  EXPECT_TRUE(client.read_stream(got, std::chrono::steady_clock::now() + 20ms));
  EXPECT_EQ(got, "");
  server.send("first ");
  ASSERT_TRUE(read_until(client, got, 6)) << got;
  EXPECT_EQ(got, "first ");  // Before the second piece exists.
  server.send(std::string(40'000, 'x'));
  ASSERT_TRUE(read_until(client, got, 40'006));
  server.send("<end>");
  const auto give_up = std::chrono::steady_clock::now() + kPatience;
  bool open = true;
  while (open && std::chrono::steady_clock::now() < give_up) {
    open = client.read_stream(got, std::chrono::steady_clock::now() + 50ms);
  }
  EXPECT_FALSE(open) << "the end of the body was not seen";
  EXPECT_EQ(got, "first " + std::string(40'000, 'x'));
  EXPECT_EQ(client.fd(), -1);
}

TEST(HttpClientTest, AStreamCutMidBodyIsAnError) {
  StreamingServer server;
  detail::HttpClient client(detail::parse_url(server.url()));
  ASSERT_EQ(client.get_stream("/stream", {}, std::chrono::steady_clock::now() + kPatience).status,
            200);
  server.send("part");
  std::string got;
  ASSERT_TRUE(read_until(client, got, 4));
  server.send("<break>");
  try {
    while (client.read_stream(got, std::chrono::steady_clock::now() + kPatience)) {
    }
    FAIL() << "a cut stream ended as if complete";
  } catch (const detail::HttpError& e) {
    EXPECT_THAT(e.what(), HasSubstr("in the middle of the stream"));
  }
}

TEST(HttpClientTest, AStreamRefusedIsReadWholeAsAnAnswer) {
  StreamingServer server;
  detail::HttpClient client(detail::parse_url(server.url()));
  auto r = client.get_stream("/secret", {}, std::chrono::steady_clock::now() + kPatience);
  EXPECT_EQ(r.status, 401);
  EXPECT_EQ(r.body, R"({"success":false,"error":"missing token"})");
  EXPECT_EQ(client.fd(), -1);
}

// ---- Sending ---------------------------------------------------------------------------------

TEST(NetworkSinkTest, PostsJsonlLinesTheServerParsesBack) {
  test::TempDir dir;
  Receiver receiver;
  Events events;
  {
    NetworkSink sink(options_for(receiver.url(), dir.path() / "spool"));
    Field fields[] = {{"tokens", FieldValue{std::int64_t{1247}}}};
    Event e = events.make("load\nfile");
    e.kind = Kind::Stage;
    e.stage = "AGENT";
    e.status = Status::Completed;
    e.elapsed_ns = 13'200'000'000;
    e.fields = fields;
    sink.write(e);
    sink.flush();
    ASSERT_TRUE(sink.wait_sent(kPatience));
    EXPECT_EQ(sink.stats().sent, 1u);
    EXPECT_EQ(sink.stats().queued, 0u);
    std::string expected;
    detail::format_json(e, expected);
    expected.pop_back();  // The newline.
    ASSERT_THAT(receiver.lines(), ElementsAre(expected));
    auto parsed = parse_json_event(receiver.lines()[0]);
    ASSERT_TRUE(parsed);
    EXPECT_EQ(parsed->stage, "AGENT");
    EXPECT_EQ(parsed->message, "load\nfile");
    EXPECT_EQ(parsed->elapsed_ns, 13'200'000'000);
    EXPECT_EQ(receiver.requests()[0].content_type, "application/x-ndjson");
  }
  // Everything sent: the spool file is gone.
  EXPECT_FALSE(fs::exists(dir.path() / "spool"));
}

TEST(NetworkSinkTest, SendsTheTokenAsBearer) {
  test::TempDir dir;
  Receiver receiver;
  Events events;
  auto options = options_for(receiver.url(), dir.path() / "spool");
  options.token = "sl_ingest_s3cret";
  NetworkSink sink(options);
  sink.write(events.make("x"));
  ASSERT_TRUE(sink.wait_sent(kPatience));
  ASSERT_EQ(receiver.requests().size(), 1u);
  EXPECT_EQ(receiver.requests()[0].authorization, "Bearer sl_ingest_s3cret");
}

TEST(NetworkSinkTest, BatchesByCount) {
  test::TempDir dir;
  Receiver receiver;
  Events events;
  auto options = options_for(receiver.url(), dir.path() / "spool");
  options.flush_interval = std::chrono::hours(1);  // Only the count can send.
  NetworkSink sink(options);
  write_numbered(sink, events, "e", 0, 2500);
  ASSERT_TRUE(receiver.wait_for_lines(2000));
  sink.close();  // Sends the last 500, which the count alone never would.
  std::vector<std::size_t> sizes;
  for (const auto& r : receiver.requests()) sizes.push_back(r.lines.size());
  EXPECT_THAT(sizes, ElementsAre(1000u, 1000u, 500u));
  EXPECT_EQ(receiver.messages(), numbered("e", 0, 2500));
}

TEST(NetworkSinkTest, SendsAPartialBatchOnceTheIntervalPasses) {
  test::TempDir dir;
  Receiver receiver;
  Events events;
  auto options = options_for(receiver.url(), dir.path() / "spool");
  options.flush_interval = 50ms;
  NetworkSink sink(options);
  write_numbered(sink, events, "e", 0, 5);
  sink.flush();  // What the backend does when it runs out of work; no close, no wait_sent.
  ASSERT_TRUE(receiver.wait_for_lines(5));
  ASSERT_EQ(receiver.requests().size(), 1u);
  EXPECT_EQ(receiver.messages(), numbered("e", 0, 5));
}

TEST(NetworkSinkTest, SpoolsWhileTheServerIsDownAndDeliversAllInOrderWhenItComesUp) {
  test::TempDir dir;
  const int port = free_port();
  Reports reports;
  Events events;
  auto options = options_for(url_of(port), dir.path() / "spool");
  options.on_error = reports.fn();
  NetworkSink sink(options);
  write_numbered(sink, events, "e", 0, 3000);
  sink.flush();
  ASSERT_TRUE(eventually([&] { return sink.stats().failed_requests >= 2; }));
  EXPECT_EQ(sink.stats().sent, 0u);
  EXPECT_EQ(sink.stats().queued, 3000u);
  EXPECT_TRUE(reports.any_contains("cannot deliver to http://127.0.0.1:"));
  EXPECT_TRUE(reports.any_contains(dir.path().string()));

  Receiver receiver(port);
  ASSERT_TRUE(sink.wait_sent(kPatience));
  auto stats = sink.stats();
  EXPECT_EQ(stats.sent, 3000u);
  EXPECT_EQ(stats.spooled, 3000u);
  EXPECT_EQ(stats.dropped, 0u);
  EXPECT_EQ(receiver.messages(), numbered("e", 0, 3000));
  EXPECT_TRUE(reports.any_contains("reachable again"));
}

TEST(NetworkSinkTest, SurvivesAServerRestartWithNothingLostAndOrderKept) {
  test::TempDir dir;
  auto receiver = std::make_unique<Receiver>();
  const int port = receiver->port();
  Events events;
  NetworkSink sink(options_for(url_of(port), dir.path() / "spool"));
  write_numbered(sink, events, "e", 0, 400);
  ASSERT_TRUE(sink.wait_sent(kPatience));
  auto all = receiver->messages();
  receiver.reset();  // The server goes away mid-stream ...
  write_numbered(sink, events, "e", 400, 1200);
  sink.flush();
  ASSERT_TRUE(eventually([&] { return sink.stats().failed_requests >= 1; }));
  write_numbered(sink, events, "e", 1200, 1500);
  sink.flush();
  receiver = std::make_unique<Receiver>(port);  // ... and comes back on the same port.
  write_numbered(sink, events, "e", 1500, 2000);
  ASSERT_TRUE(sink.wait_sent(kPatience));
  auto after_restart = receiver->messages();
  all.insert(all.end(), after_restart.begin(), after_restart.end());
  EXPECT_EQ(all, numbered("e", 0, 2000));
  EXPECT_EQ(sink.stats().sent, 2000u);
  EXPECT_EQ(sink.stats().dropped, 0u);
}

TEST(NetworkSinkTest, DropsPastTheSpoolBoundCountsExactlyAndTellsTheServer) {
  test::TempDir dir;
  const int port = free_port();
  Reports reports;
  Events events;
  auto options = options_for(url_of(port), dir.path() / "spool");
  options.spool_max_bytes = 20'000;
  options.on_error = reports.fn();
  NetworkSink sink(options);
  // What fits: the longest prefix whose lines add up to at most the bound.
  std::uint64_t bytes = 0;
  int fits = -1;
  Events sizing;
  for (int i = 0; i < 300; ++i) {
    std::string line;
    detail::format_json(sizing.make("e" + std::to_string(i)), line);
    bytes += line.size();
    if (bytes > options.spool_max_bytes && fits < 0) fits = i;
  }
  ASSERT_GT(fits, 10);
  ASSERT_LT(fits, 300);
  write_numbered(sink, events, "e", 0, 300);
  sink.flush();
  const auto dropped = static_cast<std::uint64_t>(300 - fits);
  EXPECT_EQ(sink.stats().dropped, dropped);
  EXPECT_EQ(sink.stats().queued, static_cast<std::uint64_t>(fits));

  Receiver receiver(port);
  ASSERT_TRUE(receiver.wait_for_lines(static_cast<std::size_t>(fits) + 1));
  write_numbered(sink, events, "after", 0, 3);  // Room again: these are kept.
  ASSERT_TRUE(sink.wait_sent(kPatience));

  const std::string drop_message = "network sink dropped " + std::to_string(dropped) +
                                   " events (spool full: " + (dir.path() / "spool").string() +
                                   ", 20000 bytes)";
  auto expected = numbered("e", 0, fits);
  expected.push_back(drop_message);
  for (auto& m : numbered("after", 0, 3)) expected.push_back(m);
  EXPECT_EQ(receiver.messages(), expected);
  auto lines = receiver.lines();
  auto note = parse_json_event(lines[static_cast<std::size_t>(fits)]);
  ASSERT_TRUE(note);
  EXPECT_EQ(note->level, Level::Warning);
  EXPECT_EQ(note->component, "stagelog");
  ASSERT_NE(note->field("dropped"), nullptr);
  EXPECT_EQ(std::get<std::int64_t>(*note->field("dropped")), static_cast<std::int64_t>(dropped));
  EXPECT_EQ(sink.stats().dropped, dropped);
  EXPECT_TRUE(reports.any_contains(drop_message));
}

TEST(NetworkSinkTest, ARejectedBatchIsCountedAndNotRetried) {
  test::TempDir dir;
  Receiver receiver;
  receiver.set_policy([](const Received& r) {
    if (r.lines.size() == 10) {
      return Reply{400, R"({"accepted":0,"rejected":[{"line":1,"error":"unknown status"}]})"};
    }
    return Reply{};
  });
  Reports reports;
  Events events;
  auto options = options_for(receiver.url(), dir.path() / "spool");
  options.on_error = reports.fn();
  NetworkSink sink(options);
  write_numbered(sink, events, "bad", 0, 10);
  ASSERT_TRUE(sink.wait_sent(kPatience));
  EXPECT_EQ(sink.stats().rejected, 10u);
  EXPECT_EQ(sink.stats().sent, 0u);
  EXPECT_EQ(receiver.requests().size(), 1u);
  EXPECT_TRUE(reports.any_contains("rejected 10 of 10 events: HTTP 400"));
  EXPECT_TRUE(reports.any_contains("line 1: unknown status"));
  // The sink goes on with what follows.
  write_numbered(sink, events, "good", 0, 3);
  ASSERT_TRUE(sink.wait_sent(kPatience));
  EXPECT_EQ(receiver.messages(), numbered("good", 0, 3));
  EXPECT_EQ(receiver.requests().size(), 2u);
}

TEST(NetworkSinkTest, CountsLinesRejectedInAnOkChunkedAnswer) {
  test::TempDir dir;
  Receiver receiver;
  receiver.set_policy([](const Received& r) {
    std::string body =
        R"({"accepted":)" + std::to_string(r.lines.size() - 2) +
        R"(,"rejected":[{"line":2,"error":"invalid UTF-8"},{"line":4,"error":"x"}]})";
    return Reply{200, body, true};
  });
  Reports reports;
  Events events;
  auto options = options_for(receiver.url(), dir.path() / "spool");
  options.on_error = reports.fn();
  NetworkSink sink(options);
  write_numbered(sink, events, "e", 0, 6);
  ASSERT_TRUE(sink.wait_sent(kPatience));
  EXPECT_EQ(sink.stats().sent, 4u);
  EXPECT_EQ(sink.stats().rejected, 2u);
  EXPECT_EQ(receiver.requests().size(), 1u);
  EXPECT_TRUE(reports.any_contains("rejected 2 of 6 events: line 2: invalid UTF-8; line 4: x"));
}

TEST(NetworkSinkTest, RetriesOnServiceUnavailableAndTooManyRequests) {
  test::TempDir dir;
  Receiver receiver;
  std::atomic<int> calls{0};
  receiver.set_policy([&](const Received&) {
    int n = calls++;
    if (n == 0) return Reply{503, "busy"};
    if (n == 1) return Reply{429, "slow down"};
    if (n == 2) return Reply{408, ""};
    return Reply{};
  });
  Events events;
  NetworkSink sink(options_for(receiver.url(), dir.path() / "spool"));
  write_numbered(sink, events, "e", 0, 7);
  ASSERT_TRUE(sink.wait_sent(kPatience));
  EXPECT_EQ(sink.stats().failed_requests, 3u);
  EXPECT_EQ(sink.stats().sent, 7u);
  EXPECT_EQ(receiver.messages(), numbered("e", 0, 7));
}

TEST(NetworkSinkTest, HalvesABatchTheServerFindsTooLarge) {
  test::TempDir dir;
  Receiver receiver;
  receiver.set_policy([](const Received& r) {
    return r.lines.size() > 3 ? Reply{413, "too large"} : Reply{};
  });
  Events events;
  NetworkSink sink(options_for(receiver.url(), dir.path() / "spool"));
  write_numbered(sink, events, "e", 0, 20);
  ASSERT_TRUE(sink.wait_sent(kPatience));
  EXPECT_EQ(sink.stats().sent, 20u);
  EXPECT_EQ(sink.stats().rejected, 0u);
  EXPECT_EQ(receiver.messages(), numbered("e", 0, 20));
}

TEST(NetworkSinkTest, TimesOutOnASilentServerThenRetries) {
  test::TempDir dir;
  auto silent = std::make_unique<SilentServer>();
  const int port = silent->port();
  Reports reports;
  Events events;
  auto options = options_for(url_of(port), dir.path() / "spool");
  options.request_timeout = 200ms;
  options.on_error = reports.fn();
  NetworkSink sink(options);
  write_numbered(sink, events, "e", 0, 3);
  sink.flush();
  ASSERT_TRUE(eventually([&] { return sink.stats().failed_requests >= 2; }));
  EXPECT_TRUE(reports.any_contains("timed out"));
  silent.reset();
  Receiver receiver(port);
  ASSERT_TRUE(sink.wait_sent(kPatience));
  EXPECT_EQ(receiver.messages(), numbered("e", 0, 3));
}

// ---- With a recorder -------------------------------------------------------------------------

TEST(NetworkSinkTest, ReportsTroubleThroughTheRecordersErrorHandler) {
  test::TempDir dir;
  std::mutex mu;
  std::vector<std::string> errors;
  Options options;
  options.watchdog = std::nullopt;
  options.install_crash_handlers = false;
  options.on_error = [&](std::string_view m) {
    std::lock_guard lock(mu);
    errors.emplace_back(m);
  };
  const int port = free_port();
  Recorder recorder(options);
  auto sink_options = options_for(url_of(port), dir.path() / "spool");
  sink_options.on_error = nullptr;  // Reports go through the recorder.
  auto sink = std::make_shared<NetworkSink>(sink_options);
  recorder.add_sink(sink);
  recorder.logger().info("hello");
  recorder.flush();
  EXPECT_TRUE(eventually([&] {
    std::lock_guard lock(mu);
    for (const auto& e : errors) {
      if (e.find("cannot deliver to " + url_of(port)) != std::string::npos) return true;
    }
    return false;
  }));
  Receiver receiver(port);
  ASSERT_TRUE(sink->wait_sent(kPatience));
  EXPECT_THAT(receiver.messages(), ElementsAre("hello"));
}

// ---- From the environment --------------------------------------------------------------------

TEST(NetworkSinkEnvTest, NoServerMeansNoSink) {
  {
    ScopedEnv server("STAGELOG_SERVER", nullptr);
    EXPECT_EQ(network_sink_from_env(), nullptr);
  }
  ScopedEnv server("STAGELOG_SERVER", "");
  EXPECT_EQ(network_sink_from_env(), nullptr);
}

TEST(NetworkSinkEnvTest, AMalformedServerNamesTheVariableAndValue) {
  ScopedEnv server("STAGELOG_SERVER", "localhost:8080");
  try {
    network_sink_from_env();
    FAIL() << "accepted";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("STAGELOG_SERVER=localhost:8080"));
  }
}

TEST(NetworkSinkEnvTest, ACaFileWithAnHttpServerIsAnError) {
  ScopedEnv server("STAGELOG_SERVER", "http://logs.example.com");
  ScopedEnv ca("STAGELOG_CA_FILE", "/etc/ssl/certs/ca-certificates.crt");
  try {
    network_sink_from_env();
    FAIL() << "accepted";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("STAGELOG_CA_FILE needs an https:// STAGELOG_SERVER"));
  }
}

TEST(NetworkSinkEnvTest, AnUnreadableCaFileIsAnError) {
  test::TempDir dir;
  ScopedEnv server("STAGELOG_SERVER", "https://127.0.0.1:1");
  ScopedEnv ca("STAGELOG_CA_FILE", (dir.path() / "no-such-ca.pem").c_str());
  ScopedEnv spool("STAGELOG_SPOOL", (dir.path() / "env.spool").c_str());
  try {
    network_sink_from_env();
    FAIL() << "accepted";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(),
                HasSubstr("cannot read the CA file " + (dir.path() / "no-such-ca.pem").string() +
                          ": No such file or directory"));
  }
}

TEST(NetworkSinkTest, ACaFileWithAnHttpUrlIsAnError) {
  NetworkSinkOptions o;
  o.url = "http://127.0.0.1:1";
  o.ca_file = "/etc/ssl/certs/ca-certificates.crt";
  try {
    NetworkSink sink(o);
    FAIL() << "accepted";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("ca_file needs an https:// server URL"));
  }
}

TEST(NetworkSinkEnvTest, UsesServerTokenAndSpool) {
  test::TempDir dir;
  Receiver receiver;
  ScopedEnv server("STAGELOG_SERVER", receiver.url().c_str());
  ScopedEnv token("STAGELOG_TOKEN", "tok123");
  ScopedEnv spool("STAGELOG_SPOOL", (dir.path() / "env.spool").c_str());
  auto sink = network_sink_from_env();
  ASSERT_NE(sink, nullptr);
  EXPECT_EQ(sink->url(), receiver.url());
  EXPECT_EQ(sink->spool_path(), dir.path() / "env.spool");
  Events events;
  sink->write(events.make("x"));
  ASSERT_TRUE(sink->wait_sent(kPatience));
  ASSERT_EQ(receiver.requests().size(), 1u);
  EXPECT_EQ(receiver.requests()[0].authorization, "Bearer tok123");
}

TEST(NetworkSinkEnvTest, DefaultSpoolPathIsPerServerUnderTheStateDir) {
  ScopedEnv state("XDG_STATE_HOME", "/var/state");
  EXPECT_EQ(default_spool_path("http://logs.example.com:8080"),
            fs::path("/var/state/stagelog/spool/logs.example.com_8080.spool"));
  // The scheme is part of the name: http and https to one host:port are two servers.
  EXPECT_EQ(default_spool_path("https://logs.example.com:8080"),
            fs::path("/var/state/stagelog/spool/https_logs.example.com_8080.spool"));
  EXPECT_EQ(default_spool_path("https://[::1]"),
            fs::path("/var/state/stagelog/spool/https___1_443.spool"));
  EXPECT_THROW(default_spool_path("ftp://x"), Error);
}

TEST(NetworkSinkEnvTest, SetupWorkerLoggingAddsTheNetworkSinkWhenTheServerIsSet) {
  test::TempDir dir;
  Receiver receiver;
  {
    ScopedEnv server("STAGELOG_SERVER", receiver.url().c_str());
    ScopedEnv spool("STAGELOG_SPOOL", (dir.path() / "worker.spool").c_str());
    Options options;
    options.watchdog = std::nullopt;
    options.install_crash_handlers = false;
    Recorder recorder(options);
    setup_worker_logging(recorder, dir.path() / "logs", "3");
    recorder.logger().info("hello from rank 3");
  }  // The recorder's destructor closes the sink, which delivers.
  auto lines = receiver.lines();
  ASSERT_EQ(lines.size(), 2u);
  auto event = parse_json_event(lines[0]);
  ASSERT_TRUE(event);
  EXPECT_EQ(event->message, "hello from rank 3");
  EXPECT_EQ(event->worker, "3");
  // Then the recorder's close, which tells the server's watchdog the worker is done.
  auto closed = parse_json_event(lines[1]);
  ASSERT_TRUE(closed);
  EXPECT_TRUE(is_recorder_closed(closed->view()));
  EXPECT_EQ(closed->worker, "3");
}

TEST(NetworkSinkEnvTest, SetupWorkerLoggingRefusesABadServer) {
  test::TempDir dir;
  ScopedEnv server("STAGELOG_SERVER", "http://bad host");
  Options options;
  options.watchdog = std::nullopt;
  options.install_crash_handlers = false;
  Recorder recorder(options);
  EXPECT_THROW(setup_worker_logging(recorder, dir.path() / "logs", "3"), Error);
}

}  // namespace
}  // namespace stagelog
