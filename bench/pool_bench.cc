// Micro benchmarks for h2::StreamPool and StreamRef (Google Benchmark).
// Not tests: run by hand, see bench/README.md.

#include <benchmark/benchmark.h>

#include <cstddef>
#include <vector>

#include "h2/stream.h"
#include "h2/stream_pool.h"

namespace {

using h2loop::h2::Stream;
using h2loop::h2::StreamPool;
using h2loop::h2::StreamRef;

// One acquire + last release (the per-request cost of the pool itself; the
// stream is recycled: request strings cleared, capacity kept).
void BM_PoolAcquireRelease(benchmark::State& state) {
  StreamPool pool(1024);
  for (auto _ : state) {
    Stream* s = pool.acquire();
    benchmark::DoNotOptimize(s);
    s->release();
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_PoolAcquireRelease);

// Acquire a batch of N streams, then release them all (a connection with N
// concurrent streams; exercises the free list as a stack).
void BM_PoolAcquireReleaseBatch(benchmark::State& state) {
  const auto n = static_cast<size_t>(state.range(0));
  StreamPool pool(n);
  std::vector<Stream*> held(n);
  for (auto _ : state) {
    for (size_t i = 0; i < n; ++i)
      held[i] = pool.acquire();
    benchmark::DoNotOptimize(held.data());
    for (size_t i = 0; i < n; ++i)
      held[i]->release();
  }
  state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(n));
}
BENCHMARK(BM_PoolAcquireReleaseBatch)->Arg(16)->Arg(100)->Arg(1024);

// Acquire on a full pool: the refusal path (counted, nullptr).
void BM_PoolRefused(benchmark::State& state) {
  StreamPool pool(1);
  Stream* s = pool.acquire();
  for (auto _ : state) {
    Stream* r = pool.acquire();
    benchmark::DoNotOptimize(r);
  }
  s->release();
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_PoolRefused);

// StreamRef copy (addRef) + destruction (release, not the last one).
void BM_StreamRefCopy(benchmark::State& state) {
  StreamPool pool(4);
  Stream* s = pool.acquire();
  StreamRef base(s);
  for (auto _ : state) {
    StreamRef copy(base);
    benchmark::DoNotOptimize(copy.get());
  }
  base.reset();
  s->release();
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_StreamRefCopy);

// StreamRef move (no refcount traffic).
void BM_StreamRefMove(benchmark::State& state) {
  StreamPool pool(4);
  Stream* s = pool.acquire();
  StreamRef a(s);
  for (auto _ : state) {
    StreamRef b(std::move(a));
    benchmark::DoNotOptimize(b.get());
    a = std::move(b);
  }
  a.reset();
  s->release();
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_StreamRefMove);

// The last StreamRef dropping returns the stream to the pool.
void BM_StreamRefLastReleaseRecycles(benchmark::State& state) {
  StreamPool pool(4);
  for (auto _ : state) {
    Stream* s = pool.acquire();
    StreamRef ref(s);
    s->release();  // the acquire() reference; ref is now the only holder
    benchmark::DoNotOptimize(ref.get());
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_StreamRefLastReleaseRecycles);

}  // namespace

BENCHMARK_MAIN();
