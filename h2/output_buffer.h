#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

namespace h2loop::h2 {

// Free storage blocks of one size, kept for reuse by the OutputBuffers of
// one thread (a worker): a busy connection takes a block when it has output
// and gives it back when its output drains, without touching malloc; idle
// connections hold none. At most max_blocks are kept; the rest are freed.
// Not thread-safe; must outlive the buffers that use it.
class BlockCache {
 public:
  BlockCache(size_t block_size, size_t max_blocks)
      : block_size_(block_size), max_blocks_(max_blocks) {}
  BlockCache(const BlockCache&) = delete;
  BlockCache& operator=(const BlockCache&) = delete;

  [[nodiscard]] size_t blockSize() const { return block_size_; }
  [[nodiscard]] size_t cached() const { return free_.size(); }
  // A block of blockSize() bytes (uninitialised).
  [[nodiscard]] std::unique_ptr<uint8_t[]> take();
  void give(std::unique_ptr<uint8_t[]> block);

 private:
  size_t block_size_;
  size_t max_blocks_;
  std::vector<std::unique_ptr<uint8_t[]>> free_;
};

// The connection's bounded outgoing byte buffer.
//
// Contract:
// - Storage is one contiguous block of capacity() bytes, allocated on first
//   use and freed by releaseIfEmpty(), so idle connections hold none.
// - capacity() = highWatermark() + kFrameHeadroom: a producer that only writes
//   while !aboveHigh() and never more than one frame per check can always fit
//   that frame. Nothing ever grows the block; append() and commit() that
//   would overflow fail (append) or are a bug (commit, asserted).
// - Pending bytes are [data(), data() + size()). The head advances on
//   consume(); the remainder is moved to the front (compaction) only when a
//   writer needs tail space, so partial writes cost nothing.
// - Not thread-safe; owned by one connection on one loop thread.
class OutputBuffer {
 public:
  // Largest HTTP/2 frame nghttp2 emits by default (9-byte header + 16384
  // payload) plus headroom for the pad-length byte and padding.
  static constexpr size_t kFrameHeadroom = 9 + 16384 + 256;
  static constexpr size_t kDefaultHighWatermark = 64 * 1024;
  static constexpr size_t kDefaultLowWatermark = 16 * 1024;

  // Requires low_watermark <= high_watermark and high_watermark > 0.
  // With a cache whose blockSize() equals capacity(), storage blocks come
  // from and go back to it.
  explicit OutputBuffer(size_t high_watermark = kDefaultHighWatermark,
                        size_t low_watermark = kDefaultLowWatermark, BlockCache* cache = nullptr);
  ~OutputBuffer();

  OutputBuffer(const OutputBuffer&) = delete;
  OutputBuffer& operator=(const OutputBuffer&) = delete;

  [[nodiscard]] const uint8_t* data() const { return storage_.get() + head_; }
  [[nodiscard]] size_t size() const { return tail_ - head_; }
  [[nodiscard]] bool empty() const { return head_ == tail_; }
  [[nodiscard]] size_t capacity() const { return capacity_; }
  [[nodiscard]] size_t highWatermark() const { return high_; }
  [[nodiscard]] size_t lowWatermark() const { return low_; }
  [[nodiscard]] bool aboveHigh() const { return size() >= high_; }
  [[nodiscard]] bool belowLow() const { return size() <= low_; }
  // Bytes that could still be appended (after compaction).
  [[nodiscard]] size_t freeSpace() const { return capacity_ - size(); }
  // Whether the storage block is currently allocated.
  [[nodiscard]] bool allocated() const { return storage_ != nullptr; }

  // Drops n pending bytes from the front (after a possibly partial write).
  // n must be <= size(). Consuming everything resets the head to the start.
  void consume(size_t n);

  // Copies len bytes to the end. Returns false (and appends nothing) when
  // they do not fit in freeSpace().
  [[nodiscard]] bool append(const uint8_t* p, size_t len);
  [[nodiscard]] bool append(std::span<const uint8_t> bytes) {
    return append(bytes.data(), bytes.size());
  }

  // Direct tail access for writers (pread, frame serialisers): returns the
  // writable region after the pending bytes, allocating the block and
  // compacting first if fewer than min_bytes are available at the tail. The
  // span is valid until the next non-const call. Follow with commit(n).
  [[nodiscard]] std::span<uint8_t> tailSpace(size_t min_bytes = 0);
  // Marks n bytes written into the span returned by tailSpace() as pending.
  void commit(size_t n);

  // Frees the storage block when nothing is pending; returns whether it did.
  bool releaseIfEmpty();

 private:
  void ensureAllocated();
  void compact();

  BlockCache* cache_;
  std::unique_ptr<uint8_t[]> storage_;
  size_t head_ = 0;
  size_t tail_ = 0;
  size_t capacity_;
  size_t high_;
  size_t low_;
};

}  // namespace h2loop::h2
