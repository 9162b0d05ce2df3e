#include "server/static_files.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <fstream>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "server/http_date.h"
#include "server/mime_types.h"

namespace h2loop::server {
namespace {

namespace fs = std::filesystem;
using namespace std::string_literals;

constexpr int64_t kRfcExampleTime = 784111777;  // Sun, 06 Nov 1994 08:49:37 GMT
constexpr std::string_view kRfcExampleDate = "Sun, 06 Nov 1994 08:49:37 GMT";

void writeFile(const fs::path& p, const std::string& content) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out << content;
}

void setMtime(const fs::path& p, time_t sec) {
  const struct timespec ts[2] = {{sec, 0}, {sec, 0}};
  ASSERT_EQ(::utimensat(AT_FDCWD, p.c_str(), ts, AT_SYMLINK_NOFOLLOW), 0) << p;
}

bool fdIsOpen(int fd) {
  return ::fcntl(fd, F_GETFD) != -1 || errno != EBADF;
}

std::string readAll(int fd) {
  std::string s(4096, '\0');
  const ssize_t n = ::pread(fd, s.data(), s.size(), 0);
  s.resize(n < 0 ? 0 : static_cast<std::size_t>(n));
  return s;
}

// ---- http_date ----------------------------------------------------------------------------

TEST(StaticHttpDate, FormatsRfcExample) {
  EXPECT_EQ(formatHttpDate(kRfcExampleTime), kRfcExampleDate);
  EXPECT_EQ(formatHttpDate(0), "Thu, 01 Jan 1970 00:00:00 GMT");
  EXPECT_EQ(formatHttpDate(951782400), "Tue, 29 Feb 2000 00:00:00 GMT");
  EXPECT_EQ(formatHttpDate(4107542399), "Sun, 28 Feb 2100 23:59:59 GMT");
  EXPECT_EQ(formatHttpDate(4107542400), "Mon, 01 Mar 2100 00:00:00 GMT");
  EXPECT_EQ(formatHttpDate(-1), "Wed, 31 Dec 1969 23:59:59 GMT");
  EXPECT_EQ(formatHttpDate(INT64_MAX), "Fri, 31 Dec 9999 23:59:59 GMT");  // clamped
  EXPECT_EQ(formatHttpDate(INT64_MIN), "Mon, 01 Jan 0001 00:00:00 GMT");
}

TEST(StaticHttpDate, MatchesGmtimeAndRoundTrips) {
  for (int64_t t = -2'000'000'000; t < 5'000'000'000; t += 7'777'777) {
    const time_t tt = static_cast<time_t>(t);
    struct tm tm {};
    ASSERT_NE(::gmtime_r(&tt, &tm), nullptr);
    char expected[64];
    ASSERT_GT(::strftime(expected, sizeof expected, "%a, %d %b %Y %H:%M:%S GMT", &tm), 0u);
    const std::string got = formatHttpDate(t);
    ASSERT_EQ(got, expected) << t;
    ASSERT_EQ(parseHttpDate(got), t) << got;
  }
}

TEST(StaticHttpDate, ParsesAllThreeForms) {
  EXPECT_EQ(parseHttpDate("Sun, 06 Nov 1994 08:49:37 GMT"), kRfcExampleTime);
  EXPECT_EQ(parseHttpDate("Sunday, 06-Nov-94 08:49:37 GMT"), kRfcExampleTime);
  EXPECT_EQ(parseHttpDate("Sun Nov  6 08:49:37 1994"), kRfcExampleTime);
  EXPECT_EQ(parseHttpDate("Thu Nov 10 08:49:37 1994"), kRfcExampleTime + 4 * 86400);
  EXPECT_EQ(parseHttpDate("Thursday, 01-Jan-15 00:00:00 GMT"), 1420070400);  // 20xx
}

TEST(StaticHttpDate, RejectsMalformed) {
  for (const char* bad : {"", "Sun, 06 Nov 1994 08:49:37 UTC", "Sun, 6 Nov 1994 08:49:37 GMT",
                          "sun, 06 Nov 1994 08:49:37 GMT", "Sun, 06 nov 1994 08:49:37 GMT",
                          "Sun, 06 Nov 1994 08:49:37 GMT ", " Sun, 06 Nov 1994 08:49:37 GMT",
                          "Sun, 31 Feb 1994 08:49:37 GMT", "Sun, 29 Feb 1900 08:49:37 GMT",
                          "Sun, 06 Nov 1994 24:00:00 GMT", "Sun, 06 Nov 1994 08:60:00 GMT",
                          "Sun, 06 Nov 1994 08:49 GMT", "Sun Nov 6 08:49:37 1994",
                          "Sunday, 06-Nov-1994 08:49:37 GMT", "1994-11-06T08:49:37Z"}) {
    EXPECT_EQ(parseHttpDate(bad), std::nullopt) << bad;
  }
}

TEST(StaticHttpDate, CacheFormatsOncePerSecond) {
  HttpDateCache cache;
  const std::string_view a = cache.format(kRfcExampleTime);
  EXPECT_EQ(a, kRfcExampleDate);
  const std::string_view b = cache.format(kRfcExampleTime);
  EXPECT_EQ(a.data(), b.data());
  EXPECT_EQ(cache.format(kRfcExampleTime + 1), "Sun, 06 Nov 1994 08:49:38 GMT");
}

// ---- mime types ---------------------------------------------------------------------------

TEST(StaticMimeTypes, ByExtension) {
  EXPECT_EQ(mimeTypeForPath("index.html"), "text/html; charset=utf-8");
  EXPECT_EQ(mimeTypeForPath("a/b/INDEX.HTM"), "text/html; charset=utf-8");
  EXPECT_EQ(mimeTypeForPath("s.css"), "text/css; charset=utf-8");
  EXPECT_EQ(mimeTypeForPath("app.js"), "text/javascript; charset=utf-8");
  EXPECT_EQ(mimeTypeForPath("m.mjs"), "text/javascript; charset=utf-8");
  EXPECT_EQ(mimeTypeForPath("d.json"), "application/json");
  EXPECT_EQ(mimeTypeForPath("r.txt"), "text/plain; charset=utf-8");
  EXPECT_EQ(mimeTypeForPath("x.svg"), "image/svg+xml");
  EXPECT_EQ(mimeTypeForPath("p.PNG"), "image/png");
  EXPECT_EQ(mimeTypeForPath("p.jpeg"), "image/jpeg");
  EXPECT_EQ(mimeTypeForPath("f.woff2"), "font/woff2");
  EXPECT_EQ(mimeTypeForPath("m.wasm"), "application/wasm");
  EXPECT_EQ(mimeTypeForPath("a.tar.gz"), "application/gzip");
  EXPECT_EQ(mimeTypeForPath("noext"), kDefaultMimeType);
  EXPECT_EQ(mimeTypeForPath("dir.html/noext"), kDefaultMimeType);
  EXPECT_EQ(mimeTypeForPath(".html"), kDefaultMimeType);  // a dot-file, not an extension
  EXPECT_EQ(mimeTypeForPath("x."), kDefaultMimeType);
  EXPECT_EQ(mimeTypeForPath("x.unknownext"), kDefaultMimeType);
  EXPECT_EQ(mimeTypeForPath(""), kDefaultMimeType);
}

// ---- etag matching ------------------------------------------------------------------------

TEST(StaticEtag, WeakComparisonOverLists) {
  const std::string_view tag = "\"a-b\"";
  EXPECT_TRUE(etagMatches("\"a-b\"", tag));
  EXPECT_TRUE(etagMatches("W/\"a-b\"", tag));
  EXPECT_TRUE(etagMatches("\"x\", \"a-b\"", tag));
  EXPECT_TRUE(etagMatches("\"x,y\",W/\"a-b\"", tag));  // comma inside a tag
  EXPECT_TRUE(etagMatches("*", tag));
  EXPECT_FALSE(etagMatches("\"a-c\"", tag));
  EXPECT_FALSE(etagMatches("a-b", tag));  // unquoted: malformed
  EXPECT_FALSE(etagMatches("\"a-b", tag));
  EXPECT_FALSE(etagMatches("", tag));
  EXPECT_FALSE(etagMatches("w/\"a-b\"", tag));  // W is case-sensitive
}

// ---- path normalization -------------------------------------------------------------------

TEST(StaticNormalize, AcceptsAndCanonicalizes) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"/", ""},
      {"/a/b.txt", "a/b.txt"},
      {"//a///b.txt", "a/b.txt"},
      {"/./a/./b", "a/b"},
      {"/a/", "a/"},
      {"/a/.", "a/"},
      {"/a?x=1", "a"},
      {"/a?x=/../../etc", "a"},
      {"/a#frag", "a"},
      {"/hell%6F.txt", "hello.txt"},
      {"/%E2%82%AC", "\xE2\x82\xAC"},
      {"/...", "..."},
      {"/..a/b..", "..a/b.."},
      {"/a%20b", "a b"},
      {"/%2e/a", "a"},
  };
  std::string out;
  for (const auto& [raw, expected] : cases) {
    ASSERT_EQ(normalizeRequestPath(raw, out), PathStatus::kOk) << raw;
    EXPECT_EQ(out, expected) << raw;
  }
}

const std::vector<std::string>& hostilePaths() {
  static const std::vector<std::string> paths = {
      "",
      "a",
      "*",
      "..",
      "/..",
      "/../etc/passwd",
      "/%2e%2e/etc/passwd",
      "/a/%2E%2E/%2e%2e/x",
      "/%2E./x",
      "/.%2e",
      "/a/..",
      "/a/../hello.txt",
      "/..%2fetc",
      "/..%2Fetc/passwd",
      "/a%2fb",
      "/%5c..%5c",
      "/\\..\\",
      "/..\\etc",
      "/a\\b",
      "/%00",
      "/hello.txt%00.html",
      "/a\0b"s,
      "/%",
      "/%4",
      "/%zz",
      "/%0a",
      "/a\tb",
      "/a%7f",
  };
  return paths;
}

TEST(StaticNormalize, RefusesHostilePaths) {
  std::string out;
  for (const std::string& raw : hostilePaths()) {
    EXPECT_EQ(normalizeRequestPath(raw, out), PathStatus::kBadRequest) << raw;
  }
}

// The fast path for canonical paths agrees with the general algorithm on
// every path over an alphabet rich in the characters that matter.
TEST(StaticNormalize, FastPathAgreesWithTheGeneralAlgorithm) {
  const std::string alphabet = "/./%2eEfF5c?#\\\x01\x7f\x80 ab"s + '\0';
  std::mt19937 rng(20261123);
  std::string raw, fast, general;
  size_t accepted = 0;
  for (int i = 0; i < 200000; ++i) {
    raw.assign(1, (rng() % 8 == 0) ? 'a' : '/');
    const size_t len = rng() % 12;
    for (size_t j = 0; j < len; ++j)
      raw += alphabet[rng() % alphabet.size()];
    const PathStatus a = normalizeRequestPath(raw, fast);
    const PathStatus b = detail::normalizeRequestPathGeneral(raw, general);
    ASSERT_EQ(a, b) << testing::PrintToString(raw);
    if (a == PathStatus::kOk) {
      ASSERT_EQ(fast, general) << testing::PrintToString(raw);
      ++accepted;
    }
  }
  EXPECT_GT(accepted, 1000u);  // the generator does reach accepted paths
}

// ---- StaticFiles --------------------------------------------------------------------------

class StaticFilesTest : public ::testing::TestWithParam<PathResolver> {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/h2loop_static_XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    root_ = dir_ / "root";
    const fs::path outside = dir_ / "outside";
    fs::create_directories(outside);
    fs::create_directories(root_ / "sub");
    fs::create_directories(root_ / "emptydir");
    fs::create_directories(root_ / "a");
    writeFile(outside / "secret.txt", "secret\n");
    writeFile(root_ / "index.html", "<h1>root</h1>");
    writeFile(root_ / "hello.txt", "hello\n");
    writeFile(root_ / "style.CSS", "body{}");
    writeFile(root_ / "image.png", "\x89PNG");
    writeFile(root_ / "noext", "x");
    writeFile(root_ / "empty.txt", "");
    writeFile(root_ / "sub" / "index.html", "<p>sub</p>");
    setMtime(root_ / "hello.txt", kRfcExampleTime);
    ASSERT_EQ(::mkfifo((root_ / "fifo").c_str(), 0644), 0);
    fs::create_symlink("hello.txt", root_ / "link_in");
    fs::create_symlink("../outside/secret.txt", root_ / "link_out");
    fs::create_symlink(outside / "secret.txt", root_ / "link_abs_out");
    fs::create_symlink("../outside", root_ / "dirlink_out");
    fs::create_symlink(root_ / "hello.txt", root_ / "link_abs_in");
    fs::create_symlink("loop", root_ / "loop");

    FileCacheConfig cfg;
    cfg.resolver = GetParam();
    try {
      files_.emplace(root_, cfg);
    } catch (const std::runtime_error& e) {
      GTEST_SKIP() << e.what();  // openat2 unavailable on this kernel
    }
  }
  void TearDown() override {
    files_.reset();
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  StaticResponse get(std::string_view path, std::string_view inm = {}, std::string_view ims = {}) {
    return files_->handle("GET", path, inm, ims, now_ms_);
  }
  std::string bodyOf(const StaticResponse& r) {
    if (r.file) return readAll(r.file->fd()).substr(static_cast<std::size_t>(r.offset));
    return std::string(r.body);
  }

  fs::path dir_;
  fs::path root_;
  std::optional<StaticFiles> files_;
  int64_t now_ms_ = 1000;
};

TEST_P(StaticFilesTest, ServesRegularFile) {
  StaticResponse r = get("/hello.txt");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.content_type, "text/plain; charset=utf-8");
  EXPECT_EQ(r.content_length, 6);
  ASSERT_TRUE(r.file);
  EXPECT_EQ(r.offset, 0);
  EXPECT_EQ(bodyOf(r), "hello\n");
  EXPECT_EQ(r.last_modified.view(), kRfcExampleDate);
  EXPECT_EQ(r.etag.view(), "\"6-ae1b981bc490a00\"");  // size 6, 784111777e9 ns
  EXPECT_FALSE(r.allow_header);
  EXPECT_TRUE(r.body.empty());
}

TEST_P(StaticFilesTest, TraversalAttemptsAreBadRequests) {
  for (const std::string& raw : hostilePaths()) {
    StaticResponse r = get(raw);
    EXPECT_EQ(r.status, 400) << raw;
    EXPECT_FALSE(r.file) << raw;
    EXPECT_EQ(r.body, "400 Bad Request\n");
    EXPECT_EQ(r.content_type, "text/plain; charset=utf-8");
    EXPECT_EQ(r.content_length, 16);
  }
  EXPECT_EQ(files_->cacheStats().misses, 0u);  // refused before touching the file system
}

TEST_P(StaticFilesTest, SymlinksOutOfRootAreForbidden) {
  for (const char* path : {"/link_out", "/link_abs_out", "/dirlink_out/secret.txt", "/loop"}) {
    StaticResponse r = get(path);
    EXPECT_EQ(r.status, 403) << path;
    EXPECT_FALSE(r.file) << path;
    EXPECT_EQ(r.body, "403 Forbidden\n");
  }
}

TEST_P(StaticFilesTest, SymlinkInsideRootIsServed) {
  StaticResponse r = get("/link_in");
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(bodyOf(r), "hello\n");
}

TEST_P(StaticFilesTest, AbsoluteSymlinkInsideRootDependsOnResolver) {
  // RESOLVE_BENEATH refuses absolute symlinks even when they point inside the root.
  const int expected = GetParam() == PathResolver::kOpenat2 ? 403 : 200;
  EXPECT_EQ(get("/link_abs_in").status, expected);
}

TEST_P(StaticFilesTest, DirectoriesServeIndexOrForbidden) {
  StaticResponse root = get("/");
  ASSERT_EQ(root.status, 200);
  EXPECT_EQ(bodyOf(root), "<h1>root</h1>");
  EXPECT_EQ(root.content_type, "text/html; charset=utf-8");

  for (const char* path : {"/sub", "/sub/", "/sub/index.html", "//sub//", "/sub/."}) {
    StaticResponse r = get(path);
    ASSERT_EQ(r.status, 200) << path;
    EXPECT_EQ(bodyOf(r), "<p>sub</p>") << path;
    EXPECT_EQ(r.content_type, "text/html; charset=utf-8") << path;
  }
  EXPECT_EQ(get("/emptydir").status, 403);
  EXPECT_EQ(get("/emptydir/").status, 403);
  EXPECT_EQ(get("/hello.txt/").status, 404);  // a file is not a directory
}

TEST_P(StaticFilesTest, NonRegularFileIsForbidden) {
  StaticResponse r = get("/fifo");  // must not block on open
  EXPECT_EQ(r.status, 403);
  EXPECT_FALSE(r.file);
}

TEST_P(StaticFilesTest, MissingIsNotFound) {
  StaticResponse r = get("/nope.html");
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(r.body, "404 Not Found\n");
  EXPECT_EQ(r.content_type, "text/plain; charset=utf-8");
  EXPECT_EQ(r.content_length, 14);
  EXPECT_EQ(get("/a/nope").status, 404);
  EXPECT_EQ(get("/nodir/x").status, 404);
}

// EACCES → 403. Root ignores permission bits, so when running as root the check runs in a
// forked child that has dropped to uid/gid 65534 ("nobody").
TEST_P(StaticFilesTest, UnreadableFileIsForbidden) {
  writeFile(root_ / "private.txt", "p");
  fs::permissions(root_ / "private.txt", fs::perms::none);
  fs::create_directories(root_ / "locked");
  writeFile(root_ / "locked" / "f.txt", "f");
  fs::permissions(root_ / "locked", fs::perms::none);
  // The child must be able to reach the root at all.
  fs::permissions(dir_, fs::perms::owner_all | fs::perms::group_exec | fs::perms::others_exec);
  fs::permissions(root_, fs::perms::owner_all | fs::perms::group_exec | fs::perms::others_exec |
                             fs::perms::group_read | fs::perms::others_read);
  writeFile(root_ / "public.txt", "ok");

  auto check = [&]() -> int {  // 0 on success, else a code naming the failing step
    FileCacheConfig cfg;
    cfg.resolver = GetParam();
    StaticFiles files(root_, cfg);
    if (files.handle("GET", "/private.txt", {}, {}, 0).status != 403) return 1;
    if (files.handle("GET", "/locked/f.txt", {}, {}, 0).status != 403) return 2;
    if (files.handle("GET", "/public.txt", {}, {}, 0).status != 200) return 3;
    return 0;
  };
  if (::geteuid() != 0) {
    EXPECT_EQ(check(), 0);
    return;
  }
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    if (::setresgid(65534, 65534, 65534) != 0 || ::setresuid(65534, 65534, 65534) != 0) {
      ::_exit(10);
    }
    int rc = 20;
    try {
      rc = check();
    } catch (...) {
      rc = 30;
    }
    ::_exit(rc);
  }
  int wstatus = 0;
  ASSERT_EQ(::waitpid(pid, &wstatus, 0), pid);
  ASSERT_TRUE(WIFEXITED(wstatus));
  EXPECT_EQ(WEXITSTATUS(wstatus), 0);
}

TEST_P(StaticFilesTest, HeadHasLengthButNoBody) {
  StaticResponse r = files_->handle("HEAD", "/hello.txt", {}, {}, now_ms_);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.content_length, 6);
  EXPECT_EQ(r.content_type, "text/plain; charset=utf-8");
  EXPECT_FALSE(r.file);
  EXPECT_TRUE(r.body.empty());
  EXPECT_EQ(r.last_modified.view(), kRfcExampleDate);
  EXPECT_FALSE(r.etag.empty());

  StaticResponse missing = files_->handle("HEAD", "/nope", {}, {}, now_ms_);
  EXPECT_EQ(missing.status, 404);
  EXPECT_EQ(missing.content_length, 14);
  EXPECT_TRUE(missing.body.empty());
}

TEST_P(StaticFilesTest, OtherMethodsAreNotAllowed) {
  for (const char* method : {"POST", "PUT", "DELETE", "OPTIONS", "PATCH", "get", ""}) {
    StaticResponse r = files_->handle(method, "/hello.txt", {}, {}, now_ms_);
    EXPECT_EQ(r.status, 405) << method;
    EXPECT_TRUE(r.allow_header);
    EXPECT_EQ(kAllowedMethods, "GET, HEAD, OPTIONS");
    EXPECT_FALSE(r.file);
    EXPECT_EQ(r.body, "405 Method Not Allowed\n");
  }
}

TEST_P(StaticFilesTest, ContentTypes) {
  EXPECT_EQ(get("/style.CSS").content_type, "text/css; charset=utf-8");
  EXPECT_EQ(get("/image.png").content_type, "image/png");
  EXPECT_EQ(get("/noext").content_type, "application/octet-stream");
  EXPECT_EQ(get("/index.html").content_type, "text/html; charset=utf-8");
}

TEST_P(StaticFilesTest, EmptyFileHasNoBodySource) {
  StaticResponse r = get("/empty.txt");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.content_length, 0);
  EXPECT_FALSE(r.file);
  EXPECT_TRUE(r.body.empty());
}

TEST_P(StaticFilesTest, IfNoneMatch) {
  const std::string etag(get("/hello.txt").etag.view());
  ASSERT_FALSE(etag.empty());

  for (const std::string& inm : {etag, "W/" + etag, "\"zzz\", " + etag, "*"s}) {
    StaticResponse r = get("/hello.txt", inm);
    EXPECT_EQ(r.status, 304) << inm;
    EXPECT_FALSE(r.file);
    EXPECT_TRUE(r.body.empty());
    EXPECT_TRUE(r.content_type.empty());
    EXPECT_EQ(r.content_length, -1);
    EXPECT_EQ(r.etag.view(), etag);
    EXPECT_EQ(r.last_modified.view(), kRfcExampleDate);
  }
  EXPECT_EQ(get("/hello.txt", "\"other\"").status, 200);
  EXPECT_EQ(files_->handle("HEAD", "/hello.txt", etag, {}, now_ms_).status, 304);
}

TEST_P(StaticFilesTest, IfModifiedSince) {
  EXPECT_EQ(get("/hello.txt", {}, kRfcExampleDate).status, 304);
  EXPECT_EQ(get("/hello.txt", {}, "Sun, 06 Nov 1994 08:49:38 GMT").status, 304);
  EXPECT_EQ(get("/hello.txt", {}, "Sun Nov  6 08:49:37 1994").status, 304);
  EXPECT_EQ(get("/hello.txt", {}, "Sun, 06 Nov 1994 08:49:36 GMT").status, 200);
  EXPECT_EQ(get("/hello.txt", {}, "yesterday").status, 200);  // invalid → ignored
}

TEST_P(StaticFilesTest, IfNoneMatchWinsOverIfModifiedSince) {
  const std::string etag(get("/hello.txt").etag.view());
  // Etag differs, date says not modified: If-None-Match decides → 200.
  EXPECT_EQ(get("/hello.txt", "\"other\"", kRfcExampleDate).status, 200);
  // Etag matches, date says modified: If-None-Match decides → 304.
  EXPECT_EQ(get("/hello.txt", etag, "Sun, 06 Nov 1994 08:00:00 GMT").status, 304);
}

TEST_P(StaticFilesTest, CacheHitsOnRepeatedRequests) {
  for (int i = 0; i < 5; ++i)
    EXPECT_EQ(get("/hello.txt?v=" + std::to_string(i)).status, 200);
  const FileCacheStats s = files_->cacheStats();
  EXPECT_EQ(s.misses, 1u);
  EXPECT_EQ(s.hits, 4u);
  EXPECT_EQ(s.entries, 1u);
  EXPECT_EQ(s.open_files, 1);
}

TEST_P(StaticFilesTest, ModifiedFileIsServedFreshAfterTtl) {
  const std::string etag(get("/hello.txt").etag.view());
  setMtime(root_ / "hello.txt", kRfcExampleTime + 3600);
  EXPECT_EQ(get("/hello.txt", etag).status, 304);  // within the TTL: still cached
  now_ms_ += 1000;
  StaticResponse r = get("/hello.txt", etag);
  EXPECT_EQ(r.status, 200);
  EXPECT_NE(r.etag.view(), etag);
  EXPECT_EQ(r.last_modified.view(), "Sun, 06 Nov 1994 09:49:37 GMT");
}

TEST_P(StaticFilesTest, ResponseKeepsEvictedFileOpenUntilReleased) {
  FileCacheConfig cfg;
  cfg.max_entries = 1;
  cfg.resolver = GetParam();
  files_.reset();
  files_.emplace(root_, cfg);

  StaticResponse first = get("/hello.txt");
  ASSERT_TRUE(first.file);
  const int fd = first.file->fd();
  StaticResponse second = get("/style.CSS");  // evicts hello.txt
  ASSERT_TRUE(second.file);
  EXPECT_EQ(files_->cacheStats().evictions, 1u);
  EXPECT_EQ(files_->cacheStats().open_files, 2);
  EXPECT_TRUE(fdIsOpen(fd));
  EXPECT_EQ(bodyOf(first), "hello\n");

  // The stream takes the reference and finishes later.
  h2::FileHandle* handle = first.file.detach();
  first = StaticResponse{};
  EXPECT_TRUE(fdIsOpen(fd));
  handle->release();
  EXPECT_FALSE(fdIsOpen(fd));

  files_->clearCache();
  EXPECT_EQ(files_->cacheStats().open_files, 1);  // `second` still holds style.CSS
  second = StaticResponse{};
  const FileCacheStats s = files_->cacheStats();
  EXPECT_EQ(s.entries, 0u);
  EXPECT_EQ(s.open_files, 0);
}

TEST(StaticFilesStartup, AutoPrefersOpenat2) {
  FileCache cache("/tmp", FileCacheConfig{});
  struct open_how_probe {
    uint64_t flags, mode, resolve;
  } how{O_PATH, 0, 0x08};
  const long fd = ::syscall(SYS_openat2, AT_FDCWD, ".", &how, sizeof how);
  if (fd >= 0) ::close(static_cast<int>(fd));
  EXPECT_EQ(cache.resolver(), fd >= 0 ? PathResolver::kOpenat2 : PathResolver::kProcFdCheck);
}

TEST(StaticFilesStartup, MissingRootThrows) {
  EXPECT_THROW(StaticFiles("/nonexistent/h2loop/root", FileCacheConfig{}), std::runtime_error);
  try {
    StaticFiles files("/nonexistent/h2loop/root", FileCacheConfig{});
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/h2loop/root"), std::string::npos);
  }
}

std::string resolverName(const ::testing::TestParamInfo<PathResolver>& info) {
  return info.param == PathResolver::kOpenat2 ? "openat2" : "procfd";
}

INSTANTIATE_TEST_SUITE_P(Resolvers, StaticFilesTest,
                         ::testing::Values(PathResolver::kOpenat2, PathResolver::kProcFdCheck),
                         resolverName);

}  // namespace
}  // namespace h2loop::server
