#include "server/mime_types.h"

#include <array>
#include <cstddef>
#include <utility>

namespace h2loop::server {

namespace {

// Small and linear on purpose: ~30 entries, compared only on a cache miss or per request
// for a handful of bytes. Extensions are lower case here.
constexpr std::array<std::pair<std::string_view, std::string_view>, 28> kTypes = {{
    {"html", "text/html; charset=utf-8"},
    {"htm", "text/html; charset=utf-8"},
    {"css", "text/css; charset=utf-8"},
    {"js", "text/javascript; charset=utf-8"},  // RFC 9239
    {"mjs", "text/javascript; charset=utf-8"},
    {"json", "application/json"},  // JSON is UTF-8 by definition (RFC 8259); no charset
    {"txt", "text/plain; charset=utf-8"},
    {"xml", "application/xml"},
    {"svg", "image/svg+xml"},
    {"png", "image/png"},
    {"jpg", "image/jpeg"},
    {"jpeg", "image/jpeg"},
    {"gif", "image/gif"},
    {"webp", "image/webp"},
    {"ico", "image/x-icon"},
    {"wasm", "application/wasm"},
    {"pdf", "application/pdf"},
    {"woff", "font/woff"},
    {"woff2", "font/woff2"},
    {"mp4", "video/mp4"},
    {"webm", "video/webm"},
    {"mp3", "audio/mpeg"},
    {"wav", "audio/wav"},
    {"gz", "application/gzip"},
    {"zip", "application/zip"},
    {"tar", "application/x-tar"},
    {"bin", "application/octet-stream"},
    {"map", "application/json"},  // source maps
}};

constexpr std::size_t kMaxExtLen = 5;

constexpr char lower(char c) noexcept {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c;
}

}  // namespace

std::string_view mimeTypeForPath(std::string_view path) noexcept {
  const std::size_t slash = path.find_last_of('/');
  if (slash != std::string_view::npos) path.remove_prefix(slash + 1);
  const std::size_t dot = path.find_last_of('.');
  // No dot, or a dot-file with no further extension (".bashrc"): no type.
  if (dot == std::string_view::npos || dot == 0) return kDefaultMimeType;
  const std::string_view ext = path.substr(dot + 1);
  if (ext.empty() || ext.size() > kMaxExtLen) return kDefaultMimeType;

  char buf[kMaxExtLen];
  for (std::size_t i = 0; i < ext.size(); ++i)
    buf[i] = lower(ext[i]);
  const std::string_view key(buf, ext.size());
  for (const auto& [e, type] : kTypes) {
    if (e == key) return type;
  }
  return kDefaultMimeType;
}

}  // namespace h2loop::server
