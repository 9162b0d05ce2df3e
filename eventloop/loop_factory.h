#pragma once

#include <memory>
#include <span>
#include <string_view>

#include "eventloop/loop.h"

namespace h2loop::ev {

// Names accepted by makeLoop(), default first: "epoll", "libevent".
// Adding a backend: one folder, and one line in loop_factory.cc.
std::span<const std::string_view> loopBackendNames();

// Makes a loop of the named backend. Throws std::invalid_argument naming the
// valid choices for an unknown name (a start-up error, not a data-path one).
std::unique_ptr<Loop> makeLoop(std::string_view backend);

}  // namespace h2loop::ev
