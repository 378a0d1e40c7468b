// stagelog token create|list: the bearer tokens `stagelog serve` accepts. The tokens file holds
// only their SHA-256 hashes; a new token is printed once, on stdout, and never again.

#include <algorithm>
#include <cstdio>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "commands.hpp"
#include "format/format.hpp"
#include "stagelog/server/auth.hpp"

namespace stagelog::cli {

namespace {

// Hex digits of the hash that `token list` shows: enough to tell tokens apart, not to look one
// up anywhere.
constexpr std::size_t kHashPrefixBytes = 6;

struct TokenOptions {
  std::string tokens;
  std::string scope;
  std::string label;
};

std::string hex_prefix(const std::string& raw) {
  constexpr std::string_view kDigits = "0123456789abcdef";
  std::string out;
  for (std::size_t i = 0; i < std::min(raw.size(), kHashPrefixBytes); ++i) {
    auto byte = static_cast<unsigned char>(raw[i]);
    out += kDigits[byte >> 4];
    out += kDigits[byte & 0x0F];
  }
  return out;
}

int create(const TokenOptions& o) {
  server::Scope scope = *server::parse_scope(o.scope);  // Checked by CLI11.
  std::string token = server::TokenFile::create_token(o.tokens, scope, o.label);
  std::string line = token + "\n";
  std::fwrite(line.data(), 1, line.size(), stdout);
  std::fflush(stdout);
  std::fprintf(stderr,
               "stagelog token: new %s token (hash %s) shown once, above; %s holds only its "
               "hash\n",
               std::string(server::scope_name(scope)).c_str(),
               server::token_hash(token).substr(0, 2 * kHashPrefixBytes).c_str(), o.tokens.c_str());
  return 0;
}

int list(const TokenOptions& o) {
  server::TokenFile file = server::TokenFile::load(o.tokens);
  std::vector<std::string> scopes;
  std::size_t width = 0;
  for (const auto& entry : file.entries()) {
    std::string names;
    for (server::Scope scope : entry.scopes) {
      if (!names.empty()) names += ',';
      names += server::scope_name(scope);
    }
    width = std::max(width, names.size());
    scopes.push_back(std::move(names));
  }
  std::string out;
  for (std::size_t i = 0; i < file.entries().size(); ++i) {
    const auto& entry = file.entries()[i];
    out += hex_prefix(entry.hash) + "  " + scopes[i];
    if (!entry.label.empty()) {
      out += std::string(width - scopes[i].size() + 2, ' ');
      detail::append_escaped_text(out, entry.label);  // A label must not drive the terminal.
    }
    out += '\n';
  }
  std::fwrite(out.data(), 1, out.size(), stdout);
  std::fflush(stdout);
  if (file.size() == 0) {
    std::fprintf(stderr, "stagelog token: %s holds no tokens\n", o.tokens.c_str());
  }
  return 0;
}

}  // namespace

Command add_token(CLI::App& app) {
  auto o = std::make_shared<TokenOptions>();
  CLI::App* cmd = app.add_subcommand(
      "token",
      "Create and list the bearer tokens that `stagelog serve` accepts. A client sends one as\n"
      "'Authorization: Bearer slg_...'. The tokens file holds only each token's SHA-256 hash,\n"
      "so reading the file does not give a token away; a new token is shown once, when it is\n"
      "created, and cannot be shown again (create another and delete the old line instead).");
  cmd->require_subcommand(1);
  cmd->footer(
      "Scopes:\n"
      "  ingest  send events to the server\n"
      "  read    read runs, workers and logs (the web UI, the API)\n"
      "  admin   everything: what ingest and read may do, and admin-only requests\n"
      "\n"
      "The tokens file: one token per line, fields separated by spaces,\n"
      "  <SHA-256 of the token, 64 hex digits> <scope>[,<scope>...] [label]\n"
      "Lines starting with '#' and blank lines are ignored. Delete a line to revoke its\n"
      "token. A running `stagelog serve` re-reads the file within a second of a change (or\n"
      "at once on SIGHUP). `token create` makes the file with mode 0600.\n"
      "\n"
      "Examples:\n"
      "  $ stagelog token create --tokens tokens.txt --scope ingest --label 'gpu workers'\n"
      "  slg_...\n"
      "  $ stagelog token list --tokens tokens.txt\n"
      "  3f9a1c0b2d4e  ingest  gpu workers\n");

  CLI::App* create_cmd = cmd->add_subcommand(
      "create",
      "Make a token, append its hash to the tokens file and print the token (shown only once).\n"
      "The file is created with mode 0600 if missing; its folder must exist.");
  create_cmd->add_option("--tokens", o->tokens, "The tokens file")->type_name("FILE")->required();
  create_cmd
      ->add_option("--scope", o->scope,
                   "What the token may do: ingest (send events), read (the UI and API) or admin "
                   "(everything)")
      ->type_name("SCOPE")
      ->required()
      ->check(CLI::Validator(
          [](const std::string& text) -> std::string {
            if (server::parse_scope(text)) return {};
            return "'" + text + "' is not a scope: use ingest, read or admin";
          },
          ""));
  create_cmd->add_option("--label", o->label, "Who or what the token is for, shown by `token list`")
      ->type_name("TEXT");

  CLI::App* list_cmd = cmd->add_subcommand(
      "list",
      "Print one line per token: the first 12 hex digits of its hash, its scopes, its label.\n"
      "Tokens themselves are never stored, so never shown.");
  list_cmd->add_option("--tokens", o->tokens, "The tokens file")->type_name("FILE")->required();

  return [o, create_cmd, list_cmd]() -> int {
    if (create_cmd->parsed()) return create(*o);
    if (list_cmd->parsed()) return list(*o);
    return 2;
  };
}

}  // namespace stagelog::cli
