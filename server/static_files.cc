#include "server/static_files.h"

#include <unistd.h>
#include <algorithm>
#include <charconv>
#include <cstdio>
#include <limits>

#include <cerrno>
#include <random>
#include <utility>

namespace h2loop::server {

namespace {

constexpr std::string_view kTextPlain = "text/plain; charset=utf-8";

struct ErrorText {
  int status;
  std::string_view body;
};

constexpr ErrorText kErrors[] = {
    {400, "400 Bad Request\n"},
    {403, "403 Forbidden\n"},
    {404, "404 Not Found\n"},
    {405, "405 Method Not Allowed\n"},
    {416, "416 Range Not Satisfiable\n"},
    {500, "500 Internal Server Error\n"},
    {503, "503 Service Unavailable\n"},
};

StaticResponse errorResponse(int status, bool head) noexcept {
  StaticResponse r;
  r.status = status;
  r.content_type = kTextPlain;
  for (const ErrorText& e : kErrors) {
    if (e.status == status) {
      r.content_length = static_cast<int64_t>(e.body.size());
      if (!head) r.body = e.body;
      break;
    }
  }
  return r;
}

int httpStatus(OpenStatus s) noexcept {
  switch (s) {
    case OpenStatus::kOk:
      return 200;
    case OpenStatus::kNotFound:
      return 404;
    case OpenStatus::kForbidden:
      return 403;
    case OpenStatus::kUnavailable:
      return 503;
    case OpenStatus::kError:
      break;
  }
  return 500;
}

int hexValue(char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

constexpr bool isOws(char c) noexcept {
  return c == ' ' || c == '\t';
}

constexpr uint64_t kNoNumber = std::numeric_limits<uint64_t>::max();

bool isDigit(char c) noexcept {
  return c >= '0' && c <= '9';
}

void skipOws(std::string_view& s) noexcept {
  while (!s.empty() && isOws(s.front()))
    s.remove_prefix(1);
}

// Digits at the front of `s` (consumed). kNoNumber if there are none; saturates at
// kNoNumber - 1 so that a 30-digit number is "huge", never a wrapped small one.
uint64_t takeNumber(std::string_view& s) noexcept {
  if (s.empty() || !isDigit(s.front())) return kNoNumber;
  uint64_t v = 0;
  constexpr uint64_t kMax = kNoNumber - 1;
  while (!s.empty() && isDigit(s.front())) {
    const auto d = static_cast<uint64_t>(s.front() - '0');
    v = v > (kMax - d) / 10 ? kMax : v * 10 + d;
    s.remove_prefix(1);
  }
  return v;
}

bool equalsIgnoreCase(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    char x = a[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
    if (x != b[i]) return false;
  }
  return true;
}

void appendNumber(std::string& out, uint64_t v) {
  char buf[20];
  const char* end = std::to_chars(buf, buf + sizeof buf, v).ptr;
  out.append(buf, static_cast<std::size_t>(end - buf));
}

// An entity-tag without its W/ prefix: the quoted opaque-tag, quotes included.
std::string_view opaqueTag(std::string_view tag) noexcept {
  if (tag.starts_with("W/")) tag.remove_prefix(2);
  return tag;
}

}  // namespace

PathStatus normalizeRequestPath(std::string_view raw_path, std::string& out) {
  // Fast path, taken by nearly every real request: a path with no escape,
  // query, fragment, control character or backslash, no empty segment and
  // no segment starting with '.' is already canonical. One scan, one copy.
  if (raw_path.size() >= 1 && raw_path.front() == '/') {
    char prev = '/';
    std::size_t i = 1;
    for (; i < raw_path.size(); ++i) {
      const auto u = static_cast<unsigned char>(raw_path[i]);
      if (u < 0x20 || u == 0x7f || u == '%' || u == '?' || u == '#' || u == '\\') break;
      if (prev == '/' && (u == '/' || u == '.')) break;
      prev = static_cast<char>(u);
    }
    if (i == raw_path.size()) {
      out.assign(raw_path.data() + 1, raw_path.size() - 1);
      return PathStatus::kOk;
    }
  }
  return detail::normalizeRequestPathGeneral(raw_path, out);
}

namespace detail {

PathStatus normalizeRequestPathGeneral(std::string_view raw_path, std::string& out) {
  out.clear();
  const std::size_t end = raw_path.find_first_of("?#");
  if (end != std::string_view::npos) raw_path = raw_path.substr(0, end);
  if (raw_path.empty() || raw_path.front() != '/') return PathStatus::kBadRequest;

  // `out` holds finished segments, each followed by '/', then the current segment.
  std::size_t segment_start = 0;
  auto currentSegment = [&]() {
    return std::string_view(out.data() + segment_start, out.size() - segment_start);
  };

  for (std::size_t i = 1; i < raw_path.size(); ++i) {
    char c = raw_path[i];
    if (c == '/') {
      const std::string_view seg = currentSegment();
      if (seg == "..") return PathStatus::kBadRequest;
      if (seg.empty() || seg == ".") {
        out.resize(segment_start);
      } else {
        out += '/';
        segment_start = out.size();
      }
      continue;
    }
    if (c == '%') {
      if (i + 2 >= raw_path.size()) return PathStatus::kBadRequest;
      const int hi = hexValue(raw_path[i + 1]);
      const int lo = hexValue(raw_path[i + 2]);
      if (hi < 0 || lo < 0) return PathStatus::kBadRequest;
      c = static_cast<char>(hi * 16 + lo);
      i += 2;
      if (c == '/') return PathStatus::kBadRequest;  // encoded separator
    }
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f || c == '\\') return PathStatus::kBadRequest;
    out += c;
  }

  // The last segment has no '/' after it ("/a/b", "/a/..", "/a/.").
  const std::string_view last = currentSegment();
  if (last == "..") return PathStatus::kBadRequest;
  if (last == ".") out.resize(segment_start);  // "/a/." names the directory: "a/"
  return PathStatus::kOk;
}

}  // namespace detail

bool etagMatches(std::string_view if_none_match, std::string_view etag) noexcept {
  const std::string_view want = opaqueTag(etag);
  std::string_view s = if_none_match;
  while (true) {
    while (!s.empty() && (isOws(s.front()) || s.front() == ','))
      s.remove_prefix(1);
    if (s.empty()) return false;
    if (s.front() == '*') return true;
    std::size_t n = s.starts_with("W/") ? 2 : 0;
    if (s.size() <= n || s[n] != '"') return false;
    const std::size_t close = s.find('"', n + 1);
    if (close == std::string_view::npos) return false;
    const std::string_view tag = s.substr(0, close + 1);
    if (opaqueTag(tag) == want) return true;
    s.remove_prefix(close + 1);
  }
}

RangeResult parseRange(std::string_view value, uint64_t size, std::size_t max_ranges,
                       std::vector<ByteRange>& out) {
  out.clear();
  // RFC 9110 §14.1.1: range-unit "=" range-set; the unit is case-insensitive.
  if (value.size() < 6 || !equalsIgnoreCase(value.substr(0, 6), "bytes=")) {
    return RangeResult::kIgnore;
  }
  std::string_view s = value.substr(6);
  std::size_t specs = 0;
  uint64_t total = 0;
  bool whole = false;  // a range from 0 on an empty representation (nginx: serve it)
  bool any = false;
  while (true) {
    // range-set = 1#range-spec: empty elements between commas are allowed.
    skipOws(s);
    if (s.empty()) break;
    if (s.front() == ',') {
      s.remove_prefix(1);
      continue;
    }
    // Counted before anything is kept: `out` never exceeds max_ranges, and the loop
    // stops at the first spec past the cap however long the field is.
    if (++specs > max_ranges) return RangeResult::kIgnore;
    any = true;
    uint64_t first = 0;
    uint64_t last = 0;
    if (s.front() == '-') {  // suffix-range: the last N bytes
      s.remove_prefix(1);
      skipOws(s);
      const uint64_t n = takeNumber(s);
      if (n == kNoNumber) return RangeResult::kIgnore;
      if (size == 0) {
        whole = true;
      } else if (n == 0) {
        first = size;  // "-0": unsatisfiable
      } else {
        first = size - std::min(n, size);
        last = size - 1;
      }
    } else {
      first = takeNumber(s);
      if (first == kNoNumber) return RangeResult::kIgnore;
      skipOws(s);
      if (s.empty() || s.front() != '-') return RangeResult::kIgnore;
      s.remove_prefix(1);
      skipOws(s);
      if (!s.empty() && isDigit(s.front())) {
        last = takeNumber(s);
        if (last < first) return RangeResult::kIgnore;  // invalid, not unsatisfiable
      } else {
        last = kNoNumber - 1;  // "500-": to the end
      }
      if (size == 0 && first == 0) whole = true;
      if (size > 0 && last >= size) last = size - 1;
    }
    skipOws(s);
    if (!s.empty() && s.front() != ',') return RangeResult::kIgnore;
    if (size > 0 && first < size) {
      total += last - first + 1;  // each term <= size: no overflow before the check
      if (total > size) return RangeResult::kIgnore;
      out.push_back({first, last});
    }
  }
  if (!any) return RangeResult::kIgnore;  // "bytes=" or "bytes= , ": no range-spec
  if (whole) {
    out.clear();
    return RangeResult::kIgnore;
  }
  return out.empty() ? RangeResult::kUnsatisfiable : RangeResult::kSatisfiable;
}

int codingQuality(std::string_view accept_encoding, std::string_view coding) noexcept {
  int mine = -1;
  int star = -1;
  std::string_view s = accept_encoding;
  while (!s.empty()) {
    const std::size_t comma = s.find(',');
    std::string_view item = s.substr(0, comma);
    s = comma == std::string_view::npos ? std::string_view{} : s.substr(comma + 1);
    const std::size_t semi = item.find(';');
    std::string_view name = item.substr(0, semi);
    skipOws(name);
    while (!name.empty() && isOws(name.back()))
      name.remove_suffix(1);
    int q = 1000;
    if (semi != std::string_view::npos) {
      // weight = OWS ";" OWS "q=" qvalue; qvalue = 0[.000] / 1[.000]
      std::string_view p = item.substr(semi + 1);
      skipOws(p);
      if (p.size() < 2 || (p[0] != 'q' && p[0] != 'Q') || p[1] != '=') {
        q = 0;
      } else {
        p.remove_prefix(2);
        while (!p.empty() && isOws(p.back()))
          p.remove_suffix(1);
        if (p.empty() || (p[0] != '0' && p[0] != '1') || p.size() > 5 ||
            (p.size() > 1 && p[1] != '.')) {
          q = 0;
        } else {
          q = (p[0] - '0') * 1000;
          int scale = 100;
          for (std::size_t i = 2; i < p.size(); ++i, scale /= 10) {
            if (!isDigit(p[i])) {
              q = 0;
              break;
            }
            q += (p[i] - '0') * scale;
          }
          if (q > 1000) q = 0;
        }
      }
    }
    if (equalsIgnoreCase(name, coding) || (coding == "gzip" && equalsIgnoreCase(name, "x-gzip"))) {
      mine = std::max(mine, q);
    } else if (name == "*") {
      star = q;
    }
  }
  if (mine >= 0) return mine;
  return star > 0 ? star : 0;
}

bool ifRangeMatches(std::string_view if_range, std::string_view etag,
                    std::string_view last_modified) noexcept {
  while (!if_range.empty() && isOws(if_range.back()))
    if_range.remove_suffix(1);
  skipOws(if_range);
  if (if_range.empty()) return false;
  if (if_range.front() == '"' || if_range.starts_with("W/")) {
    // Strong comparison: both strong and the same; a weak validator never matches.
    return !if_range.starts_with("W/") && !etag.starts_with("W/") && if_range == etag;
  }
  const auto date = parseHttpDate(if_range);
  const auto lm = parseHttpDate(last_modified);
  return date && lm && *date == *lm;
}

StaticFiles::StaticFiles(const std::filesystem::path& root, FileCacheConfig cfg,
                         StaticFilesOptions options)
    : cache_(root, withOptions(cfg, options)), options_(std::move(options)) {
  // Boundaries need only be unpredictable to whoever wrote the file (so a file cannot
  // contain the boundary of the answer it is served in); a seeded counter is enough.
  std::random_device rd;
  boundary_seed_ = (uint64_t{rd()} << 32) ^ rd();
}

FileCacheConfig StaticFiles::withOptions(FileCacheConfig cfg,
                                         const StaticFilesOptions& o) noexcept {
  cfg.variants = o.precompressed;
  cfg.compressed_budget = o.compress ? o.compress_budget : 0;
  return cfg;
}

CodingChoice chooseCoding(std::string_view accept_encoding, const bool (&precompressed)[kCodings],
                          bool on_the_fly) noexcept {
  CodingChoice best;
  if (accept_encoding.empty()) return best;
  int best_q = 0;
  // Candidates in order of preference at equal q: variants (br, gzip), then on the fly.
  for (const bool pre : {true, false}) {
    for (const Coding c : {Coding::kBrotli, Coding::kGzip}) {
      if (pre ? !precompressed[static_cast<std::size_t>(c)] : !on_the_fly) continue;
      const int q = codingQuality(accept_encoding, codingName(c));
      if (q > best_q) {
        best_q = q;
        best.identity = false;
        best.coding = c;
        best.precompressed = pre;
      }
    }
  }
  return best;
}

FileHandleRef StaticFiles::compressedBody(const CachedFile& f, Coding c, FileHandleRef kept) {
  if (kept) return kept;
  // The file's bytes: from the cache's memory when it holds them, else read whole (the
  // size is at most compress_max_size).
  std::string read;
  std::string_view in;
  if (const std::string* mem = f.content()) {
    in = *mem;
  } else {
    read.resize(static_cast<std::size_t>(f.size()));
    std::size_t done = 0;
    while (done < read.size()) {
      const ssize_t n =
          ::pread(f.fd(), read.data() + done, read.size() - done, static_cast<off_t>(done));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return {};  // shrank or failed: send the identity (which will notice)
      done += static_cast<std::size_t>(n);
    }
    in = read;
  }
  std::string out;
  const int level = c == Coding::kGzip ? options_.gzip_level : options_.brotli_quality;
  if (!compressBytes(c, in, level, out)) return {};
  ++compressions_[static_cast<std::size_t>(c)];
  CompressedBody* body = cache_.newCompressed(std::string(out));  // exact size, no slack
  (void)cache_.keepCompressed(path_scratch_, &f, c, body);
  return FileHandleRef::adopt(body);
}

void StaticFiles::rangeResponse(const CachedFile& f, StaticResponse& r) {
  const auto size = static_cast<uint64_t>(f.size());
  r.status = 206;
  if (ranges_.size() == 1) {
    const ByteRange& b = ranges_.front();
    char buf[96];
    const int w = std::snprintf(
        buf, sizeof buf, "bytes %llu-%llu/%llu", static_cast<unsigned long long>(b.first),
        static_cast<unsigned long long>(b.last), static_cast<unsigned long long>(size));
    r.content_range.assign({buf, static_cast<std::size_t>(w)});
    r.content_type = f.contentType();
    r.offset = static_cast<int64_t>(b.first);
    r.content_length = static_cast<int64_t>(b.last - b.first + 1);
    return;
  }

  // multipart/byteranges (RFC 9110 §14.6), nginx's layout. The boundary: 16 hex digits
  // of a mixed counter (splitmix64).
  uint64_t z = boundary_seed_ + 0x9e3779b97f4a7c15ull * ++boundary_count_;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  z ^= z >> 31;
  char boundary[16];
  for (int i = 15; i >= 0; --i, z >>= 4)
    boundary[i] = "0123456789abcdef"[z & 0xf];
  const std::string_view bnd(boundary, sizeof boundary);
  multipart_type_.assign("multipart/byteranges; boundary=");
  multipart_type_.append(bnd);
  r.content_type = multipart_type_;

  parts_text_.clear();
  pieces_.clear();
  uint64_t total = 0;
  std::size_t text_before = 0;
  for (const ByteRange& b : ranges_) {
    parts_text_.append("\r\n--");
    parts_text_.append(bnd);
    if (!f.contentType().empty()) {
      parts_text_.append("\r\nContent-Type: ");
      parts_text_.append(f.contentType());
    }
    parts_text_.append("\r\nContent-Range: bytes ");
    appendNumber(parts_text_, b.first);
    parts_text_ += '-';
    appendNumber(parts_text_, b.last);
    parts_text_ += '/';
    appendNumber(parts_text_, size);
    parts_text_.append("\r\n\r\n");
    const uint64_t len = b.last - b.first + 1;
    pieces_.push_back({parts_text_.size() - text_before, b.first, len});
    total += parts_text_.size() - text_before + len;
    text_before = parts_text_.size();
  }
  parts_text_.append("\r\n--");
  parts_text_.append(bnd);
  parts_text_.append("--\r\n");
  pieces_.push_back({parts_text_.size() - text_before, 0, 0});
  total += parts_text_.size() - text_before;
  r.content_length = static_cast<int64_t>(total);
  r.pieces = pieces_;
  r.parts_text = parts_text_;
}

StaticResponse StaticFiles::handle(const StaticRequest& req, int64_t now_ms) {
  const std::string_view method = req.method;
  const bool head = method == "HEAD";
  if (!head && method != "GET") {
    StaticResponse r = errorResponse(405, false);
    r.allow_header = true;
    return r;
  }
  if (normalizeRequestPath(req.path, path_scratch_) != PathStatus::kOk) {
    return errorResponse(400, head);
  }
  AcquireResult a = cache_.acquire(path_scratch_, now_ms);
  if (a.status != OpenStatus::kOk) return errorResponse(httpStatus(a.status), head);

  StaticResponse r;
  // The representation: a precompressed variant, compressed on the fly, or the file.
  const CachedFile& plain = *a.file;
  const bool compressible = options_.compress && plain.size() > 0 &&
                            static_cast<uint64_t>(plain.size()) >= options_.compress_min_size &&
                            typeMatches(plain.contentType(), options_.compress_types);
  const bool on_the_fly =
      compressible && static_cast<uint64_t>(plain.size()) <= options_.compress_max_size;
  const bool have[kCodings] = {static_cast<bool>(a.variants[0]), static_cast<bool>(a.variants[1])};
  r.vary = have[0] || have[1] || on_the_fly;
  const CodingChoice choice = chooseCoding(req.accept_encoding, have, on_the_fly);
  const auto ci = static_cast<std::size_t>(choice.coding);
  if (!choice.identity && choice.precompressed) a.file = std::move(a.variants[ci]);
  const CachedFile& f = *a.file;
  const bool fly = !choice.identity && !choice.precompressed;
  if (fly) {
    // A weak validator, as nginx's gzip: the bytes depend on the library and level, and
    // the representation is semantically the file's (If-None-Match compares weakly).
    r.content_encoding = codingName(choice.coding);
    char etag[kMaxEtagLen];
    std::size_t n = 0;
    etag[n++] = 'W';
    etag[n++] = '/';
    const std::string_view strong = f.etag().substr(0, kMaxEtagLen - 2);
    strong.copy(etag + n, strong.size());
    r.etag.assign({etag, n + strong.size()});
  } else {
    r.content_encoding = f.contentEncoding();
    r.etag.assign(f.etag());
  }
  r.last_modified.assign(f.lastModified());

  bool not_modified = false;
  if (!req.if_none_match.empty()) {
    not_modified = etagMatches(req.if_none_match, r.etag.view());
  } else if (!req.if_modified_since.empty()) {
    const auto since = parseHttpDate(req.if_modified_since);
    not_modified = since && f.mtimeSeconds() <= *since;
  }
  if (not_modified) {
    r.status = 304;
    return r;  // `a.file` is released here; nothing of it is referenced by `r`
  }

  if (fly) {
    // The whole compressed body, for GET and HEAD alike (HEAD gets its length). Ranges
    // are not offered on it (as nginx, which clears accept-ranges under gzip).
    r.file = compressedBody(f, choice.coding, std::move(a.compressed[ci]));
    if (r.file) {
      r.status = 200;
      r.content_type = f.contentType();
      r.content_length = static_cast<int64_t>(r.file->memory().size());
      if (head) r.file.reset();
      return r;
    }
    // Compression failed: the identity, with its own validator.
    r.content_encoding = {};
    r.etag.assign(f.etag());
  }

  // Ranges only for what would be a 200 (conditionals above win), and only when
  // If-Range, if any, still names this representation.
  if (options_.ranges && !req.range.empty() &&
      (req.if_range.empty() || ifRangeMatches(req.if_range, f.etag(), f.lastModified()))) {
    const auto size = static_cast<uint64_t>(f.size());
    switch (parseRange(req.range, size, options_.max_ranges, ranges_)) {
      case RangeResult::kIgnore:
        break;
      case RangeResult::kUnsatisfiable: {
        StaticResponse e = errorResponse(416, head);
        e.vary = r.vary;
        char buf[48];
        const int w =
            std::snprintf(buf, sizeof buf, "bytes */%llu", static_cast<unsigned long long>(size));
        e.content_range.assign({buf, static_cast<std::size_t>(w)});
        return e;
      }
      case RangeResult::kSatisfiable:
        rangeResponse(f, r);
        if (!head) r.file = FileHandleRef::adopt(a.file.detach());  // a 206 is never empty
        return r;
    }
  }

  r.status = 200;
  r.accept_ranges = options_.ranges && options_.max_ranges > 0;
  r.content_type = f.contentType();
  r.content_length = f.size();
  if (!head && f.size() > 0) r.file = FileHandleRef::adopt(a.file.detach());
  return r;
}

}  // namespace h2loop::server
