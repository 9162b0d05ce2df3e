// Byte ranges of the static-file service: the Range parser (RFC 9110 §14, nginx's
// choices), If-Range, and the 206/416 answers StaticFiles builds.
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "server/static_files.h"

namespace h2loop::server {
namespace {

namespace fs = std::filesystem;

struct Parsed {
  RangeResult result;
  std::vector<ByteRange> ranges;
};

Parsed parse(std::string_view value, uint64_t size, std::size_t max_ranges = 100) {
  Parsed p;
  p.result = parseRange(value, size, max_ranges, p.ranges);
  return p;
}

void expectRanges(std::string_view value, uint64_t size,
                  std::vector<std::pair<uint64_t, uint64_t>> want) {
  const Parsed p = parse(value, size);
  ASSERT_EQ(p.result, RangeResult::kSatisfiable) << value;
  ASSERT_EQ(p.ranges.size(), want.size()) << value;
  for (std::size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(p.ranges[i].first, want[i].first) << value << " #" << i;
    EXPECT_EQ(p.ranges[i].last, want[i].second) << value << " #" << i;
  }
}

TEST(RangeParse, SingleForms) {
  expectRanges("bytes=0-4", 1000, {{0, 4}});
  expectRanges("bytes=500-", 1000, {{500, 999}});
  expectRanges("bytes=-500", 1000, {{500, 999}});
  expectRanges("bytes=-5000", 1000, {{0, 999}});       // suffix longer than the file: all of it
  expectRanges("bytes=990-5000", 1000, {{990, 999}});  // last clipped
  expectRanges("bytes=999-999", 1000, {{999, 999}});
  expectRanges("bytes=0-0", 1, {{0, 0}});
}

TEST(RangeParse, UnitIsCaseInsensitiveOthersIgnored) {
  expectRanges("BYTES=0-4", 1000, {{0, 4}});
  expectRanges("Bytes=0-4", 1000, {{0, 4}});
  EXPECT_EQ(parse("items=0-4", 1000).result, RangeResult::kIgnore);
  EXPECT_EQ(parse("0-4", 1000).result, RangeResult::kIgnore);  // missing unit
  EXPECT_EQ(parse("bytes 0-4", 1000).result, RangeResult::kIgnore);
  EXPECT_EQ(parse("bytes", 1000).result, RangeResult::kIgnore);
  EXPECT_EQ(parse("", 1000).result, RangeResult::kIgnore);
}

TEST(RangeParse, WhitespaceAndEmptyElements) {
  expectRanges("bytes= 0 - 4 ", 1000, {{0, 4}});  // nginx accepts spaces too
  expectRanges("bytes=\t0-4\t,\t10-12", 1000, {{0, 4}, {10, 12}});
  expectRanges("bytes=0-4,,10-12,", 1000, {{0, 4}, {10, 12}});  // 1#rule: empty elements
  EXPECT_EQ(parse("bytes=", 1000).result, RangeResult::kIgnore);
  EXPECT_EQ(parse("bytes= , ,", 1000).result, RangeResult::kIgnore);
}

TEST(RangeParse, SyntacticallyInvalidIsIgnored) {
  for (const char* v :
       {"bytes=abc", "bytes=5-2", "bytes=-", "bytes=--5", "bytes=-5-", "bytes=0-4;x", "bytes=+1-2",
        "bytes=-1-2", "bytes=1", "bytes=1--2", "bytes=0x10-20", "bytes=1-2 3", "bytes=0-4,abc",
        "bytes=0-4,5-2", "bytes=1.5-2", "bytes=\xff-1"}) {
    EXPECT_EQ(parse(v, 1000).result, RangeResult::kIgnore) << v;
  }
}

TEST(RangeParse, Unsatisfiable) {
  EXPECT_EQ(parse("bytes=1000-", 1000).result, RangeResult::kUnsatisfiable);
  EXPECT_EQ(parse("bytes=2000-3000", 1000).result, RangeResult::kUnsatisfiable);
  EXPECT_EQ(parse("bytes=-0", 1000).result, RangeResult::kUnsatisfiable);
  EXPECT_EQ(parse("bytes=1000-,-0", 1000).result, RangeResult::kUnsatisfiable);
  // Unsatisfiable ranges among satisfiable ones are dropped (nginx).
  expectRanges("bytes=0-4,2000-3000", 1000, {{0, 4}});
}

TEST(RangeParse, EmptyRepresentation) {
  // nginx: a range from 0 (or a suffix) on an empty file serves the (empty) file; a
  // range starting past it is unsatisfiable.
  EXPECT_EQ(parse("bytes=0-", 0).result, RangeResult::kIgnore);
  EXPECT_EQ(parse("bytes=-5", 0).result, RangeResult::kIgnore);
  EXPECT_EQ(parse("bytes=0-10", 0).result, RangeResult::kIgnore);
  EXPECT_EQ(parse("bytes=5-10", 0).result, RangeResult::kUnsatisfiable);
}

TEST(RangeParse, HugeNumbersSaturateNeverWrap) {
  // 2^64 + 4 would wrap to 4 with unchecked arithmetic.
  const std::string wrap = "18446744073709551620";
  EXPECT_EQ(parse("bytes=" + wrap + "-", 1000).result, RangeResult::kUnsatisfiable);
  EXPECT_EQ(parse("bytes=" + wrap + "-" + wrap, 1000).result, RangeResult::kUnsatisfiable);
  expectRanges("bytes=10-" + wrap, 1000, {{10, 999}});
  expectRanges("bytes=-" + wrap, 1000, {{0, 999}});
  expectRanges("bytes=0-99999999999999999999999999999999999999999999", 1000, {{0, 999}});
  const std::string huge_first(5000, '9');
  EXPECT_EQ(parse("bytes=" + huge_first + "-", 1000).result, RangeResult::kUnsatisfiable);
  expectRanges("bytes=5-18446744073709551615", UINT64_MAX - 1, {{5, UINT64_MAX - 2}});
}

TEST(RangeParse, OverlapsLongerThanTheFileAreIgnored) {
  // nginx: ranges that add up to more than the file → the whole file, once.
  expectRanges("bytes=0-4,0-4", 1000, {{0, 4}, {0, 4}});  // kept, in order, not merged
  EXPECT_EQ(parse("bytes=0-999,0-0", 1000).result, RangeResult::kIgnore);
  EXPECT_EQ(parse("bytes=0-,0-", 1000).result, RangeResult::kIgnore);
  EXPECT_EQ(parse("bytes=-600,0-500", 1000).result, RangeResult::kIgnore);
}

TEST(RangeParse, CountIsCapped) {
  std::string v = "bytes=0-0";
  for (int i = 1; i < 1000; ++i)
    v += ",0-0";
  std::vector<ByteRange> out;
  // 1000 one-byte ranges of a big file fit its size, so only the cap stands between
  // this header and a 1000-part answer.
  EXPECT_EQ(parseRange(v, 1 << 20, 100, out), RangeResult::kIgnore);
  EXPECT_LE(out.size(), 100u);
  EXPECT_EQ(parseRange(v, 1 << 20, 1000, out), RangeResult::kSatisfiable);
  EXPECT_EQ(out.size(), 1000u);
  // Exactly at the cap is served; one more is not.
  std::string hundred = "bytes=0-0";
  for (int i = 1; i < 100; ++i)
    hundred += "," + std::to_string(i) + "-" + std::to_string(i);
  EXPECT_EQ(parseRange(hundred, 1000, 100, out), RangeResult::kSatisfiable);
  EXPECT_EQ(out.size(), 100u);
  EXPECT_EQ(parseRange(hundred + ",200-200", 1000, 100, out), RangeResult::kIgnore);
  // 0 disables ranges, 1 allows single ranges only.
  EXPECT_EQ(parseRange("bytes=0-4", 1000, 0, out), RangeResult::kIgnore);
  EXPECT_EQ(parseRange("bytes=0-4", 1000, 1, out), RangeResult::kSatisfiable);
  EXPECT_EQ(parseRange("bytes=0-4,6-7", 1000, 1, out), RangeResult::kIgnore);
}

TEST(RangeParse, HostileLongHeaderStaysBounded) {
  // A megabyte of separators and spaces: linear, nothing kept.
  std::string v = "bytes=";
  v.append(1 << 20, ',');
  EXPECT_EQ(parse(v, 1000).result, RangeResult::kIgnore);
  v = "bytes=";
  v.append(1 << 20, ' ');
  v += "0-1";
  expectRanges(v, 1000, {{0, 1}});
}

TEST(IfRange, StrongEtagAndExactDate) {
  const std::string_view etag = "\"3e8-1234\"";
  const std::string_view lm = "Sun, 06 Nov 1994 08:49:37 GMT";
  EXPECT_TRUE(ifRangeMatches("\"3e8-1234\"", etag, lm));
  EXPECT_TRUE(ifRangeMatches(" \"3e8-1234\" ", etag, lm));
  EXPECT_FALSE(ifRangeMatches("W/\"3e8-1234\"", etag, lm));  // weak never matches
  EXPECT_FALSE(ifRangeMatches("\"3e8-1235\"", etag, lm));
  EXPECT_FALSE(ifRangeMatches("\"3e8-1234\", \"x\"", etag, lm));  // one tag, not a list
  EXPECT_FALSE(ifRangeMatches("\"x\"", "W/\"x\"", lm));
  EXPECT_TRUE(ifRangeMatches(lm, etag, lm));
  EXPECT_TRUE(ifRangeMatches("Sunday, 06-Nov-94 08:49:37 GMT", etag, lm));  // same date
  EXPECT_FALSE(ifRangeMatches("Sun, 06 Nov 1994 08:49:38 GMT", etag, lm));
  EXPECT_FALSE(ifRangeMatches("Sun, 06 Nov 1994 08:49:36 GMT", etag, lm));
  EXPECT_FALSE(ifRangeMatches("garbage", etag, lm));
  EXPECT_FALSE(ifRangeMatches("", etag, lm));
}

class StaticRangesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/h2loop_ranges_XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    content_.clear();
    for (int i = 0; i < 100; ++i)
      content_ += "0123456789";
    std::ofstream(dir_ / "a.txt", std::ios::binary) << content_;
    big_.assign(200000, 'x');
    for (std::size_t i = 0; i < big_.size(); i += 7)
      big_[i] = static_cast<char>('a' + i % 26);
    std::ofstream(dir_ / "big.bin", std::ios::binary) << big_;
    files_.emplace(dir_, FileCacheConfig{});
  }
  void TearDown() override {
    files_.reset();
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  StaticResponse get(std::string_view path, std::string_view range, std::string_view if_range = {},
                     std::string_view method = "GET", std::string_view inm = {}) {
    StaticRequest r;
    r.method = method;
    r.path = path;
    r.range = range;
    r.if_range = if_range;
    r.if_none_match = inm;
    return files_->handle(r, 0);
  }
  // The bytes a filePieces()/file() body would send.
  static std::string bodyOf(const StaticResponse& r) {
    std::string out;
    const std::string_view mem = r.file->memory();
    auto fileBytes = [&](uint64_t off, uint64_t len) {
      if (!mem.empty()) return std::string(mem.substr(off, len));
      std::string s(len, '\0');
      EXPECT_EQ(::pread(r.file->fd(), s.data(), len, static_cast<off_t>(off)),
                static_cast<ssize_t>(len));
      return s;
    };
    if (r.pieces.empty())
      return fileBytes(static_cast<uint64_t>(r.offset), static_cast<uint64_t>(r.content_length));
    std::size_t text = 0;
    for (const h2::BodyPiece& p : r.pieces) {
      out.append(r.parts_text.substr(text, p.text_length));
      text += p.text_length;
      out += fileBytes(p.file_offset, p.file_length);
    }
    EXPECT_EQ(text, r.parts_text.size());
    return out;
  }

  fs::path dir_;
  std::string content_;
  std::string big_;
  std::optional<StaticFiles> files_;
};

TEST_F(StaticRangesTest, FullAnswerAdvertisesRanges) {
  const StaticResponse r = get("/a.txt", {});
  EXPECT_EQ(r.status, 200);
  EXPECT_TRUE(r.accept_ranges);
  EXPECT_TRUE(r.content_range.empty());
}

TEST_F(StaticRangesTest, SingleRange) {
  const StaticResponse r = get("/big.bin", "bytes=100000-100009");
  ASSERT_EQ(r.status, 206);
  EXPECT_FALSE(r.accept_ranges);  // as nginx: only on the 200
  EXPECT_EQ(r.content_range.view(), "bytes 100000-100009/200000");
  EXPECT_EQ(r.content_length, 10);
  EXPECT_EQ(r.offset, 100000);
  ASSERT_TRUE(r.file);
  EXPECT_TRUE(r.pieces.empty());
  EXPECT_EQ(bodyOf(r), big_.substr(100000, 10));
  EXPECT_FALSE(r.etag.empty());
}

TEST_F(StaticRangesTest, HeadGetsTheRangeHeadersWithoutAFile) {
  const StaticResponse r = get("/a.txt", "bytes=-10", {}, "HEAD");
  EXPECT_EQ(r.status, 206);
  EXPECT_EQ(r.content_range.view(), "bytes 990-999/1000");
  EXPECT_EQ(r.content_length, 10);
  EXPECT_FALSE(r.file);
}

TEST_F(StaticRangesTest, Unsatisfiable) {
  const StaticResponse r = get("/a.txt", "bytes=1000-");
  EXPECT_EQ(r.status, 416);
  EXPECT_EQ(r.content_range.view(), "bytes */1000");
  EXPECT_FALSE(r.file);
  EXPECT_FALSE(r.body.empty());
}

TEST_F(StaticRangesTest, InvalidIsAFullAnswer) {
  const StaticResponse r = get("/a.txt", "bytes=5-2");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.content_length, 1000);
}

TEST_F(StaticRangesTest, ConditionalsComeFirst) {
  const std::string etag(get("/a.txt", {}).etag.view());
  const StaticResponse r = get("/a.txt", "bytes=0-4", {}, "GET", etag);
  EXPECT_EQ(r.status, 304);
  EXPECT_TRUE(r.content_range.empty());
}

TEST_F(StaticRangesTest, IfRange) {
  const StaticResponse full = get("/a.txt", {});
  const std::string etag(full.etag.view());
  const std::string lm(full.last_modified.view());
  EXPECT_EQ(get("/a.txt", "bytes=0-4", etag).status, 206);
  EXPECT_EQ(get("/a.txt", "bytes=0-4", lm).status, 206);
  EXPECT_EQ(get("/a.txt", "bytes=0-4", "\"other\"").status, 200);
  EXPECT_EQ(get("/a.txt", "bytes=0-4", "W/" + etag).status, 200);
  EXPECT_EQ(get("/a.txt", "bytes=0-4", "Thu, 01 Jan 1970 00:00:00 GMT").status, 200);
  // A failed If-Range also turns an unsatisfiable range into the full answer.
  EXPECT_EQ(get("/a.txt", "bytes=5000-", "\"other\"").status, 200);
}

TEST_F(StaticRangesTest, MultipartLayoutIsNginxs) {
  const StaticResponse r = get("/a.txt", "bytes=0-4,10-12");
  ASSERT_EQ(r.status, 206);
  ASSERT_TRUE(r.content_type.starts_with("multipart/byteranges; boundary="));
  const std::string b(r.content_type.substr(r.content_type.find('=') + 1));
  EXPECT_EQ(b.size(), 16u);
  EXPECT_TRUE(r.content_range.empty());
  const std::string want = "\r\n--" + b +
                           "\r\nContent-Type: text/plain; charset=utf-8\r\n"
                           "Content-Range: bytes 0-4/1000\r\n\r\n01234\r\n--" +
                           b +
                           "\r\nContent-Type: text/plain; charset=utf-8\r\n"
                           "Content-Range: bytes 10-12/1000\r\n\r\n012\r\n--" +
                           b + "--\r\n";
  EXPECT_EQ(bodyOf(r), want);
  EXPECT_EQ(r.content_length, static_cast<int64_t>(want.size()));
  // A fresh boundary per answer.
  const StaticResponse r2 = get("/a.txt", "bytes=0-4,10-12");
  EXPECT_NE(r2.content_type, std::string("multipart/byteranges; boundary=") + b);
}

TEST_F(StaticRangesTest, MultipartFromAFileNotInMemory) {
  const StaticResponse r = get("/big.bin", "bytes=-3,0-2,150000-150099");
  ASSERT_EQ(r.status, 206);
  ASSERT_TRUE(r.file);
  ASSERT_TRUE(r.file->memory().empty());
  const std::string body = bodyOf(r);
  EXPECT_EQ(static_cast<int64_t>(body.size()), r.content_length);
  EXPECT_NE(body.find("Content-Range: bytes 199997-199999/200000\r\n\r\n" + big_.substr(199997)),
            std::string::npos);
  EXPECT_NE(body.find("Content-Range: bytes 150000-150099/200000\r\n\r\n" +
                      big_.substr(150000, 100) + "\r\n--"),
            std::string::npos);
  // Part headers only in memory: the text is small whatever the ranges cover.
  EXPECT_LT(r.parts_text.size(), 400u);
}

TEST_F(StaticRangesTest, OneSatisfiableOfSeveralIsASinglePart) {
  const StaticResponse r = get("/a.txt", "bytes=0-4,2000-3000");
  EXPECT_EQ(r.status, 206);
  EXPECT_EQ(r.content_range.view(), "bytes 0-4/1000");
  EXPECT_TRUE(r.pieces.empty());
}

TEST_F(StaticRangesTest, TooManyRangesIsAFullAnswer) {
  std::string v = "bytes=0-0";
  for (int i = 1; i < 1000; ++i)
    v += "," + std::to_string(i * 10) + "-" + std::to_string(i * 10);
  const StaticResponse r = get("/big.bin", v);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.content_length, 200000);
  EXPECT_TRUE(r.pieces.empty());
}

TEST_F(StaticRangesTest, OptionsTurnRangesOff) {
  files_.reset();
  StaticFilesOptions o;
  o.ranges = false;
  files_.emplace(dir_, FileCacheConfig{}, o);
  const StaticResponse r = get("/a.txt", "bytes=0-4");
  EXPECT_EQ(r.status, 200);
  EXPECT_FALSE(r.accept_ranges);
}

TEST(AcceptEncoding, Quality) {
  EXPECT_EQ(codingQuality("gzip, deflate, br", "br"), 1000);
  EXPECT_EQ(codingQuality("gzip, deflate, br", "gzip"), 1000);
  EXPECT_EQ(codingQuality("gzip;q=0", "gzip"), 0);
  EXPECT_EQ(codingQuality("gzip; q=0.000", "gzip"), 0);
  EXPECT_EQ(codingQuality("GZIP;Q=0.5", "gzip"), 500);
  EXPECT_EQ(codingQuality("x-gzip", "gzip"), 1000);
  EXPECT_EQ(codingQuality("br;q=0.25, *;q=0.5", "br"), 250);  // own entry beats "*"
  EXPECT_EQ(codingQuality("*;q=0.5", "gzip"), 500);
  EXPECT_EQ(codingQuality("*", "br"), 1000);
  EXPECT_EQ(codingQuality("identity", "gzip"), 0);
  EXPECT_EQ(codingQuality("", "gzip"), 0);
  EXPECT_EQ(codingQuality("gzipx, xgzip", "gzip"), 0);
  for (const char* bad : {"gzip;q=2", "gzip;q=1.5", "gzip;q=abc", "gzip;q=0.0001", "gzip;x=1",
                          "gzip;q=", "gzip;q=-1"}) {
    EXPECT_EQ(codingQuality(bad, "gzip"), 0) << bad;
  }
}

class PrecompressedTest : public StaticRangesTest {
 protected:
  void SetUp() override {
    StaticRangesTest::SetUp();
    std::ofstream(dir_ / "a.txt.gz", std::ios::binary) << "GZIPPED";
    std::ofstream(dir_ / "a.txt.br", std::ios::binary) << "BROTLI!!";
    std::ofstream(dir_ / "big.bin.gz", std::ios::binary) << "GZ";
    fs::create_directories(dir_ / "d");
    std::ofstream(dir_ / "d" / "index.html", std::ios::binary) << "<p>index</p>";
    std::ofstream(dir_ / "d" / "index.html.gz", std::ios::binary) << "GZINDEX";
    fs::create_directories(dir_ / "big.bin.br");  // a directory is no variant
  }
  StaticResponse ae(std::string_view path, std::string_view accept, std::string_view range = {},
                    std::string_view inm = {}) {
    StaticRequest r;
    r.method = "GET";
    r.path = path;
    r.accept_encoding = accept;
    r.range = range;
    r.if_none_match = inm;
    return files_->handle(r, 0);
  }
};

TEST_F(PrecompressedTest, PicksTheVariantTheClientTakes) {
  StaticResponse r = ae("/a.txt", "gzip, deflate, br");
  EXPECT_EQ(r.content_encoding, "br");
  EXPECT_EQ(r.content_length, 8);
  EXPECT_EQ(r.content_type, "text/plain; charset=utf-8");  // the original's
  EXPECT_TRUE(r.vary);
  EXPECT_EQ(bodyOf(r), "BROTLI!!");
  const std::string br_etag(r.etag.view());

  r = ae("/a.txt", "gzip, br;q=0.5");
  EXPECT_EQ(r.content_encoding, "gzip");
  EXPECT_EQ(bodyOf(r), "GZIPPED");
  const std::string gz_etag(r.etag.view());

  r = ae("/a.txt", "br;q=0, gzip;q=0");
  EXPECT_TRUE(r.content_encoding.empty());
  EXPECT_TRUE(r.vary);  // the answer still depends on Accept-Encoding
  EXPECT_EQ(r.content_length, 1000);
  const std::string plain_etag(r.etag.view());
  EXPECT_TRUE(ae("/a.txt", {}).content_encoding.empty());

  EXPECT_NE(br_etag, gz_etag);
  EXPECT_NE(br_etag, plain_etag);
  EXPECT_NE(gz_etag, plain_etag);
  EXPECT_TRUE(gz_etag.ends_with("-gz\""));
  // Each representation revalidates against its own etag.
  EXPECT_EQ(ae("/a.txt", "gzip", {}, gz_etag).status, 304);
  EXPECT_EQ(ae("/a.txt", "gzip", {}, gz_etag).vary, true);
  EXPECT_EQ(ae("/a.txt", "identity", {}, gz_etag).status, 200);
}

TEST_F(PrecompressedTest, NoVariantNoVary) {
  std::ofstream(dir_ / "plain.txt", std::ios::binary) << "plain";
  const StaticResponse r = ae("/plain.txt", "gzip, br");
  EXPECT_TRUE(r.content_encoding.empty());
  EXPECT_FALSE(r.vary);
  // big.bin.br is a directory: only the .gz counts.
  EXPECT_EQ(ae("/big.bin", "br, gzip").content_encoding, "gzip");
  EXPECT_EQ(ae("/big.bin", "br").content_encoding, "");
}

TEST_F(PrecompressedTest, DirectoryIndexVariant) {
  const StaticResponse r = ae("/d/", "gzip");
  EXPECT_EQ(r.content_encoding, "gzip");
  EXPECT_EQ(r.content_type, "text/html; charset=utf-8");
  EXPECT_EQ(bodyOf(r), "GZINDEX");
}

TEST_F(PrecompressedTest, RangesCountCompressedBytes) {
  const StaticResponse r = ae("/a.txt", "gzip", "bytes=1-3");
  EXPECT_EQ(r.status, 206);
  EXPECT_EQ(r.content_encoding, "gzip");
  EXPECT_EQ(r.content_range.view(), "bytes 1-3/7");
  EXPECT_EQ(bodyOf(r), "ZIP");
  const StaticResponse u = ae("/a.txt", "gzip", "bytes=7-");
  EXPECT_EQ(u.status, 416);
  EXPECT_EQ(u.content_range.view(), "bytes */7");
}

TEST_F(PrecompressedTest, HitsCostNoOpenAndVariantsFollowChanges) {
  (void)ae("/a.txt", "gzip");
  const FileCacheStats before = files_->cacheStats();
  for (int i = 0; i < 10; ++i)
    (void)ae("/a.txt", "gzip");
  const FileCacheStats after = files_->cacheStats();
  EXPECT_EQ(after.misses, before.misses);
  EXPECT_EQ(after.hits, before.hits + 10);
  // The cache's variants are revalidated with the file (TTL 1 s on this clock).
  fs::remove(dir_ / "a.txt.br");
  StaticRequest r;
  r.method = "GET";
  r.path = "/a.txt";
  r.accept_encoding = "br";
  EXPECT_EQ(files_->handle(r, 0).content_encoding, "br");  // still fresh
  EXPECT_EQ(files_->handle(r, 5000).content_encoding, "");
}

TEST_F(PrecompressedTest, OptionTurnsThemOff) {
  files_.reset();
  StaticFilesOptions o;
  o.precompressed = false;
  files_.emplace(dir_, FileCacheConfig{}, o);
  const StaticResponse r = ae("/a.txt", "gzip, br");
  EXPECT_TRUE(r.content_encoding.empty());
  EXPECT_FALSE(r.vary);
}

}  // namespace
}  // namespace h2loop::server
