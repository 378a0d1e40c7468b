// The web UI's files, served by `stagelog serve` at "/": embedded into the binary at build time
// (cmake/embed_files.cmake writes embedded_web_files()), or read from a folder on every request
// while the UI is being worked on (`serve --web-dir`).
#pragma once

#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace stagelog::detail {

struct EmbeddedFile {
  std::string_view path;  // Relative to web/: "index.html", "css/app.css".
  std::string_view bytes;
  std::string_view etag;  // Quoted, as sent: "\"3fa0…\"".
};

// Generated; sorted by path.
std::span<const EmbeddedFile> embedded_web_files();

struct WebFile {
  std::string bytes;
  std::string etag;  // Quoted; empty when read from a folder (never cached then).
  std::string_view content_type;
};

// The file a request path names ("/" is "index.html"), or nullopt when there is none. `path` is
// the percent-decoded path without its leading '/'; a part that is empty, or starts with '.'
// ("..", ".git") never names a file. `web_dir` empty: the embedded files; else that folder.
std::optional<WebFile> find_web_file(std::string_view path, const std::string& web_dir);

// The Content-Type for a file name, by its extension; application/octet-stream when unknown.
std::string_view web_content_type(std::string_view path);

}  // namespace stagelog::detail
