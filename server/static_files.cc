#include "server/static_files.h"

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

StaticFiles::StaticFiles(const std::filesystem::path& root, FileCacheConfig cfg)
    : cache_(root, cfg) {}

StaticResponse StaticFiles::handle(std::string_view method, std::string_view path,
                                   std::string_view if_none_match,
                                   std::string_view if_modified_since, int64_t now_ms) {
  const bool head = method == "HEAD";
  if (!head && method != "GET") {
    StaticResponse r = errorResponse(405, false);
    r.allow_header = true;
    return r;
  }
  if (normalizeRequestPath(path, path_scratch_) != PathStatus::kOk) {
    return errorResponse(400, head);
  }
  AcquireResult a = cache_.acquire(path_scratch_, now_ms);
  if (a.status != OpenStatus::kOk) return errorResponse(httpStatus(a.status), head);

  const CachedFile& f = *a.file;
  StaticResponse r;
  r.etag.assign(f.etag());
  r.last_modified.assign(f.lastModified());

  bool not_modified = false;
  if (!if_none_match.empty()) {
    not_modified = etagMatches(if_none_match, f.etag());
  } else if (!if_modified_since.empty()) {
    const auto since = parseHttpDate(if_modified_since);
    not_modified = since && f.mtimeSeconds() <= *since;
  }
  if (not_modified) {
    r.status = 304;
    return r;  // `a.file` is released here; nothing of it is referenced by `r`
  }

  r.status = 200;
  r.content_type = f.contentType();
  r.content_length = f.size();
  if (!head && f.size() > 0) r.file = std::move(a.file);
  return r;
}

}  // namespace h2loop::server
