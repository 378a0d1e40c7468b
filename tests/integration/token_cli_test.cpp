// `stagelog token create` and `token list`, run as real processes: the printed token is the one
// whose hash the file holds, the file is private, and nothing secret is listed.

#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

#include "cli_run.hpp"
#include "stagelog/server/auth.hpp"
#include "temp_dir.hpp"

extern char** environ;  // NOLINT(readability-identifier-naming): POSIX names it.

namespace stagelog::server {
namespace {

using ::testing::HasSubstr;
using ::testing::MatchesRegex;
using ::testing::Not;

TEST(TokenCliTest, CreatePrintsTheTokenWhoseHashTheFileHolds) {
  test::TempDir dir;
  std::string path = (dir.path() / "tokens.txt").string();
  test::CliRun r = test::run_stagelog(
      dir, {"token", "create", "--tokens", path, "--scope", "ingest", "--label", "gpu workers"});
  ASSERT_EQ(r.status, 0) << r.err;
  ASSERT_THAT(r.out, MatchesRegex("slg_[A-Za-z0-9_-]{43}\n"));
  std::string token = r.out.substr(0, r.out.size() - 1);

  EXPECT_THAT(r.err, HasSubstr("shown once"));
  EXPECT_THAT(r.err, HasSubstr(path));
  EXPECT_THAT(r.err, Not(HasSubstr(token)));
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1);

  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  EXPECT_EQ(test::read_file(path), token_hash(token) + " ingest gpu workers\n");

  TokenFile file = TokenFile::load(path);
  EXPECT_EQ(file.check("Bearer " + token, Scope::Ingest), AuthResult::Allowed);
  EXPECT_EQ(file.check("Bearer " + token, Scope::Read), AuthResult::Forbidden);
}

TEST(TokenCliTest, CreateAppendsAndListShowsHashPrefixesScopesAndLabels) {
  test::TempDir dir;
  std::string path = (dir.path() / "tokens.txt").string();
  test::CliRun first =
      test::run_stagelog(dir, {"token", "create", "--tokens", path, "--scope", "admin"});
  ASSERT_EQ(first.status, 0) << first.err;
  test::CliRun second = test::run_stagelog(
      dir, {"token", "create", "--tokens", path, "--scope", "read", "--label", "web ui"});
  ASSERT_EQ(second.status, 0) << second.err;
  std::string admin = first.out.substr(0, first.out.size() - 1);
  std::string read = second.out.substr(0, second.out.size() - 1);
  EXPECT_NE(admin, read);

  TokenFile file = TokenFile::load(path);
  EXPECT_EQ(file.check("Bearer " + admin, Scope::Ingest), AuthResult::Allowed);
  EXPECT_EQ(file.check("Bearer " + read, Scope::Read), AuthResult::Allowed);
  EXPECT_EQ(file.check("Bearer " + read, Scope::Admin), AuthResult::Forbidden);

  test::CliRun list = test::run_stagelog(dir, {"token", "list", "--tokens", path});
  ASSERT_EQ(list.status, 0) << list.err;
  EXPECT_EQ(list.out, token_hash(admin).substr(0, 12) + "  admin\n" +
                          token_hash(read).substr(0, 12) + "  read   web ui\n");
  EXPECT_THAT(list.out, Not(HasSubstr(admin.substr(4, 8))));
  EXPECT_THAT(list.out, Not(HasSubstr(read.substr(4, 8))));
}

TEST(TokenCliTest, CreateWithABadScopeWritesNothing) {
  test::TempDir dir;
  auto path = dir.path() / "tokens.txt";
  test::CliRun r =
      test::run_stagelog(dir, {"token", "create", "--tokens", path.string(), "--scope", "root"});
  EXPECT_EQ(r.status, 2);
  EXPECT_EQ(r.out, "");
  EXPECT_THAT(r.err, HasSubstr("'root' is not a scope"));
  EXPECT_FALSE(std::filesystem::exists(path));
}

TEST(TokenCliTest, CreateInAMissingFolderFailsNamingThePath) {
  test::TempDir dir;
  std::string path = (dir.path() / "no" / "tokens.txt").string();
  test::CliRun r =
      test::run_stagelog(dir, {"token", "create", "--tokens", path, "--scope", "read"});
  EXPECT_EQ(r.status, 2);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err, "stagelog: cannot open " + path + ": No such file or directory\n");
}

}  // namespace
}  // namespace stagelog::server
