#pragma once

#include <string_view>

namespace h2loop::server {

// Returned for unknown or missing extensions.
inline constexpr std::string_view kDefaultMimeType = "application/octet-stream";

// Content-type for a file name or path, chosen by the extension after the last '.' of the
// last path segment, compared case-insensitively ("INDEX.HTML" is text/html). text/* types
// carry "; charset=utf-8". The result points to static storage; never allocates.
[[nodiscard]] std::string_view mimeTypeForPath(std::string_view path) noexcept;

}  // namespace h2loop::server
