// Bearer tokens: generation, the tokens file (hashes only) and the Authorization check.

#include "stagelog/server/auth.hpp"

#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <fstream>
#include <string>
#include <string_view>
#include <utility>

#include "base/ascii.hpp"
#include "base/errno_text.hpp"
#include "base/hex.hpp"
#include "base/sha256.hpp"
#include "stagelog/error.hpp"

namespace stagelog::server {

namespace {

constexpr std::string_view kTokenPrefix = "slg_";
constexpr std::size_t kTokenBytes = 32;  // 256 bits.
constexpr std::size_t kHashBytes = 32;   // SHA-256.
// A presented token longer than this is not ours (ours are 47 characters): it is not hashed.
constexpr std::size_t kMaxPresentedToken = 1024;
constexpr std::string_view kScopeList = "ingest, read or admin";

using Digest = detail::Sha256;

// Base64url (RFC 4648 section 5) without padding.
std::string base64url(const unsigned char* bytes, std::size_t size) {
  constexpr std::string_view kAlphabet =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string out;
  out.reserve((size * 4 + 2) / 3);
  std::size_t i = 0;
  for (; i + 3 <= size; i += 3) {
    unsigned v = (unsigned{bytes[i]} << 16) | (unsigned{bytes[i + 1]} << 8) | bytes[i + 2];
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
    out += kAlphabet[v & 63];
  }
  if (size - i == 1) {
    unsigned v = unsigned{bytes[i]} << 16;
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
  } else if (size - i == 2) {
    unsigned v = (unsigned{bytes[i]} << 16) | (unsigned{bytes[i + 1]} << 8);
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
  }
  return out;
}

bool is_space(char c) { return c == ' ' || c == '\t'; }

std::string_view trim(std::string_view s) {
  while (!s.empty() && (is_space(s.front()) || s.front() == '\r')) s.remove_prefix(1);
  while (!s.empty() && (is_space(s.back()) || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

// The next space- or tab-separated field of `rest`, which then starts after it.
std::string_view next_field(std::string_view& rest) {
  std::size_t start = 0;
  while (start < rest.size() && is_space(rest[start])) ++start;
  std::size_t end = start;
  while (end < rest.size() && !is_space(rest[end])) ++end;
  std::string_view field = rest.substr(start, end - start);
  rest.remove_prefix(end);
  return field;
}

unsigned scope_bit(Scope scope) { return 1u << static_cast<unsigned>(scope); }

// RFC 6750's b64token: 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"=".
bool is_b64token(std::string_view s) {
  std::size_t end = s.size();
  while (end > 0 && s[end - 1] == '=') --end;
  if (end == 0) return false;
  return std::all_of(s.begin(), s.begin() + static_cast<std::ptrdiff_t>(end), [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           std::string_view("-._~+/").find(c) != std::string_view::npos;
  });
}

using detail::iequals_ascii;

// Why a hash field is not 64 hex digits. The field itself is never quoted: it might be a
// token pasted into the wrong file.
std::string bad_hash_reason(std::string_view field) {
  if (field.starts_with(kTokenPrefix)) {
    return "this looks like a token, not its hash: the file holds SHA-256 hashes only "
           "('stagelog token create' writes them)";
  }
  std::string reason = "expected 64 hex digits (the token's SHA-256), got ";
  if (field.size() != 2 * kHashBytes) return reason + std::to_string(field.size()) + " characters";
  return reason + "a character that is not a hex digit";
}

// Why a scope is not known. Quoted only when it looks like a word, not like a secret.
std::string bad_scope_reason(std::string_view scope) {
  std::string expected = "(expected " + std::string(kScopeList) + ")";
  if (scope.empty()) return "empty scope in the list " + expected;
  bool word = scope.size() <= 10 && std::all_of(scope.begin(), scope.end(), [](char c) {
                return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
              });
  std::string reason = "unknown scope ";
  if (word) reason += "'" + std::string(scope) + "' ";
  return reason + expected;
}

// Writes all of `data` to `fd`.
bool write_all(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    data.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

class Fd {
 public:
  explicit Fd(int fd) noexcept : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  // Closes now, reporting close()'s error (NFS reports failed writes there).
  int close() noexcept { return ::close(std::exchange(fd_, -1)); }

 private:
  int fd_;
};

}  // namespace

std::optional<Scope> parse_scope(std::string_view text) noexcept {
  if (text == "ingest") return Scope::Ingest;
  if (text == "read") return Scope::Read;
  if (text == "admin") return Scope::Admin;
  return std::nullopt;
}

std::string_view scope_name(Scope scope) noexcept {
  switch (scope) {
    case Scope::Ingest:
      return "ingest";
    case Scope::Read:
      return "read";
    case Scope::Admin:
      return "admin";
  }
  return "unknown";
}

std::string new_token() {
  std::array<unsigned char, kTokenBytes> bytes{};
  if (RAND_bytes(bytes.data(), static_cast<int>(bytes.size())) != 1) {
    throw Error("cannot make a token: the system's random number generator failed");
  }
  std::string token = std::string(kTokenPrefix) + base64url(bytes.data(), bytes.size());
  OPENSSL_cleanse(bytes.data(), bytes.size());
  return token;
}

std::string token_hash(std::string_view token) { return detail::to_hex(detail::sha256(token)); }

TokenFile TokenFile::load(const std::filesystem::path& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    throw Error("cannot open " + path.string() + ": " + detail::errno_text(EISDIR));
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("cannot open " + path.string() + ": " + detail::errno_text(errno));
  TokenFile file;
  std::size_t number = 0;
  for (std::string line; std::getline(in, line);) {
    ++number;
    auto fail = [&](const std::string& reason) {
      throw Error(path.string() + ":" + std::to_string(number) + ": " + reason);
    };
    std::string_view rest = trim(line);
    if (rest.empty() || rest.front() == '#') continue;

    std::string_view hash = next_field(rest);
    if (hash.size() != 2 * kHashBytes) fail(bad_hash_reason(hash));
    Entry entry;
    entry.hash.resize(kHashBytes);
    for (std::size_t i = 0; i < kHashBytes; ++i) {
      int high = detail::hex_value(hash[2 * i]);
      int low = detail::hex_value(hash[2 * i + 1]);
      if (high < 0 || low < 0) fail(bad_hash_reason(hash));
      entry.hash[i] = static_cast<char>(high * 16 + low);
    }

    std::string_view scopes = next_field(rest);
    if (scopes.empty()) fail("expected a scope after the hash (" + std::string(kScopeList) + ")");
    while (true) {
      std::size_t comma = scopes.find(',');
      std::string_view name = scopes.substr(0, comma);
      std::optional<Scope> scope = parse_scope(name);
      if (!scope) fail(bad_scope_reason(name));
      if (std::find(entry.scopes.begin(), entry.scopes.end(), *scope) == entry.scopes.end()) {
        entry.scopes.push_back(*scope);
      }
      if (comma == std::string_view::npos) break;
      scopes.remove_prefix(comma + 1);
    }

    entry.label = std::string(trim(rest));
    file.entries_.push_back(std::move(entry));
  }
  if (in.bad()) throw Error("cannot read " + path.string() + ": " + detail::errno_text(errno));
  return file;
}

std::string TokenFile::create_token(const std::filesystem::path& path, Scope scope,
                                    std::string_view label) {
  label = trim(label);
  if (std::any_of(label.begin(), label.end(),
                  [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7F; })) {
    throw Error("a token's label must be one line without control characters");
  }
  // An existing file must parse: a token appended to a file the server rejects is no use.
  std::error_code ec;
  if (std::filesystem::exists(path, ec)) load(path);

  std::string name = path.string();
  bool created = true;
  int fd = ::open(name.c_str(), O_RDWR | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0600);
  if (fd < 0 && errno == EEXIST) {
    created = false;
    fd = ::open(name.c_str(), O_RDWR | O_APPEND | O_CLOEXEC);
  }
  if (fd < 0) throw Error("cannot open " + name + ": " + detail::errno_text(errno));
  Fd file(fd);
  auto fail = [&](const char* what) {
    throw Error(std::string("cannot ") + what + " " + name + ": " + detail::errno_text(errno));
  };
  // The umask may have taken bits off 0600, never added any; a new file gets exactly 0600.
  if (created && ::fchmod(fd, 0600) != 0) fail("set the mode of");

  // A last line without its newline (edited by hand) must not swallow ours.
  std::string line;
  struct stat st {};
  if (::fstat(fd, &st) != 0) fail("stat");
  if (st.st_size > 0) {
    char last = '\n';
    if (::pread(fd, &last, 1, st.st_size - 1) != 1) fail("read");
    if (last != '\n') line += '\n';
  }

  std::string token = new_token();
  line += token_hash(token);
  line += ' ';
  line += scope_name(scope);
  if (!label.empty()) {
    line += ' ';
    line += label;
  }
  line += '\n';
  if (!write_all(fd, line)) fail("write");
  if (::fsync(fd) != 0) fail("fsync");
  if (file.close() != 0) fail("close");
  if (created) {
    // The new directory entry is durable once its folder is synced. Best effort: some file
    // systems refuse fsync on a folder, and the token is written either way.
    std::filesystem::path parent = path.parent_path();
    if (parent.empty()) parent = ".";
    int dir = ::open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir >= 0) {
      Fd dir_fd(dir);
      (void)::fsync(dir);
    }
  }
  return token;
}

AuthResult TokenFile::check(std::optional<std::string_view> authorization, Scope needed) const {
  if (!authorization) return AuthResult::Missing;
  // Optional whitespace around a field value is not part of it (RFC 9110 section 5.5).
  std::string_view value = trim(*authorization);
  if (value.empty()) return AuthResult::Missing;
  // credentials = auth-scheme [ 1*SP token68 ] (RFC 7235); the scheme is case-insensitive.
  std::size_t space = value.find_first_of(" \t");
  std::string_view scheme = value.substr(0, space);
  if (!iequals_ascii(scheme, "Bearer")) return AuthResult::Missing;
  if (space == std::string_view::npos) return AuthResult::Unknown;  // "Bearer" and no token.
  std::string_view token = value.substr(space);
  while (!token.empty() && token.front() == ' ') token.remove_prefix(1);  // A tab stays: bad.
  if (token.size() > kMaxPresentedToken || !is_b64token(token)) return AuthResult::Unknown;

  Digest presented = detail::sha256(token);
  // Every entry is compared, in full, whatever matched before: the time taken does not depend
  // on where (or whether) the token matched. Duplicate hashes add up their scopes.
  unsigned matched = 0;
  unsigned granted = 0;
  for (const Entry& entry : entries_) {
    unsigned equal = CRYPTO_memcmp(presented.data(), entry.hash.data(), kHashBytes) == 0 ? 1 : 0;
    matched |= equal;
    unsigned bits = 0;
    for (Scope scope : entry.scopes) bits |= scope_bit(scope);
    granted |= bits & (0u - equal);
  }
  OPENSSL_cleanse(presented.data(), presented.size());
  if (matched == 0) return AuthResult::Unknown;
  if ((granted & (scope_bit(needed) | scope_bit(Scope::Admin))) == 0) return AuthResult::Forbidden;
  return AuthResult::Allowed;
}

}  // namespace stagelog::server
