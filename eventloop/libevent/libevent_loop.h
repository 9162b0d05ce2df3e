#pragma once

#include <memory>

#include "eventloop/loop.h"

struct event_base;

namespace h2loop::ev {

// The libevent backend: one persistent read event and one persistent write
// event per watch (added and removed as interest changes), one timer event set
// to the earliest deadline of the shared timer heap, and an eventfd for
// post()/stop() wake-ups.
//
// Owning form: makes and frees its own event_base.
std::unique_ptr<Loop> makeLibeventLoop();

// Embedding form: uses `base`, which the application owns and runs itself
// (event_base_dispatch or its own loop). h2loop registers its events on it,
// never frees it, and when the returned Loop is destroyed leaves nothing of
// its own registered there. Calling run() on this Loop is also allowed (it
// runs `base` until stop()). Loop::now() is refreshed on every callback.
std::unique_ptr<Loop> makeLibeventLoop(event_base* base);

}  // namespace h2loop::ev
