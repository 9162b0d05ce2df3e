#pragma once

#include <nghttp2/nghttp2.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>

namespace h2loop::h2 {

// The allocator nghttp2 uses for a worker's sessions (nghttp2_mem): free
// lists per size class in front of malloc.
//
// nghttp2 allocates and frees a handful of small objects for every request
// (outbound items, header name/value buffers, the copied nv array, stream
// objects); with glibc malloc that was ~850 instructions per request, 6 % of
// the whole request. A recycled block costs a few instructions. Requests
// above the largest class, 1 KiB (the session object, its buffers, large
// header blocks: made once per connection), go to malloc directly: rounded up
// to a power of two they would waste up to half of what every idle
// connection keeps (with 4 KiB classes an idle h2c connection grew by
// ~1 KiB).
//
// Bounded: at most max_cached_bytes sit in the free lists (blocks beyond it
// go back to malloc at once), so a burst of connections does not pin memory
// for good. Everything cached is freed with the allocator.
//
// Threading: one allocator per worker; every call comes from that worker's
// loop thread (nghttp2 calls it from inside Session functions only). Not
// thread-safe.
//
// Lifetime: each Session holds a shared reference and frees its
// nghttp2_session before dropping it, so the allocator outlives every
// session, whatever the order of teardown.
//
// Under AddressSanitizer the payload of a cached block is poisoned, so a use
// after free inside nghttp2 is still reported.
class SessionAllocator {
 public:
  static constexpr size_t kClasses = 6;         // 32 B .. 1 KiB payloads
  static constexpr size_t kSmallestClass = 32;  // bytes
  static constexpr size_t kLargestClass = kSmallestClass << (kClasses - 1);
  static constexpr size_t kDefaultMaxCachedBytes = 1024 * 1024;

  explicit SessionAllocator(size_t max_cached_bytes = kDefaultMaxCachedBytes);
  ~SessionAllocator();
  SessionAllocator(const SessionAllocator&) = delete;
  SessionAllocator& operator=(const SessionAllocator&) = delete;

  // For nghttp2_session_server_new3(); mem_user_data is this allocator.
  [[nodiscard]] nghttp2_mem* mem() { return &mem_; }

  void* allocate(size_t size);
  void deallocate(void* p);
  void* allocateZeroed(size_t count, size_t size);
  void* reallocate(void* p, size_t size);

  // Blocks handed out and not yet returned (0 once every session is gone).
  [[nodiscard]] size_t outstanding() const { return outstanding_; }
  // Bytes (payload) waiting in the free lists.
  [[nodiscard]] size_t cachedBytes() const { return cached_bytes_; }
  [[nodiscard]] size_t maxCachedBytes() const { return max_cached_bytes_; }
  // allocate() calls served from a free list / by malloc.
  [[nodiscard]] uint64_t reused() const { return reused_; }
  [[nodiscard]] uint64_t fresh() const { return fresh_; }

 private:
  struct Head;
  static size_t classOf(size_t size);
  static size_t classSize(size_t cls) { return kSmallestClass << cls; }

  nghttp2_mem mem_;
  std::array<Head*, kClasses> free_{};
  size_t max_cached_bytes_;
  size_t cached_bytes_ = 0;
  size_t outstanding_ = 0;
  uint64_t reused_ = 0;
  uint64_t fresh_ = 0;
};

}  // namespace h2loop::h2
