// Operating `stagelog serve`: writes refused with 507 on a full disk (a small tmpfs) and 503 on
// a busy store, /readyz, the modes of the files at rest, the tokens file re-read while the
// server runs (on change and on SIGHUP), the alerts file re-read on SIGHUP, the first admin
// token in a 0600 file, timestamped log lines (text and json), the access log, options from
// STAGELOG_* variables, /metrics' build, process and HTTP families, and CSV cells escaped
// against spreadsheet formulas. The server runs in process over a real SqliteStore, or as the
// stagelog binary.

#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "base/errno_text.hpp"
#include "base/time.hpp"
#include "cli_run.hpp"
#include "events.hpp"
#include "eventually.hpp"
#include "scoped_env.hpp"
#include "serve_process.hpp"
#include "stagelog/server/auth.hpp"
#include "stagelog/server/server.hpp"
#include "stagelog/store/sqlite_store.hpp"
#include "stagelog/version.hpp"
#include "store/sqlite.hpp"
#include "temp_dir.hpp"

namespace stagelog::test {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;
using Json = nlohmann::json;
namespace fs = std::filesystem;

// A tmpfs of a few MiB mounted on a fresh folder (root only), unmounted by the destructor.
class SmallTmpfs {
 public:
  explicit SmallTmpfs(std::size_t mib) {
    std::string options = "size=" + std::to_string(mib) + "m,mode=0700";
    if (::mount("tmpfs", dir_.path().c_str(), "tmpfs", MS_NOSUID | MS_NODEV, options.c_str()) ==
        0) {
      mounted_ = true;
    } else {
      why_ = detail::errno_text(errno);
    }
  }
  ~SmallTmpfs() {
    if (mounted_) ::umount2(dir_.path().c_str(), MNT_DETACH);
  }
  SmallTmpfs(const SmallTmpfs&) = delete;
  SmallTmpfs& operator=(const SmallTmpfs&) = delete;

  bool mounted() const { return mounted_; }
  const std::string& why() const { return why_; }
  const fs::path& path() const { return dir_.path(); }

 private:
  TempDir dir_;  // Removed after the unmount.
  bool mounted_ = false;
  std::string why_;
};

// Writes `path` until its file system is full (ENOSPC). The bytes written.
std::uint64_t fill(const fs::path& path) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return 0;
  std::uint64_t written = 0;
  for (std::size_t piece : {std::size_t{1} << 16, std::size_t{512}}) {
    const std::string chunk(piece, 'x');
    for (int i = 0; i < 1'000'000; ++i) {  // Far more than a small tmpfs holds.
      ssize_t n = ::write(fd, chunk.data(), chunk.size());
      if (n <= 0) break;
      written += static_cast<std::uint64_t>(n);
    }
  }
  ::close(fd);
  return written;
}

// A run start and `count` - 1 log events of the run, each with a message of `message_bytes`:
// NDJSON.
std::string batch(std::string_view run, int count, std::size_t message_bytes) {
  const std::string message(message_bytes, 'm');
  const std::int64_t t = detail::realtime_ns();
  std::string body =
      ndjson_line(
          EventLine{.run = run, .kind = "run", .stage = run, .status = "starting", .ts_ns = t}) +
      "\n";
  for (int i = 1; i < count; ++i) {
    body += ndjson_line(EventLine{
                .run = run, .kind = "log", .stage = "S", .ts_ns = t + i, .message = message}) +
            "\n";
  }
  return body;
}

// Lines given to ServerOptions::on_error, for the assertions.
struct Log {
  std::mutex mutex;
  std::vector<std::string> lines;
  std::function<void(std::string_view)> fn() {
    return [this](std::string_view line) {
      std::lock_guard lock(mutex);
      lines.emplace_back(line);
    };
  }
  bool has(std::string_view text) {
    std::lock_guard lock(mutex);
    for (const auto& line : lines) {
      if (line.find(text) != std::string::npos) return true;
    }
    return false;
  }
};

// A Server in process over a SqliteStore at `db`, without tokens (require_auth off) unless a
// tokens file is given.
struct InProcess {
  InProcess(const fs::path& db, store::SqliteStoreOptions store_options,
            const fs::path& tokens = {})
      : store(store::open_sqlite_store(db, store_options)) {
    server::ServerOptions o;
    o.threads = 4;
    o.on_error = log.fn();
    if (tokens.empty()) {
      o.require_auth = false;
      server = std::make_unique<server::Server>(*store, server::TokenFile(), std::move(o));
    } else {
      server = std::make_unique<server::Server>(*store, tokens, std::move(o));
    }
    server->start();
    client = std::make_unique<httplib::Client>("127.0.0.1", server->port());
    client->set_read_timeout(30, 0);
    client->set_write_timeout(30, 0);
  }
  ~InProcess() { stop(); }
  void stop() {
    client.reset();
    if (server) server->stop();
    server.reset();
    store.reset();
  }
  httplib::Result post(const std::string& body, const httplib::Headers& headers = {}) {
    return client->Post("/api/v1/events", headers, body, "application/x-ndjson");
  }

  Log log;
  std::unique_ptr<store::Store> store;
  std::unique_ptr<server::Server> server;
  std::unique_ptr<httplib::Client> client;
};

std::int64_t count_rows(const fs::path& db, const std::string& sql) {
  detail::Database d(db.string(), /*create=*/false);
  detail::Statement s(d, sql);
  return s.step() ? s.int64(0) : -1;
}

std::string integrity(const fs::path& db) {
  detail::Database d(db.string(), /*create=*/false);
  detail::Statement s(d, "PRAGMA integrity_check");
  return s.step() ? s.text(0) : "no answer";
}

TEST(ServeOperationsTest, AFullDiskRefusesWritesWith507UntilSpaceReturnsAndLosesNothing) {
  SmallTmpfs disk(8);
  if (!disk.mounted()) {
    GTEST_SKIP() << "cannot mount a tmpfs here (" << disk.why()
                 << "): the disk-full test needs root and mount permission";
  }
  const fs::path db = disk.path() / "stagelog.db";
  const std::string big = batch("big", 4000, 500);  // ~2.5 MB of events: more than is left.
  {
    InProcess s(db, {});
    auto r = s.post(batch("before", 3, 10));
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 200) << r->body;
    ASSERT_GT(fill(disk.path() / "filler"), 0u);

    r = s.post(big);
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 507) << r->body;
    EXPECT_EQ(r->get_header_value("Retry-After"), "10");
    Json body = Json::parse(r->body);
    EXPECT_EQ(body["success"], false);
    EXPECT_EQ(body["error"], "cannot store the events; nothing of this batch was stored");
    EXPECT_THAT(body["details"].get<std::string>(), HasSubstr("full"));

    r = s.client->Get("/readyz");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 503);
    EXPECT_EQ(Json::parse(r->body),
              Json::parse(R"({"ready":false,"reason":"the last write to the store failed: )"
                          R"(disk full"})"));
    r = s.client->Get("/healthz");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);  // Alive all the same.
    EXPECT_TRUE(s.log.has("cannot write to the store: disk full ("));

    fs::remove(disk.path() / "filler");
    r = s.post(big);  // What a client does after Retry-After.
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 200) << r->body;
    EXPECT_EQ(Json::parse(r->body)["accepted"], 4000);
    r = s.client->Get("/readyz");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
    EXPECT_EQ(r->body, R"({"ready":true})");
    EXPECT_TRUE(s.log.has("writes to the store succeed again"));
  }
  EXPECT_EQ(integrity(db), "ok");
  EXPECT_EQ(count_rows(db, "SELECT COUNT(*) FROM events WHERE run = 'before'"), 3);
  EXPECT_EQ(count_rows(db, "SELECT COUNT(*) FROM events WHERE run = 'big'"), 4000);
}

TEST(ServeOperationsTest, ABusyStoreRefusesWritesWith503AndRetryAfter) {
  TempDir dir;
  const fs::path db = dir.path() / "stagelog.db";
  store::SqliteStoreOptions quick;
  quick.busy_timeout = 50ms;
  InProcess s(db, quick);
  {
    detail::Database other(db.string(), /*create=*/false);  // Another process, as SQLite sees it.
    sqlite3_busy_timeout(other.get(), 10'000);  // The store's own threads may write now.
    other.exec("BEGIN IMMEDIATE");              // Holds the write lock.
    auto r = s.post(batch("locked", 2, 10));
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 503) << r->body;
    EXPECT_EQ(r->get_header_value("Retry-After"), "10");
    EXPECT_EQ(Json::parse(r->body)["success"], false);
    r = s.client->Get("/readyz");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 503);
    EXPECT_THAT(r->body, HasSubstr("busy"));
    other.exec("ROLLBACK");
  }
  auto r = s.post(batch("locked", 2, 10));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200) << r->body;
  r = s.client->Get("/readyz");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
}

// Restores the process's umask when it ends.
struct ScopedUmask {
  explicit ScopedUmask(mode_t mask) : old(::umask(mask)) {}
  ~ScopedUmask() { ::umask(old); }
  mode_t old;
};

fs::perms mode_of(const fs::path& path) { return fs::status(path).permissions(); }

TEST(ServeOperationsTest, DataAtRestIsTheOwnersAloneWhateverTheUmask) {
  TempDir dir;
  ScopedUmask open_umask(0);  // The server inherits it: every bit the code asks for is kept.
  const fs::path data = dir.path() / "new" / "data";
  {
    ServeProcess serve(data);
    ASSERT_TRUE(serve.wait_until_listening());
    httplib::Client c("127.0.0.1", serve.port);
    auto r = c.Post("/api/v1/events", {{"Authorization", "Bearer " + serve.token}},
                    batch("modes", 2, 10), "application/x-ndjson");
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 200) << r->body;
    // While it runs: the WAL and the shared memory file are there.
    EXPECT_EQ(mode_of(data), fs::perms(0700));
    for (const char* name : {"stagelog.db", "stagelog.db-wal", "stagelog.db-shm", "tokens"}) {
      ASSERT_TRUE(fs::exists(data / name)) << name;
      EXPECT_EQ(mode_of(data / name), fs::perms(0600)) << name;
    }
  }
  // A folder the user made keeps its mode; what stagelog makes in it is still 0600.
  const fs::path own = dir.path() / "own";
  fs::create_directory(own);
  fs::permissions(own, fs::perms(0750));
  ServeProcess serve(own);
  ASSERT_TRUE(serve.wait_until_listening());
  EXPECT_EQ(mode_of(own), fs::perms(0750));
  EXPECT_EQ(mode_of(own / "stagelog.db"), fs::perms(0600));
  EXPECT_EQ(mode_of(own / "tokens"), fs::perms(0600));
}

// `stagelog token create`'s token (its stdout's line).
std::string create_token_with_cli(const fs::path& tokens, const char* scope) {
  std::string command = std::string(STAGELOG_CLI) + " token create --tokens " + tokens.string() +
                        " --scope " + scope + " 2>/dev/null";
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return {};
  char buf[256] = {};
  std::string out = std::fgets(buf, sizeof buf, pipe) != nullptr ? buf : "";
  pclose(pipe);
  if (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

// The tokens file without the line of `token`: a revocation, as a person makes it.
void revoke(const fs::path& tokens, const std::string& token) {
  std::string kept;
  for (const std::string& line : read_lines(tokens)) {
    if (line.find(server::token_hash(token)) == std::string::npos) kept += line + "\n";
  }
  std::ofstream(tokens, std::ios::binary | std::ios::trunc) << kept;
}

TEST(ServeOperationsTest, TokensComeAndGoWhileTheServerRunsAndSighupRereadsTheFile) {
  TempDir dir;
  const fs::path data = dir.path() / "data";
  const fs::path errors = dir.path() / "stderr.txt";
  ServeProcess serve(data, "127.0.0.1:0", errors);
  ASSERT_TRUE(serve.wait_until_listening());
  httplib::Client c("127.0.0.1", serve.port);
  auto status = [&](const std::string& token) {
    auto r = c.Get("/api/v1/executions", {{"Authorization", "Bearer " + token}});
    return r ? r->status : -1;
  };
  ASSERT_EQ(status(serve.token), 200);

  const std::string reader = create_token_with_cli(data / "tokens", "read");
  ASSERT_THAT(reader, ::testing::StartsWith("slg_"));
  // In force within a second of the change; the bound only keeps a broken build from hanging.
  EXPECT_TRUE(eventually([&] { return status(reader) == 200; }, 10s));

  revoke(data / "tokens", reader);
  EXPECT_TRUE(eventually([&] { return status(reader) == 401; }, 10s));
  EXPECT_EQ(status(serve.token), 200);

  serve.signal(SIGHUP);
  EXPECT_TRUE(eventually(
      [&] {
        return read_file(errors).find("SIGHUP, re-read the tokens file: 1 token") !=
               std::string::npos;
      },
      10s))
      << read_file(errors);

  // A bad edit: said on stderr once a request has looked, and the tokens in force stay.
  std::ofstream(data / "tokens", std::ios::app) << "slg_pasted_by_mistake read\n";
  EXPECT_TRUE(eventually(
      [&] {
        return status(serve.token) == 200 &&
               read_file(errors).find("cannot re-read the tokens file") != std::string::npos;
      },
      10s))
      << read_file(errors);
  EXPECT_EQ(read_file(errors).find("slg_pasted"), std::string::npos);  // Never echoed.
}

TEST(ServeOperationsTest, ReloadTokensTakesANewTokenAtOnce) {
  TempDir dir;
  const fs::path tokens = dir.path() / "tokens";
  server::TokenFile::create_token(tokens, server::Scope::Admin);
  InProcess s(dir.path() / "stagelog.db", {}, tokens);
  const std::string added = server::TokenFile::create_token(tokens, server::Scope::Read);
  auto reloaded = s.server->reload_tokens();
  ASSERT_TRUE(reloaded) << reloaded.error().what();
  EXPECT_EQ(*reloaded, 2u);
  auto r = s.client->Get("/api/v1/executions", {{"Authorization", "Bearer " + added}});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  r = s.client->Get("/readyz");  // Public, as /healthz.
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
}

TEST(ServeOperationsTest, CsvTextCellsThatASpreadsheetWouldRunAreEscaped) {
  TempDir dir;
  InProcess s(dir.path() / "stagelog.db", {});
  // A step 1 s before the attempt's start: a negative number, which stays one.
  const std::string doc = R"json({
    "tracking_id": "=cmd|' /C calc'!A0",
    "execution_id": "+exec",
    "started_at": "2024-01-15T10:30:01.000Z",
    "steps": [
      {"step": "-2+3", "timestamp": "2024-01-15T10:30:00.000Z", "status": "failed",
       "message": "@SUM(1)", "error_details": "=1,2"},
      {"step": "plain", "timestamp": "2024-01-15T10:30:02.000Z", "status": "completed",
       "message": "\tTab", "error_details": "a-b"}
    ]
  })json";
  auto r =
      s.client->Put("/api/v1/executions/%3Dcmd%7C'%20%2FC%20calc'!A0", doc, "application/json");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  r = s.client->Get("/api/v1/executions.csv");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200);
  std::vector<std::string> lines;
  for (std::size_t at = 0; at < r->body.size();) {
    std::size_t end = r->body.find("\r\n", at);
    if (end == std::string::npos) break;
    lines.push_back(r->body.substr(at, end - at));
    at = end + 2;
  }
  ASSERT_EQ(lines.size(), 3u) << r->body;
  EXPECT_THAT(lines[1], ::testing::StartsWith("'=cmd|' /C calc'!A0,1,'+exec,"));
  EXPECT_THAT(lines[1],
              HasSubstr(",1,'-2+3,failed,2024-01-15T10:30:00.000Z,-1000,'@SUM(1),\"'=1,2\","));
  EXPECT_THAT(lines[2], HasSubstr(",2,plain,completed,2024-01-15T10:30:02.000Z,1000,'\tTab,a-b,"));
}

// An alerts file with one rule: failures of `stage` fire at the first one.
void write_alerts(const fs::path& file, std::string_view stage) {
  std::ofstream(file, std::ios::trunc)
      << R"({"webhooks": [{"name": "none", "url": "http://127.0.0.1:9/hook"}],
             "rules": [{"name": "fails", "type": "repeated_failures", "stage": ")"
      << stage << R"(", "count": 1, "window": "10m"}],
             "retry": {"attempts": 1, "first_delay": "1s"}})";
}

TEST(ServeOperationsTest, SighupRereadsTheAlertsFileAndABadOneLeavesTheRulesInForce) {
  TempDir dir;
  const fs::path alerts = dir.path() / "alerts.json";
  const fs::path errors = dir.path() / "stderr.txt";
  write_alerts(alerts, "AGENT");
  ServeProcess serve(dir.path() / "data", "127.0.0.1:0", errors, {"--alerts", alerts.string()});
  ASSERT_TRUE(serve.wait_until_listening());
  httplib::Client c("127.0.0.1", serve.port);
  const httplib::Headers auth = {{"Authorization", "Bearer " + serve.token}};
  auto fail_stage = [&](const std::string& run, std::string_view stage) {
    std::int64_t now = wall_now_ns();
    std::string body = stage_line(run, stage, "starting", now) +
                       stage_line(run, stage, "failed", now + 1'000'000, "boom");
    auto r = c.Post("/api/v1/events", auth, body, "application/x-ndjson");
    return r ? r->status : -1;
  };
  auto alerts_of = [&] {
    auto r = c.Get("/api/v1/alerts", auth);
    return r && r->status == 200 ? r->body : std::string();
  };

  // The rules of the file as it is now: JUDGE's failures fire only after the SIGHUP.
  write_alerts(alerts, "JUDGE");
  ASSERT_EQ(fail_stage("before", "JUDGE"), 200);
  serve.signal(SIGHUP);
  ASSERT_TRUE(eventually(
      [&] { return read_file(errors).find("re-read the alerts file") != std::string::npos; }, 10s))
      << read_file(errors);
  EXPECT_THAT(read_file(errors), HasSubstr(alerts.string() + ": 1 rule"));
  EXPECT_EQ(alerts_of().find("JUDGE"), std::string::npos) << alerts_of();
  ASSERT_EQ(fail_stage("after", "JUDGE"), 200);
  EXPECT_TRUE(eventually([&] { return alerts_of().find("JUDGE") != std::string::npos; }, 10s))
      << alerts_of();

  // A file that does not parse: logged, the server goes on with the JUDGE rule.
  std::ofstream(alerts, std::ios::trunc) << "{\"rules\": [";
  serve.signal(SIGHUP);
  EXPECT_TRUE(eventually(
      [&] {
        return read_file(errors).find("error SIGHUP: the alerts file was not taken") !=
               std::string::npos;
      },
      10s))
      << read_file(errors);
  auto health = c.Get("/healthz");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
  EXPECT_EQ(serve.terminate(), 0);
}

TEST(ServeOperationsTest, TheFirstAdminTokenIsInA0600FileAndNotOnStdoutWhenItIsNoTerminal) {
  TempDir dir;
  const fs::path data = dir.path() / "data";
  const fs::path out = dir.path() / "stdout.txt";
  // Through a shell, so that stdout is a file to read back whole.
  std::string command = std::string(STAGELOG_CLI) + " serve --data " + data.string() +
                        " --listen 127.0.0.1:0 > " + out.string() + " 2>&1 & echo $!";
  FILE* pipe = popen(command.c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  char buf[64] = {};
  const pid_t pid = std::fgets(buf, sizeof buf, pipe) ? std::atoi(buf) : 0;
  pclose(pipe);
  ASSERT_GT(pid, 0);
  const bool listening =
      eventually([&] { return read_file(out).find("listening on") != std::string::npos; }, 30s);
  ::kill(pid, SIGTERM);
  ASSERT_TRUE(listening) << read_file(out);
  ASSERT_TRUE(eventually([&] { return ::kill(pid, 0) != 0; }, 30s));

  const fs::path file = data / "admin-token";
  ASSERT_TRUE(fs::exists(file)) << read_file(out);
  EXPECT_EQ(mode_of(file), fs::perms(0600));
  std::vector<std::string> lines = read_lines(file);
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_THAT(lines[0], ::testing::MatchesRegex("slg_[A-Za-z0-9_-]+"));
  EXPECT_EQ(read_file(out).find(lines[0]), std::string::npos) << "the token is in the log";
  EXPECT_THAT(read_file(out), HasSubstr("written to " + file.string()));
  EXPECT_EQ(
      server::TokenFile::load(data / "tokens").check("Bearer " + lines[0], server::Scope::Admin),
      server::AuthResult::Allowed);
}

TEST(ServeOperationsTest, JsonLogLinesAndTheAccessLogComeFromTheEnvironment) {
  TempDir dir;
  const fs::path errors = dir.path() / "stderr.txt";
  const fs::path access = dir.path() / "access.log";
  ScopedEnv format("STAGELOG_LOG_FORMAT", "json");
  ScopedEnv access_log("STAGELOG_ACCESS_LOG", access.c_str());
  ScopedEnv retention("STAGELOG_RETENTION", "not-a-duration-but-overridden");
  ServeProcess serve(dir.path() / "data", "127.0.0.1:0", errors, {"--retention", "2d"});
  ASSERT_TRUE(serve.wait_until_listening()) << read_file(errors);
  httplib::Client c("127.0.0.1", serve.port);
  auto r = c.Get("/healthz?probe=1");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200);
  r = c.Get("/api/v1/workers");  // No token: 401, logged too.
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 401);
  ASSERT_TRUE(eventually([&] { return read_lines(access).size() >= 2; }, 10s));
  EXPECT_EQ(serve.terminate(), 0);

  std::vector<std::string> lines = read_lines(access);
  ASSERT_EQ(lines.size(), 2u);
  Json first = Json::parse(lines[0]);
  EXPECT_EQ(first["level"], "info");
  EXPECT_THAT(first["ts"].get<std::string>(),
              ::testing::MatchesRegex("[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+Z"));
  EXPECT_EQ(first["method"], "GET");
  EXPECT_EQ(first["target"], "/healthz?probe=1");
  EXPECT_EQ(first["route"], "/healthz");
  EXPECT_EQ(first["status"], 200);
  EXPECT_THAT(first["remote"].get<std::string>(), ::testing::StartsWith("127.0.0.1:"));
  EXPECT_EQ(Json::parse(lines[1])["status"], 401);

  // serve's own lines: JSON objects with a timestamp, a level and the message.
  std::vector<std::string> logged = read_lines(errors);
  ASSERT_FALSE(logged.empty());
  bool stopping = false;
  for (const std::string& line : logged) {
    Json j = Json::parse(line);  // Throws (fails the test) for a line that is not JSON.
    EXPECT_TRUE(j.contains("ts") && j.contains("level") && j.contains("message")) << line;
    if (j["message"] == "SIGTERM, stopping") stopping = true;
  }
  EXPECT_TRUE(stopping) << read_file(errors);
}

TEST(ServeOperationsTest, AnOptionFromTheEnvironmentIsCheckedAsTheOptionIs) {
  TempDir dir;
  ScopedEnv listen("STAGELOG_LISTEN", "nowhere");
  CliRun r = run_stagelog(dir, {"serve", "--data", (dir.path() / "data").string()});
  EXPECT_EQ(r.status, 2);
  EXPECT_THAT(r.err, HasSubstr("'nowhere' is not HOST:PORT"));
  EXPECT_FALSE(fs::exists(dir.path() / "data"));
}

TEST(ServeOperationsTest, MetricsSayTheBuildTheProcessAndTheRequests) {
  TempDir dir;
  ServeProcess serve(dir.path() / "data");
  ASSERT_TRUE(serve.wait_until_listening());
  httplib::Client c("127.0.0.1", serve.port);
  const httplib::Headers auth = {{"Authorization", "Bearer " + serve.token}};
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(c.Get("/healthz"));
  ASSERT_TRUE(c.Get("/api/v1/executions/a%2Fb", auth));  // 404, by its route's pattern.
  auto r = c.Get("/metrics", auth);
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200);
  const std::string& text = r->body;
  EXPECT_THAT(text, HasSubstr("stagelog_build_info{version=\"" STAGELOG_VERSION_STRING "\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("stagelog_http_requests_total{route=\"/healthz\",method=\"GET\","
                              "status=\"200\"} 3\n"));
  EXPECT_THAT(text, HasSubstr("stagelog_http_requests_total{route=\"/api/v1/executions/{id}\","
                              "method=\"GET\",status=\"404\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("stagelog_http_request_duration_seconds_count{route=\"/healthz\"} "
                              "3\n"));
  EXPECT_THAT(text, HasSubstr("stagelog_http_request_duration_seconds_bucket{route=\"/healthz\","
                              "le=\"+Inf\"} 3\n"));

  // Every sample belongs to a family announced by # HELP and # TYPE, with a valid name, and
  // the process' numbers are plausible.
  std::set<std::string> families;
  std::map<std::string, double> plain;
  std::istringstream lines(text);
  std::string line;
  // name{label="value",...} number; a value may hold } (a route pattern's "{id}").
  const std::regex sample(
      R"(([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*",?)*\})? (\S+))");
  while (std::getline(lines, line)) {
    std::smatch m;
    if (line.starts_with("# TYPE ")) {
      families.insert(line.substr(7, line.find(' ', 7) - 7));
      continue;
    }
    if (line.starts_with("#")) continue;
    ASSERT_TRUE(std::regex_match(line, m, sample)) << line;
    std::string name = m[1];
    std::string family = std::regex_replace(name, std::regex("_(bucket|sum|count)$"), "");
    EXPECT_TRUE(families.count(name) || families.count(family)) << "no # TYPE for " << line;
    if (!m[2].matched) plain[name] = std::stod(m[5]);
  }
  EXPECT_GT(plain["process_open_fds"], 3);
  EXPECT_GT(plain["process_resident_memory_bytes"], 1 << 20);
  EXPECT_GE(plain["process_cpu_seconds_total"], 0);
  const double now = static_cast<double>(wall_now_ns()) / 1e9;
  EXPECT_NEAR(plain["process_start_time_seconds"], now, 120);

  // Prometheus' own linter, where it is installed (Debian's prometheus package has it).
  if (std::system("command -v promtool >/dev/null 2>&1") == 0) {
    const fs::path file = dir.path() / "metrics.txt";
    std::ofstream(file) << text;
    const std::string command = "promtool check metrics < " + file.string() + " 2>&1";
    FILE* pipe = popen(command.c_str(), "r");
    ASSERT_NE(pipe, nullptr);
    std::string said;
    char buf[512];
    while (std::fgets(buf, sizeof buf, pipe) != nullptr) said += buf;
    EXPECT_EQ(pclose(pipe), 0) << said;
  }
}

}  // namespace
}  // namespace stagelog::test
