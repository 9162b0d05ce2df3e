// On-the-fly compression of static files: the coding choice, the answer's headers, once
// per file version, the per-worker byte budget, and a response keeping its bytes after the
// cache let go of them.
#include "server/compress.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>

#include <gtest/gtest.h>

#include "server/static_files.h"

namespace h2loop::server {
namespace {

namespace fs = std::filesystem;

std::string gunzip(std::string_view in) {
  z_stream z{};
  EXPECT_EQ(inflateInit2(&z, 15 + 16), Z_OK);
  std::string out;
  char buf[16384];
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  z.avail_in = static_cast<uInt>(in.size());
  int rc = Z_OK;
  while (rc == Z_OK) {
    z.next_out = reinterpret_cast<Bytef*>(buf);
    z.avail_out = sizeof buf;
    rc = inflate(&z, Z_NO_FLUSH);
    out.append(buf, sizeof buf - z.avail_out);
  }
  EXPECT_EQ(rc, Z_STREAM_END);
  inflateEnd(&z);
  return out;
}

// Text that compresses, of exactly `n` bytes, different per `seed`.
std::string text(std::size_t n, int seed = 0) {
  std::string s;
  for (int i = 0; s.size() < n; ++i)
    s += "line " + std::to_string(i * 7 + seed) + " of some compressible text\n";
  s.resize(n);
  return s;
}

CodingChoice choose(std::string_view ae, bool gz, bool br, bool fly) {
  const bool pre[kCodings] = {gz, br};
  return chooseCoding(ae, pre, fly);
}

std::string describe(const CodingChoice& c) {
  if (c.identity) return "identity";
  return std::string(c.precompressed ? "pre-" : "fly-") + std::string(codingName(c.coding));
}

TEST(ChooseCoding, OnTheFly) {
  EXPECT_EQ(describe(choose("gzip, deflate, br", false, false, true)), "fly-br");
  EXPECT_EQ(describe(choose("gzip", false, false, true)), "fly-gzip");
  EXPECT_EQ(describe(choose("br;q=0.5, gzip", false, false, true)), "fly-gzip");
  EXPECT_EQ(describe(choose("br;q=0.5, gzip;q=0.5", false, false, true)), "fly-br");
  EXPECT_EQ(describe(choose("x-gzip", false, false, true)), "fly-gzip");
  EXPECT_EQ(describe(choose("GZIP", false, false, true)), "fly-gzip");
  EXPECT_EQ(describe(choose("*", false, false, true)), "fly-br");
  EXPECT_EQ(describe(choose("gzip;q=0, *", false, false, true)), "fly-br");
  EXPECT_EQ(describe(choose("br;q=0, *", false, false, true)), "fly-gzip");
  EXPECT_EQ(describe(choose("gzip", false, false, false)), "identity");
}

TEST(ChooseCoding, QZeroAndIdentityOnly) {
  EXPECT_EQ(describe(choose("", true, true, true)), "identity");
  EXPECT_EQ(describe(choose("identity", true, true, true)), "identity");
  EXPECT_EQ(describe(choose("*;q=0", true, true, true)), "identity");
  EXPECT_EQ(describe(choose("gzip;q=0, br;q=0", true, true, true)), "identity");
  EXPECT_EQ(describe(choose("gzip;q=0, br;q=0, identity;q=0", true, true, true)), "identity");
  EXPECT_EQ(describe(choose("deflate, compress, zstd", true, true, true)), "identity");
}

TEST(ChooseCoding, MalformedAcceptEncoding) {
  for (const char* ae :
       {"gzip;q=abc", "gzip;q=2", "gzip;q=1.0001", "gzip;q=", "gzip;x=1", ";;;", ",,,", "q=1",
        "gzip;q=-1", "\"gzip\"", "gzip br", "gz", "gzip/1", "\x01\x02\xff"}) {
    EXPECT_EQ(describe(choose(ae, false, false, true)), "identity") << ae;
  }
  // A bad element does not spoil the good ones.
  EXPECT_EQ(describe(choose("foo;q=x, gzip, ,", false, false, true)), "fly-gzip");
  EXPECT_EQ(describe(choose(" br ; q=0.9 ,gzip;q=0.8", false, false, true)), "fly-br");
  std::string huge(100000, ',');
  huge += "gzip";
  EXPECT_EQ(describe(choose(huge, false, false, true)), "fly-gzip");
}

TEST(ChooseCoding, PrecompressedWinsAtEqualQuality) {
  EXPECT_EQ(describe(choose("gzip, br", true, false, true)), "pre-gzip");  // over fly br
  EXPECT_EQ(describe(choose("gzip, br", true, true, true)), "pre-br");
  EXPECT_EQ(describe(choose("br", true, false, true)), "fly-br");  // the client's choice first
  EXPECT_EQ(describe(choose("gzip;q=0.5, br", true, false, true)), "fly-br");
  EXPECT_EQ(describe(choose("gzip", false, true, true)), "fly-gzip");
  EXPECT_EQ(describe(choose("gzip, br", true, false, false)), "pre-gzip");
}

TEST(TypeMatches, ExactAndWildcard) {
  const std::vector<std::string> types = {"text/*", "application/json", "image/svg+xml"};
  EXPECT_TRUE(typeMatches("text/html; charset=utf-8", types));
  EXPECT_TRUE(typeMatches("TEXT/CSS", types));
  EXPECT_TRUE(typeMatches("application/json", types));
  EXPECT_TRUE(typeMatches("Application/JSON ; x=y", types));
  EXPECT_TRUE(typeMatches("image/svg+xml", types));
  EXPECT_FALSE(typeMatches("text/", types));
  EXPECT_FALSE(typeMatches("textual/plain", types));
  EXPECT_FALSE(typeMatches("image/png", types));
  EXPECT_FALSE(typeMatches("application/octet-stream", types));
  EXPECT_FALSE(typeMatches("application/jsonx", types));
  EXPECT_FALSE(typeMatches("", types));
  EXPECT_FALSE(typeMatches("text/html", {}));
}

TEST(CompressBytes, GzipRoundTripsAndIsDeterministic) {
  const std::string in = text(100000);
  std::string a;
  std::string b;
  ASSERT_TRUE(compressBytes(Coding::kGzip, in, 6, a));
  ASSERT_TRUE(compressBytes(Coding::kGzip, in, 6, b));
  EXPECT_EQ(a, b);
  EXPECT_LT(a.size(), in.size() / 3);
  EXPECT_EQ(gunzip(a), in);
  ASSERT_TRUE(compressBytes(Coding::kBrotli, in, 5, b));
  EXPECT_LT(b.size(), in.size() / 3);
  EXPECT_NE(a, b);
}

// The stall a compression at the defaults costs the loop, reported (not a benchmark: the
// bound only catches a pathological regression).
TEST(CompressBytes, TimeAtTheMaximumSize) {
  const StaticFilesOptions o;
  const std::string in = text(o.compress_max_size);
  for (const Coding c : {Coding::kGzip, Coding::kBrotli}) {
    std::string out;
    const auto t0 = std::chrono::steady_clock::now();
    ASSERT_TRUE(compressBytes(c, in, c == Coding::kGzip ? o.gzip_level : o.brotli_quality, out));
    const auto us =
        std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0)
            .count();
    std::printf("compress %s %zu bytes -> %zu: %lld us\n", std::string(codingName(c)).c_str(),
                in.size(), out.size(), static_cast<long long>(us));
    EXPECT_LT(us, 2'000'000);
  }
}

class CompressTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/h2loop_compress_XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    page_ = text(4000);
    write("page.html", page_);
    write("style.css", text(3000, 1));
    write("min.txt", text(options_.compress_min_size));
    write("below.txt", text(options_.compress_min_size - 1));
    write("image.png", text(4000, 2));  // compressible bytes, but not a compressible type
    write("max.js", text(options_.compress_max_size, 3));
    write("above.js", text(options_.compress_max_size + 1, 4));
    write("pre.txt", text(5000, 5));
    write("pre.txt.gz", "GZIPPED-ON-DISK");
    start();
  }
  void TearDown() override {
    files_.reset();
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  void write(const std::string& name, const std::string& content) {
    std::ofstream(dir_ / name, std::ios::binary) << content;
  }
  void start(FileCacheConfig cfg = {}) {
    files_.reset();
    files_.emplace(dir_, cfg, options_);
  }
  StaticResponse get(std::string_view path, std::string_view ae, std::string_view method = "GET",
                     std::string_view inm = {}, std::string_view ims = {},
                     std::string_view range = {}) {
    StaticRequest r;
    r.method = method;
    r.path = path;
    r.accept_encoding = ae;
    r.if_none_match = inm;
    r.if_modified_since = ims;
    r.range = range;
    return files_->handle(r, now_ms_);
  }
  static std::string bodyOf(const StaticResponse& r) {
    return std::string(r.file->memory());  // a compressed body is all in memory
  }
  uint64_t compressions() const {
    return files_->compressions(Coding::kGzip) + files_->compressions(Coding::kBrotli);
  }

  StaticFilesOptions options_;
  fs::path dir_;
  std::string page_;
  std::optional<StaticFiles> files_;
  int64_t now_ms_ = 0;
};

TEST_F(CompressTest, GzipAnswer) {
  const StaticResponse r = get("/page.html", "gzip, deflate");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.content_encoding, "gzip");
  EXPECT_EQ(r.content_type, "text/html; charset=utf-8");
  EXPECT_TRUE(r.vary);
  EXPECT_FALSE(r.accept_ranges);
  ASSERT_TRUE(r.file);
  EXPECT_EQ(r.file->fd(), -1);
  EXPECT_EQ(r.content_length, static_cast<int64_t>(r.file->memory().size()));
  EXPECT_LT(r.content_length, 2000);
  EXPECT_EQ(gunzip(bodyOf(r)), page_);
  EXPECT_TRUE(r.etag.view().starts_with("W/\"")) << r.etag.view();
  EXPECT_FALSE(r.last_modified.empty());

  const StaticResponse plain = get("/page.html", {});
  EXPECT_TRUE(plain.content_encoding.empty());
  EXPECT_TRUE(plain.vary);  // compressible: the answer depends on Accept-Encoding
  EXPECT_TRUE(plain.accept_ranges);
  EXPECT_EQ(plain.content_length, 4000);
  // The weak etag is the identity's, weakened (nginx): never the same strong etag.
  EXPECT_EQ(r.etag.view(), "W/" + std::string(plain.etag.view()));
}

TEST_F(CompressTest, BrotliPreferredAndHeadHasTheSameHeaders) {
  const StaticResponse r = get("/style.css", "gzip, deflate, br");
  EXPECT_EQ(r.content_encoding, "br");
  EXPECT_EQ(r.content_type, "text/css; charset=utf-8");
  const StaticResponse h = get("/style.css", "gzip, deflate, br", "HEAD");
  EXPECT_EQ(h.status, 200);
  EXPECT_FALSE(h.file);  // no body
  EXPECT_EQ(h.content_encoding, "br");
  EXPECT_EQ(h.content_length, r.content_length);
  EXPECT_EQ(h.etag.view(), r.etag.view());
  EXPECT_TRUE(h.vary);
  EXPECT_EQ(files_->compressions(Coding::kBrotli), 1u);  // HEAD used the kept body
}

TEST_F(CompressTest, SizeAndTypeLimits) {
  EXPECT_EQ(get("/min.txt", "gzip").content_encoding, "gzip");
  const StaticResponse below = get("/below.txt", "gzip");
  EXPECT_TRUE(below.content_encoding.empty());
  EXPECT_FALSE(below.vary);
  const StaticResponse png = get("/image.png", "gzip");
  EXPECT_TRUE(png.content_encoding.empty());
  EXPECT_FALSE(png.vary);
  EXPECT_EQ(get("/max.js", "gzip").content_encoding, "gzip");
  const StaticResponse above = get("/above.js", "gzip, br");
  EXPECT_TRUE(above.content_encoding.empty());
  EXPECT_FALSE(above.vary);  // never compressed: the answer does not vary
  EXPECT_EQ(above.content_length, static_cast<int64_t>(options_.compress_max_size + 1));
}

TEST_F(CompressTest, OffMeansOff) {
  options_.compress = false;
  start();
  const StaticResponse r = get("/page.html", "gzip, br");
  EXPECT_TRUE(r.content_encoding.empty());
  EXPECT_FALSE(r.vary);
  EXPECT_EQ(compressions(), 0u);
}

TEST_F(CompressTest, ConditionalsOnCompressedAnswers) {
  const StaticResponse r = get("/page.html", "gzip");
  const std::string weak(r.etag.view());
  const std::string strong(get("/page.html", {}).etag.view());
  const uint64_t before = compressions();

  StaticResponse n = get("/page.html", "gzip", "GET", weak);
  EXPECT_EQ(n.status, 304);
  EXPECT_EQ(n.etag.view(), weak);  // the etag of the representation that would be sent
  EXPECT_TRUE(n.vary);
  EXPECT_FALSE(n.file);
  // Weak comparison: the identity's strong etag validates the gzip answer too (nginx).
  EXPECT_EQ(get("/page.html", "gzip", "GET", strong).status, 304);
  EXPECT_EQ(get("/page.html", {}, "GET", weak).status, 304);
  EXPECT_EQ(get("/page.html", "gzip", "GET", "\"other\"").status, 200);
  n = get("/page.html", "br", "GET", {}, r.last_modified.view());
  EXPECT_EQ(n.status, 304);
  EXPECT_TRUE(n.etag.view().starts_with("W/"));
  EXPECT_EQ(compressions(), before);  // a 304 compresses nothing
  EXPECT_EQ(get("/page.html", "br", "GET", {}, "Sun, 06 Nov 1994 08:49:37 GMT").status, 200);
}

TEST_F(CompressTest, RangeIgnoredOnCompressedAnswer) {
  const StaticResponse r = get("/page.html", "gzip", "GET", {}, {}, "bytes=0-9");
  EXPECT_EQ(r.status, 200);  // nginx: the full gzip answer, no accept-ranges
  EXPECT_EQ(r.content_encoding, "gzip");
  EXPECT_TRUE(r.content_range.empty());
  EXPECT_FALSE(r.accept_ranges);
  EXPECT_EQ(gunzip(bodyOf(r)), page_);
  // Without gzip, the range as before.
  const StaticResponse i = get("/page.html", {}, "GET", {}, {}, "bytes=0-9");
  EXPECT_EQ(i.status, 206);
  EXPECT_EQ(i.content_range.view(), "bytes 0-9/4000");
}

TEST_F(CompressTest, PrecompressedVariantWins) {
  StaticResponse r = get("/pre.txt", "gzip");
  EXPECT_EQ(r.content_encoding, "gzip");
  EXPECT_EQ(r.content_length, 15);  // pre.txt.gz from disk
  EXPECT_FALSE(r.etag.view().starts_with("W/"));
  r = get("/pre.txt", "br");  // no .br on disk: compressed on the fly
  EXPECT_EQ(r.content_encoding, "br");
  EXPECT_TRUE(r.etag.view().starts_with("W/"));
  EXPECT_EQ(files_->compressions(Coding::kGzip), 0u);
  EXPECT_EQ(files_->compressions(Coding::kBrotli), 1u);
}

TEST_F(CompressTest, OncePerFileVersionAndCoding) {
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(gunzip(bodyOf(get("/page.html", "gzip"))), page_);
    (void)get("/page.html", "br");
  }
  EXPECT_EQ(files_->compressions(Coding::kGzip), 1u);
  EXPECT_EQ(files_->compressions(Coding::kBrotli), 1u);
  const FileCacheStats s = files_->cacheStats();
  EXPECT_GT(s.compressed_bytes, 0);
  EXPECT_EQ(s.compressed_live_bytes, s.compressed_bytes);

  // A new version (after the cache's TTL): compressed again, the old bodies dropped.
  const std::string v2 = text(6000, 9);
  write("page.html", v2);
  ::utimensat(AT_FDCWD, (dir_ / "page.html").c_str(), nullptr, 0);
  now_ms_ += 5000;
  const StaticResponse r = get("/page.html", "gzip");
  EXPECT_EQ(gunzip(bodyOf(r)), v2);
  EXPECT_EQ(files_->compressions(Coding::kGzip), 2u);
  EXPECT_EQ(files_->cacheStats().compressed_bytes, r.content_length);
}

TEST_F(CompressTest, BudgetEvictsLeastRecentlyUsed) {
  const int64_t page = get("/page.html", "gzip").content_length;
  const int64_t css = get("/style.css", "gzip").content_length;
  // A budget that holds either body, not both.
  options_.compress_budget = static_cast<std::size_t>(std::max(page, css) + 10);
  start();
  (void)get("/page.html", "gzip");
  EXPECT_EQ(files_->cacheStats().compressed_bytes, page);
  (void)get("/style.css", "gzip");
  FileCacheStats s = files_->cacheStats();
  EXPECT_EQ(s.compressed_bytes, css);  // page's body went
  EXPECT_EQ(s.compressed_evictions, 1u);
  EXPECT_LE(s.compressed_bytes, static_cast<int64_t>(options_.compress_budget));
  (void)get("/style.css", "gzip");
  EXPECT_EQ(compressions(), 2u);  // kept
  (void)get("/page.html", "gzip");
  EXPECT_EQ(compressions(), 3u);  // evicted: compressed again
  EXPECT_EQ(files_->cacheStats().compressed_evictions, 2u);
  EXPECT_EQ(files_->cacheStats().compressed_live_bytes, page);
}

TEST_F(CompressTest, BodyOverTheBudgetIsNotKept) {
  options_.compress_budget = 100;
  start();
  for (int i = 0; i < 3; ++i) {
    const StaticResponse r = get("/page.html", "gzip");
    EXPECT_EQ(r.content_encoding, "gzip");
    EXPECT_EQ(gunzip(bodyOf(r)), page_);
  }
  EXPECT_EQ(compressions(), 3u);  // compressed per request, never held
  EXPECT_EQ(files_->cacheStats().compressed_bytes, 0);
  EXPECT_EQ(files_->cacheStats().compressed_live_bytes, 0);
}

TEST_F(CompressTest, ResponseKeepsItsBytesAfterEviction) {
  StaticResponse r = get("/page.html", "gzip");
  ASSERT_TRUE(r.file);
  const std::string_view bytes = r.file->memory();
  const int64_t len = r.content_length;
  // Every way the cache lets go: the entry replaced by a new version, evicted, cleared.
  write("page.html", text(7000, 11));
  ::utimensat(AT_FDCWD, (dir_ / "page.html").c_str(), nullptr, 0);
  now_ms_ += 5000;
  (void)get("/page.html", "gzip");
  files_->clearCache();
  EXPECT_EQ(files_->cacheStats().compressed_bytes, 0);
  EXPECT_EQ(files_->cacheStats().compressed_live_bytes, len);  // only ours is alive
  EXPECT_EQ(r.file->memory().data(), bytes.data());
  EXPECT_EQ(gunzip(r.file->memory()), page_);
  // And after the StaticFiles itself is gone (a stream outliving its worker's service).
  files_.reset();
  EXPECT_EQ(gunzip(r.file->memory()), page_);
  r.file.reset();  // the last reference frees it (ASan checks the rest)
}

TEST_F(CompressTest, CacheKeepsOnlyTheCurrentVersion) {
  FileCache cache(dir_, FileCacheConfig{.compressed_budget = 1 << 20});
  AcquireResult old = cache.acquire("page.html", 0);
  ASSERT_EQ(old.status, OpenStatus::kOk);
  write("page.html", text(5000, 12));
  ::utimensat(AT_FDCWD, (dir_ / "page.html").c_str(), nullptr, 0);
  AcquireResult now = cache.acquire("page.html", 5000);  // revalidated: a new version
  ASSERT_NE(now.file.get(), old.file.get());
  CompressedBody* body = cache.newCompressed("stale bytes");
  EXPECT_FALSE(cache.keepCompressed("page.html", old.file.get(), Coding::kGzip, body));
  EXPECT_FALSE(cache.keepCompressed("other.html", now.file.get(), Coding::kGzip, body));
  EXPECT_TRUE(cache.keepCompressed("page.html", now.file.get(), Coding::kGzip, body));
  EXPECT_FALSE(cache.keepCompressed("page.html", now.file.get(), Coding::kGzip, body));  // once
  EXPECT_EQ(body->refCount(), 2);
  EXPECT_EQ(cache.acquire("page.html", 5000).compressed[0].get(), body);
  body->release();
  EXPECT_EQ(cache.stats().compressed_bytes, 11);
}

TEST_F(CompressTest, NoCacheStillCompressesBounded) {
  FileCacheConfig cfg;
  cfg.max_entries = 0;
  start(cfg);
  for (int i = 0; i < 2; ++i)
    EXPECT_EQ(gunzip(bodyOf(get("/page.html", "gzip"))), page_);
  EXPECT_EQ(compressions(), 2u);
  EXPECT_EQ(files_->cacheStats().compressed_live_bytes, 0);
}

}  // namespace
}  // namespace h2loop::server
