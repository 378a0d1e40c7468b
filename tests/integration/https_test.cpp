// https end to end: a real `stagelog serve` behind a TLS-terminating proxy (tls_server.hpp)
// whose certificate a throwaway CA made at test time signed. The network sink delivers over it
// with that CA; with another CA, or a certificate for another host, the handshake is refused
// with a clear reason and the events wait in the spool; `stagelog tail --server https://...
// --ca-file` reads the event stream through it. Every wait is bounded; none asserts on timing.

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "base/time.hpp"
#include "events.hpp"
#include "eventually.hpp"
#include "ndjson_receiver.hpp"
#include "net/http_client.hpp"
#include "network_sink_harness.hpp"
#include "serve_process.hpp"
#include "server/alerts.hpp"
#include "stagelog/error.hpp"
#include "stagelog/server/alerts.hpp"
#include "stagelog/sinks/network_sink.hpp"
#include "store/sqlite_store.hpp"
#include "tail_process.hpp"
#include "temp_dir.hpp"
#include "tls_server.hpp"

namespace stagelog::test {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;
namespace fs = std::filesystem;

constexpr auto kPatience = 30s;  // Upper bound on any wait; a passing test takes far less.

// The reports, one a line.
std::string text_of(Reports& reports) {
  std::string out;
  for (const std::string& m : reports.all()) out += m + "\n";
  return out;
}

NetworkSinkOptions sink_options(const std::string& url, const std::string& token,
                                const fs::path& ca_file, const fs::path& spool,
                                const std::function<void(std::string_view)>& on_error) {
  NetworkSinkOptions o = options_for(url, spool);
  o.token = token;
  o.ca_file = ca_file.string();
  o.batch_events = 50;  // Several requests on the kept-alive TLS connection.
  o.shutdown_timeout = 200ms;
  o.on_error = on_error;
  return o;
}

// Events "m0".."m<n-1>" of `run`, written straight to the sink.
void write_events(NetworkSink& sink, const std::string& run, int n) {
  const std::int64_t ts = detail::realtime_ns();
  for (int i = 0; i < n; ++i) {
    std::string message = "m" + std::to_string(i);
    Event e = stage_event("work", Status::Completed, std::nullopt, message, ts + i);
    e.run = run;
    sink.write(e);
  }
  sink.flush();
}

// The distinct messages `stagelog serve` stored for a run, read once it has exited.
std::set<std::string> stored_messages(const fs::path& data, const std::string& run) {
  store::SqliteStore store(data / "stagelog.db");
  const std::vector<OwnedEvent> events =
      store.events(run, detail::realtime_ns(), 1'000'000).value();
  std::set<std::string> out;
  for (const OwnedEvent& e : events) out.insert(e.message);
  return out;
}

std::set<std::string> expected_messages(int n) {
  std::set<std::string> out;
  for (int i = 0; i < n; ++i) out.insert("m" + std::to_string(i));
  return out;
}

// A `stagelog serve` on a free port and a TLS proxy in front of it.
struct HttpsServer {
  explicit HttpsServer(const fs::path& dir) : certs(dir / "pki"), serve(dir / "data") {
    if (!serve.wait_until_listening()) throw std::runtime_error("stagelog serve did not start");
    proxy.emplace(certs, serve.port);
  }

  TestCertificates certs;
  ServeProcess serve;
  std::optional<TlsProxy> proxy;
};

TEST(HttpsTest, NetworkSinkDeliversEveryEventWithTheCaFile) {
  TempDir dir;
  HttpsServer server(dir.path());
  ASSERT_FALSE(server.serve.token.empty());
  constexpr int kEvents = 500;
  Reports reports;
  {
    NetworkSink sink(sink_options(server.proxy->url(), server.serve.token, server.certs.ca_file,
                                  dir.path() / "sink.spool", reports.fn()));
    EXPECT_EQ(sink.url(), server.proxy->url());
    write_events(sink, "tls-run", kEvents);
    ASSERT_TRUE(sink.wait_sent(kPatience)) << text_of(reports);
    EXPECT_EQ(sink.stats().sent, static_cast<std::uint64_t>(kEvents));
    EXPECT_EQ(sink.stats().failed_requests, 0u) << text_of(reports);
  }
  EXPECT_GE(server.proxy->handshakes_done(), 1);
  EXPECT_EQ(server.proxy->handshakes_failed(), 0);
  server.proxy.reset();
  ASSERT_EQ(server.serve.terminate(), 0);
  EXPECT_EQ(stored_messages(dir.path() / "data", "tls-run"), expected_messages(kEvents));
}

TEST(HttpsTest, AnotherCaIsRefusedAndTheEventsWaitInTheSpool) {
  TempDir dir;
  HttpsServer server(dir.path());
  TestCertificates other(dir.path() / "other-pki");
  const fs::path spool = dir.path() / "sink.spool";
  constexpr int kEvents = 120;
  {
    Reports reports;
    NetworkSink sink(
        sink_options(server.proxy->url(), server.serve.token, other.ca_file, spool, reports.fn()));
    write_events(sink, "kept-run", kEvents);
    ASSERT_TRUE(eventually([&] { return sink.stats().failed_requests > 0; }, kPatience));
    ASSERT_TRUE(eventually([&] { return !text_of(reports).empty(); }, kPatience));
    EXPECT_THAT(text_of(reports), HasSubstr("cannot deliver to " + server.proxy->url()));
    EXPECT_THAT(text_of(reports), HasSubstr("TLS handshake with 127.0.0.1:" +
                                            std::to_string(server.proxy->port()) + " failed"));
    EXPECT_THAT(text_of(reports), HasSubstr("certificate verify failed: "));
    EXPECT_EQ(sink.stats().sent, 0u);
    EXPECT_EQ(sink.stats().queued, static_cast<std::uint64_t>(kEvents));
  }  // Closed undelivered: the events stay in the spool file.
  EXPECT_GE(server.proxy->handshakes_failed(), 1);

  // The next sink on that spool, with the right CA, delivers every one of them.
  Reports reports;
  {
    NetworkSink sink(sink_options(server.proxy->url(), server.serve.token, server.certs.ca_file,
                                  spool, reports.fn()));
    EXPECT_EQ(sink.stats().replayed, static_cast<std::uint64_t>(kEvents));
    ASSERT_TRUE(sink.wait_sent(kPatience)) << text_of(reports);
  }
  server.proxy.reset();
  ASSERT_EQ(server.serve.terminate(), 0);
  EXPECT_EQ(stored_messages(dir.path() / "data", "kept-run"), expected_messages(kEvents));
}

// The client side alone (HttpClient, as the sink, tail and webhooks use it): a certificate
// signed by the trusted CA but for other names is refused, for an IP address and for a name.
TEST(HttpsTest, ACertificateForAnotherHostIsRefused) {
  TempDir dir;
  TestCertificates elsewhere(dir.path() / "pki", "DNS:elsewhere.example,IP:10.9.8.7");
  TlsProxy proxy(elsewhere, /*backend_port=*/0);
  auto tls = std::make_shared<const detail::TlsConfig>(elsewhere.ca_file.string());
  for (const std::string host : {"127.0.0.1", "localhost"}) {
    std::string url = "https://" + host + ":" + std::to_string(proxy.port());
    detail::HttpClient client(detail::parse_url(url), tls);
    try {
      client.post("/api/v1/events", "application/x-ndjson", "{}\n", {},
                  std::chrono::steady_clock::now() + kPatience);
      ADD_FAILURE() << url << ": accepted";
    } catch (const detail::HttpError& e) {
      EXPECT_THAT(e.what(), HasSubstr("certificate verify failed: " +
                                      std::string(host == "localhost" ? "hostname mismatch"
                                                                      : "IP address mismatch")))
          << url;
    }
  }
  EXPECT_EQ(proxy.handshakes_done(), 0);
}

// Other handshake failures name the peer: a plain HTTP server (it answers the ClientHello
// with HTTP, or closes), and a port that never answers, given up at the deadline.
TEST(HttpsTest, AHandshakeThatFailsOrNeverEndsNamesThePeer) {
  TempDir dir;
  TestCertificates certs(dir.path() / "pki");
  auto tls = std::make_shared<const detail::TlsConfig>(certs.ca_file.string());
  Receiver plain;
  SilentServer silent;
  for (int port : {plain.port(), silent.port()}) {
    const std::string peer = "127.0.0.1:" + std::to_string(port);
    detail::HttpClient client(detail::parse_url("https://" + peer), tls);
    try {
      client.post("/api/v1/events", "application/x-ndjson", "{}\n", {},
                  std::chrono::steady_clock::now() + 500ms);
      ADD_FAILURE() << peer << ": accepted";
    } catch (const detail::HttpError& e) {
      EXPECT_THAT(e.what(), HasSubstr("TLS handshake with " + peer + " failed: "));
      if (port == silent.port()) {
        EXPECT_THAT(e.what(), HasSubstr("failed: timed out"));
      }
    }
    EXPECT_EQ(client.fd(), -1);
  }
}

// A server gone in the middle of a request: an error to the caller, never SIGPIPE (which, not
// ignored in this process, would kill it).
TEST(HttpsTest, AServerThatClosesAfterTheHandshakeIsAnErrorNotASignal) {
  TempDir dir;
  TestCertificates certs(dir.path() / "pki");
  TlsProxy closes(certs, /*backend_port=*/0);
  detail::HttpClient client(detail::parse_url(closes.url()),
                            std::make_shared<const detail::TlsConfig>(certs.ca_file.string()));
  const std::string body(8 << 20, 'x');  // More than the socket buffers: a write meets the close.
  EXPECT_THROW(
      client.post("/x", "text/plain", body, {}, std::chrono::steady_clock::now() + kPatience),
      detail::HttpError);
  EXPECT_GE(closes.handshakes_done(), 1);
}

TEST(HttpsTest, TailReadsTheStreamOverHttpsWithTheCaFile) {
  TempDir dir;
  HttpsServer server(dir.path());
  const std::string token = server.serve.token;
  ASSERT_FALSE(token.empty());
  std::ofstream(dir.path() / "token") << token << "\n";
  // Posted over plain HTTP straight to the server; tail reads them through the TLS proxy.
  auto post = [&](const std::string& body) {
    detail::HttpClient client(
        detail::parse_url("http://127.0.0.1:" + std::to_string(server.serve.port)));
    const std::string bearer = "Bearer " + token;
    const detail::HttpClient::Header headers[] = {{"Authorization", bearer}};
    auto r = client.post("/api/v1/events", "application/x-ndjson", body, headers,
                         std::chrono::steady_clock::now() + kPatience);
    ASSERT_EQ(r.status, 200) << r.body;
  };
  auto line = [](std::string_view worker, std::string_view stage) {
    return ndjson_line({.run = "tail-run",
                        .stage = stage,
                        .status = "starting",
                        .ts_ns = detail::realtime_ns(),
                        .worker = worker}) +
           "\n";
  };
  post(line("w1", "FETCH"));

  Tail tail({"--plain", "--stuck-stage", "1h", "--server", server.proxy->url(), "--ca-file",
             server.certs.ca_file.string(), "--token-file", (dir.path() / "token").string()},
            false, /*with_stderr=*/true);
  ASSERT_TRUE(tail.wait_for("[w1] running (stage FETCH)")) << tail.output();
  post(line("w2", "LOAD"));
  ASSERT_TRUE(tail.wait_for("[w2] running (stage LOAD)")) << tail.output();
  tail.signal(SIGTERM);
  int status = tail.wait_exit();
  ASSERT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), 0) << tail.output();
  EXPECT_GE(server.proxy->handshakes_done(), 1);
}

TEST(HttpsTest, TailWithAnotherCaSaysWhyAndExits) {
  TempDir dir;
  HttpsServer server(dir.path());
  TestCertificates other(dir.path() / "other-pki");
  Tail tail({"--plain", "--server", server.proxy->url(), "--ca-file", other.ca_file.string()},
            false, /*with_stderr=*/true);
  int status = tail.wait_exit();
  ASSERT_TRUE(WIFEXITED(status)) << status;
  EXPECT_NE(WEXITSTATUS(status), 0);
  EXPECT_THAT(tail.output(), HasSubstr("certificate verify failed: "));
  EXPECT_THAT(tail.output(), HasSubstr("(--server " + server.proxy->url() + ")"));
}

// The server's alert webhooks go through the same client: an https webhook with its
// ca_file gets the alert; one whose CA is another is refused, and the give-up says why.
TEST(HttpsTest, AlertWebhooksPostOverHttpsWithTheirCaFile) {
  TempDir dir;
  TestCertificates certs(dir.path() / "pki");
  TestCertificates other(dir.path() / "other-pki");
  Receiver receiver(0, kPatience, "/hook");
  TlsProxy proxy(certs, receiver.port());
  server::AlertConfig config = server::parse_alert_config(
      R"({"webhooks": [{"name": "ops", "url": ")" + proxy.url() + R"(/hook", "ca_file": ")" +
      certs.ca_file.string() + R"("}, {"name": "wrong", "url": ")" + proxy.url() +
      R"(/hook", "ca_file": ")" + other.ca_file.string() +
      R"("}], "rules": [{"name": "judge", "type": "repeated_failures", "stage": "JUDGE",
          "count": 1}], "retry": {"attempts": 1}})");
  store::SqliteStore store(dir.path() / "alerts.db");
  std::mutex mu;
  std::vector<std::string> errors;
  detail::AlertEngine engine(std::move(config), store,
                             {[] { return detail::realtime_ns(); },
                              [&](std::string_view m) {
                                std::lock_guard lock(mu);
                                errors.emplace_back(m);
                              },
                              nullptr, nullptr});
  const OwnedEvent failed =
      run_event("job-1", Kind::Stage, Status::Failed, detail::realtime_ns(), "JUDGE");
  engine.observe(std::span<const OwnedEvent>(&failed, 1));

  ASSERT_TRUE(receiver.wait_for_requests(1));
  const Received got = receiver.requests().at(0);
  EXPECT_THAT(got.lines.at(0), HasSubstr(R"("rule":"judge")"));
  EXPECT_FALSE(got.header("X-Stagelog-Alert-Id").empty());
  ASSERT_TRUE(eventually(
      [&] {
        std::lock_guard lock(mu);
        return !errors.empty();
      },
      kPatience));
  std::lock_guard lock(mu);
  EXPECT_THAT(errors.at(0), HasSubstr("to webhook wrong: gave up after 1 attempts"));
  EXPECT_THAT(errors.at(0), HasSubstr("certificate verify failed: "));
  EXPECT_EQ(receiver.requests().size(), 1u);
}

}  // namespace
}  // namespace stagelog::test
