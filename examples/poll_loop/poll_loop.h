#pragma once

// A third-party event-loop backend for h2loop built on poll(2).
//
// This is example code, written the way an application that already owns an
// event loop would plug h2loop into it: it only includes the public interface
// ("eventloop/loop.h") and implements the protected backend contract
// described there ("Writing a backend for your own loop"). Read it next to
// eventloop/custom/epoll_loop.cc; the two differ mostly in how the kernel
// identifies a registration (an fd number here, a record pointer in epoll).
//
// It is proven by the shared contract suite, instantiated in
// tests/eventloop/poll_backend_test.cc.

#include <memory>

#include "eventloop/loop.h"

namespace pollex {

// A loop whose name() is "poll". Throws std::system_error if the wake-up
// eventfd cannot be created (start-up only).
std::unique_ptr<h2loop::ev::Loop> makePollLoop();

}  // namespace pollex
