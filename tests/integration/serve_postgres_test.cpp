// `stagelog serve --store` (here through STAGELOG_STORE) on a real PostgreSQL: two servers on one
// database answer the same, and a batch stored through one is a repeat for the other.

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <sys/wait.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <string>

#include "postgres_environment.hpp"
#include "scoped_env.hpp"
#include "serve_process.hpp"
#include "temp_dir.hpp"

namespace stagelog::test {
namespace {

using Json = nlohmann::json;
using ::testing::HasSubstr;

const auto* const kPostgres = ::testing::AddGlobalTestEnvironment(new PostgresEnvironment);

httplib::Headers auth(const std::string& token) { return {{"Authorization", "Bearer " + token}}; }

std::string line(std::string_view kind, std::string_view stage, std::string_view status,
                 std::int64_t ts_ns, std::string_view message = "") {
  Json j = {{"ts_ns", ts_ns}, {"kind", kind},     {"run", "pg-run"},   {"worker", "w1"},
            {"stage", stage}, {"status", status}, {"message", message}};
  return j.dump() + "\n";
}

TEST(ServePostgresTest, TwoServersOnOneDatabaseAnswerTheSame) {
  PostgresServer* pg = PostgresEnvironment::server();
  ScopedEnv store("STAGELOG_STORE", pg->conninfo(pg->create_database()).c_str());
  TempDir dir;
  ServeProcess a(dir.path() / "a");
  ASSERT_TRUE(a.wait_until_listening());
  ASSERT_FALSE(a.token.empty());
  // The second server takes the first's tokens file: one set of tokens for the replicas.
  std::filesystem::create_directories(dir.path() / "b");
  std::filesystem::copy_file(dir.path() / "a" / "tokens", dir.path() / "b" / "tokens");
  ServeProcess b(dir.path() / "b");
  ASSERT_TRUE(b.wait_until_listening());
  EXPECT_FALSE(std::filesystem::exists(dir.path() / "a" / "stagelog.db"));

  const std::int64_t t0 = 1'767'555'015'234'000'000;
  std::string body = line("run", "job", "starting", t0) + line("stage", "LOAD", "starting", t0) +
                     line("stage", "LOAD", "failed", t0 + 2'000'000'000, "timeout after 300ms") +
                     line("run", "job", "failed", t0 + 3'000'000'000);
  httplib::Headers post = auth(a.token);
  post.emplace("Idempotency-Key", "0123456789abcdef0123456789abcdef-1");
  auto r = httplib::Client("127.0.0.1", a.port)
               .Post("/api/v1/events", post, body, "application/x-ndjson");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_THAT(r->body, HasSubstr(R"("accepted":4)"));

  auto from_a =
      httplib::Client("127.0.0.1", a.port).Get("/api/execution-logs/pg-run", auth(a.token));
  auto from_b =
      httplib::Client("127.0.0.1", b.port).Get("/api/execution-logs/pg-run", auth(a.token));
  ASSERT_TRUE(from_a && from_b);
  ASSERT_EQ(from_a->status, 200) << from_a->body;
  ASSERT_EQ(from_b->status, 200) << from_b->body;
  EXPECT_EQ(from_a->body, from_b->body);
  EXPECT_THAT(from_b->body, HasSubstr("timeout after 300ms"));
  auto search =
      httplib::Client("127.0.0.1", b.port).Get("/api/v1/executions?q=TIMEOUT", auth(a.token));
  ASSERT_TRUE(search);
  EXPECT_THAT(search->body, HasSubstr(R"("tracking_id":"pg-run")"));

  // The same batch again, to the other server: answered as the first time, stored once.
  auto again = httplib::Client("127.0.0.1", b.port)
                   .Post("/api/v1/events", post, body, "application/x-ndjson");
  ASSERT_TRUE(again);
  EXPECT_EQ(again->status, 200);
  EXPECT_EQ(again->get_header_value("Idempotent-Replayed"), "true");
  auto events =
      httplib::Client("127.0.0.1", b.port).Get("/api/v1/executions/pg-run/events", auth(a.token));
  ASSERT_TRUE(events);
  EXPECT_EQ(Json::parse(events->body)["events"].size(), 4u);
}

// A store that cannot be opened stops serve with libpq's reason, before it makes a tokens file
// or prints an admin token for a server that never ran.
TEST(ServePostgresTest, AStoreThatCannotBeOpenedStopsServeAndLeavesNoTokensFile) {
  TempDir dir;
  const std::string conninfo = "postgresql:///stagelog?host=" + (dir.path() / "no-server").string();
  ScopedEnv store("STAGELOG_STORE", conninfo.c_str());
  const auto stderr_file = dir.path() / "stderr";
  ServeProcess serve(dir.path() / "data", "127.0.0.1:0", stderr_file);
  EXPECT_FALSE(serve.wait_until_listening());
  int status = serve.terminate();
  ASSERT_TRUE(WIFEXITED(status)) << status;
  EXPECT_NE(WEXITSTATUS(status), 0);
  std::ifstream in(stderr_file);
  std::string said((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_THAT(said, HasSubstr("cannot open postgres store"));
  EXPECT_THAT(said, HasSubstr("no-server"));
  EXPECT_THAT(said, HasSubstr("; Is the server running"));
  EXPECT_TRUE(serve.token.empty());
  EXPECT_FALSE(std::filesystem::exists(dir.path() / "data" / "tokens"));
}

}  // namespace
}  // namespace stagelog::test
