#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <future>
#include <thread>
#include <vector>

#include "eventloop/loop_contract.h"

namespace h2loop::test {
namespace {

using namespace std::chrono_literals;
using ev::DetachOutcome;
using ev::IoWatch;
using ev::kNone;
using ev::kRead;
using ev::kWrite;

// A connected, non-blocking AF_UNIX stream pair closed on destruction.
struct SocketPair {
  int fd[2] = {-1, -1};
  SocketPair() {
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fd) != 0) {
      ADD_FAILURE() << "socketpair: " << errno;
    }
  }
  ~SocketPair() {
    for (int f : fd)
      if (f >= 0) ::close(f);
  }
  void send(char c = 'x') const { ASSERT_EQ(::write(fd[1], &c, 1), 1); }
};

// An owner that closes in two phases, like a connection: close() detaches
// the watch and hands the owner to the loop; the destructor is the single
// final destruction and counts itself.
struct Owner : ev::DeferredDeletable {
  Owner(ev::Loop& loop, int fd, int* destroyed) : loop_(loop), destroyed_(destroyed), fd_(fd) {
    watch_ = loop.watch(fd, kRead, [this](uint32_t) { close(); });
    timer_ = loop.timer([this] { close(); });
    timer_->arm(1h);
  }
  ~Owner() override {
    if (fd_ >= 0) ::close(fd_);
    ++*destroyed_;
  }
  // Returns the watch's outcome; the owner is destroyed after the callback.
  DetachOutcome close() {
    if (closing_) return DetachOutcome::kAlreadyClosed;
    closing_ = true;
    outcome_ = watch_->close();
    timer_->cancel();
    // Never returns early: whatever the outcome, final destruction follows.
    loop_.deferredDelete(std::unique_ptr<ev::DeferredDeletable>(this));
    return outcome_;
  }
  ev::Loop& loop_;
  int* destroyed_;
  int fd_;
  bool closing_ = false;
  DetachOutcome outcome_ = DetachOutcome::kAlreadyClosed;
  std::unique_ptr<IoWatch> watch_;
  std::unique_ptr<ev::Timer> timer_;
};

}  // namespace

void LoopContract::runIterations(int n) {
  auto remaining = std::make_shared<int>(n);
  auto* loop = loop_.get();
  auto stepper = std::make_shared<std::function<void()>>();
  *stepper = [loop, remaining, weak = std::weak_ptr(stepper)] {
    if (--*remaining <= 0) {
      loop->stop();
      return;
    }
    if (auto s = weak.lock()) loop->post(*s);
  };
  loop_->post(*stepper);
  loop_->run();
}

TEST_P(LoopContract, NameMatchesBackend) {
  EXPECT_EQ(loop_->name(), GetParam().name);
}

TEST_P(LoopContract, ReadReadinessOnSocketpair) {
  SocketPair sp;
  std::string got;
  auto w = loop_->watch(sp.fd[0], kRead, [&](uint32_t ready) {
    EXPECT_TRUE(ready & kRead);
    char buf[16];
    ssize_t n = ::read(sp.fd[0], buf, sizeof buf);
    ASSERT_GT(n, 0);
    got.append(buf, n);
    if (got.size() == 3) loop_->stop();
  });
  ASSERT_EQ(w->registrationError(), 0);
  sp.send('a');
  sp.send('b');
  sp.send('c');
  loop_->run();
  EXPECT_EQ(got, "abc");
}

TEST_P(LoopContract, ReadReadinessOnPipe) {
  int p[2];
  ASSERT_EQ(::pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
  int calls = 0;
  auto w = loop_->watch(p[0], kRead, [&](uint32_t ready) {
    EXPECT_TRUE(ready & kRead);
    char c;
    EXPECT_EQ(::read(p[0], &c, 1), 1);
    EXPECT_EQ(c, 'p');
    ++calls;
    loop_->stop();
  });
  ASSERT_EQ(::write(p[1], "p", 1), 1);
  loop_->run();
  EXPECT_EQ(calls, 1);
  w.reset();
  ::close(p[0]);
  ::close(p[1]);
}

TEST_P(LoopContract, LevelTriggeredUntilDrained) {
  SocketPair sp;
  sp.send();
  int calls = 0;
  auto w = loop_->watch(sp.fd[0], kRead, [&](uint32_t) { ++calls; });
  runIterations(5);
  EXPECT_GE(calls, 4);  // once per iteration while unread
  char c;
  ASSERT_EQ(::read(sp.fd[0], &c, 1), 1);
  calls = 0;
  runIterations(5);
  EXPECT_EQ(calls, 0);
}

TEST_P(LoopContract, PeerCloseIsReportedAsReadable) {
  SocketPair sp;
  ssize_t last = -2;
  auto w = loop_->watch(sp.fd[0], kRead, [&](uint32_t ready) {
    EXPECT_TRUE(ready & kRead);
    char c;
    last = ::read(sp.fd[0], &c, 1);
    loop_->stop();
  });
  ::close(sp.fd[1]);
  sp.fd[1] = -1;
  loop_->run();
  EXPECT_EQ(last, 0);
}

TEST_P(LoopContract, ToggleWriteInterestWithoutReregistering) {
  SocketPair sp;
  int writes = 0;
  int reads = 0;
  IoWatch* self = nullptr;
  auto w = loop_->watch(sp.fd[0], kWrite, [&](uint32_t ready) {
    if (ready & kWrite) {
      ++writes;
      if (writes == 3) {
        EXPECT_EQ(self->setInterest(kRead), 0);
      }
    }
    if (ready & kRead) {
      char c;
      EXPECT_EQ(::read(sp.fd[0], &c, 1), 1);
      ++reads;
    }
  });
  self = w.get();
  runIterations(8);
  EXPECT_EQ(writes, 3);
  EXPECT_EQ(w->interest(), static_cast<uint32_t>(kRead));
  sp.send();
  runIterations(3);
  EXPECT_EQ(reads, 1);
  EXPECT_EQ(w->setInterest(ev::kNone), 0);
  sp.send();
  runIterations(3);
  EXPECT_EQ(reads, 1);  // paused
  EXPECT_EQ(w->setInterest(kRead | kWrite), 0);
  runIterations(2);
  EXPECT_EQ(reads, 2);
  EXPECT_GT(writes, 3);
}

TEST_P(LoopContract, TimersFireInDeadlineOrderTiesInArmingOrder) {
  std::vector<int> order;
  auto t1 = loop_->timer([&] { order.push_back(1); });
  auto t2 = loop_->timer([&] { order.push_back(2); });
  auto t3 = loop_->timer([&] { order.push_back(3); });
  auto t4 = loop_->timer([&] { order.push_back(4); });
  auto end = loop_->timer([&] { loop_->stop(); });
  t1->arm(30ms);
  t2->arm(10ms);
  t3->arm(20ms);
  t4->arm(10ms);
  end->arm(40ms);
  loop_->run();
  EXPECT_EQ(order, (std::vector<int>{2, 4, 3, 1}));
  EXPECT_GE(loop_->now() - ev::Clock::time_point{}, ev::Duration::zero());
}

TEST_P(LoopContract, TimerDoesNotFireBeforeItsDeadline) {
  // Deadlines count from the loop's cached now() at arm(), which may be a
  // little older than the real clock (here: the loop's construction).
  const auto start = loop_->now();
  ev::Clock::time_point fired{};
  auto t = loop_->timer([&] {
    fired = ev::Clock::now();
    loop_->stop();
  });
  t->arm(15ms);
  loop_->run();
  EXPECT_GE(fired - start, 15ms);
}

TEST_P(LoopContract, RearmMovesDeadlineAndFiresOnce) {
  int fired = 0;
  auto t = loop_->timer([&] { ++fired; });
  auto end = loop_->timer([&] { loop_->stop(); });
  t->arm(1h);
  t->arm(1ms);
  EXPECT_TRUE(t->armed());
  end->arm(20ms);
  loop_->run();
  EXPECT_EQ(fired, 1);
  EXPECT_FALSE(t->armed());
  EXPECT_EQ(loop_->stats().armed_timers, 0u);
}

TEST_P(LoopContract, CancelledTimerNeverFires) {
  int fired = 0;
  auto t = loop_->timer([&] { ++fired; });
  auto end = loop_->timer([&] { loop_->stop(); });
  t->arm(1ms);
  t->cancel();
  t->cancel();  // idempotent
  end->arm(10ms);
  loop_->run();
  EXPECT_EQ(fired, 0);
}

TEST_P(LoopContract, TimerCancelsAndDestroysAnotherExpiredInSameBatch) {
  int fired_b = 0;
  std::unique_ptr<ev::Timer> b;
  std::unique_ptr<ev::Timer> c;
  auto a = loop_->timer([&] {
    b->cancel();
    c.reset();  // destroyed while expired and pending in this batch
  });
  b = loop_->timer([&] { ++fired_b; });
  c = loop_->timer([&] { ADD_FAILURE() << "destroyed timer fired"; });
  auto end = loop_->timer([&] { loop_->stop(); });
  a->arm(2ms);
  b->arm(2ms);
  c->arm(2ms);
  end->arm(10ms);
  loop_->run();
  EXPECT_EQ(fired_b, 0);
}

TEST_P(LoopContract, TimerDestroysItselfInItsCallback) {
  std::unique_ptr<ev::Timer> t;
  int fired = 0;
  t = loop_->timer([&] {
    ++fired;
    t.reset();
    loop_->stop();
  });
  t->arm(1ms);
  loop_->run();
  EXPECT_EQ(fired, 1);
  EXPECT_EQ(t, nullptr);
}

TEST_P(LoopContract, ZeroDelayRearmDoesNotStarveIo) {
  SocketPair sp;
  sp.send();
  int ticks = 0;
  std::unique_ptr<ev::Timer> t;
  t = loop_->timer([&] {
    ++ticks;
    t->arm(0ms);
  });
  auto w = loop_->watch(sp.fd[0], kRead, [&](uint32_t) { loop_->stop(); });
  t->arm(0ms);
  loop_->run();
  EXPECT_LT(ticks, 5);  // the I/O callback ran within a few iterations
}

// A watch that is ready on every iteration (a writable socket) and re-arms
// a timer for the same deadline from each callback (a connection re-arming
// its linger timer on every event) must not keep that timer from firing.
TEST_P(LoopContract, AlwaysReadyWatchRearmingATimerDoesNotStarveIt) {
  SocketPair sp;
  bool fired = false;
  int events = 0;
  std::unique_ptr<ev::Timer> t = loop_->timer([&] {
    fired = true;
    loop_->stop();
  });
  const ev::Clock::time_point deadline = loop_->now() + 20ms;
  auto w = loop_->watch(sp.fd[0], kWrite, [&](uint32_t) {
    if (++events >= 2'000'000) loop_->stop();  // bounded: starved
    t->arm(std::max(ev::Duration::zero(), ev::Duration(deadline - loop_->now())));
  });
  t->arm(20ms);
  loop_->run();
  EXPECT_TRUE(fired) << "timer starved after " << events << " write events";
}

TEST_P(LoopContract, PostFromManyThreadsRunsEverythingInPerThreadOrder) {
  constexpr int kThreads = 4;
  constexpr int kPerThread = 5000;
  std::array<int, kThreads> last{};
  last.fill(-1);
  int total = 0;
  bool in_order = true;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        loop_->post([&, t, i] {
          if (last[t] != i - 1) in_order = false;
          last[t] = i;
          if (++total == kThreads * kPerThread) loop_->stop();
        });
      }
    });
  }
  loop_->run();
  for (auto& th : threads)
    th.join();
  EXPECT_EQ(total, kThreads * kPerThread);
  EXPECT_TRUE(in_order);
}

TEST_P(LoopContract, StopFromAnotherThread) {
  std::promise<void> running;
  loop_->post([&] { running.set_value(); });
  std::thread stopper([&] {
    running.get_future().wait();
    loop_->stop();
  });
  loop_->run();  // returns only because of the other thread's stop()
  stopper.join();
  SUCCEED();
}

TEST_P(LoopContract, WatchDestroysItselfInItsCallback) {
  SocketPair sp;
  sp.send();
  int calls = 0;
  std::unique_ptr<IoWatch> w;
  w = loop_->watch(sp.fd[0], kRead, [&](uint32_t) {
    ++calls;
    w.reset();
  });
  runIterations(4);
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(w, nullptr);
}

TEST_P(LoopContract, HandlerDestroysAnotherWhoseEventIsPendingInSameBatch) {
  SocketPair a, b;
  std::unique_ptr<IoWatch> wa, wb;
  int calls = 0;
  auto other_of = [&](std::unique_ptr<IoWatch>& other) {
    return [&](uint32_t) {
      ++calls;
      other.reset();  // the other is readable too: its event is pending
    };
  };
  wa = loop_->watch(a.fd[0], kRead, other_of(wb));
  wb = loop_->watch(b.fd[0], kRead, other_of(wa));
  a.send();
  b.send();
  loop_->post([&] { loop_->stop(); });
  loop_->run();
  EXPECT_EQ(calls, 1);
  wa.reset();
  wb.reset();
}

TEST_P(LoopContract, EventForClosedWatchIsNotDeliveredToNewWatchOnReusedFd) {
  auto a = std::make_unique<SocketPair>();
  SocketPair trigger;
  a->send();
  trigger.send();
  std::unique_ptr<IoWatch> wa, wt, wnew;
  std::unique_ptr<SocketPair> fresh;
  int new_calls = 0;
  int a_calls = 0;
  bool reused = false;
  wa = loop_->watch(a->fd[0], kRead, [&](uint32_t) { ++a_calls; });
  wt = loop_->watch(trigger.fd[0], kRead, [&](uint32_t) {
    char c;
    (void)::read(trigger.fd[0], &c, 1);
    if (wa) {
      // Close the other watch and its fd, then reuse the fd number at once.
      const int old = a->fd[0];
      wa.reset();
      a.reset();
      fresh = std::make_unique<SocketPair>();
      wnew = loop_->watch(fresh->fd[0], kRead, [&](uint32_t) { ++new_calls; });
      reused = fresh->fd[0] == old || fresh->fd[1] == old;
    }
  });
  loop_->post([&] { loop_->stop(); });
  loop_->run();
  EXPECT_EQ(new_calls, 0);  // nothing was written to the fresh pair
  EXPECT_LE(a_calls, 1);
  EXPECT_TRUE(reused);  // the scenario really reused the number
  wt.reset();
  wnew.reset();
}

TEST_P(LoopContract, DeferredDeletionAfterCallbackFifoIncludingNested) {
  std::vector<std::string> log;
  struct Tracked : ev::DeferredDeletable {
    Tracked(std::vector<std::string>& l, std::string n, ev::Loop* lp, bool spawn)
        : log(l), name(std::move(n)), loop(lp), spawn_child(spawn) {}
    ~Tracked() override {
      log.push_back(name);
      if (spawn_child) {
        loop->deferredDelete(std::make_unique<Tracked>(log, name + ".child", loop, false));
      }
    }
    std::vector<std::string>& log;
    std::string name;
    ev::Loop* loop;
    bool spawn_child;
  };
  loop_->post([&] {
    loop_->deferredDelete(std::make_unique<Tracked>(log, "a", loop_.get(), true));
    loop_->deferredDelete(std::make_unique<Tracked>(log, "b", loop_.get(), false));
    EXPECT_TRUE(log.empty());  // not inside the callback that scheduled them
    EXPECT_EQ(loop_->stats().pending_deletions, 2u);
  });
  loop_->post([&] {
    EXPECT_EQ(log, (std::vector<std::string>{"a", "b", "a.child"}));
    loop_->stop();
  });
  loop_->run();
  EXPECT_EQ(log.size(), 3u);
}

TEST_P(LoopContract, CloseOnFdClosedBehindItsBackStillDestroysOnce) {
  int destroyed = 0;
  SocketPair sp;
  const int fd = ::dup(sp.fd[0]);
  auto* owner = new Owner(*loop_, fd, &destroyed);
  ::close(fd);  // behind the watch's back
  owner->fd_ = -1;
  EXPECT_EQ(owner->close(), DetachOutcome::kFdGone);
  EXPECT_EQ(owner->close(), DetachOutcome::kAlreadyClosed);
  EXPECT_EQ(loop_->stats().pending_deletions, 1u);
  runIterations(1);
  EXPECT_EQ(destroyed, 1);
}

TEST_P(LoopContract, WatchOnInvalidFdClosesThroughTheSamePath) {
  int destroyed = 0;
  auto* owner = new Owner(*loop_, -1, &destroyed);
  EXPECT_EQ(owner->watch_->registrationError(), EBADF);
  EXPECT_NE(owner->watch_->setInterest(kWrite), 0);
  EXPECT_EQ(loop_->stats().registered, 0u);
  EXPECT_EQ(owner->close(), DetachOutcome::kFdInvalid);
  runIterations(1);
  EXPECT_EQ(destroyed, 1);
}

TEST_P(LoopContract, WatchOnClosedFdNumberReportsGone) {
  SocketPair sp;
  const int fd = ::dup(sp.fd[0]);
  ::close(fd);
  auto w = loop_->watch(fd, kRead, [](uint32_t) { ADD_FAILURE(); });
  EXPECT_EQ(w->registrationError(), EBADF);
  EXPECT_EQ(w->close(), DetachOutcome::kFdGone);
}

TEST_P(LoopContract, OwnerClosedFromItsOwnCallbackIsDestroyedAfterIt) {
  int destroyed = 0;
  SocketPair sp;
  const int fd = ::dup(sp.fd[0]);
  auto* owner = new Owner(*loop_, fd, &destroyed);
  (void)owner;
  sp.send();
  runIterations(3);
  EXPECT_EQ(destroyed, 1);
}

TEST_P(LoopContract, StatsCountLiveObjects) {
  SocketPair sp;
  auto w = loop_->watch(sp.fd[0], kRead, [](uint32_t) {});
  auto t = loop_->timer([] {});
  t->arm(1h);
  ev::LoopStats s = loop_->stats();
  EXPECT_EQ(s.watches, 1u);
  EXPECT_EQ(s.registered, 1u);
  EXPECT_EQ(s.timers, 1u);
  EXPECT_EQ(s.armed_timers, 1u);
  EXPECT_EQ(w->close(), DetachOutcome::kDetached);
  EXPECT_EQ(loop_->stats().registered, 0u);
  EXPECT_EQ(loop_->stats().watches, 1u);
  w.reset();
  t.reset();
  s = loop_->stats();
  EXPECT_EQ(s.watches, 0u);
  EXPECT_EQ(s.timers, 0u);
  EXPECT_EQ(s.armed_timers, 0u);
}

// stats() is the one read allowed from any thread (a monitoring thread, a
// test polling a server's worker). Every counter changes on the loop thread
// while it is read here; ThreadSanitizer checks that nothing races.
TEST_P(LoopContract, StatsReadFromAnotherThreadWhileTheLoopChurns) {
  struct Doomed : ev::DeferredDeletable {};
  SocketPair sp;
  std::atomic<bool> done{false};
  std::promise<void> running;
  int rounds = 0;
  std::unique_ptr<ev::Timer> churn;
  churn = loop_->timer([&] {
    // One of everything a connection does: watch, timer, activation,
    // interest change, close, deferred deletion.
    auto w = loop_->watch(sp.fd[0], kRead, [](uint32_t) {});
    auto t = loop_->timer([] {});
    t->arm(1h);
    w->activate(kRead);
    (void)w->setInterest(kRead | kWrite);
    (void)w->close();
    loop_->deferredDelete(std::make_unique<Doomed>());
    if (++rounds == 1) running.set_value();
    if (rounds == 2000) {
      loop_->stop();
      return;
    }
    churn->arm(0ms);
  });
  churn->arm(0ms);
  std::thread reader([&] {
    running.get_future().wait();
    size_t seen = 0;
    do {
      const ev::LoopStats s = loop_->stats();
      seen += s.watches + s.registered + s.timers + s.armed_timers + s.pending_deletions +
              s.pending_activations + s.pending_posts;
    } while (!done.load());
    EXPECT_GT(seen, 0u);
  });
  loop_->run();
  done = true;
  reader.join();
  churn.reset();
  EXPECT_EQ(rounds, 2000);
}

// Thread affinity (loop.h, "Threading"): set-up from any thread until the
// first run() binds the loop; then only that thread, until a hand-over.
TEST_P(LoopContract, FirstRunBindsTheLoopThreadAndBindToCurrentThreadHandsItOver) {
  bool on_loop_thread = false;
  std::promise<void> fired;
  auto t = loop_->timer([&] {
    on_loop_thread = loop_->isLoopThread();
    fired.set_value();
  });
  t->arm(0ms);  // set-up on this thread, which never runs the loop: allowed
  EXPECT_TRUE(loop_->isLoopThread()) << "not bound before the first run()";
  std::thread runner([&] { loop_->run(); });
  fired.get_future().wait();
  EXPECT_FALSE(loop_->isLoopThread()) << "bound to the runner";
  loop_->stop();  // any thread
  runner.join();
  EXPECT_TRUE(on_loop_thread);
  EXPECT_FALSE(loop_->isLoopThread()) << "the binding outlives run()";
  loop_->bindToCurrentThread();  // the runner is joined: hand over
  EXPECT_TRUE(loop_->isLoopThread());
  t.reset();  // loop-affine: legal only after the hand-over
}

// Debug builds abort on a loop-affine call from a thread that is not the
// loop's, like Envoy's ASSERT(isThreadSafe()).
TEST_P(LoopContract, LoopAffineCallFromAnotherThreadAbortsInDebugBuilds) {
#ifdef NDEBUG
  GTEST_SKIP() << "thread affinity is asserted in debug builds only";
#else
  GTEST_FLAG_SET(death_test_style, "threadsafe");  // the statement starts a thread
  EXPECT_DEATH(
      {
        auto t = loop_->timer([] {});
        std::promise<void> running;
        loop_->post([&] { running.set_value(); });
        std::thread runner([&] { loop_->run(); });
        running.get_future().wait();
        t->arm(1ms);  // from this thread while `runner` runs the loop
        loop_->stop();
        runner.join();
      },
      "Timer::arm\\(\\) called off the loop's thread");
#endif
}

TEST_P(LoopContract, LoopDestroyedWithClosesPendingFreesEverything) {
  int destroyed = 0;
  constexpr int kOwners = 50;
  std::vector<SocketPair> pairs(kOwners);
  for (auto& sp : pairs) {
    auto* owner = new Owner(*loop_, ::dup(sp.fd[0]), &destroyed);
    owner->close();  // pending: the loop never runs again
  }
  loop_->post([] {});  // a posted function that will never run
  EXPECT_EQ(loop_->stats().pending_deletions, static_cast<size_t>(kOwners));
  loop_.reset();
  EXPECT_EQ(destroyed, kOwners);  // and LeakSanitizer sees nothing
}

TEST_P(LoopContract, PeerFinIsReportedUnderWriteInterestAlone) {
  // An owner that paused reading (backpressure) and waits to write into a
  // full socket still learns that the peer closed its sending side.
  SocketPair sp;
  const std::string chunk(64 * 1024, 'f');
  while (::write(sp.fd[0], chunk.data(), chunk.size()) > 0) {
  }
  ASSERT_EQ(errno, EAGAIN);
  uint32_t got = 0;
  auto w = loop_->watch(sp.fd[0], kWrite, [&](uint32_t ready) {
    got = ready;
    loop_->stop();
  });
  auto give_up = loop_->timer([&] { loop_->stop(); });  // a bound, not a synchronisation
  give_up->arm(5s);
  loop_->post([&] { ASSERT_EQ(::shutdown(sp.fd[1], SHUT_WR), 0); });
  loop_->run();
  EXPECT_TRUE(got & ev::kHangup) << got;
  EXPECT_FALSE(got & kWrite) << "the socket is still full";
}

TEST_P(LoopContract, HangupInterestSeesThePeerCloseButNotItsData) {
  // An owner that holds its input back (HTTP/1.1 pipelining beyond its
  // bound) is not woken by the data waiting, yet learns that the peer
  // closed, though the FIN sits behind that unread data.
  SocketPair sp;
  ASSERT_EQ(::write(sp.fd[1], "pending", 7), 7);
  std::vector<uint32_t> got;
  auto w = loop_->watch(sp.fd[0], ev::kHangup, [&](uint32_t ready) {
    got.push_back(ready);
    loop_->stop();
  });
  runIterations(4);
  EXPECT_TRUE(got.empty()) << "pending data woke a hang-up-only watch: " << got[0];
  auto give_up = loop_->timer([&] { loop_->stop(); });  // a bound, not a synchronisation
  give_up->arm(5s);
  loop_->post([&] { ASSERT_EQ(::shutdown(sp.fd[1], SHUT_WR), 0); });
  loop_->run();
  ASSERT_FALSE(got.empty()) << "the peer's FIN was not reported";
  EXPECT_TRUE(got[0] & ev::kHangup) << got[0];
}

// activate(): readiness fed by the owner, for input the kernel cannot see
// (TLS records already read into user space).
TEST_P(LoopContract, ActivateDeliversWithoutTheFdBeingReady) {
  SocketPair sp;  // nothing written: the fd never becomes readable
  std::vector<uint32_t> got;
  auto w = loop_->watch(sp.fd[0], kRead, [&](uint32_t ready) { got.push_back(ready); });
  w->activate(kRead);
  w->activate(kWrite);  // merged into the same delivery
  EXPECT_TRUE(w->activated());
  EXPECT_EQ(loop_->stats().pending_activations, 1u);
  runIterations(4);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0], kRead | kWrite);
  EXPECT_FALSE(w->activated());
  EXPECT_EQ(loop_->stats().pending_activations, 0u);
}

TEST_P(LoopContract, ClosedOrDestroyedWatchDropsItsActivation) {
  SocketPair a, b, c;
  int calls_a = 0, calls_b = 0, calls_c = 0;
  std::unique_ptr<IoWatch> wb;
  auto wa = loop_->watch(a.fd[0], kNone, [&](uint32_t) {
    ++calls_a;
    wb.reset();  // b's activation is queued behind a's in the same pass
  });
  wb = loop_->watch(b.fd[0], kNone, [&](uint32_t) { ++calls_b; });
  auto wc = loop_->watch(c.fd[0], kNone, [&](uint32_t) { ++calls_c; });
  wc->activate(kRead);
  EXPECT_EQ(wc->close(), DetachOutcome::kDetached);
  wc->activate(kRead);  // no effect after close
  wa->activate(kRead);
  wb->activate(kRead);
  EXPECT_EQ(loop_->stats().pending_activations, 2u);
  runIterations(4);
  EXPECT_EQ(calls_a, 1);
  EXPECT_EQ(calls_b, 0);
  EXPECT_EQ(calls_c, 0);
  EXPECT_EQ(loop_->stats().pending_activations, 0u);
}

TEST_P(LoopContract, SelfReactivationWaitsForTheNextIterationAndStarvesNothing) {
  SocketPair spin, io;
  int spins = 0;
  bool io_seen = false, timer_fired = false;
  std::unique_ptr<IoWatch> ws;
  ws = loop_->watch(spin.fd[0], kNone, [&](uint32_t) {
    ++spins;
    ws->activate(kRead);
  });
  auto wi = loop_->watch(io.fd[0], kRead, [&](uint32_t) {
    char ch;
    ASSERT_EQ(::read(io.fd[0], &ch, 1), 1);
    io_seen = true;
  });
  auto t = loop_->timer([&] {
    timer_fired = true;
    loop_->stop();
  });
  ws->activate(kRead);
  io.send();
  t->arm(0ms);
  loop_->run();
  EXPECT_TRUE(timer_fired);
  EXPECT_TRUE(io_seen);
  // One delivery per iteration: the timer and the socket got their turn
  // within the first few, not after the spinner ran dry.
  EXPECT_GE(spins, 1);
  EXPECT_LE(spins, 3);
  ws.reset();  // drops the queued activation
  EXPECT_EQ(loop_->stats().pending_activations, 0u);
}

TEST_P(LoopContract, StopBeforeRunReturnsImmediately) {
  loop_->stop();
  loop_->run();
  SUCCEED();
}

}  // namespace h2loop::test
