#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "h2/file_handle.h"

namespace h2loop::server {

// Content codings the static-file service sends: precompressed variants next to a file
// (`name.gz`, `name.br`) and on-the-fly compression.
enum class Coding : uint8_t { kGzip = 0, kBrotli = 1 };
inline constexpr std::size_t kCodings = 2;

// "gzip" / "br": the content-coding token (static storage).
[[nodiscard]] std::string_view codingName(Coding c) noexcept;

// Compresses `in` into `out` (replaced): gzip (RFC 1952, zlib's deflate at `level` 1..9,
// mtime 0, so the same input and level give the same bytes) or brotli (`level` is the
// quality, 0..11; window 22 bits). False if the library fails (out of memory inside it).
// Runs on the caller's thread for as long as it takes: the caller bounds the input size.
[[nodiscard]] bool compressBytes(Coding coding, std::string_view in, int level, std::string& out);

// True if `content_type` (a content-type field value: parameters after ';' are ignored,
// the media type compared case-insensitively) is one of `types`: each an exact
// "type/subtype" or a "type/*" wildcard.
[[nodiscard]] bool typeMatches(std::string_view content_type,
                               const std::vector<std::string>& types) noexcept;

namespace detail {
// Bytes held by CompressedBody objects alive, of one FileCache (shared with the bodies, so
// it outlives the cache if a stream still holds one).
struct CompressedLive {
  int64_t bytes = 0;
  int64_t bodies = 0;
};
}  // namespace detail

// The compressed bytes of one version of a file in one coding, immutable once made. A
// FileHandle whose memory() is the whole body (fd() is -1: the session never preads it),
// so a stream sends it as it sends a small cached file, holding one reference.
//
// Reference counting is intrusive and NOT atomic, as CachedFile's: every addRef()/release()
// on the thread of the FileCache that holds it. The cache entry keeps one reference while
// the body is within its budget; each response one more. The last release() frees the
// bytes, whether or not the entry, the file version or the cache still exist: a body
// evicted while a stream sends it stays valid until that stream lets go.
class CompressedBody final : public h2::FileHandle {
 public:
  // Starts with one reference (the creator's). `bytes` non-empty.
  CompressedBody(std::string bytes, std::shared_ptr<detail::CompressedLive> live);
  CompressedBody(const CompressedBody&) = delete;
  CompressedBody& operator=(const CompressedBody&) = delete;

  [[nodiscard]] int fd() const override { return -1; }
  [[nodiscard]] std::string_view memory() const override { return bytes_; }
  void addRef() override { ++refs_; }
  void release() override;

  [[nodiscard]] int64_t size() const noexcept { return static_cast<int64_t>(bytes_.size()); }
  [[nodiscard]] int refCount() const noexcept { return refs_; }

 private:
  ~CompressedBody() override;

  int refs_ = 1;
  std::string bytes_;
  std::shared_ptr<detail::CompressedLive> live_;
};

// Owns exactly one reference to any h2::FileHandle (a CachedFile, a CompressedBody) or
// nothing. Move-only.
class FileHandleRef {
 public:
  FileHandleRef() = default;
  // Takes over one reference the caller already owns.
  static FileHandleRef adopt(h2::FileHandle* f) noexcept {
    FileHandleRef r;
    r.f_ = f;
    return r;
  }
  // Takes one more reference.
  static FileHandleRef share(h2::FileHandle* f) noexcept {
    if (f != nullptr) f->addRef();
    return adopt(f);
  }
  FileHandleRef(FileHandleRef&& o) noexcept : f_(std::exchange(o.f_, nullptr)) {}
  FileHandleRef& operator=(FileHandleRef&& o) noexcept {
    if (this != &o) {
      reset();
      f_ = std::exchange(o.f_, nullptr);
    }
    return *this;
  }
  FileHandleRef(const FileHandleRef&) = delete;
  FileHandleRef& operator=(const FileHandleRef&) = delete;
  ~FileHandleRef() { reset(); }

  [[nodiscard]] h2::FileHandle* get() const noexcept { return f_; }
  h2::FileHandle* operator->() const noexcept { return f_; }
  explicit operator bool() const noexcept { return f_ != nullptr; }
  // Hands the reference to the caller, who must release() it; empty afterwards.
  [[nodiscard]] h2::FileHandle* detach() noexcept { return std::exchange(f_, nullptr); }
  void reset() noexcept {
    if (f_ != nullptr) std::exchange(f_, nullptr)->release();
  }

 private:
  h2::FileHandle* f_ = nullptr;
};

}  // namespace h2loop::server
