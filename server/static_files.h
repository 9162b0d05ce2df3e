#pragma once

#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "h2/stream.h"
#include "server/file_cache.h"
#include "server/http_date.h"

namespace h2loop::server {

// Value of the `allow` header on a 405 (OPTIONS is answered by the Service).
inline constexpr std::string_view kAllowedMethods = "GET, HEAD, OPTIONS";

// Options of the static-file service. Defaults are the production values.
struct StaticFilesOptions {
  // Honour `Range` (RFC 9110 §14) on GET/HEAD of files; `accept-ranges: bytes` on 200s.
  bool ranges = true;
  // A Range header with more range-specs than this is ignored (a full 200), as nginx's
  // max_ranges does; it bounds the multipart answer (each part costs ~150 bytes of text
  // held by the stream while it sends). 1 serves single ranges only; 0 disables ranges.
  std::size_t max_ranges = 100;
  // Serve `<file>.br` / `<file>.gz` (when it exists next to the file, a regular file under
  // the root) to a client whose Accept-Encoding allows br / gzip, with content-encoding,
  // the file's content-type and its own etag; `vary: accept-encoding` on every answer
  // for a file that has a variant. Ranges of a variant count compressed bytes.
  bool precompressed = true;

  // On-the-fly compression (gzip with zlib, br with brotli) of files whose type is one of
  // compress_types and whose size is in [compress_min_size, compress_max_size], for a client
  // whose Accept-Encoding allows it. Compressed once per file version and coding, on the
  // loop thread (compress_max_size bounds that stall), and kept with the file's cache entry
  // within compress_budget bytes per worker (least recently used dropped first). The answer:
  // content-encoding, the file's content-type, a weak etag (W/ + the file's, as nginx's
  // gzip), last-modified, no ranges (a Range is ignored: the full compressed 200, as
  // nginx); `vary: accept-encoding` on every answer for such a file, compressed or not.
  // A precompressed variant of the chosen coding on disk wins over compressing.
  bool compress = true;
  // Below ~1 KiB the answer fits one TCP segment either way: compressing it saves no
  // packet and no round trip (nginx's gzip_min_length defaults to 20, h2o's min-size to 100).
  std::size_t compress_min_size = 1024;
  // Larger files are sent uncompressed. Compressing this much at the levels below takes a
  // few milliseconds on the loop thread (see the README).
  std::size_t compress_max_size = 256 * 1024;
  // Bytes of compressed bodies each worker's cache keeps (per document root).
  std::size_t compress_budget = 8 << 20;
  // Media types ("type/subtype" or "type/*"; parameters ignored) compressed on the fly:
  // the text types mime_types.cc produces, and the usual ones it leaves to the default.
  std::vector<std::string> compress_types = {"text/*",
                                             "application/javascript",
                                             "application/json",
                                             "application/xml",
                                             "image/svg+xml",
                                             "application/wasm",
                                             "application/manifest+json",
                                             "application/rss+xml",
                                             "application/atom+xml"};
  int gzip_level = 6;  // 1..9 (nginx's gzip_comp_level defaults to 1: it compresses per request)
  int brotli_quality = 5;  // 0..11

  bool operator==(const StaticFilesOptions&) const = default;
};

// Which representation of a file a request gets: identity, a precompressed variant, or
// compressed on the fly.
struct CodingChoice {
  bool identity = true;
  Coding coding = Coding::kGzip;
  bool precompressed = false;  // else on the fly
};

// Picks the coding for a client's Accept-Encoding among those available: a precompressed
// variant per coding (`precompressed[Coding]`), and on-the-fly compression (`on_the_fly`,
// for both codings). The highest q wins; at equal q a precompressed variant before on the
// fly, then br before gzip (nginx's brotli module and h2o prefer br). q=0 (also through
// "*;q=0") excludes a coding; no acceptable coding → identity (never 406).
[[nodiscard]] CodingChoice chooseCoding(std::string_view accept_encoding,
                                        const bool (&precompressed)[kCodings],
                                        bool on_the_fly) noexcept;

// The quality (0..1000) Accept-Encoding gives `coding` ("gzip", "br"): its own entry, else
// "*"'s, else 0. "x-gzip" counts as gzip. Malformed q values count as 0 (not acceptable).
[[nodiscard]] int codingQuality(std::string_view accept_encoding, std::string_view coding) noexcept;

// One byte range to send, inclusive bounds (as in content-range), first <= last < size.
struct ByteRange {
  uint64_t first = 0;
  uint64_t last = 0;
};

enum class RangeResult {
  kIgnore,         // serve the whole representation (200): no/other unit, invalid, too many
  kSatisfiable,    // 206 with `ranges`
  kUnsatisfiable,  // 416 with content-range: bytes */size
};

// Parses a Range field value against a representation of `size` bytes (RFC 9110 §14.1.2),
// in nginx's manner where the RFC leaves a choice:
//   - unit other than "bytes" (case-insensitive) → kIgnore;
//   - syntactically invalid (non-digits, missing '-', last < first, empty list, a sign)
//     → kIgnore (RFC 9110 §14.2 lets a server ignore it; nginx answers 416 instead);
//   - more than `max_ranges` range-specs → kIgnore (nginx max_ranges);
//   - ranges are clipped to the size; unsatisfiable ones (first >= size, "-0") are dropped;
//     none left → kUnsatisfiable, except on an empty representation where a range from 0
//     (or a suffix) → kIgnore, as nginx;
//   - the satisfiable ranges together longer than `size` (overlaps) → kIgnore, as nginx:
//     an answer is never bigger than the file, whatever the overlaps;
//   - numbers too large for 64 bits saturate (a huge first-pos is unsatisfiable, a huge
//     last-pos or suffix-length means "to the end").
// Ranges are kept in request order, not merged (as nginx). `out` is cleared first and its
// capacity reused; it never holds more than max_ranges entries.
[[nodiscard]] RangeResult parseRange(std::string_view value, uint64_t size, std::size_t max_ranges,
                                     std::vector<ByteRange>& out);

// The request fields the static-file service looks at. Empty: absent.
struct StaticRequest {
  std::string_view method;
  std::string_view path;
  std::string_view if_none_match;
  std::string_view if_modified_since;
  std::string_view range;
  std::string_view if_range;
  std::string_view accept_encoding;
};

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
// `etag` and `last-modified` if non-empty; `allow: kAllowedMethods` if allow_header;
// `content-encoding` if non-empty; `vary: accept-encoding` if vary;
// `accept-ranges: bytes` if accept_ranges; `content-range` if non-empty.
//
// Body: if file is set (a CachedFile, or a CompressedBody whose memory() is the body),
// `pieces` non-empty: h2::ResponseBody::filePieces(file, pieces,
// parts_text) (a multipart/byteranges 206); else `file` bytes [offset, offset +
// content_length) (200 or single-range 206 GET with a non-empty file); else `body` if
// non-empty (error text on GET); else none (HEAD, 304, empty file) — send END_STREAM
// with the headers. `pieces` and `parts_text` (and a multipart content_type) point into
// the StaticFiles object: valid until its next handle().
//
// Move-only: owns one reference to `file`, released when the response is destroyed.
// To send the file, pass `file.get()` (h2::ResponseBody::file): submitResponse takes a
// reference of its own for as long as the stream sends it. Do not hand over
// `file.detach()`: that reference would never be released (nor the descriptor closed).
// The etag/last_modified strings are stored inline in this object.
struct StaticResponse {
  int status = 500;               // 200, 206, 304, 400, 403, 404, 405, 416, 500, 503
  std::string_view content_type;  // static storage (multipart: the StaticFiles object's)
  int64_t content_length = -1;
  InlineString<kMaxEtagLen> etag;
  InlineString<kHttpDateLen> last_modified;
  bool allow_header = false;   // 405
  bool accept_ranges = false;  // 200 of a file
  bool vary = false;           // `vary: accept-encoding`: a precompressed variant, or compressible
  std::string_view content_encoding;  // static storage; a variant or on-the-fly compression
  // "bytes 0-4/1000" (206 single range) or "bytes */1000" (416).
  InlineString<sizeof("bytes -/") + 3 * 20> content_range;
  FileHandleRef file;
  int64_t offset = 0;
  std::string_view body;  // static storage
  std::span<const h2::BodyPiece> pieces;
  std::string_view parts_text;
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
//     last-modified, no content-type/length;
//   - Range (see parseRange) is looked at only for a would-be 200 (so conditional headers
//     win: a 304 is a 304), on GET and HEAD alike (HEAD gets the GET's 206 headers, as
//     nginx). If-Range gates it: an entity-tag must equal the etag exactly (strong
//     comparison; a weak tag never matches), an HTTP-date must equal last-modified; no
//     match → the full 200. One range → 206 with content-range; several → 206
//     multipart/byteranges, parts in request order, laid out byte for byte as nginx's
//     (CRLF "--" boundary CRLF content-type CRLF content-range CRLF CRLF data ... CRLF
//     "--" boundary "--" CRLF); none satisfiable → 416 with content-range "bytes */size".
class StaticFiles {
 public:
  // Throws std::runtime_error (a start-up error) if `root` is missing or not a directory.
  StaticFiles(const std::filesystem::path& root, FileCacheConfig cfg,
              StaticFilesOptions options = {});
  StaticFiles(const StaticFiles&) = delete;
  StaticFiles& operator=(const StaticFiles&) = delete;

  // `now_ms`: a monotonic millisecond clock (e.g. the loop's cached now()), used only for
  // the cache TTL. Never throws except std::bad_alloc. On a cache hit for a 200 no heap
  // allocation happens.
  [[nodiscard]] StaticResponse handle(const StaticRequest& req, int64_t now_ms);
  [[nodiscard]] StaticResponse handle(std::string_view method, std::string_view path,
                                      std::string_view if_none_match,
                                      std::string_view if_modified_since, int64_t now_ms) {
    return handle(StaticRequest{method, path, if_none_match, if_modified_since, {}, {}, {}},
                  now_ms);
  }

  [[nodiscard]] FileCacheStats cacheStats() const noexcept { return cache_.stats(); }
  // On-the-fly compressions done (not answers served from a kept body), by Coding.
  [[nodiscard]] uint64_t compressions(Coding c) const noexcept {
    return compressions_[static_cast<std::size_t>(c)];
  }
  // Drops cached files (shutdown). Responses still holding files keep them open.
  void clearCache() noexcept { cache_.clear(); }

 private:
  static FileCacheConfig withOptions(FileCacheConfig cfg, const StaticFilesOptions& o) noexcept;
  // Fills `r` (a 206 of `f`) from ranges_: single range or multipart.
  void rangeResponse(const CachedFile& f, StaticResponse& r);
  // The body of `f` compressed in `c`: `kept` if the cache had it, else compressed now (and
  // offered to the cache). Empty if compression failed (the caller sends the identity).
  FileHandleRef compressedBody(const CachedFile& f, Coding c, FileHandleRef kept);

  FileCache cache_;
  StaticFilesOptions options_;
  std::string path_scratch_;
  // Per-response scratch for ranges and multipart answers; capacity reused, bounded by
  // options_.max_ranges.
  std::vector<ByteRange> ranges_;
  std::vector<h2::BodyPiece> pieces_;
  std::string parts_text_;
  std::string multipart_type_;
  uint64_t boundary_seed_;
  uint64_t boundary_count_ = 0;
  uint64_t compressions_[kCodings] = {};
};

// True if `if_none_match` (a field value: "*" or a comma-separated list of entity-tags)
// matches `etag` by weak comparison (RFC 9110 §8.8.3.2). A malformed list stops matching
// at the malformed element.
[[nodiscard]] bool etagMatches(std::string_view if_none_match, std::string_view etag) noexcept;

// True if the If-Range value `if_range` lets ranges through for a representation with
// this etag and last-modified (RFC 9110 §13.1.5): an entity-tag equal to `etag` by strong
// comparison, or an HTTP-date equal to `last_modified` (compared as dates).
[[nodiscard]] bool ifRangeMatches(std::string_view if_range, std::string_view etag,
                                  std::string_view last_modified) noexcept;

}  // namespace h2loop::server
