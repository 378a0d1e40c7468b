#include "stagelog/server/auth.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "stagelog/error.hpp"
#include "temp_dir.hpp"

namespace stagelog::server {
namespace {

using ::testing::HasSubstr;
using ::testing::MatchesRegex;
using ::testing::Not;
using ::testing::StartsWith;

// SHA-256 of "abc" (FIPS 180-2, appendix B.1).
constexpr std::string_view kAbcHash =
    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

void write_file(const std::filesystem::path& path, std::string_view text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}

std::string bearer(std::string_view token) { return "Bearer " + std::string(token); }

// The message of the stagelog::Error that `f` throws; fails the test if it throws none.
template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "no stagelog::Error thrown";
  return {};
}

// ---- Scopes and tokens -----------------------------------------------------------------------

TEST(ScopeTest, ParsesTheThreeNamesAndNothingElse) {
  EXPECT_EQ(parse_scope("ingest"), Scope::Ingest);
  EXPECT_EQ(parse_scope("read"), Scope::Read);
  EXPECT_EQ(parse_scope("admin"), Scope::Admin);
  for (std::string_view bad : {"", "Admin", "READ", "write", "read,ingest", " read", "admin "}) {
    EXPECT_EQ(parse_scope(bad), std::nullopt) << bad;
  }
  for (Scope scope : {Scope::Ingest, Scope::Read, Scope::Admin}) {
    EXPECT_EQ(parse_scope(scope_name(scope)), scope);
  }
}

TEST(TokenTest, IsPrefixAnd43Base64urlCharacters) {
  std::string token = new_token();
  EXPECT_EQ(token.size(), 4u + 43u);
  EXPECT_THAT(token, MatchesRegex("slg_[A-Za-z0-9_-]+"));
}

TEST(TokenTest, NewTokensDiffer) {
  std::vector<std::string> tokens;
  for (int i = 0; i < 64; ++i) tokens.push_back(new_token());
  std::sort(tokens.begin(), tokens.end());
  EXPECT_EQ(std::adjacent_find(tokens.begin(), tokens.end()), tokens.end());
}

TEST(TokenTest, HashIsLowercaseHexSha256) {
  EXPECT_EQ(token_hash("abc"), kAbcHash);
  EXPECT_EQ(token_hash(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

TEST(TokenTest, HashMatchesPythonHashlib) {
  if (std::system("command -v python3 >/dev/null 2>&1") != 0) {
    GTEST_SKIP() << "python3 is not on PATH (CI installs it)";
  }
  std::string token = new_token();  // base64url: safe inside single quotes.
  std::string command =
      "python3 -c 'import hashlib; print(hashlib.sha256(b\"" + token + "\").hexdigest())'";
  FILE* pipe = ::popen(command.c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  char buf[128] = {};
  ASSERT_NE(std::fgets(buf, sizeof buf, pipe), nullptr);
  ASSERT_EQ(::pclose(pipe), 0);
  EXPECT_EQ(std::string(buf), token_hash(token) + "\n");
}

// ---- Creating tokens -------------------------------------------------------------------------

TEST(TokenFileTest, CreatedTokenLoadsAndIsAllowedItsScope) {
  test::TempDir dir;
  auto path = dir.path() / "tokens.txt";
  std::string token = TokenFile::create_token(path, Scope::Read, "ci");
  TokenFile file = TokenFile::load(path);
  ASSERT_EQ(file.size(), 1u);
  EXPECT_EQ(file.entries()[0].scopes, std::vector<Scope>{Scope::Read});
  EXPECT_EQ(file.entries()[0].label, "ci");
  EXPECT_EQ(file.check(bearer(token), Scope::Read), AuthResult::Allowed);
}

// The token's scope, the scope a request needs, and the answer.
class ScopeMatrixTest : public ::testing::TestWithParam<std::tuple<Scope, Scope, AuthResult>> {};

TEST_P(ScopeMatrixTest, ChecksCreatedToken) {
  auto [has, needed, expected] = GetParam();
  test::TempDir dir;
  auto path = dir.path() / "tokens.txt";
  std::string token = TokenFile::create_token(path, has);
  TokenFile file = TokenFile::load(path);
  EXPECT_EQ(file.check(bearer(token), needed), expected);
  EXPECT_EQ(file.check(bearer(new_token()), needed), AuthResult::Unknown);
  EXPECT_EQ(file.check(std::nullopt, needed), AuthResult::Missing);
}

INSTANTIATE_TEST_SUITE_P(
    AllPairs, ScopeMatrixTest,
    ::testing::Values(std::tuple{Scope::Ingest, Scope::Ingest, AuthResult::Allowed},
                      std::tuple{Scope::Ingest, Scope::Read, AuthResult::Forbidden},
                      std::tuple{Scope::Ingest, Scope::Admin, AuthResult::Forbidden},
                      std::tuple{Scope::Read, Scope::Ingest, AuthResult::Forbidden},
                      std::tuple{Scope::Read, Scope::Read, AuthResult::Allowed},
                      std::tuple{Scope::Read, Scope::Admin, AuthResult::Forbidden},
                      std::tuple{Scope::Admin, Scope::Ingest, AuthResult::Allowed},
                      std::tuple{Scope::Admin, Scope::Read, AuthResult::Allowed},
                      std::tuple{Scope::Admin, Scope::Admin, AuthResult::Allowed}));

TEST(TokenFileTest, NewFileHasMode0600WhateverTheUmask) {
  test::TempDir dir;
  auto path = dir.path() / "tokens.txt";
  mode_t old = ::umask(0);
  TokenFile::create_token(path, Scope::Admin);
  ::umask(old);
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
}

TEST(TokenFileTest, FileHoldsTheHashLineAndNeverTheToken) {
  test::TempDir dir;
  auto path = dir.path() / "tokens.txt";
  std::string token = TokenFile::create_token(path, Scope::Ingest, "  gpu workers  ");
  std::string text = test::read_file(path);
  EXPECT_EQ(text, token_hash(token) + " ingest gpu workers\n");
  EXPECT_THAT(text, Not(HasSubstr(token.substr(4))));
}

TEST(TokenFileTest, AppendsToAnExistingFile) {
  test::TempDir dir;
  auto path = dir.path() / "tokens.txt";
  write_file(path, "# ours\n");
  std::string first = TokenFile::create_token(path, Scope::Ingest);
  std::string second = TokenFile::create_token(path, Scope::Read, "ui");
  auto lines = test::read_lines(path);
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[0], "# ours");
  EXPECT_EQ(lines[1], token_hash(first) + " ingest");
  EXPECT_EQ(lines[2], token_hash(second) + " read ui");
  TokenFile file = TokenFile::load(path);
  EXPECT_EQ(file.check(bearer(first), Scope::Ingest), AuthResult::Allowed);
  EXPECT_EQ(file.check(bearer(second), Scope::Read), AuthResult::Allowed);
  EXPECT_EQ(file.check(bearer(first), Scope::Read), AuthResult::Forbidden);
}

TEST(TokenFileTest, AppendsAfterALastLineWithoutNewline) {
  test::TempDir dir;
  auto path = dir.path() / "tokens.txt";
  write_file(path, std::string(kAbcHash) + " read");
  std::string token = TokenFile::create_token(path, Scope::Admin);
  auto lines = test::read_lines(path);
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0], std::string(kAbcHash) + " read");
  EXPECT_EQ(lines[1], token_hash(token) + " admin");
}

TEST(TokenFileTest, CreateInAMissingFolderNamesThePath) {
  test::TempDir dir;
  auto path = dir.path() / "no" / "tokens.txt";
  EXPECT_EQ(error_of([&] { TokenFile::create_token(path, Scope::Read); }),
            "cannot open " + path.string() + ": No such file or directory");
  EXPECT_FALSE(std::filesystem::exists(dir.path() / "no"));
}

TEST(TokenFileTest, CreateLeavesAFileThatDoesNotLoadAlone) {
  test::TempDir dir;
  auto path = dir.path() / "tokens.txt";
  write_file(path, "# header\nnot-a-hash read\n");
  EXPECT_EQ(error_of([&] { TokenFile::create_token(path, Scope::Read); }),
            path.string() + ":2: expected 64 hex digits (the token's SHA-256), got 10 characters");
  EXPECT_EQ(test::read_file(path), "# header\nnot-a-hash read\n");
}

TEST(TokenFileTest, CreateRejectsALabelWithControlCharacters) {
  test::TempDir dir;
  auto path = dir.path() / "tokens.txt";
  EXPECT_THAT(error_of([&] { TokenFile::create_token(path, Scope::Read, "two\nlines"); }),
              HasSubstr("label"));
  EXPECT_FALSE(std::filesystem::exists(path));
}

// ---- Loading ---------------------------------------------------------------------------------

TEST(TokenFileTest, LoadSkipsCommentsAndBlankLinesAndReadsEveryField) {
  test::TempDir dir;
  auto path = dir.path() / "tokens.txt";
  std::string upper(kAbcHash);
  for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  write_file(path,
             "# tokens for the lab\n"
             "\n"
             "   \t\n"
             "  # indented comment\n" +
                 std::string(kAbcHash) + " read,ingest  build farm, rack 2 \r\n" + "\t" + upper +
                 "\tadmin\n" + std::string(kAbcHash) + " read,read");
  TokenFile file = TokenFile::load(path);
  ASSERT_EQ(file.size(), 3u);
  EXPECT_EQ(file.entries()[0].scopes, (std::vector<Scope>{Scope::Read, Scope::Ingest}));
  EXPECT_EQ(file.entries()[0].label, "build farm, rack 2");
  EXPECT_EQ(file.entries()[0].hash.size(), 32u);
  EXPECT_EQ(file.entries()[1].hash, file.entries()[0].hash);
  EXPECT_EQ(file.entries()[1].scopes, std::vector<Scope>{Scope::Admin});
  EXPECT_EQ(file.entries()[1].label, "");
  EXPECT_EQ(file.entries()[2].scopes, std::vector<Scope>{Scope::Read});
}

TEST(TokenFileTest, SameHashOnTwoLinesAddsUpTheScopes) {
  test::TempDir dir;
  auto path = dir.path() / "tokens.txt";
  write_file(path, std::string(kAbcHash) + " read\n" + std::string(kAbcHash) + " ingest\n");
  TokenFile file = TokenFile::load(path);
  EXPECT_EQ(file.check("Bearer abc", Scope::Read), AuthResult::Allowed);
  EXPECT_EQ(file.check("Bearer abc", Scope::Ingest), AuthResult::Allowed);
  EXPECT_EQ(file.check("Bearer abc", Scope::Admin), AuthResult::Forbidden);
}

TEST(TokenFileTest, EmptyFileKnowsNoToken) {
  test::TempDir dir;
  auto path = dir.path() / "tokens.txt";
  write_file(path, "");
  TokenFile file = TokenFile::load(path);
  EXPECT_EQ(file.size(), 0u);
  EXPECT_EQ(file.check("Bearer abc", Scope::Read), AuthResult::Unknown);
}

TEST(TokenFileTest, LoadOfAMissingFileNamesThePath) {
  test::TempDir dir;
  auto path = dir.path() / "missing.txt";
  EXPECT_EQ(error_of([&] { TokenFile::load(path); }),
            "cannot open " + path.string() + ": No such file or directory");
  EXPECT_EQ(error_of([&] { TokenFile::load(dir.path()); }),
            "cannot open " + dir.path().string() + ": Is a directory");
}

struct BadLine {
  std::string line;
  std::string reason;
};

class TokenFileBadLineTest : public ::testing::TestWithParam<BadLine> {};

TEST_P(TokenFileBadLineTest, NamesPathAndLine) {
  test::TempDir dir;
  auto path = dir.path() / "tokens.txt";
  write_file(path, "# first\n" + std::string(kAbcHash) + " read ok\n" + GetParam().line + "\n");
  EXPECT_EQ(error_of([&] { TokenFile::load(path); }), path.string() + ":3: " + GetParam().reason);
}

const std::string kHex(kAbcHash);

INSTANTIATE_TEST_SUITE_P(
    Lines, TokenFileBadLineTest,
    ::testing::Values(
        BadLine{kHex.substr(0, 63) + " read",
                "expected 64 hex digits (the token's SHA-256), got 63 characters"},
        BadLine{kHex + "0 read", "expected 64 hex digits (the token's SHA-256), got 65 characters"},
        BadLine{"g" + kHex.substr(1) + " read",
                "expected 64 hex digits (the token's SHA-256), got a character that is not a hex "
                "digit"},
        BadLine{kHex, "expected a scope after the hash (ingest, read or admin)"},
        BadLine{kHex + "   \t", "expected a scope after the hash (ingest, read or admin)"},
        BadLine{kHex + " write", "unknown scope 'write' (expected ingest, read or admin)"},
        BadLine{kHex + " Read", "unknown scope 'Read' (expected ingest, read or admin)"},
        BadLine{kHex + " read,", "empty scope in the list (expected ingest, read or admin)"},
        BadLine{kHex + " read,,ingest", "empty scope in the list (expected ingest, read or admin)"},
        BadLine{kHex + " read;ingest", "unknown scope (expected ingest, read or admin)"},
        BadLine{"slg_abc read",
                "this looks like a token, not its hash: the file holds SHA-256 hashes only "
                "('stagelog token create' writes them)"}));

TEST(TokenFileTest, ErrorsNeverQuoteAToken) {
  test::TempDir dir;
  auto path = dir.path() / "tokens.txt";
  std::string token = new_token();
  std::string secret = token.substr(4);  // Also without its prefix.
  for (const std::string& line :
       {token + " read", secret + " read", token_hash(token) + " " + token,
        token_hash(token) + " " + secret, token_hash(token) + " read," + secret + " label"}) {
    write_file(path, line + "\n");
    std::string message = error_of([&] { TokenFile::load(path); });
    EXPECT_THAT(message, StartsWith(path.string() + ":1: "));
    EXPECT_THAT(message, Not(HasSubstr(secret.substr(0, 8)))) << line;
  }
}

// Random bytes, and random pieces of valid lines, never crash load(): it returns a file or
// throws stagelog::Error naming the path.
TEST(TokenFileTest, LoadOfRandomBytesReturnsOrThrowsError) {
  test::TempDir dir;
  auto path = dir.path() / "tokens.txt";
  std::mt19937 rng(20240611);
  const std::vector<std::string> pieces = {kHex,
                                           kHex.substr(0, 40),
                                           " ",
                                           "\t",
                                           "\n",
                                           "\r\n",
                                           "#",
                                           ",",
                                           "read",
                                           "ingest",
                                           "admin",
                                           "slg_",
                                           std::string(1, '\0'),
                                           kHex + " read,admin a label\n"};
  for (int round = 0; round < 2000; ++round) {
    std::string text;
    std::size_t parts = rng() % 24;
    for (std::size_t i = 0; i < parts; ++i) {
      if (rng() % 2 == 0) {
        text += pieces[rng() % pieces.size()];
      } else {
        for (std::size_t n = rng() % 8; n > 0; --n) text += static_cast<char>(rng() & 0xFF);
      }
    }
    write_file(path, text);
    try {
      TokenFile file = TokenFile::load(path);
      for (const auto& entry : file.entries()) {
        EXPECT_EQ(entry.hash.size(), 32u);
        EXPECT_FALSE(entry.scopes.empty());
      }
      EXPECT_NE(file.check("Bearer abc", Scope::Read), AuthResult::Missing);
    } catch (const Error& e) {
      EXPECT_THAT(e.what(), StartsWith(path.string() + ":"));
    }
  }
}

// ---- Authorization headers -------------------------------------------------------------------

class TokenFileCheckTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = dir_.path() / "tokens.txt";
    token_ = TokenFile::create_token(path_, Scope::Read);
    file_ = TokenFile::load(path_);
  }
  AuthResult check(std::optional<std::string> header) const {
    if (!header) return file_.check(std::nullopt, Scope::Read);
    return file_.check(std::string_view(*header), Scope::Read);
  }

  test::TempDir dir_;
  std::filesystem::path path_;
  std::string token_;
  TokenFile file_;
};

TEST_F(TokenFileCheckTest, SchemeIsCaseInsensitive) {
  EXPECT_EQ(check("Bearer " + token_), AuthResult::Allowed);
  EXPECT_EQ(check("bearer " + token_), AuthResult::Allowed);
  EXPECT_EQ(check("BEARER " + token_), AuthResult::Allowed);
  EXPECT_EQ(check("bEaReR " + token_), AuthResult::Allowed);
}

TEST_F(TokenFileCheckTest, SpacesAfterTheSchemeAndAroundTheValueAreAllowed) {
  EXPECT_EQ(check("Bearer   " + token_), AuthResult::Allowed);
  EXPECT_EQ(check("  Bearer " + token_ + " \t"), AuthResult::Allowed);
}

TEST_F(TokenFileCheckTest, NoBearerCredentialsIsMissing) {
  EXPECT_EQ(check(std::nullopt), AuthResult::Missing);
  EXPECT_EQ(check(""), AuthResult::Missing);
  EXPECT_EQ(check("   "), AuthResult::Missing);
  EXPECT_EQ(check("Basic dXNlcjpwYXNz"), AuthResult::Missing);
  EXPECT_EQ(check("Basic " + token_), AuthResult::Missing);
  EXPECT_EQ(check(token_), AuthResult::Missing);             // No scheme at all.
  EXPECT_EQ(check("Bearer" + token_), AuthResult::Missing);  // Scheme "Bearerslg_...".
}

TEST_F(TokenFileCheckTest, MalformedOrEmptyBearerTokenIsUnknown) {
  EXPECT_EQ(check("Bearer"), AuthResult::Unknown);
  EXPECT_EQ(check("Bearer "), AuthResult::Unknown);
  EXPECT_EQ(check("Bearer    "), AuthResult::Unknown);
  EXPECT_EQ(check("Bearer " + token_ + " extra"), AuthResult::Unknown);
  EXPECT_EQ(check("Bearer " + token_ + "x"), AuthResult::Unknown);
  EXPECT_EQ(check("Bearer " + token_.substr(0, token_.size() - 1)), AuthResult::Unknown);
  EXPECT_EQ(check("Bearer\t" + token_), AuthResult::Unknown);
  EXPECT_EQ(check("Bearer =" + token_), AuthResult::Unknown);
  EXPECT_EQ(check("Bearer " + token_ + "\n"), AuthResult::Unknown);
  EXPECT_EQ(check("Bearer " + std::string(100000, 'a')), AuthResult::Unknown);
  EXPECT_EQ(check("Bearer " + token_hash(token_)), AuthResult::Unknown);  // The hash is no key.
}

TEST_F(TokenFileCheckTest, ReadTokenIsForbiddenToIngestAndAdmin) {
  EXPECT_EQ(file_.check(bearer(token_), Scope::Ingest), AuthResult::Forbidden);
  EXPECT_EQ(file_.check(bearer(token_), Scope::Admin), AuthResult::Forbidden);
}

TEST(TokenFileScopeTest, ListedScopesAreAllowedAndOthersForbidden) {
  test::TempDir dir;
  auto path = dir.path() / "tokens.txt";
  write_file(path, std::string(kAbcHash) + " ingest,read\n");
  TokenFile file = TokenFile::load(path);
  EXPECT_EQ(file.check("Bearer abc", Scope::Ingest), AuthResult::Allowed);
  EXPECT_EQ(file.check("Bearer abc", Scope::Read), AuthResult::Allowed);
  EXPECT_EQ(file.check("Bearer abc", Scope::Admin), AuthResult::Forbidden);
}

}  // namespace
}  // namespace stagelog::server
