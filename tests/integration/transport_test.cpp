// The server's HTTP transport against clients that misbehave or come in numbers: thousands of
// keep-alive connections, slowloris sockets, header floods, bodies that lie about their length
// or are damaged, the connection cap, the in-flight budget, gzip answers and HTTPS. Real sockets
// to a real Server on 127.0.0.1; every wait is bounded.

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <sys/resource.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "events.hpp"
#include "fake_clock.hpp"
#include "raw_connection.hpp"
#include "server/body_coding.hpp"
#include "stagelog/error.hpp"
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

class TransportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store_ = std::make_unique<store::SqliteStore>(dir_.path() / "stagelog.db");
    tokens_path_ = dir_.path() / "tokens";
    admin_ = server::TokenFile::create_token(tokens_path_, server::Scope::Admin, "admin");
  }
  void TearDown() override {
    if (server_) server_->stop();
  }

  ServerOptions options() {
    ServerOptions o;
    o.clock = clock_.fn();
    o.threads = 2;
    o.read_timeout = 1s;
    o.keep_alive_timeout = 2s;
    o.on_error = [](std::string_view) {};
    o.watchdog.check_processes = false;
    return o;
  }
  void start(ServerOptions o) {
    server_ =
        std::make_unique<Server>(*store_, server::TokenFile::load(tokens_path_), std::move(o));
    server_->start();
  }
  void start() { start(options()); }

  std::unique_ptr<httplib::Client> client() const {
    auto c = std::make_unique<httplib::Client>("127.0.0.1", server_->port());
    c->set_read_timeout(10, 0);
    c->set_write_timeout(10, 0);
    return c;
  }
  httplib::Headers auth() const { return {{"Authorization", "Bearer " + admin_}}; }

  // n events of run `run`, as NDJSON.
  std::string events(const std::string& run, int n) const {
    std::string body;
    for (int i = 0; i < n; ++i) {
      body += ndjson_line({.run = run,
                           .kind = "log",
                           .ts_ns = clock_.now() + i,
                           .message = "event number " + std::to_string(i)}) +
              "\n";
    }
    return body;
  }
  std::size_t stored(const std::string& run) {
    auto got = store_->events(run, clock_.now(), 1'000'000);
    EXPECT_TRUE(got) << got.error().what();
    return got ? got->size() : 0;
  }
  // A POST of /api/v1/events with these extra header lines, Content-Length given by the caller.
  std::string post_head(const std::string& extra) const {
    return "POST /api/v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + admin_ +
           "\r\nContent-Type: application/x-ndjson\r\n" + extra + "\r\n";
  }

  TempDir dir_;
  FakeClock clock_;
  std::unique_ptr<store::SqliteStore> store_;
  std::filesystem::path tokens_path_;
  std::string admin_;
  std::unique_ptr<Server> server_;
};

// ---- Many connections, slow ones -------------------------------------------------------------

TEST_F(TransportTest, ThousandsOfConnectionsAndSlowlorisSocketsDoNotHoldUpAReader) {
  rlimit limit{};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &limit), 0);
  if (limit.rlim_max < 5000) GTEST_SKIP() << "needs 5000 open files, the hard limit is lower";
  ServerOptions o = options();
  o.read_timeout = 1s;
  o.keep_alive_timeout = 30s;  // The idle ones stay for the whole test.
  start(o);                    // The server raises the soft limit to the hard one.
  auto c = client();
  ASSERT_EQ(c->Post("/api/v1/events", auth(), events("job-1", 3), "application/x-ndjson")->status,
            200);

  constexpr int kConnections = 2000;
  constexpr int kSlow = 64;
  std::vector<std::unique_ptr<RawConnection>> held;
  for (int i = 0; i < kConnections; ++i) {
    held.push_back(std::make_unique<RawConnection>(server_->port()));
    ASSERT_TRUE(held.back()->connected()) << "connection " << i;
  }
  // Every fourth one is active: a request answered, then kept alive and idle.
  for (int i = 0; i < kConnections; i += 4) {
    ASSERT_TRUE(held[i]->send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"));
  }
  for (int i = 0; i < kConnections; i += 4) {
    ASSERT_THAT(held[i]->answer(), StartsWith("HTTP/1.1 200")) << "connection " << i;
  }
  std::vector<std::unique_ptr<RawConnection>> slow;
  for (int i = 0; i < kSlow; ++i) {
    slow.push_back(std::make_unique<RawConnection>(server_->port()));
    ASSERT_TRUE(slow.back()->send("GET /api/v1/executions HTTP/1.1\r\nHost: x\r\n"));
  }
  // A normal authenticated read still answers while all of them are held.
  auto read = c->Get("/api/v1/executions/job-1/events", auth());
  ASSERT_TRUE(read);
  EXPECT_EQ(read->status, 200);
  EXPECT_EQ(Json::parse(read->body)["events"].size(), 3u);
  // The slow sockets are closed by their deadline (read_timeout for the request's headers)
  // while they send one header line after another.
  for (int round = 0; round < 3; ++round) {
    for (auto& s : slow) s->send("X-Slow: " + std::to_string(round) + "\r\n");
  }
  for (int i = 0; i < kSlow; ++i) EXPECT_TRUE(slow[i]->closed_within(10s)) << "slow socket " << i;
  // The idle keep-alive ones are still open and served.
  ASSERT_TRUE(held[4]->send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"));
  EXPECT_THAT(held[4]->answer(), StartsWith("HTTP/1.1 200"));
}

TEST_F(TransportTest, ConnectionsPastTheCapAreAnswered503AndRetryAfter) {
  ServerOptions o = options();
  o.max_connections = 4;
  start(o);
  std::vector<std::unique_ptr<RawConnection>> held;
  for (int i = 0; i < 4; ++i) {
    held.push_back(std::make_unique<RawConnection>(server_->port()));
    ASSERT_TRUE(held.back()->send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"));
    ASSERT_THAT(held.back()->answer(), StartsWith("HTTP/1.1 200"));  // Accepted and counted.
  }
  RawConnection fifth(server_->port());
  fifth.send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
  std::string answer = fifth.answer();
  EXPECT_THAT(answer, StartsWith("HTTP/1.1 503"));
  EXPECT_THAT(answer, HasSubstr("Retry-After: 1\r\n"));
  EXPECT_THAT(answer, HasSubstr("too many connections (at most 4"));
  EXPECT_TRUE(fifth.closed_within(10s));
  // One leaves: a new one is served.
  held.pop_back();
  bool served = false;
  for (int i = 0; i < 200 && !served; ++i) {
    RawConnection again(server_->port());
    again.send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    served = again.answer().starts_with("HTTP/1.1 200");
    if (!served) std::this_thread::sleep_for(10ms);
  }
  EXPECT_TRUE(served);
}

// ---- Headers ---------------------------------------------------------------------------------

TEST_F(TransportTest, HeaderFloodsAre431AndTheServerStaysUp) {
  ServerOptions o = options();
  o.max_header_bytes = 4096;
  o.max_header_fields = 20;
  start(o);
  {
    RawConnection big(server_->port());
    big.send("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(8000, 'a') + "\r\n\r\n");
    std::string answer = big.answer();
    EXPECT_THAT(answer, StartsWith("HTTP/1.1 431"));
    EXPECT_THAT(answer, HasSubstr("over the limit of 4096 bytes"));
  }
  {
    RawConnection many(server_->port());
    std::string request = "GET /healthz HTTP/1.1\r\nHost: x\r\n";
    for (int i = 0; i < 30; ++i) request += "X-F" + std::to_string(i) + ": 1\r\n";
    many.send(request + "\r\n");
    std::string answer = many.answer();
    EXPECT_THAT(answer, StartsWith("HTTP/1.1 431"));
    EXPECT_THAT(answer, HasSubstr("more than 20 header fields"));
  }
  EXPECT_EQ(client()->Get("/healthz")->status, 200);
}

TEST_F(TransportTest, AContentLengthThatIsNotANumberIsAnImmediate400) {
  start();
  for (std::string length : {"-1", "abc", "12x", "99999999999999999999999"}) {
    RawConnection c(server_->port());
    c.send(post_head("Content-Length: " + length + "\r\n"));  // And no body: none is awaited.
    std::string answer = c.answer(5s);
    EXPECT_THAT(answer, StartsWith("HTTP/1.1 400")) << "Content-Length: " << length;
    EXPECT_TRUE(c.closed_within(5s)) << "Content-Length: " << length;
  }
  EXPECT_EQ(client()->Get("/healthz")->status, 200);
}

TEST_F(TransportTest, ABodyOverTheLimitIs413BeforeItIsSent) {
  ServerOptions o = options();
  o.max_body_bytes = 1024;
  start(o);
  RawConnection c(server_->port());
  c.send(post_head("Content-Length: 100000000\r\n"));  // 100 MB announced, none sent.
  std::string answer = c.answer(5s);
  EXPECT_THAT(answer, StartsWith("HTTP/1.1 413"));
  EXPECT_THAT(answer, HasSubstr("over the limit of 1024 bytes"));
}

TEST_F(TransportTest, ExpectContinueIsAnsweredBeforeTheBody) {
  start();
  std::string body = events("job-c", 2);
  RawConnection c(server_->port());
  c.send(
      post_head("Expect: 100-continue\r\nContent-Length: " + std::to_string(body.size()) + "\r\n"));
  EXPECT_THAT(c.read_until("\r\n\r\n", 5s), StartsWith("HTTP/1.1 100 Continue"));
  c.send(body);
  EXPECT_THAT(c.answer(), StartsWith("HTTP/1.1 200"));
  EXPECT_EQ(stored("job-c"), 2u);
}

// ---- Bodies ----------------------------------------------------------------------------------

TEST_F(TransportTest, ADamagedGzipBodyIs400AndStoresNothing) {
  start();
  auto c = client();
  httplib::Headers headers = auth();
  headers.emplace("Content-Encoding", "gzip");
  const std::string whole = detail::gzip(events("job-z", 2000));
  // Cut in half, its last byte changed (a bad CRC), and followed by garbage.
  std::string bad_crc = whole;
  bad_crc[bad_crc.size() - 6] ^= 0x55;
  for (const std::string& damaged :
       {whole.substr(0, whole.size() / 2), bad_crc, whole + "garbage after the end"}) {
    auto r = c->Post("/api/v1/events", headers, damaged, "application/x-ndjson");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 400) << r->body;
    EXPECT_THAT(Json::parse(r->body)["error"].get<std::string>(), HasSubstr("not valid gzip"));
  }
  EXPECT_EQ(stored("job-z"), 0u);
  // Two whole members, one after the other, are one body.
  auto r = c->Post("/api/v1/events", headers,
                   detail::gzip(events("job-z", 3)) + detail::gzip(events("job-y", 4)),
                   "application/x-ndjson");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(stored("job-z"), 3u);
  EXPECT_EQ(stored("job-y"), 4u);
}

TEST_F(TransportTest, BodiesPastTheInflightBudgetAre503UntilItFrees) {
  ServerOptions o = options();
  o.max_body_bytes = 64 * 1024;
  o.max_inflight_bytes = 64 * 1024;
  o.read_timeout = 5s;
  start(o);
  const std::string body = events("job-b", 200);
  ASSERT_LT(body.size(), 60'000u);
  // The first announces 60,000 bytes and sends part of them: its reservation is held.
  RawConnection first(server_->port());
  first.send(post_head("Content-Length: " + std::to_string(60'000) + "\r\n") + "{");
  std::string second_answer;
  for (int i = 0; i < 200; ++i) {  // Until the first is being read (its headers are in).
    RawConnection second(server_->port());
    second.send(post_head("Content-Length: 10000\r\n"));
    second_answer = second.answer(5s);
    if (second_answer.starts_with("HTTP/1.1 503")) break;
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_THAT(second_answer, StartsWith("HTTP/1.1 503"));
  EXPECT_THAT(second_answer, HasSubstr("Retry-After: 1\r\n"));
  // The first ends (its body is not NDJSON once padded, and that is the point: it is read).
  first.send(std::string(60'000 - 1, ' '));
  EXPECT_THAT(first.answer(), StartsWith("HTTP/1.1 400"));
  // Freed: a body fits again.
  auto r = client()->Post("/api/v1/events", auth(), body, "application/x-ndjson");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(stored("job-b"), 200u);
}

// ---- Answers ---------------------------------------------------------------------------------

TEST_F(TransportTest, GzippedAnswersDecodeToThePlainOnes) {
  start();
  auto c = client();
  ASSERT_EQ(c->Post("/api/v1/events", auth(), events("job-g", 300), "application/x-ndjson")->status,
            200);
  for (std::string path : {"/api/v1/executions/job-g/events?limit=300", "/api/v1/executions.csv"}) {
    c->set_decompress(false);
    httplib::Headers plain_headers = auth();
    auto plain = c->Get(path, plain_headers);
    ASSERT_TRUE(plain);
    ASSERT_EQ(plain->status, 200);
    EXPECT_FALSE(plain->has_header("Content-Encoding"));
    httplib::Headers gzip_headers = auth();
    gzip_headers.emplace("Accept-Encoding", "gzip");
    auto packed = c->Get(path, gzip_headers);
    ASSERT_TRUE(packed);
    EXPECT_EQ(packed->get_header_value("Content-Encoding"), "gzip") << path;
    EXPECT_EQ(packed->get_header_value("Vary"), "Accept-Encoding") << path;
    EXPECT_LT(packed->body.size(), plain->body.size()) << path;
    c->set_decompress(true);
    auto unpacked = c->Get(path, gzip_headers);
    ASSERT_TRUE(unpacked);
    EXPECT_EQ(unpacked->body, plain->body) << path;
  }
}

// ---- HTTPS -----------------------------------------------------------------------------------

class TransportTlsTest : public TransportTest {
 protected:
  // A self-signed certificate for 127.0.0.1, made by the openssl command.
  bool make_certificate() {
    cert_ = (dir_.path() / "cert.pem").string();
    key_ = (dir_.path() / "key.pem").string();
    std::string command =
        "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1 "
        "-addext subjectAltName=IP:127.0.0.1 -keyout " +
        key_ + " -out " + cert_ + " >/dev/null 2>&1";
    return std::system(command.c_str()) == 0;
  }
  std::string cert_;
  std::string key_;
};

TEST_F(TransportTlsTest, ServesHttpsWithTheGivenCertificate) {
  if (!make_certificate()) GTEST_SKIP() << "the openssl command cannot make a certificate here";
  ServerOptions o = options();
  o.tls_cert_file = cert_;
  o.tls_key_file = key_;
  start(o);
  httplib::SSLClient tls("127.0.0.1", server_->port());
  tls.set_ca_cert_path(cert_);
  tls.enable_server_certificate_verification(true);
  tls.set_read_timeout(10, 0);
  auto posted = tls.Post("/api/v1/events", auth(), events("job-t", 5), "application/x-ndjson");
  ASSERT_TRUE(posted) << httplib::to_string(posted.error());
  EXPECT_EQ(posted->status, 200);
  EXPECT_EQ(stored("job-t"), 5u);
  // Plain HTTP to the TLS port gets no answer, and the server goes on.
  RawConnection plain(server_->port());
  plain.send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_TRUE(plain.closed_within(10s));
  EXPECT_EQ(tls.Get("/healthz")->status, 200);
}

TEST_F(TransportTlsTest, AMissingCertificateIsAClearError) {
  ServerOptions o = options();
  o.tls_cert_file = (dir_.path() / "no-such-cert.pem").string();
  o.tls_key_file = (dir_.path() / "no-such-key.pem").string();
  Server server(*store_, server::TokenFile::load(tokens_path_), o);
  try {
    server.bind();
    FAIL() << "bound without a certificate";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("cannot use the TLS certificate " + o.tls_cert_file));
  }
  o.tls_key_file.clear();
  EXPECT_THROW(Server(*store_, server::TokenFile::load(tokens_path_), o), Error);
}

}  // namespace
}  // namespace stagelog::test
