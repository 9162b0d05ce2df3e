#include "h2/output_buffer.h"

#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

namespace h2loop::h2 {
namespace {

std::vector<uint8_t> bytes(size_t n, uint8_t seed) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i)
    v[i] = static_cast<uint8_t>(seed + i);
  return v;
}

TEST(OutputBuffer, LazyAllocationAndRelease) {
  OutputBuffer b(1024, 256);
  EXPECT_FALSE(b.allocated());
  EXPECT_EQ(b.size(), 0u);
  EXPECT_EQ(b.capacity(), 1024u + OutputBuffer::kFrameHeadroom);
  EXPECT_FALSE(b.releaseIfEmpty());  // nothing to release

  const auto v = bytes(100, 1);
  ASSERT_TRUE(b.append(v));
  EXPECT_TRUE(b.allocated());
  EXPECT_FALSE(b.releaseIfEmpty());  // pending bytes keep the block
  EXPECT_TRUE(b.allocated());
  b.consume(100);
  EXPECT_TRUE(b.empty());
  EXPECT_TRUE(b.releaseIfEmpty());
  EXPECT_FALSE(b.allocated());
}

TEST(OutputBuffer, WatermarksAndCapacityBound) {
  OutputBuffer b(1000, 100);
  EXPECT_EQ(b.highWatermark(), 1000u);
  EXPECT_EQ(b.lowWatermark(), 100u);
  EXPECT_TRUE(b.belowLow());
  ASSERT_TRUE(b.append(bytes(999, 0)));
  EXPECT_FALSE(b.aboveHigh());
  EXPECT_FALSE(b.belowLow());
  ASSERT_TRUE(b.append(bytes(1, 0)));
  EXPECT_TRUE(b.aboveHigh());
  // Exactly the headroom still fits, one more byte does not.
  EXPECT_EQ(b.freeSpace(), OutputBuffer::kFrameHeadroom);
  EXPECT_FALSE(b.append(bytes(OutputBuffer::kFrameHeadroom + 1, 0)));
  EXPECT_EQ(b.size(), 1000u);
  ASSERT_TRUE(b.append(bytes(OutputBuffer::kFrameHeadroom, 0)));
  EXPECT_EQ(b.size(), b.capacity());
  EXPECT_FALSE(b.append(bytes(1, 0)));
}

TEST(OutputBuffer, PartialConsumeKeepsOrderAndCompacts) {
  OutputBuffer b(1000, 100);
  const auto v = bytes(b.capacity(), 7);
  ASSERT_TRUE(b.append(v));
  b.consume(600);
  ASSERT_EQ(b.size(), v.size() - 600);
  EXPECT_EQ(std::memcmp(b.data(), v.data() + 600, b.size()), 0);
  // The tail is full; asking for 500 bytes compacts the remainder to the front.
  auto t = b.tailSpace(500);
  ASSERT_GE(t.size(), 500u);
  EXPECT_EQ(std::memcmp(b.data(), v.data() + 600, b.size()), 0);
  std::memset(t.data(), 0xAB, 500);
  b.commit(500);
  EXPECT_EQ(b.size(), v.size() - 100);
  EXPECT_EQ(b.data()[b.size() - 1], 0xAB);
  EXPECT_EQ(std::memcmp(b.data(), v.data() + 600, v.size() - 600), 0);
}

TEST(OutputBuffer, AppendAfterConsumeUsesFreedHead) {
  OutputBuffer b(1000, 100);
  ASSERT_TRUE(b.append(bytes(b.capacity() - 10, 3)));
  EXPECT_FALSE(b.append(bytes(20, 0)));
  b.consume(50);
  ASSERT_TRUE(b.append(bytes(20, 9)));  // compacts to make room
  EXPECT_EQ(b.size(), b.capacity() - 40);
  EXPECT_EQ(b.data()[b.size() - 1], static_cast<uint8_t>(9 + 19));
}

TEST(OutputBuffer, FullConsumeResetsHeadWithoutMove) {
  OutputBuffer b(1000, 100);
  ASSERT_TRUE(b.append(bytes(500, 0)));
  b.consume(500);
  auto t = b.tailSpace();
  EXPECT_EQ(t.size(), b.capacity());
}

}  // namespace
}  // namespace h2loop::h2

namespace h2loop::h2 {
namespace {

TEST(BlockCache, BuffersReuseBlocksAndTheCacheIsBounded) {
  OutputBuffer probe;
  BlockCache cache(probe.capacity(), 2);
  const uint8_t* first_block = nullptr;
  {
    OutputBuffer a(OutputBuffer::kDefaultHighWatermark, OutputBuffer::kDefaultLowWatermark, &cache);
    ASSERT_TRUE(a.append(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>("abc"), 3)));
    first_block = a.data();
    a.consume(3);
    EXPECT_TRUE(a.releaseIfEmpty());
    EXPECT_EQ(cache.cached(), 1u);
    ASSERT_TRUE(a.append(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>("d"), 1)));
    EXPECT_EQ(a.data(), first_block);  // the same block came back, no malloc
    EXPECT_EQ(cache.cached(), 0u);
  }
  EXPECT_EQ(cache.cached(), 1u);  // the destructor gave it back
  std::vector<std::unique_ptr<OutputBuffer>> many;
  for (int i = 0; i < 4; ++i) {
    many.push_back(std::make_unique<OutputBuffer>(OutputBuffer::kDefaultHighWatermark,
                                                  OutputBuffer::kDefaultLowWatermark, &cache));
    (void)many.back()->tailSpace(1);
  }
  many.clear();
  EXPECT_EQ(cache.cached(), 2u);  // at most max_blocks are kept
  // A cache of another block size is not used.
  BlockCache other(probe.capacity() + 1, 2);
  OutputBuffer b(OutputBuffer::kDefaultHighWatermark, OutputBuffer::kDefaultLowWatermark, &other);
  (void)b.tailSpace(1);
  EXPECT_TRUE(b.releaseIfEmpty());
  EXPECT_EQ(other.cached(), 0u);
}

}  // namespace
}  // namespace h2loop::h2
