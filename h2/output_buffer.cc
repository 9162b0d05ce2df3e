#include "h2/output_buffer.h"

#include <cassert>
#include <cstring>

namespace h2loop::h2 {

std::unique_ptr<uint8_t[]> BlockCache::take() {
  if (free_.empty()) return std::unique_ptr<uint8_t[]>(new uint8_t[block_size_]);
  std::unique_ptr<uint8_t[]> block = std::move(free_.back());
  free_.pop_back();
  return block;
}

void BlockCache::give(std::unique_ptr<uint8_t[]> block) {
  if (block != nullptr && free_.size() < max_blocks_) free_.push_back(std::move(block));
}

OutputBuffer::OutputBuffer(size_t high_watermark, size_t low_watermark, BlockCache* cache)
    : capacity_(high_watermark + kFrameHeadroom), high_(high_watermark), low_(low_watermark) {
  assert(high_watermark > 0);
  assert(low_watermark <= high_watermark);
  cache_ = cache != nullptr && cache->blockSize() == capacity_ ? cache : nullptr;
}

OutputBuffer::~OutputBuffer() {
  if (cache_ != nullptr) cache_->give(std::move(storage_));
}

void OutputBuffer::consume(size_t n) {
  assert(n <= size());
  head_ += n;
  if (head_ == tail_) {
    head_ = 0;
    tail_ = 0;
  }
}

bool OutputBuffer::append(const uint8_t* p, size_t len) {
  if (len == 0) return true;
  if (len > freeSpace()) return false;
  std::span<uint8_t> t = tailSpace(len);
  std::memcpy(t.data(), p, len);
  commit(len);
  return true;
}

std::span<uint8_t> OutputBuffer::tailSpace(size_t min_bytes) {
  ensureAllocated();
  if (capacity_ - tail_ < min_bytes && head_ > 0) compact();
  return {storage_.get() + tail_, capacity_ - tail_};
}

void OutputBuffer::commit(size_t n) {
  assert(storage_ != nullptr || n == 0);
  assert(n <= capacity_ - tail_);
  tail_ += n;
}

bool OutputBuffer::releaseIfEmpty() {
  if (!empty() || storage_ == nullptr) return false;
  if (cache_ != nullptr) {
    cache_->give(std::move(storage_));
  } else {
    storage_.reset();
  }
  head_ = 0;
  tail_ = 0;
  return true;
}

void OutputBuffer::ensureAllocated() {
  if (storage_ == nullptr) {
    // Not value-initialised: the bytes are always written before use.
    storage_ =
        cache_ != nullptr ? cache_->take() : std::unique_ptr<uint8_t[]>(new uint8_t[capacity_]);
    head_ = 0;
    tail_ = 0;
  }
}

void OutputBuffer::compact() {
  const size_t n = size();
  if (n > 0) std::memmove(storage_.get(), storage_.get() + head_, n);
  head_ = 0;
  tail_ = n;
}

}  // namespace h2loop::h2
