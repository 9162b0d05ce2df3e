#include "server/file_cache.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <climits>
#include <cstdio>
#include <stdexcept>
#include <system_error>

#include <spdlog/spdlog.h>

#include "server/mime_types.h"

namespace h2loop::server {

namespace {

// O_NONBLOCK: opening a FIFO for reading would otherwise block until a writer appears.
// O_NOCTTY: opening a terminal must never make it our controlling terminal.
constexpr int kOpenFlags = O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY;
constexpr uint64_t kResolveFlags = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
constexpr std::string_view kIndexName = "index.html";
// openat2 with RESOLVE_BENEATH may fail with EAGAIN when a concurrent rename makes the
// kernel unable to prove ".." stayed inside; it is safe to retry.
constexpr int kOpenat2Retries = 3;

long sysOpenat2(int dirfd, const char* path, uint64_t flags) noexcept {
  struct open_how how {};
  how.flags = flags;
  how.resolve = kResolveFlags;
  return ::syscall(SYS_openat2, dirfd, path, &how, sizeof how);
}

OpenStatus statusFromErrno(int err) noexcept {
  switch (err) {
    case ENOENT:
    case ENOTDIR:
    case ENAMETOOLONG:
      return OpenStatus::kNotFound;
    case EACCES:
    case EPERM:
    case EXDEV:  // openat2: resolution would leave the root
    case ELOOP:  // symlink loop, or a magic link refused
    case ENXIO:  // a UNIX socket, or a device without a driver
    case ENODEV:
      return OpenStatus::kForbidden;
    case EMFILE:
    case ENFILE:
    case ENOMEM:
    case EAGAIN:
      return OpenStatus::kUnavailable;
    default:
      return OpenStatus::kError;
  }
}

void closeFd(int fd) noexcept {
  if (fd >= 0) ::close(fd);
}

bool sameFile(const CachedFile& f, const struct stat& st) noexcept {
  return f.device() == st.st_dev && f.inode() == st.st_ino && f.size() == st.st_size &&
         f.mtimeSeconds() == st.st_mtim.tv_sec && f.mtimeNanos() == st.st_mtim.tv_nsec;
}

}  // namespace

// ---- CachedFile -------------------------------------------------------------------------

CachedFile::CachedFile(int fd, const struct stat& st, std::string_view content_type,
                       std::shared_ptr<detail::LiveCounter> live, std::string_view encoding)
    : fd_(fd),
      size_(st.st_size),
      mtime_sec_(st.st_mtim.tv_sec),
      mtime_nsec_(st.st_mtim.tv_nsec),
      dev_(st.st_dev),
      ino_(st.st_ino),
      content_type_(content_type),
      encoding_(encoding),
      live_(std::move(live)) {
  ++live_->open_files;

  // Strong validator in the nginx style: size and modification time in nanoseconds.
  const auto mtime_ns =
      static_cast<uint64_t>(mtime_sec_) * 1000000000u + static_cast<uint64_t>(mtime_nsec_);
  char buf[kMaxEtagLen];
  char* p = buf;
  char* const end = buf + sizeof buf;
  *p++ = '"';
  p = std::to_chars(p, end, static_cast<uint64_t>(size_), 16).ptr;
  *p++ = '-';
  p = std::to_chars(p, end, mtime_ns, 16).ptr;
  if (encoding == "gzip") {
    *p++ = '-', *p++ = 'g', *p++ = 'z';
  } else if (!encoding.empty()) {
    *p++ = '-', *p++ = 'b', *p++ = 'r';
  }
  *p++ = '"';
  etag_.assign({buf, static_cast<std::size_t>(p - buf)});

  formatHttpDate(mtime_sec_, last_modified_);

  if (size_ > 0 && size_ <= kMaxInlineContent) {
    content_.resize(static_cast<size_t>(size_));
    size_t done = 0;
    while (done < content_.size()) {
      const ssize_t n =
          ::pread(fd_, content_.data() + done, content_.size() - done, static_cast<off_t>(done));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;  // changed under us: serve through the fd instead
      done += static_cast<size_t>(n);
    }
    has_content_ = done == content_.size();
    if (!has_content_) std::string().swap(content_);
  }
}

CachedFile::~CachedFile() {
  closeFd(fd_);
  --live_->open_files;
}

void CachedFile::release() {
  if (--refs_ == 0) delete this;
}

// ---- FileCache --------------------------------------------------------------------------

FileCache::FileCache(const std::filesystem::path& root, FileCacheConfig cfg)
    : cfg_(cfg),
      live_(std::make_shared<detail::LiveCounter>()),
      compressed_live_(std::make_shared<detail::CompressedLive>()) {
  root_fd_ = ::open(root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (root_fd_ < 0) {
    const std::error_code ec(errno, std::generic_category());
    throw std::runtime_error("document root '" + root.string() + "': " + ec.message());
  }

  bool have_openat2 = true;
  const long probe = sysOpenat2(root_fd_, ".", O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (probe >= 0) {
    closeFd(static_cast<int>(probe));
  } else if (errno == ENOSYS || errno == EPERM || errno == EINVAL || errno == E2BIG) {
    // ENOSYS: kernel < 5.6. EPERM: a seccomp filter that does not know the syscall.
    // EINVAL/E2BIG: resolve flags or struct size not understood.
    have_openat2 = false;
  }

  switch (cfg_.resolver) {
    case PathResolver::kOpenat2:
      if (!have_openat2) {
        closeFd(root_fd_);
        throw std::runtime_error("openat2(2) is not available; cannot confine document root '" +
                                 root.string() + "' with RESOLVE_BENEATH");
      }
      use_openat2_ = true;
      break;
    case PathResolver::kProcFdCheck:
      use_openat2_ = false;
      break;
    case PathResolver::kAuto:
      use_openat2_ = have_openat2;
      if (!have_openat2) {
        spdlog::warn("openat2(2) unavailable; confining '{}' by checking /proc/self/fd paths",
                     root.string());
      }
      break;
  }

  std::error_code ec;
  const std::filesystem::path canonical = std::filesystem::canonical(root, ec);
  if (ec) {
    closeFd(root_fd_);
    throw std::runtime_error("document root '" + root.string() + "': " + ec.message());
  }
  root_prefix_ = canonical.string();
  if (root_prefix_.empty() || root_prefix_.back() != '/') root_prefix_ += '/';
}

FileCache::~FileCache() {
  clear();
  closeFd(root_fd_);
}

int FileCache::openBeneath() const {
  const char* path = path_buf_.c_str();
  if (use_openat2_) {
    for (int attempt = 0;; ++attempt) {
      const long fd = sysOpenat2(root_fd_, path, kOpenFlags);
      if (fd >= 0) return static_cast<int>(fd);
      const int err = errno;
      if (err == EINTR || (err == EAGAIN && attempt < kOpenat2Retries)) continue;
      return -err;
    }
  }

  const int fd = ::openat(root_fd_, path, kOpenFlags);
  if (fd < 0) return -errno;
  // Ask the kernel where the object we actually opened lives. Fail closed if we cannot.
  char link[32];
  std::snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  char target[PATH_MAX];
  const ssize_t n = ::readlink(link, target, sizeof target);
  if (n <= 0 || static_cast<std::size_t>(n) >= sizeof target) {
    closeFd(fd);
    return -EACCES;
  }
  const std::string_view t(target, static_cast<std::size_t>(n));
  const std::string_view root_itself(root_prefix_.data(), root_prefix_.size() - 1);
  if (!t.starts_with(root_prefix_) && t != root_itself && root_prefix_ != "/") {
    closeFd(fd);
    return -EXDEV;
  }
  return fd;
}

FileCache::Opened FileCache::open(std::string_view rel_path) {
  Opened o;
  path_buf_.assign(rel_path.empty() ? std::string_view(".") : rel_path);
  int fd = openBeneath();
  if (fd < 0) {
    o.status = statusFromErrno(-fd);
    return o;
  }
  if (::fstat(fd, &o.st) != 0) {
    o.status = statusFromErrno(errno);
    closeFd(fd);
    return o;
  }

  std::string_view name = rel_path;
  if (S_ISDIR(o.st.st_mode)) {
    closeFd(fd);
    path_buf_.assign(rel_path);
    if (!path_buf_.empty() && path_buf_.back() != '/') path_buf_ += '/';
    path_buf_ += kIndexName;
    fd = openBeneath();
    if (fd < 0) {
      // No index: no directory listings.
      o.status = -fd == ENOENT ? OpenStatus::kForbidden : statusFromErrno(-fd);
      return o;
    }
    if (::fstat(fd, &o.st) != 0) {
      o.status = statusFromErrno(errno);
      closeFd(fd);
      return o;
    }
    name = kIndexName;
  }

  if (!S_ISREG(o.st.st_mode)) {  // FIFO, socket, device, or an index.html directory
    closeFd(fd);
    o.status = OpenStatus::kForbidden;
    return o;
  }
  o.status = OpenStatus::kOk;
  o.fd = fd;
  o.content_type = mimeTypeForPath(name);
  return o;
}

namespace {
constexpr std::string_view kSuffixes[kCodings] = {".gz", ".br"};
constexpr std::string_view kEncodings[kCodings] = {"gzip", "br"};
}  // namespace

void FileCache::probeVariants(CachedFile* (&v)[kCodings], std::string_view content_type) {
  const std::size_t base = path_buf_.size();
  for (std::size_t i = 0; i < kCodings; ++i) {
    path_buf_.resize(base);
    path_buf_ += kSuffixes[i];
    const int fd = openBeneath();
    struct stat st {};
    if (fd >= 0 && ::fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
      if (v[i] != nullptr && sameFile(*v[i], st)) {
        closeFd(fd);
      } else {
        if (v[i] != nullptr) v[i]->release();
        v[i] = new CachedFile(fd, st, content_type, live_, kEncodings[i]);
      }
      continue;
    }
    closeFd(fd);  // absent, not a regular file, or outside the root: no variant
    if (v[i] != nullptr) std::exchange(v[i], nullptr)->release();
  }
  path_buf_.resize(base);
}

AcquireResult FileCache::acquire(std::string_view rel_path, int64_t now_ms) {
  AcquireResult r;
  const auto found = index_.find(rel_path);
  if (found != index_.end()) {
    const Lru::iterator it = found->second;
    Entry& e = *it;
    if (now_ms - e.validated_ms < cfg_.ttl_ms) {
      ++stats_.hits;
    } else {
      // Re-resolve the path (not just fstat the old fd): the name may now point to a
      // different file (rename over it), or to nothing.
      ++stats_.revalidations;
      Opened o = open(rel_path);
      if (o.status != OpenStatus::kOk) {
        ++stats_.misses;
        erase(it);
        r.status = o.status;
        return r;
      }
      e.validated_ms = now_ms;
      if (cfg_.variants) probeVariants(e.variants, o.content_type);
      if (sameFile(*e.file, o.st)) {
        ++stats_.hits;
        closeFd(o.fd);
      } else {
        ++stats_.misses;
        dropCompressed(e);  // of the old version
        e.file->release();  // streams still sending the old file keep it open
        e.file = new CachedFile(o.fd, o.st, o.content_type, live_);  // the cache's reference
      }
    }
    lru_.splice(lru_.begin(), lru_, it);  // iterators stay valid
    e.file->addRef();
    r.status = OpenStatus::kOk;
    r.file = CachedFileRef::adopt(e.file);
    for (std::size_t i = 0; i < kCodings; ++i) {
      if (e.compressed[i] != nullptr) r.compressed[i] = FileHandleRef::share(e.compressed[i]);
      if (e.variants[i] == nullptr) continue;
      e.variants[i]->addRef();
      r.variants[i] = CachedFileRef::adopt(e.variants[i]);
    }
    return r;
  }

  ++stats_.misses;
  Opened o = open(rel_path);
  if (o.status != OpenStatus::kOk) {
    r.status = o.status;
    return r;
  }
  auto* file = new CachedFile(o.fd, o.st, o.content_type, live_);  // the caller's reference
  r.status = OpenStatus::kOk;
  r.file = CachedFileRef::adopt(file);
  CachedFile* variants[kCodings] = {};  // the caller's references
  if (cfg_.variants) probeVariants(variants, o.content_type);
  for (std::size_t i = 0; i < kCodings; ++i)
    r.variants[i] = CachedFileRef::adopt(variants[i]);
  if (cfg_.max_entries == 0) return r;

  while (lru_.size() >= cfg_.max_entries) {
    ++stats_.evictions;
    erase(std::prev(lru_.end()));
  }
  lru_.push_front(Entry{std::string(rel_path), file, now_ms});
  file->addRef();  // the cache's reference
  for (std::size_t i = 0; i < kCodings; ++i) {
    lru_.front().variants[i] = variants[i];
    if (variants[i] != nullptr) variants[i]->addRef();
  }
  index_.emplace(lru_.front().key, lru_.begin());
  return r;
}

bool FileCache::keepCompressed(std::string_view rel_path, const CachedFile* file, Coding coding,
                               CompressedBody* body) {
  const auto i = static_cast<std::size_t>(coding);
  const auto found = index_.find(rel_path);
  if (found == index_.end() || body == nullptr) return false;
  Entry& e = *found->second;
  // Another version by now, or kept already: the caller's body serves its one response.
  if (e.file != file || e.compressed[i] != nullptr) return false;
  if (body->size() > static_cast<int64_t>(cfg_.compressed_budget)) return false;
  body->addRef();
  e.compressed[i] = body;
  compressed_held_ += body->size();
  // Over the budget: drop bodies of the least recently used entries first, never the one
  // just kept (which fits alone). Bounded by max_entries steps.
  for (auto it = lru_.rbegin();
       compressed_held_ > static_cast<int64_t>(cfg_.compressed_budget) && it != lru_.rend(); ++it) {
    for (CompressedBody*& c : it->compressed) {
      if (c == nullptr || c == body) continue;
      compressed_held_ -= c->size();
      ++stats_.compressed_evictions;
      std::exchange(c, nullptr)->release();  // a stream still sending it keeps it
      if (compressed_held_ <= static_cast<int64_t>(cfg_.compressed_budget)) break;
    }
  }
  return true;
}

void FileCache::dropCompressed(Entry& e) noexcept {
  for (CompressedBody*& c : e.compressed) {
    if (c == nullptr) continue;
    compressed_held_ -= c->size();
    std::exchange(c, nullptr)->release();
  }
}

void FileCache::erase(Lru::iterator it) noexcept {
  dropCompressed(*it);
  index_.erase(it->key);  // before the key's storage goes away
  CachedFile* file = it->file;
  CachedFile* variants[kCodings];
  std::copy(std::begin(it->variants), std::end(it->variants), variants);
  lru_.erase(it);
  file->release();
  for (CachedFile* v : variants)
    if (v != nullptr) v->release();
}

void FileCache::clear() noexcept {
  index_.clear();
  while (!lru_.empty()) {
    dropCompressed(lru_.front());
    CachedFile* file = lru_.front().file;
    CachedFile* variants[kCodings];
    std::copy(std::begin(lru_.front().variants), std::end(lru_.front().variants), variants);
    lru_.pop_front();
    file->release();
    for (CachedFile* v : variants)
      if (v != nullptr) v->release();
  }
}

FileCacheStats FileCache::stats() const noexcept {
  FileCacheStats s = stats_;
  s.entries = lru_.size();
  s.open_files = live_->open_files;
  s.compressed_bytes = compressed_held_;
  s.compressed_live_bytes = compressed_live_->bytes;
  return s;
}

}  // namespace h2loop::server
