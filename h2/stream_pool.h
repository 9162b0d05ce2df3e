#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "h2/stream.h"

namespace h2loop::h2 {

// Recycles Stream objects (and their header/body string capacity).
//
// One pool per worker thread, shared by all sessions on that thread. NOT
// thread-safe by design: acquire() and every Stream::release() must run on
// the owning loop thread.
//
// Streams are created lazily up to capacity() and never freed until the pool
// is destroyed. Streams still referenced then (by an application's handle)
// are orphaned and delete themselves on their last release.
class StreamPool {
 public:
  explicit StreamPool(size_t capacity);
  ~StreamPool();

  StreamPool(const StreamPool&) = delete;
  StreamPool& operator=(const StreamPool&) = delete;

  // Returns a clean stream holding one reference (the caller's), or nullptr
  // when capacity() streams are in use (counted in refused()).
  [[nodiscard]] Stream* acquire();

  [[nodiscard]] size_t capacity() const { return capacity_; }
  [[nodiscard]] size_t inUse() const { return in_use_; }
  [[nodiscard]] size_t highWater() const { return high_water_; }
  [[nodiscard]] uint64_t refused() const { return refused_; }
  [[nodiscard]] uint64_t totalAcquired() const { return total_acquired_; }
  // Stream objects created so far (<= capacity()).
  [[nodiscard]] size_t allocated() const { return all_.size(); }

 private:
  friend class Stream;
  // Called by Stream::release() when the last reference drops.
  void recycle(Stream* s);

  struct Deleter {
    void operator()(Stream* s) const;
  };

  size_t capacity_;
  std::vector<std::unique_ptr<Stream, Deleter>> all_;
  std::vector<Stream*> free_;
  size_t in_use_ = 0;
  size_t high_water_ = 0;
  uint64_t refused_ = 0;
  uint64_t total_acquired_ = 0;
};

}  // namespace h2loop::h2
