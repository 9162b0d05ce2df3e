// Instantiates the loop contract suite for every backend of the factory, and
// tests what is specific to one backend (libevent embedding).

#include <event2/event.h>
#include <sys/socket.h>
#include <unistd.h>

#include <thread>

#include "eventloop/custom/epoll_loop.h"
#include "eventloop/libevent/libevent_loop.h"
#include "eventloop/loop_contract.h"
#include "eventloop/loop_factory.h"

namespace h2loop::test {
namespace {

std::vector<LoopMaker> allBackends() {
  std::vector<LoopMaker> makers;
  for (std::string_view name : ev::loopBackendNames()) {
    makers.push_back({std::string(name), [n = std::string(name)] { return ev::makeLoop(n); }});
  }
  return makers;
}

INSTANTIATE_TEST_SUITE_P(Loop, LoopContract, ::testing::ValuesIn(allBackends()), backendName);

TEST(LoopFactory, KnowsBothBackendsAndRejectsUnknownNamesClearly) {
  auto names = ev::loopBackendNames();
  ASSERT_EQ(names.size(), 2u);
  EXPECT_EQ(names[0], "epoll");
  EXPECT_EQ(names[1], "libevent");
  try {
    (void)ev::makeLoop("select");
    FAIL() << "expected std::invalid_argument";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("epoll, libevent"), std::string::npos) << e.what();
  }
}

// The application owns and runs the event_base; h2loop only registers on it.
TEST(LibeventEmbedding, RunsOnTheApplicationsBaseAndLeavesItClean) {
  event_base* base = event_base_new();
  ASSERT_NE(base, nullptr);
  const int baseline = event_base_get_num_events(base, EVENT_BASE_COUNT_ADDED);
  int fds[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds), 0);
  {
    auto loop = ev::makeLibeventLoop(base);
    EXPECT_EQ(loop->name(), "libevent");
    int reads = 0;
    int timers = 0;
    auto w = loop->watch(fds[0], ev::kRead, [&](uint32_t) {
      char c;
      EXPECT_EQ(::read(fds[0], &c, 1), 1);
      ++reads;
    });
    auto t = loop->timer([&] {
      ++timers;
      // The application decides when its loop ends.
      event_base_loopbreak(base);
    });
    loop->post([&] {
      EXPECT_EQ(::write(fds[1], "e", 1), 1);
      t->arm(std::chrono::milliseconds(5));
    });
    // The application's own dispatch, not Loop::run().
    event_base_dispatch(base);
    EXPECT_EQ(reads, 1);
    EXPECT_EQ(timers, 1);
    w.reset();
    t.reset();
  }
  // Nothing of h2loop's is left registered, and the base is still usable.
  EXPECT_EQ(event_base_get_num_events(base, EVENT_BASE_COUNT_ADDED), baseline);
  bool own_fired = false;
  event* own = evtimer_new(
      base, [](evutil_socket_t, short, void* arg) { *static_cast<bool*>(arg) = true; }, &own_fired);
  timeval tv{0, 1000};
  evtimer_add(own, &tv);
  event_base_dispatch(base);
  EXPECT_TRUE(own_fired);
  event_free(own);
  event_base_free(base);
  ::close(fds[0]);
  ::close(fds[1]);
}

// An application that runs the base itself still gets activations delivered.
TEST(LibeventEmbedding, ActivationsRunWhenTheApplicationDrivesTheBase) {
  event_base* base = event_base_new();
  ASSERT_NE(base, nullptr);
  int fds[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds), 0);
  {
    auto loop = ev::makeLibeventLoop(base);
    uint32_t got = 0;
    auto w = loop->watch(fds[0], ev::kRead, [&](uint32_t ready) {
      got = ready;
      event_base_loopbreak(base);
    });
    w->activate(ev::kRead);
    event_base_dispatch(base);  // the fd is never readable: only the activation ends it
    EXPECT_EQ(got, ev::kRead);
    EXPECT_EQ(loop->stats().pending_activations, 0u);
  }
  event_base_free(base);
  ::close(fds[0]);
  ::close(fds[1]);
}

// An embedded loop is never run(): the application's thread that dispatches
// the base becomes the loop's thread at the first callback.
TEST(LibeventEmbedding, TheDispatchingThreadBecomesTheLoopThread) {
  event_base* base = event_base_new();
  ASSERT_NE(base, nullptr);
  {
    auto loop = ev::makeLibeventLoop(base);
    bool on_loop_thread = false;
    auto t = loop->timer([&] {
      on_loop_thread = loop->isLoopThread();
      event_base_loopbreak(base);
    });
    t->arm(std::chrono::milliseconds(1));  // set-up here, before any dispatch
    std::thread app([base] { event_base_dispatch(base); });
    app.join();
    EXPECT_TRUE(on_loop_thread);
    EXPECT_FALSE(loop->isLoopThread()) << "bound to the application's thread";
    loop->bindToCurrentThread();  // that thread is joined: take the loop back
    t.reset();
  }
  event_base_free(base);
}

}  // namespace
}  // namespace h2loop::test
