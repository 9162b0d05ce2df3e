#pragma once
// The h2loop binary's routes, made from its configuration: the metrics path,
// the WebSocket echo, the document roots (root at "/", the mounts below their
// prefixes, each with its response fields) and the error pages.

#include <cstddef>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "h2loop/http.h"
#include "server/config.h"

namespace h2loop::server {

// An error page file is read whole into memory at start-up: at most this.
inline constexpr std::size_t kMaxErrorPageBytes = 64 * 1024;

// Why `prefix` cannot be a Mount's prefix; empty when it can. It starts with
// '/', is not "/" (that is `root`), and has no '?', '#', whitespace or control
// character.
[[nodiscard]] std::string_view mountPrefixError(std::string_view prefix);

// The prefix as the router keeps it (a directory: with a trailing '/'), to
// compare two mounts.
[[nodiscard]] std::string canonicalPrefix(std::string_view prefix);

// The body of an error page: the file's bytes, content-type by its extension.
// Throws std::runtime_error naming the status and the file when it cannot be
// read, is not a regular file or is over kMaxErrorPageBytes.
[[nodiscard]] Router::ErrorPage loadErrorPage(int status, const std::filesystem::path& file);

// The command line's word on mounts, over what the file said; each flag names
// a key and wins for that key only (the file's others stay):
//   --mount PREFIX=DIR            the mount at PREFIX gets DIR (its fields stay), or is added;
//   --mount-header PREFIX=NAME:VALUE   that mount's field NAME ("/": root's), set or replaced;
//   --error-page STATUS=FILE      the page of STATUS.
// Throws std::invalid_argument ("--mount X: why") for a malformed or refused value.
void applyMountFlags(ServerConfig& cfg, const std::vector<std::string>& mounts,
                     const std::vector<std::string>& headers,
                     const std::vector<std::string>& error_pages);

// What the h2loop binary serves for `cfg` (ServerConfig::router unset).
// Reads the error pages. Throws std::runtime_error (a start-up error; --check
// reports it) when a root is not a directory, an error page cannot be loaded
// or the router refuses a mount (a field, a duplicate prefix).
[[nodiscard]] Router routerFor(const ServerConfig& cfg);

}  // namespace h2loop::server
