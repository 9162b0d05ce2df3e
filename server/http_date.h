#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace h2loop::server {

// Length of an IMF-fixdate (RFC 9110 §5.6.7), e.g. "Sun, 06 Nov 1994 08:49:37 GMT".
inline constexpr std::size_t kHttpDateLen = 29;

// Writes exactly kHttpDateLen characters (no NUL) for `unix_seconds` in UTC to `out`.
// Times outside 0001-01-01 .. 9999-12-31T23:59:59 are clamped to that range (the format
// has a four-digit year). Pure arithmetic: no locale, no time-zone lock, no allocation.
void formatHttpDate(int64_t unix_seconds, char* out) noexcept;

// Allocating convenience for start-up code and tests.
[[nodiscard]] std::string formatHttpDate(int64_t unix_seconds);

// Parses an HTTP-date: IMF-fixdate, and the obsolete RFC 850 and asctime forms that
// RFC 9110 §5.6.7 says recipients must accept. Day and month names are case-sensitive.
// RFC 850 two-digit years: 00-69 → 20xx, 70-99 → 19xx. Returns nullopt for anything
// else (callers then ignore the header, as RFC 9110 §13.1.3 requires).
[[nodiscard]] std::optional<int64_t> parseHttpDate(std::string_view text) noexcept;

// Formats at most once per distinct second: the hot path (a `date` header on every
// response) is a compare and a view. Not thread-safe; keep one per worker thread.
// The returned view points into this object and stays valid until the next call with
// a different second, or until the object is destroyed.
class HttpDateCache {
 public:
  [[nodiscard]] std::string_view format(int64_t unix_seconds) noexcept;

 private:
  int64_t cached_second_ = 0;
  bool valid_ = false;
  char buf_[kHttpDateLen] = {};
};

}  // namespace h2loop::server
