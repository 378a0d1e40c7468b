// The HTTP server in process: a real SqliteStore in a TempDir, a Server on 127.0.0.1 and a free
// port, and httplib's client (or raw sockets, for slow clients).

#include "stagelog/server/server.hpp"

#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "base/time_text.hpp"
#include "events.hpp"
#include "eventually.hpp"
#include "fake_clock.hpp"
#include "format/format.hpp"
#include "forwarding_store.hpp"
#include "ndjson_receiver.hpp"
#include "raw_connection.hpp"
#include "seed_004.hpp"
#include "server/ingest.hpp"
#include "server/web.hpp"
#include "stagelog/server/alerts.hpp"
#include "stagelog/server/auth.hpp"
#include "stagelog/server/execution_log.hpp"
#include "store/sqlite.hpp"
#include "store/sqlite_store.hpp"
#include "temp_dir.hpp"

namespace stagelog::test {
namespace {

using namespace std::chrono_literals;
using server::Server;
using server::ServerOptions;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using Json = nlohmann::json;
using OrderedJson = nlohmann::ordered_json;

constexpr std::int64_t kSecond = 1'000'000'000;
constexpr std::int64_t kDay = 86'400 * kSecond;
constexpr std::int64_t kMs = 1'000'000;

// A Store that forwards to a real one, or fails when told: a real SQLite I/O error cannot be
// provoked on demand, so the 500 paths are tested with this double.
class FailingStore final : public test::ForwardingStore {
 public:
  using ForwardingStore::ForwardingStore;
  std::atomic<bool> fail_reads{false};
  std::atomic<bool> fail_writes{false};
  std::atomic<ErrorKind> read_kind{ErrorKind::Other};  // What a failed read says.

  stagelog::Result<void> put_execution(const Execution& e, std::int64_t x) override {
    if (fail_writes) return write_error();
    return inner_.put_execution(e, x);
  }
  stagelog::Result<std::optional<Execution>> latest(std::string_view id,
                                                    std::int64_t now) override {
    if (fail_reads) return read_error();
    return inner_.latest(id, now);
  }
  stagelog::Result<std::optional<Execution>> attempt(std::string_view id, int n,
                                                     std::int64_t now) override {
    if (fail_reads) return read_error();
    return inner_.attempt(id, n, now);
  }
  stagelog::Result<std::vector<store::AttemptSummary>> attempts(std::string_view id,
                                                                std::int64_t now) override {
    if (fail_reads) return read_error();
    return inner_.attempts(id, now);
  }
  stagelog::Result<void> append_events(std::span<const OwnedEvent> events,
                                       std::int64_t x) override {
    if (fail_writes) return write_error();
    return inner_.append_events(events, x);
  }
  stagelog::Result<void> write(std::span<const store::EventsWrite> events,
                               std::span<const store::ExecutionWrite> executions) override {
    if (fail_writes) return write_error();
    return inner_.write(events, executions);
  }
  stagelog::Result<std::optional<store::BatchRecord>> batch(std::string_view key,
                                                            std::int64_t now) override {
    if (fail_reads) return read_error();
    return inner_.batch(key, now);
  }
  stagelog::Result<std::vector<OwnedEvent>> events(std::string_view run, std::int64_t now,
                                                   std::size_t limit) override {
    if (fail_reads) return read_error();
    return inner_.events(run, now, limit);
  }

 private:
  Error read_error() const {
    return Error("sqlite store x.db: cannot read execution: disk I/O error", read_kind);
  }
  static Error write_error() { return Error("sqlite store x.db: cannot store: disk I/O error"); }
};

// One NDJSON event line as JsonlSink writes it.
std::string event_line(std::string_view run, std::string_view kind, std::string_view stage,
                       std::string_view status, std::int64_t ts_ns,
                       const std::string& fields = "{}") {
  return ndjson_line({.run = run,
                      .kind = kind,
                      .stage = stage,
                      .status = status,
                      .ts_ns = ts_ns,
                      .fields = OrderedJson::parse(fields)});
}

class ServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store_ = std::make_unique<store::SqliteStore>(dir_.path() / "stagelog.db");
    failing_ = std::make_unique<FailingStore>(*store_);
    tokens_path_ = dir_.path() / "tokens";
    admin_ = server::TokenFile::create_token(tokens_path_, server::Scope::Admin, "admin");
    read_ = server::TokenFile::create_token(tokens_path_, server::Scope::Read, "reader");
    ingest_ = server::TokenFile::create_token(tokens_path_, server::Scope::Ingest, "writer");
  }

  void TearDown() override {
    client_.reset();
    if (server_) server_->stop();
    server_.reset();
  }

  ServerOptions options() {
    ServerOptions o;
    o.port = 0;
    o.clock = clock_.fn();
    o.threads = 4;
    o.read_timeout = 2s;
    o.keep_alive_timeout = 1s;
    o.on_error = [](std::string_view) {};
    return o;
  }

  void start(ServerOptions o) {
    if (server_) server_->stop();
    client_.reset();
    server_ =
        std::make_unique<Server>(*failing_, server::TokenFile::load(tokens_path_), std::move(o));
    server_->start();
    client_ = make_client();
  }
  void start() { start(options()); }

  std::unique_ptr<httplib::Client> make_client() const {
    auto c = std::make_unique<httplib::Client>("127.0.0.1", server_->port());
    c->set_read_timeout(10, 0);
    c->set_write_timeout(10, 0);
    c->set_url_encode(false);  // Paths are sent as written, percent-encoding included.
    return c;
  }

  static httplib::Headers auth(const std::string& token) {
    return {{"Authorization", "Bearer " + token}};
  }

  httplib::Result get(const std::string& path, const std::string& token) {
    return client_->Get(path, auth(token));
  }
  httplib::Result get(const std::string& path) { return get(path, admin_); }
  httplib::Result put(const std::string& path, std::string_view body, const std::string& token) {
    return client_->Put(path, auth(token), std::string(body), "application/json");
  }
  httplib::Result put(const std::string& path, std::string_view body) {
    return put(path, body, admin_);
  }
  httplib::Result post(const std::string& body, const std::string& path = "/api/v1/events") {
    return client_->Post(path, auth(admin_), body, "application/x-ndjson");
  }

  std::vector<OwnedEvent> stored_events(const std::string& run) {
    auto got = store_->events(run, clock_.now(), 1'000'000);
    EXPECT_TRUE(got) << got.error().what();
    return got ? *got : std::vector<OwnedEvent>{};
  }

  TempDir dir_;
  FakeClock clock_;
  std::unique_ptr<store::SqliteStore> store_;
  std::unique_ptr<FailingStore> failing_;
  std::filesystem::path tokens_path_;
  std::string admin_, read_, ingest_;
  std::unique_ptr<Server> server_;
  std::unique_ptr<httplib::Client> client_;
};

// Evaluates `call` once: a request is not sent twice.
#define ASSERT_STATUS(call, code)                                                  \
  do {                                                                             \
    auto&& assert_status_result_ = (call);                                         \
    ASSERT_TRUE(assert_status_result_)                                             \
        << "no answer: " << httplib::to_string(assert_status_result_.error());     \
    ASSERT_EQ(assert_status_result_->status, code) << assert_status_result_->body; \
  } while (false)

// ---- The seed's API --------------------------------------------------------------------------

TEST_F(ServerTest, HealthzNeedsNoToken) {
  start();
  auto r = client_->Get("/healthz");
  ASSERT_STATUS(r, 200);
  EXPECT_EQ(Json::parse(r->body)["status"], "ok");
  EXPECT_EQ(r->get_header_value("Content-Type"), "application/json");
}

// ---- The web UI's files ----------------------------------------------------------------------

void write_file(const std::filesystem::path& path, std::string_view text) {
  std::filesystem::create_directories(path.parent_path());
  std::ofstream(path, std::ios::binary) << text;
}

TEST_F(ServerTest, WebUiFilesFromAFolderNeedNoTokenAndNameNothingOutsideIt) {
  const auto web = dir_.path() / "web";
  write_file(web / "index.html", "<!doctype html><title>stagelog</title>");
  write_file(web / "css" / "app.css", "body { margin: 0 }");
  write_file(web / ".env", "secret");
  write_file(dir_.path() / "outside.txt", "outside");
  ServerOptions o = options();
  o.web_dir = web.string();
  start(o);

  auto r = client_->Get("/");
  ASSERT_STATUS(r, 200);
  EXPECT_EQ(r->body, "<!doctype html><title>stagelog</title>");
  EXPECT_EQ(r->get_header_value("Content-Type"), "text/html; charset=utf-8");
  EXPECT_THAT(r->get_header_value("Content-Security-Policy"), HasSubstr("default-src 'self'"));
  EXPECT_EQ(r->get_header_value("X-Content-Type-Options"), "nosniff");
  EXPECT_EQ(r->get_header_value("Cache-Control"), "no-store");  // Read anew every time.
  EXPECT_FALSE(r->has_header("ETag"));

  write_file(web / "css" / "app.css", "body { margin: 1px }");  // Edited: served as it is now.
  r = client_->Get("/css/app.css");
  ASSERT_STATUS(r, 200);
  EXPECT_EQ(r->body, "body { margin: 1px }");
  EXPECT_EQ(r->get_header_value("Content-Type"), "text/css; charset=utf-8");

  for (const char* path : {"/.env", "/css/", "/nothing.js", "/css/../../outside.txt",
                           "/%2e%2e/outside.txt", "/..%2Foutside.txt", "/css/%2e%2e/index.html"}) {
    SCOPED_TRACE(path);
    r = client_->Get(path);
    ASSERT_STATUS(r, 404);
    EXPECT_THAT(Json::parse(r->body)["error"].get<std::string>(), HasSubstr("no such file"));
  }
  r = client_->Post("/", "x", "text/plain");
  ASSERT_STATUS(r, 405);
  // The files are open; the data behind them is not.
  r = client_->Get("/api/v1/workers");
  ASSERT_STATUS(r, 401);
}

TEST_F(ServerTest, EmbeddedWebUiFilesAreServedByteForByteAndRevalidatedByETag) {
  start();
  auto files = detail::embedded_web_files();
  ASSERT_TRUE(std::is_sorted(files.begin(), files.end(),
                             [](const auto& a, const auto& b) { return a.path < b.path; }));
  for (const detail::EmbeddedFile& file : files) {
    SCOPED_TRACE(std::string(file.path));
    auto r = client_->Get("/" + std::string(file.path));
    ASSERT_STATUS(r, 200);
    EXPECT_EQ(r->body, file.bytes);
    EXPECT_EQ(r->get_header_value("Content-Type"), detail::web_content_type(file.path));
    EXPECT_EQ(r->get_header_value("ETag"), file.etag);
    EXPECT_EQ(r->get_header_value("Cache-Control"), "no-cache");
    r = client_->Get("/" + std::string(file.path), {{"If-None-Match", std::string(file.etag)}});
    ASSERT_STATUS(r, 304);
    EXPECT_TRUE(r->body.empty());
  }
  // "/" is web/index.html, which loads app.js.
  auto index = std::find_if(files.begin(), files.end(),
                            [](const auto& f) { return f.path == "index.html"; });
  ASSERT_NE(index, files.end());
  auto r = client_->Get("/");
  ASSERT_STATUS(r, 200);
  EXPECT_EQ(r->body, index->bytes);
  EXPECT_THAT(r->body, HasSubstr("app.js"));
  r = client_->Get("/no-such-file.js");
  ASSERT_STATUS(r, 404);
}

TEST_F(ServerTest, SeedDocumentInSeedShapeOut) {
  start();
  auto r = put("/api/v1/executions/60B3RNTB", kSeed004Document);
  ASSERT_STATUS(r, 200);
  Json put_answer = Json::parse(r->body);
  EXPECT_EQ(put_answer["success"], true);
  EXPECT_EQ(put_answer["execution_id"], "exec_1703123456789_xyz123abc");

  r = get("/api/execution-logs/60B3RNTB", read_);
  ASSERT_STATUS(r, 200);
  EXPECT_EQ(r->get_header_value("Content-Type"), "application/json");
  OrderedJson body = OrderedJson::parse(r->body);
  std::vector<std::string> keys;
  for (const auto& [key, value] : body.items()) keys.push_back(key);
  EXPECT_THAT(keys, ElementsAre("success", "data"));
  EXPECT_EQ(body["success"], true);
  const OrderedJson& data = body["data"];
  keys.clear();
  for (const auto& [key, value] : data.items()) keys.push_back(key);
  EXPECT_THAT(keys, ElementsAre("tracking_id", "execution_id", "company", "tier", "started_at",
                                "completed_at", "duration_ms", "duration_readable", "total_steps",
                                "final_status", "steps"));
  EXPECT_EQ(data["tracking_id"], "60B3RNTB");
  EXPECT_EQ(data["execution_id"], "exec_1703123456789_xyz123abc");
  EXPECT_EQ(data["company"], "Acme Corp");
  EXPECT_EQ(data["tier"], "comprehensive");
  EXPECT_EQ(data["started_at"], "2024-01-15T10:30:00.000Z");
  EXPECT_EQ(data["completed_at"], "2024-01-15T10:32:30.000Z");
  EXPECT_EQ(data["duration_ms"], 150000);
  EXPECT_EQ(data["duration_readable"], "2m 30s");
  EXPECT_EQ(data["total_steps"], 4);
  EXPECT_EQ(data["final_status"], "failed");
  ASSERT_EQ(data["steps"].size(), 4u);
  const char* names[] = {"initialization", "status_update", "orchestrator_execution",
                         "error_handling"};
  const char* statuses[] = {"completed", "completed", "in_progress", "failed"};
  const char* times[] = {"2024-01-15T10:30:00.000Z", "2024-01-15T10:30:01.000Z",
                         "2024-01-15T10:30:02.000Z", "2024-01-15T10:32:30.000Z"};
  const char* from_start[] = {"+0ms", "+1.0s", "+2.0s", "+2m 30s"};
  for (std::size_t i = 0; i < 4; ++i) {
    SCOPED_TRACE("step " + std::to_string(i));
    const OrderedJson& step = data["steps"][i];
    keys.clear();
    for (const auto& [key, value] : step.items()) keys.push_back(key);
    EXPECT_THAT(keys, ElementsAre("step", "status", "timestamp", "message", "time_from_start",
                                  "error_details"));
    EXPECT_EQ(step["step"], names[i]);
    EXPECT_EQ(step["status"], statuses[i]);
    EXPECT_EQ(step["timestamp"], times[i]);
    EXPECT_EQ(step["time_from_start"], from_start[i]);
    if (i < 3) {
      EXPECT_TRUE(step["error_details"].is_null());
    }
  }
  EXPECT_EQ(data["steps"][0]["message"], "Started processing for Acme Corp (comprehensive tier)");
  EXPECT_EQ(data["steps"][3]["error_details"],
            "Error: AI generation timeout after 480000ms\n at AIService.generateContent "
            "(worker.js:1234:56)");

  // The v1 route gives the document back as PUT took it.
  r = get("/api/v1/executions/60B3RNTB", read_);
  ASSERT_STATUS(r, 200);
  EXPECT_EQ(Json::parse(r->body), Json::parse(kSeed004Document));
}

TEST_F(ServerTest, UnknownTrackingIdIs404WithTheSeedBody) {
  start();
  auto r = get("/api/execution-logs/NOPE1234");
  ASSERT_STATUS(r, 404);
  EXPECT_EQ(r->body, R"({"success":false,"error":"No execution log found for this tracking ID",)"
                     R"("tracking_id":"NOPE1234"})");
  r = get("/api/v1/executions/NOPE1234");
  ASSERT_STATUS(r, 404);
  EXPECT_EQ(Json::parse(r->body)["tracking_id"], "NOPE1234");
  r = get("/api/v1/executions/NOPE1234/attempts");
  ASSERT_STATUS(r, 404);
}

// The store double (FailingStore above) stands in for a disk that fails.
TEST_F(ServerTest, StoreFailureIs500WithTheSeedBody) {
  start();
  ASSERT_STATUS(put("/api/v1/executions/60B3RNTB", kSeed004Document), 200);
  failing_->fail_reads = true;
  auto r = get("/api/execution-logs/60B3RNTB");
  ASSERT_STATUS(r, 500);
  EXPECT_EQ(r->body, R"({"success":false,"error":"Failed to retrieve execution log",)"
                     R"("details":"sqlite store x.db: cannot read execution: disk I/O error"})");
  r = get("/api/v1/executions/60B3RNTB/attempts");
  ASSERT_STATUS(r, 500);
  failing_->fail_reads = false;
  ASSERT_STATUS(get("/api/execution-logs/60B3RNTB"), 200);
}

// A read the store could not answer now (its I/O, a store not reached) may succeed later: 503
// with Retry-After and the same body. Only a store not reached makes /readyz say so.
TEST_F(ServerTest, AReadTheStoreCannotAnswerNowIs503WithRetryAfter) {
  start();
  ASSERT_STATUS(put("/api/v1/executions/60B3RNTB", kSeed004Document), 200);
  failing_->fail_reads = true;
  failing_->read_kind = ErrorKind::Io;
  auto r = get("/api/execution-logs/60B3RNTB");
  ASSERT_STATUS(r, 503);
  EXPECT_EQ(r->get_header_value("Retry-After"), "10");
  EXPECT_EQ(r->body, R"({"success":false,"error":"Failed to retrieve execution log",)"
                     R"("details":"sqlite store x.db: cannot read execution: disk I/O error"})");
  ASSERT_STATUS(client_->Get("/readyz"), 200);
  failing_->read_kind = ErrorKind::Unavailable;
  r = get("/api/v1/executions/60B3RNTB/attempts");
  ASSERT_STATUS(r, 503);
  EXPECT_EQ(r->get_header_value("Retry-After"), "2");
  r = client_->Get("/readyz");
  ASSERT_STATUS(r, 503);
  EXPECT_EQ(Json::parse(r->body)["reason"], "the store cannot be reached");
  failing_->fail_reads = false;
  ASSERT_STATUS(client_->Get("/readyz"), 200);  // It asks the store, which answers.
  ASSERT_STATUS(get("/api/execution-logs/60B3RNTB"), 200);
}

TEST_F(ServerTest, MissingOrUnknownTokenIs401AndWrongScopeIs403) {
  start();
  auto r = client_->Get("/api/execution-logs/X");
  ASSERT_STATUS(r, 401);
  Json body = Json::parse(r->body);
  EXPECT_EQ(body["success"], false);
  EXPECT_THAT(body["error"].get<std::string>(), HasSubstr("Authorization: Bearer"));
  EXPECT_EQ(r->get_header_value("WWW-Authenticate"), "Bearer");

  std::string wrong = "slg_" + std::string(43, 'A');
  r = get("/api/execution-logs/X", wrong);
  ASSERT_STATUS(r, 401);
  EXPECT_EQ(r->body, R"({"success":false,"error":"unknown token"})");
  EXPECT_THAT(r->body, ::testing::Not(HasSubstr(wrong)));  // Tokens are never echoed.

  r = get("/api/execution-logs/X", ingest_);
  ASSERT_STATUS(r, 403);
  EXPECT_EQ(r->body, R"({"success":false,"error":"this token does not have the read scope"})");
  r = put("/api/v1/executions/X", kSeed004Document, read_);
  ASSERT_STATUS(r, 403);
  EXPECT_EQ(r->body, R"({"success":false,"error":"this token does not have the ingest scope"})");
  r = client_->Post("/api/v1/events", auth(read_), event_line("r", "log", "", "", 1), "text/plain");
  ASSERT_STATUS(r, 403);
  r = client_->Post("/api/v1/events", event_line("r", "log", "", "", 1), "text/plain");
  ASSERT_STATUS(r, 401);
  EXPECT_TRUE(stored_events("r").empty());

  ASSERT_STATUS(put("/api/v1/executions/X", kSeed004Document, ingest_), 400);  // Allowed; mismatch.
  ASSERT_STATUS(get("/api/execution-logs/X", read_), 404);
  ASSERT_STATUS(get("/api/execution-logs/X", admin_), 404);
}

TEST_F(ServerTest, UnknownRouteIs404AndWrongMethodIs405) {
  start();
  auto r = get("/api/v2/nothing");
  ASSERT_STATUS(r, 404);
  EXPECT_EQ(r->body, R"({"success":false,"error":"no such route: /api/v2/nothing"})");
  r = client_->Delete("/api/v1/executions/X", auth(admin_));
  ASSERT_STATUS(r, 405);
  EXPECT_EQ(r->get_header_value("Allow"), "GET, HEAD, PUT");
  EXPECT_EQ(Json::parse(r->body)["success"], false);
  r = get("/api/v1/events");
  ASSERT_STATUS(r, 405);
  EXPECT_EQ(r->get_header_value("Allow"), "POST");
  r = client_->Post("/healthz", "x", "text/plain");
  ASSERT_STATUS(r, 405);
  r = get("/healthz/");
  ASSERT_STATUS(r, 404);
  r = get("/api/execution-logs/");
  ASSERT_STATUS(r, 404);
}

// ---- PUT -------------------------------------------------------------------------------------

TEST_F(ServerTest, PutTakesTheTrackingIdFromTheUrlAndRefusesAMismatch) {
  start();
  Json doc = Json::parse(kSeed004Document);
  doc.erase("tracking_id");
  auto r = put("/api/v1/executions/FROM-URL", doc.dump());
  ASSERT_STATUS(r, 200);
  r = get("/api/execution-logs/FROM-URL");
  ASSERT_STATUS(r, 200);
  EXPECT_EQ(Json::parse(r->body)["data"]["tracking_id"], "FROM-URL");

  r = put("/api/v1/executions/OTHER", kSeed004Document);
  ASSERT_STATUS(r, 400);
  Json body = Json::parse(r->body);
  EXPECT_EQ(body["tracking_id"], "OTHER");
  EXPECT_EQ(body["document_tracking_id"], "60B3RNTB");
  ASSERT_STATUS(get("/api/execution-logs/OTHER"), 404);
  ASSERT_STATUS(get("/api/execution-logs/60B3RNTB"), 404);
}

TEST_F(ServerTest, TrackingIdsWithPathCharactersAreOpaqueAndNeverPaths) {
  start();
  struct Case {
    std::string id;
    std::string encoded;
  };
  const std::vector<Case> cases = {
      {"../x", "..%2Fx"},
      {"a/b", "a%2Fb"},
      {"..", "%2E%2E"},
      {"../../etc/passwd", "..%2F..%2Fetc%2Fpasswd"},
      {"%2F", "%252F"},
      {"50% done?", "50%25%20done%3F"},
      {"日本", "%E6%97%A5%E6%9C%AC"},
      {"quote\"back\\slash", "quote%22back%5Cslash"},
  };
  auto files_before = std::distance(std::filesystem::recursive_directory_iterator(dir_.path()),
                                    std::filesystem::recursive_directory_iterator());
  for (const Case& c : cases) {
    SCOPED_TRACE(c.id);
    Json doc = Json::parse(kSeed004Document);
    doc["tracking_id"] = c.id;
    ASSERT_STATUS(put("/api/v1/executions/" + c.encoded, doc.dump()), 200);
    auto r = get("/api/execution-logs/" + c.encoded);
    ASSERT_STATUS(r, 200);
    EXPECT_EQ(Json::parse(r->body)["data"]["tracking_id"], c.id);
    r = get("/api/v1/executions/" + c.encoded + "/attempts");
    ASSERT_STATUS(r, 200);
    EXPECT_EQ(Json::parse(r->body)["attempts"].size(), 1u);
  }
  // Unencoded, "../x" is two segments: no route, and nothing resolved against a folder.
  ASSERT_STATUS(get("/api/execution-logs/../x"), 404);
  ASSERT_STATUS(get("/api/v1/executions/a/b"), 404);
  ASSERT_STATUS(get("/api/execution-logs/%zz"), 400);
  ASSERT_STATUS(get("/api/execution-logs/%2"), 400);
  ASSERT_STATUS(get("/api/execution-logs/x%2Fy"), 404);  // "x/y": an id never stored.
  ASSERT_STATUS(put("/api/v1/executions/%FF", kSeed004Document), 400);  // Not UTF-8.
  auto files_after = std::distance(std::filesystem::recursive_directory_iterator(dir_.path()),
                                   std::filesystem::recursive_directory_iterator());
  EXPECT_EQ(files_after, files_before);
}

TEST_F(ServerTest, AttemptsAreListedAndEachCanBeRead) {
  start();
  Json first = Json::parse(kSeed004Document);
  Json second = first;
  second["execution_id"] = "exec_2";
  second["started_at"] = "2024-01-16T10:30:00.000Z";
  second["steps"] = Json::array();
  second.erase("completed_at");
  second.erase("duration_ms");
  ASSERT_STATUS(put("/api/v1/executions/60B3RNTB", first.dump()), 200);
  ASSERT_STATUS(put("/api/v1/executions/60B3RNTB", second.dump()), 200);

  auto r = get("/api/v1/executions/60B3RNTB/attempts", read_);
  ASSERT_STATUS(r, 200);
  Json body = Json::parse(r->body);
  ASSERT_EQ(body["attempts"].size(), 2u);
  EXPECT_EQ(body["attempts"][0]["attempt"], 1);
  EXPECT_EQ(body["attempts"][0]["execution_id"], "exec_1703123456789_xyz123abc");
  EXPECT_EQ(body["attempts"][0]["final_status"], "failed");
  EXPECT_EQ(body["attempts"][0]["total_steps"], 4);
  EXPECT_EQ(body["attempts"][0]["duration_ms"], 150000);
  EXPECT_EQ(body["attempts"][1]["attempt"], 2);
  EXPECT_EQ(body["attempts"][1]["final_status"], "unknown");
  EXPECT_TRUE(body["attempts"][1]["completed_at"].is_null());

  // The latest is what the seed's route returns; older ones by number.
  r = get("/api/execution-logs/60B3RNTB");
  ASSERT_STATUS(r, 200);
  EXPECT_EQ(Json::parse(r->body)["data"]["execution_id"], "exec_2");
  r = get("/api/v1/executions/60B3RNTB?attempt=1");
  ASSERT_STATUS(r, 200);
  EXPECT_EQ(Json::parse(r->body), first);
  ASSERT_STATUS(get("/api/v1/executions/60B3RNTB?attempt=3"), 404);
  ASSERT_STATUS(get("/api/v1/executions/60B3RNTB?attempt=0"), 400);
  ASSERT_STATUS(get("/api/v1/executions/60B3RNTB?attempt=x"), 400);
}

// ---- Ingest ----------------------------------------------------------------------------------

TEST_F(ServerTest, IngestAcceptsAndRejectsLineByLine) {
  start();
  const std::int64_t t = clock_.now();
  std::string huge_message(std::size_t{1} << 20, 'x');
  std::string body;
  body += event_line("r1", "stage", "load", "starting", t) + "\n";                    // 1
  body += "{not json\n";                                                              // 2
  body += "\n";                                                                       // 3: blank
  body += event_line("r1", "stage", "load", "done", t) + "\n";                        // 4
  body += "{\"ts_ns\":1,\"kind\":\"log\",\"message\":\"\xff\xfe\"}\n";                // 5
  body += "{\"ts\":\"2026-13-45T99:00:00Z\",\"kind\":\"log\"}\n";                     // 6
  body += "{\"ts_ns\":-5,\"kind\":\"log\"}\n";                                        // 7
  body += "{\"ts_ns\":5,\"kind\":\"log\",\"message\":\"" + huge_message + "\"}\r\n";  // 8
  body += "{\"ts_ns\":5,\"kind\":\"teleport\"}\n";                                    // 9
  body += event_line("r1", "stage", "load", "completed", t + kSecond) + "\r\n";       // 10
  body += "{\"ts_ns\":5,\"kind\":\"stage\",\"elapsed_ns\":-1}";                       // 11, no \n
  auto r = post(body);
  ASSERT_STATUS(r, 200);
  Json answer = Json::parse(r->body);
  EXPECT_EQ(answer["accepted"], 2);
  ASSERT_EQ(answer["rejected"].size(), 8u);
  std::vector<int> lines;
  for (const Json& item : answer["rejected"]) lines.push_back(item["line"]);
  EXPECT_THAT(lines, ElementsAre(2, 4, 5, 6, 7, 8, 9, 11));
  auto error = [&](std::size_t i) { return answer["rejected"][i]["error"].get<std::string>(); };
  EXPECT_THAT(error(0), HasSubstr("not valid JSON"));
  EXPECT_THAT(error(1), HasSubstr("unknown status \"done\""));
  EXPECT_THAT(error(2), HasSubstr("invalid UTF-8 at byte"));
  EXPECT_THAT(error(3), HasSubstr("not a UTC timestamp"));
  EXPECT_THAT(error(4), HasSubstr("before 1970"));
  EXPECT_THAT(error(5), HasSubstr("over the limit of 1048576 bytes"));
  EXPECT_THAT(error(6), HasSubstr("unknown kind \"teleport\""));
  EXPECT_THAT(error(7), HasSubstr("elapsed_ns"));

  auto events = stored_events("r1");
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].status, Status::Starting);
  EXPECT_EQ(events[1].status, Status::Completed);
}

TEST(TakePieceTest, CutsAfterTheEndOfTheLineThePieceSizeEndsIn) {
  std::string_view body = "ab\ncd\nef";
  EXPECT_EQ(detail::take_piece(body, 1), "ab\n");
  EXPECT_EQ(detail::take_piece(body, 3), "cd\n");  // Ends exactly at a line's end.
  EXPECT_EQ(detail::take_piece(body, 1), "ef");    // The last line has no end.
  EXPECT_TRUE(body.empty());
  std::string_view one_line = "abcdef";
  EXPECT_EQ(detail::take_piece(one_line, 2), "abcdef");
  std::string_view whole = "ab\n";
  EXPECT_EQ(detail::take_piece(whole, 100), "ab\n");
}

TEST_F(ServerTest, BatchWithNoValidLineIs400AndStoresNothing) {
  start();
  auto r = post("{bad\n{\"ts_ns\":1}\n");
  ASSERT_STATUS(r, 400);
  Json answer = Json::parse(r->body);
  EXPECT_EQ(answer["success"], false);
  EXPECT_EQ(answer["accepted"], 0);
  EXPECT_EQ(answer["rejected"].size(), 2u);
  EXPECT_THAT(answer["rejected"][1]["error"].get<std::string>(), HasSubstr("missing \"kind\""));
  r = post("");
  ASSERT_STATUS(r, 400);
  EXPECT_EQ(Json::parse(r->body)["error"], "no event in the request body");
  r = post("\n \n");
  ASSERT_STATUS(r, 400);
  EXPECT_TRUE(stored_events("").empty());
}

TEST_F(ServerTest, GzipBodiesAreAcceptedAndTheLimitAppliesToTheDecompressedSize) {
  ServerOptions o = options();
  o.max_body_bytes = 256 * 1024;
  start(o);
  std::string body;
  for (int i = 0; i < 500; ++i) {
    body += event_line("gz", "log", "", "", clock_.now() + i, R"({"i":)" + std::to_string(i) + "}");
    body += '\n';
  }
  ASSERT_LT(body.size(), o.max_body_bytes);
  client_->set_compress(true);  // gzip, with Content-Encoding: gzip.
  auto r = post(body);
  ASSERT_STATUS(r, 200);
  EXPECT_EQ(Json::parse(r->body)["accepted"], 500);
  EXPECT_EQ(stored_events("gz").size(), 500u);

  // Four times the limit once inflated, a few KiB on the wire.
  std::string bomb;
  while (bomb.size() < 4 * o.max_body_bytes) bomb += body;
  r = post(bomb);
  ASSERT_STATUS(r, 413);
  EXPECT_THAT(Json::parse(r->body)["error"].get<std::string>(), HasSubstr("after decompression"));
  client_->set_compress(false);
  r = post(bomb);  // The same, plain: refused by its Content-Length.
  ASSERT_STATUS(r, 413);
  EXPECT_EQ(stored_events("gz").size(), 500u);

  httplib::Headers headers = auth(admin_);
  headers.emplace("Content-Encoding", "gzip");
  r = client_->Post("/api/v1/events", headers, "this is not gzip", "application/x-ndjson");
  ASSERT_STATUS(r, 400);
  headers.erase("Content-Encoding");
  headers.emplace("Content-Encoding", "zstd");
  r = client_->Post("/api/v1/events", headers, body, "application/x-ndjson");
  ASSERT_STATUS(r, 415);
  ASSERT_STATUS(client_->Get("/healthz"), 200);  // The server is still fine.
}

TEST_F(ServerTest, RejectedRequestsChangeNothingStored) {
  ServerOptions o = options();
  o.max_body_bytes = 64 * 1024;
  start(o);
  ASSERT_STATUS(put("/api/v1/executions/60B3RNTB", kSeed004Document), 200);
  ASSERT_STATUS(post(event_line("60B3RNTB", "log", "", "", clock_.now()) + "\n"), 200);
  auto before = get("/api/v1/executions/60B3RNTB");
  ASSERT_STATUS(before, 200);

  Json bad = Json::parse(kSeed004Document);
  bad["steps"][1]["status"] = "done";
  ASSERT_STATUS(put("/api/v1/executions/60B3RNTB", bad.dump()), 400);
  ASSERT_STATUS(put("/api/v1/executions/60B3RNTB", "{\"tracking_id\": \"60B3RNTB\", "), 400);
  ASSERT_STATUS(put("/api/v1/executions/60B3RNTB", std::string(100 * 1024, ' ')), 413);
  ASSERT_STATUS(put("/api/v1/executions/60B3RNTB?retention=forever", kSeed004Document), 400);
  ASSERT_STATUS(post("{bad\n"), 400);
  ASSERT_STATUS(
      post(event_line("60B3RNTB", "log", "", "", 1) + "\n", "/api/v1/events?retention=-1d"), 400);
  ASSERT_STATUS(client_->Post("/api/v1/events", auth(read_), "{}", "text/plain"), 403);

  auto after = get("/api/v1/executions/60B3RNTB");
  ASSERT_STATUS(after, 200);
  EXPECT_EQ(after->body, before->body);
  EXPECT_EQ(stored_events("60B3RNTB").size(), 1u);
  auto list = store_->attempts("60B3RNTB", clock_.now());
  ASSERT_TRUE(list);
  EXPECT_EQ(list->size(), 1u);
}

TEST_F(ServerTest, AStoreThatFailsAWriteGets500AndIngestRecovers) {
  start();
  const std::int64_t t = clock_.now();
  ASSERT_STATUS(post(event_line("job", "run", "job", "starting", t) + "\n" +
                     event_line("job", "stage", "a", "starting", t + 1) + "\n"),
                200);
  failing_->fail_writes = true;
  auto r = post(event_line("job", "stage", "a", "completed", t + 2) + "\n");
  ASSERT_STATUS(r, 500);
  EXPECT_THAT(Json::parse(r->body)["details"].get<std::string>(), HasSubstr("disk I/O error"));
  ASSERT_STATUS(put("/api/v1/executions/60B3RNTB", kSeed004Document), 500);
  failing_->fail_writes = false;
  // The client retries; what is stored continues from what the store holds.
  ASSERT_STATUS(post(event_line("job", "stage", "a", "completed", t + 2) + "\n" +
                     event_line("job", "run", "job", "completed", t + 3) + "\n"),
                200);
  r = get("/api/execution-logs/job");
  ASSERT_STATUS(r, 200);
  Json data = Json::parse(r->body)["data"];
  ASSERT_EQ(data["steps"].size(), 2u);
  EXPECT_EQ(data["steps"][0]["status"], "in_progress");
  EXPECT_EQ(data["steps"][1]["status"], "completed");
  EXPECT_FALSE(data["completed_at"].is_null());
  EXPECT_EQ(stored_events("job").size(), 4u);
}

// ---- Folding ---------------------------------------------------------------------------------

TEST_F(ServerTest, EventsFoldIntoTheExecutionOfTheirRun) {
  start();
  const std::int64_t t = clock_.now();
  std::string body;
  body += event_line("job-7", "run", "job", "starting", t, R"({"company":"Acme Corp"})") + "\n";
  body += event_line("job-7", "stage", "load", "starting", t + kSecond) + "\n";
  body +=
      event_line("job-7", "stage", "load", "completed", t + 3 * kSecond, R"({"rows":12})") + "\n";
  body += event_line("other", "stage", "x", "starting", t) + "\n";
  ASSERT_STATUS(post(body), 200);
  body = event_line("job-7", "stage", "train", "failed", t + 4 * kSecond,
                    R"({"error_details":"Traceback: boom"})") +
         "\n" + event_line("job-7", "run", "job", "failed", t + 5 * kSecond) + "\n";
  ASSERT_STATUS(post(body), 200);

  auto r = get("/api/execution-logs/job-7");
  ASSERT_STATUS(r, 200);
  Json data = Json::parse(r->body)["data"];
  EXPECT_EQ(data["company"], "Acme Corp");
  EXPECT_EQ(data["final_status"], "failed");
  EXPECT_FALSE(data["completed_at"].is_null());
  ASSERT_EQ(data["steps"].size(), 3u);
  EXPECT_EQ(data["steps"][0]["step"], "load");
  EXPECT_EQ(data["steps"][0]["status"], "in_progress");
  EXPECT_EQ(data["steps"][1]["status"], "completed");
  EXPECT_EQ(data["steps"][1]["time_from_start"], "+3.0s");
  EXPECT_EQ(data["steps"][2]["step"], "train");
  EXPECT_EQ(data["steps"][2]["error_details"], "Traceback: boom");
  r = get("/api/v1/executions/job-7");
  ASSERT_STATUS(r, 200);
  EXPECT_EQ(Json::parse(r->body)["steps"][1]["rows"], 12);
  ASSERT_STATUS(get("/api/execution-logs/other"), 200);

  // A new run start of a finished run is a new attempt.
  ASSERT_STATUS(post(event_line("job-7", "run", "job", "starting", t + 10 * kSecond) + "\n"), 200);
  r = get("/api/v1/executions/job-7/attempts");
  ASSERT_STATUS(r, 200);
  EXPECT_EQ(Json::parse(r->body)["attempts"].size(), 2u);
}

TEST_F(ServerTest, AnOpenRunContinuesTheSameExecutionAfterARestart) {
  start();
  const std::int64_t t = clock_.now();
  ASSERT_STATUS(post(event_line("long", "run", "job", "starting", t) + "\n" +
                     event_line("long", "stage", "a", "starting", t + 1) + "\n"),
                200);
  auto r = get("/api/execution-logs/long");
  ASSERT_STATUS(r, 200);
  std::string execution_id = Json::parse(r->body)["data"]["execution_id"];

  start();  // A new Server on the same store: nothing of the run in memory.
  ASSERT_STATUS(post(event_line("long", "stage", "a", "completed", t + 2) + "\n" +
                     event_line("long", "run", "job", "completed", t + 3) + "\n"),
                200);
  r = get("/api/execution-logs/long");
  ASSERT_STATUS(r, 200);
  Json data = Json::parse(r->body)["data"];
  EXPECT_EQ(data["execution_id"], execution_id);
  ASSERT_EQ(data["steps"].size(), 2u);
  EXPECT_EQ(data["steps"][1]["status"], "completed");
  EXPECT_FALSE(data["completed_at"].is_null());
  r = get("/api/v1/executions/long/attempts");
  ASSERT_STATUS(r, 200);
  EXPECT_EQ(Json::parse(r->body)["attempts"].size(), 1u);
}

TEST_F(ServerTest, ARunStartedAgainAfterARestartIsANewAttemptNotANestedRun) {
  start();
  const std::int64_t t = clock_.now();
  // The worker dies in stage a: the attempt stays open.
  ASSERT_STATUS(post(event_line("job7", "run", "job", "starting", t) + "\n" +
                     event_line("job7", "stage", "a", "starting", t + 1) + "\n"),
                200);
  start();  // A new Server on the same store: nothing of the run in memory.
  // The job is retried under the same tracking id.
  ASSERT_STATUS(post(event_line("job7", "run", "job", "starting", t + 10) + "\n" +
                     event_line("job7", "stage", "a", "starting", t + 11) + "\n" +
                     event_line("job7", "stage", "a", "completed", t + 12) + "\n" +
                     event_line("job7", "run", "job", "completed", t + 13) + "\n"),
                200);
  auto r = get("/api/v1/executions/job7/attempts");
  ASSERT_STATUS(r, 200);
  Json attempts = Json::parse(r->body)["attempts"];
  ASSERT_EQ(attempts.size(), 2u) << r->body;
  r = get("/api/execution-logs/job7");
  ASSERT_STATUS(r, 200);
  Json data = Json::parse(r->body)["data"];
  EXPECT_EQ(data["final_status"], "completed");
  EXPECT_EQ(data["total_steps"], 2);
  r = get("/api/v1/executions/job7?attempt=1");
  ASSERT_STATUS(r, 200);
  EXPECT_EQ(Json::parse(r->body)["steps"].size(), 1u) << r->body;
}

TEST_F(ServerTest, ConcurrentBatchesAreAllStoredAndFoldedInOrder) {
  start();
  const std::int64_t t = clock_.now();
  ASSERT_STATUS(post(event_line("shared", "run", "job", "starting", t) + "\n"), 200);
  constexpr int kClients = 3;
  constexpr int kBatches = 10;
  constexpr int kPerBatch = 50;
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int c = 0; c < kClients; ++c) {
    threads.emplace_back([&, c] {
      auto client = make_client();
      for (int b = 0; b < kBatches; ++b) {
        std::string body;
        for (int i = 0; i < kPerBatch; ++i) {
          int n = (c * kBatches + b) * kPerBatch + i;
          body += event_line("shared", "stage", "s", "completed", t + 1 + n,
                             R"({"n":)" + std::to_string(n) + "}") +
                  "\n";
        }
        auto r = client->Post("/api/v1/events", auth(ingest_), body, "application/x-ndjson");
        if (!r || r->status != 200) ++failures;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  auto latest = store_->latest("shared", clock_.now());
  ASSERT_TRUE(latest && *latest);
  ASSERT_EQ((*latest)->steps.size(), std::size_t{kClients * kBatches * kPerBatch});
  std::set<int> seen;
  for (const Step& s : (*latest)->steps) {
    seen.insert(Json::parse(s.custom_json)["n"].get<int>());
  }
  EXPECT_EQ(seen.size(), std::size_t{kClients * kBatches * kPerBatch});
  EXPECT_EQ(stored_events("shared").size(), std::size_t{kClients * kBatches * kPerBatch + 1});
}

// A store whose next write can be held until the test lets it go, failing or not.
class GatedStore final : public test::ForwardingStore {
 public:
  using ForwardingStore::ForwardingStore;

  // The next write blocks in write() until release().
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
  int writes() {
    std::lock_guard lock(mutex_);
    return writes_;
  }

  stagelog::Result<void> write(std::span<const store::EventsWrite> events,
                               std::span<const store::ExecutionWrite> executions) override {
    bool fail = false;
    {
      std::unique_lock lock(mutex_);
      ++writes_;
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
  int writes_ = 0;
};

OwnedEvent writer_event(std::string run, Kind kind, Status status, std::int64_t ts) {
  return test::run_event(std::move(run), kind, status, ts, kind == Kind::Run ? "job" : "step");
}

// The pipeline's failure rule: while write B is in the store, the next request C is folded on
// top of B. B fails: C fails too without reaching the store, and the retry folds from what the
// store really holds.
TEST(IngestWriterTest, AWriteFoldedOnAFailedOneFailsAndTheRetryStartsFromTheStore) {
  TempDir dir;
  store::SqliteStore sqlite(dir.path() / "s.db");
  GatedStore store(sqlite);
  FakeClock clock;
  detail::IngestWriter writer(store, {100, clock.fn()});
  const std::int64_t t = clock.now();
  std::vector<OwnedEvent> a = {writer_event("job", Kind::Run, Status::Starting, t),
                               writer_event("job", Kind::Stage, Status::Starting, t + 1)};
  ASSERT_TRUE(writer.add_events(std::move(a), t + kDay));

  store.hold();
  stagelog::Result<void> b_result;
  std::thread b([&] {
    std::vector<OwnedEvent> b_events = {writer_event("job", Kind::Stage, Status::Completed, t + 2)};
    b_result = writer.add_events(b_events, t + kDay);
  });
  ASSERT_TRUE(eventually([&] { return store.holding_a_write(); }));
  stagelog::Result<void> c_result;
  std::thread c([&] {
    std::vector<OwnedEvent> c_events = {writer_event("job", Kind::Run, Status::Completed, t + 3)};
    c_result = writer.add_events(c_events, t + kDay);
  });
  ASSERT_TRUE(eventually([&] { return writer.write_waiting(); }));  // C is folded.
  store.release(/*fail=*/true);
  b.join();
  c.join();
  ASSERT_FALSE(b_result);
  EXPECT_THAT(b_result.error().what(), HasSubstr("disk I/O error"));
  ASSERT_FALSE(c_result);
  EXPECT_THAT(c_result.error().what(), HasSubstr("disk I/O error"));
  EXPECT_EQ(store.writes(), 2);  // A and B; C never reached the store.

  // The client retries B and C: the attempt continues from A's stored state.
  std::vector<OwnedEvent> retry = {writer_event("job", Kind::Stage, Status::Completed, t + 2),
                                   writer_event("job", Kind::Run, Status::Completed, t + 3)};
  ASSERT_TRUE(writer.add_events(std::move(retry), t + kDay));
  auto latest = sqlite.latest("job", t);
  ASSERT_TRUE(latest && *latest);
  ASSERT_EQ((*latest)->steps.size(), 2u);
  EXPECT_EQ((*latest)->steps[0].status, "in_progress");
  EXPECT_EQ((*latest)->steps[1].status, "completed");
  EXPECT_TRUE((*latest)->completed_at_ns.has_value());
  auto attempts = sqlite.attempts("job", t);
  ASSERT_TRUE(attempts);
  EXPECT_EQ(attempts->size(), 1u);
  EXPECT_EQ(sqlite.events("job", t, 100)->size(), 4u);
}

// The writer's memory bound, tested on the writer itself: the Server does not expose it.
TEST(IngestWriterTest, ClosedRunsLeaveMemoryAndOpenOnesAreCappedWithoutLosingSteps) {
  TempDir dir;
  store::SqliteStore store(dir.path() / "s.db");
  FakeClock clock;
  detail::IngestWriter writer(store, {3, clock.fn()});
  const std::int64_t t = clock.now();
  auto event = writer_event;
  // Ten open runs: at most three stay in memory.
  for (int round = 0; round < 3; ++round) {
    for (int i = 0; i < 10; ++i) {
      std::string run = "open-" + std::to_string(i);
      std::vector<OwnedEvent> batch;
      if (round == 0) batch.push_back(event(run, Kind::Run, Status::Starting, t));
      batch.push_back(event(run, Kind::Stage, Status::Completed, t + 1 + round));
      ASSERT_TRUE(writer.add_events(std::move(batch), t + kDay));
      EXPECT_LE(writer.runs_in_memory(), 3u);
    }
  }
  for (int i = 0; i < 10; ++i) {
    auto latest = store.latest("open-" + std::to_string(i), t);
    ASSERT_TRUE(latest && *latest);
    EXPECT_EQ((*latest)->steps.size(), 3u);  // Every round's step, in one attempt.
    auto attempts = store.attempts("open-" + std::to_string(i), t);
    ASSERT_TRUE(attempts);
    EXPECT_EQ(attempts->size(), 1u);
  }
  // A run that ends leaves memory at once.
  std::vector<OwnedEvent> whole = {event("closed", Kind::Run, Status::Starting, t),
                                   event("closed", Kind::Stage, Status::Completed, t + 1),
                                   event("closed", Kind::Run, Status::Completed, t + 2)};
  ASSERT_TRUE(writer.add_events(std::move(whole), t + kDay));
  for (int i = 0; i < 10; ++i) {
    std::vector<OwnedEvent> end = {
        event("open-" + std::to_string(i), Kind::Run, Status::Completed, t + 9)};
    ASSERT_TRUE(writer.add_events(std::move(end), t + kDay));
  }
  EXPECT_EQ(writer.runs_in_memory(), 0u);
  auto closed = store.latest("closed", t);
  ASSERT_TRUE(closed && *closed);
  EXPECT_TRUE((*closed)->completed_at_ns.has_value());
}

// ---- Listings --------------------------------------------------------------------------------

std::string timestamp_text(std::int64_t ns) {
  std::string out;
  detail::append_iso_timestamp(out, ns);
  return out;
}

// A run of `n` stages (started and completed) posted as events, starting at `start`.
std::string run_lines(const std::string& run, std::int64_t start, int stages,
                      const std::string& fields = "{}") {
  std::string body = event_line(run, "run", run, "starting", start, fields) + "\n";
  for (int i = 0; i < stages; ++i) {
    std::string stage = "S";  // Piecewise: GCC 12 warns falsely (-Wrestrict) on "S" + string.
    stage += std::to_string(i);
    body += event_line(run, "stage", stage, "starting", start + 2 * i + 1) + "\n";
    body += event_line(run, "stage", stage, "completed", start + 2 * i + 2) + "\n";
  }
  return body;
}

std::vector<std::string> listed_ids(const Json& body) {
  std::vector<std::string> out;
  for (const auto& e : body["executions"]) out.push_back(e["tracking_id"].get<std::string>());
  return out;
}

TEST_F(ServerTest, ListsExecutionsNewestFirstWithFiltersAndCursorPages) {
  start();
  const std::int64_t t = clock_.now() - kSecond * 100;
  for (int i = 0; i < 5; ++i) {
    std::string fields = i % 2 == 0 ? R"({"tier":"gold"})" : R"({"tier":"basic"})";
    std::string job = "job-";
    job += std::to_string(i);
    ASSERT_STATUS(post(run_lines(job, t + i * kSecond, 2, fields)), 200);
  }
  // job-4 fails.
  ASSERT_STATUS(post(event_line("job-4", "run", "job-4", "failed", t + 4 * kSecond + 9) + "\n"),
                200);

  auto r = get("/api/v1/executions", read_);
  ASSERT_STATUS(r, 200);
  Json body = Json::parse(r->body);
  EXPECT_EQ(body["success"], true);
  EXPECT_THAT(listed_ids(body), ElementsAre("job-4", "job-3", "job-2", "job-1", "job-0"));
  EXPECT_TRUE(body["next_cursor"].is_null());
  const Json& first = body["executions"][0];
  EXPECT_EQ(first["final_status"], "failed");
  EXPECT_EQ(first["attempt"], 1);
  EXPECT_EQ(first["metadata"]["tier"], "gold");
  EXPECT_TRUE(first["completed_at"].is_string());
  EXPECT_EQ(body["executions"][1]["final_status"], "completed");
  EXPECT_TRUE(body["executions"][1]["completed_at"].is_null());  // Its run never ended.
  EXPECT_EQ(body["executions"][1]["total_steps"], 4);

  body = Json::parse(get("/api/v1/executions?status=failed")->body);
  EXPECT_THAT(listed_ids(body), ElementsAre("job-4"));
  body = Json::parse(get("/api/v1/executions?metadata.tier=gold&status=completed")->body);
  EXPECT_THAT(listed_ids(body), ElementsAre("job-2", "job-0"));
  std::string since = timestamp_text(t + kSecond);
  std::string until = timestamp_text(t + 3 * kSecond);
  body = Json::parse(get("/api/v1/executions?since=" + since + "&until=" + until)->body);
  EXPECT_THAT(listed_ids(body), ElementsAre("job-2", "job-1"));
  body = Json::parse(get("/api/v1/executions?since=1h")->body);  // A duration before now.
  EXPECT_EQ(body["executions"].size(), 5u);

  // Pages of two, while a newer execution arrives between them: nothing repeats or goes missing.
  r = get("/api/v1/executions?limit=2&metadata.tier=gold");
  ASSERT_STATUS(r, 200);
  body = Json::parse(r->body);
  EXPECT_THAT(listed_ids(body), ElementsAre("job-4", "job-2"));
  std::string cursor = body["next_cursor"].get<std::string>();
  ASSERT_STATUS(post(run_lines("job-new", t + 50 * kSecond, 1, R"({"tier":"gold"})")), 200);
  r = get("/api/v1/executions?metadata.tier=gold&limit=2&cursor=" + cursor);
  ASSERT_STATUS(r, 200);
  body = Json::parse(r->body);
  EXPECT_THAT(listed_ids(body), ElementsAre("job-0"));
  EXPECT_TRUE(body["next_cursor"].is_null());
  // The cursor continues that query only.
  r = get("/api/v1/executions?limit=2&status=failed&cursor=" + cursor);
  ASSERT_STATUS(r, 400);
  EXPECT_THAT(Json::parse(r->body)["error"].get<std::string>(), HasSubstr("another query"));
}

TEST_F(ServerTest, ListingRefusesBadParametersWithTheReason) {
  start();
  auto error = [&](const std::string& query) {
    auto r = get("/api/v1/executions?" + query);
    EXPECT_TRUE(r && r->status == 400) << query << ": " << (r ? r->body : "no answer");
    return r ? Json::parse(r->body)["error"].get<std::string>() : std::string();
  };
  EXPECT_THAT(error("color=red"), HasSubstr("unknown parameter \"color\""));
  EXPECT_THAT(error("status=done"), HasSubstr("status: expected completed, failed"));
  EXPECT_THAT(error("limit=0"), HasSubstr("limit: expected a whole number"));
  EXPECT_THAT(error("limit=1001"), HasSubstr("over the maximum of 1000"));
  EXPECT_THAT(error("limit=ten"), HasSubstr("limit: expected a whole number"));
  EXPECT_THAT(error("since=yesterday"), HasSubstr("since: expected a UTC timestamp"));
  EXPECT_THAT(error("since=1h&until=2h"), HasSubstr("since must be before until"));
  EXPECT_THAT(error("metadata.a%20b=1"), HasSubstr("letters, digits"));
  EXPECT_THAT(error("cursor=abc"), HasSubstr("not a cursor"));
  EXPECT_THAT(error("cursor=v1.1.x.0011223344556677"), HasSubstr("not a cursor"));
  EXPECT_THAT(error("q=%21%2A%22"), HasSubstr("holds no word"));
  EXPECT_THAT(error("q="), HasSubstr("q: expected 1 to 1000 bytes, got 0"));
  EXPECT_THAT(error("worker=" + std::string(1001, 'w')), HasSubstr("worker: expected 1 to 1000"));
  EXPECT_THAT(error("stage=%FF"), HasSubstr("stage: not valid UTF-8"));
  EXPECT_THAT(error("worker=a&worker=b"), HasSubstr("worker: given more than once"));
  auto r = client_->Get("/api/v1/executions");
  ASSERT_STATUS(r, 401);
  r = get("/api/v1/executions", ingest_);
  ASSERT_STATUS(r, 403);
}

// ---- Search and statistics -------------------------------------------------------------------

// One event of a stage run by `worker`; a stage end `elapsed_ms` after its start.
std::string worker_line(std::string_view run, std::string_view worker, std::string_view stage,
                        std::string_view status, std::int64_t ts_ns, std::int64_t elapsed_ms = -1,
                        std::string_view error = "") {
  OrderedJson fields = OrderedJson::object();
  if (!error.empty()) fields["error_details"] = error;
  return ndjson_line({.run = run,
                      .stage = stage,
                      .status = status,
                      .ts_ns = ts_ns,
                      .worker = worker,
                      .level = status == "failed" ? "error" : "info",
                      .message = error,
                      .elapsed_ms = elapsed_ms,
                      .fields = std::move(fields)}) +
         "\n";
}

class SearchAndStatsTest : public ServerTest {
 protected:
  // job-a and job-c on gpu-1, job-b on gpu-2; both JUDGE steps time out, after different times.
  void post_jobs() {
    const std::int64_t t = clock_.now() - 100 * kSecond;
    std::string body;
    body += worker_line("job-a", "gpu-1", "AGENT", "starting", t);
    body += worker_line("job-a", "gpu-1", "AGENT", "completed", t + 1200 * kMs, 1200);
    body += worker_line("job-a", "gpu-1", "JUDGE", "starting", t + 2 * kSecond);
    body += worker_line("job-a", "gpu-1", "JUDGE", "failed", t + 3 * kSecond, 1000,
                        "timeout after 480000ms");
    body += worker_line("job-b", "gpu-2", "AGENT", "starting", t + 10 * kSecond);
    body += worker_line("job-b", "gpu-2", "AGENT", "completed", t + 11 * kSecond, 800);
    body += worker_line("job-b", "gpu-2", "JUDGE", "failed", t + 12 * kSecond, 900,
                        "timeout after 300000ms");
    body += worker_line("job-c", "gpu-1", "AGENT", "starting", t + 20 * kSecond);
    body += worker_line("job-c", "gpu-1", "AGENT", "completed", t + 21 * kSecond, 1000);
    body += worker_line("job-c", "gpu-1", "CLEANUP", "completed", t + 22 * kSecond, 5);
    auto r = post(body);
    ASSERT_STATUS(r, 200);
  }

  static constexpr std::int64_t kMs = 1'000'000;
};

TEST_F(SearchAndStatsTest, ListingFiltersByWorkerStageAndFullTextAndPagesThem) {
  start();
  post_jobs();
  auto ids = [&](const std::string& query) {
    auto r = get("/api/v1/executions?" + query, read_);
    EXPECT_TRUE(r && r->status == 200) << query << ": " << (r ? r->body : "no answer");
    return r ? listed_ids(Json::parse(r->body)) : std::vector<std::string>{};
  };
  EXPECT_THAT(ids("worker=gpu-1"), ElementsAre("job-c", "job-a"));
  EXPECT_THAT(ids("worker=gpu-2"), ElementsAre("job-b"));
  EXPECT_THAT(ids("stage=CLEANUP"), ElementsAre("job-c"));
  EXPECT_THAT(ids("q=timeout"), ElementsAre("job-b", "job-a"));
  EXPECT_THAT(ids("q=TIMEOUT%20480000ms"), ElementsAre("job-a"));
  EXPECT_THAT(ids("q=time%2A&worker=gpu-1"), ElementsAre("job-a"));
  EXPECT_THAT(ids("q=%22timeout%22%20OR%20x"), ElementsAre());  // Words, never query syntax.
  EXPECT_THAT(ids("q=timeout&status=completed"), ElementsAre());

  // Pages of one; the cursor belongs to its q.
  auto r = get("/api/v1/executions?q=timeout&limit=1");
  ASSERT_STATUS(r, 200);
  Json body = Json::parse(r->body);
  EXPECT_THAT(listed_ids(body), ElementsAre("job-b"));
  std::string cursor = body["next_cursor"].get<std::string>();
  EXPECT_THAT(ids("q=timeout&limit=1&cursor=" + cursor), ElementsAre("job-a"));
  r = get("/api/v1/executions?q=timeouts&limit=1&cursor=" + cursor);
  ASSERT_STATUS(r, 400);
}

TEST_F(SearchAndStatsTest, StageStatisticsPerStageAndPerWorker) {
  start();
  post_jobs();
  auto r = get("/api/v1/stats/stages?since=1h", read_);
  ASSERT_STATUS(r, 200);
  Json body = Json::parse(r->body);
  EXPECT_EQ(body["group"], "stage");
  EXPECT_EQ(body["interval"], "hour");
  EXPECT_EQ(body["percentile_error"], 0.01);
  const Json& stages = body["stages"];
  ASSERT_EQ(stages.size(), 3u) << body.dump();
  EXPECT_EQ(stages[0]["stage"], "AGENT");
  EXPECT_EQ(stages[0]["count"], 3);
  EXPECT_EQ(stages[0]["failures"], 0);
  EXPECT_EQ(stages[0]["max_ms"], 1200);
  EXPECT_NEAR(stages[0]["p50_ms"].get<double>(), 1000, 10);  // Within 1%.
  EXPECT_NEAR(stages[0]["p99_ms"].get<double>(), 1200, 12);
  EXPECT_FALSE(stages[0]["series"].empty());
  EXPECT_TRUE(stages[0]["series"][0]["start"].get<std::string>().ends_with(":00:00.000Z"));
  EXPECT_EQ(stages[1]["stage"], "CLEANUP");
  EXPECT_EQ(stages[1]["p50_ms"], 5);
  EXPECT_EQ(stages[2]["stage"], "JUDGE");
  EXPECT_EQ(stages[2]["count"], 2);
  EXPECT_EQ(stages[2]["failures"], 2);

  body = Json::parse(get("/api/v1/stats/stages?since=1h&group=worker&interval=day")->body);
  EXPECT_EQ(body["interval"], "day");
  ASSERT_GE(body["stages"].size(), 2u);
  EXPECT_EQ(body["stages"][0]["stage"], "AGENT");
  EXPECT_EQ(body["stages"][0]["worker"], "gpu-1");
  EXPECT_EQ(body["stages"][0]["count"], 2);
  EXPECT_TRUE(
      body["stages"][0]["series"][0]["start"].get<std::string>().ends_with("T00:00:00.000Z"));
  // The default range is 7 days, shown per day.
  body = Json::parse(get("/api/v1/stats/stages")->body);
  EXPECT_EQ(body["interval"], "day");
  EXPECT_EQ(body["stages"].size(), 3u);
}

TEST_F(SearchAndStatsTest, FailuresAreGroupedByTheirMaskedErrorWithExamples) {
  start();
  post_jobs();
  auto r = get("/api/v1/stats/failures?since=1d", read_);
  ASSERT_STATUS(r, 200);
  Json body = Json::parse(r->body);
  ASSERT_EQ(body["patterns"].size(), 1u) << body.dump();
  const Json& p = body["patterns"][0];
  EXPECT_EQ(p["pattern"], "timeout after <n>ms");
  EXPECT_EQ(p["count"], 2);
  EXPECT_EQ(p["stages"], Json::array({"JUDGE"}));
  EXPECT_EQ(p["example_tracking_ids"], Json::array({"job-b", "job-a"}));
  EXPECT_EQ(p["example_error"], "timeout after 300000ms");
  EXPECT_LT(p["first_seen"].get<std::string>(), p["last_seen"].get<std::string>());
  body = Json::parse(get("/api/v1/stats/failures?since=1s")->body);
  EXPECT_TRUE(body["patterns"].empty());
}

TEST_F(SearchAndStatsTest, StatisticsRefuseBadParametersWithTheReason) {
  start();
  auto error = [&](const std::string& path) {
    auto r = get(path);
    EXPECT_TRUE(r && r->status == 400) << path << ": " << (r ? r->body : "no answer");
    return r ? Json::parse(r->body)["error"].get<std::string>() : std::string();
  };
  EXPECT_THAT(error("/api/v1/stats/stages?group=team"),
              HasSubstr("group: expected stage or worker"));
  EXPECT_THAT(error("/api/v1/stats/stages?interval=week"), HasSubstr("interval: expected hour"));
  EXPECT_THAT(error("/api/v1/stats/stages?since=soon"), HasSubstr("since: expected a UTC"));
  EXPECT_THAT(error("/api/v1/stats/stages?since=1h&until=2h"), HasSubstr("since must be before"));
  EXPECT_THAT(error("/api/v1/stats/stages?stage=A"), HasSubstr("unknown parameter \"stage\""));
  EXPECT_THAT(error("/api/v1/stats/stages?group=stage&group=worker"), HasSubstr("more than once"));
  EXPECT_THAT(error("/api/v1/stats/failures?limit=0"), HasSubstr("limit: expected a whole"));
  EXPECT_THAT(error("/api/v1/stats/failures?limit=5000"), HasSubstr("over the maximum"));
  EXPECT_THAT(error("/api/v1/stats/failures?group=stage"), HasSubstr("unknown parameter"));
  ASSERT_STATUS(client_->Get("/api/v1/stats/stages"), 401);
  ASSERT_STATUS(get("/api/v1/stats/failures", ingest_), 403);
}

// ---- Alerts ----------------------------------------------------------------------------------

class AlertsTest : public ServerTest {
 protected:
  // Rules `rules_json` posting to a loopback receiver at /hook; errors collected.
  ServerOptions alert_options(const std::string& rules_json, const std::string& extra = "") {
    ServerOptions o = options();
    o.alerts =
        server::parse_alert_config(R"({"webhooks":[{"name":"hook","url":")" + receiver_.url() +
                                   R"(/hook"}],"rules":)" + rules_json + extra + "}");
    o.on_error = [this](std::string_view message) {
      std::lock_guard lock(errors_mutex_);
      errors_.emplace_back(message);
    };
    return o;
  }

  std::vector<Json> alerts_received() const {
    std::vector<Json> out;
    for (const test::Received& r : receiver_.requests()) {
      if (r.status == 200) out.push_back(Json::parse(r.lines.at(0)));
    }
    return out;
  }
  std::size_t count_of(const std::string& rule) const {
    auto all = alerts_received();
    return static_cast<std::size_t>(
        std::count_if(all.begin(), all.end(), [&](const Json& a) { return a["rule"] == rule; }));
  }
  // Waits until `n` alerts of `rule` arrived. Deliveries go out in the order alerts fire, so
  // once a later alert arrives, every earlier one has too.
  bool wait_for(const std::string& rule, std::size_t n) const {
    return eventually([&] { return count_of(rule) >= n; });
  }
  std::vector<std::string> errors() {
    std::lock_guard lock(errors_mutex_);
    return errors_;
  }

  std::string failed(std::string_view stage, std::int64_t ts, std::string_view error = "boom") {
    return worker_line("job-" + std::to_string(ts), "gpu-1", stage, "failed", ts, 10, error);
  }

  test::Receiver receiver_{0, test::kDefaultPatience, "/hook"};
  std::mutex errors_mutex_;
  std::vector<std::string> errors_;
};

TEST_F(AlertsTest, RepeatedFailuresPostOneAlertPerIncidentAndAgainAfterTheCooldown) {
  start(alert_options(R"([
      {"name": "judge", "type": "repeated_failures", "stage": "JUDGE", "count": 3,
       "window": "10m", "cooldown": "1h"},
      {"name": "marker", "type": "repeated_failures", "stage": "MARKER", "count": 1,
       "cooldown": "0"}])"));
  const std::int64_t t = clock_.now();
  std::string body;
  for (int i = 0; i < 6; ++i) body += failed("JUDGE", t + i * kSecond, "timeout after 480000ms");
  ASSERT_STATUS(post(body), 200);
  body.clear();
  for (int i = 6; i < 10; ++i) body += failed("JUDGE", t + i * kSecond);
  ASSERT_STATUS(post(body), 200);
  ASSERT_STATUS(post(failed("MARKER", t + 11 * kSecond)), 200);
  ASSERT_TRUE(wait_for("marker", 1));
  EXPECT_EQ(count_of("judge"), 1u);  // Ten failures, one incident.

  test::Received first = receiver_.requests().at(0);
  Json alert = Json::parse(first.lines.at(0));
  EXPECT_EQ(alert["type"], "repeated_failures");
  EXPECT_EQ(alert["stage"], "JUDGE");
  EXPECT_EQ(alert["count"], 3);
  EXPECT_EQ(alert["window_s"], 600);
  EXPECT_EQ(alert["last_error"], "timeout after 480000ms");
  EXPECT_THAT(alert["summary"].get<std::string>(), HasSubstr("3 failures of stage JUDGE"));
  EXPECT_EQ(first.header("X-Stagelog-Alert-Id"), alert["alert_id"]);
  EXPECT_EQ(first.content_type, "application/json");

  // Two hours later the stage fails again: a new incident.
  body.clear();
  for (int i = 0; i < 3; ++i) body += failed("JUDGE", t + 2 * 3600 * kSecond + i * kSecond);
  ASSERT_STATUS(post(body), 200);
  ASSERT_STATUS(post(failed("MARKER", t + 3 * 3600 * kSecond)), 200);
  ASSERT_TRUE(wait_for("marker", 2));
  EXPECT_EQ(count_of("judge"), 2u);

  Json listed = Json::parse(get("/api/v1/alerts", read_)->body);
  ASSERT_EQ(listed["alerts"].size(), 4u);
  EXPECT_EQ(listed["alerts"][0]["rule"], "marker");  // Newest first.
  EXPECT_EQ(listed["alerts"][1]["rule"], "judge");
  ASSERT_STATUS(client_->Get("/api/v1/alerts"), 401);
  auto bad = get("/api/v1/alerts?rule=judge");
  ASSERT_STATUS(bad, 400);
  EXPECT_EQ(Json::parse(bad->body)["error"], "unknown parameter \"rule\" (this route takes none)");
  EXPECT_TRUE(errors().empty());
}

TEST_F(AlertsTest, AFailedDeliveryIsRetriedWithTheSameAlertIdAndAGiveUpIsReported) {
  int answered = 0;
  receiver_.set_policy([&](const test::Received&) {
    return test::Reply{++answered == 1 ? 500 : 200, "{}", false};
  });
  test::Receiver gone(0, test::kDefaultPatience, "/x");
  std::string gone_url = gone.url();
  gone.stop();  // Nothing listens there now.
  // A second webhook that never answers, added to the parsed config.
  ServerOptions o = alert_options(R"([{"name": "any", "type": "repeated_failures", "count": 1}])",
                                  R"(,"retry": {"attempts": 2, "first_delay": "10ms"})");
  o.alerts.webhooks.push_back(server::Webhook{"gone", gone_url + "/x", {}, {}});
  start(std::move(o));
  ASSERT_STATUS(post(failed("AGENT", clock_.now())), 200);
  ASSERT_TRUE(receiver_.wait_for_requests(2));
  auto requests = receiver_.requests();
  EXPECT_EQ(requests[0].status, 500);
  EXPECT_EQ(requests[1].status, 200);
  EXPECT_EQ(requests[0].header("X-Stagelog-Alert-Id"), requests[1].header("X-Stagelog-Alert-Id"));
  EXPECT_EQ(requests[0].lines, requests[1].lines);
  ASSERT_TRUE(eventually([&] { return !errors().empty(); }));
  EXPECT_THAT(errors()[0], HasSubstr("to webhook gone: gave up after 2 attempts"));
}

TEST_F(AlertsTest, AStuckWorkerAlertsOncePerIncidentWhateverTheWatchdogRepeats) {
  start(alert_options(R"([{"name": "stuck", "type": "stuck", "cooldown": "1h"}])"));
  const std::int64_t t = clock_.now();
  ASSERT_STATUS(post(worker_line("job-1", "gpu-1", "AGENT", "starting", t)), 200);
  clock_.advance(std::chrono::seconds(301));  // Past the stage threshold (300 s).
  ASSERT_TRUE(wait_for("stuck", 1));
  Json alert = alerts_received().at(0);
  EXPECT_EQ(alert["type"], "stuck");
  EXPECT_EQ(alert["watchdog_rule"], "stuck_stage");
  EXPECT_EQ(alert["worker"], "gpu-1");
  EXPECT_EQ(alert["stage"], "AGENT");
  EXPECT_THAT(alert["summary"].get<std::string>(), HasSubstr("gpu-1"));
  // The watchdog warns again later (its backoff); still the same incident.
  clock_.advance(std::chrono::seconds(1200));
  ASSERT_TRUE(eventually([&] {
    auto m = get("/metrics", read_);
    return m && m->body.find("\nstagelog_stuck_total 2\n") != std::string::npos;
  }));
  Json listed = Json::parse(get("/api/v1/alerts", read_)->body);
  EXPECT_EQ(listed["alerts"].size(), 1u);
}

TEST_F(AlertsTest, ASlowStageIsJudgedAgainstTheWeekBeforeTheLastHour) {
  start(alert_options(R"([{"name": "slow", "type": "slow_stage", "factor": 2, "min_count": 20}])",
                      R"(,"evaluate_every": "20ms")"));
  const std::int64_t now = clock_.now();
  auto put = [&](const std::string& id, const std::string& stage, std::int64_t at,
                 std::int64_t ms) {
    Execution e;
    e.tracking_id = id;
    e.execution_id = "exec_" + id;
    e.started_at_ns = at - ms * kMs;
    Step s;
    s.step = stage;
    s.timestamp_ns = at;
    s.status = "completed";
    s.custom_json = R"({"duration_ms":)" + std::to_string(ms) + "}";
    e.steps.push_back(s);
    ASSERT_TRUE(store_->put_execution(e, now + 7 * 24 * 3600 * kSecond));
  };
  for (int i = 0; i < 200; ++i) {  // The week: about a second; the last hour: five.
    put("w" + std::to_string(i), "AGENT", now - (2 + i % 100) * 3600 * kSecond, 1000 + i);
    put("j" + std::to_string(i), "JUDGE", now - (2 + i % 100) * 3600 * kSecond, 1000 + i);
  }
  for (int i = 0; i < 30; ++i) {
    put("h" + std::to_string(i), "AGENT", now - (i + 1) * 60 * kSecond, 5000 + i);
    put("k" + std::to_string(i), "JUDGE", now - (i + 1) * 60 * kSecond, 1000 + i);
  }
  ASSERT_TRUE(wait_for("slow", 1));
  Json alert = alerts_received().at(0);
  EXPECT_EQ(alert["stage"], "AGENT");
  EXPECT_NEAR(alert["p95_last_hour_ms"].get<double>(), 5028, 60);
  EXPECT_NEAR(alert["p95_7d_ms"].get<double>(), 1190, 15);
  // Another stage turns slow: a later evaluation, and still one alert for AGENT.
  for (int i = 0; i < 30; ++i) {
    put("late" + std::to_string(i), "LATE", now - 7200 * kSecond, 100);
    put("now" + std::to_string(i), "LATE", now - (i + 1) * 60 * kSecond, 900);
  }
  ASSERT_TRUE(wait_for("slow", 2));
  auto all = alerts_received();
  EXPECT_EQ(all.at(1)["stage"], "LATE");
  EXPECT_EQ(
      std::count_if(all.begin(), all.end(), [](const Json& a) { return a["stage"] == "AGENT"; }),
      1);
}

// The rows of a CSV text as Python's csv module reads them, as JSON.
Json rows_by_python_csv(const std::filesystem::path& dir, const std::string& csv) {
  auto path = dir / "export.csv";
  {
    std::ofstream out(path, std::ios::binary);
    out << csv;
  }
  std::string command =
      "python3 -c 'import csv, json, sys; "
      "print(json.dumps(list(csv.reader(open(sys.argv[1], newline=\"\", "
      "encoding=\"utf-8\"), strict=True))))' " +
      path.string();
  std::string output;
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return Json();
  char buf[4096];
  for (std::size_t n; (n = std::fread(buf, 1, sizeof buf, pipe)) > 0;) output.append(buf, n);
  if (pclose(pipe) != 0) return Json();
  return Json::parse(output, nullptr, false);
}

TEST_F(ServerTest, CsvExportHasOneRowPerStepAndParsesBackWithPythonsCsv) {
  if (std::system("command -v python3 >/dev/null 2>&1") != 0) {
    GTEST_SKIP() << "python3 is not on PATH (CI installs it)";
  }
  start();
  ASSERT_STATUS(put("/api/v1/executions/60B3RNTB", kSeed004Document), 200);
  const std::int64_t t = clock_.now();
  ASSERT_STATUS(post(run_lines("job,\"1\"", t, 1, R"({"note":"a, \"b\"\nc"})")), 200);
  // Many attempts: more than one page of the export.
  for (int i = 0; i < 450; ++i) {
    std::string run = "bulk-";
    run += std::to_string(i);
    ASSERT_STATUS(post(run_lines(run, t - 1000 * kSecond + i, 1)), 200);
  }

  auto r = get("/api/v1/executions.csv", read_);
  ASSERT_STATUS(r, 200);
  EXPECT_EQ(r->get_header_value("Content-Type"), "text/csv; charset=utf-8");
  Json rows = rows_by_python_csv(dir_.path(), r->body);
  ASSERT_TRUE(rows.is_array()) << "Python's csv module could not read it";
  ASSERT_EQ(rows.size(), 1u + 2 + 450 * 2 + 4);  // Header, job, bulk, the seed's 4 steps.
  EXPECT_EQ(rows[0][0], "tracking_id");
  EXPECT_EQ(rows[0][14], "metadata");
  // Then the steps' custom fields: those folded from events carry their worker.
  EXPECT_EQ(rows[0].size(), 16u);
  EXPECT_EQ(rows[0][15], "worker");
  for (const auto& row : rows) EXPECT_EQ(row.size(), 16u);
  // Newest first: the job (now), then the bulk runs, the seed document (2024) last.
  EXPECT_EQ(rows[1][0], "job,\"1\"");
  EXPECT_EQ(rows[1][8], "S0");
  EXPECT_EQ(rows[1][9], "in_progress");
  EXPECT_EQ(Json::parse(rows[1][14].get<std::string>())["note"], "a, \"b\"\nc");
  const Json& last = rows[rows.size() - 1];
  EXPECT_EQ(last[0], "60B3RNTB");
  EXPECT_EQ(last[7], "4");
  EXPECT_EQ(last[9], "failed");
  EXPECT_EQ(last[11], "150000");                              // time_from_start_ms
  EXPECT_THAT(last[13].get<std::string>(), HasSubstr("\n"));  // Error details, line breaks kept.

  // The listing's filters apply.
  r = get("/api/v1/executions.csv?status=failed", read_);
  ASSERT_STATUS(r, 200);
  rows = rows_by_python_csv(dir_.path(), r->body);
  ASSERT_TRUE(rows.is_array());
  EXPECT_EQ(rows.size(), 1u + 4);
  ASSERT_STATUS(get("/api/v1/executions.csv?limit=5"), 400);
  ASSERT_STATUS(get("/api/v1/executions.csv?status=nope"), 400);
}

// Seed 004's own example of custom step fields ("Custom metadata", "Error classification"):
// each becomes a column, in order of first appearance, and Python's csv module reads every
// cell back whole; ?fields= chooses them; the JSONL export has the same rows with JSON types.
TEST_F(ServerTest, ExportsKeepTheSeedsCustomStepFields) {
  if (std::system("command -v python3 >/dev/null 2>&1") != 0) {
    GTEST_SKIP() << "python3 is not on PATH (CI installs it)";
  }
  start();
  const std::string document = R"json({
    "tracking_id": "60B3RNTB",
    "execution_id": "exec_1703123456789_xyz123abc",
    "started_at": "2024-01-15T10:30:00.000Z",
    "company": "Acme Corp",
    "steps": [
      {"step": "initialization", "timestamp": "2024-01-15T10:30:00.000Z", "status": "completed",
       "message": "Started processing for Acme Corp (comprehensive tier)"},
      {"step": "complex_operation", "timestamp": "2024-01-15T10:31:00.000Z", "status": "failed",
       "message": "Complex operation failed: timeout, \"model\" busy",
       "error_details": "Error: timeout\n    at AIService.generateContent (worker.js:1234:56)",
       "retry_attempt": 2,
       "operation_params": {"model": "gpt-4", "max_tokens": 4096, "stop": ["\n", ","]}},
      {"step": "operation_name", "timestamp": "2024-01-15T10:32:00.000Z", "status": "failed",
       "message": "Clear description: timeout", "error_details": "Error: timeout",
       "error_code": "=ETIMEDOUT", "retry_possible": true, "retry_attempt": -1,
       "duration_ms": 1500}
    ]})json";
  ASSERT_STATUS(put("/api/v1/executions/60B3RNTB", document), 200);

  auto r = get("/api/v1/executions.csv", read_);
  ASSERT_STATUS(r, 200);
  Json rows = rows_by_python_csv(dir_.path(), r->body);
  ASSERT_TRUE(rows.is_array()) << "Python's csv module could not read it";
  ASSERT_EQ(rows.size(), 4u);
  const std::vector<std::string> header = rows[0];
  ASSERT_EQ(header.size(), 20u);
  // Named like the attempt's own column: step.duration_ms.
  EXPECT_THAT(std::vector<std::string>(header.begin() + 15, header.end()),
              ElementsAre("retry_attempt", "operation_params", "error_code", "retry_possible",
                          "step.duration_ms"));
  for (const auto& row : rows) EXPECT_EQ(row.size(), 20u);
  EXPECT_EQ(rows[1][8], "initialization");
  for (int c = 15; c < 20; ++c) EXPECT_EQ(rows[1][c], "");  // Absent: empty.
  EXPECT_EQ(rows[2][8], "complex_operation");
  EXPECT_EQ(rows[2][12], "Complex operation failed: timeout, \"model\" busy");
  EXPECT_EQ(rows[2][13], "Error: timeout\n    at AIService.generateContent (worker.js:1234:56)");
  EXPECT_EQ(rows[2][15], "2");
  EXPECT_EQ(Json::parse(rows[2][16].get<std::string>()),
            Json::parse(R"({"model": "gpt-4", "max_tokens": 4096, "stop": ["\n", ","]})"));
  EXPECT_EQ(rows[3][15], "-1");           // A number stays one.
  EXPECT_EQ(rows[3][17], "'=ETIMEDOUT");  // Text that a spreadsheet would run does not run.
  EXPECT_EQ(rows[3][18], "true");
  EXPECT_EQ(rows[3][19], "1500");

  // Chosen fields, in the order asked; none; bad lists.
  r = get("/api/v1/executions.csv?fields=error_code,retry_attempt&status=failed", read_);
  ASSERT_STATUS(r, 200);
  rows = rows_by_python_csv(dir_.path(), r->body);
  ASSERT_TRUE(rows.is_array());
  ASSERT_EQ(rows[0].size(), 17u);
  EXPECT_EQ(rows[0][15], "error_code");
  EXPECT_EQ(rows[0][16], "retry_attempt");
  EXPECT_EQ(rows[3][15], "'=ETIMEDOUT");
  r = get("/api/v1/executions.csv?fields=", read_);
  ASSERT_STATUS(r, 200);
  rows = rows_by_python_csv(dir_.path(), r->body);
  ASSERT_TRUE(rows.is_array());
  EXPECT_EQ(rows[0].size(), 15u);
  ASSERT_STATUS(get("/api/v1/executions.csv?fields=a,,b"), 400);
  ASSERT_STATUS(get("/api/v1/executions.csv?fields=a,a"), 400);
  ASSERT_STATUS(get("/api/v1/executions.csv?fields=a&fields=b"), 400);

  // JSONL: the same rows, every custom field with its JSON type.
  r = get("/api/v1/executions.jsonl", read_);
  ASSERT_STATUS(r, 200);
  EXPECT_EQ(r->get_header_value("Content-Type"), "application/x-ndjson");
  std::vector<OrderedJson> lines;
  std::istringstream in(r->body);
  for (std::string line; std::getline(in, line);) lines.push_back(OrderedJson::parse(line));
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[0]["step"], "initialization");
  EXPECT_FALSE(lines[0].contains("retry_attempt"));
  EXPECT_EQ(lines[1]["retry_attempt"], 2);
  EXPECT_EQ(lines[1]["operation_params"]["stop"][1], ",");
  EXPECT_EQ(lines[1]["metadata"]["company"], "Acme Corp");
  EXPECT_EQ(lines[2]["error_code"], "=ETIMEDOUT");  // JSON is not a spreadsheet.
  EXPECT_EQ(lines[2]["retry_possible"], true);
  EXPECT_EQ(lines[2]["step.duration_ms"], 1500);
  EXPECT_EQ(lines[2]["duration_ms"], nullptr);  // The attempt's: not completed.
  r = get("/api/v1/executions.jsonl?fields=retry_possible", read_);
  ASSERT_STATUS(r, 200);
  EXPECT_THAT(r->body, HasSubstr(R"("retry_possible":true)"));
  EXPECT_THAT(r->body, ::testing::Not(HasSubstr("retry_attempt")));
}

// GET /api/v1/report in its three formats, with a read token, and its bad parameters.
TEST_F(ServerTest, ReportIsServedAsJsonMarkdownAndHtml) {
  start();
  const std::int64_t t = clock_.now();
  ASSERT_STATUS(post(run_lines("job-1", t - 3600 * kSecond, 2)), 200);
  auto r = get("/api/v1/report?since=24h", read_);
  ASSERT_STATUS(r, 200);
  Json report = Json::parse(r->body);
  EXPECT_EQ(report["current"]["executions"], 1);
  EXPECT_EQ(report["period"], "24h");
  EXPECT_TRUE(report["workers"].is_array());
  EXPECT_TRUE(report["alerts"].is_array());
  r = get("/api/v1/report?since=24h&format=md", read_);
  ASSERT_STATUS(r, 200);
  EXPECT_EQ(r->get_header_value("Content-Type"), "text/markdown; charset=utf-8");
  EXPECT_THAT(r->body, HasSubstr("# stagelog report: the last 24h"));
  r = get("/api/v1/report?since=7d&format=html", read_);
  ASSERT_STATUS(r, 200);
  EXPECT_EQ(r->get_header_value("Content-Type"), "text/html; charset=utf-8");
  EXPECT_THAT(r->get_header_value("Content-Security-Policy"), HasSubstr("default-src 'none'"));
  EXPECT_THAT(r->body, HasSubstr("<!DOCTYPE html>"));
  EXPECT_THAT(r->body, ::testing::Not(HasSubstr("<script")));
  ASSERT_STATUS(client_->Get("/api/v1/report"), 401);
  ASSERT_STATUS(get("/api/v1/report?format=pdf"), 400);
  ASSERT_STATUS(get("/api/v1/report?since=soon"), 400);
  ASSERT_STATUS(get("/api/v1/report?since=800d"), 400);
  ASSERT_STATUS(get("/api/v1/report?limit=3"), 400);
}

TEST_F(ServerTest, ARunsEventsComeInPagesInOrder) {
  start();
  const std::int64_t t = clock_.now();
  ASSERT_STATUS(post(run_lines("job", t, 2)), 200);
  std::vector<std::string> seen;
  std::string query = "/api/v1/executions/job/events?limit=2";
  for (int page = 0; page < 10; ++page) {
    auto r = get(query, read_);
    ASSERT_STATUS(r, 200);
    Json body = Json::parse(r->body);
    EXPECT_EQ(body["tracking_id"], "job");
    for (const auto& e : body["events"]) {
      seen.push_back(e["kind"].get<std::string>() + ":" + e["stage"].get<std::string>() + ":" +
                     e["status"].get<std::string>());
      EXPECT_EQ(e["run"], "job");
    }
    if (body["next_cursor"].is_null()) break;
    query =
        "/api/v1/executions/job/events?limit=2&cursor=" + body["next_cursor"].get<std::string>();
  }
  EXPECT_THAT(seen, ElementsAre("run:job:starting", "stage:S0:starting", "stage:S0:completed",
                                "stage:S1:starting", "stage:S1:completed"));
  auto r = get("/api/v1/executions/other/events");
  ASSERT_STATUS(r, 200);
  EXPECT_TRUE(Json::parse(r->body)["events"].empty());
  ASSERT_STATUS(get("/api/v1/executions/job/events?color=red"), 400);
  // A cursor of one run's events does not continue another's.
  auto first = Json::parse(get("/api/v1/executions/job/events?limit=1")->body);
  ASSERT_STATUS(
      get("/api/v1/executions/other/events?cursor=" + first["next_cursor"].get<std::string>()),
      400);
}

// ---- Live: workers and metrics ---------------------------------------------------------------

// Checks `text` against the Prometheus text exposition format 0.0.4, strictly: every sample
// belongs to a family announced by one # TYPE line before it, the family's samples stand
// together, names and labels are well formed, label values escaped, no series repeats, and a
// histogram's buckets are cumulative, end at le="+Inf" and agree with its _count. Returns the
// problems, one per line; "" when there is none.
std::string exposition_problems(const std::string& text) {
  static const std::regex kSample(
      R"(([a-zA-Z_:][a-zA-Z0-9_:]*)(\{((?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*")(?:,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*")*)\})? (-?[0-9]+(?:\.[0-9]+)?(?:e[+-]?[0-9]+)?|\+Inf|-Inf|NaN))");
  static const std::regex kType(
      R"(# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped))");
  static const std::regex kHelp(R"(# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) .*)");
  std::string problems;
  auto problem = [&](const std::string& p) { problems += p + "\n"; };
  if (text.empty() || text.back() != '\n') problem("does not end with a newline");
  std::map<std::string, std::string> types;  // family -> type
  std::set<std::string> closed;              // families whose samples have ended
  std::set<std::string> series;
  std::string current;
  // Histogram checks: per series without le, the last bucket value and whether +Inf came.
  std::map<std::string, double> last_bucket, inf_bucket, counts;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    std::smatch m;
    if (line.starts_with("# HELP ")) {
      if (!std::regex_match(line, kHelp)) problem("bad HELP: " + line);
      continue;
    }
    if (line.starts_with("# TYPE ")) {
      if (!std::regex_match(line, m, kType)) {
        problem("bad TYPE: " + line);
        continue;
      }
      if (types.contains(m[1])) problem("second TYPE for " + m[1].str());
      types[m[1]] = m[2];
      continue;
    }
    if (line.starts_with("#")) continue;
    if (!std::regex_match(line, m, kSample)) {
      problem("bad sample line: " + line);
      continue;
    }
    std::string name = m[1];
    std::string labels = m[3];
    std::string family = name;
    for (const char* suffix : {"_bucket", "_sum", "_count"}) {
      std::string base = name.substr(0, name.size() - std::min(name.size(), std::strlen(suffix)));
      if (name.ends_with(suffix) && types.contains(base) && types[base] == "histogram") {
        family = base;
      }
    }
    if (!types.contains(family)) problem("sample before its TYPE: " + line);
    if (family != current) {
      if (closed.contains(family)) problem("samples of " + family + " not together");
      if (!current.empty()) closed.insert(current);
      current = family;
    }
    if (!series.insert(name + "{" + labels + "}").second) problem("repeated series: " + line);
    double value = m[4] == "+Inf" ? INFINITY : std::stod(m[4]);
    if (types[family] == "histogram") {
      std::string key = labels;
      std::size_t le = key.find("le=\"");
      if (name.ends_with("_bucket")) {
        if (le == std::string::npos) {
          problem("bucket without le: " + line);
          continue;
        }
        std::string bound = key.substr(le + 4, key.find('"', le + 4) - le - 4);
        key.erase(le > 0 ? le - 1 : le);  // The labels before le.
        if (last_bucket.contains(key) && value < last_bucket[key]) {
          problem("buckets not cumulative: " + line);
        }
        last_bucket[key] = value;
        if (bound == "+Inf") inf_bucket[key] = value;
      } else if (name.ends_with("_count")) {
        counts[key] = value;
      }
    }
  }
  for (const auto& [key, count] : counts) {
    if (!inf_bucket.contains(key)) {
      problem("no +Inf bucket for {" + key + "}");
    } else if (inf_bucket[key] != count) {
      problem("+Inf bucket differs from _count for {" + key + "}");
    }
  }
  return problems;
}

TEST(ExpositionCheckTest, CatchesWhatItMustCatch) {
  EXPECT_EQ(exposition_problems("# TYPE a counter\na 1\n"), "");
  EXPECT_NE(exposition_problems("a 1\n"), "");                           // No TYPE.
  EXPECT_NE(exposition_problems("# TYPE a counter\na{x=\"1} 1\n"), "");  // Bad label.
  EXPECT_NE(exposition_problems("# TYPE a counter\na 1\na 2\n"), "");    // Repeated.
  EXPECT_NE(exposition_problems("# TYPE h histogram\nh_bucket{le=\"1\"} 2\n"
                                "h_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n"),
            "");  // Not cumulative.
  EXPECT_NE(exposition_problems("# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\n"
                                "h_count 2\n"),
            "");  // +Inf differs from count.
  EXPECT_NE(exposition_problems("# TYPE a gauge\n# TYPE b gauge\na 1\nb 1\na{x=\"y\"} 2\n"),
            "");  // Not together.
}

TEST_F(ServerTest, WorkersAndMetricsShowWhatWasIngested) {
  start();
  const std::int64_t t = clock_.now();
  auto line = [&](const std::string& worker, const std::string& stage, const std::string& status,
                  std::int64_t ts, std::int64_t elapsed_ns) {
    std::string run = "job-";  // Piecewise: GCC 12 warns falsely (-Wrestrict) on "job-" + s.
    run += worker;
    OrderedJson j = OrderedJson::parse(event_line(run, "stage", stage, status, ts));
    j["worker"] = worker;
    if (elapsed_ns >= 0) j["elapsed_ns"] = elapsed_ns;
    return j.dump() + "\n";
  };
  ASSERT_STATUS(post(line("gpu-1", "AGENT", "starting", t, -1) +
                     line("gpu-2", "AGENT \"quoted\"", "starting", t, -1) +
                     line("gpu-2", "AGENT \"quoted\"", "completed", t + 1500 * kMs, 1500 * kMs) +
                     line("gpu-2", "JUDGE", "starting", t + 1600 * kMs, -1) +
                     line("gpu-2", "JUDGE", "failed", t + 1700 * kMs, 100 * kMs)),
                200);

  auto r = get("/api/v1/workers", read_);
  ASSERT_STATUS(r, 200);
  Json body = Json::parse(r->body);
  ASSERT_EQ(body["workers"].size(), 2u);
  const Json& gpu1 = body["workers"][0];
  EXPECT_EQ(gpu1["worker"], "gpu-1");
  EXPECT_EQ(gpu1["state"], "running");
  EXPECT_EQ(gpu1["stage"], "AGENT");
  EXPECT_EQ(body["workers"][1]["state"], "idle");
  EXPECT_EQ(body["workers"][1]["stages_done"], 1);
  EXPECT_EQ(body["workers"][1]["stages_failed"], 1);

  r = get("/metrics", read_);
  ASSERT_STATUS(r, 200);
  EXPECT_EQ(r->get_header_value("Content-Type"), "text/plain; version=0.0.4; charset=utf-8");
  EXPECT_EQ(exposition_problems(r->body), "") << r->body;
  EXPECT_THAT(r->body, HasSubstr("\nstagelog_events_ingested_total 5\n"));
  EXPECT_THAT(
      r->body,
      HasSubstr(
          R"(stagelog_stage_duration_seconds_bucket{stage="AGENT \"quoted\"",status="completed",le="1"} 0)"));
  EXPECT_THAT(
      r->body,
      HasSubstr(
          R"(stagelog_stage_duration_seconds_bucket{stage="AGENT \"quoted\"",status="completed",le="2.5"} 1)"));
  EXPECT_THAT(
      r->body,
      HasSubstr(
          R"(stagelog_stage_duration_seconds_sum{stage="AGENT \"quoted\"",status="completed"} 1.5)"));
  EXPECT_THAT(
      r->body,
      HasSubstr(R"(stagelog_stage_duration_seconds_count{stage="JUDGE",status="failed"} 1)"));
  EXPECT_THAT(r->body, HasSubstr("stagelog_workers{state=\"running\"} 1\n"));
  EXPECT_THAT(r->body, HasSubstr("stagelog_workers{state=\"idle\"} 1\n"));
  EXPECT_THAT(r->body, HasSubstr("\nstagelog_open_stages 1\n"));
  EXPECT_THAT(r->body, HasSubstr("\nstagelog_stuck_total 0\n"));

  // gpu-1's stage passes its threshold (300 s): flagged stuck, and counted once.
  clock_.advance(std::chrono::seconds(301));
  ASSERT_TRUE(eventually([&] {
    auto m = get("/metrics", read_);
    return m && m->body.find("\nstagelog_stuck_total 1\n") != std::string::npos;
  }));
  body = Json::parse(get("/api/v1/workers", read_)->body);
  EXPECT_EQ(body["workers"][0]["state"], "stuck");
  EXPECT_GE(body["workers"][0]["time_in_stage_ms"].get<std::int64_t>(), 301000);
  ASSERT_STATUS(client_->Get("/metrics"), 401);
  ASSERT_STATUS(get("/api/v1/workers", ingest_), 403);
}

// ---- Retention -------------------------------------------------------------------------------

TEST_F(ServerTest, ExpiredDataIsNeverReturnedAndPurgeRemovesIt) {
  ServerOptions o = options();
  o.max_retention = std::chrono::hours(24 * 10);
  start(o);
  const std::int64_t t0 = clock_.now();
  ASSERT_STATUS(
      put("/api/v1/executions/seven",
          std::string(kSeed004Document).replace(kSeed004Document.find("60B3RNTB"), 8, "seven")),
      200);
  Json three = Json::parse(kSeed004Document);
  three["tracking_id"] = "three";
  ASSERT_STATUS(put("/api/v1/executions/three?retention=3d", three.dump()), 200);
  Json capped = Json::parse(kSeed004Document);
  capped["tracking_id"] = "capped";
  ASSERT_STATUS(put("/api/v1/executions/capped?retention=30d", capped.dump()), 200);
  ASSERT_STATUS(post(event_line("ev", "log", "", "", t0) + "\n", "/api/v1/events?retention=1h"),
                200);

  clock_.set(t0 + 3 * kDay - 1);
  ASSERT_STATUS(get("/api/execution-logs/three"), 200);
  clock_.set(t0 + 3 * kDay);
  ASSERT_STATUS(get("/api/execution-logs/three"), 404);  // Expired, not purged yet:
  auto still = store_->latest("three", t0);
  ASSERT_TRUE(still);
  EXPECT_TRUE(still->has_value());
  ASSERT_STATUS(get("/api/execution-logs/seven"), 200);

  clock_.set(t0 + 7 * kDay);
  ASSERT_STATUS(get("/api/execution-logs/seven"), 404);
  ASSERT_STATUS(get("/api/execution-logs/capped"), 200);
  clock_.set(t0 + 10 * kDay);
  ASSERT_STATUS(get("/api/execution-logs/capped"), 404);  // 30d asked, 10d kept.

  auto removed = server_->purge();
  ASSERT_TRUE(removed);
  EXPECT_EQ(*removed, 4u);  // Three attempts and one event.
  still = store_->latest("three", t0);
  ASSERT_TRUE(still);
  EXPECT_FALSE(still->has_value());
}

TEST_F(ServerTest, ThePurgeThreadRemovesExpiredData) {
  ServerOptions o = options();
  o.purge_interval = 5ms;
  start(o);
  const std::int64_t t0 = clock_.now();
  ASSERT_STATUS(put("/api/v1/executions/60B3RNTB?retention=1h", kSeed004Document), 200);
  clock_.set(t0 + 2 * 3600 * kSecond);
  // Bounded: the thread runs every 5 ms; give it up to 10 s.
  bool gone = false;
  for (int i = 0; i < 2000 && !gone; ++i) {
    auto list = store_->attempts("60B3RNTB", t0);
    ASSERT_TRUE(list);
    gone = list->empty();
    if (!gone) std::this_thread::sleep_for(5ms);
  }
  EXPECT_TRUE(gone);
}

// ---- Connections -----------------------------------------------------------------------------

TEST_F(ServerTest, SlowAndSilentClientsAreTimedOutWithoutBlockingOthers) {
  ServerOptions o = options();
  o.threads = 4;
  o.read_timeout = 200ms;
  o.keep_alive_timeout = 1s;
  start(o);
  RawConnection silent(server_->port());  // Connects and never sends.
  RawConnection slow(server_->port());    // Starts a request and stops half way.
  ASSERT_TRUE(silent.connected());
  ASSERT_TRUE(slow.connected());
  slow.send("GET /api/execution-logs/X HTTP/1.1\r\nHost: x\r\nAuthor");
  // Others are served meanwhile.
  for (int i = 0; i < 5; ++i) ASSERT_STATUS(client_->Get("/healthz"), 200);
  ASSERT_STATUS(get("/api/execution-logs/X"), 404);
  EXPECT_TRUE(slow.closed_within(10s));
  EXPECT_TRUE(silent.closed_within(10s));
  ASSERT_STATUS(client_->Get("/healthz"), 200);
}

TEST_F(ServerTest, BindingABusyPortThrowsNamingTheAddress) {
  start();
  ServerOptions o = options();
  o.port = server_->port();
  Server second(*store_, server::TokenFile::load(tokens_path_), o);
  try {
    second.bind();
    FAIL() << "bound a port in use";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("cannot listen on 127.0.0.1:" + std::to_string(o.port)));
  }
}

// ---- Fuzz ------------------------------------------------------------------------------------

// Random and mutated NDJSON and documents: nothing crashes, every answer is JSON, what is
// stored is exactly what was accepted, and the seed document is untouched.
TEST_F(ServerTest, FuzzedBatchesAndDocumentsNeitherCrashNorCorrupt) {
  ServerOptions o = options();
  o.max_body_bytes = 256 * 1024;
  o.max_event_bytes = 4096;
  start(o);
  ASSERT_STATUS(put("/api/v1/executions/60B3RNTB", kSeed004Document), 200);
  auto seed_before = get("/api/v1/executions/60B3RNTB");
  ASSERT_STATUS(seed_before, 200);

  std::mt19937_64 random(20240115);
  const std::int64_t t = clock_.now();
  std::vector<std::string> samples = {
      event_line("fz", "stage", "a", "starting", t),
      event_line("fz", "run", "job", "completed", t, R"({"x":[1,{"y":null}],"z":"\u0000"})"),
      event_line("fz", "log", "", "", t, R"({"error_details":"e"})"),
      std::string(kSeed004Document),
      R"({"ts":"2026-01-04T19:30:15.234Z","kind":"node","status":"in_progress","run":"fz"})",
  };
  static constexpr std::string_view kBytes =
      "{}[]\",:\\\n\x80\xff"
      "0-e";
  auto mutate = [&](std::string s) {
    int edits = static_cast<int>(random() % 6);
    for (int i = 0; i < edits && !s.empty(); ++i) {
      std::size_t at = random() % s.size();
      switch (random() % 5) {
        case 0:
          s[at] = static_cast<char>(random() % 256);
          break;
        case 1:
          s.erase(at, 1 + random() % 8);
          break;
        case 2:
          s.insert(at, 1, kBytes[random() % kBytes.size()]);
          break;
        case 3:
          s.insert(at, s.substr(random() % s.size(), random() % 32));
          break;
        default:
          s.resize(at);
          break;
      }
    }
    return s;
  };

  std::size_t accepted = 0;
  // The parser alone, many times; then through HTTP.
  for (int i = 0; i < 3000; ++i) {
    std::string body;
    int lines = 1 + static_cast<int>(random() % 5);
    for (int l = 0; l < lines; ++l) body += mutate(samples[random() % samples.size()]) + "\n";
    auto batch = detail::parse_batch(body, o.max_event_bytes);
    auto newlines = static_cast<std::size_t>(std::count(body.begin(), body.end(), '\n'));
    ASSERT_LE(batch.events.size() + batch.rejected_count, newlines + 1);
    ASSERT_EQ(batch.rejected.size(), batch.rejected_count);
  }
  for (int i = 0; i < 300; ++i) {
    SCOPED_TRACE("request " + std::to_string(i));
    std::string body;
    int lines = 1 + static_cast<int>(random() % 8);
    for (int l = 0; l < lines; ++l) body += mutate(samples[random() % samples.size()]) + "\n";
    httplib::Result r =
        i % 3 == 0 ? put("/api/v1/executions/fz-doc", mutate(std::string(kSeed004Document)))
                   : post(body);
    ASSERT_TRUE(r);
    ASSERT_TRUE(r->status == 200 || r->status == 400) << r->status << " " << r->body;
    Json answer = Json::parse(r->body, nullptr, false);
    ASSERT_FALSE(answer.is_discarded()) << r->body;
    if (i % 3 != 0 && r->status == 200) accepted += answer["accepted"].get<std::size_t>();
  }
  // Everything accepted is stored, under whatever run it named, and nothing else.
  detail::Database db((dir_.path() / "stagelog.db").string(), false);
  detail::Statement count(db, "SELECT COUNT(*) FROM events");
  ASSERT_TRUE(count.step());
  EXPECT_EQ(static_cast<std::size_t>(count.int64(0)), accepted);
  EXPECT_GT(accepted, 0u);
  auto seed_after = get("/api/v1/executions/60B3RNTB");
  ASSERT_STATUS(seed_after, 200);
  EXPECT_EQ(seed_after->body, seed_before->body);
  ASSERT_STATUS(client_->Get("/healthz"), 200);
}

}  // namespace
}  // namespace stagelog::test
