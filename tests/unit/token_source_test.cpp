// TokenSource: a tokens file re-read when it changes (at most once per interval), or at once
// on reload(), keeping the tokens in force when the file goes bad.

#include "server/token_source.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

#include "fake_clock.hpp"
#include "stagelog/error.hpp"
#include "stagelog/server/auth.hpp"
#include "temp_dir.hpp"

namespace stagelog::detail {
namespace {

using namespace std::chrono_literals;
using server::AuthResult;
using server::Scope;
using server::TokenFile;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

std::string bearer(const std::string& token) { return "Bearer " + token; }

struct Source {
  explicit Source(const std::filesystem::path& path)
      : source(path,
               TokenSource::Options{clock.fn(),
                                    [this](std::string_view m) { reports.emplace_back(m); }, 1s}) {}
  AuthResult check(const std::string& token) { return source.check(bearer(token), Scope::Read); }

  test::FakeClock clock{0};
  std::vector<std::string> reports;
  TokenSource source;
};

// The file without the lines that hold `token`'s hash: a revocation, as a person does it.
void revoke(const std::filesystem::path& path, const std::string& token) {
  std::string kept;
  for (const std::string& line : test::read_lines(path)) {
    if (line.find(server::token_hash(token)) == std::string::npos) kept += line + "\n";
  }
  std::ofstream(path, std::ios::binary | std::ios::trunc) << kept;
}

TEST(TokenSourceTest, ANewTokenWorksOnceTheIntervalHasPassed) {
  test::TempDir dir;
  const auto path = dir.path() / "tokens";
  const std::string first = TokenFile::create_token(path, Scope::Read);
  Source s(path);
  EXPECT_EQ(s.check(first), AuthResult::Allowed);

  const std::string second = TokenFile::create_token(path, Scope::Read);
  s.clock.advance(999ms);
  EXPECT_EQ(s.check(second), AuthResult::Unknown);  // Not looked at yet.
  s.clock.advance(1ms);
  EXPECT_EQ(s.check(second), AuthResult::Allowed);
  EXPECT_EQ(s.check(first), AuthResult::Allowed);
  EXPECT_THAT(s.reports, IsEmpty());
}

TEST(TokenSourceTest, ARevokedTokenIsRefusedOnceTheIntervalHasPassed) {
  test::TempDir dir;
  const auto path = dir.path() / "tokens";
  const std::string kept = TokenFile::create_token(path, Scope::Read);
  const std::string gone = TokenFile::create_token(path, Scope::Admin);
  Source s(path);
  EXPECT_EQ(s.check(gone), AuthResult::Allowed);
  revoke(path, gone);
  s.clock.advance(1s);
  EXPECT_EQ(s.check(gone), AuthResult::Unknown);
  EXPECT_EQ(s.check(kept), AuthResult::Allowed);
}

TEST(TokenSourceTest, ReloadReadsAtOnceAndCountsTheTokens) {
  test::TempDir dir;
  const auto path = dir.path() / "tokens";
  TokenFile::create_token(path, Scope::Read);
  Source s(path);
  const std::string added = TokenFile::create_token(path, Scope::Ingest);
  auto reloaded = s.source.reload();
  ASSERT_TRUE(reloaded) << reloaded.error().what();
  EXPECT_EQ(*reloaded, 2u);
  EXPECT_EQ(s.source.check(bearer(added), Scope::Ingest), AuthResult::Allowed);  // Same instant.
}

TEST(TokenSourceTest, ABrokenFileKeepsTheTokensInForceAndIsReportedOnce) {
  test::TempDir dir;
  const auto path = dir.path() / "tokens";
  const std::string token = TokenFile::create_token(path, Scope::Read);
  Source s(path);
  std::ofstream(path, std::ios::app) << "not-a-hash read\n";
  for (int i = 0; i < 5; ++i) {
    s.clock.advance(1s);
    EXPECT_EQ(s.check(token), AuthResult::Allowed);
  }
  ASSERT_EQ(s.reports.size(), 1u);
  EXPECT_THAT(s.reports[0], HasSubstr("cannot re-read the tokens file, the tokens read before "
                                      "stay in force: " +
                                      path.string() + ":2: expected 64 hex digits"));
  // Gone altogether: the same, said once more (it changed).
  std::filesystem::remove(path);
  s.clock.advance(1s);
  EXPECT_EQ(s.check(token), AuthResult::Allowed);
  ASSERT_EQ(s.reports.size(), 2u);
  EXPECT_THAT(s.reports[1], HasSubstr("cannot open " + path.string()));
  auto reloaded = s.source.reload();
  ASSERT_FALSE(reloaded);
  EXPECT_THAT(reloaded.error().what(), HasSubstr("No such file or directory"));
  // Fixed again: taken on the next look.
  const std::string fresh = TokenFile::create_token(path, Scope::Read);
  s.clock.advance(1s);
  EXPECT_EQ(s.check(fresh), AuthResult::Allowed);
  EXPECT_EQ(s.check(token), AuthResult::Unknown);
}

TEST(TokenSourceTest, FixedTokensAreNeverReread) {
  test::TempDir dir;
  const auto path = dir.path() / "tokens";
  const std::string token = TokenFile::create_token(path, Scope::Read);
  TokenSource fixed(TokenFile::load(path));
  std::filesystem::remove(path);
  EXPECT_EQ(fixed.check(bearer(token), Scope::Read), AuthResult::Allowed);
  auto reloaded = fixed.reload();
  ASSERT_TRUE(reloaded);
  EXPECT_EQ(*reloaded, 1u);
}

TEST(TokenSourceTest, AFileThatCannotBeReadAtStartIsAnError) {
  test::TempDir dir;
  EXPECT_THROW(TokenSource(dir.path() / "missing", TokenSource::Options{}), Error);
}

}  // namespace
}  // namespace stagelog::detail
