#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <list>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>

#include "h2/file_handle.h"
#include "server/compress.h"
#include "server/http_date.h"

namespace h2loop::server {

// Fixed-capacity string stored inline (no heap). assign() truncates to N; callers only
// store values whose maximum length is known (an etag, an HTTP date).
template <std::size_t N>
class InlineString {
 public:
  void assign(std::string_view s) noexcept {
    len_ = std::min(s.size(), N);
    std::memcpy(buf_, s.data(), len_);
  }
  [[nodiscard]] std::string_view view() const noexcept { return {buf_, len_}; }
  [[nodiscard]] bool empty() const noexcept { return len_ == 0; }

 private:
  char buf_[N] = {};
  std::size_t len_ = 0;
};

// `"<hex size>-<hex mtime ns>"`: 2 quotes + 16 + 1 + 16; a precompressed variant's has
// its coding appended (`-gz`, `-br`), so that it never equals the plain file's.
inline constexpr std::size_t kMaxEtagLen = 38;

// How paths are confined to the document root.
enum class PathResolver {
  // openat2 if the kernel has it, else kProcFdCheck (logged once at construction).
  kAuto,
  // openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS): the kernel refuses any resolution
  // that leaves the root, including via symlinks, and refuses *absolute* symlinks even
  // when they point inside the root. Construction throws if unavailable.
  kOpenat2,
  // openat() following symlinks, then the opened fd's path (/proc/self/fd/N) must lie
  // under realpath(root). Checks the object actually opened, so there is no TOCTOU on the
  // result; but the open itself may touch an object outside the root (e.g. open a device)
  // before being refused, and absolute symlinks inside the root are allowed. Fails closed
  // (403) if /proc is not mounted. For kernels < 5.6 and tests.
  kProcFdCheck,
};

struct FileCacheConfig {
  // An entry younger than this is served without touching the file system. Older entries
  // are revalidated by re-resolving the path; 0 revalidates on every request (the fd is
  // still reused when the file is unchanged). Same clock as acquire()'s now_ms.
  int64_t ttl_ms = 1000;
  // Bound on cached entries (and so on fds the cache keeps open on its own). Least
  // recently used entries are evicted. 0 disables caching: every acquire() opens.
  std::size_t max_entries = 256;
  PathResolver resolver = PathResolver::kAuto;
  // Also look for `<file>.gz` and `<file>.br` next to every file opened (same confinement
  // and regular-file rules), cached with it: found or absent, a cache hit costs no system
  // call for them. Costs two failed opens per miss or revalidation of a file without.
  bool variants = false;
  // Bytes of on-the-fly compressed bodies (keepCompressed()) the cache may hold, over all
  // its entries; above it, those of the least recently used entries are dropped. Bodies
  // still held by responses are not counted here (they go when those responses end).
  std::size_t compressed_budget = 0;
};

// Live counters. entries and open_files return to zero after clear() once every
// reference handed out has been released; the others are cumulative.
struct FileCacheStats {
  std::size_t entries = 0;       // paths currently cached
  int64_t open_files = 0;        // CachedFile objects alive = fds held (cached, evicted-but-in-use,
                                 // or uncached)
  uint64_t hits = 0;             // served from an entry without opening (fresh or revalidated)
  uint64_t misses = 0;           // opened: not cached, changed on revalidation, or failed
  uint64_t revalidations = 0;    // TTL expiries that re-resolved the path
  uint64_t evictions = 0;        // entries dropped to respect max_entries
  int64_t compressed_bytes = 0;  // compressed bodies held by entries (<= the budget)
  int64_t compressed_live_bytes = 0;  // compressed bodies alive: held by entries or responses
  uint64_t compressed_evictions = 0;  // bodies dropped to respect compressed_budget
};

namespace detail {
struct LiveCounter {
  int64_t open_files = 0;
};
}  // namespace detail

// An open regular file plus the metadata responses need, immutable after creation.
//
// Reference counting is intrusive and NOT atomic: every addRef()/release() must happen on
// the thread that owns the FileCache that created it (h2::FileHandle requires the loop
// thread). The cache holds one reference while the entry is cached; each acquire() hands
// out one more. The last release() closes the fd and deletes the object, whether or not
// the cache still exists: a file evicted (or whose cache was destroyed) while a stream is
// sending it stays open until that stream releases it.
//
// Hazard: one fd is shared by every holder. Read it only with positional I/O (pread,
// preadv, sendfile with an offset pointer); read() or lseek() would move the offset under
// every other stream serving the same file. Never close it yourself.
class CachedFile final : public h2::FileHandle {
 public:
  CachedFile(const CachedFile&) = delete;
  CachedFile& operator=(const CachedFile&) = delete;

  [[nodiscard]] int fd() const override { return fd_; }
  [[nodiscard]] std::string_view memory() const override {
    return has_content_ ? std::string_view(content_) : std::string_view{};
  }
  void addRef() override { ++refs_; }
  void release() override;

  [[nodiscard]] int64_t size() const noexcept { return size_; }
  [[nodiscard]] int64_t mtimeSeconds() const noexcept { return mtime_sec_; }
  [[nodiscard]] int64_t mtimeNanos() const noexcept { return mtime_nsec_; }
  [[nodiscard]] dev_t device() const noexcept { return dev_; }
  [[nodiscard]] ino_t inode() const noexcept { return ino_; }
  // Views into this object: valid while the caller holds a reference.
  [[nodiscard]] std::string_view etag() const noexcept { return etag_.view(); }
  [[nodiscard]] std::string_view lastModified() const noexcept {
    return {last_modified_, kHttpDateLen};
  }
  // Static storage; chosen from the name of the file actually opened (a directory's
  // index.html is text/html).
  [[nodiscard]] std::string_view contentType() const noexcept { return content_type_; }
  [[nodiscard]] int refCount() const noexcept { return refs_; }
  // Content-Encoding of a precompressed variant ("gzip", "br"); empty for a plain file.
  [[nodiscard]] std::string_view contentEncoding() const noexcept { return encoding_; }
  // Files of at most kMaxInlineContent bytes are read once when opened and
  // served from memory (no pread per request); the bytes match size() and
  // etag() of this entry. nullptr when not held in memory.
  static constexpr int64_t kMaxInlineContent = 16 * 1024;
  [[nodiscard]] const std::string* content() const noexcept {
    return has_content_ ? &content_ : nullptr;
  }

 private:
  friend class FileCache;
  // Takes ownership of `fd`; starts with one reference (the creator's).
  // `encoding`: static storage; non-empty for a precompressed variant (etag suffixed).
  CachedFile(int fd, const struct stat& st, std::string_view content_type,
             std::shared_ptr<detail::LiveCounter> live, std::string_view encoding = {});
  ~CachedFile() override;

  int fd_;
  int refs_ = 1;
  int64_t size_;
  int64_t mtime_sec_;
  int64_t mtime_nsec_;
  dev_t dev_;
  ino_t ino_;
  std::string_view content_type_;
  std::string_view encoding_;
  std::string content_;
  bool has_content_ = false;
  InlineString<kMaxEtagLen> etag_;
  char last_modified_[kHttpDateLen];
  // Outlives the cache if needed, so a late release() can still decrement the counter.
  std::shared_ptr<detail::LiveCounter> live_;
};

// Owns exactly one reference to a CachedFile (or nothing). Move-only.
class CachedFileRef {
 public:
  CachedFileRef() = default;
  // Takes over one reference the caller already owns.
  static CachedFileRef adopt(CachedFile* f) noexcept {
    CachedFileRef r;
    r.f_ = f;
    return r;
  }
  CachedFileRef(CachedFileRef&& o) noexcept : f_(o.f_) { o.f_ = nullptr; }
  CachedFileRef& operator=(CachedFileRef&& o) noexcept {
    if (this != &o) {
      reset();
      f_ = o.f_;
      o.f_ = nullptr;
    }
    return *this;
  }
  CachedFileRef(const CachedFileRef&) = delete;
  CachedFileRef& operator=(const CachedFileRef&) = delete;
  ~CachedFileRef() { reset(); }

  [[nodiscard]] CachedFile* get() const noexcept { return f_; }
  CachedFile* operator->() const noexcept { return f_; }
  CachedFile& operator*() const noexcept { return *f_; }
  explicit operator bool() const noexcept { return f_ != nullptr; }

  // Hands the reference to the caller, who must release() it. This object is empty
  // afterwards. (A response body does not want this: Session::submitResponse takes its
  // own reference from get().)
  [[nodiscard]] CachedFile* detach() noexcept {
    CachedFile* f = f_;
    f_ = nullptr;
    return f;
  }
  void reset() noexcept {
    if (f_ != nullptr) std::exchange(f_, nullptr)->release();
  }

 private:
  CachedFile* f_ = nullptr;
};

enum class OpenStatus {
  kOk,
  kNotFound,     // ENOENT, ENOTDIR (e.g. "file.txt/"), ENAMETOOLONG
  kForbidden,    // EACCES/EPERM; escapes the root (symlink out, absolute symlink under
                 // openat2); symlink loops; directory without index.html; not a regular file
  kUnavailable,  // EMFILE/ENFILE/ENOMEM: transient resource exhaustion
  kError,        // anything else
};

struct AcquireResult {
  OpenStatus status = OpenStatus::kError;
  CachedFileRef file;  // set iff status == kOk
  // With FileCacheConfig::variants: the file's precompressed variants that exist, by
  // Coding (content type that of `file`, etag distinct).
  CachedFileRef variants[kCodings];
  // On-the-fly compressed bodies of `file` (this version) kept by keepCompressed(), by Coding.
  FileHandleRef compressed[kCodings];
};

// Per-worker cache of open files under one document root, keyed by the normalized
// relative path the client asked for.
//
// NOT thread-safe: one FileCache per worker thread, used only from that thread, and the
// CachedFiles it hands out are released on that thread too.
//
// Path contract for acquire(): a relative path as produced by normalizeRequestPath() —
// no leading '/', no empty, "." or ".." segments; "" is the root; a trailing '/' is kept
// (a regular file with a trailing '/' is then ENOTDIR → kNotFound). Confinement does not
// rely on this: the resolver refuses anything that would leave the root.
//
// A directory is served as its index.html (with or without a trailing '/'); a directory
// without one is kForbidden. The file is opened O_RDONLY|O_CLOEXEC|O_NONBLOCK|O_NOCTTY
// (O_NONBLOCK so a FIFO cannot block the loop; it has no effect on regular files).
class FileCache {
 public:
  // Opens `root` (O_PATH|O_DIRECTORY) once. Throws std::runtime_error if it is missing or
  // not a directory, or if resolver == kOpenat2 and the kernel lacks openat2.
  FileCache(const std::filesystem::path& root, FileCacheConfig cfg);
  ~FileCache();
  FileCache(const FileCache&) = delete;
  FileCache& operator=(const FileCache&) = delete;

  // Never throws except std::bad_alloc. On a hit: no allocation, no system call.
  [[nodiscard]] AcquireResult acquire(std::string_view rel_path, int64_t now_ms);

  // Keeps `body` (the compressed bytes of `file` in `coding`) with the entry of `rel_path`,
  // if that entry still holds `file` (the same version) and the body fits the budget;
  // later acquire()s of the path hand it out until the file changes or the entry (or the
  // body, to respect compressed_budget: least recently used entries first) is dropped.
  // Takes a reference of its own; the caller keeps its one. True if kept.
  bool keepCompressed(std::string_view rel_path, const CachedFile* file, Coding coding,
                      CompressedBody* body);
  // A new body (one reference, the caller's) counted in this cache's compressed stats.
  [[nodiscard]] CompressedBody* newCompressed(std::string bytes) {
    return new CompressedBody(std::move(bytes), compressed_live_);
  }

  // Drops the cache's references (shutdown, tests). Files still referenced elsewhere stay
  // open until released.
  void clear() noexcept;

  [[nodiscard]] FileCacheStats stats() const noexcept;
  [[nodiscard]] PathResolver resolver() const noexcept {
    return use_openat2_ ? PathResolver::kOpenat2 : PathResolver::kProcFdCheck;
  }

 private:
  struct Entry {
    std::string key;   // the index below holds views of this string; never mutated
    CachedFile* file;  // the cache's own reference
    int64_t validated_ms;
    CachedFile* variants[kCodings] = {};  // the cache's references; nullptr: none
    // On-the-fly compressed bodies of `file`; dropped whenever `file` is replaced.
    CompressedBody* compressed[kCodings] = {};
  };
  using Lru = std::list<Entry>;  // front = most recently used

  struct Opened {
    OpenStatus status = OpenStatus::kError;
    int fd = -1;  // owned by the caller when status == kOk
    struct stat st {};
    std::string_view content_type;
  };

  // Resolves and opens `rel_path`, following a directory to its index.html.
  [[nodiscard]] Opened open(std::string_view rel_path);
  // After a successful open(): (re)opens the variants of the file it opened (path_buf_)
  // into `v`, keeping those unchanged, releasing those gone or changed.
  void probeVariants(CachedFile* (&v)[kCodings], std::string_view content_type);
  // Opens `path_buf_` confined to the root; returns the fd or -errno.
  [[nodiscard]] int openBeneath() const;
  void erase(Lru::iterator it) noexcept;
  // Releases the entry's compressed bodies.
  void dropCompressed(Entry& e) noexcept;

  FileCacheConfig cfg_;
  int root_fd_ = -1;
  bool use_openat2_ = true;
  std::string root_prefix_;  // realpath(root) + '/', for kProcFdCheck
  std::string path_buf_;     // NUL-terminated scratch for open(); capacity is reused
  Lru lru_;
  std::unordered_map<std::string_view, Lru::iterator> index_;
  std::shared_ptr<detail::LiveCounter> live_;
  std::shared_ptr<detail::CompressedLive> compressed_live_;
  int64_t compressed_held_ = 0;  // bytes of the entries' compressed bodies
  FileCacheStats stats_;
};

}  // namespace h2loop::server
