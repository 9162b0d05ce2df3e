#pragma once

#include <memory>

#include "eventloop/loop.h"

namespace h2loop::ev {

// The hand-written backend: epoll (level-triggered) for I/O, an eventfd for
// post()/stop() wake-ups, and a binary min-heap of timers whose earliest
// deadline becomes epoll_wait's timeout. It is also the worked example of how
// to put h2loop on a loop of your own: see loop.h, "Writing a backend".
//
// Throws std::system_error if epoll_create1 or eventfd fail (start-up only).
std::unique_ptr<Loop> makeEpollLoop();

}  // namespace h2loop::ev
