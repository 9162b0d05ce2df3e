#include "server/file_cache.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>

#include <gtest/gtest.h>

namespace h2loop::server {
namespace {

namespace fs = std::filesystem;

void writeFile(const fs::path& p, const std::string& content) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out << content;
}

void setMtime(const fs::path& p, time_t sec, long nsec = 0) {
  const struct timespec ts[2] = {{sec, nsec}, {sec, nsec}};
  ASSERT_EQ(::utimensat(AT_FDCWD, p.c_str(), ts, 0), 0) << p;
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

class FileCacheTest : public ::testing::TestWithParam<PathResolver> {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/h2loop_file_cache_XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    root_ = dir_ / "root";
    fs::create_directories(root_ / "sub");
    writeFile(root_ / "a.txt", "aaa");
    writeFile(root_ / "b.txt", "bbbb");
    writeFile(root_ / "c.txt", "ccccc");
    writeFile(root_ / "sub" / "index.html", "<p>sub</p>");
    writeFile(dir_ / "outside.txt", "secret");
    setMtime(root_ / "a.txt", 1000000000);
    if (GetParam() == PathResolver::kOpenat2) {
      try {
        FileCache probe(root_, config());
      } catch (const std::runtime_error& e) {
        GTEST_SKIP() << e.what();
      }
    }
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  FileCacheConfig config(std::size_t max_entries = 256, int64_t ttl_ms = 1000) const {
    FileCacheConfig cfg;
    cfg.max_entries = max_entries;
    cfg.ttl_ms = ttl_ms;
    cfg.resolver = GetParam();
    return cfg;
  }

  fs::path dir_;
  fs::path root_;
};

TEST_P(FileCacheTest, MissThenHitSharesOneFile) {
  FileCache cache(root_, config());
  AcquireResult first = cache.acquire("a.txt", 0);
  ASSERT_EQ(first.status, OpenStatus::kOk);
  AcquireResult second = cache.acquire("a.txt", 10);
  ASSERT_EQ(second.status, OpenStatus::kOk);
  EXPECT_EQ(first.file.get(), second.file.get());
  EXPECT_EQ(first.file->refCount(), 3);  // cache + two responses
  EXPECT_EQ(readAll(first.file->fd()), "aaa");
  EXPECT_EQ(first.file->size(), 3);
  EXPECT_EQ(first.file->contentType(), "text/plain; charset=utf-8");
  EXPECT_EQ(first.file->lastModified(), "Sun, 09 Sep 2001 01:46:40 GMT");
  EXPECT_EQ(first.file->etag(), "\"3-de0b6b3a7640000\"");

  const FileCacheStats s = cache.stats();
  EXPECT_EQ(s.entries, 1u);
  EXPECT_EQ(s.open_files, 1);
  EXPECT_EQ(s.misses, 1u);
  EXPECT_EQ(s.hits, 1u);
  EXPECT_EQ(s.revalidations, 0u);
}

TEST_P(FileCacheTest, SmallFilesAreHeldInMemoryLargeOnesAreNot) {
  const std::string small(CachedFile::kMaxInlineContent, 's');
  const std::string large(CachedFile::kMaxInlineContent + 1, 'l');
  writeFile(root_ / "small.bin", small);
  writeFile(root_ / "large.bin", large);
  FileCache cache(root_, config());
  AcquireResult s = cache.acquire("small.bin", 0);
  AcquireResult l = cache.acquire("large.bin", 0);
  ASSERT_EQ(s.status, OpenStatus::kOk);
  ASSERT_EQ(l.status, OpenStatus::kOk);
  ASSERT_NE(s.file->content(), nullptr);
  EXPECT_TRUE(*s.file->content() == small);
  EXPECT_EQ(l.file->content(), nullptr);  // served through the fd
  EXPECT_EQ(l.file->size(), static_cast<int64_t>(large.size()));
  AcquireResult a = cache.acquire("a.txt", 0);
  ASSERT_NE(a.file->content(), nullptr);
  EXPECT_EQ(*a.file->content(), "aaa");
}

TEST_P(FileCacheTest, ErrorsAreNotCached) {
  FileCache cache(root_, config());
  EXPECT_EQ(cache.acquire("missing.txt", 0).status, OpenStatus::kNotFound);
  EXPECT_EQ(cache.acquire("a.txt/", 0).status, OpenStatus::kNotFound);  // ENOTDIR
  EXPECT_EQ(cache.acquire("../outside.txt", 0).status, OpenStatus::kForbidden);
  EXPECT_EQ(cache.acquire("/etc/passwd", 0).status, OpenStatus::kForbidden);
  const FileCacheStats s = cache.stats();
  EXPECT_EQ(s.entries, 0u);
  EXPECT_EQ(s.open_files, 0);
  EXPECT_EQ(s.misses, 4u);
}

TEST_P(FileCacheTest, DirectoryServesIndex) {
  FileCache cache(root_, config());
  AcquireResult r = cache.acquire("sub", 0);
  ASSERT_EQ(r.status, OpenStatus::kOk);
  EXPECT_EQ(readAll(r.file->fd()), "<p>sub</p>");
  EXPECT_EQ(r.file->contentType(), "text/html; charset=utf-8");
  EXPECT_EQ(cache.acquire("sub/", 0).status, OpenStatus::kOk);
  EXPECT_EQ(cache.acquire("", 0).status, OpenStatus::kForbidden);  // root has no index
}

TEST_P(FileCacheTest, UnchangedFileRevalidatesAfterTtl) {
  FileCache cache(root_, config(256, 1000));
  AcquireResult first = cache.acquire("a.txt", 5000);
  AcquireResult fresh = cache.acquire("a.txt", 5999);
  EXPECT_EQ(cache.stats().revalidations, 0u);
  AcquireResult later = cache.acquire("a.txt", 6000);
  ASSERT_EQ(later.status, OpenStatus::kOk);
  EXPECT_EQ(later.file.get(), first.file.get());
  EXPECT_EQ(later.file->fd(), first.file->fd());
  const FileCacheStats s = cache.stats();
  EXPECT_EQ(s.revalidations, 1u);
  EXPECT_EQ(s.hits, 2u);
  EXPECT_EQ(s.misses, 1u);
  EXPECT_EQ(s.open_files, 1);  // the probe fd was closed
}

TEST_P(FileCacheTest, ChangedMtimeIsSeenOnlyAfterTtl) {
  FileCache cache(root_, config(256, 1000));
  AcquireResult old_ref = cache.acquire("a.txt", 0);
  ASSERT_EQ(old_ref.status, OpenStatus::kOk);
  const std::string old_etag(old_ref.file->etag());
  const int old_fd = old_ref.file->fd();

  setMtime(root_ / "a.txt", 784111777);
  {
    AcquireResult within = cache.acquire("a.txt", 999);
    EXPECT_EQ(within.file.get(), old_ref.file.get());  // stale for up to the TTL, by design
  }
  AcquireResult after = cache.acquire("a.txt", 1000);
  ASSERT_EQ(after.status, OpenStatus::kOk);
  EXPECT_NE(after.file.get(), old_ref.file.get());
  EXPECT_NE(after.file->etag(), old_etag);
  EXPECT_EQ(after.file->lastModified(), "Sun, 06 Nov 1994 08:49:37 GMT");
  EXPECT_EQ(after.file->mtimeSeconds(), 784111777);

  // The old file stays open for the response that still holds it.
  EXPECT_EQ(cache.stats().open_files, 2);
  EXPECT_TRUE(fdIsOpen(old_fd));
  EXPECT_EQ(old_ref.file->refCount(), 1);
  old_ref.file.reset();
  EXPECT_FALSE(fdIsOpen(old_fd));
  EXPECT_EQ(cache.stats().open_files, 1);
  EXPECT_EQ(cache.stats().entries, 1u);
}

TEST_P(FileCacheTest, RenamedOverFileIsReopened) {
  FileCache cache(root_, config(256, 1000));
  AcquireResult old_ref = cache.acquire("b.txt", 0);
  ASSERT_EQ(old_ref.status, OpenStatus::kOk);
  writeFile(root_ / "b.new", "replacement");
  fs::rename(root_ / "b.new", root_ / "b.txt");

  AcquireResult after = cache.acquire("b.txt", 1500);
  ASSERT_EQ(after.status, OpenStatus::kOk);
  EXPECT_NE(after.file->inode(), old_ref.file->inode());
  EXPECT_EQ(readAll(after.file->fd()), "replacement");
  EXPECT_EQ(readAll(old_ref.file->fd()), "bbbb");  // in-flight response keeps old content
  EXPECT_EQ(after.file->size(), 11);
}

TEST_P(FileCacheTest, DeletedFileIsDroppedAfterTtl) {
  FileCache cache(root_, config(256, 1000));
  AcquireResult held = cache.acquire("c.txt", 0);
  ASSERT_EQ(held.status, OpenStatus::kOk);
  fs::remove(root_ / "c.txt");
  EXPECT_EQ(cache.acquire("c.txt", 10).status, OpenStatus::kOk);  // within TTL
  EXPECT_EQ(cache.acquire("c.txt", 1010).status, OpenStatus::kNotFound);
  EXPECT_EQ(cache.stats().entries, 0u);
  EXPECT_EQ(cache.stats().open_files, 1);  // `held`
  EXPECT_EQ(readAll(held.file->fd()), "ccccc");
  held.file.reset();
  EXPECT_EQ(cache.stats().open_files, 0);
}

TEST_P(FileCacheTest, ZeroTtlRevalidatesEveryTime) {
  FileCache cache(root_, config(256, 0));
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(cache.acquire("a.txt", 0).status, OpenStatus::kOk);
  }
  const FileCacheStats s = cache.stats();
  EXPECT_EQ(s.misses, 1u);
  EXPECT_EQ(s.revalidations, 2u);
  EXPECT_EQ(s.hits, 2u);
  EXPECT_EQ(s.open_files, 1);
}

TEST_P(FileCacheTest, LruEvictionKeepsRecentlyUsed) {
  FileCache cache(root_, config(2));
  (void)cache.acquire("a.txt", 0);
  (void)cache.acquire("b.txt", 0);
  (void)cache.acquire("a.txt", 0);  // a is now most recent
  (void)cache.acquire("c.txt", 0);  // evicts b
  FileCacheStats s = cache.stats();
  EXPECT_EQ(s.entries, 2u);
  EXPECT_EQ(s.evictions, 1u);
  EXPECT_EQ(s.open_files, 2);  // nobody held b: its fd is closed

  const uint64_t misses = s.misses;
  (void)cache.acquire("a.txt", 0);
  EXPECT_EQ(cache.stats().misses, misses);  // a still cached
  (void)cache.acquire("b.txt", 0);
  EXPECT_EQ(cache.stats().misses, misses + 1);  // b was evicted
}

TEST_P(FileCacheTest, EvictedFileStaysOpenUntilReleased) {
  FileCache cache(root_, config(1));
  AcquireResult a = cache.acquire("a.txt", 0);
  ASSERT_EQ(a.status, OpenStatus::kOk);
  const int fd = a.file->fd();
  (void)cache.acquire("b.txt", 0);  // evicts a while "a response" holds it
  EXPECT_EQ(cache.stats().evictions, 1u);
  EXPECT_EQ(a.file->refCount(), 1);
  EXPECT_TRUE(fdIsOpen(fd));
  EXPECT_EQ(readAll(fd), "aaa");
  EXPECT_EQ(cache.stats().open_files, 2);

  // Hand it on through the h2 interface, as a stream would.
  h2::FileHandle* handle = a.file.detach();
  handle->addRef();
  handle->release();
  EXPECT_TRUE(fdIsOpen(fd));
  handle->release();  // last reference: the fd closes now, not at some later point
  EXPECT_FALSE(fdIsOpen(fd));
  EXPECT_EQ(cache.stats().open_files, 1);
}

TEST_P(FileCacheTest, ClearThenReleaseReturnsCountersToZero) {
  FileCache cache(root_, config());
  AcquireResult a = cache.acquire("a.txt", 0);
  AcquireResult b = cache.acquire("b.txt", 0);
  (void)cache.acquire("c.txt", 0);
  (void)cache.acquire("sub", 0);
  EXPECT_EQ(cache.stats().entries, 4u);
  EXPECT_EQ(cache.stats().open_files, 4);

  const int fd_a = a.file->fd();
  cache.clear();
  EXPECT_EQ(cache.stats().entries, 0u);
  EXPECT_EQ(cache.stats().open_files, 2);  // a and b still held
  EXPECT_TRUE(fdIsOpen(fd_a));
  a.file.reset();
  b.file.reset();
  EXPECT_FALSE(fdIsOpen(fd_a));
  EXPECT_EQ(cache.stats().entries, 0u);
  EXPECT_EQ(cache.stats().open_files, 0);
}

TEST_P(FileCacheTest, NoCachingWhenMaxEntriesIsZero) {
  FileCache cache(root_, config(0));
  AcquireResult a = cache.acquire("a.txt", 0);
  AcquireResult b = cache.acquire("a.txt", 0);
  ASSERT_EQ(a.status, OpenStatus::kOk);
  EXPECT_NE(a.file.get(), b.file.get());
  EXPECT_EQ(a.file->refCount(), 1);
  EXPECT_EQ(cache.stats().entries, 0u);
  EXPECT_EQ(cache.stats().open_files, 2);
  a.file.reset();
  b.file.reset();
  EXPECT_EQ(cache.stats().open_files, 0);
}

TEST_P(FileCacheTest, FileOutlivesCache) {
  int fd = -1;
  CachedFileRef held;
  {
    FileCache cache(root_, config());
    AcquireResult a = cache.acquire("a.txt", 0);
    fd = a.file->fd();
    held = std::move(a.file);
  }  // cache destroyed: its reference dropped, ours keeps the file open
  EXPECT_TRUE(fdIsOpen(fd));
  EXPECT_EQ(readAll(held->fd()), "aaa");
  held.reset();
  EXPECT_FALSE(fdIsOpen(fd));
}

TEST_P(FileCacheTest, MissingRootThrows) {
  EXPECT_THROW(FileCache(dir_ / "nope", config()), std::runtime_error);
  EXPECT_THROW(FileCache(root_ / "a.txt", config()), std::runtime_error);  // not a directory
}

std::string resolverName(const ::testing::TestParamInfo<PathResolver>& info) {
  return info.param == PathResolver::kOpenat2 ? "openat2" : "procfd";
}

INSTANTIATE_TEST_SUITE_P(Resolvers, FileCacheTest,
                         ::testing::Values(PathResolver::kOpenat2, PathResolver::kProcFdCheck),
                         resolverName);

}  // namespace
}  // namespace h2loop::server
