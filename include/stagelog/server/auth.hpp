#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace stagelog::server {

// What a token may do. Admin may do everything; read and ingest only what they name.
enum class Scope { Ingest, Read, Admin };

// "ingest", "read", "admin"; nullopt for anything else.
std::optional<Scope> parse_scope(std::string_view text) noexcept;
std::string_view scope_name(Scope scope) noexcept;

// The outcome of checking an Authorization header against the tokens file, mapped at the HTTP
// edge to 200 (Allowed), 401 (Missing, Unknown) or 403 (Forbidden).
enum class AuthResult { Allowed, Missing, Unknown, Forbidden };

// A new bearer token: "slg_" followed by 43 base64url characters (256 random bits from the
// system's CSPRNG). Shown once; only its hash is ever stored.
std::string new_token();
// Lowercase hex SHA-256 of the token's bytes: what the tokens file holds.
std::string token_hash(std::string_view token);

// The tokens file: one token per line,
//   <64 hex digits: SHA-256 of the token> <scope>[,<scope>...] [<label...>]
// Fields are separated by spaces or tabs. Blank lines and lines starting with '#' are ignored.
// The file never holds a token itself. The same hash on two lines is allowed: its scopes add up.
//
// Threads: check() may be called from any thread concurrently; create_token() and load() are
// setup calls made before the server starts (or with no concurrent check()).
class TokenFile {
 public:
  // Reads the file. Throws stagelog::Error naming the path and line for a line that does not
  // parse ("tokens.txt:3: expected 64 hex digits, got ..."), or when the file cannot be read.
  static TokenFile load(const std::filesystem::path& path);

  // Creates the file (mode 0600) with one new token of `scope`, or appends one to it, and
  // returns the token (the only time it is ever seen). The write is fsynced before returning.
  // The parent folder is not created. Throws stagelog::Error when the file cannot be written,
  // when an existing file does not load(), or when the label holds a control character.
  static std::string create_token(const std::filesystem::path& path, Scope scope,
                                  std::string_view label = {});

  // Checks an Authorization header value ("Bearer <token>"; nullopt when the request has no
  // such header). The token's hash is compared with every stored hash in constant time, so the
  // answer's timing says nothing about which bytes matched. Never logs the token.
  //
  // The scheme is case-insensitive and one or more spaces may follow it (RFC 7235); whitespace
  // around the whole value is ignored. Missing: no header, an empty one, or another scheme
  // ("Basic ..."). Unknown: "Bearer" with no token, a malformed one (not RFC 6750's b64token,
  // e.g. two words) or one whose hash is not in the file. Forbidden: a known token whose scopes
  // do not include `needed` or admin.
  [[nodiscard]] AuthResult check(std::optional<std::string_view> authorization, Scope needed) const;

  // One line of the file: what a token may do, never the token itself.
  struct Entry {
    std::string hash;           // 32 raw bytes: the token's SHA-256.
    std::vector<Scope> scopes;  // In the file's order, each once.
    std::string label;          // The rest of the line, trimmed; may be empty.
  };
  // In the file's order, for listing (`stagelog token list`).
  const std::vector<Entry>& entries() const noexcept { return entries_; }
  std::size_t size() const noexcept { return entries_.size(); }

 private:
  std::vector<Entry> entries_;
};

}  // namespace stagelog::server
