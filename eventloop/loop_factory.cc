#include "eventloop/loop_factory.h"

#include <array>
#include <stdexcept>
#include <string>

#include "eventloop/custom/epoll_loop.h"
#include "eventloop/libevent/libevent_loop.h"

namespace h2loop::ev {
namespace {

struct Backend {
  std::string_view name;
  std::unique_ptr<Loop> (*make)();
};

std::unique_ptr<Loop> makeOwnedLibevent() {
  return makeLibeventLoop();
}

constexpr std::array<Backend, 2> kBackends{{
    {"epoll", &makeEpollLoop},
    {"libevent", &makeOwnedLibevent},
}};

constexpr std::array<std::string_view, kBackends.size()> kNames{kBackends[0].name,
                                                                kBackends[1].name};

}  // namespace

std::span<const std::string_view> loopBackendNames() {
  return kNames;
}

std::unique_ptr<Loop> makeLoop(std::string_view backend) {
  for (const Backend& b : kBackends) {
    if (b.name == backend) return b.make();
  }
  std::string names;
  for (std::string_view n : kNames)
    names += (names.empty() ? "" : ", ") + std::string(n);
  throw std::invalid_argument("unknown event loop '" + std::string(backend) +
                              "' (choose one of: " + names + ")");
}

}  // namespace h2loop::ev
