#include "server/web.hpp"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <system_error>

namespace stagelog::detail {

namespace {

bool safe_relative_path(std::string_view path) {
  if (path.empty()) return false;
  for (;;) {
    std::size_t slash = path.find('/');
    std::string_view part = path.substr(0, slash);
    if (part.empty() || part.front() == '.') return false;
    if (part.find('\0') != std::string_view::npos || part.find('\\') != std::string_view::npos) {
      return false;
    }
    if (slash == std::string_view::npos) return true;
    path.remove_prefix(slash + 1);
  }
}

std::optional<std::string> read_regular_file(const std::filesystem::path& file) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(file, ec)) return std::nullopt;
  std::ifstream in(file, std::ios::binary);
  if (!in) return std::nullopt;
  std::ostringstream bytes;
  bytes << in.rdbuf();
  if (in.bad()) return std::nullopt;
  return std::move(bytes).str();
}

}  // namespace

std::string_view web_content_type(std::string_view path) {
  struct Type {
    std::string_view extension;
    std::string_view content_type;
  };
  static constexpr Type kTypes[] = {
      {".html", "text/html; charset=utf-8"},
      {".js", "text/javascript; charset=utf-8"},
      {".mjs", "text/javascript; charset=utf-8"},
      {".css", "text/css; charset=utf-8"},
      {".svg", "image/svg+xml"},
      {".png", "image/png"},
      {".ico", "image/x-icon"},
      {".json", "application/json"},
      {".webmanifest", "application/manifest+json"},
      {".woff2", "font/woff2"},
      {".txt", "text/plain; charset=utf-8"},
  };
  for (const Type& type : kTypes) {
    if (path.ends_with(type.extension)) return type.content_type;
  }
  return "application/octet-stream";
}

std::optional<WebFile> find_web_file(std::string_view path, const std::string& web_dir) {
  if (path.empty()) path = "index.html";
  if (!safe_relative_path(path)) return std::nullopt;
  if (!web_dir.empty()) {
    auto bytes = read_regular_file(std::filesystem::path(web_dir) / std::string(path));
    if (!bytes) return std::nullopt;
    return WebFile{std::move(*bytes), {}, web_content_type(path)};
  }
  auto files = embedded_web_files();
  auto it = std::lower_bound(files.begin(), files.end(), path,
                             [](const EmbeddedFile& f, std::string_view p) { return f.path < p; });
  if (it == files.end() || it->path != path) return std::nullopt;
  return WebFile{std::string(it->bytes), std::string(it->etag), web_content_type(path)};
}

}  // namespace stagelog::detail
