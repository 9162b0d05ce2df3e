#include "server/http_date.h"

#include <algorithm>
#include <array>

namespace h2loop::server {

namespace {

constexpr std::array<std::string_view, 7> kDayNames = {"Sun", "Mon", "Tue", "Wed",
                                                       "Thu", "Fri", "Sat"};
constexpr std::array<std::string_view, 7> kLongDayNames = {
    "Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"};
constexpr std::array<std::string_view, 12> kMonthNames = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                                          "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

constexpr int64_t kSecondsPerDay = 86400;
// 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z.
constexpr int64_t kMinSeconds = -62135596800;
constexpr int64_t kMaxSeconds = 253402300799;

// Howard Hinnant's civil-date algorithms (proleptic Gregorian calendar, exact for the
// whole int64 day range we use).
constexpr int64_t daysFromCivil(int64_t y, unsigned m, unsigned d) noexcept {
  y -= m <= 2 ? 1 : 0;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const auto yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<int64_t>(doe) - 719468;
}

struct Civil {
  int64_t year;
  unsigned month;  // 1..12
  unsigned day;    // 1..31
};

constexpr Civil civilFromDays(int64_t z) noexcept {
  z += 719468;
  const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const auto doe = static_cast<unsigned>(z - era * 146097);
  const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const unsigned mp = (5 * doy + 2) / 153;
  const unsigned d = doy - (153 * mp + 2) / 5 + 1;
  const unsigned m = mp < 10 ? mp + 3 : mp - 9;
  return {static_cast<int64_t>(yoe) + era * 400 + (m <= 2 ? 1 : 0), m, d};
}

static_assert(daysFromCivil(1970, 1, 1) == 0);
static_assert(civilFromDays(0).year == 1970);

constexpr unsigned weekdayFromDays(int64_t z) noexcept {
  return static_cast<unsigned>(z >= -4 ? (z + 4) % 7 : (z + 5) % 7 + 6);
}

constexpr bool isLeap(int64_t y) noexcept {
  return y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
}

constexpr unsigned daysInMonth(int64_t y, unsigned m) noexcept {
  constexpr unsigned kDays[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  return m == 2 && isLeap(y) ? 29 : kDays[m - 1];
}

void put2(char* p, unsigned v) noexcept {
  p[0] = static_cast<char>('0' + v / 10);
  p[1] = static_cast<char>('0' + v % 10);
}

// Parsing helpers: each consumes from the front of `s` and returns false on mismatch.
bool eat(std::string_view& s, std::string_view lit) noexcept {
  if (!s.starts_with(lit)) return false;
  s.remove_prefix(lit.size());
  return true;
}

bool digits(std::string_view& s, std::size_t n, unsigned& out) noexcept {
  if (s.size() < n) return false;
  unsigned v = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const char c = s[i];
    if (c < '0' || c > '9') return false;
    v = v * 10 + static_cast<unsigned>(c - '0');
  }
  out = v;
  s.remove_prefix(n);
  return true;
}

template <std::size_t N>
bool name(std::string_view& s, const std::array<std::string_view, N>& names,
          unsigned& index) noexcept {
  for (std::size_t i = 0; i < N; ++i) {
    if (eat(s, names[i])) {
      index = static_cast<unsigned>(i);
      return true;
    }
  }
  return false;
}

// "HH:MM:SS"
bool timeOfDay(std::string_view& s, unsigned& h, unsigned& m, unsigned& sec) noexcept {
  return digits(s, 2, h) && eat(s, ":") && digits(s, 2, m) && eat(s, ":") && digits(s, 2, sec);
}

std::optional<int64_t> assemble(int64_t year, unsigned month0, unsigned day, unsigned h, unsigned m,
                                unsigned sec) noexcept {
  const unsigned month = month0 + 1;
  if (year < 1 || year > 9999 || day < 1 || day > daysInMonth(year, month) || h > 23 || m > 59 ||
      sec > 60) {
    return std::nullopt;
  }
  return daysFromCivil(year, month, day) * kSecondsPerDay + h * 3600 + m * 60 + sec;
}

// Sun, 06 Nov 1994 08:49:37 GMT
std::optional<int64_t> parseImfFixdate(std::string_view s) noexcept {
  unsigned wd = 0, day = 0, mon = 0, year = 0, h = 0, m = 0, sec = 0;
  if (!(name(s, kDayNames, wd) && eat(s, ", ") && digits(s, 2, day) && eat(s, " ") &&
        name(s, kMonthNames, mon) && eat(s, " ") && digits(s, 4, year) && eat(s, " ") &&
        timeOfDay(s, h, m, sec) && eat(s, " GMT") && s.empty())) {
    return std::nullopt;
  }
  return assemble(year, mon, day, h, m, sec);
}

// Sunday, 06-Nov-94 08:49:37 GMT
std::optional<int64_t> parseRfc850(std::string_view s) noexcept {
  unsigned wd = 0, day = 0, mon = 0, yy = 0, h = 0, m = 0, sec = 0;
  if (!(name(s, kLongDayNames, wd) && eat(s, ", ") && digits(s, 2, day) && eat(s, "-") &&
        name(s, kMonthNames, mon) && eat(s, "-") && digits(s, 2, yy) && eat(s, " ") &&
        timeOfDay(s, h, m, sec) && eat(s, " GMT") && s.empty())) {
    return std::nullopt;
  }
  return assemble(yy < 70 ? 2000 + yy : 1900 + yy, mon, day, h, m, sec);
}

// Sun Nov  6 08:49:37 1994
std::optional<int64_t> parseAsctime(std::string_view s) noexcept {
  unsigned wd = 0, day = 0, mon = 0, year = 0, h = 0, m = 0, sec = 0;
  if (!(name(s, kDayNames, wd) && eat(s, " ") && name(s, kMonthNames, mon) && eat(s, " "))) {
    return std::nullopt;
  }
  if (eat(s, " ")) {
    if (!digits(s, 1, day)) return std::nullopt;
  } else if (!digits(s, 2, day)) {
    return std::nullopt;
  }
  if (!(eat(s, " ") && timeOfDay(s, h, m, sec) && eat(s, " ") && digits(s, 4, year) && s.empty())) {
    return std::nullopt;
  }
  return assemble(year, mon, day, h, m, sec);
}

}  // namespace

void formatHttpDate(int64_t unix_seconds, char* out) noexcept {
  const int64_t t = std::clamp(unix_seconds, kMinSeconds, kMaxSeconds);
  int64_t days = t / kSecondsPerDay;
  int64_t secs = t % kSecondsPerDay;
  if (secs < 0) {
    secs += kSecondsPerDay;
    --days;
  }
  const Civil c = civilFromDays(days);
  const std::string_view wd = kDayNames[weekdayFromDays(days)];
  const std::string_view mon = kMonthNames[c.month - 1];
  const auto year = static_cast<unsigned>(c.year);
  const auto s = static_cast<unsigned>(secs);

  // "Sun, 06 Nov 1994 08:49:37 GMT"
  //  0123456789012345678901234567 8
  out[0] = wd[0];
  out[1] = wd[1];
  out[2] = wd[2];
  out[3] = ',';
  out[4] = ' ';
  put2(out + 5, c.day);
  out[7] = ' ';
  out[8] = mon[0];
  out[9] = mon[1];
  out[10] = mon[2];
  out[11] = ' ';
  put2(out + 12, year / 100);
  put2(out + 14, year % 100);
  out[16] = ' ';
  put2(out + 17, s / 3600);
  out[19] = ':';
  put2(out + 20, s / 60 % 60);
  out[22] = ':';
  put2(out + 23, s % 60);
  out[25] = ' ';
  out[26] = 'G';
  out[27] = 'M';
  out[28] = 'T';
}

std::string formatHttpDate(int64_t unix_seconds) {
  std::string out(kHttpDateLen, '\0');
  formatHttpDate(unix_seconds, out.data());
  return out;
}

std::optional<int64_t> parseHttpDate(std::string_view text) noexcept {
  if (auto t = parseImfFixdate(text)) return t;
  if (auto t = parseRfc850(text)) return t;
  return parseAsctime(text);
}

std::string_view HttpDateCache::format(int64_t unix_seconds) noexcept {
  if (!valid_ || unix_seconds != cached_second_) {
    formatHttpDate(unix_seconds, buf_);
    cached_second_ = unix_seconds;
    valid_ = true;
  }
  return {buf_, kHttpDateLen};
}

}  // namespace h2loop::server
