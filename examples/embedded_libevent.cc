// embedded_libevent: h2loop inside an application that owns its event loop.
//
// --loop libevent (default): the application has its own event_base with
// its own periodic libevent timer counting ticks. It wraps the base with
// h2loop::ev::makeLibeventLoop(base), builds an embedded h2loop::Server on
// it and runs event_base_dispatch() itself, on main(): the server, the
// application's timer and its signal events share one thread, so the
// handler of GET /ticks reads the tick count without any lock. SIGTERM or
// SIGINT (libevent signal events) start a graceful shutdown; once the last
// connection is gone the application stops its timer and leaves the loop,
// then destroys the server, the h2loop loop and the base, in that order.
//
// --loop poll: the same on a third-party loop written against
// eventloop/loop.h (examples/poll_loop, pollex::makePollLoop()). The ticks
// come from an h2loop Timer on that loop; the application runs loop->run(),
// and a thread of its own waits for the signals (sigwait) and posts the
// shutdown to the loop.
//
//   embedded_libevent --loop poll --listen 127.0.0.1:8443
//   curl --http2-prior-knowledge http://127.0.0.1:8443/ticks

#include <event2/event.h>
#include <signal.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>

#include "eventloop/libevent/libevent_loop.h"
#include "eventloop/loop.h"
#include "examples/poll_loop/poll_loop.h"
#include "h2loop/http.h"
#include "h2loop/server.h"

namespace {

// GET /ticks: the application's tick count. Handlers run on the loop's
// thread, which is the only thread touching `ticks`.
h2loop::Router makeRouter(const uint64_t& ticks) {
  h2loop::Router router;
  router.get("/ticks", [&ticks](const h2loop::Request&, h2loop::Response res) {
    res.respond(200, {{"content-type", "text/plain"}}, std::to_string(ticks) + "\n");
  });
  return router;
}

void announce(const std::string& listen, const h2loop::Server& server) {
  std::fprintf(stderr, "listening on %s:%u\n", listen.substr(0, listen.rfind(':')).c_str(),
               server.ports()[0]);
  std::fflush(stderr);
}

int runLibevent(const h2loop::ServerOptions& options, std::chrono::milliseconds tick) {
  event_base* base = event_base_new();
  uint64_t ticks = 0;
  auto loop = h2loop::ev::makeLibeventLoop(base);
  auto server = std::make_unique<h2loop::Server>(options, makeRouter(ticks), *loop);

  // The application's own timer: a persistent libevent timer.
  event* ticker = event_new(
      base, -1, EV_PERSIST,
      [](evutil_socket_t, short, void* arg) { ++*static_cast<uint64_t*>(arg); }, &ticks);
  const timeval tv{static_cast<time_t>(tick.count() / 1000),
                   static_cast<suseconds_t>(tick.count() % 1000 * 1000)};
  event_add(ticker, &tv);

  // Signals as libevent events. The first one starts the graceful shutdown;
  // its completion (on this thread) stops the timer and leaves the loop.
  struct App {
    event_base* base;
    event* ticker;
    h2loop::Server* server;
    bool stopping = false;
  } app{base, ticker, server.get()};
  auto on_signal = [](evutil_socket_t, short, void* arg) {
    auto* a = static_cast<App*>(arg);
    if (a->stopping) return;
    a->stopping = true;
    a->server->shutdown([a] {
      event_del(a->ticker);
      event_base_loopexit(a->base, nullptr);
    });
  };
  event* sigterm = evsignal_new(base, SIGTERM, on_signal, &app);
  event* sigint = evsignal_new(base, SIGINT, on_signal, &app);
  event_add(sigterm, nullptr);
  event_add(sigint, nullptr);

  server->start();
  announce(options.listen[0], *server);
  event_base_dispatch(base);

  server.reset();  // the server, then the loop it used, then the base
  loop.reset();
  event_free(sigint);
  event_free(sigterm);
  event_free(ticker);
  event_base_free(base);
  return 0;
}

int runPoll(const h2loop::ServerOptions& options, std::chrono::milliseconds tick) {
  // Taken by the signal thread below; blocked before any thread starts.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  uint64_t ticks = 0;
  std::unique_ptr<h2loop::ev::Loop> loop = pollex::makePollLoop();
  auto server = std::make_unique<h2loop::Server>(options, makeRouter(ticks), *loop);

  // An h2loop timer on the application's loop: one-shot, re-armed each tick.
  std::unique_ptr<h2loop::ev::Timer> ticker;
  ticker = loop->timer([&] {
    ++ticks;
    ticker->arm(tick);
  });
  ticker->arm(tick);

  server->start();
  announce(options.listen[0], *server);

  // Of a Loop only post() and stop() may be called from another thread: the
  // signal thread posts the shutdown, whose completion stops the loop.
  std::thread signal_thread([&] {
    int sig = 0;
    sigwait(&signals, &sig);
    loop->post([&] {
      server->shutdown([&] {
        ticker->cancel();
        loop->stop();
      });
    });
  });
  loop->run();

  signal_thread.join();
  ticker.reset();  // loop-thread objects first, then the server, then the loop
  server.reset();
  loop.reset();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string listen = "127.0.0.1:8443", cert, key, loop_name = "libevent";
  long tick_ms = 100;
  CLI::App app{"embedded_libevent: an embedded server on the application's own event loop"};
  app.add_option("--listen", listen, "HOST:PORT (port 0: any free port)")->capture_default_str();
  app.add_option("--cert", cert, "TLS certificate chain (PEM); without --cert/--key: h2c");
  app.add_option("--key", key, "TLS private key (PEM)");
  app.add_option("--loop", loop_name, "the application's loop: libevent or poll")
      ->check(CLI::IsMember({"libevent", "poll"}))
      ->capture_default_str();
  app.add_option("--tick-ms", tick_ms, "milliseconds between ticks")
      ->check(CLI::Range(1L, 1000L))
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  h2loop::ServerOptions options;
  options.listen = {listen};
  options.cert = cert;
  options.key = key;

  ::signal(SIGPIPE, SIG_IGN);
  try {
    const std::chrono::milliseconds tick(tick_ms);
    return loop_name == "poll" ? runPoll(options, tick) : runLibevent(options, tick);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "embedded_libevent: %s\n", e.what());
    return 1;
  }
}
