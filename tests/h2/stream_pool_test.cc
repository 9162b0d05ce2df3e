#include "h2/stream_pool.h"

#include <gtest/gtest.h>

#include "h2/stream.h"

namespace h2loop::h2 {
namespace {

TEST(StreamPool, AcquireReleaseCounters) {
  StreamPool pool(2);
  EXPECT_EQ(pool.capacity(), 2u);
  EXPECT_EQ(pool.allocated(), 0u);  // lazy
  Stream* a = pool.acquire();
  Stream* b = pool.acquire();
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  EXPECT_NE(a, b);
  EXPECT_EQ(a->refCount(), 1u);
  EXPECT_EQ(pool.acquire(), nullptr);
  EXPECT_EQ(pool.refused(), 1u);
  EXPECT_EQ(pool.inUse(), 2u);
  EXPECT_EQ(pool.highWater(), 2u);
  a->release();
  EXPECT_EQ(pool.inUse(), 1u);
  Stream* c = pool.acquire();
  EXPECT_EQ(c, a);  // recycled, not reallocated
  EXPECT_EQ(pool.allocated(), 2u);
  EXPECT_EQ(pool.totalAcquired(), 3u);
  b->release();
  c->release();
  EXPECT_EQ(pool.inUse(), 0u);
  EXPECT_EQ(pool.highWater(), 2u);
}

TEST(StreamPool, StreamRefKeepsStreamUntilLastHolder) {
  StreamPool pool(1);
  Stream* s = pool.acquire();
  ASSERT_NE(s, nullptr);
  {
    StreamRef r1(s);
    EXPECT_EQ(s->refCount(), 2u);
    StreamRef r2 = r1;
    EXPECT_EQ(s->refCount(), 3u);
    StreamRef r3 = std::move(r2);
    EXPECT_FALSE(r2);
    EXPECT_EQ(s->refCount(), 3u);
    s->release();  // the acquirer's reference
    EXPECT_EQ(pool.inUse(), 1u);
    r1.reset();
    EXPECT_EQ(pool.inUse(), 1u);
  }
  EXPECT_EQ(pool.inUse(), 0u);
}

TEST(StreamPool, ReleasedStreamIsClean) {
  StreamPool pool(1);
  Stream* s = pool.acquire();
  ASSERT_NE(s, nullptr);
  int marker = 0;
  s->setUser(&marker);
  s->release();
  Stream* t = pool.acquire();
  ASSERT_EQ(t, s);
  EXPECT_EQ(t->user(), nullptr);
  EXPECT_FALSE(t->closed());
  EXPECT_EQ(t->headers().size(), 0u);
  // Not attached to a session: writes report closed.
  EXPECT_EQ(t->appendBody("x"), SubmitResult::kClosed);
  t->release();
}

}  // namespace
}  // namespace h2loop::h2
