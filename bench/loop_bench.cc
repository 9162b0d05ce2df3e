// Both loop backends on the same work. Each benchmark takes the backend name
// as its argument label, e.g. BM_PingPong/epoll.

#include <benchmark/benchmark.h>
#include <sys/socket.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "eventloop/loop_factory.h"

namespace {

using h2loop::ev::Loop;

std::unique_ptr<Loop> make(benchmark::State& state) {
  const auto names = h2loop::ev::loopBackendNames();
  const auto name = names[static_cast<size_t>(state.range(0))];
  state.SetLabel(std::string(name));
  return h2loop::ev::makeLoop(name);
}

// One byte bounced between the two ends of a socketpair, both watched by the
// same loop: each round trip is two readiness dispatches and two syscalls pairs.
void BM_PingPong(benchmark::State& state) {
  auto loop = make(state);
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds) != 0) {
    state.SkipWithError("socketpair");
    return;
  }
  constexpr int64_t kRoundTrips = 10000;
  for (auto _ : state) {
    int64_t remaining = kRoundTrips;
    auto bounce = [&](int self, int peer) {
      return [&, self, peer](uint32_t) {
        char c;
        if (::read(self, &c, 1) != 1) return;
        if (self == fds[0] && --remaining == 0) {
          loop->stop();
          return;
        }
        (void)::write(self, &c, 1);
        (void)peer;
      };
    };
    auto a = loop->watch(fds[0], h2loop::ev::kRead, bounce(fds[0], fds[1]));
    auto b = loop->watch(fds[1], h2loop::ev::kRead, bounce(fds[1], fds[0]));
    (void)::write(fds[1], "x", 1);
    loop->run();
  }
  state.SetItemsProcessed(state.iterations() * kRoundTrips);
  ::close(fds[0]);
  ::close(fds[1]);
}

// Arm, re-arm and cancel many timers, as connections do with idle timers on
// every request; then let a batch of short ones fire.
void BM_TimerChurn(benchmark::State& state) {
  auto loop = make(state);
  constexpr int kTimers = 1000;
  std::vector<std::unique_ptr<h2loop::ev::Timer>> timers;
  int fired = 0;
  for (int i = 0; i < kTimers; ++i)
    timers.push_back(loop->timer([&] { ++fired; }));
  for (auto _ : state) {
    for (int i = 0; i < kTimers; ++i)
      timers[i]->arm(std::chrono::seconds(30 + i % 7));
    for (int i = 0; i < kTimers; ++i)
      timers[i]->arm(std::chrono::seconds(60 - i % 5));
    for (int i = 0; i < kTimers; i += 2)
      timers[i]->cancel();
    for (int i = 1; i < kTimers; i += 2)
      timers[i]->arm(std::chrono::nanoseconds(0));
    fired = 0;
    auto stop = loop->timer([&] { loop->stop(); });
    stop->arm(std::chrono::nanoseconds(0));
    loop->run();
    benchmark::DoNotOptimize(fired);
  }
  state.SetItemsProcessed(state.iterations() * kTimers * 4);
}

// post() throughput from another thread, with the loop running.
void BM_PostFromOtherThread(benchmark::State& state) {
  auto loop = make(state);
  constexpr int kPosts = 20000;
  for (auto _ : state) {
    int done = 0;
    std::thread producer([&] {
      for (int i = 0; i < kPosts; ++i) {
        loop->post([&] {
          if (++done == kPosts) loop->stop();
        });
      }
    });
    loop->run();
    producer.join();
  }
  state.SetItemsProcessed(state.iterations() * kPosts);
}

BENCHMARK(BM_PingPong)->DenseRange(0, 1)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_TimerChurn)->DenseRange(0, 1)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_PostFromOtherThread)->DenseRange(0, 1)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
