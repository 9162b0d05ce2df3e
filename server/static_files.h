#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

#include "server/file_cache.h"
#include "server/http_date.h"

namespace h2loop::server {

// Value of the `allow` header on a 405.
inline constexpr std::string_view kAllowedMethods = "GET, HEAD";

enum class PathStatus {
  kOk,
  kBadRequest,  // → 400
};

// Turns a raw `:path` pseudo-header into a relative path under the document root.
//
//   - must start with '/' (so "*", "", absolute-form are refused);
//   - the query ("?...") and fragment ("#...") are dropped;
//   - %XX escapes are decoded; a malformed escape is refused;
//   - refused after decoding: NUL, other control characters (0x01-0x1f, 0x7f), '\\'
//     (raw or %5c), and encoded '/' (%2f) — encoded slashes never become separators, so
//     "/..%2fetc" cannot smuggle a segment;
//   - a ".." segment is refused (not resolved), however it was spelled ("%2e%2e", "%2E.");
//   - empty segments ("//") and "." segments are dropped;
//   - a trailing '/' is kept; the leading '/' is not. "/" → "".
//
// Writes the result into `out` (cleared first; its capacity is reused, so steady-state
// calls do not allocate). Every refusal is kBadRequest (400), never 404: these requests
// are malformed or hostile whether or not a file by that name exists.
[[nodiscard]] PathStatus normalizeRequestPath(std::string_view raw_path, std::string& out);

namespace detail {
// The general algorithm behind normalizeRequestPath(), which takes a fast path
// for paths that are already canonical; exposed so tests can check that both
// agree.
[[nodiscard]] PathStatus normalizeRequestPathGeneral(std::string_view raw_path, std::string& out);
}  // namespace detail

// The outcome of one static-file request, independent of HTTP/2 framing.
//
// Header fields to send: `:status`; `content-type` if non-empty; `content-length` if >= 0;
// `etag` and `last-modified` if non-empty; `allow: kAllowedMethods` if allow_header.
//
// Body: `file` bytes [offset, offset + content_length) if file is set (200 GET with a
// non-empty file); else `body` if non-empty (error text on GET); else none (HEAD, 304,
// empty file) — send END_STREAM with the headers.
//
// Move-only: owns one reference to `file`, released when the response is destroyed.
// To send the file, pass `file.get()` (h2::ResponseBody::file): submitResponse takes a
// reference of its own for as long as the stream sends it. Do not hand over
// `file.detach()`: that reference would never be released (nor the descriptor closed).
// The etag/last_modified strings are stored inline in this object.
struct StaticResponse {
  int status = 500;               // 200, 304, 400, 403, 404, 405, 500, 503
  std::string_view content_type;  // static storage
  int64_t content_length = -1;
  InlineString<kMaxEtagLen> etag;
  InlineString<kHttpDateLen> last_modified;
  bool allow_header = false;  // 405
  CachedFileRef file;
  int64_t offset = 0;
  std::string_view body;  // static storage
};

// Serves files under one document root. One instance per worker thread (it owns a
// FileCache and scratch buffers; NOT thread-safe).
//
// Semantics beyond the path rules of normalizeRequestPath():
//   - methods: GET and HEAD (case-sensitive); anything else → 405 with allow_header;
//   - a directory, with or without trailing '/', is served as its index.html — no redirect,
//     so relative links in an index reached without the slash resolve against the parent;
//     a directory without index.html → 403 (no listings);
//   - a symlink leaving the root → 403; FIFOs, sockets, devices → 403; ENOENT → 404;
//     EACCES → 403; fd exhaustion → 503;
//   - If-None-Match (weak comparison, "*" matches, list of entity-tags) decides when
//     present; otherwise If-Modified-Since (any HTTP-date form; invalid → ignored):
//     not modified when mtime (whole seconds) <= the date. 304 carries etag and
//     last-modified, no content-type/length.
class StaticFiles {
 public:
  // Throws std::runtime_error (a start-up error) if `root` is missing or not a directory.
  StaticFiles(const std::filesystem::path& root, FileCacheConfig cfg);
  StaticFiles(const StaticFiles&) = delete;
  StaticFiles& operator=(const StaticFiles&) = delete;

  // `now_ms`: a monotonic millisecond clock (e.g. the loop's cached now()), used only for
  // the cache TTL. Never throws except std::bad_alloc. On a cache hit for a 200 no heap
  // allocation happens.
  [[nodiscard]] StaticResponse handle(std::string_view method, std::string_view path,
                                      std::string_view if_none_match,
                                      std::string_view if_modified_since, int64_t now_ms);

  [[nodiscard]] FileCacheStats cacheStats() const noexcept { return cache_.stats(); }
  // Drops cached files (shutdown). Responses still holding files keep them open.
  void clearCache() noexcept { cache_.clear(); }

 private:
  FileCache cache_;
  std::string path_scratch_;
};

// True if `if_none_match` (a field value: "*" or a comma-separated list of entity-tags)
// matches `etag` by weak comparison (RFC 9110 §8.8.3.2). A malformed list stops matching
// at the malformed element.
[[nodiscard]] bool etagMatches(std::string_view if_none_match, std::string_view etag) noexcept;

}  // namespace h2loop::server
